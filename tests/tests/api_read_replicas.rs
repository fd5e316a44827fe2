//! Read replicas with a real PostgreSQL streaming replica (`pg_basebackup`, hot standby on
//! loopback) behind PgBouncer: reads that may lag are answered by the standby (its statement log
//! shows them), writes only ever reach the primary, and reads fall back to the primary without
//! one failure when the standby stops or when its replay is paused past the lag bound.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use reqwest::StatusCode;
use riskplatform_tests::api::{ApiStack, Server};
use riskplatform_tests::http::{statement, ApiClient};
use riskplatform_tests::replica::Standby;
use serde_json::json;

/// The standby's log line of `companies::list`, a company read the API routes to replicas (a
/// single company is answered through the company cache, filled from the primary).
const COMPANY_READ: &str = "WHERE tenant_id = $1 AND (active OR $2)";
const COMPANY_LIST: &str = "/api/v1/companies";
/// The standby's log line of `predictions::latest`.
const LATEST_READ: &str = "FROM predictions WHERE tenant_id = $1 AND company_id = $2";

/// The API with a short probe interval (fallback within it) and a quick breaker recovery, so a
/// standby that comes back is used again within the test.
async fn serve(stack: &ApiStack, max_lag: &str) -> Result<Server> {
    let args = [
        "--replica-probe-interval-ms=500",
        &format!("--replica-max-lag-seconds={max_lag}"),
        "--breaker-recovery-seconds=1",
    ];
    stack.serve(&args).await
}

fn standby(stack: &ApiStack) -> &Standby {
    stack.standby.as_ref().expect("started with a standby")
}

/// One sample of a metric series (`name{labels}` exactly as exposed), None when absent.
async fn metric(server: &Server, series: &str) -> Result<Option<f64>> {
    let text = reqwest::get(format!("{}/metrics", server.url)).await?.text().await?;
    Ok(text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()))
}

const LAG: &str = "riskplatform_replica_lag_seconds{replica=\"risk_ro_0\"}";
const SERVING: &str = "riskplatform_replica_serving{replica=\"risk_ro_0\"}";
const READS_REPLICA: &str = "riskplatform_database_reads_total{target=\"risk_ro_0\"}";
const READS_PRIMARY: &str = "riskplatform_database_reads_total{target=\"primary\"}";

/// Waits until `series` satisfies `ok`; returns how long it took.
async fn wait_metric(server: &Server, series: &str, within: Duration, ok: impl Fn(f64) -> bool) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if metric(server, series).await?.is_some_and(&ok) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("{series} did not reach the expected value within {within:?}: {:?}", metric(server, series).await?);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_company(client: &ApiClient, symbol: &str) -> Result<String> {
    let r = client.post("/api/v1/companies", json!({"symbol": symbol, "name": "Replica plc"})).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    Ok(r.body["id"].as_str().context("company id")?.to_owned())
}

/// Waits until the standby has replayed a write (a moment after the primary's commit: the
/// primary commits asynchronously and flushes its WAL, which is what it streams, within ~0.6 s).
async fn replayed(standby: &Standby, count_sql: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while standby.psql(count_sql)? == "0" {
        if Instant::now() > deadline {
            bail!("the standby did not replay the write: {count_sql}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn read_until_visible(stack: &ApiStack, id: &str) -> Result<()> {
    replayed(standby(stack), &format!("SELECT count(*) FROM companies WHERE id = '{id}'")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_are_served_by_the_standby_and_writes_reach_only_the_primary() -> Result<()> {
    let stack = ApiStack::start_with_standby()?;
    let server = serve(&stack, "10").await?;
    let client = ApiClient::new(&server.url, Some(&stack.create_tenant("replica-bank")?));
    wait_metric(&server, SERVING, Duration::from_secs(10), |v| v == 1.0).await?;

    let id = create_company(&client, "REPL").await?;
    read_until_visible(&stack, &id).await?;
    let before = standby(&stack).log()?.matches(COMPANY_READ).count();
    for _ in 0..20 {
        let r = client.get(COMPANY_LIST).await?;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let on_standby = standby(&stack).log()?.matches(COMPANY_READ).count() - before;
    assert!(on_standby >= 20, "20 company reads, {on_standby} of them on the standby");
    assert!(metric(&server, READS_REPLICA).await?.unwrap_or(0.0) >= 20.0);

    // Writes: a statement and a prediction (the prediction writer's batch insert), then read
    // back on the replica path; the primary holds them and the standby was never asked to write.
    let mut body = statement(10.0);
    body["period"] = json!("2024");
    let st = client.post(&format!("/api/v1/companies/{id}/statements"), body).await?;
    assert_eq!(st.status, StatusCode::CREATED, "{}", st.text);
    let p = client.post(&format!("/api/v1/companies/{id}/predictions"), json!({"statement": statement(3.0)})).await?;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let sql = stack.sql().await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions").fetch_one(&sql).await?;
    assert_eq!(stored, 1);
    replayed(standby(&stack), "SELECT count(*) FROM predictions").await?;
    let latest = client.get(&format!("/api/v1/companies/{id}/predictions/latest")).await?;
    assert_eq!((latest.status, &latest.body["id"]), (StatusCode::OK, &p.body["id"]), "{}", latest.text);
    let log = standby(&stack).log()?;
    assert!(log.contains(LATEST_READ), "the latest prediction was read on the standby");
    for write in ["INSERT", "UPDATE", "DELETE", "read-only transaction"] {
        assert!(!log.contains(write), "the standby saw {write:?}:\n{log}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_fall_back_to_the_primary_without_a_failure_when_the_standby_stops() -> Result<()> {
    let mut stack = ApiStack::start_with_standby()?;
    let server = serve(&stack, "10").await?;
    let client = ApiClient::new(&server.url, Some(&stack.create_tenant("replica-bank")?));
    wait_metric(&server, SERVING, Duration::from_secs(10), |v| v == 1.0).await?;
    let id = create_company(&client, "STOP").await?;
    read_until_visible(&stack, &id).await?;

    let primary_before = metric(&server, READS_PRIMARY).await?.unwrap_or(0.0);
    stack.standby.as_mut().expect("standby").service.stop()?;
    let stopped = Instant::now();
    // Reads go on through the stop: every one must succeed, the first ones retried on the
    // primary after failing on the standby, the later ones sent to the primary directly.
    let (mut slowest, mut skipped_after) = (Duration::ZERO, None);
    for _ in 0..40 {
        let t = Instant::now();
        let r = client.get(COMPANY_LIST).await?;
        assert_eq!(r.status, StatusCode::OK, "a read failed with the standby stopped: {}", r.text);
        slowest = slowest.max(t.elapsed());
        if skipped_after.is_none() && metric(&server, SERVING).await? == Some(0.0) {
            skipped_after = Some(stopped.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let skipped_after = skipped_after.context("the stopped standby was never skipped")?;
    let on_primary = metric(&server, READS_PRIMARY).await?.unwrap_or(0.0) - primary_before;
    eprintln!("standby stopped: skipped after {skipped_after:?}, slowest read {slowest:?}");
    assert!(on_primary >= 40.0, "40 reads with the standby stopped, {on_primary} answered by the primary");

    // Back: the probe measures it again and reads return to it.
    stack.standby.as_mut().expect("standby").service.resume()?;
    wait_metric(&server, SERVING, Duration::from_secs(30), |v| v == 1.0).await?;
    let replica_before = metric(&server, READS_REPLICA).await?.unwrap_or(0.0);
    for _ in 0..5 {
        let r = client.get(COMPANY_LIST).await?;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert!(metric(&server, READS_REPLICA).await?.unwrap_or(0.0) - replica_before >= 5.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_lagging_past_the_bound_is_skipped_and_reads_see_the_latest_write() -> Result<()> {
    let stack = ApiStack::start_with_standby()?;
    // A 2 s bound instead of the default 10 s keeps the test short; the mechanism is the same.
    let server = serve(&stack, "2").await?;
    let client = ApiClient::new(&server.url, Some(&stack.create_tenant("replica-bank")?));
    let id = create_company(&client, "LAGS").await?;
    read_until_visible(&stack, &id).await?;
    wait_metric(&server, SERVING, Duration::from_secs(10), |v| v == 1.0).await?;
    // Caught up and idle: no lag, however old the last replayed commit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(metric(&server, LAG).await?, Some(0.0), "an idle, caught-up standby has no lag");

    standby(&stack).pause_replay()?;
    let p = client.post(&format!("/api/v1/companies/{id}/predictions"), json!({"statement": statement(4.0)})).await?;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    let written = Instant::now();
    let took = wait_metric(&server, LAG, Duration::from_secs(15), |v| v > 2.0).await?;
    wait_metric(&server, SERVING, Duration::from_secs(2), |v| v == 0.0).await?;
    let lag = metric(&server, LAG).await?.unwrap_or(0.0);
    eprintln!("replay paused: lag {lag:.1} s, above the 2 s bound {:?} after the write", written.elapsed() - took);
    // The standby has not replayed the prediction; the primary answers, so it is there.
    let primary_before = metric(&server, READS_PRIMARY).await?.unwrap_or(0.0);
    for _ in 0..5 {
        let latest = client.get(&format!("/api/v1/companies/{id}/predictions/latest")).await?;
        assert_eq!((latest.status, &latest.body["id"]), (StatusCode::OK, &p.body["id"]), "{}", latest.text);
    }
    assert!(metric(&server, READS_PRIMARY).await?.unwrap_or(0.0) - primary_before >= 5.0);
    let missing = standby(&stack).psql("SELECT count(*) FROM predictions")?;
    assert_eq!(missing, "0", "the paused standby does not have the prediction");

    standby(&stack).resume_replay()?;
    wait_metric(&server, LAG, Duration::from_secs(10), |v| v == 0.0).await?;
    wait_metric(&server, SERVING, Duration::from_secs(5), |v| v == 1.0).await?;
    let replica_before = metric(&server, READS_REPLICA).await?.unwrap_or(0.0);
    let latest = client.get(&format!("/api/v1/companies/{id}/predictions/latest")).await?;
    assert_eq!(latest.body["id"], p.body["id"], "{}", latest.text);
    assert!(metric(&server, READS_REPLICA).await?.unwrap_or(0.0) > replica_before);

    // Cut off from the primary, an idle standby has replayed all it received, yet cannot know
    // what it misses: its lag is the age of its last replayed commit, which passes the bound.
    standby(&stack).disconnect()?;
    wait_metric(&server, LAG, Duration::from_secs(15), |v| v > 2.0).await?;
    wait_metric(&server, SERVING, Duration::from_secs(2), |v| v == 0.0).await?;
    Ok(())
}
