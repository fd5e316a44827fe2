//! Server-side apply of the built children under one field manager, reporting what changed.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::build::Children;
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

/// Applies `obj` and compares resourceVersions to tell a create or an update from a no-op.
pub async fn apply<K>(client: &Client, namespace: &str, obj: &K) -> Result<(K, Applied)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = obj.name_any();
    let before = api.get_opt(&name).await?.and_then(|o| o.resource_version());
    let mut body = serde_json::to_value(obj).map_err(Error::Serialization)?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    let applied = api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await.map_err(
        |e| match e {
            kube::Error::Api(status) if status.code == 422 => {
                Error::ChildRejected { kind: K::kind(&()).into_owned(), name: name.clone(), message: status.message }
            }
            e => e.into(),
        },
    )?;
    let outcome = match before {
        None => Outcome::Created,
        Some(rv) if applied.resource_version().as_deref() != Some(rv.as_str()) => Outcome::Updated,
        Some(_) => Outcome::Unchanged,
    };
    let kind = K::kind(&()).into_owned();
    Ok((applied, Applied { kind, name, outcome }))
}

/// Deletes a child that the spec no longer asks for (e.g. Redis after switching to External).
pub async fn delete_if_present<K>(client: &Client, namespace: &str, name: &str) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
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
pub async fn apply_all(client: &Client, namespace: &str, children: &Children) -> Result<AppliedChildren> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};

    let mut applied = Vec::with_capacity(16);
    let mut observed = super::status::Observed::default();
    applied.push(apply(client, namespace, &children.service_account).await?.1);
    applied.push(apply(client, namespace, &children.breaker_reader_role).await?.1);
    applied.push(apply(client, namespace, &children.breaker_reader_binding).await?.1);
    applied.push(apply(client, namespace, &children.pgbouncer_config).await?.1);
    applied.push(apply(client, namespace, &children.pgbouncer_auth).await?.1);
    let (pgb, a) = apply(client, namespace, &children.pgbouncer_deployment).await?;
    observed.pgbouncer = Some(pgb);
    applied.push(a);
    applied.push(apply(client, namespace, &children.pgbouncer_service).await?.1);
    match &children.redis {
        Some(redis) => {
            applied.push(apply(client, namespace, &redis.config).await?.1);
            let (sts, a) = apply(client, namespace, &redis.statefulset).await?;
            observed.redis = Some(sts);
            applied.push(a);
            applied.push(apply(client, namespace, &redis.service).await?.1);
        }
        None => {
            let name = format!("{}-redis", children.service_account.name_any());
            delete_if_present::<StatefulSet>(client, namespace, &name).await?;
            delete_if_present::<Service>(client, namespace, &name).await?;
            delete_if_present::<ConfigMap>(client, namespace, &name).await?;
        }
    }
    let (api, a) = apply(client, namespace, &children.api_deployment).await?;
    observed.api = Some(api);
    applied.push(a);
    applied.push(apply(client, namespace, &children.api_service).await?.1);
    applied.push(apply(client, namespace, &children.api_pdb).await?.1);
    let (workers, a) = apply(client, namespace, &children.worker_deployment).await?;
    observed.workers = Some(workers);
    applied.push(a);
    applied.push(apply(client, namespace, &children.worker_service).await?.1);
    Ok(AppliedChildren { applied, observed })
}
