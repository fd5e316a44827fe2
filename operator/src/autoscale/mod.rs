//! The periodic loop: on every tick, for each platform the leader manages, evaluate the circuit
//! breakers, then read the signals
//! from Prometheus, let the pure policy decide, write replicas under the autoscaler's field
//! manager, and record the decision in the status with an Event per scaling action.

pub mod batch;
pub mod history;
pub mod memo;
pub mod prometheus;
pub mod queries;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use riskplatform_autoscale::policy::signals_of;
use riskplatform_autoscale::{decide, Action, Component, ComponentState, Inputs, PolicyConfig, Signal};
use riskplatform_crd::{condition, AutoscalingStatus, RiskPlatform, RiskPlatformSpec};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::context::Context;
use crate::controller::build::names;
use crate::controller::cache::key;
use crate::controller::replicas::{set_replicas, AUTOSCALER_MANAGER};
use crate::controller::{hpa, status::deployment_status};
use crate::error::Result;

/// The policy configuration a platform's spec asks for.
pub fn policy_config(spec: &RiskPlatformSpec) -> PolicyConfig {
    let a = &spec.autoscaling;
    PolicyConfig {
        cpu: a.cpu.thresholds(),
        memory: a.memory.thresholds(),
        request_rate: a.request_rate.thresholds(),
        queue_length: a.queue_length.thresholds(),
        api: a.api.bounds(),
        workers: a.workers.bounds(),
        fallback_after_failures: u32::try_from(a.fallback_after_failures).unwrap_or(1),
        demand: a.demand.as_ref().map(riskplatform_crd::DemandSpec::sizing),
        forecast: a.forecast.as_ref().map(riskplatform_crd::ForecastSpec::sizing),
        ..PolicyConfig::seed_defaults()
    }
}

/// The spec's own query of a signal, if it overrides the default.
fn custom_query(spec: &RiskPlatformSpec, signal: Signal) -> Option<String> {
    let a = &spec.autoscaling;
    match signal {
        Signal::Cpu => a.cpu.query.clone(),
        Signal::Memory => a.memory.query.clone(),
        Signal::RequestRate => a.request_rate.query.clone(),
        Signal::QueueLength => a.queue_length.query.clone(),
    }
}

/// Platforms evaluated at once: most send nothing (their status is only written on a change that
/// matters), so the bound mostly paces the ticks where many must write at once.
const CONCURRENT_PLATFORMS: usize = 64;

/// Runs the loop every `interval` until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    store: Store<RiskPlatform>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = ctx.caches.synced() => {}
        }
        evaluate_all(&ctx, &applied(store.state())).await;
    }
}

/// The platforms the reconciler has applied at least once. One not applied yet has no workloads
/// to scale and no pods following its breakers; while a thousand converge at once, its first
/// writes (status, breaker ConfigMap, Event) would queue ahead of the reconciles that apply them.
fn applied(platforms: Vec<Arc<RiskPlatform>>) -> Vec<Arc<RiskPlatform>> {
    platforms.into_iter().filter(|rp| rp.status.as_ref().is_some_and(|s| s.observed_generation.is_some())).collect()
}

/// One evaluation of every platform: the breakers, then the autoscaler, from one batch of
/// Prometheus queries per signal.
pub async fn evaluate_all(ctx: &Context, platforms: &[Arc<RiskPlatform>]) {
    let started = std::time::Instant::now();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let observations = crate::circuit::observe::observe_all(ctx, platforms, now).await;
    let readings = batch::read_all(ctx, platforms, now).await;
    futures::stream::iter(platforms)
        .for_each_concurrent(CONCURRENT_PLATFORMS, |rp| {
            let (observations, readings) = (&observations, &readings);
            async move {
                let database = match crate::circuit::evaluate_platform(ctx, rp, now, observations).await {
                    Ok(breakers) => Some(breakers.database.state),
                    Err(e) => {
                        warn!(name = %rp.name_any(), error = %e, "breaker evaluation failed; keeping the last state");
                        ctx.metrics.reconcile.set_failure(&e);
                        rp.status.as_ref().and_then(|s| s.circuit_breakers.as_ref()).map(|b| b.database.state)
                    }
                };
                // More API pods would only add load on a database that is failing or being probed.
                let suppress = match database {
                    Some(riskplatform_breaker::State::Open) => Some("database breaker open"),
                    Some(riskplatform_breaker::State::HalfOpen) => Some("database breaker half-open"),
                    _ => None,
                };
                if let Err(e) = scale_platform(ctx, rp, now, suppress, readings).await {
                    warn!(name = %rp.name_any(), error = %e, "autoscaling failed; holding");
                    ctx.metrics.reconcile.set_failure(&e);
                }
            }
        })
        .await;
    let present = platforms.iter().filter_map(|rp| Some((rp.namespace()?, rp.name_any()))).collect();
    ctx.autoscale_memo.retain(&present);
    let elapsed = started.elapsed();
    ctx.metrics.scaling.evaluation.observe(elapsed.as_secs_f64());
    info!(platforms = platforms.len(), elapsed_ms = elapsed.as_millis() as u64, "evaluated breakers and autoscaling");
}

/// One evaluation of both components of one platform.
#[instrument(skip_all, fields(name = %rp.name_any(), namespace = rp.namespace().unwrap_or_default()))]
/// `suppress_api_scale_up` holds API scale-ups and says why.
pub async fn scale_platform(
    ctx: &Context,
    rp: &RiskPlatform,
    now: i64,
    suppress_api_scale_up: Option<&str>,
    readings: &batch::Readings,
) -> Result<()> {
    let Some(namespace) = rp.namespace() else { return Ok(()) };
    let names = names(rp);
    let config = policy_config(&rp.spec);
    let stored = rp.status.as_ref().and_then(|s| s.autoscaling.as_ref());
    let memo_key = (namespace.clone(), rp.name_any());
    let uid = rp.uid().unwrap_or_default();
    let previous = ctx.autoscale_memo.previous(&memo_key, &uid, stored);
    let hpas = ctx.caches.hpas.state_filter(|h| h.namespace().as_deref() == Some(namespace.as_str()));
    let competing = hpa::competing(hpas.iter().map(|h| h.as_ref()), &[&names.api, &names.workers]);

    let mut next = previous.clone();
    let mut unavailable = Vec::new();
    for (component, deployment_name) in [(Component::Api, &names.api), (Component::Workers, &names.workers)] {
        if competing.iter().any(|(_, d)| d == deployment_name) {
            continue;
        }
        let Some(deployment) = ctx.caches.deployments.get(&key(&namespace, deployment_name)) else { continue };
        let deployment = match deployment.object() {
            Ok(d) => d,
            Err(e) => {
                warn!(deployment = %deployment_name, error = %e, "cached Deployment does not decode");
                continue;
            }
        };
        let observed = deployment_status(&deployment);
        let mut inputs = Inputs {
            current_replicas: deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ready_replicas: observed.ready_replicas,
            suppress_scale_up: suppress_api_scale_up.filter(|_| component == Component::Api).map(str::to_owned),
            ..Default::default()
        };
        for &signal in signals_of(component) {
            inputs.readings.insert(signal, readings.get(&namespace, &names.platform, signal));
        }
        // The forecast reads days of its own history: per platform, since its window is its own.
        if let (Component::Api, Some(forecast)) = (component, &config.forecast) {
            let target =
                queries::QueryTarget { namespace: &namespace, platform: &names.platform, deployment: deployment_name };
            let template =
                custom_query(&rp.spec, Signal::RequestRate).unwrap_or_else(|| queries::REQUEST_RATE.to_owned());
            let query = queries::render(&template, &target);
            inputs.request_rate_history =
                Some(match prometheus_http_query::Client::try_from(rp.spec.prometheus.url.as_str()) {
                    Ok(client) => history::fetch(&client, &query, forecast, now).await,
                    Err(_) => std::sync::Arc::new(riskplatform_autoscale::Reading::Unavailable(format!(
                        "bad prometheus.url {:?}",
                        rp.spec.prometheus.url
                    ))),
                });
        }
        let state: &ComponentState = match component {
            Component::Api => &previous.api,
            Component::Workers => &previous.workers,
        };
        let (decision, updated) = decide(&config, component, &inputs, state, now);
        for i in decision.inputs.iter().filter(|i| i.note.is_some()) {
            unavailable.push(format!("{component:?} {:?}: {}", i.signal, i.note.clone().unwrap_or_default()));
        }
        if decision.action != Action::Hold && decision.desired_replicas != inputs.current_replicas {
            info!(deployment = %deployment_name, from = inputs.current_replicas, to = decision.desired_replicas, reason = %decision.reason, "scaling");
            set_replicas(&ctx.client, &namespace, deployment_name, decision.desired_replicas).await?;
            let (reason, direction) = match decision.action {
                Action::ScaleUp => ("ScaledUp", "up"),
                _ => ("ScaledDown", "down"),
            };
            ctx.metrics.scaling.record(component, direction, &decision.reason);
            publish(
                ctx,
                rp,
                EventType::Normal,
                reason,
                format!("{deployment_name}: {}", decision.reason),
                Some(deployment_name),
            )
            .await;
        }
        match component {
            Component::Api => next.api = updated,
            Component::Workers => next.workers = updated,
        }
    }
    // A failure count matters to a restart only while a fallback waits for it.
    let counted =
        [config.api, config.workers].map(|b| b.fallback_replicas.map_or(0, |_| config.fallback_after_failures));
    let written = write_status(ctx, rp, &namespace, &next, &unavailable, counted, now).await?;
    let base = if written { Some(next.clone()) } else { stored.cloned() };
    ctx.autoscale_memo.remember(memo_key, uid, base, next);
    Ok(())
}

/// Publishes an Event on the platform; `deployment` as the related object keeps the recorder from
/// folding the two components' actions into one series.
async fn publish(
    ctx: &Context,
    rp: &RiskPlatform,
    type_: EventType,
    reason: &str,
    note: String,
    deployment: Option<&str>,
) {
    let secondary = deployment.map(|name| k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("apps/v1".to_owned()),
        kind: Some("Deployment".to_owned()),
        name: Some(name.to_owned()),
        namespace: rp.namespace(),
        ..Default::default()
    });
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Scale".to_owned(),
        secondary,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rp.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

/// Writes the autoscaling status and the MetricsUnavailable condition when either changed in a
/// way that matters or the status is due for a refresh ([`memo::worth_writing`]); returns
/// whether it wrote.
async fn write_status(
    ctx: &Context,
    rp: &RiskPlatform,
    namespace: &str,
    next: &AutoscalingStatus,
    unavailable: &[String],
    counted: [u32; 2],
    now: i64,
) -> Result<bool> {
    let previous = rp.status.as_ref().and_then(|s| s.condition(condition::METRICS_UNAVAILABLE).cloned());
    let status = if unavailable.is_empty() { "False" } else { "True" };
    let (reason, message) = if unavailable.is_empty() {
        ("MetricsAvailable", "every signal was read".to_owned())
    } else {
        ("QueryFailed", unavailable.join("; "))
    };
    let transition = match &previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    if status == "True" && previous.as_ref().is_none_or(|p| p.status != "True") {
        publish(ctx, rp, EventType::Warning, "MetricsUnavailable", message.clone(), None).await;
    }
    let condition = Condition {
        type_: condition::METRICS_UNAVAILABLE.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: rp.metadata.generation,
        last_transition_time: transition,
    };
    let stored = rp.status.as_ref().and_then(|s| s.autoscaling.as_ref());
    let same_condition = previous.as_ref().is_some_and(|p| {
        (&p.status, &p.reason, &p.message, p.observed_generation)
            == (&condition.status, &condition.reason, &condition.message, condition.observed_generation)
    });
    if same_condition && !memo::worth_writing(stored, next, counted, now) {
        return Ok(false);
    }
    let body = json!({
        "apiVersion": RiskPlatform::api_version(&()),
        "kind": RiskPlatform::kind(&()),
        "status": { "autoscaling": next, "conditions": [condition] },
    });
    let api: Api<RiskPlatform> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(&rp.name_any(), &PatchParams::apply(AUTOSCALER_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(name: &str, observed_generation: Option<i64>) -> Arc<RiskPlatform> {
        let mut rp: RiskPlatform = serde_json::from_value(serde_json::json!({
            "apiVersion": "riskplatform.io/v1alpha1", "kind": "RiskPlatform",
            "metadata": { "name": name, "namespace": "prod", "generation": 2 },
            "spec": {
                "pgbouncer": { "database": { "host": "db", "name": "risk" }, "credentialsSecretRef": { "name": "db" } },
                "prometheus": { "url": "http://prometheus:9090" } }
        }))
        .unwrap();
        rp.status = observed_generation
            .map(|g| riskplatform_crd::RiskPlatformStatus { observed_generation: Some(g), ..Default::default() });
        Arc::new(rp)
    }

    #[test]
    fn only_platforms_the_reconciler_has_applied_are_evaluated() {
        let platforms = vec![platform("new", None), platform("older-spec", Some(1)), platform("current", Some(2))];
        let names: Vec<String> = applied(platforms).iter().map(|rp| rp.name_any()).collect();
        // An older observed generation still has workloads to scale while the new spec rolls out.
        assert_eq!(names, ["older-spec", "current"]);
    }
}
