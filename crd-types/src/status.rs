//! The observed state of a platform: conditions, per-component replicas and breaker summary.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types the operator sets.
pub mod condition {
    /// Every component has its desired replicas ready.
    pub const READY: &str = "Ready";
    /// A change is being rolled out or replicas are not ready yet.
    pub const PROGRESSING: &str = "Progressing";
    /// The spec cannot work as written (e.g. a referenced Secret is missing), applying failed, or
    /// another autoscaler targets a workload the operator scales.
    pub const DEGRADED: &str = "Degraded";
    /// The autoscaler could not read some of its signals from Prometheus.
    pub const METRICS_UNAVAILABLE: &str = "MetricsUnavailable";
}

/// What the operator last observed of a platform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskPlatformStatus {
    /// The metadata.generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded (set by the reconciler) and MetricsUnavailable (set by the
    /// autoscaler). A map keyed by type, so each writer owns only its own conditions under
    /// server-side apply.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The API Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ComponentStatus>,
    /// The worker Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<ComponentStatus>,
    /// The managed Redis (absent when Redis is external).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<ComponentStatus>,
    /// The PgBouncer Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer: Option<ComponentStatus>,
    /// The autoscaler's memory and decisions per component (written by the autoscaler's field
    /// manager; everything needed to honour cooldowns after an operator restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
    /// Platform-wide circuit-breaker state per dependency (written by the operator's breaker
    /// evaluation; it survives an operator restart here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CircuitBreakersStatus>,
    /// One line per dependency for `kubectl get`, e.g. `database=Closed redis=Open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_summary: Option<String>,
}

/// Autoscaler state of both components.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    #[serde(default)]
    pub api: riskplatform_autoscale::ComponentState,
    #[serde(default)]
    pub workers: riskplatform_autoscale::ComponentState,
}

/// Breaker state of each dependency.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakersStatus {
    pub database: riskplatform_breaker::BreakerState,
    pub redis: riskplatform_breaker::BreakerState,
}

/// Replicas of one workload as its controller reports them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Replicas asked for (spec.replicas of the workload).
    pub desired_replicas: i32,
    /// Replicas ready to serve.
    pub ready_replicas: i32,
    /// `ready/desired`, for printer columns.
    pub ready: String,
}

impl ComponentStatus {
    /// Builds the status line from the two counts.
    pub fn new(desired_replicas: i32, ready_replicas: i32) -> Self {
        Self { desired_replicas, ready_replicas, ready: format!("{ready_replicas}/{desired_replicas}") }
    }

    /// Whether every desired replica is ready.
    pub fn is_ready(&self) -> bool {
        self.ready_replicas >= self.desired_replicas
    }
}

impl RiskPlatformStatus {
    /// The condition of the given type, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
