//! The kubelet's `/metrics/cadvisor`: cAdvisor's container series read from the pods' cgroups,
//! labelled namespace, pod, container (and `container=""` for the pod-level cgroup).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::cgroup::{Cgroup, CFS_PERIOD_US};
use super::Node;

type Labels = Vec<(String, String)>;
type F64Gauge = Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// One cgroup to report: its labels and where to read it.
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    pub cgroup: Cgroup,
}

/// Renders the series of `targets` in the Prometheus text format.
pub fn render(targets: &[Target]) -> String {
    let mut registry = Registry::default();
    let cpu = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    let working_set = F64Gauge::default();
    let usage = F64Gauge::default();
    let rss = F64Gauge::default();
    let quota = F64Gauge::default();
    let period = F64Gauge::default();
    let limit = F64Gauge::default();
    registry.register("container_cpu_usage_seconds", "Cumulative cpu time consumed in seconds.", cpu.clone());
    registry.register("container_memory_working_set_bytes", "Current working set in bytes.", working_set.clone());
    registry.register(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        usage.clone(),
    );
    registry.register("container_memory_rss", "Size of RSS in bytes.", rss.clone());
    registry.register("container_spec_cpu_quota", "CPU quota of the container.", quota.clone());
    registry.register("container_spec_cpu_period", "CPU period of the container.", period.clone());
    registry.register("container_spec_memory_limit_bytes", "Memory limit for the container.", limit.clone());
    for t in targets {
        let Some(u) = t.cgroup.usage() else { continue };
        let labels: Labels = vec![
            ("container".into(), t.container.clone()),
            ("id".into(), format!("/{}", t.cgroup.0.display())),
            ("image".into(), t.image.clone()),
            ("name".into(), t.container.clone()),
            ("namespace".into(), t.namespace.clone()),
            ("pod".into(), t.pod.clone()),
        ];
        cpu.get_or_create(&labels).inc_by(u.cpu_seconds);
        working_set.get_or_create(&labels).set(u.working_set as f64);
        usage.get_or_create(&labels).set(u.memory_usage as f64);
        rss.get_or_create(&labels).set(u.rss as f64);
        let (q, m) = t.cgroup.limits();
        if let Some(q) = q {
            quota.get_or_create(&labels).set(q as f64);
            period.get_or_create(&labels).set(CFS_PERIOD_US as f64);
        }
        limit.get_or_create(&labels).set(m.unwrap_or(0) as f64);
    }
    let mut out = String::new();
    // writing to a String cannot fail
    let _ = encode(&mut out, &registry);
    out
}

fn targets(node: &Node) -> Vec<Target> {
    let Ok(pods) = node.metrics.lock() else { return Vec::new() };
    let mut out = Vec::new();
    for p in pods.values() {
        out.push(Target {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
            container: String::new(),
            image: String::new(),
            cgroup: p.cgroup.clone(),
        });
        for (name, image) in &p.containers {
            out.push(Target {
                namespace: p.namespace.clone(),
                pod: p.name.clone(),
                container: name.clone(),
                image: image.clone(),
                cgroup: p.cgroup.child(name),
            });
        }
    }
    out
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let body = render(&targets(&node));
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new().route("/metrics/cadvisor", get(metrics)).route("/healthz", get(|| async { "ok" })).with_state(node)
}
