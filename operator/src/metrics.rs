//! Operator metrics: one prometheus-client registry with a sub-registry per component.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::Error;

/// All metrics of the operator process.
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub reconcile: ReconcileMetrics,
    pub scaling: ScalingMetrics,
    pub breakers: BreakerMetrics,
    pub api: ApiMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("riskplatform_operator");
        let reconcile = ReconcileMetrics::register(registry.sub_registry_with_prefix("reconcile"));
        let scaling = ScalingMetrics::register(registry.sub_registry_with_prefix("autoscaler"));
        let breakers = BreakerMetrics::register(registry.sub_registry_with_prefix("breaker"));
        let api = ApiMetrics::register(&mut registry);
        Self { registry: Arc::new(registry), reconcile, scaling, breakers, api }
    }
}

impl Metrics {
    /// The text exposition format served on /metrics.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

/// Reconcile runs, failures by kind and durations.
#[derive(Clone)]
pub struct ReconcileMetrics {
    pub runs: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
}

impl ReconcileMetrics {
    fn register(r: &mut Registry) -> Self {
        // 1 ms to ~4 s: a reconcile is a dozen API calls, slower than seconds means trouble.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        let runs = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        r.register("runs", "reconciles started", runs.clone());
        r.register("errors", "reconcile errors by kind", failures.clone());
        r.register("duration_seconds", "reconcile duration", duration.clone());
        Self { runs, failures, duration }
    }

    pub fn set_failure(&self, e: &Error) {
        self.failures.get_or_create(&ErrorLabels { kind: e.metric_label() }).inc();
    }

    /// Counts a run and records its duration when the returned guard drops.
    pub fn start(&self) -> ReconcileTimer {
        self.runs.inc();
        ReconcileTimer { start: Instant::now(), histogram: self.duration.clone() }
    }
}

/// Drop guard timing one reconcile, whichever way it returns.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScalingLabels {
    pub component: String,
    pub direction: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// `autoscaler` or `breaker`.
    pub purpose: String,
}

/// Scaling actions by component, direction and a bounded reason class; the periodic
/// evaluation's duration and the Prometheus queries it sends.
#[derive(Clone)]
pub struct ScalingMetrics {
    pub decisions: Family<ScalingLabels, Counter>,
    pub evaluation: Histogram,
    pub queries: Family<QueryLabels, Counter>,
}

impl ScalingMetrics {
    fn register(r: &mut Registry) -> Self {
        let decisions = Family::<ScalingLabels, Counter>::default();
        // 10 ms to ~80 s: one evaluation of every platform; the goal is under 5 s at 1,000 platforms.
        let evaluation = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let queries = Family::<QueryLabels, Counter>::default();
        r.register("scaling_actions", "replica changes by component, direction and reason class", decisions.clone());
        r.register(
            "evaluation_duration_seconds",
            "one evaluation of the breakers and the autoscaler over every platform",
            evaluation.clone(),
        );
        r.register("prometheus_queries", "Prometheus queries sent, by purpose", queries.clone());
        Self { decisions, evaluation, queries }
    }

    pub fn query(&self, purpose: &str) {
        self.queries.get_or_create(&QueryLabels { purpose: purpose.to_owned() }).inc();
    }

    /// Counts one action; the free-text reason is reduced to a class so label values stay few.
    pub fn record(&self, component: riskplatform_autoscale::Component, direction: &str, reason: &str) {
        let class = if reason.starts_with("fallback") {
            "fallback"
        } else if reason.starts_with("below minReplicas") || reason.starts_with("above maxReplicas") {
            "bounds"
        } else {
            "signals"
        };
        let component = match component {
            riskplatform_autoscale::Component::Api => "api",
            riskplatform_autoscale::Component::Workers => "workers",
        };
        self.decisions
            .get_or_create(&ScalingLabels {
                component: component.to_owned(),
                direction: direction.to_owned(),
                reason: class.to_owned(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    pub dependency: String,
    pub to: String,
}

/// Breaker transitions by dependency and new state.
#[derive(Clone)]
pub struct BreakerMetrics {
    pub transitions: Family<BreakerLabels, Counter>,
}

impl BreakerMetrics {
    fn register(r: &mut Registry) -> Self {
        let transitions = Family::<BreakerLabels, Counter>::default();
        r.register("transitions", "circuit-breaker transitions by dependency and new state", transitions.clone());
        Self { transitions }
    }

    pub fn transition(&self, dependency: &str, to: &str) {
        self.transitions.get_or_create(&BreakerLabels { dependency: dependency.to_owned(), to: to.to_owned() }).inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// get, list, watch, create, update, patch, delete or deletecollection.
    pub verb: String,
    /// The resource, with its subresource (`riskplatforms/status`).
    pub kind: String,
}

/// Every request the operator sends to the Kubernetes API.
#[derive(Clone)]
pub struct ApiMetrics {
    pub requests: Family<ApiRequestLabels, Counter>,
}

impl ApiMetrics {
    fn register(r: &mut Registry) -> Self {
        let requests = Family::<ApiRequestLabels, Counter>::default();
        r.register("api_requests", "Kubernetes API requests sent, by verb and resource", requests.clone());
        Self { requests }
    }

    pub fn count(&self, verb: &str, kind: &str) {
        self.requests.get_or_create(&ApiRequestLabels { verb: verb.to_owned(), kind: kind.to_owned() }).inc();
    }
}
