//! The controller-manager of the local cluster: the workload controllers, the endpoints
//! controllers and the trivial scheduler, each watching the real API server.

pub mod deployment;
pub mod endpoints;
pub mod hash;
pub mod job;
pub mod pods;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};

/// The field manager every write of the local controller-manager uses.
pub const FIELD_MANAGER: &str = "localcluster-controller-manager";

/// How often a controller looks again at an object nothing changed, as the informers' resync does.
pub const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {namespace}/{name}: {source}")]
    Api {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{kind} {namespace}/{name} is invalid: {reason}")]
    Invalid { kind: String, namespace: String, name: String, reason: String },
}

impl Error {
    /// A short label for the metric and log of a failed reconcile.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Api { .. } => "api",
            Error::Invalid { .. } => "invalid",
        }
    }
}

/// Wraps an API error with the object it was about, for a log line that names it.
pub(crate) fn api_error<K: Resource<DynamicType = ()>>(obj: &K) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |source| Error::Api {
        kind: kind_of::<K>(),
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        source: Box::new(source),
    }
}

pub(crate) fn invalid<K: Resource<DynamicType = ()>>(obj: &K, reason: impl Into<String>) -> Error {
    Error::Invalid {
        kind: kind_of::<K>(),
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        reason: reason.into(),
    }
}

fn kind_of<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).into_owned()
}

/// Shared state of every controller.
pub struct Context {
    pub client: Client,
}

/// The owner reference a controller puts on what it creates: `controller: true` so it is adopted
/// by exactly this owner, `blockOwnerDeletion` as upstream sets it for foreground deletion.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let mut reference = owner.controller_owner_ref(&())?;
    reference.block_owner_deletion = Some(true);
    Some(reference)
}

/// Whether `obj` is controlled by the object with this uid.
pub fn is_controlled_by<K: Resource>(obj: &K, owner_uid: &str) -> bool {
    obj.owner_references().iter().any(|r| r.controller == Some(true) && r.uid == owner_uid)
}

/// What to do after a failed reconcile: retry soon, logged with the object's name.
pub fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(kind = %kind_of::<K>(), name = %obj.name_any(), namespace = ?obj.namespace(), reason = error.metric_label(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

/// Runs every controller until one of them ends (they end only when their watches do).
pub async fn run(client: Client) {
    let ctx = Arc::new(Context { client: client.clone() });
    tokio::select! {
        () = deployment::run(ctx.clone()) => {},
        () = replicaset::run(ctx.clone()) => {},
        () = statefulset::run(ctx.clone()) => {},
        () = job::run(ctx.clone()) => {},
        () = endpoints::run(ctx.clone()) => {},
        () = scheduler::run(client) => {},
    }
}
