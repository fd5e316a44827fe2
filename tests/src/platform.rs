//! The whole product on a local cluster, the way a user runs it: Helm installs the chart (the
//! operator runs as a pod from its image), a PostgreSQL on the pod bridge plays the user's
//! database, `kubectl apply` creates the example RiskPlatform, and the platform is used only
//! through its Services' host ports.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use riskplatform_crd::RiskPlatform;
use serde_json::{json, Value};

use crate::cluster::eventually;
use crate::http::ApiClient;
use crate::localcluster::LocalCluster;

pub const OPERATOR_NAMESPACE: &str = "riskplatform-system";
pub const OPERATOR_RELEASE: &str = "rp";
/// The example platform's name and namespace (`examples/riskplatform.yaml`).
pub const PLATFORM: &str = "risk";
pub const NAMESPACE: &str = "default";
/// The API Service's port (the operator's `risk-api` Service, in front of the pods' 8080).
const API_PORT: u16 = 80;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

pub struct LivePlatform {
    pub cluster: LocalCluster,
    pub client: Client,
    /// The local Prometheus, on the pod bridge's gateway (pods and this host both reach it).
    pub prometheus: String,
}

impl LivePlatform {
    /// A local cluster with Prometheus and a database, and the operator installed by the chart
    /// with `values` over the chart's defaults; returns once the operator pod is Ready.
    pub async fn install(values: Value) -> Result<Self> {
        let cluster = LocalCluster::start_with_prometheus()?;
        let client = cluster.client().await?;
        let prometheus = cluster.prometheus_url().context("the local cluster has no Prometheus")?;
        cluster.database("up", &[])?;
        let platform = Self { cluster, client, prometheus };
        platform.helm(values)?;
        let operator = format!("{OPERATOR_RELEASE}-riskplatform-operator");
        platform.wait_deployment(OPERATOR_NAMESPACE, &operator, Duration::from_secs(120)).await?;
        Ok(platform)
    }

    /// `helm upgrade --install` of the chart with `values`, through the real Helm library.
    pub fn helm(&self, values: Value) -> Result<()> {
        let out = Command::new("python3")
            .arg(repo("tests/helm/install.py"))
            .args(["--kubeconfig", &self.cluster.kubeconfig().display().to_string()])
            .args(["--namespace", OPERATOR_NAMESPACE, "--release", OPERATOR_RELEASE])
            .args(["--values", &values.to_string()])
            .output()
            .context("running tests/helm/install.py (python3 with helm-sdkpy: scripts/install-deps.sh)")?;
        ensure!(out.status.success(), "helm install failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// Runs kubectl against this cluster with `stdin` as its input; returns stdout, or an error
    /// with kubectl's stderr (what a user would read).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.cluster.kubeconfig())
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        if let Some(input) = stdin {
            use std::io::Write as _;
            child.stdin.take().context("kubectl stdin")?.write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies `examples/riskplatform.yaml` as a user would, with the local database's real
    /// password in its Secret and the local Prometheus in its spec, then `spec` merged over the
    /// platform's spec. Returns when the apply was sent.
    pub async fn apply_example(&self, spec: Value) -> Result<Instant> {
        let text = std::fs::read_to_string(repo("examples/riskplatform.yaml"))?;
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut value: Value = serde::Deserialize::deserialize(doc)?;
            if value["kind"] == "RiskPlatform" {
                merge(&mut value["spec"], &json!({ "prometheus": { "url": self.prometheus } }));
                merge(&mut value["spec"], &spec);
                docs.push(value);
            }
        }
        ensure!(docs.len() == 1, "examples/riskplatform.yaml holds {} RiskPlatforms", docs.len());
        self.cluster.database("secret", &[NAMESPACE, "risk-db-credentials"])?;
        let started = Instant::now();
        self.kubectl(&["apply", "--validate=false", "-n", NAMESPACE, "-f", "-"], Some(&docs[0].to_string()))?;
        Ok(started)
    }

    pub fn platforms(&self) -> Api<RiskPlatform> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// The platform's condition of `kind` as (status, reason, message), if it has one.
    pub async fn condition(&self, kind: &str) -> Result<Option<(String, String, String)>> {
        let rp = self.platforms().get(PLATFORM).await?;
        let conditions = rp.status.map(|s| s.conditions).unwrap_or_default();
        Ok(conditions.into_iter().find(|c| c.type_ == kind).map(|c| (c.status, c.reason, c.message)))
    }

    /// Waits until the platform reports Ready=True for its current generation.
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        eventually(within, || async {
            let rp = self.platforms().get(PLATFORM).await?;
            let generation = rp.metadata.generation;
            let status = rp.status.context("no status yet")?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready").context("no Ready condition")?;
            ensure!(
                ready.status == "True" && ready.observed_generation == generation,
                "Ready={} ({}: {}) at generation {:?} of {generation:?}",
                ready.status,
                ready.reason,
                ready.message,
                ready.observed_generation
            );
            Ok(())
        })
        .await
    }

    /// Waits until a Deployment has all its replicas updated and Ready for its current spec.
    pub async fn wait_deployment(&self, namespace: &str, name: &str, within: Duration) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        eventually(within, || async {
            let d = api.get(name).await?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let s = d.status.clone().unwrap_or_default();
            ensure!(
                s.observed_generation >= d.metadata.generation
                    && s.updated_replicas == Some(want)
                    && s.ready_replicas == Some(want)
                    && s.replicas == Some(want),
                "Deployment {namespace}/{name} wants {want}: {s:?}"
            );
            Ok(())
        })
        .await
    }

    /// The platform's pods of one component (`api`, `worker`, `redis`, `pgbouncer`).
    pub async fn pods(&self, component: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let selector = format!("app.kubernetes.io/instance={PLATFORM},app.kubernetes.io/component={component}");
        Ok(api.list(&ListParams::default().labels(&selector)).await?.items)
    }

    /// The API as a client outside the cluster reaches it: its Service's host port.
    pub async fn api(&self, key: Option<&str>) -> Result<ApiClient> {
        let addr = self.cluster.service_address(&self.client, NAMESPACE, &format!("{PLATFORM}-api"), API_PORT).await?;
        Ok(ApiClient::new(&format!("http://{addr}"), key))
    }

    /// Creates a tenant the way the README tells a user to: a Secret with a key the user chose
    /// and the `examples/create-tenant.yaml` Job. Returns the key.
    pub async fn create_tenant(&self, within: Duration) -> Result<String> {
        // Two v4 UUIDs: 64 hex digits, 244 random bits, the form `admin create-tenant` accepts.
        let key = format!("rpk_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        self.kubectl(
            &["-n", NAMESPACE, "create", "secret", "generic", "acme-admin-key", &format!("--from-literal=key={key}")],
            None,
        )?;
        self.kubectl(
            &[
                "apply",
                "--validate=false",
                "-n",
                NAMESPACE,
                "-f",
                &repo("examples/create-tenant.yaml").display().to_string(),
            ],
            None,
        )?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), NAMESPACE);
        eventually(within, || async {
            let job = jobs.get("create-tenant-acme").await?;
            let status = job.status.unwrap_or_default();
            ensure!(status.succeeded == Some(1), "Job create-tenant-acme: {status:?}");
            Ok(())
        })
        .await?;
        Ok(key)
    }
}

/// Merges `patch` into `target` the way a JSON merge patch does (objects recursively, the rest
/// replaced).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}
