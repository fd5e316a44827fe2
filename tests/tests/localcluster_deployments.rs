//! Deployments of `lc-echo` on the local cluster's real kubelet: scaled up, reached through
//! their Service's host port, and rolled out within maxSurge/maxUnavailable as sampled from
//! the pods the kubelet reports Ready.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use riskplatform_tests::cluster::eventually;
use riskplatform_tests::echo::{echo_container, get, is_ready, on_local_cluster, POD_TIMEOUT};
use serde_json::{json, Value};

fn echo_deployment(name: &str, replicas: i32, strategy: Value, version: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas, "strategy": strategy,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "terminationGracePeriodSeconds": 2,
                    "containers": [echo_container(json!({ "env": [{ "name": "VERSION", "value": version }] }))] },
            },
        },
    }))?)
}

/// Waits until the Deployment's status reports `replicas` updated, ready and available pods
/// for its current generation.
async fn wait_rolled_out(deployments: &Api<Deployment>, name: &str, replicas: i32) -> Result<()> {
    eventually(POD_TIMEOUT, || async {
        let d = deployments.get(name).await?;
        let s = d.status.clone().unwrap_or_default();
        let current = s.observed_generation >= d.metadata.generation;
        let counts = (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas);
        let want = Some(replicas);
        ensure!(current && counts == (want, want, want, want), "Deployment {name} status {s:?}");
        Ok(())
    })
    .await
}

async fn pod_names(pods: &Api<Pod>, selector: &str) -> Result<BTreeSet<String>> {
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.iter().filter(|p| is_ready(p)).filter_map(|p| p.metadata.name.clone()).collect())
}

#[tokio::test]
async fn a_deployment_scales_from_one_to_three_and_back_and_its_service_spreads_requests_over_its_ready_pods(
) -> Result<()> {
    on_local_cluster("lck-scale", |cluster, client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments.create(&PostParams::default(), &echo_deployment("web", 1, json!({}), "1")?).await?;
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
        }))?;
        Api::<Service>::namespaced(client.clone(), &ns).create(&PostParams::default(), &svc).await?;
        wait_rolled_out(&deployments, "web", 1).await?;

        deployments
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 3 } })))
            .await?;
        wait_rolled_out(&deployments, "web", 3).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let names = pod_names(&pods, "app=web").await?;
        ensure!(names.len() == 3, "three Ready pods: {names:?}");

        let address = cluster.service_address(&client, &ns, "web", 80).await?.to_string();
        // Round robin over three endpoints: twelve connections reach each several times once
        // the proxy has all three; until then the batch is retried.
        let answered = eventually(Duration::from_secs(30), || async {
            let mut answered = BTreeMap::<String, usize>::new();
            for _ in 0..12 {
                let (code, body) = get(&address, "/").await?;
                ensure!(code == 200, "HTTP {code}: {body}");
                *answered.entry(body.trim().to_owned()).or_default() += 1;
            }
            let who: BTreeSet<String> = answered.keys().cloned().collect();
            ensure!(who == names, "answered by {answered:?}, the Deployment's pods are {names:?}");
            Ok(answered)
        })
        .await?;
        eprintln!("requests per pod: {answered:?}");

        deployments
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } })))
            .await?;
        wait_rolled_out(&deployments, "web", 1).await?;
        // the two removed pods leave the endpoints as they terminate: then one pod answers all
        eventually(Duration::from_secs(30), || async {
            let survivor = pod_names(&pods, "app=web").await?;
            ensure!(survivor.len() == 1 && survivor.is_subset(&names), "one of the three is left: {survivor:?}");
            for _ in 0..6 {
                let (code, body) = get(&address, "/").await?;
                ensure!(code == 200 && survivor.contains(body.trim()), "HTTP {code} from {body:?}, not {survivor:?}");
            }
            Ok(())
        })
        .await?;
        Ok(())
    })
    .await
}

/// One snapshot of a Deployment's pods, counted as the Deployment controller counts them: a
/// terminating or finished pod is not active, an available pod is active and Ready (the
/// template has no minReadySeconds).
#[derive(Debug, Default)]
struct Sample {
    active: usize,
    available: usize,
    hashes: BTreeSet<String>,
}

fn sample(pods: &[Pod]) -> Sample {
    let mut s = Sample::default();
    for p in pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if p.metadata.deletion_timestamp.is_some() || phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        s.active += 1;
        s.available += usize::from(is_ready(p));
        if let Some(hash) = p.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")) {
            s.hashes.insert(hash.clone());
        }
    }
    s
}

const REPLICAS: usize = 3;

/// Changes the template of a rolled-out Deployment `name` of `REPLICAS` pods with these
/// bounds, samples its pods every 50 ms until only Ready pods of the new template remain, and
/// returns the most active and the fewest available pods seen.
async fn roll_out(
    client: &kube::Client,
    ns: &str,
    name: &str,
    surge: usize,
    unavailable: usize,
) -> Result<(usize, usize)> {
    let strategy =
        json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } });
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments.create(&PostParams::default(), &echo_deployment(name, REPLICAS as i32, strategy.clone(), "1")?).await?;
    wait_rolled_out(&deployments, name, REPLICAS as i32).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("app={name}"));
    let before = sample(&pods.list(&selector).await?.items);
    ensure!(before.hashes.len() == 1, "{name}: one template before the change: {before:?}");

    let changed = echo_deployment(name, REPLICAS as i32, strategy, "2")?;
    deployments.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": changed.spec }))).await?;
    let started = Instant::now();
    let (mut most_active, mut fewest_available, mut both_templates_seen) = (0, REPLICAS, false);
    loop {
        let items = pods.list(&selector).await?.items;
        let s = sample(&items);
        let names: Vec<_> = items
            .iter()
            .map(|p| (p.metadata.name.clone(), is_ready(p), p.metadata.deletion_timestamp.is_some()))
            .collect();
        ensure!(s.active <= REPLICAS + surge, "{name}: more than replicas + maxSurge active: {s:?} {names:?}");
        ensure!(s.available + unavailable >= REPLICAS, "{name}: below replicas - maxUnavailable: {s:?} {names:?}");
        most_active = most_active.max(s.active);
        fewest_available = fewest_available.min(s.available);
        both_templates_seen |= s.hashes.len() == 2;
        let new_only = items.len() == REPLICAS && s.available == REPLICAS && s.hashes.is_disjoint(&before.hashes);
        if new_only {
            break;
        }
        // three pods Ready in a second or two each: 30 s is slack for a loaded machine, yet
        // short of the ~25 s per pod that a reused IP's stale neighbour entry used to cost
        ensure!(started.elapsed() < Duration::from_secs(30), "{name}: no rollout in 30 s: {s:?} {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{name} rolled out in {:?}: at most {most_active} active, at least {fewest_available} available",
        started.elapsed()
    );
    ensure!(both_templates_seen, "{name}: the samples saw old and new pods together");
    wait_rolled_out(&deployments, name, REPLICAS as i32).await?;
    for p in pods.list(&selector).await?.items {
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).context("pod IP")?;
        let (_, env) = get(&format!("{ip}:8080"), "/env").await?;
        ensure!(env.lines().any(|l| l == "VERSION=2"), "{:?} runs the new template: {env}", p.metadata.name);
    }
    Ok((most_active, fewest_available))
}

#[tokio::test]
async fn a_template_change_rolls_out_within_max_surge_and_max_unavailable_and_ends_with_every_new_pod_ready(
) -> Result<()> {
    on_local_cluster("lck-roll", |_cluster, client, ns| async move {
        // one Deployment may only surge, the other only go below its count: each bound is
        // used, so a rollout that ignored it would show in the samples
        let (surging, shrinking) =
            tokio::try_join!(roll_out(&client, &ns, "surge", 1, 0), roll_out(&client, &ns, "shrink", 0, 1))?;
        ensure!(surging == (REPLICAS + 1, REPLICAS), "maxSurge 1, maxUnavailable 0: {surging:?}");
        ensure!(shrinking == (REPLICAS, REPLICAS - 1), "maxSurge 0, maxUnavailable 1: {shrinking:?}");
        Ok(())
    })
    .await
}
