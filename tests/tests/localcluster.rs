//! The local cluster harness end to end: `scripts/local-cluster.sh` brings up the API server
//! and the controller-manager; a Deployment is scheduled and its Service gets a cluster IP and a
//! host port the proxy serves.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::Api;
use riskplatform_tests::cluster::{eventually, namespace};
use riskplatform_tests::localcluster::LocalCluster;
use serde_json::{json, Value};

/// Two replicas of `container`, labelled `app: web`.
fn web_deployment(container: Value) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [container] } },
        },
    }))?)
}

#[tokio::test]
async fn a_local_cluster_schedules_a_deployment_and_gives_its_service_an_ip_and_a_host_port() -> Result<()> {
    if std::env::var_os("KUBECONFIG").is_some() {
        eprintln!("skipped: checks the local cluster's own controllers, not a KUBECONFIG cluster");
        return Ok(());
    }
    let cluster = LocalCluster::start()?;
    let client = cluster.client().await?;
    let ns = namespace(&client, "lc").await?;
    let deployment = web_deployment(json!({
        "name": "web", "image": "ghcr.io/riskplatform/riskplatform-api:0.1.0",
        "ports": [{ "name": "http", "containerPort": 8080 }],
    }))?;
    Api::<Deployment>::namespaced(client.clone(), &ns).create(&PostParams::default(), &deployment).await?;
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
    }))?;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    services.create(&PostParams::default(), &svc).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually(Duration::from_secs(30), || async {
        let list = pods.list(&ListParams::default()).await?.items;
        let scheduled = list
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("localcluster"))
            .count();
        ensure!(scheduled == 2, "{scheduled} of {} pods scheduled", list.len());
        Ok(())
    })
    .await?;
    let ip = eventually(Duration::from_secs(30), || async {
        services.get("web").await?.spec.and_then(|s| s.cluster_ip).context("no cluster IP yet")
    })
    .await?;
    let index: u8 = ip.split('.').nth(2).context("cluster IP")?.parse()?;
    assert!(ip.starts_with(&format!("10.96.{index}.")), "{ip} is in the instance's service CIDR");
    let address = cluster.service_address(&client, &ns, "web", 80).await?;
    tokio::net::TcpStream::connect(address).await.with_context(|| format!("the proxy listens on {address}"))?;
    Ok(())
}

#[tokio::test]
async fn prometheus_scrapes_the_local_kube_state_metrics_with_the_series_the_operator_queries() -> Result<()> {
    if std::env::var_os("KUBECONFIG").is_some() {
        eprintln!("skipped: checks the local cluster's own Prometheus, not a KUBECONFIG cluster");
        return Ok(());
    }
    let cluster = LocalCluster::start_with_prometheus()?;
    let client = cluster.client().await?;
    let ns = namespace(&client, "lc-prom").await?;
    let deployment = web_deployment(json!({
        "name": "web", "image": "ghcr.io/riskplatform/riskplatform-api:0.1.0",
        "resources": { "requests": { "cpu": "250m", "memory": "64Mi" } },
    }))?;
    Api::<Deployment>::namespaced(client.clone(), &ns).create(&PostParams::default(), &deployment).await?;

    let ksm = cluster.kube_state_metrics_url().context("kube-state-metrics url")?;
    eventually(Duration::from_secs(30), || async {
        let text = reqwest::get(&ksm).await?.text().await?;
        ensure!(
            text.contains(&format!("kube_deployment_spec_replicas{{namespace=\"{ns}\",deployment=\"web\"}} 2")),
            "no spec replicas yet"
        );
        let requests = format!("kube_pod_container_resource_requests{{namespace=\"{ns}\",");
        ensure!(text.matches(&requests).count() == 4, "not every pod's cpu and memory requests yet");
        Ok(())
    })
    .await?;

    let prometheus = cluster.prometheus_url().context("prometheus url")?;
    let query = format!(r#"sum(kube_pod_container_resource_requests{{namespace="{ns}",resource="cpu"}})"#);
    eventually(Duration::from_secs(60), || async {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", &query)])
            .send()
            .await?
            .json()
            .await?;
        let value = body["data"]["result"][0]["value"][1].as_str().unwrap_or_default().to_owned();
        ensure!(value == "0.5", "two pods of 250m: got {value:?} from {body}");
        Ok(())
    })
    .await
}
