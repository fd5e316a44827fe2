//! Every endpoint at once through PgBouncer in transaction mode, readiness included: not one
//! request may fail. Then clients that give up mid-request under load (cancelled handlers), after
//! which the same traffic must still succeed and PostgreSQL must not have seen one transaction
//! begun inside another or a statement named by another client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use reqwest::{Method, StatusCode};
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::{bulk_csv, statement, ApiClient, Reply};
use serde_json::json;

const CONCURRENCY: usize = 12;

/// What one round of traffic needs: a company with a statement and a finished job to read.
struct Fixture {
    company: String,
    statement: String,
    job: String,
    /// Numbers every request of the test, so names a request creates never repeat.
    requests: AtomicUsize,
}

async fn fixture(c: &ApiClient) -> Result<Fixture> {
    let company = c.post("/api/v1/companies", json!({"symbol": "BASE", "name": "Base plc"})).await?;
    let company = company.body["id"].as_str().context("company id")?.to_owned();
    let mut body = statement(5.0);
    body["period"] = json!("2024");
    let st = c.post(&format!("/api/v1/companies/{company}/statements"), body).await?;
    assert_eq!(st.status, StatusCode::CREATED, "{}", st.text);
    let statement = st.body["id"].as_str().context("statement id")?.to_owned();
    let job = c.upload(bulk_csv(50, None), "").await?;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.text);
    let job = job.body["id"].as_str().context("job id")?.to_owned();
    Ok(Fixture { company, statement, job, requests: AtomicUsize::new(0) })
}

/// One request of the mix, chosen by `n`; returns what it was and its answer.
async fn one(c: &ApiClient, f: &Fixture, n: usize) -> Result<(String, Reply)> {
    let company = &f.company;
    let (what, reply) = match n % 17 {
        0 => ("list companies", c.get("/api/v1/companies?symbol=B").await?),
        1 => ("read company", c.get(&format!("/api/v1/companies/{company}")).await?),
        2 => {
            let created = c.post("/api/v1/companies", json!({"symbol": format!("C{n}"), "name": "Load Ltd"})).await?;
            ("create company", created)
        }
        3 => (
            "rename company",
            c.patch(&format!("/api/v1/companies/{company}"), json!({"name": format!("Base {n}")})).await?,
        ),
        4 => ("list statements", c.get(&format!("/api/v1/companies/{company}/statements")).await?),
        5 => ("read statement", c.get(&format!("/api/v1/companies/{company}/statements/{}", f.statement)).await?),
        6 => {
            let path = format!("/api/v1/companies/{company}/predictions");
            ("uncached prediction", c.post(&path, json!({"statement": statement(1000.0 + n as f64)})).await?)
        }
        7 => {
            let path = format!("/api/v1/companies/{company}/predictions");
            ("cached prediction", c.post(&path, json!({"statement": statement(7.0)})).await?)
        }
        8 => {
            let path = format!("/api/v1/companies/{company}/predictions");
            ("stored-statement prediction", c.post(&path, json!({"statement_id": f.statement})).await?)
        }
        9 => ("history", c.get(&format!("/api/v1/companies/{company}/predictions?limit=20")).await?),
        10 => ("latest", c.get(&format!("/api/v1/companies/{company}/predictions/latest")).await?),
        11 => {
            let body = json!({"statements": [statement(3.0), statement(2000.0 + n as f64)]});
            ("batch", c.post("/api/v1/predictions/batch", body).await?)
        }
        12 => ("list jobs", c.get("/api/v1/jobs").await?),
        13 => ("job status", c.get(&format!("/api/v1/jobs/{}", f.job)).await?),
        14 => ("job results", c.get(&format!("/api/v1/jobs/{}/results", f.job)).await?),
        15 => ("create key", c.post("/api/v1/keys", json!({"role": "viewer"})).await?),
        _ => ("readiness", c.send(Method::GET, "/health/ready", None).await?),
    };
    Ok((what.to_owned(), reply))
}

/// Runs the mix with `CONCURRENCY` clients for `duration`; returns (requests, failures listed).
async fn mixed_traffic(c: &ApiClient, f: &Arc<Fixture>, duration: Duration) -> (usize, Vec<String>) {
    let first = f.requests.load(Ordering::Relaxed);
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (c, f) = (c.clone(), f.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while Instant::now() < deadline {
                    let n = f.requests.fetch_add(1, Ordering::Relaxed);
                    match one(&c, &f, n).await {
                        Ok((_, r)) if r.status.is_success() => {}
                        Ok((what, r)) => failures.push(format!("{what}: {} {}", r.status, r.text)),
                        Err(e) => failures.push(format!("request {n}: {e:#}")),
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap_or_else(|e| vec![format!("client task: {e}")]));
    }
    (f.requests.load(Ordering::Relaxed) - first, failures)
}

/// Clients that give up after a few milliseconds: their handlers are dropped wherever they are,
/// inside BEGIN, a query or COMMIT.
async fn impatient_traffic(base: &str, key: &str, f: &Arc<Fixture>, duration: Duration) -> Result<usize> {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (base, key, f) = (base.to_owned(), key.to_owned(), f.clone());
            tokio::spawn(async move {
                let mut given_up = 0usize;
                while Instant::now() < deadline {
                    let n = f.requests.fetch_add(1, Ordering::Relaxed);
                    // 1 to 8 ms: long enough to reach the database, short enough to leave mid-way.
                    let patience = Duration::from_millis(1 + (n % 8) as u64);
                    let http = reqwest::Client::builder().timeout(patience).build().expect("client");
                    let c = ApiClient::from_client(http, &base, Some(&key));
                    if one(&c, &f, n).await.is_err() {
                        given_up += 1;
                    }
                }
                given_up
            })
        })
        .collect();
    let mut given_up = 0;
    for t in tasks {
        given_up += t.await?;
    }
    Ok(given_up)
}

/// What PostgreSQL logs when a client's connection came back in the wrong state.
fn transaction_state_warnings(log: &str) -> Vec<&str> {
    const SIGNS: [&str; 4] = [
        "there is already a transaction in progress",
        "there is no transaction in progress",
        "prepared statement \"sqlx_s_",
        "current transaction is aborted",
    ];
    log.lines().filter(|l| SIGNS.iter().any(|s| l.contains(s))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_under_concurrent_load_through_pgbouncer_succeeds_even_after_cancelled_requests() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&["--rate-limit-per-second=1000000", "--rate-limit-burst=1000000"]).await?;
    let key = stack.create_tenant("traffic")?;
    let c = ApiClient::new(&server.url, Some(&key));
    let f = Arc::new(fixture(&c).await?);
    let _worker = stack.worker("traffic-worker", &[])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = c.get(&format!("/api/v1/jobs/{}", f.job)).await?;
        if job.body["status"] == "completed" {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the fixture job did not complete: {}", job.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Seed the cached prediction so the mix's cached request is a cache hit.
    c.post(&format!("/api/v1/companies/{}/predictions", f.company), json!({"statement": statement(7.0)})).await?;

    let (sent, failures) = mixed_traffic(&c, &f, Duration::from_secs(8)).await;
    println!("mixed traffic: {sent} requests, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(sent > 17 * CONCURRENCY, "the mix ran every endpoint several times: {sent}");

    let given_up = impatient_traffic(&server.url, &key, &f, Duration::from_secs(5)).await?;
    println!("impatient clients gave up on {given_up} requests");
    assert!(given_up > 0, "the impatient clients left before some answers");

    let (sent, failures) = mixed_traffic(&c, &f, Duration::from_secs(5)).await;
    println!("mixed traffic after cancellations: {sent} requests, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed after cancellations, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );

    let log = stack.postgres.log()?;
    let warnings = transaction_state_warnings(&log);
    assert!(warnings.is_empty(), "PostgreSQL saw connections in the wrong state: {warnings:#?}");
    Ok(())
}
