//! The kubelet against a real API server (kube-testenv): Pods created with spec.nodeName run.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use riskplatform_localcluster::kubelet::harness::{logs, KubeletProcess};
use riskplatform_tests::cluster::{eventually, namespace, TestCluster};

#[tokio::test]
async fn an_echo_pod_comes_up_ready_with_a_pod_ip_reachable_from_the_host() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let state = tempfile::tempdir()?;
    let kubelet_bin = Path::new(env!("CARGO_BIN_EXE_local-kubelet"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lc-echo")).parent().context("bin dir")?;
    let _kubelet = KubeletProcess::start(kubelet_bin, cluster.kubeconfig(), state.path(), bin_dir)?;
    let ns = namespace(&client, "kubelet").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "echo"},
        "spec": {"nodeName": "localcluster", "containers": [{"name": "web", "image": "localcluster.test/echo",
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let ip = eventually(Duration::from_secs(30), || async {
        let p = pods.get("echo").await?;
        let status = p.status.context("no status")?;
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        anyhow::ensure!(ready, "not ready: {status:?}");
        status.pod_ip.context("no pod IP")
    })
    .await
    .with_context(|| logs(state.path()))?;
    let body = reqwest::get(format!("http://{ip}:8080/")).await?.text().await?;
    assert_eq!(body.trim(), "echo", "the pod answers with its hostname");
    Ok(())
}
