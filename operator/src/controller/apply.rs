//! Server-side apply of the built children under one field manager, reporting what changed.
//! A child the cache shows as already matching is not sent at all.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::build::Children;
use super::cache::{key, Caches};
use super::compact::Compact;
use super::{drift, replicas};
use crate::error::{Error, Result};

/// The one field manager of everything the reconciler writes.
pub const FIELD_MANAGER: &str = "riskplatform-operator";

/// What an apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// One applied child: its kind, name and what happened.
#[derive(Clone, Debug)]
pub struct Applied {
    pub kind: String,
    pub name: String,
    pub outcome: Outcome,
}

/// The apply body of `obj`: its fields, type and the hash of both.
fn body_of<K: Resource<DynamicType = ()> + Serialize>(obj: &K) -> Result<serde_json::Value> {
    let mut body = serde_json::to_value(obj).map_err(Error::Serialization)?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    Ok(drift::with_desired_hash(body))
}

/// The child after an apply: the cached copy when nothing was sent, else the server's answer.
enum Current<K> {
    Cached(Arc<Compact<K>>),
    Sent(K),
}

/// Applies `obj` unless `store` already holds it as desired; compares resourceVersions to tell
/// a create or an update from a no-op.
pub async fn apply<K>(client: &Client, namespace: &str, obj: &K, store: &Store<Compact<K>>) -> Result<Applied>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    Ok(apply_current(client, namespace, obj, store).await?.1)
}

/// Applies `obj` as `apply` does and returns it as the server holds it, for the workloads whose
/// status the reconcile reads. Only these decode their cached copy: the other children's were
/// decoded on every steady-state reconcile only to be dropped.
pub async fn apply_observed<K>(
    client: &Client,
    namespace: &str,
    obj: &K,
    store: &Store<Compact<K>>,
) -> Result<(K, Applied)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let (current, applied) = apply_current(client, namespace, obj, store).await?;
    let object = match current {
        Current::Cached(stored) => stored.object()?,
        Current::Sent(object) => object,
    };
    Ok((object, applied))
}

async fn apply_current<K>(
    client: &Client,
    namespace: &str,
    obj: &K,
    store: &Store<Compact<K>>,
) -> Result<(Current<K>, Applied)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.name_any();
    let kind = K::kind(&()).into_owned();
    let body = body_of(obj)?;
    let stored = store.get(&key(namespace, &name));
    if let Some(stored) = &stored {
        if drift::is_subset(&body, &stored.value()?) {
            return Ok((Current::Cached(Arc::clone(stored)), Applied { kind, name, outcome: Outcome::Unchanged }));
        }
    }
    let before = stored.and_then(|o| o.resource_version());
    let applied: K = send(client, namespace, &name, &body).await?;
    let outcome = outcome(before, &applied);
    Ok((Current::Sent(applied), Applied { kind, name, outcome }))
}

async fn send<K>(client: &Client, namespace: &str, name: &str, body: &serde_json::Value) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut applied = api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await.map_err(
        |e| match e {
            // An invalid child stays invalid however often it is sent: a permanent problem.
            kube::Error::Api(status) if status.code == 422 => {
                Error::ChildRejected { kind: K::kind(&()).into_owned(), name: name.to_owned(), message: status.message }
            }
            e => e.into(),
        },
    )?;
    // Trimmed as in the caches: a reconcile keeps the workloads it applied until its status is
    // written, and a thousand converging at once held them with every manager's field set.
    replicas::keep_replicas_claim(applied.meta_mut());
    Ok(applied)
}

fn outcome<K: Resource>(before: Option<String>, applied: &K) -> Outcome {
    match before {
        None => Outcome::Created,
        Some(rv) if applied.resource_version().as_deref() != Some(rv.as_str()) => Outcome::Updated,
        Some(_) => Outcome::Unchanged,
    }
}

/// Applies a Secret the reconciler owns. Only its metadata is cached, so it is sent unless its
/// resourceVersion is still the one this process applied the same content at.
pub async fn apply_secret(client: &Client, namespace: &str, secret: &Secret, caches: &Caches) -> Result<Applied> {
    let name = secret.name_any();
    let kind = "Secret".to_owned();
    let body = body_of(secret)?;
    let hash = body["metadata"]["annotations"][drift::DESIRED_HASH_ANNOTATION].as_str().unwrap_or_default().to_owned();
    let before = caches.secrets.get(&key(namespace, &name)).and_then(|m| m.resource_version());
    if caches.applied_secrets.unchanged(namespace, &name, before.as_deref(), &hash) {
        return Ok(Applied { kind, name, outcome: Outcome::Unchanged });
    }
    let applied: Secret = send(client, namespace, &name, &body).await?;
    let outcome = outcome(before, &applied);
    caches.applied_secrets.record(namespace, &name, applied.resource_version().unwrap_or_default(), hash);
    Ok(Applied { kind, name, outcome })
}

/// Deletes a child that the spec no longer asks for (e.g. Redis after switching to External),
/// if the cache still shows it.
pub async fn delete_if_present<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    store: &Store<Compact<K>>,
) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    if store.get(&key(namespace, name)).is_none() {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Results of applying every child; the workloads come back with their current status.
pub struct AppliedChildren {
    pub applied: Vec<Applied>,
    pub observed: super::status::Observed,
}

/// Applies every child in dependency order: identity and configuration before the workloads that
/// read them.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    children: &Children,
    caches: &Caches,
) -> Result<AppliedChildren> {
    let c = caches;
    let mut applied = Vec::with_capacity(16);
    let mut observed = super::status::Observed::default();
    applied.push(apply(client, namespace, &children.service_account, &c.service_accounts).await?);
    applied.push(apply(client, namespace, &children.breaker_reader_role, &c.roles).await?);
    applied.push(apply(client, namespace, &children.breaker_reader_binding, &c.role_bindings).await?);
    applied.push(apply(client, namespace, &children.pgbouncer_config, &c.configmaps).await?);
    applied.push(apply_secret(client, namespace, &children.pgbouncer_auth, c).await?);
    let (pgb, a) = apply_observed(client, namespace, &children.pgbouncer_deployment, &c.deployments).await?;
    observed.pgbouncer = Some(pgb);
    applied.push(a);
    applied.push(apply(client, namespace, &children.pgbouncer_service, &c.services).await?);
    match &children.redis {
        Some(redis) => {
            applied.push(apply(client, namespace, &redis.config, &c.configmaps).await?);
            let (sts, a) = apply_observed(client, namespace, &redis.statefulset, &c.statefulsets).await?;
            observed.redis = Some(sts);
            applied.push(a);
            applied.push(apply(client, namespace, &redis.service, &c.services).await?);
        }
        None => {
            let name = format!("{}-redis", children.service_account.name_any());
            delete_if_present(client, namespace, &name, &c.statefulsets).await?;
            delete_if_present(client, namespace, &name, &c.services).await?;
            delete_if_present(client, namespace, &name, &c.configmaps).await?;
        }
    }
    let (api, a) = apply_observed(client, namespace, &children.api_deployment, &c.deployments).await?;
    observed.api = Some(api);
    applied.push(a);
    applied.push(apply(client, namespace, &children.api_service, &c.services).await?);
    applied.push(apply(client, namespace, &children.api_pdb, &c.pdbs).await?);
    let (workers, a) = apply_observed(client, namespace, &children.worker_deployment, &c.deployments).await?;
    observed.workers = Some(workers);
    applied.push(a);
    applied.push(apply(client, namespace, &children.worker_service, &c.services).await?);
    Ok(AppliedChildren { applied, observed })
}
