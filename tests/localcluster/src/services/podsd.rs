//! Pod discovery for a Prometheus built without Kubernetes service discovery (Debian's is):
//! the targets `kubernetes_sd_configs` with `role: pod` would yield, with the same
//! `__meta_kubernetes_*` labels, as a file_sd file the same relabelling rules apply to.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::{json, Map, Value};

/// How often the targets file is refreshed; Prometheus itself re-reads it on change.
const REFRESH: Duration = Duration::from_secs(2);

/// Prometheus' label-name sanitizing of annotation and label keys.
fn sanitize(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// One target group per container port of every pod with an IP, as the pod role produces them.
pub fn targets(pods: &[Arc<Pod>]) -> Value {
    let mut groups = Vec::new();
    for pod in pods {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        let mut common = Map::new();
        let mut put = |k: String, v: String| {
            common.insert(k, Value::String(v));
        };
        put("__meta_kubernetes_namespace".into(), pod.namespace().unwrap_or_default());
        put("__meta_kubernetes_pod_name".into(), pod.name_any());
        put("__meta_kubernetes_pod_ip".into(), ip.clone());
        put("__meta_kubernetes_pod_uid".into(), pod.uid().unwrap_or_default());
        put(
            "__meta_kubernetes_pod_phase".into(),
            pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
        );
        put(
            "__meta_kubernetes_pod_node_name".into(),
            pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        );
        for (k, v) in pod.labels() {
            put(format!("__meta_kubernetes_pod_label_{}", sanitize(k)), v.clone());
        }
        for (k, v) in pod.annotations() {
            put(format!("__meta_kubernetes_pod_annotation_{}", sanitize(k)), v.clone());
        }
        for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            for port in container.ports.iter().flatten() {
                let mut labels = common.clone();
                labels.insert("__meta_kubernetes_pod_container_name".into(), json!(container.name));
                labels.insert(
                    "__meta_kubernetes_pod_container_port_name".into(),
                    json!(port.name.clone().unwrap_or_default()),
                );
                labels.insert(
                    "__meta_kubernetes_pod_container_port_number".into(),
                    json!(port.container_port.to_string()),
                );
                groups.push(json!({ "targets": [format!("{ip}:{}", port.container_port)], "labels": labels }));
            }
        }
    }
    Value::Array(groups)
}

/// Keeps `file` equal to the targets of the pods in `store` (written whole, then renamed, so
/// Prometheus never reads half a file).
pub async fn keep_written(store: Store<Pod>, file: &Path) {
    let mut written = String::new();
    loop {
        let text = targets(&store.state()).to_string();
        if text != written {
            let partial = file.with_extension("json.tmp");
            match std::fs::write(&partial, &text).and_then(|()| std::fs::rename(&partial, file)) {
                Ok(()) => written = text,
                Err(error) => tracing::warn!(file = %file.display(), %error, "cannot write the pod targets"),
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_port_of_a_pod_with_an_ip_is_a_target_with_the_pod_role_labels() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "api-1", "namespace": "prod", "annotations": { "prometheus.io/scrape": "true" } },
            "spec": { "containers": [{ "name": "api", "ports": [{ "name": "http", "containerPort": 8080 }] }] },
            "status": { "phase": "Running", "podIP": "10.244.0.5" },
        }))
        .unwrap();
        let without_ip: Pod = serde_json::from_value(json!({ "metadata": { "name": "new" }, "spec": { "containers": [{ "name": "c", "ports": [{ "containerPort": 1 }] }] } })).unwrap();
        let groups = targets(&[Arc::new(pod), Arc::new(without_ip)]);
        assert_eq!(groups.as_array().unwrap().len(), 1);
        let group = &groups[0];
        assert_eq!(group["targets"], json!(["10.244.0.5:8080"]));
        assert_eq!(group["labels"]["__meta_kubernetes_pod_container_port_name"], "http");
        assert_eq!(group["labels"]["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "true");
        assert_eq!(group["labels"]["__meta_kubernetes_namespace"], "prod");
    }
}
