//! The StatefulSet controller: pods `name-0..N-1` created in order, each waiting for its
//! predecessor to be Running and Ready (OrderedReady) or all at once (Parallel), a PVC per
//! volumeClaimTemplate and ordinal that outlives the pod, rolling updates from the highest
//! ordinal down, and the status upstream's stateful_set_control.go writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::replicaset::owned_pods;
use super::{api_error, controller_ref, error_policy, hash, invalid, pods, Context, Error, RESYNC};

/// The label carrying the revision a pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// What one reconcile does to the pods: at most one ordinal moves at a time under OrderedReady.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Create(Vec<i32>),
    Delete(Vec<String>),
    Wait,
}

/// The ordinal of a pod named `<set>-<i>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn healthy(pod: &Pod) -> bool {
    pods::is_running(pod) && pods::is_ready(pod) && !pods::is_terminating(pod)
}

/// Upstream's monotonic (OrderedReady) or burst (Parallel) update over the pods of the set:
/// replace finished pods, create missing ordinals in order, delete ordinals at or past
/// `replicas` from the highest, then replace pods of an old revision from the highest ordinal
/// down to the partition.
pub fn plan(
    set: &str,
    replicas: i32,
    parallel: bool,
    update_revision: &str,
    partition: i32,
    on_delete: bool,
    owned: &[Pod],
) -> Step {
    let by_ordinal: BTreeMap<i32, &Pod> =
        owned.iter().filter_map(|p| Some((ordinal(set, &p.name_any())?, p))).collect();
    let finished: Vec<String> = by_ordinal
        .values()
        .filter(|p| pods::has_finished(p) && !pods::is_terminating(p))
        .map(|p| p.name_any())
        .collect();
    if !finished.is_empty() {
        return Step::Delete(finished);
    }
    let mut create = Vec::new();
    for i in 0..replicas {
        match by_ordinal.get(&i) {
            None => {
                create.push(i);
                if !parallel {
                    break;
                }
            }
            Some(p) if !parallel && !healthy(p) => break,
            Some(_) => {}
        }
    }
    if !create.is_empty() {
        return Step::Create(create);
    }
    let all_healthy_below = |n: i32| (0..n).all(|i| by_ordinal.get(&i).is_some_and(|p| healthy(p)));
    let condemned: Vec<&Pod> = by_ordinal.range(replicas..).rev().map(|(_, p)| *p).collect();
    if let Some(highest) = condemned.first() {
        if parallel {
            return Step::Delete(condemned.iter().filter(|p| !pods::is_terminating(p)).map(|p| p.name_any()).collect());
        }
        if pods::is_terminating(highest) || !all_healthy_below(replicas) {
            return Step::Wait;
        }
        return Step::Delete(vec![highest.name_any()]);
    }
    if on_delete || !all_healthy_below(replicas) {
        return Step::Wait;
    }
    let stale = (partition.max(0)..replicas)
        .rev()
        .filter_map(|i| by_ordinal.get(&i))
        .find(|p| p.labels().get(REVISION_LABEL).map(String::as_str) != Some(update_revision));
    stale.map_or(Step::Wait, |p| Step::Delete(vec![p.name_any()]))
}

/// The pod of ordinal `i`: the template plus the identity labels, with each
/// volumeClaimTemplate mounted as the PVC `<template>-<set>-<i>`.
fn pod(sts: &StatefulSet, template: &PodTemplateSpec, revision: &str, i: i32) -> Result<Pod, Error> {
    let name = format!("{}-{i}", sts.name_any());
    let labels = BTreeMap::from([
        (REVISION_LABEL.to_owned(), revision.to_owned()),
        (POD_NAME_LABEL.to_owned(), name.clone()),
        (POD_INDEX_LABEL.to_owned(), i.to_string()),
    ]);
    let owner = controller_ref(sts).ok_or_else(|| invalid(sts, "no uid to own pods with"))?;
    let mut pod = pods::from_template(template, None, Some(name.clone()), labels, owner);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = sts.spec.as_ref().and_then(|s| s.service_name.clone());
    for claim in sts.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).into_iter().flatten() {
        let claim_name = claim.name_any();
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != claim_name);
        volumes.push(Volume {
            name: claim_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_pvc_name(&claim_name, &sts.name_any(), i),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    Ok(pod)
}

pub fn claim_pvc_name(template: &str, set: &str, i: i32) -> String {
    format!("{template}-{set}-{i}")
}

/// Creates the PVCs of ordinal `i` that do not exist yet. With the default Retain policy they
/// have no owner, so they outlive both the pod and the set; `whenDeleted: Delete` makes the set
/// own them, so the garbage collector removes them with it.
async fn ensure_claims(ctx: &Context, sts: &StatefulSet, namespace: &str, i: i32) -> Result<(), Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let spec = sts.spec.as_ref().ok_or_else(|| invalid(sts, "spec is required"))?;
    let delete_with_set =
        spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
    for template in spec.volume_claim_templates.iter().flatten() {
        let name = claim_pvc_name(&template.name_any(), &sts.name_any(), i);
        if api.get_opt(&name).await.map_err(api_error(sts))?.is_some() {
            continue;
        }
        let mut claim = template.clone();
        claim.metadata.name = Some(name.clone());
        claim.metadata.namespace = Some(namespace.to_owned());
        let labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
        claim.metadata.owner_references = if delete_with_set { controller_ref(sts).map(|r| vec![r]) } else { None };
        claim.status = None;
        api.create(&PostParams::default(), &claim).await.map_err(api_error(sts))?;
        // No provisioner runs here: the claim is a directory of the kubelet's, bound at once.
        let bound = Patch::Merge(
            json!({ "status": { "phase": "Bound", "accessModes": claim.spec.as_ref().and_then(|s| s.access_modes.clone()),
            "capacity": claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.clone()) } }),
        );
        if let Err(error) = api.patch_status(&name, &PatchParams::default(), &bound).await {
            tracing::debug!(claim = %name, %error, "claim status not written");
        }
        tracing::info!(claim = %name, "created persistent volume claim");
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(namespace = sts.namespace(), name = %sts.name_any()))]
async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = sts.namespace().ok_or_else(|| invalid(&*sts, "no namespace"))?;
    let uid = sts.uid().ok_or_else(|| invalid(&*sts, "no uid"))?;
    let spec = sts.spec.as_ref().ok_or_else(|| invalid(&*sts, "spec is required"))?;
    let name = sts.name_any();
    let update_revision =
        format!("{name}-{}", hash::template_hash(&spec.template, sts.status.as_ref().and_then(|s| s.collision_count)));
    let replicas = spec.replicas.unwrap_or(1);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let on_delete = strategy.type_.as_deref() == Some("OnDelete");
    let partition = strategy.rolling_update.and_then(|r| r.partition).unwrap_or(0);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned = owned_pods(&api, &uid).await.map_err(api_error(&*sts))?;

    match plan(&name, replicas, parallel, &update_revision, partition, on_delete, &owned) {
        Step::Create(ordinals) => {
            for i in ordinals {
                ensure_claims(&ctx, &sts, &namespace, i).await?;
                api.create(&PostParams::default(), &pod(&sts, &spec.template, &update_revision, i)?)
                    .await
                    .map_err(api_error(&*sts))?;
                tracing::info!(ordinal = i, "created pod");
            }
        }
        Step::Delete(names) => {
            for pod in names {
                api.delete(&pod, &DeleteParams::default()).await.map_err(api_error(&*sts))?;
                tracing::info!(%pod, "deleted pod");
            }
        }
        Step::Wait => {}
    }

    let status = status(&sts, &owned, &update_revision, Timestamp::now());
    if sts.status.as_ref() != Some(&status) {
        let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sts_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
            .await
            .map_err(api_error(&*sts))?;
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let next = owned.iter().filter_map(|p| pods::until_available(p, min_ready, Timestamp::now())).min();
    Ok(Action::requeue(next.map_or(RESYNC, |d| d.min(RESYNC))))
}

/// Upstream's status: counts over the pods that exist, the current revision catching up with
/// the update revision once every replica runs it.
pub fn status(sts: &StatefulSet, owned: &[Pod], update_revision: &str, now: Timestamp) -> StatefulSetStatus {
    let spec = sts.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let live: Vec<&Pod> = owned.iter().filter(|p| !pods::has_finished(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
    let revision_of = |p: &Pod| p.labels().get(REVISION_LABEL).cloned().unwrap_or_default();
    let updated = count(&|p| revision_of(p) == update_revision);
    let previous = sts.status.as_ref().and_then(|s| s.current_revision.clone());
    let current_revision = match previous {
        Some(rev) if updated < replicas || live.len() != usize::try_from(replicas).unwrap_or(0) => rev,
        _ => update_revision.to_owned(),
    };
    StatefulSetStatus {
        observed_generation: sts.metadata.generation,
        replicas: count(&|_| true),
        ready_replicas: Some(count(&|p| pods::is_ready(p))),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        current_replicas: Some(count(&|p| revision_of(p) == current_revision)),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update_revision.to_owned()),
        collision_count: sts.status.as_ref().and_then(|s| s.collision_count),
        conditions: sts.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(i: i32, ready: bool, revision: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("db-{i}")),
                labels: Some(BTreeMap::from([(REVISION_LABEL.into(), revision.into())])),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn ordered_ready_creates_the_first_missing_ordinal_only_after_its_predecessors_are_ready() {
        assert_eq!(plan("db", 3, false, "r1", 0, false, &[]), Step::Create(vec![0]));
        assert_eq!(plan("db", 3, false, "r1", 0, false, &[pod(0, false, "r1")]), Step::Wait);
        assert_eq!(plan("db", 3, false, "r1", 0, false, &[pod(0, true, "r1")]), Step::Create(vec![1]));
    }

    #[test]
    fn parallel_creates_every_missing_ordinal_at_once() {
        assert_eq!(plan("db", 3, true, "r1", 0, false, &[pod(1, false, "r1")]), Step::Create(vec![0, 2]));
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first() {
        let pods = [pod(0, true, "r1"), pod(1, true, "r1"), pod(2, true, "r1")];
        assert_eq!(plan("db", 1, false, "r1", 0, false, &pods), Step::Delete(vec!["db-2".into()]));
    }

    #[test]
    fn a_rolling_update_replaces_the_highest_stale_ordinal_above_the_partition() {
        let pods = [pod(0, true, "r1"), pod(1, true, "r1"), pod(2, true, "r2")];
        assert_eq!(plan("db", 3, false, "r2", 0, false, &pods), Step::Delete(vec!["db-1".into()]));
        assert_eq!(
            plan("db", 3, false, "r2", 1, false, &[pod(0, true, "r1"), pod(1, true, "r2"), pod(2, true, "r2")]),
            Step::Wait
        );
        assert_eq!(plan("db", 3, false, "r2", 0, true, &pods), Step::Wait);
    }

    #[test]
    fn ordinals_parse_only_from_the_set_name_and_a_number() {
        assert_eq!(ordinal("db", "db-12"), Some(12));
        assert_eq!(ordinal("db", "dbx-1"), None);
        assert_eq!(ordinal("db", "db-a"), None);
    }
}
