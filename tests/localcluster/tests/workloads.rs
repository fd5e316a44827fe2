//! StatefulSets, Jobs and EndpointSlices against a real API server, with a stand-in kubelet.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use common::{eventually, fake_kubelet, finish, pods, set_ready, start};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_stateful_set_creates_its_pods_in_order_and_its_claims_outlive_a_deleted_pod() -> Result<()> {
    let env = start("sts").await?;
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "db" },
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": { "matchLabels": { "app": "db" } },
            "template": { "metadata": { "labels": { "app": "db" } }, "spec": { "containers": [{ "name": "db", "image": "img" }] } },
            "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } } }],
        },
    }))?;
    let api: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &sts).await?;

    for ordinal in 0..3 {
        let name = format!("db-{ordinal}");
        eventually(WAIT, || async {
            let names: Vec<String> = pods(&env.client, &env.namespace).await?.iter().map(|p| p.name_any()).collect();
            ensure!(names.contains(&name), "{names:?}");
            Ok(())
        })
        .await?;
        // OrderedReady: while db-<ordinal> is not ready, no later ordinal appears.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let count = pods(&env.client, &env.namespace).await?.len();
        assert_eq!(count, ordinal + 1, "a later pod was created before db-{ordinal} was ready");
        let pod = Api::<Pod>::namespaced(env.client.clone(), &env.namespace).get(&name).await?;
        let volumes = pod.spec.as_ref().unwrap().volumes.clone().unwrap_or_default();
        let claim = volumes
            .iter()
            .find(|v| v.name == "data")
            .and_then(|v| v.persistent_volume_claim.clone())
            .context("data volume")?;
        assert_eq!(claim.claim_name, format!("data-db-{ordinal}"));
        assert_eq!(pod.spec.as_ref().unwrap().hostname.as_deref(), Some(name.as_str()));
        set_ready(&env.client, &env.namespace, &name, &format!("10.244.250.{}", ordinal + 2), true).await?;
    }
    let status = eventually(WAIT, || async {
        let s = api.get("db").await?.status.context("no status")?;
        ensure!(s.ready_replicas == Some(3) && s.current_replicas == Some(3), "{s:?}");
        Ok(s)
    })
    .await?;
    assert_eq!(status.current_revision, status.update_revision);

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &env.namespace);
    let before = claims.get("data-db-1").await?;
    assert!(before.owner_references().is_empty(), "the default Retain policy leaves claims unowned");
    Api::<Pod>::namespaced(env.client.clone(), &env.namespace).delete("db-1", &DeleteParams::default()).await?;
    let recreated = eventually(WAIT, || async {
        let pod = Api::<Pod>::namespaced(env.client.clone(), &env.namespace).get("db-1").await?;
        ensure!(pod.uid() != before.uid(), "not recreated yet");
        Ok(pod)
    })
    .await?;
    assert_ne!(recreated.uid(), None);
    assert_eq!(claims.get("data-db-1").await?.uid(), before.uid(), "the claim survived its pod");
    Ok(())
}

#[tokio::test]
async fn a_job_runs_a_pod_to_completion_and_replaces_a_failed_one() -> Result<()> {
    let env = start("job").await?;
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "once" },
        "spec": {
            "backoffLimit": 2,
            "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "img" }] } },
        },
    }))?;
    let api: Api<Job> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &job).await?;
    let first = eventually(WAIT, || async {
        let p = pods(&env.client, &env.namespace).await?;
        ensure!(p.len() == 1, "{} pods", p.len());
        Ok(p[0].clone())
    })
    .await?;
    assert_eq!(first.labels().get("batch.kubernetes.io/job-name").map(String::as_str), Some("once"));
    finish(&env.client, &env.namespace, &first.name_any(), false).await?;
    let second = eventually(WAIT, || async {
        let p = pods(&env.client, &env.namespace).await?;
        p.into_iter().find(|p| p.uid() != first.uid()).context("no replacement pod")
    })
    .await?;
    finish(&env.client, &env.namespace, &second.name_any(), true).await?;
    let status = eventually(WAIT, || async {
        let s = api.get("once").await?.status.context("no status")?;
        ensure!(s.conditions.iter().flatten().any(|c| c.type_ == "Complete" && c.status == "True"), "{s:?}");
        Ok(s)
    })
    .await?;
    // `active: 0` is omitted on the wire (omitempty), as from a real API server.
    assert_eq!((status.succeeded, status.failed, status.active.unwrap_or(0)), (Some(1), Some(1), 0));
    assert!(status.completion_time.is_some());
    Ok(())
}

#[tokio::test]
async fn a_job_past_its_backoff_limit_fails() -> Result<()> {
    let env = start("job-fail").await?;
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "doomed" },
        "spec": { "backoffLimit": 0, "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "img" }] } } },
    }))?;
    let api: Api<Job> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &job).await?;
    let pod =
        eventually(WAIT, || async { pods(&env.client, &env.namespace).await?.into_iter().next().context("no pod") })
            .await?;
    finish(&env.client, &env.namespace, &pod.name_any(), false).await?;
    eventually(WAIT, || async {
        let s = api.get("doomed").await?.status.context("no status")?;
        let failed = s.conditions.iter().flatten().find(|c| c.type_ == "Failed").context("no Failed condition")?;
        ensure!(failed.reason.as_deref() == Some("BackoffLimitExceeded"), "{failed:?}");
        Ok(())
    })
    .await?;
    assert_eq!(pods(&env.client, &env.namespace).await?.len(), 1, "no pod after the job failed");
    Ok(())
}

fn slice_conditions(slices: &[EndpointSlice]) -> Vec<(String, bool, bool, bool)> {
    let mut out: Vec<_> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            (
                e.addresses[0].clone(),
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn endpoint_slices_and_endpoints_follow_pod_readiness_with_named_target_ports_resolved() -> Result<()> {
    let env = start("eps").await?;
    let _kubelet = fake_kubelet(env.client.clone(), env.namespace.clone(), Duration::ZERO);
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
    }))?;
    Api::<Service>::namespaced(env.client.clone(), &env.namespace).create(&PostParams::default(), &svc).await?;
    let pod_api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    for name in ["a", "b"] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "c", "image": "img", "ports": [{ "name": "http", "containerPort": 8080 }] }] },
        }))?;
        pod_api.create(&PostParams::default(), &pod).await?;
    }
    let slices: Api<EndpointSlice> = Api::namespaced(env.client.clone(), &env.namespace);
    let by_service = ListParams::default().labels("kubernetes.io/service-name=web");
    let ips = eventually(WAIT, || async {
        let list = slices.list(&by_service).await?.items;
        let conditions = slice_conditions(&list);
        ensure!(conditions.len() == 2 && conditions.iter().all(|c| c.1 && c.2 && !c.3), "{conditions:?}");
        ensure!(list[0].ports.as_ref().unwrap()[0].port == Some(8080), "target port not resolved");
        Ok(conditions.into_iter().map(|c| c.0).collect::<Vec<_>>())
    })
    .await?;

    let a_ip = pod_api.get("a").await?.status.and_then(|s| s.pod_ip).context("pod a ip")?;
    set_ready(&env.client, &env.namespace, "a", &a_ip, false).await?;
    eventually(WAIT, || async {
        let conditions = slice_conditions(&slices.list(&by_service).await?.items);
        let a = conditions.iter().find(|c| c.0 == a_ip).context("a left the slice")?;
        ensure!(!a.1 && !a.2, "a still ready: {conditions:?}");
        let ep = Api::<Endpoints>::namespaced(env.client.clone(), &env.namespace).get("web").await?;
        let subset = ep.subsets.context("no subsets")?.remove(0);
        ensure!(
            subset.not_ready_addresses.unwrap_or_default().iter().any(|a| a.ip == a_ip),
            "a not in notReadyAddresses"
        );
        ensure!(subset.addresses.unwrap_or_default().len() == 1, "one ready address");
        Ok(())
    })
    .await?;
    pod_api.delete("b", &DeleteParams::default()).await?;
    eventually(WAIT, || async {
        let conditions = slice_conditions(&slices.list(&by_service).await?.items);
        ensure!(conditions.len() == 1 && conditions[0].0 == a_ip, "{conditions:?} (all ips: {ips:?})");
        Ok(())
    })
    .await
}
