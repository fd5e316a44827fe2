//! Pure computation of a platform's status: per-component replicas and the Ready, Progressing and
//! Degraded conditions, keeping transition times of conditions that did not change.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use riskplatform_crd::{condition, ComponentStatus, RiskPlatform, RiskPlatformStatus};

/// The workloads as the API server returned them after apply (or as last seen).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub api: Option<Deployment>,
    pub workers: Option<Deployment>,
    pub pgbouncer: Option<Deployment>,
    pub redis: Option<StatefulSet>,
}

/// A permanent or apply problem to report in the Degraded condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: String,
    pub message: String,
}

/// Kubernetes defaults an unset `spec.replicas` to 1.
const DEFAULT_REPLICAS: i32 = 1;

/// Replicas of a Deployment; a rollout that has not been observed yet, or whose pods are not all
/// updated, does not count its old pods as ready.
pub fn deployment_status(d: &Deployment) -> ComponentStatus {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(DEFAULT_REPLICAS);
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let counted = if observed { ready.min(updated.max(0)).max(0) } else { 0 };
    ComponentStatus::new(desired, counted)
}

pub fn statefulset_status(s: &StatefulSet) -> ComponentStatus {
    let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(DEFAULT_REPLICAS);
    let ready = s.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    ComponentStatus::new(desired, ready)
}

/// The status to write for `rp`, given what was observed, an optional problem and the time.
pub fn compute(rp: &RiskPlatform, observed: &Observed, problem: Option<&Problem>, now: Time) -> RiskPlatformStatus {
    let previous = rp.status.clone().unwrap_or_default();
    let api = observed.api.as_ref().map(deployment_status).or(previous.api);
    let workers = observed.workers.as_ref().map(deployment_status).or(previous.workers);
    let pgbouncer = observed.pgbouncer.as_ref().map(deployment_status).or(previous.pgbouncer);
    let redis = observed.redis.as_ref().map(statefulset_status);

    let components = [("api", &api), ("workers", &workers), ("pgbouncer", &pgbouncer), ("redis", &redis)];
    let not_ready: Vec<String> = components
        .iter()
        .filter_map(|(name, s)| match (name, s) {
            (&"redis", None)
                if observed.redis.is_none() && rp.spec.redis.mode == riskplatform_crd::RedisMode::External =>
            {
                None
            }
            (_, Some(s)) if s.is_ready() => None,
            (_, Some(s)) => Some(format!("{name} {}", s.ready)),
            (_, None) => Some(format!("{name} missing")),
        })
        .collect();
    let generation = rp.metadata.generation;
    let cond = |type_: &str, status: bool, reason: &str, message: String| Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    let ready = problem.is_none() && not_ready.is_empty();
    let conditions = vec![
        match problem {
            Some(p) => cond(condition::DEGRADED, true, &p.reason, p.message.clone()),
            None => cond(condition::DEGRADED, false, "AsExpected", "all children applied".to_owned()),
        },
        if ready {
            cond(
                condition::READY,
                true,
                "AllComponentsReady",
                "every component has its desired replicas ready".to_owned(),
            )
        } else if let Some(p) = problem {
            cond(condition::READY, false, &p.reason, p.message.clone())
        } else {
            cond(condition::READY, false, "ComponentsNotReady", format!("not ready: {}", not_ready.join(", ")))
        },
        if ready {
            cond(condition::PROGRESSING, false, "Complete", "rollout complete".to_owned())
        } else if problem.is_some() {
            cond(
                condition::PROGRESSING,
                false,
                "WaitingForChange",
                "waiting for the spec or the cluster to change".to_owned(),
            )
        } else {
            cond(condition::PROGRESSING, true, "RollingOut", format!("waiting for: {}", not_ready.join(", ")))
        },
    ];
    RiskPlatformStatus {
        observed_generation: generation,
        conditions: keep_transition_times(conditions, &previous.conditions),
        api,
        workers,
        pgbouncer,
        redis,
        // Owned by the periodic evaluation's field manager; the reconciler never sends them.
        autoscaling: None,
        circuit_breakers: None,
        breaker_summary: None,
    }
}

/// Whether writing `next` would change nothing the reconciler owns in `previous`: the
/// component replicas, observedGeneration and its conditions (others' conditions are theirs).
pub fn unchanged(previous: Option<&RiskPlatformStatus>, next: &RiskPlatformStatus) -> bool {
    let Some(p) = previous else { return false };
    p.observed_generation == next.observed_generation
        && p.api == next.api
        && p.workers == next.workers
        && p.redis == next.redis
        && p.pgbouncer == next.pgbouncer
        && next.conditions.iter().all(|c| p.conditions.iter().any(|pc| pc == c))
}

/// A condition whose status did not change keeps its lastTransitionTime.
fn keep_transition_times(mut conditions: Vec<Condition>, previous: &[Condition]) -> Vec<Condition> {
    for c in &mut conditions {
        if let Some(p) = previous.iter().find(|p| p.type_ == c.type_ && p.status == c.status) {
            c.last_transition_time = p.last_transition_time.clone();
        }
    }
    conditions
}
