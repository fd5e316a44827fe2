//! Benchmarks the prediction API on loopback against real PostgreSQL, PgBouncer and Redis, with
//! the release binaries as processes: req/s and p50/p95/p99 for a bare axum JSON endpoint (the
//! ceiling), a cached prediction, an uncached prediction (written to PostgreSQL) and a history
//! query, side by side in one run; the uncached prediction at a fixed 2,000 req/s; and a
//! 100,000-row bulk job with 3 workers.
//!
//! `cargo build --release --workspace --bins && target/release/api-bench [SECONDS]`

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use reqwest::Method;
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::{bulk_csv, statement, ApiClient};
use riskplatform_tests::load::{closed_loop, open_loop, Report, Spec};
use riskplatform_tests::process::{binary, ChildProcess};
use riskplatform_tests::prometheus::{free_port, http_ok};
use serde_json::json;

const CONNECTIONS: usize = 64;

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

#[tokio::main]
async fn main() -> Result<()> {
    let seconds: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let duration = Duration::from_secs(seconds);
    let stack = ApiStack::start()?;
    let key = stack.create_tenant("bench")?;

    let api_port = free_port()?;
    let _api = ChildProcess::spawn(
        stack
            .command(true)
            .arg("serve")
            .env("RISK_LISTEN_ADDR", format!("127.0.0.1:{api_port}"))
            .env("RISK_RATE_LIMIT_PER_SECOND", "1000000")
            .env("RISK_RATE_LIMIT_BURST", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    )?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_ready(&format!("{api}/health/ready")).await?;
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

    println!("\nClosed loop, {CONNECTIONS} connections, {seconds} s each, one after another in one run:\n");
    println!("| endpoint | req/s | p50 ms | p95 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let bare_url = format!("{bare}/echo");
    let body = cached_body.clone();
    let r = closed_loop(CONNECTIONS, duration, move |_| Spec {
        method: Method::POST,
        url: bare_url.clone(),
        key: None,
        body: Some(body.clone()),
    })
    .await;
    let ceiling = r.rate();
    row("bare axum JSON (ceiling)", &r);
    let (url, k, body) = (predictions.clone(), key.clone(), cached_body.clone());
    let r = closed_loop(CONNECTIONS, duration, move |_| Spec {
        method: Method::POST,
        url: url.clone(),
        key: Some(k.clone()),
        body: Some(body.clone()),
    })
    .await;
    let cached = r.rate();
    row("cached prediction", &r);
    let (url, k) = (predictions.clone(), key.clone());
    let r = closed_loop(CONNECTIONS, duration, move |n| Spec {
        method: Method::POST,
        url: url.clone(),
        key: Some(k.clone()),
        body: Some(json!({"statement": statement(n as f64)}).to_string()),
    })
    .await;
    row("uncached prediction (writes PostgreSQL)", &r);
    // The phases above inserted tens of thousands of predictions within seconds; autovacuum
    // would analyze the table soon after, so do it now rather than measure a planner without
    // statistics.
    sqlx::query("VACUUM ANALYZE predictions").execute(&stack.sql().await?).await?;
    let (url, k) = (format!("{predictions}?limit=50"), key.clone());
    let r = closed_loop(CONNECTIONS, duration, move |_| Spec {
        method: Method::GET,
        url: url.clone(),
        key: Some(k.clone()),
        body: None,
    })
    .await;
    row("history (50 newest of ~25,000)", &r);
    println!("\ncached / bare = {:.0} %", 100.0 * cached / ceiling);

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
