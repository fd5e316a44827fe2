//! Deployments and ReplicaSets against a real API server, with a stand-in kubelet.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use common::{eventually, fake_kubelet, is_ready, mark_ready, pods, start};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value, image: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "strategy": strategy,
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": image, "ports": [{ "name": "http", "containerPort": 8080 }] }] },
            },
        },
    }))?)
}

fn live(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

async fn wait_status(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<Deployment> {
    eventually(WAIT, || async {
        let d = api.get(name).await?;
        let s = d.status.clone().context("no status")?;
        ensure!(s.observed_generation == d.metadata.generation, "generation not observed: {s:?}");
        ensure!(s.replicas == Some(replicas) && s.updated_replicas == Some(replicas), "counts: {s:?}");
        ensure!(s.ready_replicas == Some(replicas) && s.available_replicas == Some(replicas), "readiness: {s:?}");
        let progressing = s.conditions.iter().flatten().find(|c| c.type_ == "Progressing").context("no Progressing")?;
        ensure!(progressing.reason.as_deref() == Some("NewReplicaSetAvailable"), "{progressing:?}");
        Ok(d)
    })
    .await
}

#[tokio::test]
async fn a_deployment_of_three_gets_three_pods_owned_by_its_replica_set_and_a_complete_status() -> Result<()> {
    let env = start("deploy").await?;
    let _kubelet = fake_kubelet(env.client.clone(), env.namespace.clone(), Duration::ZERO);
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &deployment("web", 3, json!({}), "img:1")?).await?;
    let d = wait_status(&api, "web", 3).await?;
    let available = d.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!((available.status.as_str(), available.reason.as_deref()), ("True", Some("MinimumReplicasAvailable")));

    let sets =
        Api::<ReplicaSet>::namespaced(env.client.clone(), &env.namespace).list(&ListParams::default()).await?.items;
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs.labels().get("pod-template-hash").cloned().context("pod-template-hash label")?;
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let owner = &rs.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
        ("Deployment", Some(true), Some(true))
    );
    let pods = pods(&env.client, &env.namespace).await?;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(pod.labels().get("pod-template-hash"), Some(&hash));
        assert_eq!(pod.owner_references()[0].uid, rs.uid().unwrap());
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("localcluster"), "scheduled");
    }
    Ok(())
}

#[tokio::test]
async fn the_scale_subresource_scales_the_pods_up_and_down() -> Result<()> {
    let env = start("scale").await?;
    let _kubelet = fake_kubelet(env.client.clone(), env.namespace.clone(), Duration::ZERO);
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &deployment("web", 1, json!({}), "img:1")?).await?;
    wait_status(&api, "web", 1).await?;
    for replicas in [4, 2] {
        api.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": replicas } })))
            .await?;
        wait_status(&api, "web", replicas).await?;
        let count = live(&pods(&env.client, &env.namespace).await?).len();
        assert_eq!(count, usize::try_from(replicas)?);
    }
    let scale = api.get_scale("web").await?;
    assert_eq!(scale.status.map(|s| s.replicas), Some(2));
    Ok(())
}

/// Watches the pods every 20 ms during a rollout and records the worst moments.
async fn rollout_extremes(env: &common::Env, done: impl Fn(&[Pod]) -> bool) -> Result<(usize, usize, usize)> {
    let (mut max_total, mut min_ready, mut steps) = (0, usize::MAX, 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = pods(&env.client, &env.namespace).await?;
        let current = live(&all);
        max_total = max_total.max(current.len());
        min_ready = min_ready.min(current.iter().filter(|p| is_ready(p)).count());
        steps += 1;
        if done(&all) {
            return Ok((max_total, min_ready, steps));
        }
        ensure!(tokio::time::Instant::now() < deadline, "rollout did not finish: {} pods", current.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_on_image(pods: &[Pod], image: &str, replicas: usize) -> bool {
    let live = live(pods);
    live.len() == replicas
        && live.iter().all(|p| is_ready(p) && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image))
}

#[tokio::test]
async fn a_template_change_rolls_out_within_max_surge_and_max_unavailable_at_every_step() -> Result<()> {
    let env = start("rolling").await?;
    let _kubelet = fake_kubelet(env.client.clone(), env.namespace.clone(), Duration::from_millis(300));
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let strategy = json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 1 } });
    api.create(&PostParams::default(), &deployment("web", 4, strategy, "img:1")?).await?;
    wait_status(&api, "web", 4).await?;

    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": "img:2" }] } } } });
    api.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await?;
    let (max_total, min_ready, steps) = rollout_extremes(&env, |p| all_on_image(p, "img:2", 4)).await?;
    assert!(steps > 5, "the rollout was observed in {steps} steps only");
    assert!(max_total <= 4 + 1, "{max_total} pods at once exceed replicas + maxSurge");
    assert!(min_ready >= 4 - 1, "only {min_ready} ready pods: below replicas - maxUnavailable");
    let d = wait_status(&api, "web", 4).await?;
    assert_eq!(d.annotations().get("deployment.kubernetes.io/revision").map(String::as_str), Some("2"));
    let sets =
        Api::<ReplicaSet>::namespaced(env.client.clone(), &env.namespace).list(&ListParams::default()).await?.items;
    let replicas: BTreeMap<String, i32> = sets
        .iter()
        .map(|rs| {
            (rs.annotations()["deployment.kubernetes.io/revision"].clone(), rs.spec.as_ref().unwrap().replicas.unwrap())
        })
        .collect();
    assert_eq!(
        replicas,
        BTreeMap::from([("1".into(), 0), ("2".into(), 4)]),
        "the old set is kept at zero for rollback"
    );
    Ok(())
}

#[tokio::test]
async fn the_default_strategy_surges_by_25_percent_rounded_up_and_keeps_all_but_25_percent_rounded_down() -> Result<()>
{
    let env = start("defaults").await?;
    let _kubelet = fake_kubelet(env.client.clone(), env.namespace.clone(), Duration::from_millis(300));
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &deployment("web", 3, json!({}), "img:1")?).await?;
    wait_status(&api, "web", 3).await?;
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": "img:2" }] } } } });
    api.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await?;
    // 25 % of 3: surge ceil(0.75) = 1, unavailable floor(0.75) = 0.
    let (max_total, min_ready, _) = rollout_extremes(&env, |p| all_on_image(p, "img:2", 3)).await?;
    assert!(max_total <= 4, "{max_total} pods at once");
    assert!(min_ready >= 3, "only {min_ready} ready pods");
    Ok(())
}

#[tokio::test]
async fn recreate_deletes_every_old_pod_before_creating_a_new_one() -> Result<()> {
    let env = start("recreate").await?;
    let _kubelet = fake_kubelet(env.client.clone(), env.namespace.clone(), Duration::from_millis(100));
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &deployment("web", 3, json!({ "type": "Recreate" }), "img:1")?).await?;
    wait_status(&api, "web", 3).await?;
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": "img:2" }] } } } });
    api.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = pods(&env.client, &env.namespace).await?;
        let image = |p: &&Pod| p.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
        let images: Vec<String> = live(&all).iter().map(image).collect();
        assert!(
            !(images.contains(&"img:1".to_owned()) && images.contains(&"img:2".to_owned())),
            "old and new pods together: {images:?}"
        );
        if all_on_image(&all, "img:2", 3) {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "recreate did not finish: {images:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_replica_set_scales_down_not_ready_pods_first_then_the_lowest_deletion_cost() -> Result<()> {
    let env = start("rs-order").await?;
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": { "name": "rs" },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "rs" } },
            "template": { "metadata": { "labels": { "app": "rs" } }, "spec": { "containers": [{ "name": "c", "image": "img" }] } },
        },
    }))?;
    let api: Api<ReplicaSet> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &rs).await?;
    let names = eventually(WAIT, || async {
        let mut names: Vec<String> = pods(&env.client, &env.namespace).await?.iter().map(|p| p.name_any()).collect();
        ensure!(names.len() == 4, "{} pods", names.len());
        names.sort();
        Ok(names)
    })
    .await?;
    let (unready, cheap, rest) = (&names[0], &names[1], &names[2..]);
    let pod_api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    for (i, name) in names.iter().enumerate().skip(1) {
        mark_ready(&env.client, &env.namespace, name, &format!("10.244.250.{}", i + 2)).await?;
    }
    let cost = |c: &str| {
        Patch::Merge(json!({ "metadata": { "annotations": { "controller.kubernetes.io/pod-deletion-cost": c } } }))
    };
    pod_api.patch(cheap, &PatchParams::default(), &cost("-10")).await?;
    for name in rest {
        pod_api.patch(name, &PatchParams::default(), &cost("10")).await?;
    }
    api.patch_scale("rs", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 2 } }))).await?;
    let left = eventually(WAIT, || async {
        let mut left: Vec<String> =
            live(&pods(&env.client, &env.namespace).await?).iter().map(|p| p.name_any()).collect();
        ensure!(left.len() == 2, "{left:?}");
        left.sort();
        Ok(left)
    })
    .await?;
    assert_eq!(left, rest, "the not-ready pod ({unready}) and the cheapest ({cheap}) go first");
    let status = eventually(WAIT, || async {
        let s = api.get("rs").await?.status.context("no status")?;
        ensure!(s.replicas == 2 && s.ready_replicas == Some(2), "{s:?}");
        Ok(s)
    })
    .await?;
    assert_eq!(status.available_replicas, Some(2));
    Ok(())
}

#[tokio::test]
async fn deleting_a_deployment_lets_the_garbage_collector_remove_its_replica_sets_and_pods() -> Result<()> {
    let env = start("gc").await?;
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &deployment("web", 2, json!({}), "img:1")?).await?;
    eventually(WAIT, || async {
        ensure!(pods(&env.client, &env.namespace).await?.len() == 2);
        Ok(())
    })
    .await?;
    api.delete("web", &Default::default()).await?;
    eventually(WAIT, || async {
        let left = pods(&env.client, &env.namespace).await?.len();
        let sets = Api::<ReplicaSet>::namespaced(env.client.clone(), &env.namespace)
            .list(&ListParams::default())
            .await?
            .items
            .len();
        ensure!(left == 0 && sets == 0, "{sets} replica sets and {left} pods left");
        Ok(())
    })
    .await
}
