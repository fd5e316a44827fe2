//! A local cluster whose pods run (kube-testenv + the local controller-manager and kubelet,
//! started by `scripts/local-cluster.sh`), or the cluster of KUBECONFIG when set; dumps the
//! components' and pods' logs when a test fails, and tears everything down on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use tempfile::TempDir;

use crate::cluster::{eventually, ASSETS_ENV};

/// The annotation where the local proxy records a Service's host ports (`80=39123,...`).
const HOST_PORTS_ANNOTATION: &str = "localcluster.riskplatform.io/host-ports";
/// How many trailing lines of each log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

pub struct LocalCluster {
    kubeconfig: PathBuf,
    /// The directory `up` ran in; None for a KUBECONFIG cluster this harness did not start.
    started: Option<TempDir>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-cluster.sh")
}

impl LocalCluster {
    /// The cluster of KUBECONFIG, or a new local cluster (binaries from this test's target dir).
    pub fn start() -> Result<Self> {
        Self::start_with(false)
    }

    /// Like `start`, with a Prometheus scraping the pods, the kubelet and kube-state-metrics.
    pub fn start_with_prometheus() -> Result<Self> {
        Self::start_with(true)
    }

    fn start_with(prometheus: bool) -> Result<Self> {
        if let Some(path) = std::env::var_os("KUBECONFIG") {
            return Ok(Self { kubeconfig: PathBuf::from(path), started: None });
        }
        let manager = crate::process::binary("local-controller-manager")?;
        let bin_dir = manager.parent().context("binary directory")?;
        let dir = tempfile::Builder::new().prefix("localcluster-").tempdir()?;
        let mut up = Command::new(script());
        up.arg("up").arg(dir.path()).env("LOCALCLUSTER_BIN_DIR", bin_dir);
        if prometheus {
            up.arg("--prometheus");
        }
        if let Some(assets) = std::env::var_os(ASSETS_ENV) {
            up.env(ASSETS_ENV, assets);
        }
        let out = up.output().context("running scripts/local-cluster.sh up")?;
        let cluster = Self { kubeconfig: dir.path().join("kube/kubeconfig"), started: Some(dir) };
        if !out.status.success() {
            cluster.dump_logs();
            bail!("local-cluster.sh up failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(cluster)
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// The Prometheus started with `start_with_prometheus`.
    pub fn prometheus_url(&self) -> Option<String> {
        let dir = self.started.as_ref()?;
        Some(std::fs::read_to_string(dir.path().join("prometheus.url")).ok()?.trim().to_owned())
    }

    /// The local controller-manager's kube-state-metrics endpoint.
    pub fn kube_state_metrics_url(&self) -> Option<String> {
        let dir = self.started.as_ref()?;
        let port = std::fs::read_to_string(dir.path().join("state/kube-state-metrics.port")).ok()?;
        Some(format!("http://127.0.0.1:{}/metrics", port.trim()))
    }

    /// Where the host reaches port `port` of a Service: its host port on 127.0.0.1, waited for
    /// until the proxy records it. Only a local cluster has one.
    pub async fn service_address(&self, client: &Client, namespace: &str, name: &str, port: u16) -> Result<SocketAddr> {
        if self.started.is_none() {
            bail!(
                "Service {namespace}/{name}: host ports exist only on a local cluster (use kubectl port-forward on {})",
                self.kubeconfig.display()
            );
        }
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        eventually(Duration::from_secs(30), || async {
            let svc = api.get(name).await?;
            let recorded = svc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HOST_PORTS_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let host_port = recorded
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .find(|(p, _)| p.trim() == port.to_string())
                .and_then(|(_, h)| h.trim().parse::<u16>().ok())
                .with_context(|| {
                    format!("Service {namespace}/{name} has no host port for {port} yet ({recorded:?})")
                })?;
            Ok(SocketAddr::from(([127, 0, 0, 1], host_port)))
        })
        .await
    }

    /// Runs `scripts/local-database.sh COMMAND DIR ARGS...` for this cluster's database: `up`
    /// starts a PostgreSQL the pods reach as `postgres.databases.svc:5432` (user and database
    /// `risk`), `secret NS NAME` writes its credentials Secret, `stop`/`start` stop and restart it.
    pub fn database(&self, command: &str, args: &[&str]) -> Result<()> {
        let dir = self.started.as_ref().context("a database exists only on a local cluster")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-database.sh");
        let out = Command::new(script).arg(command).arg(dir.path()).args(args).output()?;
        if !out.status.success() {
            bail!("local-database.sh {command} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The local database's password (for a test playing the database's administrator).
    pub fn database_password(&self) -> Result<String> {
        let dir = self.started.as_ref().context("a database exists only on a local cluster")?;
        let db = std::fs::read_to_string(dir.path().join("database.path")).context("no database is up")?;
        Ok(std::fs::read_to_string(Path::new(db.trim()).join("password"))?)
    }

    /// Prints the end of every component log and every container log under the state dir.
    /// Copies every log of the cluster (its components' and every container's) under `to`,
    /// keeping their paths below the cluster's directory; returns how many.
    pub fn save_logs(&self, to: &Path) -> Result<usize> {
        let Some(dir) = &self.started else { return Ok(0) };
        let mut logs = Vec::new();
        collect_logs(dir.path(), &mut logs);
        for path in &logs {
            let target = to.join(path.strip_prefix(dir.path())?);
            std::fs::create_dir_all(target.parent().context("a log's directory")?)?;
            std::fs::copy(path, &target)?;
        }
        Ok(logs.len())
    }

    pub fn dump_logs(&self) {
        let Some(dir) = &self.started else { return };
        let mut logs = Vec::new();
        collect_logs(dir.path(), &mut logs);
        logs.sort();
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("===== {} (last {LOG_TAIL_LINES} lines) =====", path.display());
            for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
                eprintln!("{line}");
            }
        }
    }
}

fn collect_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        // etcd's data and Prometheus' TSDB hold no logs worth a test's output.
        if path.is_dir() && !path.ends_with("prometheus-data") && !path.ends_with("etcd") {
            collect_logs(&path, out);
        } else if path.extension().is_some_and(|e| e == "log") {
            out.push(path);
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if let Some(dir) = &self.started {
            if dir.path().join("database.path").exists() {
                let _ = self.database("down", &[]);
            }
            let _ = Command::new(script()).arg("down").arg(dir.path()).output();
        }
    }
}
