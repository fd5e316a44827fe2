//! The Prometheus configuration of the local cluster: pods discovered through
//! `kubernetes_sd_configs` against the API server, the kubelet's cAdvisor endpoint and
//! kube-state-metrics, with the target labels a cluster's Prometheus gives them.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::Error;

/// Where Prometheus finds things, all resolved before the configuration is generated.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub api_server: String,
    pub ca_file: PathBuf,
    pub token_file: PathBuf,
    /// A file_sd file naming the kubelet's cAdvisor endpoint, rewritten once its port is known.
    pub kubelet_targets_file: PathBuf,
    pub kube_state_metrics: String,
    pub scrape_interval: String,
}

/// How Prometheus finds the pods.
#[derive(Clone, Debug)]
pub enum Discovery {
    /// `kubernetes_sd_configs` against the API server, as in a cluster.
    Kubernetes,
    /// A file_sd file the controller-manager keeps with the same targets and meta labels.
    File(PathBuf),
}

/// The API server address and credentials a kubeconfig holds, for Prometheus to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiAccess {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub token: String,
}

fn relabel_to(source: &str, target: &str) -> Value {
    json!({ "source_labels": [source], "target_label": target })
}

/// The scrape configuration. Pods are scraped on every container port named `metrics` or
/// `http`, or on all their ports (or `prometheus.io/port`) when annotated
/// `prometheus.io/scrape: "true"`, at `prometheus.io/path` if set; finished pods are dropped.
pub fn config(inputs: &Inputs, discovery: &Discovery) -> Value {
    let (sd_key, sd) = match discovery {
        Discovery::Kubernetes => (
            "kubernetes_sd_configs",
            json!({
                "role": "pod",
                "api_server": inputs.api_server,
                "tls_config": { "ca_file": inputs.ca_file },
                "authorization": { "credentials_file": inputs.token_file },
            }),
        ),
        Discovery::File(path) => ("file_sd_configs", json!({ "files": [path], "refresh_interval": "5s" })),
    };
    json!({
        "global": { "scrape_interval": inputs.scrape_interval, "evaluation_interval": inputs.scrape_interval },
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                sd_key: [sd],
                "relabel_configs": [
                    { "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Succeeded|Failed", "action": "drop" },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape", "__meta_kubernetes_pod_container_port_name"],
                        "regex": "true;.*|[^;]*;(metrics|http)",
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                        "regex": "(.+);([0-9]+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    { "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "regex": "(.+)", "target_label": "__metrics_path__" },
                    relabel_to("__meta_kubernetes_namespace", "namespace"),
                    relabel_to("__meta_kubernetes_pod_name", "pod"),
                    relabel_to("__meta_kubernetes_pod_container_name", "container"),
                    relabel_to("__meta_kubernetes_pod_node_name", "node"),
                ],
            },
            {
                "job_name": "kubelet-cadvisor",
                "metrics_path": "/metrics/cadvisor",
                "honor_labels": true,
                "file_sd_configs": [{ "files": [inputs.kubelet_targets_file], "refresh_interval": "5s" }],
            },
            {
                "job_name": "kube-state-metrics",
                "honor_labels": true,
                "static_configs": [{ "targets": [inputs.kube_state_metrics] }],
            },
        ],
    })
}

/// The file_sd content naming the kubelet's cAdvisor endpoint.
pub fn kubelet_targets(port: u16) -> Value {
    json!([{ "targets": [format!("127.0.0.1:{port}")], "labels": { "node": crate::contract::NODE_NAME } }])
}

/// The server, CA and token of a kubeconfig's current context (kube-testenv writes inline
/// certificate-authority-data and a bearer token).
pub fn api_access(kubeconfig: &str) -> Result<ApiAccess, Error> {
    let doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let current = doc["current-context"].as_str().unwrap_or_default();
    let contexts = doc["contexts"].as_sequence().cloned().unwrap_or_default();
    let context = contexts
        .iter()
        .find(|c| c["name"].as_str() == Some(current))
        .or(contexts.first())
        .ok_or_else(|| Error::Kubeconfig("no context".into()))?;
    let named = |list: &str, name: &serde_yaml::Value, field: &str| {
        let items = doc[list].as_sequence().cloned().unwrap_or_default();
        items.into_iter().find(|i| &i["name"] == name).map(|i| i[field].clone())
    };
    let cluster = named("clusters", &context["context"]["cluster"], "cluster")
        .ok_or_else(|| Error::Kubeconfig("the context's cluster is missing".into()))?;
    let user = named("users", &context["context"]["user"], "user")
        .ok_or_else(|| Error::Kubeconfig("the context's user is missing".into()))?;
    let server =
        cluster["server"].as_str().ok_or_else(|| Error::Kubeconfig("cluster.server is missing".into()))?.to_owned();
    let ca_pem = match (cluster["certificate-authority-data"].as_str(), cluster["certificate-authority"].as_str()) {
        (Some(data), _) => {
            serde_json::from_value::<k8s_openapi::ByteString>(json!(data))
                .map_err(|e| Error::Kubeconfig(format!("certificate-authority-data: {e}")))?
                .0
        }
        (None, Some(path)) => std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?,
        (None, None) => return Err(Error::Kubeconfig("the cluster has no certificate authority".into())),
    };
    let token =
        user["token"].as_str().ok_or_else(|| Error::Kubeconfig("the user has no bearer token".into()))?.to_owned();
    Ok(ApiAccess { server, ca_pem, token })
}

fn write(path: &Path, contents: &[u8], private: bool) -> Result<(), Error> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    std::fs::write(path, contents).map_err(io)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Writes `<dir>/prometheus.yml` (Kubernetes discovery) with the CA and token beside it (the
/// token readable by its owner only, never inline in the configuration), and
/// `<dir>/prometheus-file-sd.yml` for a Prometheus without it (targets in `pods.json`).
/// Returns the first configuration's path.
pub fn write_config(dir: &Path, access: &ApiAccess, kube_state_metrics: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    let inputs = Inputs {
        api_server: access.server.clone(),
        ca_file: dir.join("ca.crt"),
        token_file: dir.join("token"),
        kubelet_targets_file: dir.join("kubelet-targets.json"),
        kube_state_metrics: kube_state_metrics.to_owned(),
        scrape_interval: "5s".into(),
    };
    write(&inputs.ca_file, &access.ca_pem, false)?;
    write(&inputs.token_file, access.token.as_bytes(), true)?;
    if !inputs.kubelet_targets_file.exists() {
        write(&inputs.kubelet_targets_file, b"[]", false)?;
    }
    let pods_file = dir.join("pods.json");
    if !pods_file.exists() {
        write(&pods_file, b"[]", false)?;
    }
    for (name, discovery) in
        [("prometheus-file-sd.yml", Discovery::File(pods_file)), ("prometheus.yml", Discovery::Kubernetes)]
    {
        let yaml = serde_yaml::to_string(&config(&inputs, &discovery)).map_err(|e| Error::Kubeconfig(e.to_string()))?;
        write(&dir.join(name), yaml.as_bytes(), false)?;
    }
    Ok(dir.join("prometheus.yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: t\ncontexts:\n- name: t\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443', certificate-authority-data: aGVsbG8=}\nusers:\n- name: u\n  user: {token: s3cret}\n";

    #[test]
    fn a_kubeconfig_yields_the_server_the_decoded_ca_and_the_token() {
        let access = api_access(KUBECONFIG).unwrap();
        assert_eq!(
            access,
            ApiAccess { server: "https://127.0.0.1:6443".into(), ca_pem: b"hello".to_vec(), token: "s3cret".into() }
        );
    }

    #[test]
    fn a_kubeconfig_without_a_token_is_refused_with_a_reason() {
        let err = api_access(&KUBECONFIG.replace("token: s3cret", "username: x")).unwrap_err();
        assert!(err.to_string().contains("no bearer token"), "{err}");
    }

    #[test]
    fn the_written_configuration_names_the_token_file_and_never_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &api_access(KUBECONFIG).unwrap(), "127.0.0.1:9000").unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains("s3cret"));
        assert!(text.contains("credentials_file"));
        assert!(text.contains("role: pod"));
    }
}
