//! End to end on real components: load on a service raises its request rate and CPU in a real
//! Prometheus, the operator's default queries read them, and the API Deployment on a real
//! Kubernetes API server is scaled with a recorded reason; an operator restart inside the
//! cooldown causes no second scale event.
//!
//! The scraped service is a stand-in exporting what a cluster would give Prometheus for an API
//! pod (its own `http_requests_total`, plus cAdvisor's CPU and memory and kube-state-metrics'
//! requests), because this machine has no kubelet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use axum::routing::get;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::PostParams;
use kube::Api;
use riskplatform_crd::RiskPlatform;
use riskplatform_tests::cluster::{eventually, platform_namespace, TestCluster};
use riskplatform_tests::operator::RunningOperator;
use riskplatform_tests::prometheus::{Prometheus, Target};
use serde_json::json;

/// CPU seconds one request costs the stand-in: 100 req/s use 0.2 CPU, 200 % of a 100m request.
const CPU_SECONDS_PER_REQUEST: f64 = 0.002;

async fn serve_stand_in() -> Result<(String, Arc<AtomicU64>)> {
    let served = Arc::new(AtomicU64::new(0));
    let (work, metrics) = (served.clone(), served.clone());
    let app = axum::Router::new()
        .route(
            "/work",
            get(move || {
                let served = work.clone();
                async move {
                    served.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let n = metrics.load(Ordering::Relaxed);
                async move {
                    format!(
                        "# TYPE http_requests_total counter\n\
                         http_requests_total{{method=\"GET\",route=\"/work\",status=\"200\"}} {n}\n\
                         # TYPE container_cpu_usage_seconds_total counter\n\
                         container_cpu_usage_seconds_total{{container=\"api\"}} {cpu}\n\
                         # TYPE container_memory_working_set_bytes gauge\n\
                         container_memory_working_set_bytes{{container=\"api\"}} 134217728\n\
                         # TYPE kube_pod_container_resource_requests gauge\n\
                         kube_pod_container_resource_requests{{container=\"api\",resource=\"cpu\"}} 0.1\n\
                         kube_pod_container_resource_requests{{container=\"api\",resource=\"memory\"}} 268435456\n\
                         # TYPE riskplatform_queue_length gauge\n\
                         riskplatform_queue_length{{queue=\"batch\"}} 1500\n\
                         riskplatform_queue_length{{queue=\"normal\"}} 0\n",
                        cpu = n as f64 * CPU_SECONDS_PER_REQUEST
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((address, served))
}

/// About 100 requests per second on loopback for at most `limit`, stopping by itself.
fn load(address: String, limit: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let _ = http.get(format!("http://{address}/work")).send().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

async fn scaled_up_events(events: &Api<Event>) -> Result<Vec<Event>> {
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ScaledUp"))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scales_the_api_with_a_reason_and_a_restart_inside_the_cooldown_does_not_scale_again() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let ns = platform_namespace(&client, "autoscale").await?;

    let (address, served) = serve_stand_in().await?;
    let prometheus = Prometheus::start(&[Target {
        job: "risk-api".to_owned(),
        address: address.clone(),
        labels: vec![("namespace".to_owned(), ns.clone()), ("pod".to_owned(), "risk-api-5d8f7c9b4-x2x7q".to_owned())],
    }])
    .await?;
    let load = load(address, Duration::from_secs(120));

    let rp: RiskPlatform = serde_json::from_value(json!({
        "apiVersion": "riskplatform.io/v1alpha1", "kind": "RiskPlatform",
        "metadata": { "name": "risk" },
        "spec": {
            "pgbouncer": { "database": { "host": "postgres.example", "name": "risk" }, "credentialsSecretRef": { "name": "db" } },
            "prometheus": { "url": prometheus.url },
            "autoscaling": {
                "api": { "scaleUpCooldownSeconds": 600 },
                "cpu": { "evaluationPeriodSeconds": 10 },
                "requestRate": { "scaleUpAbove": 20, "scaleDownBelow": 5, "evaluationPeriodSeconds": 10 },
                "queueLength": { "evaluationPeriodSeconds": 10 }
            }
        }
    }))?;
    let platforms: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    platforms.create(&PostParams::default(), &rp).await?;
    let operator = RunningOperator::start(client.clone(), &ns);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replicas =
        || async { Ok::<_, anyhow::Error>(deployments.get("risk-api").await?.spec.and_then(|s| s.replicas)) };
    let scaled_to = eventually(Duration::from_secs(90), || async {
        let n = replicas().await?.context("no replicas yet")?;
        ensure!(n > 2, "still {n} replicas after {} requests", served.load(Ordering::Relaxed));
        Ok(n)
    })
    .await?;

    // The default queue query reads the queue gauge; 1500 waiting jobs (> 1000) add workers.
    eventually(Duration::from_secs(60), || async {
        let n = deployments.get("risk-worker").await?.spec.and_then(|s| s.replicas).context("no worker replicas")?;
        ensure!(n > 3, "still {n} workers");
        Ok(())
    })
    .await?;

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let ups = eventually(Duration::from_secs(30), || async {
        let ups = scaled_up_events(&events).await?;
        ensure!(ups.iter().any(|e| e.note.as_deref().is_some_and(|n| n.starts_with("risk-api"))), "no ScaledUp event");
        Ok(ups)
    })
    .await?;
    let note = ups.iter().filter_map(|e| e.note.clone()).find(|n| n.starts_with("risk-api")).unwrap_or_default();
    assert!(
        note.contains("risk-api") && note.contains("cpu") && note.contains("request rate high"),
        "event note: {note}"
    );
    // The decision reaches the status right after its Event, in the same evaluation.
    let api = eventually(Duration::from_secs(30), || async {
        let status = platforms.get("risk").await?.status.context("status")?;
        let api = status.autoscaling.context("autoscaling status")?.api;
        ensure!(api.last_scale_up.is_some(), "no scale-up recorded in the status yet");
        Ok(api)
    })
    .await?;
    assert!(
        api.history.iter().any(|d| d.desired_replicas == scaled_to && d.reason.contains("scale up 2 ->")),
        "{:?}",
        api.history
    );

    // Restart inside the 600 s cooldown: state comes back from the status, so nothing more happens.
    operator.stop().await?;
    let operator = RunningOperator::start(client.clone(), &ns);
    eventually(Duration::from_secs(60), || async {
        let status = platforms.get("risk").await?.status.context("status")?;
        let last = status.autoscaling.and_then(|a| a.api.last_decision).context("no decision")?;
        ensure!(last.reason.contains("scale-up cooldown"), "last decision: {}", last.reason);
        Ok(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(replicas().await?, Some(scaled_to), "the restarted operator scaled again");
    let ups: Vec<Event> = scaled_up_events(&events)
        .await?
        .into_iter()
        .filter(|e| e.note.as_deref().is_some_and(|n| n.starts_with("risk-api")))
        .collect();
    let total: i32 = ups.iter().map(|e| e.series.as_ref().map_or(1, |s| s.count)).sum();
    assert_eq!(total, 1, "one scale-up in all: {ups:?}");
    load.abort();
    operator.stop().await
}
