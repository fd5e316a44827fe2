//! Platform-wide circuit breakers: from the API pods' dependency counters in Prometheus, the pure
//! state machine decides each dependency's state; the operator records it in the status (with an
//! Event per transition) and publishes it in a ConfigMap the API pods read.
//!
//! The pods export `riskplatform_dependency_calls_total{dependency}`,
//! `riskplatform_dependency_failures_total{dependency}` and the gauge
//! `riskplatform_dependency_consecutive_failures{dependency}`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use riskplatform_breaker::{evaluate, BreakerConfig, BreakerState, Mode, State};
use riskplatform_crd::{BreakerMode, CircuitBreakerSpec, CircuitBreakersStatus, RiskPlatform};
use serde_json::json;
use tracing::{info, warn};

pub mod observe;

use crate::context::Context;
use crate::error::{Error, Result};

/// Field manager of breaker state in the status and of the published ConfigMap.
pub const BREAKER_MANAGER: &str = "riskplatform-breaker";

/// The dependencies with a breaker, as named in metrics labels and in the status.
pub const DEPENDENCIES: [&str; 2] = ["database", "redis"];

/// Name of the ConfigMap the API pods watch for the platform-wide state.
pub fn configmap_name(platform: &str) -> String {
    format!("{platform}{}", riskplatform_crd::names::CIRCUIT_BREAKERS_SUFFIX)
}

pub fn breaker_config(spec: &CircuitBreakerSpec) -> BreakerConfig {
    BreakerConfig {
        failure_threshold: u32::try_from(spec.failure_threshold).unwrap_or(1),
        failure_rate: spec.failure_rate_percent / 100.0,
        minimum_calls: u32::try_from(spec.minimum_calls).unwrap_or(1),
        window_seconds: i64::from(spec.window_seconds),
        recovery_timeout_seconds: i64::from(spec.recovery_timeout_seconds),
        half_open_max_calls: u32::try_from(spec.half_open_max_calls).unwrap_or(1),
    }
}

fn mode(m: BreakerMode) -> Mode {
    match m {
        BreakerMode::Auto => Mode::Auto,
        BreakerMode::ForceOpen => Mode::ForceOpen,
        BreakerMode::ForceClosed => Mode::ForceClosed,
        BreakerMode::Disabled => Mode::Disabled,
    }
}

fn label(s: State) -> &'static str {
    match s {
        State::Closed => "Closed",
        State::Open => "Open",
        State::HalfOpen => "HalfOpen",
        State::Disabled => "Disabled",
    }
}

/// One line for `kubectl get`, e.g. `database=Open redis=Closed`.
pub fn summary(status: &CircuitBreakersStatus) -> String {
    format!("database={} redis={}", label(status.database.state), label(status.redis.state))
}

/// Evaluates both breakers of `rp`, records transitions and publishes the result. Returns the
/// new state, which the autoscaler reads in the same tick.
pub async fn evaluate_platform(
    ctx: &Context,
    rp: &RiskPlatform,
    now: i64,
    observations: &observe::Observations,
) -> Result<CircuitBreakersStatus> {
    let namespace = rp.namespace().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let platform = rp.name_any();
    let spec = &rp.spec.circuit_breaker;
    let config = breaker_config(spec);
    let previous = rp.status.as_ref().and_then(|s| s.circuit_breakers.clone()).unwrap_or_else(|| {
        CircuitBreakersStatus { database: BreakerState::closed(now), redis: BreakerState::closed(now) }
    });
    let mut next = previous.clone();
    for dependency in DEPENDENCIES {
        let (before, override_mode) = match dependency {
            "database" => (&previous.database, spec.overrides.database),
            _ => (&previous.redis, spec.overrides.redis),
        };
        let observation = observations.get(&namespace, &platform, dependency);
        let (after, transitioned) = evaluate(&config, mode(override_mode), observation, before, now);
        if transitioned {
            info!(%dependency, from = label(before.state), to = label(after.state), reason = %after.reason, "breaker transition");
            ctx.metrics.breakers.transition(dependency, label(after.state));
            let type_ = if after.state == State::Open { EventType::Warning } else { EventType::Normal };
            let note =
                format!("{dependency} breaker {} -> {}: {}", label(before.state), label(after.state), after.reason);
            publish(ctx, rp, type_, &format!("Breaker{}", label(after.state)), note).await;
        }
        match dependency {
            "database" => next.database = after,
            _ => next.redis = after,
        }
    }
    publish_configmap(ctx, rp, &namespace, &next, [spec.overrides.database, spec.overrides.redis]).await?;
    let status = rp.status.as_ref();
    if status.and_then(|s| s.circuit_breakers.as_ref()) == Some(&next)
        && status.and_then(|s| s.breaker_summary.as_deref()) == Some(summary(&next).as_str())
    {
        return Ok(next);
    }
    let body = json!({
        "apiVersion": RiskPlatform::api_version(&()),
        "kind": RiskPlatform::kind(&()),
        "status": { "circuitBreakers": next, "breakerSummary": summary(&next) },
    });
    let api: Api<RiskPlatform> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(&platform, &PatchParams::apply(BREAKER_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(next)
}

/// Whether the API pods must take a published state as it is (an override in the spec) or may
/// be stricter on their own (computed: a pod whose own breaker opened stays open).
fn published_mode(m: BreakerMode) -> &'static str {
    match m {
        BreakerMode::Auto => "Auto",
        BreakerMode::ForceOpen | BreakerMode::ForceClosed | BreakerMode::Disabled => "Forced",
    }
}

/// The state the API pods follow: one key per dependency with its state, whether it is forced,
/// and when and why.
async fn publish_configmap(
    ctx: &Context,
    rp: &RiskPlatform,
    namespace: &str,
    status: &CircuitBreakersStatus,
    modes: [BreakerMode; 2],
) -> Result<()> {
    let owner = rp.controller_owner_ref(&()).ok_or(Error::MissingObjectKey("metadata.uid"))?;
    let mut data = BTreeMap::new();
    for ((dependency, s), m) in [("database", &status.database), ("redis", &status.redis)].into_iter().zip(modes) {
        data.insert(dependency.to_owned(), label(s.state).to_owned());
        data.insert(format!("{dependency}.mode"), published_mode(m).to_owned());
        data.insert(format!("{dependency}.since"), s.since.to_string());
        data.insert(format!("{dependency}.reason"), s.reason.clone());
    }
    let name = configmap_name(&rp.name_any());
    // One that does not decode is applied again, which repairs it.
    let published =
        ctx.caches.configmaps.get(&crate::controller::cache::key(namespace, &name)).and_then(|cm| cm.object().ok());
    if published.is_some_and(|cm| cm.data.as_ref() == Some(&data) && cm.owner_references().contains(&owner)) {
        return Ok(());
    }
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/instance": rp.name_any(), "app.kubernetes.io/managed-by": "riskplatform-operator" },
            "ownerReferences": [owner],
        },
        "data": data,
    });
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(&name, &PatchParams::apply(BREAKER_MANAGER).force(), &Patch::Apply(&cm)).await?;
    Ok(())
}

async fn publish(ctx: &Context, rp: &RiskPlatform, type_: EventType, reason: &str, note: String) {
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Breaker".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rp.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}
