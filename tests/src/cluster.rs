//! A Kubernetes API server for tests: the cluster in KUBECONFIG when set, else a fresh
//! kube-testenv (a real apiserver over etcd, like envtest) started in a temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tempfile::TempDir;

/// Environment variable naming the directory with the API server's `start` and `stop` scripts,
/// as envtest's KUBEBUILDER_ASSETS names its binaries.
pub const ASSETS_ENV: &str = "RISKPLATFORM_KUBE_ASSETS";

/// A running API server, stopped on drop when this harness started it.
pub struct TestCluster {
    kubeconfig: PathBuf,
    started: Option<(PathBuf, TempDir)>,
}

fn default_assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/kube-testenv")
}

impl TestCluster {
    /// The cluster of KUBECONFIG, or a new local API server.
    pub fn start() -> Result<Self> {
        if let Some(path) = std::env::var_os("KUBECONFIG") {
            return Ok(Self { kubeconfig: PathBuf::from(path), started: None });
        }
        let assets = std::env::var_os(ASSETS_ENV).map(PathBuf::from).unwrap_or_else(default_assets);
        let dir = tempfile::Builder::new().prefix("kube-testenv-").tempdir()?;
        let out = Command::new(assets.join("start"))
            .arg(dir.path())
            .output()
            .with_context(|| format!("running {}/start (set {ASSETS_ENV} or KUBECONFIG)", assets.display()))?;
        if !out.status.success() {
            bail!("kube-testenv start failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { kubeconfig: dir.path().join("kubeconfig"), started: Some((assets, dir)) })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some((assets, dir)) = &self.started {
            let _ = Command::new(assets.join("stop")).arg(dir.path()).output();
        }
    }
}

/// Installs the committed RiskPlatform CRD and waits until the API server serves it.
pub async fn install_crd(client: &Client) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds").join(riskplatform_crd::CRD_FILE_NAME);
    let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().context("crd name")?;
    api.patch(&name, &PatchParams::apply("riskplatform-tests").force(), &Patch::Apply(&crd)).await?;
    eventually(Duration::from_secs(30), || async {
        let crd = api.get(&name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            Ok(())
        } else {
            bail!("CRD {name} not established")
        }
    })
    .await
}

/// Creates a namespace with a unique name for one test.
pub async fn namespace(client: &Client, prefix: &str) -> Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta { generate_name: Some(format!("{prefix}-")), ..Default::default() },
        ..Default::default()
    };
    let created = api.create(&PostParams::default(), &ns).await?;
    created.metadata.name.context("generated namespace name")
}

/// Creates a Secret with string values (stored base64 in `data`, as the API server expects).
pub async fn secret(client: &Client, namespace: &str, name: &str, values: &[(&str, &str)]) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        data: Some(values.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// Retries `check` every 100 ms until it succeeds or `timeout` passes; returns the last error.
pub async fn eventually<F, Fut, T>(timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A fresh namespace (named from `prefix`) on a cluster with the CRD installed and the `db`
/// credentials Secret the test platforms name: where every platform test starts.
pub async fn platform_namespace(client: &Client, prefix: &str) -> Result<String> {
    install_crd(client).await?;
    let ns = namespace(client, prefix).await?;
    secret(client, &ns, "db", &[("username", "risk"), ("password", "pw")]).await?;
    Ok(ns)
}

/// A RiskPlatform as the platform tests use it: the database `postgres.example/risk`, credentials
/// in the Secret `secret`, and `spec_extra`'s fields over the rest of the spec.
pub fn test_platform(
    name: &str,
    secret: &str,
    spec_extra: serde_json::Value,
) -> Result<riskplatform_crd::RiskPlatform> {
    let mut rp = serde_json::json!({
        "apiVersion": "riskplatform.io/v1alpha1",
        "kind": "RiskPlatform",
        "metadata": { "name": name },
        "spec": {
            "pgbouncer": {
                "database": { "host": "postgres.example", "name": "risk" },
                "credentialsSecretRef": { "name": secret }
            }
        }
    });
    for (k, v) in spec_extra.as_object().context("spec fields are an object")? {
        rp["spec"][k] = v.clone();
    }
    Ok(serde_json::from_value(rp)?)
}
