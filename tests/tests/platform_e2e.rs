//! The product end to end on the local cluster (pods really run): Helm installs the operator as
//! a pod, the example RiskPlatform is applied with kubectl, and the platform is used, broken and
//! changed only through what a user has (its Services, kubectl, the database it was given).
//! Each test prints its figures (`figure:` lines).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use reqwest::StatusCode;
use riskplatform_tests::cluster::eventually;
use riskplatform_tests::http::{bulk_csv, statement, ApiClient};
use riskplatform_tests::platform::{LivePlatform, NAMESPACE, PLATFORM};
use serde_json::{json, Value};

/// How long a fresh platform may take to become Ready on a 2-core machine running the rest of
/// the suite (measured: about 90 s).
const READY_WITHIN: Duration = Duration::from_secs(300);

/// Chart values for the tests: one operator replica (leader election stays on).
fn operator_values() -> Value {
    json!({ "replicaCount": 1, "autoscaleIntervalSeconds": 5 })
}

async fn installed_and_ready(spec: Value) -> Result<(LivePlatform, Duration)> {
    let live = LivePlatform::install(operator_values()).await?;
    let applied = live.apply_example(spec).await?;
    live.wait_ready(READY_WITHIN).await?;
    Ok((live, applied.elapsed()))
}

/// Prometheus' answer to an instant query, as (labels, value) pairs.
async fn prometheus_query(url: &str, query: &str) -> Result<Vec<(Value, f64)>> {
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

async fn create_company(api: &ApiClient, symbol: &str) -> Result<String> {
    let r = api.post("/api/v1/companies", json!({ "symbol": symbol, "name": format!("{symbol} Inc.") })).await?;
    ensure!(r.status == StatusCode::CREATED, "create company {symbol}: {} {}", r.status, r.text);
    Ok(r.body["id"].as_str().context("company id")?.to_owned())
}

/// Panics with `result`'s error while the platform is still alive, so its drop prints every
/// component's and pod's log.
fn or_dump_logs(result: Result<()>, _live: &LivePlatform) {
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_installs_the_chart_applies_the_example_and_uses_the_platform_through_its_service() -> Result<()> {
    let (live, ready_after) = installed_and_ready(json!({})).await?;
    or_dump_logs(install_and_use(&live, ready_after).await, &live);
    Ok(())
}

async fn install_and_use(live: &LivePlatform, ready_after: Duration) -> Result<()> {
    eprintln!("figure: install: apply to Ready=True in {:.1} s", ready_after.as_secs_f64());
    for component in ["api", "worker", "pgbouncer", "redis"] {
        let pods = live.pods(component).await?;
        ensure!(!pods.is_empty(), "no {component} pod");
        for pod in &pods {
            let status = pod.status.clone().unwrap_or_default();
            ensure!(status.phase.as_deref() == Some("Running"), "{component} pod phase {:?}", status.phase);
        }
    }
    let api_pod = live.pods("api").await?.remove(0);
    let init = api_pod.status.and_then(|s| s.init_container_statuses).unwrap_or_default();
    ensure!(
        init.iter().any(|c| c.name == "migrate"
            && c.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)),
        "the API pod's migrate init container did not complete: {init:?}"
    );

    let key = live.create_tenant(Duration::from_secs(120)).await?;
    let api = live.api(Some(&key)).await?;
    let company = create_company(&api, "ACME").await?;
    let scored =
        api.post(&format!("/api/v1/companies/{company}/predictions"), json!({ "statement": statement(80.0) })).await?;
    ensure!(scored.status == StatusCode::CREATED, "prediction: {} {}", scored.status, scored.text);
    let again =
        api.post(&format!("/api/v1/companies/{company}/predictions"), json!({ "statement": statement(80.0) })).await?;
    ensure!(again.status == StatusCode::OK, "the same prediction again is served from the cache: {}", again.status);
    let history = api.get(&format!("/api/v1/companies/{company}/predictions")).await?;
    ensure!(history.status == StatusCode::OK, "history: {} {}", history.status, history.text);

    let rows = 10_000;
    let started = Instant::now();
    let accepted = api.upload(bulk_csv(rows, None), "").await?;
    ensure!(accepted.status == StatusCode::ACCEPTED, "bulk upload: {} {}", accepted.status, accepted.text);
    let job = accepted.body["id"].as_str().context("job id")?.to_owned();
    let done = api.wait_finished(&job, Duration::from_secs(300)).await?;
    ensure!(done["status"] == "completed", "{done}");
    ensure!(done["processed_rows"].as_u64() == Some(rows as u64) && done["failed_rows"].as_u64() == Some(0), "{done}");
    let results = api.get(&format!("/api/v1/jobs/{job}/results")).await?.text;
    ensure!(results.lines().count() == rows + 1, "a result line per row: {}", results.lines().count());
    eprintln!("figure: use: {rows}-row bulk job done by the worker pods in {:.1} s", started.elapsed().as_secs_f64());

    // The API and worker pods are scrape targets Prometheus reaches; every pod (PgBouncer and
    // Redis run no exporter) has its containers' usage from the kubelet's cAdvisor.
    let mut targets = Vec::new();
    for component in ["api", "worker"] {
        targets.extend(live.pods(component).await?.into_iter().filter_map(|p| p.metadata.name));
    }
    let mut all = targets.clone();
    for component in ["pgbouncer", "redis"] {
        all.extend(live.pods(component).await?.into_iter().filter_map(|p| p.metadata.name));
    }
    let missing_from = |series: Vec<(Value, f64)>, wanted: &[String]| -> Vec<String> {
        let names: Vec<&str> = series.iter().filter_map(|(m, _)| m["pod"].as_str()).collect();
        wanted.iter().filter(|p| !names.contains(&p.as_str())).cloned().collect()
    };
    eventually(Duration::from_secs(90), || async {
        let up = prometheus_query(&live.prometheus, &format!("up{{namespace=\"{NAMESPACE}\"}} == 1")).await?;
        let missing = missing_from(up, &targets);
        ensure!(missing.is_empty(), "pods Prometheus does not scrape yet: {missing:?}");
        let usage = format!("container_memory_working_set_bytes{{namespace=\"{NAMESPACE}\",container!=\"\"}}");
        let missing = missing_from(prometheus_query(&live.prometheus, &usage).await?, &all);
        ensure!(missing.is_empty(), "pods without cAdvisor series yet: {missing:?}");
        Ok(())
    })
    .await?;
    eprintln!(
        "figure: use: Prometheus scrapes {} API and worker pods and has usage of all {} pods of {PLATFORM}",
        targets.len(),
        all.len()
    );
    Ok(())
}
