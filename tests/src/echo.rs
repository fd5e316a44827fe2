//! Pods of `lc-echo` (image `localcluster.test/echo`) on a local cluster: their specs, waits on
//! the status the kubelet writes, and requests to them; tests of the local cluster's kubelet
//! run through `on_local_cluster`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::cluster::{eventually, namespace};
use crate::localcluster::LocalCluster;

pub const ECHO: &str = "localcluster.test/echo";
/// Long enough for a pod to be scheduled, started and probed on a loaded 2-core machine.
pub const POD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `scenario` in a fresh namespace of a new local cluster (skipped on a KUBECONFIG
/// cluster, which has no echo image). A failure panics while the cluster is still up, so that
/// its drop prints every component and container log.
pub async fn on_local_cluster<F, Fut>(prefix: &str, scenario: F) -> Result<()>
where
    F: FnOnce(Arc<LocalCluster>, Client, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if std::env::var_os("KUBECONFIG").is_some() {
        eprintln!("skipped: checks the local cluster's own kubelet, not a KUBECONFIG cluster");
        return Ok(());
    }
    let cluster = Arc::new(LocalCluster::start()?);
    let client = cluster.client().await?;
    let ns = namespace(&client, prefix).await?;
    if let Err(e) = scenario(cluster.clone(), client, ns).await {
        panic!("{e:#}");
    }
    Ok(())
}

pub fn pod(name: &str, spec: Value) -> Result<Pod> {
    Ok(serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec }),
    )?)
}

/// An echo container named `echo` serving on port 8080 (`http`), Ready once `/healthz`
/// answers (probed every second, the shortest period, so tests wait little), plus the fields
/// of `extra`.
pub fn echo_container(extra: Value) -> Value {
    let mut c = json!({ "name": "echo", "image": ECHO, "ports": [{ "name": "http", "containerPort": 8080 }],
        "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1 } });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// The status of the pod's first container.
pub fn status(p: &Pod) -> Result<&ContainerStatus> {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).context("no container status")
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until `check` accepts the Pod, reporting its last status when it never does.
pub async fn wait_pod<T>(pods: &Api<Pod>, name: &str, check: impl Fn(&Pod) -> Result<T>) -> Result<T> {
    eventually(POD_TIMEOUT, || async {
        let p = pods.get(name).await?;
        check(&p).with_context(|| format!("pod {name}: {}", serde_json::to_string(&p.status).unwrap_or_default()))
    })
    .await
}

/// `ip:8080` of the pod once it is Ready (the host routes to the pod network).
pub async fn ready_address(pods: &Api<Pod>, name: &str) -> Result<String> {
    wait_pod(pods, name, |p| {
        ensure!(is_ready(p), "not Ready");
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).context("no pod IP")?;
        Ok(format!("{ip}:8080"))
    })
    .await
}

/// GET on a fresh connection (the proxy balances connections, not requests): status and body.
pub async fn get(address: &str, path: &str) -> Result<(u16, String)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build()?;
    let response =
        client.get(format!("http://{address}{path}")).send().await.with_context(|| format!("GET {address}{path}"))?;
    Ok((response.status().as_u16(), response.text().await?))
}
