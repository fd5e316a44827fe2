//! Fault injection with real components: PgBouncer, then PostgreSQL, stopped under load. The
//! API's database breaker opens within 5 failed calls, cached predictions keep answering 200,
//! writes answer 503 with Retry-After (never 500), and after the restart the breaker goes
//! half-open once its (shortened) recovery timeout passed, then closed; an accepted bulk job is
//! not lost.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use reqwest::{Method, StatusCode};
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::{bulk_csv, metric, metrics, statement, ApiClient};
use riskplatform_tests::load::{closed_loop, Report, Spec};
use serde_json::json;

async fn database_breaker(url: &str) -> Result<f64> {
    Ok(metric(&metrics(url).await?, "riskplatform_circuit_breaker_state{dependency=\"database\"}").unwrap_or(-1.0))
}

async fn database_failures(url: &str) -> Result<f64> {
    Ok(metric(&metrics(url).await?, "riskplatform_dependency_failures_total{dependency=\"database\"}").unwrap_or(0.0))
}

fn no_server_errors(name: &str, r: &Report) {
    let bad: Vec<_> = r.statuses.iter().filter(|(s, _)| **s >= 500 && **s != 503).collect();
    assert!(bad.is_empty() && r.failed == 0, "{name}: {:?}, {} transport failures", r.statuses, r.failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_opens_serves_the_cache_refuses_writes_and_recovers() -> Result<()> {
    let mut stack = ApiStack::start()?;
    let server = stack
        .serve(&[
            "--breaker-recovery-seconds=2",
            "--acquire-timeout-ms=300",
            "--rate-limit-per-second=1000000",
            "--rate-limit-burst=1000000",
        ])
        .await?;
    let key = stack.create_tenant("faults")?;
    let c = ApiClient::new(&server.url, Some(&key));
    let company = c.post("/api/v1/companies", json!({"symbol": "FLT", "name": "Fault Ltd"})).await?;
    let company = company.body["id"].as_str().expect("id").to_owned();
    let predictions = format!("/api/v1/companies/{company}/predictions");
    let cached = json!({"statement": statement(42.0)});
    assert_eq!(c.post(&predictions, cached.clone()).await?.status, StatusCode::CREATED);
    let rows = 20_000;
    let job = c.upload(bulk_csv(rows, None), "").await?;
    assert_eq!(job.status, StatusCode::ACCEPTED);
    let job = job.body["id"].as_str().expect("job").to_owned();
    let _worker =
        stack.worker("steady", &[("RISK_BREAKER_RECOVERY_SECONDS", "2"), ("RISK_DB_ACQUIRE_TIMEOUT_MS", "300")])?;

    // Load that only the cache can serve, all through the outage.
    let url = format!("{}{predictions}", server.url);
    let (body, k) = (cached.to_string(), key.clone());
    let load = tokio::spawn(closed_loop(4, Duration::from_secs(12), move |_| Spec {
        method: Method::POST,
        url: url.clone(),
        key: Some(k.clone()),
        body: Some(body.clone()),
    }));

    // PgBouncer goes away: count the failed calls until the breaker opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failures_before = database_failures(&server.url).await?;
    stack.pgbouncer.service.stop()?;
    let mut writes = Vec::new();
    let mut n = 0.0;
    while database_breaker(&server.url).await? != 1.0 {
        n += 1.0;
        let r = c.post(&predictions, json!({"statement": statement(1000.0 + n)})).await?;
        writes.push(r.status);
        assert!(writes.len() <= 10, "breaker still closed after {writes:?}");
    }
    let calls_until_open = database_failures(&server.url).await? - failures_before;
    eprintln!("calls until the breaker opened: {calls_until_open} (write statuses {writes:?})");
    assert!(calls_until_open <= 5.0, "opened within 5 failed calls, took {calls_until_open}");
    assert!(writes.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE));

    // Open: writes fail fast with Retry-After; reads of the database too; uploads are refused.
    let started = Instant::now();
    let refused = c.post(&predictions, json!({"statement": statement(7777.0)})).await?;
    assert!(started.elapsed() < Duration::from_millis(200), "failed fast");
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    assert!(
        refused.retry_after.as_deref().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| (1..=2).contains(&s)),
        "{refused:?}"
    );
    assert_eq!(c.get("/api/v1/companies").await?.status, StatusCode::SERVICE_UNAVAILABLE);
    // A company the cache holds (the predictions read it) is still answered from there.
    assert_eq!(c.get(&format!("/api/v1/companies/{company}")).await?.status, StatusCode::OK);
    assert_eq!(
        c.upload(bulk_csv(10, None), "").await?.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not accepted, so not lost"
    );
    let ready = c.get("/health/ready").await?;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"][0]["breaker"], "Open", "{}", ready.text);

    // PgBouncer back but PostgreSQL down: probes fail and the breaker re-opens.
    stack.postgres.service.stop()?;
    stack.pgbouncer.service.resume()?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let probe = c.post(&predictions, json!({"statement": statement(8888.0)})).await?;
    assert_eq!(probe.status, StatusCode::SERVICE_UNAVAILABLE, "{}", probe.text);
    assert_eq!(database_breaker(&server.url).await?, 1.0, "a failed probe re-opens");

    // PostgreSQL back: half-open after the recovery timeout, closed after the probes.
    stack.postgres.service.resume()?;
    let restarted = Instant::now();
    let mut n = 0.0;
    let mut saw_half_open = false;
    loop {
        n += 1.0;
        let r = c.post(&predictions, json!({"statement": statement(9000.0 + n)})).await?;
        assert_ne!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
        let state = database_breaker(&server.url).await?;
        saw_half_open |= state == 2.0;
        if state == 0.0 && r.status == StatusCode::CREATED {
            break;
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            bail!("breaker not closed 30 s after the restart (state {state}, last {})", r.text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("closed again {:.1} s after PostgreSQL came back", restarted.elapsed().as_secs_f64());
    assert!(saw_half_open, "went through half-open");

    let load: Report = load.await?;
    eprintln!("cached predictions during the run: {:?}", load.statuses);
    no_server_errors("cached predictions", &load);
    assert!(load.count(200) > 100 && load.statuses.keys().all(|s| *s == 200), "{:?}", load.statuses);

    // The job accepted before the outage still completes, every row once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = c.get(&format!("/api/v1/jobs/{job}")).await?;
        if s.body["status"] == "completed" {
            assert_eq!(s.body["processed_rows"].as_i64(), Some(rows as i64));
            break;
        }
        assert!(Instant::now() < deadline, "job not completed: {}", s.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let csv = c.get(&format!("/api/v1/jobs/{job}/results")).await?.text;
    assert_eq!(csv.lines().count(), rows + 1);
    Ok(())
}
