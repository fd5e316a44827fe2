//! A Deployment's status as upstream's sync.go and progress.go compute it: counts summed over
//! the replica sets, the Available condition, and the Progressing condition with its deadline.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::rollout::{desired, max_unavailable, Strategy};

/// Upstream's default progressDeadlineSeconds.
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

/// How the reconcile found the new ReplicaSet, for the Progressing reason upstream writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewSet {
    Created,
    Found,
    Absent,
}

fn rs_counts(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status
        .as_ref()
        .map_or((0, 0, 0), |s| (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0)))
}

fn condition(type_: &str, status: bool, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's SetDeploymentCondition: an unchanged status and reason keeps the old condition;
/// a changed reason with the same status keeps the transition time.
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if old.status == new.status && old.reason == new.reason {
            return;
        }
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
        *old = new;
    } else {
        conditions.push(new);
    }
}

/// The status after this reconcile. `new` is the ReplicaSet of the current template.
pub fn compute(
    deployment: &Deployment,
    strategy: Strategy,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    new_set: NewSet,
    now: Timestamp,
) -> DeploymentStatus {
    let old = deployment.status.clone().unwrap_or_default();
    let desired = desired(deployment);
    let (replicas, ready, available) =
        all.iter().map(|rs| rs_counts(rs)).fold((0, 0, 0), |(a, b, c), (x, y, z)| (a + x, b + y, c + z));
    let updated = new.map_or(0, |rs| rs_counts(rs).0);
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((desired - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    let mut conditions = status.conditions.take().unwrap_or_default();

    if available >= desired - max_unavailable(strategy, desired) {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }

    if let Some(rs) = new {
        let name = rs.metadata.name.clone().unwrap_or_default();
        match new_set {
            NewSet::Created => set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    true,
                    "NewReplicaSetCreated",
                    format!("Created new replica set {name:?}"),
                    now,
                ),
            ),
            NewSet::Found if !conditions.iter().any(|c| c.type_ == "Progressing") => {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        true,
                        "FoundNewReplicaSet",
                        format!("Found new replica set {name:?}"),
                        now,
                    ),
                );
            }
            _ => {}
        }
        progress(deployment, &old, &status, &mut conditions, &name, now);
    }
    status.conditions = Some(conditions);
    status
}

/// Upstream's syncRolloutStatus for a Deployment with a progress deadline.
fn progress(
    deployment: &Deployment,
    old: &DeploymentStatus,
    new: &DeploymentStatus,
    conditions: &mut Vec<DeploymentCondition>,
    rs_name: &str,
    now: Timestamp,
) {
    let current = conditions.iter().find(|c| c.type_ == "Progressing").cloned();
    let already_complete = new.replicas == new.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    if already_complete {
        return;
    }
    let desired = desired(deployment);
    let count = |v: Option<i32>| v.unwrap_or(0);
    let complete = count(new.updated_replicas) == desired
        && count(new.replicas) == desired
        && count(new.available_replicas) == desired
        && new.observed_generation >= deployment.metadata.generation;
    let progressing = count(new.updated_replicas) > count(old.updated_replicas)
        || count(new.replicas) - count(new.updated_replicas) < count(old.replicas) - count(old.updated_replicas)
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas);
    let deadline =
        deployment.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    let timed_out = current.as_ref().is_some_and(|c| {
        c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            || c.last_update_time.as_ref().is_some_and(|t| t.0 + SignedDuration::from_secs(i64::from(deadline)) < now)
    });
    if complete {
        set_condition(
            conditions,
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet {rs_name:?} has successfully progressed."),
                now,
            ),
        );
    } else if progressing {
        let mut updated =
            condition("Progressing", true, "ReplicaSetUpdated", format!("ReplicaSet {rs_name:?} is progressing."), now);
        if let Some(c) = current.filter(|c| c.status == "True") {
            updated.last_transition_time = c.last_transition_time;
        }
        conditions.retain(|c| c.type_ != "Progressing");
        conditions.push(updated);
    } else if timed_out {
        set_condition(
            conditions,
            condition(
                "Progressing",
                false,
                "ProgressDeadlineExceeded",
                format!("ReplicaSet {rs_name:?} has timed out progressing."),
                now,
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn deployment(replicas: i32, status: Option<DeploymentStatus>) -> Deployment {
        Deployment {
            metadata: ObjectMeta { generation: Some(2), ..Default::default() },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(60),
                ..Default::default()
            }),
            status,
        }
    }

    fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(ready),
                available_replicas: Some(available),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn reason(status: &DeploymentStatus, type_: &str) -> String {
        let c = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap();
        format!("{}/{}", c.status, c.reason.clone().unwrap())
    }

    const ROLLING: Strategy = Strategy::RollingUpdate { max_surge: 1, max_unavailable: 0 };

    #[test]
    fn a_deployment_with_all_replicas_available_is_available_and_complete() {
        let (new, old) = (rs("web-new", 3, 3, 3), rs("web-old", 0, 0, 0));
        let status = compute(&deployment(3, None), ROLLING, Some(&new), &[&new, &old], NewSet::Found, at(100));
        assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (Some(3), Some(3), Some(3)));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(reason(&status, "Available"), "True/MinimumReplicasAvailable");
        assert_eq!(reason(&status, "Progressing"), "True/NewReplicaSetAvailable");
    }

    #[test]
    fn a_rollout_that_gains_an_updated_replica_is_progressing() {
        let before = DeploymentStatus { replicas: Some(3), updated_replicas: Some(0), ..Default::default() };
        let (new, old) = (rs("web-new", 1, 0, 0), rs("web-old", 3, 3, 3));
        let status = compute(&deployment(3, Some(before)), ROLLING, Some(&new), &[&new, &old], NewSet::Found, at(100));
        assert_eq!(reason(&status, "Progressing"), "True/ReplicaSetUpdated");
        assert_eq!(status.unavailable_replicas, Some(0));
    }

    #[test]
    fn a_rollout_without_progress_past_its_deadline_times_out() {
        let stalled = DeploymentStatus {
            replicas: Some(4),
            updated_replicas: Some(1),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            conditions: Some(vec![condition("Progressing", true, "ReplicaSetUpdated", String::new(), at(100))]),
            ..Default::default()
        };
        let (new, old) = (rs("web-new", 1, 0, 0), rs("web-old", 3, 3, 3));
        let d = deployment(3, Some(stalled));
        let early = compute(&d, ROLLING, Some(&new), &[&new, &old], NewSet::Found, at(150));
        assert_eq!(reason(&early, "Progressing"), "True/ReplicaSetUpdated");
        let late = compute(&d, ROLLING, Some(&new), &[&new, &old], NewSet::Found, at(161));
        assert_eq!(reason(&late, "Progressing"), "False/ProgressDeadlineExceeded");
    }

    #[test]
    fn too_few_available_replicas_make_the_deployment_unavailable() {
        let new = rs("web-new", 3, 1, 1);
        let status = compute(&deployment(3, None), ROLLING, Some(&new), &[&new], NewSet::Created, at(100));
        assert_eq!(reason(&status, "Available"), "False/MinimumReplicasUnavailable");
        assert_eq!(status.unavailable_replicas, Some(2));
    }
}
