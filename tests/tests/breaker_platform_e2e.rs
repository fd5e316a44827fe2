//! The platform-wide breaker end to end with real processes: two API processes (the real binary)
//! whose PgBouncer is stopped, scraped by a real Prometheus; the operator (on a real Kubernetes
//! API server) computes Open from their failure counters, publishes it, and both API processes
//! follow within 2 s, including the one that saw no failure itself; a forceClosed override wins
//! on every process, even over a process's own open breaker; when the published state cannot be
//! read, each process falls back to its own breaker.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use riskplatform_breaker::State;
use riskplatform_crd::RiskPlatform;
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::cluster::{eventually, platform_namespace, TestCluster};
use riskplatform_tests::http::{statement, ApiClient};
use riskplatform_tests::operator::RunningOperator;
use riskplatform_tests::process::ChildProcess;
use riskplatform_tests::prometheus::{free_port, http_ok, Prometheus, Target};
use serde_json::json;

/// This process's database breaker gauge (0 closed, 1 open, 2 half-open).
async fn breaker_gauge(url: &str) -> Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("riskplatform_circuit_breaker_state{dependency=\"database\"}")?.trim().parse().ok()
        })
        .context("no breaker gauge")
}

/// Polls until every process shows `gauge`; returns how long that took.
async fn all_follow(urls: &[String], gauge: f64, within: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let mut all = true;
        for url in urls {
            all &= breaker_gauge(url).await? == gauge;
        }
        if all {
            return Ok(started.elapsed());
        }
        ensure!(started.elapsed() < within, "not every API process shows {gauge} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn published(configmaps: &Api<ConfigMap>) -> Option<String> {
    configmaps.get("risk-circuit-breakers").await.ok()?.data?.get("database").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_process_follows_the_published_breaker_and_a_force_closed_override() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let ns = platform_namespace(&client, "follow").await?;
    let mut stack = ApiStack::start()?;
    let key = stack.create_tenant("follow")?;

    let mut urls = Vec::new();
    let mut processes = Vec::new();
    let mut targets = Vec::new();
    for pod in ["risk-api-5d8f7c9b4-aaaaa", "risk-api-5d8f7c9b4-bbbbb"] {
        let port = free_port()?;
        let process = ChildProcess::spawn(
            stack
                .command(true)
                .arg("serve")
                .env("RISK_LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("KUBECONFIG", cluster.kubeconfig())
                .env("RISK_BREAKER_CONFIGMAP", "risk-circuit-breakers")
                .env("POD_NAMESPACE", &ns)
                .env("RISK_DB_ACQUIRE_TIMEOUT_MS", "300")
                // The local breakers stay open once opened, so any change comes from the operator.
                .env("RISK_BREAKER_RECOVERY_SECONDS", "600")
                .stdout(Stdio::null()),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        eventually(Duration::from_secs(30), || async {
            ensure!(http_ok(&format!("{url}/health/live")).await?);
            Ok(())
        })
        .await?;
        targets.push(Target {
            // Prometheus refuses two scrape configs with one job name.
            job: pod.to_owned(),
            address: format!("127.0.0.1:{port}"),
            labels: vec![("namespace".to_owned(), ns.clone()), ("pod".to_owned(), pod.to_owned())],
        });
        urls.push(url);
        processes.push(process);
    }
    let prometheus = Prometheus::start(&targets).await?;
    let rp: RiskPlatform = serde_json::from_value(json!({
        "apiVersion": "riskplatform.io/v1alpha1", "kind": "RiskPlatform",
        "metadata": { "name": "risk" },
        "spec": {
            "pgbouncer": { "database": { "host": "postgres.example", "name": "risk" }, "credentialsSecretRef": { "name": "db" } },
            "prometheus": { "url": prometheus.url },
            "circuitBreaker": { "recoveryTimeoutSeconds": 600, "windowSeconds": 10 }
        }
    }))?;
    let platforms: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    platforms.create(&PostParams::default(), &rp).await?;
    let operator = RunningOperator::start(client.clone(), &ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually(Duration::from_secs(30), || async {
        ensure!(published(&configmaps).await.as_deref() == Some("Closed"));
        Ok(())
    })
    .await?;
    all_follow(&urls, 0.0, Duration::from_secs(5)).await?;

    // The first process's database goes away: its calls fail until its own breaker opens.
    let first = ApiClient::new(&urls[0], Some(&key));
    let company = first.post("/api/v1/companies", json!({"symbol": "FOLLOW", "name": "Follow"})).await?;
    let company = company.body["id"].as_str().context("company id")?.to_owned();
    stack.pgbouncer.service.stop()?;
    for n in 0..6 {
        let r = first
            .post(&format!("/api/v1/companies/{company}/predictions"), json!({"statement": statement(f64::from(n))}))
            .await?;
        assert_eq!(r.status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    }
    assert_eq!(breaker_gauge(&urls[0]).await?, 1.0);
    assert_eq!(breaker_gauge(&urls[1]).await?, 0.0, "the second process has seen no failure");

    // The operator sees the counters in Prometheus, opens the platform breaker and publishes it.
    let decided = eventually(Duration::from_secs(60), || async {
        let status = platforms.get("risk").await?.status.context("status")?;
        let db = status.circuit_breakers.context("breakers")?.database;
        ensure!(db.state == State::Open, "{:?}", db.state);
        ensure!(published(&configmaps).await.as_deref() == Some("Open"));
        Ok(db.reason)
    })
    .await?;
    let followed = all_follow(&urls, 1.0, Duration::from_secs(2)).await?;
    println!("operator opened the database breaker ({decided}); every API process followed {} ms after the test saw it published", followed.as_millis());

    // forceClosed in the spec: published Closed, and both processes close although the first
    // one's own breaker is open.
    let seen = Instant::now();
    let force = json!({ "spec": { "circuitBreaker": { "overrides": { "database": "ForceClosed" } } } });
    platforms.patch("risk", &PatchParams::default(), &Patch::Merge(force)).await?;
    eventually(Duration::from_secs(30), || async {
        ensure!(published(&configmaps).await.as_deref() == Some("Closed"));
        Ok(())
    })
    .await?;
    let published_after = seen.elapsed();
    let followed = all_follow(&urls, 0.0, Duration::from_secs(2)).await?;
    println!(
        "forceClosed published {} ms after the patch; every API process followed {} ms later",
        published_after.as_millis(),
        followed.as_millis()
    );

    // The published state becomes unreadable (the operator is gone and the ConfigMap deleted):
    // each process falls back to its own breaker, open on the first, closed on the second.
    operator.stop().await?;
    configmaps.delete("risk-circuit-breakers", &DeleteParams::default()).await?;
    let started = Instant::now();
    loop {
        let own = (breaker_gauge(&urls[0]).await?, breaker_gauge(&urls[1]).await?);
        if own == (1.0, 0.0) {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "processes did not fall back to their own breakers: {own:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("fell back to their own breakers {} ms after the ConfigMap was deleted", started.elapsed().as_millis());
    stack.pgbouncer.service.resume()?;
    Ok(())
}
