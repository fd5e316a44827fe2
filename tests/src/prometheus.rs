//! A real Prometheus server (Debian's `prometheus`) on a free loopback port, scraping the given
//! targets every second, with its storage in a temp dir.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::process::ChildProcess;

/// One scrape target with the labels Kubernetes service discovery would attach.
#[derive(Clone, Debug)]
pub struct Target {
    pub job: String,
    pub address: String,
    pub labels: Vec<(String, String)>,
}

pub struct Prometheus {
    pub url: String,
    _process: ChildProcess,
    _dir: TempDir,
}

/// A free TCP port on loopback (bound then released; the caller binds it right away).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(targets: &[Target]) -> String {
    let mut out = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n");
    for t in targets {
        out.push_str(&format!(
            "  - job_name: {job:?}\n    scrape_interval: 1s\n    static_configs:\n      - targets: [{addr:?}]\n        labels:\n",
            job = t.job,
            addr = t.address
        ));
        for (k, v) in &t.labels {
            out.push_str(&format!("          {k}: {v:?}\n"));
        }
        if t.labels.is_empty() {
            out.push_str("          source: \"test\"\n");
        }
    }
    out
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` and waits until it answers queries.
    pub async fn start(targets: &[Target]) -> Result<Self> {
        let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("prometheus is not installed: run scripts/install-deps.sh")?;
        let dir = tempfile::Builder::new().prefix("prometheus-").tempdir()?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config(targets))?;
        let port = free_port()?;
        let process = ChildProcess::spawn(
            Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(true) = http_ok(&ready).await {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("prometheus did not become ready at {url}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Self { url, _process: process, _dir: dir })
    }
}

/// A minimal HTTP/1.0 GET on loopback, enough for readiness checks without an HTTP client.
pub async fn http_ok(url: &str) -> Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".to_owned()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(head.starts_with(b"HTTP/1.0 200") || head.starts_with(b"HTTP/1.1 200"))
}

/// Prometheus' answer to an instant query, as (labels, value) pairs.
pub async fn instant_query(url: &str, query: &str) -> Result<Vec<(Value, f64)>> {
    let body: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await?
        .json()
        .await?;
    ensure!(body["status"] == "success", "query {query}: {body}");
    let result = body["data"]["result"].as_array().cloned().unwrap_or_default();
    Ok(result.into_iter().filter_map(|r| Some((r["metric"].clone(), r["value"][1].as_str()?.parse().ok()?))).collect())
}
