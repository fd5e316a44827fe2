//! Measures the operator on a real API server with `--platforms N` RiskPlatforms: the time for
//! the real operator process to converge every platform from an empty cluster and its RSS
//! after sync; full reconcile latency (p50/p99, first and steady state) and the API requests
//! each reconcile sends; one breaker + autoscaler evaluation of every platform against a real
//! Prometheus (empty: it measures the queries and the loop, not the policy).
//!
//! `cargo build --workspace --bins && target/debug/operator-bench --platforms 50`
//! (or `--release` for both).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use clap::Parser;
use kube::api::PostParams;
use kube::Api;
use riskplatform_crd::RiskPlatform;
use riskplatform_operator::context::Context;
use riskplatform_operator::metrics::Metrics;
use riskplatform_tests::cluster::{eventually, platform_namespace, TestCluster};
use riskplatform_tests::prometheus::Prometheus;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// RiskPlatforms the operator process converges (13 children each).
    #[arg(long, default_value_t = 50)]
    platforms: usize,
    /// Platforms whose reconciles are timed in-process (first and steady state each).
    #[arg(long, default_value_t = 100)]
    sample: usize,
}

/// Longest wait for every platform to converge; the goal is 120 s at 1,000 platforms.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(600);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn operator_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("exe dir")?.join("riskplatform-operator");
    ensure!(bin.exists(), "{} missing: build the operator binary with the same profile first", bin.display());
    Ok(bin)
}

/// A `/proc/PID/status` figure in KiB: `VmRSS` now, `VmHWM` the peak so far.
fn proc_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).context("no such field")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// CPU seconds (user + system, every thread) the process has used: `/proc/PID/stat`'s utime and
/// stime, in USER_HZ ticks, which Linux fixes at 100 a second for this interface.
fn proc_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are space-separated numbers.
    let rest = &stat[stat.rfind(')').context("no command name")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3, the state.
    let ticks: u64 =
        fields.get(11).context("utime")?.parse::<u64>()? + fields.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

async fn create_platforms(api: &Api<RiskPlatform>, n: usize, prometheus: &str) -> Result<()> {
    for i in 0..n {
        let rp: RiskPlatform = serde_json::from_value(json!({
            "apiVersion": "riskplatform.io/v1alpha1", "kind": "RiskPlatform",
            "metadata": { "name": format!("risk-{i}") },
            "spec": {
                "pgbouncer": {
                    "database": { "host": "postgres.example", "name": "risk" },
                    "credentialsSecretRef": { "name": "db" } },
                "prometheus": { "url": prometheus } }
        }))?;
        api.create(&PostParams::default(), &rp).await?;
    }
    Ok(())
}

/// API requests counted so far, by (verb, kind).
type Requests = BTreeMap<(String, String), f64>;

/// The request counters in a metrics exposition (in-process or scraped from the operator).
fn requests_in(text: &str) -> Result<Requests> {
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).map(str::to_owned)
    };
    let mut requests = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("riskplatform_operator_api_requests_total{")) {
        let verb = label(line, "verb").context("verb")?;
        let kind = label(line, "kind").context("kind")?;
        let value: f64 = line.rsplit(' ').next().context("value")?.parse()?;
        *requests.entry((verb, kind)).or_insert(0.0) += value;
    }
    Ok(requests)
}

fn requests_by_verb(metrics: &Metrics) -> Result<Requests> {
    requests_in(&metrics.encode()?)
}

const WRITES: [&str; 4] = ["create", "update", "patch", "delete"];

/// (GETs, LISTs, writes) sent between two snapshots.
fn delta(before: &Requests, after: &Requests) -> (f64, f64, f64) {
    let d = |verb: &str| {
        after
            .iter()
            .filter(|((v, _), _)| v == verb)
            .map(|(k, n)| n - before.get(k).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    (d("get"), d("list"), WRITES.iter().map(|v| d(v)).sum())
}

/// Writes between two snapshots by `verb kind`, largest first, for the breakdown lines.
fn writes_by_kind(before: &Requests, after: &Requests) -> String {
    let mut writes: Vec<(String, f64)> = after
        .iter()
        .filter(|((verb, _), _)| WRITES.contains(&verb.as_str()))
        .map(|(k, n)| (format!("{} {}", k.0, k.1), n - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    writes.sort_by(|a, b| b.1.total_cmp(&a.1));
    writes.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
}

/// The value of an unlabelled counter in a metrics exposition.
fn counter_in(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

struct Pass {
    latencies: Vec<Duration>,
    gets: f64,
    lists: f64,
    writes: f64,
}

async fn reconcile_pass(ctx: &Arc<Context>, metrics: &Metrics, api: &Api<RiskPlatform>, n: usize) -> Result<Pass> {
    let before = requests_by_verb(metrics)?;
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let rp = Arc::new(api.get(&format!("risk-{i}")).await?);
        let start = Instant::now();
        riskplatform_operator::controller::reconcile(rp, ctx.clone()).await?;
        latencies.push(start.elapsed());
    }
    let (gets, lists, writes) = delta(&before, &requests_by_verb(metrics)?);
    latencies.sort();
    Ok(Pass { latencies, gets, lists, writes })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let n = args.platforms;
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let prometheus = Prometheus::start(&[]).await?;

    // 1. The operator process converges N platforms from an empty namespace.
    let converge_ns = platform_namespace(&client, "bench-converge").await?;
    let converge_api: Api<RiskPlatform> = Api::namespaced(client.clone(), &converge_ns);
    create_platforms(&converge_api, n, &prometheus.url).await?;
    let admin = format!("127.0.0.1:{}", riskplatform_tests::prometheus::free_port()?);
    let mut child = std::process::Command::new(operator_binary()?)
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RISK_OPERATOR_LISTEN_ADDR", &admin)
        .env("RISK_OPERATOR_NAMESPACE", &converge_ns)
        .env("RISK_OPERATOR_LEADER_ELECTION", "false")
        .env("RUST_LOG", "warn")
        .spawn()?;
    let started = Instant::now();
    let converged = eventually(CONVERGE_TIMEOUT, || async {
        let list = converge_api.list(&Default::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|rp| rp.status.as_ref().and_then(|s| s.observed_generation) == rp.metadata.generation)
            .count();
        ensure!(done == n, "{done}/{n} converged");
        Ok(started.elapsed())
    })
    .await;
    let scraped =
        async { Ok::<_, anyhow::Error>(reqwest::get(format!("http://{admin}/metrics")).await?.text().await?) };
    let scraped = scraped.await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = proc_kib(child.id(), "VmRSS:");
    let peak = proc_kib(child.id(), "VmHWM:");
    let anon = proc_kib(child.id(), "RssAnon:");
    let cpu = proc_cpu_seconds(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let converged = converged?;
    let scraped = scraped?;
    let convergence = Convergence {
        took: converged,
        rss_mib: rss? as f64 / 1024.0,
        peak_mib: peak? as f64 / 1024.0,
        anon_mib: anon? as f64 / 1024.0,
        cpu_seconds: cpu?,
        reconciles: counter_in(&scraped, "riskplatform_operator_reconcile_runs_total"),
        requests: requests_in(&scraped)?,
    };

    // 2. Reconciles in-process, with caches over the whole cluster (the N converged platforms
    // and their children included): first reconciles of fresh platforms, then steady-state
    // reconciles of converged ones.
    let metrics = Arc::new(Metrics::default());
    let counted = riskplatform_operator::client::counting(client.clone(), metrics.api.clone());
    let ctx = Arc::new(Context::new(counted, metrics.clone(), None, None));
    ctx.take_feeds().context("feeds")?.spawn();
    ctx.caches.synced().await;
    let sample = args.sample.min(n);
    let first_ns = platform_namespace(&client, "bench-first").await?;
    let first_api: Api<RiskPlatform> = Api::namespaced(client.clone(), &first_ns);
    create_platforms(&first_api, sample, &prometheus.url).await?;
    let first = reconcile_pass(&ctx, &metrics, &first_api, sample).await?;
    // A fresh process applies each owned Secret once (only its metadata is cached, so it cannot
    // tell an edit from its own write); the pass after that is the steady state.
    let restarted = reconcile_pass(&ctx, &metrics, &converge_api, sample).await?;
    let steady = reconcile_pass(&ctx, &metrics, &converge_api, sample).await?;

    // 3. One evaluation of the breakers and the autoscaler over all N converged platforms.
    // Each evaluation reads the platforms as the one before left them, as the next tick would.
    let mut evaluations = Vec::new();
    for _ in 0..2 {
        let store = Api::<RiskPlatform>::namespaced(client.clone(), &converge_ns).list(&Default::default()).await?;
        let platforms: Vec<Arc<RiskPlatform>> = store.items.into_iter().map(Arc::new).collect();
        let queries_before = query_count(&metrics)?;
        let before = requests_by_verb(&metrics)?;
        let start = Instant::now();
        riskplatform_operator::autoscale::evaluate_all(&ctx, &platforms).await;
        let elapsed = start.elapsed();
        let queries = query_count(&metrics)? - queries_before;
        let after = requests_by_verb(&metrics)?;
        evaluations.push(Evaluation {
            elapsed,
            queries,
            requests: delta(&before, &after),
            writes: writes_by_kind(&before, &after),
        });
    }

    let passes = [
        ("first reconcile (creates 13 children)", &first),
        ("first reconcile after a restart", &restarted),
        ("steady-state reconcile", &steady),
    ];
    print_table(n, sample, &passes, &convergence, &evaluations);
    Ok(())
}

fn query_count(metrics: &Metrics) -> Result<f64> {
    let text = metrics.encode()?;
    let mut total = 0.0;
    for line in text.lines().filter(|l| l.starts_with("riskplatform_operator_autoscaler_prometheus_queries_total{")) {
        total += line.rsplit(' ').next().context("value")?.parse::<f64>()?;
    }
    Ok(total)
}

/// The operator process's convergence of every platform: time, memory and what it sent.
struct Convergence {
    took: Duration,
    rss_mib: f64,
    peak_mib: f64,
    /// The heap and stacks; the rest of the RSS is the binary's mapped code and data.
    anon_mib: f64,
    /// From the start to the RSS sample, 5 s after the last platform converged.
    cpu_seconds: f64,
    reconciles: f64,
    requests: Requests,
}

struct Evaluation {
    elapsed: Duration,
    queries: f64,
    requests: (f64, f64, f64),
    writes: String,
}

fn print_table(
    n: usize,
    sample: usize,
    passes: &[(&str, &Pass)],
    convergence: &Convergence,
    evaluations: &[Evaluation],
) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per = |x: f64| x / sample as f64;
    println!("operator-bench on kube-testenv: {n} platforms ({} children)", n * 13);
    println!("| figure | value |");
    println!("|---|---|");
    for (label, pass) in passes {
        println!(
            "| {label}, p50 / p99 over {sample} | {:.1} ms / {:.1} ms |",
            ms(percentile(&pass.latencies, 0.5)),
            ms(percentile(&pass.latencies, 0.99))
        );
        println!(
            "| {label}, API requests each | {:.2} GET, {:.2} LIST, {:.2} writes |",
            per(pass.gets),
            per(pass.lists),
            per(pass.writes)
        );
    }
    let c = convergence;
    println!(
        "| operator RSS after sync (peak) | {:.1} MiB ({:.1} MiB), {:.1} MiB of it anonymous |",
        c.rss_mib, c.peak_mib, c.anon_mib
    );
    println!("| all {n} platforms converged from empty | {:.1} s |", c.took.as_secs_f64());
    println!("| operator CPU from start to 5 s after convergence | {:.2} s |", c.cpu_seconds);
    let (gets, lists, writes) = delta(&Requests::new(), &c.requests);
    println!(
        "| convergence: reconciles, API requests | {} reconciles; {gets} GET, {lists} LIST, {writes} writes ({}) |",
        c.reconciles,
        writes_by_kind(&Requests::new(), &c.requests)
    );
    for (i, e) in evaluations.iter().enumerate() {
        let which = if i == 0 { "first" } else { "next" };
        let (gets, lists, writes) = e.requests;
        println!("| {which} breaker + autoscaler evaluation of {n} platforms | {:.0} ms |", ms(e.elapsed));
        println!(
            "| {which} evaluation: Prometheus queries, API requests | {} queries; {gets} GET, {lists} LIST, {writes} writes ({}) |",
            e.queries, e.writes
        );
    }
}
