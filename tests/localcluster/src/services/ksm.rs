//! kube-state-metrics for the local cluster: the series of pods, Deployments and StatefulSets
//! that the operator's default PromQL and dashboards use, rendered from watch caches on scrape.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use crate::quantity;

/// The objects the metrics are computed from.
#[derive(Clone)]
pub struct Stores {
    pub pods: Store<Pod>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
}

pub fn router(stores: Stores) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(stores)
}

async fn metrics(State(stores): State<Stores>) -> ([(&'static str, &'static str); 1], String) {
    let body = render(&stores.pods.state(), &stores.deployments.state(), &stores.statefulsets.state());
    ([("content-type", "text/plain; version=0.0.4")], body)
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One family: its HELP/TYPE header and `(labels, value)` samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        Self { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let _ = writeln!(self.out, "{}{{{}}} {value}", self.name, labels.join(","));
    }
}

fn pod_families(out: &mut String, pods: &[Arc<Pod>]) {
    for (name, help, pick) in [
        ("kube_pod_container_resource_requests", "The number of requested resource by a container.", true),
        ("kube_pod_container_resource_limits", "The number of requested limit resource by a container.", false),
    ] {
        let mut family = Family::new(out, name, help);
        for pod in pods {
            let (ns, pod_name, uid) =
                (pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid().unwrap_or_default());
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let resources = c.resources.as_ref();
                let values = if pick {
                    resources.and_then(|r| r.requests.as_ref())
                } else {
                    resources.and_then(|r| r.limits.as_ref())
                };
                for (resource, q) in values.into_iter().flatten() {
                    let Some(v) = quantity::parse(&q.0) else { continue };
                    let labels = [
                        ("namespace", ns.as_str()),
                        ("pod", &pod_name),
                        ("uid", &uid),
                        ("container", &c.name),
                        ("node", &node),
                        ("resource", resource),
                        ("unit", quantity::unit(resource)),
                    ];
                    family.sample(&labels, v);
                }
            }
        }
    }
    let mut phase = Family::new(out, "kube_pod_status_phase", "The pods current phase.");
    for pod in pods {
        let current = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
        let (ns, name, uid) = (pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid().unwrap_or_default());
        for p in ["Pending", "Succeeded", "Failed", "Unknown", "Running"] {
            phase.sample(
                &[("namespace", &ns), ("pod", &name), ("uid", &uid), ("phase", p)],
                f64::from(u8::from(current == p)),
            );
        }
    }
    let mut ready = Family::new(out, "kube_pod_status_ready", "Describes whether the pod is ready to serve requests.");
    for pod in pods {
        let (ns, name, uid) = (pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid().unwrap_or_default());
        let status = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.to_lowercase());
        for cond in ["true", "false", "unknown"] {
            ready.sample(
                &[("namespace", &ns), ("pod", &name), ("uid", &uid), ("condition", cond)],
                f64::from(u8::from(status.as_deref() == Some(cond))),
            );
        }
    }
    let mut restarts =
        Family::new(out, "kube_pod_container_status_restarts_total", "The number of container restarts per container.");
    for pod in pods {
        let (ns, name, uid) = (pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid().unwrap_or_default());
        for c in pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()) {
            restarts.sample(
                &[("namespace", &ns), ("pod", &name), ("uid", &uid), ("container", &c.name)],
                f64::from(c.restart_count),
            );
        }
    }
}

/// The whole exposition at the moment of the scrape.
pub fn render(pods: &[Arc<Pod>], deployments: &[Arc<Deployment>], statefulsets: &[Arc<StatefulSet>]) -> String {
    let mut out = String::new();
    pod_families(&mut out, pods);
    type DeploymentValue = fn(&Deployment) -> Option<i64>;
    let deployment_series: [(&'static str, &str, DeploymentValue); 6] = [
        ("kube_deployment_spec_replicas", "Number of desired pods for a deployment.", |d| {
            d.spec.as_ref().map(|s| i64::from(s.replicas.unwrap_or(1)))
        }),
        ("kube_deployment_status_replicas", "The number of replicas per deployment.", |d| {
            d.status.as_ref().and_then(|s| s.replicas).map(i64::from)
        }),
        ("kube_deployment_status_replicas_ready", "The number of ready replicas per deployment.", |d| {
            d.status.as_ref().and_then(|s| s.ready_replicas).map(i64::from)
        }),
        ("kube_deployment_status_replicas_available", "The number of available replicas per deployment.", |d| {
            d.status.as_ref().and_then(|s| s.available_replicas).map(i64::from)
        }),
        ("kube_deployment_status_replicas_updated", "The number of updated replicas per deployment.", |d| {
            d.status.as_ref().and_then(|s| s.updated_replicas).map(i64::from)
        }),
        ("kube_deployment_status_observed_generation", "The generation observed by the deployment controller.", |d| {
            d.status.as_ref().and_then(|s| s.observed_generation)
        }),
    ];
    for (name, help, value) in deployment_series {
        let mut family = Family::new(&mut out, name, help);
        for d in deployments {
            let Some(v) = value(d) else { continue };
            family
                .sample(&[("namespace", &d.namespace().unwrap_or_default()), ("deployment", &d.name_any())], v as f64);
        }
    }
    type SetValue = fn(&StatefulSet) -> Option<i32>;
    let set_series: [(&'static str, &str, SetValue); 2] = [
        ("kube_statefulset_replicas", "Number of desired pods for a StatefulSet.", |s| {
            s.spec.as_ref().map(|s| s.replicas.unwrap_or(1))
        }),
        ("kube_statefulset_status_replicas_ready", "The number of ready replicas per StatefulSet.", |s| {
            s.status.as_ref().and_then(|s| s.ready_replicas)
        }),
    ];
    for (name, help, value) in set_series {
        let mut family = Family::new(&mut out, name, help);
        for s in statefulsets {
            let Some(v) = value(s) else { continue };
            family.sample(
                &[("namespace", &s.namespace().unwrap_or_default()), ("statefulset", &s.name_any())],
                f64::from(v),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn pod() -> Pod {
        let quantities = |cpu: &str, mem: &str| {
            Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.into())),
                ("memory".to_owned(), Quantity(mem.into())),
            ]))
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("api-1".into()),
                namespace: Some("prod".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("localcluster".into()),
                containers: vec![Container {
                    name: "api".into(),
                    resources: Some(ResourceRequirements {
                        requests: quantities("250m", "128Mi"),
                        limits: quantities("1", "256Mi"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn requests_and_limits_are_series_with_the_labels_kube_state_metrics_uses() {
        let text = render(&[Arc::new(pod())], &[], &[]);
        assert!(text.contains(r#"kube_pod_container_resource_requests{namespace="prod",pod="api-1",uid="u1",container="api",node="localcluster",resource="cpu",unit="core"} 0.25"#), "{text}");
        assert!(text.contains(r#"kube_pod_container_resource_requests{namespace="prod",pod="api-1",uid="u1",container="api",node="localcluster",resource="memory",unit="byte"} 134217728"#));
        assert!(text.contains(r#"kube_pod_container_resource_limits{namespace="prod",pod="api-1",uid="u1",container="api",node="localcluster",resource="cpu",unit="core"} 1"#));
        assert!(text.contains(r#"kube_pod_status_phase{namespace="prod",pod="api-1",uid="u1",phase="Pending"} 1"#));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
