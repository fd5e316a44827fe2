//! Two operator processes against a real API server: one leads, the other takes over when the
//! leader is killed, and only the leader ever writes.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use riskplatform_crd::RiskPlatform;
use riskplatform_tests::cluster::{eventually, platform_namespace, TestCluster};
use riskplatform_tests::process::{binary, ChildProcess};
use serde_json::json;

const LEASE_SECONDS: u64 = 4;
const WAIT: Duration = Duration::from_secs(60);

fn operator(cluster: &TestCluster, ns: &str, name: &str) -> Result<ChildProcess> {
    ChildProcess::spawn(
        Command::new(binary("riskplatform-operator")?)
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("RISK_OPERATOR_LISTEN_ADDR", "127.0.0.1:0")
            .env("RISK_OPERATOR_NAMESPACE", ns)
            .env("POD_NAMESPACE", ns)
            .env("POD_NAME", name)
            .env("RISK_OPERATOR_LEASE_DURATION_SECONDS", LEASE_SECONDS.to_string())
            .env("RISK_OPERATOR_LEASE_GRACE_SECONDS", "1")
            .env("RUST_LOG", "warn"),
    )
}

async fn holder(client: &Client, ns: &str) -> Result<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns).get("riskplatform-operator").await?;
    lease.spec.and_then(|s| s.holder_identity).context("no holder")
}

async fn reporters(client: &Client, ns: &str) -> Result<Vec<String>> {
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&Default::default()).await?;
    Ok(events.items.into_iter().filter_map(|e| e.reporting_instance).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_within_the_lease_duration_and_only_the_leader_writes() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let ns = platform_namespace(&client, "leader").await?;

    let mut a = operator(&cluster, &ns, "op-a")?;
    eventually(WAIT, || async {
        let h = holder(&client, &ns).await?;
        ensure!(h == "op-a", "holder {h}");
        Ok(())
    })
    .await?;
    let _b = operator(&cluster, &ns, "op-b")?;

    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    let rp: RiskPlatform = serde_json::from_value(json!({
        "apiVersion": "riskplatform.io/v1alpha1", "kind": "RiskPlatform",
        "metadata": { "name": "risk" },
        "spec": { "pgbouncer": {
            "database": { "host": "postgres.example", "name": "risk" },
            "credentialsSecretRef": { "name": "db" } } }
    }))?;
    api.create(&PostParams::default(), &rp).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, || async {
        ensure!(deployments.get("risk-worker").await?.spec.and_then(|s| s.replicas) == Some(3));
        Ok(())
    })
    .await?;
    // Give the standby time to misbehave, then check it wrote nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = reporters(&client, &ns).await?;
    ensure!(!before.is_empty() && before.iter().all(|r| r == "op-a"), "events before failover from {before:?}");
    assert_eq!(holder(&client, &ns).await?, "op-a");

    let killed = Instant::now();
    a.kill()?;
    eventually(WAIT, || async {
        let h = holder(&client, &ns).await?;
        ensure!(h == "op-b", "holder {h}");
        Ok(())
    })
    .await?;
    let takeover = killed.elapsed();
    println!(
        "takeover after SIGKILL of the leader: {:.1} s (lease duration {LEASE_SECONDS} s)",
        takeover.as_secs_f64()
    );
    // The lease can only be taken once it expired, and the standby polls at most every second or so.
    assert!(takeover <= Duration::from_secs(LEASE_SECONDS + 3), "takeover took {takeover:?}");

    let patch = json!({ "spec": { "api": { "image": "registry.example/riskplatform-api:2.0.0" } } });
    api.patch("risk", &PatchParams::default(), &Patch::Merge(patch)).await?;
    eventually(WAIT, || async {
        let d = deployments.get("risk-api").await?;
        let image =
            d.spec.and_then(|s| s.template.spec).and_then(|p| p.containers.first().and_then(|c| c.image.clone()));
        ensure!(image.as_deref() == Some("registry.example/riskplatform-api:2.0.0"), "image {image:?}");
        Ok(())
    })
    .await?;
    eventually(WAIT, || async {
        let after = reporters(&client, &ns).await?;
        ensure!(after.iter().any(|r| r == "op-b"), "the new leader published no events: {after:?}");
        Ok(())
    })
    .await?;
    // Replicas were set once by the first leader and never re-set by the second.
    let replicas = deployments.get("risk-api").await?.spec.and_then(|s| s.replicas);
    assert_eq!(replicas, Some(2));
    Ok(())
}
