//! Platform-wide circuit breakers on real components: dependency failure counters scraped by a
//! real Prometheus open the database breaker in the RiskPlatform status (with an Event and the
//! published ConfigMap), API scale-ups are suppressed while it is open, it recovers through
//! half-open, and a forceClosed override wins.
//!
//! The scraped service stands in for the API pods' `/metrics` (the API server is not built yet),
//! exporting the counters the pods are specified to export.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use axum::routing::get;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use riskplatform_breaker::State;
use riskplatform_crd::RiskPlatform;
use riskplatform_tests::cluster::{eventually, platform_namespace, TestCluster};
use riskplatform_tests::operator::RunningOperator;
use riskplatform_tests::prometheus::{Prometheus, Target};
use serde_json::json;

/// What the stand-in reports; the test moves the numbers.
#[derive(Default)]
struct Dependency {
    calls: AtomicU64,
    failures: AtomicU64,
    consecutive: AtomicU64,
}

async fn serve(db: Arc<Dependency>) -> Result<String> {
    let started = Instant::now();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let db = db.clone();
            async move {
                // Busy enough that the API wants more pods: 500 % CPU and 100 req/s, steadily.
                let t = started.elapsed().as_secs_f64();
                format!(
                    "# TYPE riskplatform_dependency_calls_total counter\n\
                     riskplatform_dependency_calls_total{{dependency=\"database\"}} {}\n\
                     # TYPE riskplatform_dependency_failures_total counter\n\
                     riskplatform_dependency_failures_total{{dependency=\"database\"}} {}\n\
                     # TYPE riskplatform_dependency_consecutive_failures gauge\n\
                     riskplatform_dependency_consecutive_failures{{dependency=\"database\"}} {}\n\
                     # TYPE http_requests_total counter\n\
                     http_requests_total{{method=\"GET\",route=\"/x\",status=\"200\"}} {}\n\
                     # TYPE container_cpu_usage_seconds_total counter\n\
                     container_cpu_usage_seconds_total{{container=\"api\"}} {}\n\
                     # TYPE container_memory_working_set_bytes gauge\n\
                     container_memory_working_set_bytes{{container=\"api\"}} 134217728\n\
                     # TYPE kube_pod_container_resource_requests gauge\n\
                     kube_pod_container_resource_requests{{container=\"api\",resource=\"cpu\"}} 0.1\n\
                     kube_pod_container_resource_requests{{container=\"api\",resource=\"memory\"}} 268435456\n",
                    db.calls.load(Ordering::Relaxed),
                    db.failures.load(Ordering::Relaxed),
                    db.consecutive.load(Ordering::Relaxed),
                    (t * 100.0).round(),
                    t * 0.5,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

async fn database_state(api: &Api<RiskPlatform>) -> Result<(State, String)> {
    let status = api.get("risk").await?.status.context("no status")?;
    let db = status.circuit_breakers.context("no breaker state yet")?.database;
    Ok((db.state, db.reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_open_the_database_breaker_suppress_scaling_recover_and_force_closed_wins() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let ns = platform_namespace(&client, "breaker").await?;
    let db = Arc::new(Dependency::default());
    let address = serve(db.clone()).await?;
    let prometheus = Prometheus::start(&[Target {
        job: "risk-api".to_owned(),
        address,
        labels: vec![("namespace".to_owned(), ns.clone()), ("pod".to_owned(), "risk-api-5d8f7c9b4-x2x7q".to_owned())],
    }])
    .await?;

    // The API pods keep calling the database: 50 calls a second, failing while `failing` is set.
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    db.consecutive.store(50, Ordering::Relaxed);
    let feeder = {
        let (db, failing) = (db.clone(), failing.clone());
        tokio::spawn(async move {
            for _ in 0..3000 {
                db.calls.fetch_add(5, Ordering::Relaxed);
                if failing.load(Ordering::Relaxed) {
                    db.failures.fetch_add(5, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let rp: RiskPlatform = serde_json::from_value(json!({
        "apiVersion": "riskplatform.io/v1alpha1", "kind": "RiskPlatform",
        "metadata": { "name": "risk" },
        "spec": {
            "pgbouncer": { "database": { "host": "postgres.example", "name": "risk" }, "credentialsSecretRef": { "name": "db" } },
            "prometheus": { "url": prometheus.url },
            "circuitBreaker": { "recoveryTimeoutSeconds": 6, "windowSeconds": 10 },
            "autoscaling": {
                "cpu": { "evaluationPeriodSeconds": 5 },
                "requestRate": { "scaleUpAbove": 20, "scaleDownBelow": 5, "evaluationPeriodSeconds": 5 }
            }
        }
    }))?;
    let platforms: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    platforms.create(&PostParams::default(), &rp).await?;
    let _operator = RunningOperator::start(client.clone(), &ns);

    let opened = Instant::now();
    let (_, reason) = eventually(Duration::from_secs(60), || async {
        let (state, reason) = database_state(&platforms).await?;
        ensure!(state == State::Open, "database breaker {state:?}");
        Ok((state, reason))
    })
    .await?;
    println!("database breaker open {:.1} s after the platform was created: {reason}", opened.elapsed().as_secs_f64());
    assert!(reason.contains("consecutive failures"), "{reason}");
    let summary = platforms.get("risk").await?.status.and_then(|s| s.breaker_summary);
    assert_eq!(summary.as_deref(), Some("database=Open redis=Closed"));
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let published = configmaps.get("risk-circuit-breakers").await?.data.unwrap_or_default();
    assert_eq!(published.get("database").map(String::as_str), Some("Open"));
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warned =
        events.list(&Default::default()).await?.items.iter().any(|e| e.reason.as_deref() == Some("BreakerOpen"));
    assert!(warned, "no BreakerOpen event");

    // Busy and hot, but the database breaker is open: the API is not scaled up.
    eventually(Duration::from_secs(60), || async {
        let status = platforms.get("risk").await?.status.context("status")?;
        let last = status.autoscaling.and_then(|a| a.api.last_decision).context("no decision")?;
        ensure!(last.reason.starts_with("suppressed: database breaker"), "last decision: {}", last.reason);
        Ok(())
    })
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert_eq!(deployments.get("risk-api").await?.spec.and_then(|s| s.replicas), Some(2));

    // The database recovers: calls succeed again; after the recovery timeout the breaker probes
    // (half-open) and closes.
    failing.store(false, Ordering::Relaxed);
    db.consecutive.store(0, Ordering::Relaxed);
    eventually(Duration::from_secs(90), || async {
        let (state, reason) = database_state(&platforms).await?;
        ensure!(state == State::Closed, "database breaker {state:?} ({reason})");
        Ok(())
    })
    .await?;
    let half_open =
        events.list(&Default::default()).await?.items.iter().any(|e| e.reason.as_deref() == Some("BreakerHalfOpen"));
    assert!(half_open, "closing went through half-open");

    // Failing again opens it; a forceClosed override in the spec wins.
    failing.store(true, Ordering::Relaxed);
    db.consecutive.store(20, Ordering::Relaxed);
    eventually(Duration::from_secs(60), || async {
        ensure!(database_state(&platforms).await?.0 == State::Open);
        Ok(())
    })
    .await?;
    let force = json!({ "spec": { "circuitBreaker": { "overrides": { "database": "ForceClosed" } } } });
    platforms.patch("risk", &PatchParams::default(), &Patch::Merge(force)).await?;
    eventually(Duration::from_secs(60), || async {
        let (state, reason) = database_state(&platforms).await?;
        ensure!(state == State::Closed && reason.contains("forced closed"), "{state:?} ({reason})");
        let published = configmaps.get("risk-circuit-breakers").await?.data.unwrap_or_default();
        ensure!(published.get("database").map(String::as_str) == Some("Closed"));
        Ok(())
    })
    .await?;
    feeder.abort();
    Ok(())
}
