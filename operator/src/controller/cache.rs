//! The controller's caches: one reflector store per owned kind (each object compact: typed
//! metadata and JSON text) and for HPAs, every Secret as metadata only, and the content of the
//! credentials Secrets keyed by their resourceVersion.
//!
//! One watch per kind feeds both a store and the controller's triggers; a reconcile reads the
//! stores and sends no GET for a child, and GETs a credentials Secret only when its
//! resourceVersion moved.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::compact::Compact;
use super::replicas;
use crate::error::Result;

/// Label every child carries; the owned kinds are watched with it.
const OWNED: &str = "app.kubernetes.io/managed-by=riskplatform-operator";

/// A stream of watched objects, as the controller's triggers take it.
pub type Feed<K> = BoxStream<'static, std::result::Result<K, watcher::Error>>;

/// The stores a reconcile and the autoscaler read.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<Compact<Deployment>>,
    pub statefulsets: Store<Compact<StatefulSet>>,
    pub services: Store<Compact<Service>>,
    pub configmaps: Store<Compact<ConfigMap>>,
    pub service_accounts: Store<Compact<ServiceAccount>>,
    pub pdbs: Store<Compact<PodDisruptionBudget>>,
    pub roles: Store<Compact<Role>>,
    pub role_bindings: Store<Compact<RoleBinding>>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    /// Every Secret of the watched namespaces, without data.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    pub credentials: Arc<SecretContents>,
    pub applied_secrets: Arc<AppliedSecrets>,
}

/// The watch streams behind [`Caches`]; each must be polled (by the controller, or by
/// [`Feeds::spawn`]) for its store to fill.
pub struct Feeds {
    pub deployments: Feed<Compact<Deployment>>,
    pub statefulsets: Feed<Compact<StatefulSet>>,
    pub services: Feed<Compact<Service>>,
    pub configmaps: Feed<Compact<ConfigMap>>,
    pub service_accounts: Feed<Compact<ServiceAccount>>,
    pub pdbs: Feed<Compact<PodDisruptionBudget>>,
    pub roles: Feed<Compact<Role>>,
    pub role_bindings: Feed<Compact<RoleBinding>>,
    pub hpas: Feed<HorizontalPodAutoscaler>,
    pub secrets: Feed<PartialObjectMeta<Secret>>,
}

/// Builds the stores and the one watch per kind that fills them, over `namespace` or the whole
/// cluster. Nothing is sent before the feeds are polled.
pub fn start(client: &Client, namespace: Option<&str>) -> (Caches, Feeds) {
    let owned = || watcher::Config::default().labels(OWNED);
    let w = Watched { client, namespace };
    // managedFields are most of an object's size and nothing reads them, except on Deployments
    // the autoscaler's claim on spec.replicas.
    let strip = |meta: &mut ObjectMeta| meta.managed_fields = None;
    let (deployments, deployments_feed) = feed::<Compact<Deployment>>(w.api(), owned(), replicas::keep_replicas_claim);
    let (statefulsets, statefulsets_feed) = feed::<Compact<StatefulSet>>(w.api(), owned(), strip);
    let (services, services_feed) = feed::<Compact<Service>>(w.api(), owned(), strip);
    let (configmaps, configmaps_feed) = feed::<Compact<ConfigMap>>(w.api(), owned(), strip);
    let (service_accounts, service_accounts_feed) = feed::<Compact<ServiceAccount>>(w.api(), owned(), strip);
    let (pdbs, pdbs_feed) = feed::<Compact<PodDisruptionBudget>>(w.api(), owned(), strip);
    let (roles, roles_feed) = feed::<Compact<Role>>(w.api(), owned(), strip);
    let (role_bindings, role_bindings_feed) = feed::<Compact<RoleBinding>>(w.api(), owned(), strip);
    let (hpas, hpas_feed) = feed::<HorizontalPodAutoscaler>(w.api(), watcher::Config::default(), strip);
    // All Secrets, for the credentials a spec names; metadata only, so no Secret's data is held.
    let (secrets, secrets_feed) = feed::<PartialObjectMeta<Secret>>(w.api(), watcher::Config::default(), strip);
    let caches = Caches {
        deployments,
        statefulsets,
        services,
        configmaps,
        service_accounts,
        pdbs,
        roles,
        role_bindings,
        hpas,
        secrets,
        credentials: Arc::default(),
        applied_secrets: Arc::default(),
    };
    let feeds = Feeds {
        deployments: deployments_feed,
        statefulsets: statefulsets_feed,
        services: services_feed,
        configmaps: configmaps_feed,
        service_accounts: service_accounts_feed,
        pdbs: pdbs_feed,
        roles: roles_feed,
        role_bindings: role_bindings_feed,
        hpas: hpas_feed,
        secrets: secrets_feed,
    };
    (caches, feeds)
}

struct Watched<'a> {
    client: &'a Client,
    namespace: Option<&'a str>,
}

impl Watched<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        match self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

fn feed<K>(api: Api<K>, config: watcher::Config, trim: fn(&mut ObjectMeta)) -> (Store<K>, Feed<K>)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(move |obj: &mut K| trim(obj.meta_mut()))
        .reflect(writer)
        .touched_objects()
        .boxed();
    (store, stream)
}

impl Feeds {
    /// Polls every feed in a background task, for callers without a controller (the bench).
    pub fn spawn(self) {
        fn drive<K: Send + 'static>(feed: Feed<K>) {
            tokio::spawn(feed.for_each(|_| futures::future::ready(())));
        }
        drive(self.deployments);
        drive(self.statefulsets);
        drive(self.services);
        drive(self.configmaps);
        drive(self.service_accounts);
        drive(self.pdbs);
        drive(self.roles);
        drive(self.role_bindings);
        drive(self.hpas);
        drive(self.secrets);
    }
}

impl Caches {
    /// Resolves once every store has its first full list, so a reconcile never mistakes an
    /// unsynced store for missing children.
    pub async fn synced(&self) {
        // Asked again on a short interval: a waiter registered before the first list completes
        // was seen never to wake (kube-runtime 5.0), while a fresh one sees the synced store.
        while !self.is_synced() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn is_synced(&self) -> bool {
        fn ready<K: reflector::Lookup + Clone + 'static>(s: &Store<K>) -> bool
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            matches!(s.wait_until_ready().now_or_never(), Some(Ok(())))
        }
        ready(&self.deployments)
            && ready(&self.statefulsets)
            && ready(&self.services)
            && ready(&self.configmaps)
            && ready(&self.service_accounts)
            && ready(&self.pdbs)
            && ready(&self.roles)
            && ready(&self.role_bindings)
            && ready(&self.hpas)
            && ready(&self.secrets)
    }
}

/// The key of a namespaced object in a store.
pub fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> ObjectRef<K> {
    ObjectRef::new(name).within(namespace)
}

/// Content of the credentials Secrets, each kept with the resourceVersion it was read at.
#[derive(Default)]
pub struct SecretContents {
    by_name: Mutex<HashMap<(String, String), Arc<Secret>>>,
}

impl SecretContents {
    /// The Secret `namespace/name` as of the resourceVersion in `meta` (the metadata store):
    /// from memory when that version was read before, else with one GET.
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        meta: Option<&PartialObjectMeta<Secret>>,
    ) -> Result<Option<Arc<Secret>>> {
        let id = (namespace.to_owned(), name.to_owned());
        let Some(meta) = meta else {
            self.lock().remove(&id);
            return Ok(None);
        };
        if let Some(known) = self.lock().get(&id).filter(|s| s.resource_version() == meta.resource_version()) {
            return Ok(Some(known.clone()));
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let Some(mut secret) = api.get_opt(name).await? else {
            self.lock().remove(&id);
            return Ok(None);
        };
        secret.metadata.managed_fields = None;
        let secret = Arc::new(secret);
        self.lock().insert(id, secret.clone());
        Ok(Some(secret))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Secret>>> {
        self.by_name.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The resourceVersion and desired hash of each Secret the reconciler applied: the metadata
/// store cannot show a Secret's data, so an unchanged resourceVersion is what says nobody
/// edited it since.
#[derive(Default)]
pub struct AppliedSecrets {
    by_name: Mutex<HashMap<(String, String), (String, String)>>,
}

impl AppliedSecrets {
    /// Whether `namespace/name` is still at the version the reconciler applied with `hash`.
    pub fn unchanged(&self, namespace: &str, name: &str, resource_version: Option<&str>, hash: &str) -> bool {
        let map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(namespace.to_owned(), name.to_owned()))
            .is_some_and(|(rv, h)| Some(rv.as_str()) == resource_version && h == hash)
    }

    pub fn record(&self, namespace: &str, name: &str, resource_version: String, hash: String) {
        let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((namespace.to_owned(), name.to_owned()), (resource_version, hash));
    }
}
