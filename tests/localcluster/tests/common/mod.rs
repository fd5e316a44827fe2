//! Shared setup of the controller tests: a fresh kube-testenv, the controllers running in this
//! process, and a kwok-like stand-in for the kubelet that writes pod status.
#![allow(dead_code)] // each test binary uses part of the helpers

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tempfile::TempDir;

/// A kube-testenv of its own (never the KUBECONFIG cluster: these controllers would fight a
/// real controller-manager), stopped on drop, with the local controllers running against it.
pub struct Env {
    pub client: Client,
    pub namespace: String,
    assets: PathBuf,
    dir: TempDir,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.controllers.abort();
        let _ = Command::new(self.assets.join("stop")).arg(self.dir.path()).output();
    }
}

fn assets() -> PathBuf {
    std::env::var_os("RISKPLATFORM_KUBE_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kube-testenv"))
}

pub async fn start(prefix: &str) -> Result<Env> {
    let assets = assets();
    let dir = tempfile::Builder::new().prefix("lc-ctrl-").tempdir()?;
    let out = Command::new(assets.join("start"))
        .arg(dir.path())
        .output()
        .with_context(|| format!("running {}/start", assets.display()))?;
    if !out.status.success() {
        bail!("kube-testenv start failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let client = riskplatform_localcluster::manager::client(&dir.path().join("kubeconfig")).await?;
    let namespace = riskplatform_tests::cluster::namespace(&client, prefix).await?;
    let controllers = tokio::spawn(riskplatform_localcluster::controllers::run(client.clone()));
    Ok(Env { client, namespace, assets, dir, controllers })
}

pub fn kubeconfig(env: &Env) -> PathBuf {
    env.dir.path().join("kubeconfig")
}

/// Writes the status a kubelet writes for a started pod: Running, Ready since now, an IP.
pub async fn mark_ready(client: &Client, namespace: &str, pod: &str, ip: &str) -> Result<()> {
    set_ready(client, namespace, pod, ip, true).await
}

pub async fn set_ready(client: &Client, namespace: &str, pod: &str, ip: &str, ready: bool) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let now = Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    let patch = json!({ "status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{ "ip": ip }],
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
            { "type": "Ready", "status": status, "lastTransitionTime": now },
            { "type": "ContainersReady", "status": status, "lastTransitionTime": now },
        ],
    }});
    api.patch_status(pod, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// Ends a pod the way a kubelet reports a finished container: phase Succeeded or Failed.
pub async fn finish(client: &Client, namespace: &str, pod: &str, succeeded: bool) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "status": { "phase": if succeeded { "Succeeded" } else { "Failed" } } });
    api.patch_status(pod, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// A stand-in kubelet, as kwok runs: every scheduled pod of the namespace becomes Running and
/// Ready `delay` after it is first seen, with an IP of 10.244.250.0/24 by order of arrival.
pub fn fake_kubelet(client: Client, namespace: String, delay: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let mut seen: std::collections::BTreeMap<String, tokio::time::Instant> = Default::default();
        let mut next_ip = 2u8;
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for pod in list.items {
                    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                    if !scheduled || ready || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let first = *seen.entry(pod.name_any()).or_insert_with(tokio::time::Instant::now);
                    if first.elapsed() >= delay {
                        let ip = format!("10.244.250.{next_ip}");
                        next_ip = next_ip.wrapping_add(1).max(2);
                        let _ = mark_ready(&client, &namespace, &pod.name_any(), &ip).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

pub async fn pods(client: &Client, namespace: &str) -> Result<Vec<Pod>> {
    Ok(Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?.items)
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub use riskplatform_tests::cluster::eventually;
