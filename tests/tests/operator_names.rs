//! Names and children the API server refuses, against the real API server (which validates
//! built-in kinds as kube-apiserver does): a name that would make an invalid child is refused at
//! apply, and a child refused anyway (HTTP 422) is a permanent problem, shown and not retried hot.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::PostParams;
use kube::{Api, Client};
use riskplatform_crd::names::MAX_NAME_LEN;
use riskplatform_crd::{condition, RiskPlatform};
use riskplatform_tests::cluster::{eventually, platform_namespace, test_platform, TestCluster};
use riskplatform_tests::operator::RunningOperator;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn platform(name: &str, spec_extra: Value) -> Result<RiskPlatform> {
    test_platform(name, "db", spec_extra)
}

async fn refusal(api: &Api<RiskPlatform>, rp: &RiskPlatform) -> Result<String> {
    match api.create(&PostParams::default(), rp).await {
        Ok(_) => bail!("{:?} was accepted", rp.metadata.name),
        Err(kube::Error::Api(status)) => {
            ensure!(status.code == 422, "refused with {}: {}", status.code, status.message);
            Ok(status.message)
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_whose_children_would_be_invalid_are_refused_at_apply_and_the_longest_allowed_deploys() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let ns = platform_namespace(&client, "names").await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);

    let too_long = "risk-platform-with-a-rather-long-name-for-the-acme-bank-x1";
    let message = refusal(&api, &platform(too_long, json!({}))?).await?;
    assert!(message.contains(&format!("at most {MAX_NAME_LEN} characters")), "{message}");
    for bad in ["1risk", "risk.eu"] {
        let message = refusal(&api, &platform(bad, json!({}))?).await?;
        assert!(message.contains("must start with a lowercase letter"), "{bad}: {message}");
    }

    // The longest name allowed: every child, its Services and its StatefulSet, is accepted.
    let longest: String = "r".repeat(MAX_NAME_LEN);
    api.create(&PostParams::default(), &platform(&longest, json!({}))?).await?;
    let operator = RunningOperator::start(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually(WAIT, || async {
        deployments.get(&format!("{longest}-worker")).await?;
        services.get(&format!("{longest}-pgbouncer")).await?;
        statefulsets.get(&format!("{longest}-redis")).await?;
        let rp = api.get(&longest).await?;
        let degraded = rp.status.as_ref().and_then(|s| s.condition(condition::DEGRADED)).context("no condition")?;
        ensure!(degraded.status == "False", "Degraded: {} {}", degraded.reason, degraded.message);
        Ok(())
    })
    .await?;
    operator.stop().await
}

/// Warning events of `reason` about the platform `name`: (note, times published).
async fn warnings_about(client: &Client, ns: &str, name: &str, reason: &str) -> Result<Vec<(String, i32)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
        })
        .map(|e| {
            let times = e.series.as_ref().map_or(1, |s| s.count);
            (e.note.unwrap_or_default(), times)
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_the_api_server_refuses_degrades_the_platform_with_its_message_and_is_not_retried_hot() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    let ns = platform_namespace(&client, "refused").await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    // Valid for the CRD's schema, invalid for a Deployment: requests above limits.
    let resources = json!({"requests": {"cpu": "2", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}});
    api.create(&PostParams::default(), &platform("risk", json!({"api": {"resources": resources}}))?).await?;
    let operator = RunningOperator::start(client.clone(), &ns);

    let degraded = eventually(WAIT, || async {
        let rp = api.get("risk").await?;
        let c = rp.status.as_ref().and_then(|s| s.condition(condition::DEGRADED)).context("no condition")?.clone();
        ensure!(c.status == "True" && c.reason == "ChildRejected", "Degraded={} ({})", c.status, c.reason);
        Ok(c)
    })
    .await?;
    // The API server's own words, naming the child and the field.
    assert!(degraded.message.contains("Deployment risk-api"), "{}", degraded.message);
    assert!(degraded.message.contains("must be less than or equal to cpu limit"), "{}", degraded.message);
    let warnings = eventually(WAIT, || async {
        let w = warnings_about(&client, &ns, "risk", "ChildRejected").await?;
        ensure!(!w.is_empty(), "no Warning event yet");
        Ok(w)
    })
    .await?;
    assert!(warnings.iter().all(|(note, _)| note.contains("must be less than or equal to cpu limit")), "{warnings:?}");

    // No retry loop: once the reconciles the children's own creation triggered are through,
    // nothing changes, so the operator waits (a retry with backoff would publish at 1, 3, 7 s...).
    let published = |w: &[(String, i32)]| w.iter().map(|(_, n)| n).sum::<i32>();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = published(&warnings_about(&client, &ns, "risk", "ChildRejected").await?);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = published(&warnings_about(&client, &ns, "risk", "ChildRejected").await?);
    assert_eq!(after, before, "the refused child was applied again with nothing changed");

    // Fixing the spec recovers the platform.
    let fixed = json!({"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}});
    api.patch(
        "risk",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"api": {"resources": fixed}}})),
    )
    .await?;
    eventually(WAIT, || async {
        Api::<Deployment>::namespaced(client.clone(), &ns).get("risk-api").await?;
        let rp = api.get("risk").await?;
        let c = rp.status.as_ref().and_then(|s| s.condition(condition::DEGRADED)).context("no condition")?;
        ensure!(c.status == "False", "still Degraded: {}", c.message);
        Ok(())
    })
    .await?;
    operator.stop().await
}
