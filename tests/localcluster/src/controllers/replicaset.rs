//! The ReplicaSet controller: keeps `spec.replicas` active pods from the template and writes the
//! status as upstream's replica_set.go does.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{api_error, controller_ref, error_policy, invalid, is_controlled_by, pods, Context, Error, RESYNC};

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The pods of a namespace controlled by the owner with `uid`, read from the API server (not a
/// cache, so no expectations bookkeeping is needed against stale reads).
pub async fn owned_pods(api: &Api<Pod>, uid: &str) -> Result<Vec<Pod>, kube::Error> {
    let list = api.list(&ListParams::default()).await?;
    Ok(list.items.into_iter().filter(|p| is_controlled_by(p, uid)).collect())
}

#[tracing::instrument(skip_all, fields(namespace = rs.namespace(), name = %rs.name_any()))]
async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = rs.namespace().ok_or_else(|| invalid(&*rs, "no namespace"))?;
    let uid = rs.uid().ok_or_else(|| invalid(&*rs, "no uid"))?;
    let spec = rs.spec.as_ref().ok_or_else(|| invalid(&*rs, "no spec"))?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned = owned_pods(&api, &uid).await.map_err(api_error(&*rs))?;
    let now = Timestamp::now();
    let active: Vec<&Pod> = owned.iter().filter(|p| pods::is_active(p)).collect();
    let desired = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);

    if active.len() < desired {
        let template = spec.template.as_ref().ok_or_else(|| invalid(&*rs, "spec.template is required"))?;
        let owner = controller_ref(&*rs).ok_or_else(|| invalid(&*rs, "no uid to own pods with"))?;
        for _ in active.len()..desired {
            let pod = pods::from_template(
                template,
                Some(format!("{}-", rs.name_any())),
                None,
                BTreeMap::new(),
                owner.clone(),
            );
            api.create(&PostParams::default(), &pod).await.map_err(api_error(&*rs))?;
        }
        tracing::info!(created = desired - active.len(), "created pods");
    } else if active.len() > desired {
        for pod in pods::pods_to_delete(active.clone(), active.len() - desired, now) {
            api.delete(&pod.name_any(), &DeleteParams::default()).await.map_err(api_error(&*rs))?;
            tracing::info!(pod = %pod.name_any(), "deleted pod");
        }
    }

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let status = status(&rs, &active, now);
    if rs.status.as_ref() != Some(&status) {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = Patch::Merge(json!({ "status": status }));
        rs_api.patch_status(&rs.name_any(), &PatchParams::default(), &patch).await.map_err(api_error(&*rs))?;
    }
    let next = active.iter().filter_map(|p| pods::until_available(p, min_ready, now)).min();
    Ok(Action::requeue(next.map_or(RESYNC, |d| d.min(RESYNC))))
}

/// Upstream's calculateStatus over the active pods.
pub fn status(rs: &ReplicaSet, active: &[&Pod], now: Timestamp) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled =
        active.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    ReplicaSetStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: Some(count(fully_labeled)),
        ready_replicas: Some(count(active.iter().filter(|p| pods::is_ready(p)).count())),
        available_replicas: Some(count(active.iter().filter(|p| pods::is_available(p, min_ready, now)).count())),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    }
}
