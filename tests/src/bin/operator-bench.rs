//! Measures the operator on a real API server: full reconcile latency (p50/p99 over 100
//! reconciles, first and steady-state) and the operator process's RSS with 50 RiskPlatforms.
//!
//! `cargo run --release -p riskplatform-tests --bin operator-bench` (builds the operator binary too).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use kube::api::PostParams;
use kube::Api;
use riskplatform_crd::RiskPlatform;
use riskplatform_operator::context::Context;
use riskplatform_operator::metrics::Metrics;
use riskplatform_tests::cluster::{eventually, platform_namespace, TestCluster};
use serde_json::json;

const PLATFORMS: usize = 50;
const RECONCILES: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn operator_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("exe dir")?;
    let bin = dir.join("riskplatform-operator");
    ensure!(bin.exists(), "{} missing: run `cargo build --release -p riskplatform-operator` first", bin.display());
    Ok(bin)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let ns = platform_namespace(&client, "bench").await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    for i in 0..PLATFORMS {
        let rp: RiskPlatform = serde_json::from_value(json!({
            "apiVersion": "riskplatform.io/v1alpha1", "kind": "RiskPlatform",
            "metadata": { "name": format!("risk-{i}") },
            "spec": { "pgbouncer": {
                "database": { "host": "postgres.example", "name": "risk" },
                "credentialsSecretRef": { "name": "db" } } }
        }))?;
        api.create(&PostParams::default(), &rp).await?;
    }

    // Reconcile latency, in-process through the library's reconcile function.
    let ctx = Arc::new(Context::new(client.clone(), Arc::new(Metrics::default()), Some(ns.clone()), None));
    let mut first = Vec::new();
    let mut steady = Vec::new();
    for i in 0..RECONCILES {
        let rp = Arc::new(api.get(&format!("risk-{}", i % PLATFORMS)).await?);
        let start = Instant::now();
        riskplatform_operator::controller::reconcile(rp, ctx.clone()).await?;
        if i < PLATFORMS {
            first.push(start.elapsed())
        } else {
            steady.push(start.elapsed())
        }
    }
    first.sort();
    steady.sort();
    let mut all: Vec<Duration> = first.iter().chain(steady.iter()).copied().collect();
    all.sort();
    println!("full reconcile latency on kube-testenv ({RECONCILES} reconciles over {PLATFORMS} platforms):");
    println!("| reconciles | n | p50 | p99 |");
    println!("|---|---|---|---|");
    for (label, d) in [("first (creates 13 children)", &first), ("steady state (no change)", &steady), ("all", &all)] {
        println!(
            "| {label} | {} | {:.1} ms | {:.1} ms |",
            d.len(),
            percentile(d, 0.5).as_secs_f64() * 1e3,
            percentile(d, 0.99).as_secs_f64() * 1e3
        );
    }

    // RSS of the real operator process watching all 50 platforms and their children.
    let mut child = std::process::Command::new(operator_binary()?)
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RISK_OPERATOR_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .spawn()?;
    let synced = eventually(Duration::from_secs(120), || async {
        let list = api.list(&Default::default()).await?;
        let done =
            list.items.iter().filter(|rp| rp.status.as_ref().and_then(|s| s.observed_generation).is_some()).count();
        ensure!(done == PLATFORMS, "{done}/{PLATFORMS} reconciled");
        Ok(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    synced?;
    println!(
        "operator RSS with {PLATFORMS} RiskPlatforms ({} children) after sync: {:.1} MiB",
        PLATFORMS * 13,
        rss? as f64 / 1024.0
    );
    Ok(())
}
