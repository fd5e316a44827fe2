//! The Deployment controller: one ReplicaSet per pod template (named by its pod-template-hash),
//! rolled out by the strategy, old sets cleaned up past revisionHistoryLimit, status written.

pub mod rollout;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use self::rollout::{RecreateStep, RsCounts, Strategy};
use self::status::NewSet;
use super::{api_error, controller_ref, error_policy, hash, invalid, is_controlled_by, pods, Context, Error, RESYNC};

/// The label (and ReplicaSet name suffix) telling the pods of one template apart.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION_ANNOTATION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn counts(rs: &ReplicaSet) -> RsCounts {
    RsCounts {
        name: rs.name_any(),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        available: rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0),
    }
}

/// The new ReplicaSet for the current template, as upstream's getNewReplicaSet builds it.
fn new_replica_set(
    d: &Deployment,
    template_hash: &str,
    replicas: i32,
    revision: i64,
    strategy: Strategy,
) -> Result<ReplicaSet, Error> {
    let spec = d.spec.as_ref().ok_or_else(|| invalid(d, "spec is required"))?;
    let mut template = spec.template.clone();
    let mut meta = template.metadata.take().unwrap_or_default();
    meta.labels.get_or_insert_with(BTreeMap::new).insert(TEMPLATE_HASH_LABEL.into(), template_hash.into());
    let labels = meta.labels.clone();
    template.metadata = Some(meta);
    let mut selector = spec.selector.clone();
    selector.match_labels.get_or_insert_with(BTreeMap::new).insert(TEMPLATE_HASH_LABEL.into(), template_hash.into());
    let desired = rollout::desired(d);
    let surge = match strategy {
        Strategy::RollingUpdate { max_surge, .. } => max_surge,
        Strategy::Recreate => 0,
    };
    Ok(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{template_hash}", d.name_any())),
            namespace: d.namespace(),
            labels,
            annotations: Some(BTreeMap::from([
                (REVISION_ANNOTATION.into(), revision.to_string()),
                (DESIRED_REPLICAS_ANNOTATION.into(), desired.to_string()),
                (MAX_REPLICAS_ANNOTATION.into(), (desired + surge).to_string()),
            ])),
            owner_references: Some(vec![
                controller_ref(d).ok_or_else(|| invalid(d, "no uid to own replica sets with"))?
            ]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    })
}

#[tracing::instrument(skip_all, fields(namespace = d.namespace(), name = %d.name_any()))]
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = d.namespace().ok_or_else(|| invalid(&*d, "no namespace"))?;
    let uid = d.uid().ok_or_else(|| invalid(&*d, "no uid"))?;
    let spec = d.spec.as_ref().ok_or_else(|| invalid(&*d, "spec is required"))?;
    let strategy = rollout::strategy(&d).map_err(|reason| invalid(&*d, reason))?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut sets: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default())
        .await
        .map_err(api_error(&*d))?
        .items
        .into_iter()
        .filter(|rs| is_controlled_by(rs, &uid))
        .collect();
    sets.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.name_any()));
    let status = d.status.clone().unwrap_or_default();
    let template_hash = hash::template_hash(&spec.template, status.collision_count);
    let is_new = |rs: &ReplicaSet| rs.labels().get(TEMPLATE_HASH_LABEL) == Some(&template_hash);
    let old: Vec<RsCounts> = sets.iter().filter(|rs| !is_new(rs)).map(counts).collect();
    let new = sets.iter().find(|rs| is_new(rs));
    let desired = rollout::desired(&d);
    let next_revision = sets.iter().filter(|rs| !is_new(rs)).map(revision).max().unwrap_or(0) + 1;

    let mut new_set = if new.is_some() { NewSet::Found } else { NewSet::Absent };
    let mut changes: Vec<(String, i32)> = Vec::new();
    if spec.paused != Some(true) {
        match strategy {
            Strategy::RollingUpdate { max_surge, .. } => match new {
                Some(rs) => changes = rollout::rolling_step(desired, strategy, &counts(rs), &old),
                None => {
                    let empty = RsCounts { name: String::new(), replicas: 0, available: 0 };
                    let replicas = rollout::new_rs_replicas(desired, max_surge, &empty, &old);
                    new_set = create(&rs_api, &d, &template_hash, replicas, next_revision, strategy).await?;
                }
            },
            Strategy::Recreate => {
                let old_pods_remain =
                    old_pods_remain(&ctx, &namespace, &sets, &template_hash).await.map_err(api_error(&*d))?;
                match rollout::recreate_step(desired, new.map(counts).as_ref(), &old, old_pods_remain) {
                    RecreateStep::ScaleDownOld(names) => changes = names.into_iter().map(|n| (n, 0)).collect(),
                    RecreateStep::CreateNew => {
                        new_set = create(&rs_api, &d, &template_hash, desired, next_revision, strategy).await?
                    }
                    RecreateStep::ScaleNew(n) => changes = new.map(|rs| vec![(rs.name_any(), n)]).unwrap_or_default(),
                    RecreateStep::WaitForOldPods | RecreateStep::Done => {}
                }
            }
        }
    }
    for (name, replicas) in &changes {
        scale(&rs_api, name, *replicas, desired, strategy).await.map_err(api_error(&*d))?;
        tracing::info!(replica_set = %name, replicas, "scaled replica set");
    }
    if new_set == NewSet::Created {
        return Ok(Action::requeue(std::time::Duration::ZERO));
    }

    let refs: Vec<&ReplicaSet> = sets.iter().collect();
    let new_status = status::compute(&d, strategy, new, &refs, new_set, Timestamp::now());
    if d.status.as_ref() != Some(&new_status) {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": new_status })))
            .await
            .map_err(api_error(&*d))?;
    }
    if let Some(rs) = new {
        sync_revision(&ctx, &d, revision(rs)).await?;
    }
    if changes.is_empty() && new.is_some_and(|rs| counts(rs).replicas == desired) {
        cleanup(&rs_api, &d, &sets, &template_hash).await?;
    }
    Ok(Action::requeue(RESYNC))
}

/// Creates the new ReplicaSet; a name taken by another template bumps collisionCount, as upstream.
async fn create(
    api: &Api<ReplicaSet>,
    d: &Deployment,
    template_hash: &str,
    replicas: i32,
    revision: i64,
    strategy: Strategy,
) -> Result<NewSet, Error> {
    let rs = new_replica_set(d, template_hash, replicas, revision, strategy)?;
    match api.create(&PostParams::default(), &rs).await {
        Ok(_) => {
            tracing::info!(replica_set = %rs.name_any(), replicas, "created replica set");
            Ok(NewSet::Created)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let count = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0) + 1;
            let dapi: Api<Deployment> = Api::namespaced(api.clone().into_client(), &d.namespace().unwrap_or_default());
            let patch = Patch::Merge(json!({ "status": { "collisionCount": count } }));
            dapi.patch_status(&d.name_any(), &PatchParams::default(), &patch).await.map_err(api_error(d))?;
            Ok(NewSet::Absent)
        }
        Err(e) => Err(api_error(d)(e)),
    }
}

async fn scale(
    api: &Api<ReplicaSet>,
    name: &str,
    replicas: i32,
    desired: i32,
    strategy: Strategy,
) -> Result<(), kube::Error> {
    let surge = match strategy {
        Strategy::RollingUpdate { max_surge, .. } => max_surge,
        Strategy::Recreate => 0,
    };
    let patch = json!({
        "metadata": { "annotations": {
            DESIRED_REPLICAS_ANNOTATION: desired.to_string(),
            MAX_REPLICAS_ANNOTATION: (desired + surge).to_string(),
        }},
        "spec": { "replicas": replicas },
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ())
}

/// Whether pods of the old sets still exist (running or terminating): Recreate waits for them.
async fn old_pods_remain(
    ctx: &Context,
    namespace: &str,
    sets: &[ReplicaSet],
    template_hash: &str,
) -> Result<bool, kube::Error> {
    let old_uids: Vec<String> = sets
        .iter()
        .filter(|rs| rs.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) != Some(template_hash))
        .filter_map(|rs| rs.uid())
        .collect();
    if old_uids.is_empty() {
        return Ok(false);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = api.list(&ListParams::default()).await?;
    Ok(list.items.iter().any(|p| !pods::has_finished(p) && old_uids.iter().any(|uid| is_controlled_by(p, uid))))
}

/// The Deployment carries its new ReplicaSet's revision, as upstream annotates it.
async fn sync_revision(ctx: &Context, d: &Deployment, revision: i64) -> Result<(), Error> {
    if d.annotations().get(REVISION_ANNOTATION) == Some(&revision.to_string()) {
        return Ok(());
    }
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    let patch = Patch::Merge(json!({ "metadata": { "annotations": { REVISION_ANNOTATION: revision.to_string() } } }));
    api.patch(&d.name_any(), &PatchParams::default(), &patch).await.map_err(api_error(d))?;
    Ok(())
}

/// Upstream's cleanupDeployment: old sets scaled to zero beyond revisionHistoryLimit go, oldest first.
async fn cleanup(api: &Api<ReplicaSet>, d: &Deployment, sets: &[ReplicaSet], template_hash: &str) -> Result<(), Error> {
    let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    let mut idle: Vec<&ReplicaSet> = sets
        .iter()
        .filter(|rs| rs.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) != Some(template_hash))
        .filter(|rs| counts(rs).replicas == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0))
        .collect();
    idle.sort_by_key(|rs| revision(rs));
    let excess = idle.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
    for rs in idle.into_iter().take(excess) {
        api.delete(&rs.name_any(), &DeleteParams::background()).await.map_err(api_error(d))?;
        tracing::info!(replica_set = %rs.name_any(), "deleted old replica set past the revision history limit");
    }
    Ok(())
}
