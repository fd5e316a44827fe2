//! Benchmarks the prediction API on loopback against real PostgreSQL, PgBouncer and Redis, with
//! the release binaries as processes: req/s and p50/p95/p99 for a bare axum JSON endpoint (the
//! ceiling), a cached prediction, an uncached prediction (written to PostgreSQL) and a history
//! query, side by side in one run (wrk); the uncached prediction at a fixed 2,000 req/s (this
//! crate's open-loop generator, which wrk lacks); and a 100,000-row bulk job with 3 workers.
//! HTTP caching and compression: history compressed (gzip) and revalidated (304), and with
//! `--baseline BINARY` the cached prediction against another build of `riskplatform-api` on the
//! same stack, alternated so that drift of the shared machine hits both alike.
//!
//! `cargo build --release --workspace --bins && target/release/api-bench [SECONDS] [--baseline BINARY]`

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use reqwest::Method;
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::{bulk_csv, statement, ApiClient};
use riskplatform_tests::load::{open_loop, Report, Spec};
use riskplatform_tests::process::{binary, ChildProcess};
use riskplatform_tests::prometheus::{free_port, http_ok};
use serde_json::json;

const CONNECTIONS: usize = 64;

#[derive(Parser)]
struct Args {
    /// Seconds per closed-loop phase and for the open-loop phase.
    #[arg(default_value_t = 10)]
    seconds: u64,
    /// Another `riskplatform-api` binary (for example a release build of an earlier commit) whose
    /// cached-prediction throughput is measured beside this build's.
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
    /// Rounds of the alternating comparison with `--baseline`.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Only the comparison with `--baseline` (no other phase).
    #[arg(long, requires = "baseline")]
    compare_only: bool,
}

async fn wait_ready(url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http_ok(url).await, Ok(true)) {
        if Instant::now() > deadline {
            bail!("{url} not ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn row(name: &str, r: &Report) {
    let errors = r.failed + r.statuses.iter().filter(|(s, _)| **s >= 400).map(|(_, n)| n).sum::<u64>();
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
        r.rate(),
        r.percentile_ms(0.50),
        r.percentile_ms(0.95),
        r.percentile_ms(0.99),
        errors
    );
}

/// Runs `riskplatform-api serve` from `command` on a free port with rate limits out of the way;
/// returns the process and its base URL once it is ready.
async fn serve(mut command: std::process::Command) -> Result<(ChildProcess, String)> {
    let port = free_port()?;
    let process = ChildProcess::spawn(
        command
            .arg("serve")
            .env("RISK_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("RISK_RATE_LIMIT_PER_SECOND", "1000000")
            .env("RISK_RATE_LIMIT_BURST", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    )?;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/health/ready")).await?;
    Ok((process, url))
}

/// The cached prediction on this build and on `baseline`, alternated `rounds` times.
#[allow(clippy::too_many_arguments)]
async fn compare(
    stack: &ApiStack,
    baseline: &std::path::Path,
    predictions: &str,
    api: &str,
    key: &str,
    body: &str,
    seconds: u64,
    rounds: u32,
) -> Result<()> {
    // The same environment as this build's server, another program.
    let ours_command = stack.command(true);
    let mut command = std::process::Command::new(baseline);
    command.envs(ours_command.get_envs().filter_map(|(k, v)| Some((k, v?)))).stdin(Stdio::null());
    let (_base, base_url) = serve(command).await?;
    let base_predictions = predictions.replacen(api, &base_url, 1);
    println!("\nCached prediction, this build against {} (alternated, {rounds} rounds):\n", baseline.display());
    println!("| endpoint | req/s | p50 ms | p95 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (mut ours, mut theirs) = (0.0, 0.0);
    for round in 1..=rounds {
        let a = wrk(predictions, "POST", Some(key), Some(body), seconds)?;
        wrk_row(&format!("this build, round {round}"), &a);
        let b = wrk(&base_predictions, "POST", Some(key), Some(body), seconds)?;
        wrk_row(&format!("baseline, round {round}"), &b);
        ours += a.rate;
        theirs += b.rate;
    }
    println!("\nthis build / baseline = {:.1} %", 100.0 * ours / theirs);
    Ok(())
}

/// One closed-loop run of wrk (C, two threads): an efficient client, so that on this 2-core
/// machine the server, not the load generator, is what runs out. `body` may contain `%d`, which
/// becomes a number unique per request (uncached predictions).
fn wrk(url: &str, method: &str, key: Option<&str>, body: Option<&str>, seconds: u64) -> Result<WrkResult> {
    wrk_with(url, method, key, body, &[], seconds)
}

/// [`wrk`] with extra request headers.
fn wrk_with(
    url: &str,
    method: &str,
    key: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
    seconds: u64,
) -> Result<WrkResult> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("bench.lua");
    let mut auth = key.map_or(String::new(), |k| format!("wrk.headers[\"Authorization\"] = \"Bearer {k}\"\n"));
    for (name, value) in headers {
        auth.push_str(&format!("wrk.headers[\"{name}\"] = [=[{value}]=]\n"));
    }
    let body = body.map_or("nil".to_owned(), |b| format!("[=[{b}]=]"));
    std::fs::write(
        &script,
        format!(
            r#"wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
{auth}local template = {body}
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("base", threads * 100000000) end
local n = 0
request = function()
  n = n + 1
  local b = template and string.gsub(template, "%%d", tostring((base or 0) + n)) or nil
  return wrk.format(nil, nil, nil, b)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"#
        ),
    )?;
    let out = std::process::Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s"), "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk (Debian package wrk; scripts/install-deps.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("wrk printed no result: {text}"))?;
    let v: Vec<f64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    Ok(WrkResult { rate: v[0] / (v[1] / 1e6), errors: v[2] + v[3], p50: v[4] / 1e3, p95: v[5] / 1e3, p99: v[6] / 1e3 })
}

struct WrkResult {
    rate: f64,
    errors: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

fn wrk_row(name: &str, r: &WrkResult) {
    println!("| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |", r.rate, r.p50, r.p95, r.p99, r.errors);
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let seconds = args.seconds;
    let duration = Duration::from_secs(seconds);
    let stack = ApiStack::start()?;
    let key = stack.create_tenant("bench")?;

    let (_api, api) = serve(stack.command(true)).await?;
    let bare_port = free_port()?;
    let _bare =
        ChildProcess::spawn(std::process::Command::new(binary("bare-axum")?).arg(format!("127.0.0.1:{bare_port}")))?;
    let bare = format!("http://127.0.0.1:{bare_port}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Seed: a company with 2,000 predictions of history (the uncached phase adds more).
    let c = ApiClient::new(&api, Some(&key));
    let company = c.post("/api/v1/companies", json!({"symbol": "BENCH", "name": "Bench Corp"})).await?;
    let company = company.body["id"].as_str().context("company id")?.to_owned();
    let predictions = format!("{api}/api/v1/companies/{company}/predictions");
    for n in 0..2000 {
        c.post(&format!("/api/v1/companies/{company}/predictions"), json!({"statement": statement(-1e6 - n as f64)}))
            .await?;
    }

    let cached_body = json!({"statement": statement(42.0)}).to_string();
    c.post(&format!("/api/v1/companies/{company}/predictions"), serde_json::from_str(&cached_body)?).await?;
    if let (true, Some(baseline)) = (args.compare_only, &args.baseline) {
        return compare(&stack, baseline, &predictions, &api, &key, &cached_body, seconds, args.rounds).await;
    }

    println!("\nClosed loop with wrk (2 threads, {CONNECTIONS} connections), {seconds} s each, one after another in one run:\n");
    println!("| endpoint | req/s | p50 ms | p95 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let ceiling = wrk(&format!("{bare}/echo"), "POST", None, Some(&cached_body), seconds)?;
    wrk_row("bare axum JSON (ceiling)", &ceiling);
    let cached = wrk(&predictions, "POST", Some(&key), Some(&cached_body), seconds)?;
    wrk_row("cached prediction", &cached);
    let unique = json!({"statement": statement(0.0)}).to_string().replace("\"ebit\":0.0", "\"ebit\":%d");
    let uncached = wrk(&predictions, "POST", Some(&key), Some(&unique), seconds)?;
    wrk_row("uncached prediction (writes PostgreSQL)", &uncached);
    // The phases above inserted tens of thousands of predictions within seconds; autovacuum
    // would analyze the table soon after, so do it now rather than measure a planner without
    // statistics.
    sqlx::query("VACUUM ANALYZE predictions").execute(&stack.sql().await?).await?;
    let history = wrk(&format!("{predictions}?limit=50"), "GET", Some(&key), None, seconds)?;
    wrk_row("history (50 newest)", &history);
    println!("\ncached / bare = {:.0} %", 100.0 * cached.rate / ceiling.rate);

    let history_url = format!("{predictions}?limit=50");
    let first = reqwest::Client::new().get(&history_url).bearer_auth(&key).send().await?;
    let etag = first.headers().get("etag").and_then(|v| v.to_str().ok()).context("history has an ETag")?.to_owned();
    let plain_size = first.bytes().await?.len();
    println!("\nHTTP caching and compression on the history answer ({plain_size} bytes uncompressed):\n");
    println!("| endpoint | req/s | p50 ms | p95 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let gzip = wrk_with(&history_url, "GET", Some(&key), None, &[("Accept-Encoding", "gzip")], seconds)?;
    wrk_row("history (50 newest), gzip", &gzip);
    let not_modified = wrk_with(&history_url, "GET", Some(&key), None, &[("If-None-Match", &etag)], seconds)?;
    wrk_row("history (50 newest), If-None-Match: 304", &not_modified);

    if let Some(baseline) = &args.baseline {
        compare(&stack, baseline, &predictions, &api, &key, &cached_body, seconds, args.rounds).await?;
    }

    println!("\nOpen loop at 2,000 req/s for {seconds} s, uncached predictions:\n");
    println!("| endpoint | req/s | p50 ms | p95 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (url, k) = (predictions.clone(), key.clone());
    let r = open_loop(2000.0, duration, move |n| Spec {
        method: Method::POST,
        url: url.clone(),
        key: Some(k.clone()),
        body: Some(json!({"statement": statement(5e6 + n as f64)}).to_string()),
    })
    .await;
    row("uncached prediction @ 2,000 req/s", &r);

    println!("\nBulk job: 100,000 rows, 3 workers (concurrency 2 each):\n");
    let workers: Vec<ChildProcess> =
        (0..3).map(|i| stack.worker(&format!("bench-{i}"), &[("RUST_LOG", "warn")])).collect::<Result<_>>()?;
    let csv = bulk_csv(100_000, None);
    let started = Instant::now();
    let accepted = c.upload(csv, "").await?;
    let accepted_after = started.elapsed();
    let job = accepted.body["id"].as_str().context("job id")?.to_owned();
    loop {
        let s = c.get(&format!("/api/v1/jobs/{job}")).await?;
        match s.body["status"].as_str() {
            Some("completed") => break,
            Some("failed") => bail!("bulk job failed: {}", s.text),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("bulk job not done after 300 s: {}", s.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    println!(
        "upload accepted (202) after {:.2} s; all 100,000 rows scored and stored after {:.2} s ({:.0} rows/s)",
        accepted_after.as_secs_f64(),
        total.as_secs_f64(),
        100_000.0 / total.as_secs_f64()
    );
    drop(workers);
    Ok(())
}
