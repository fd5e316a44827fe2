//! Shared state of the reconcilers: client, event recorder, metrics, caches, readiness and backoff.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource};
use riskplatform_crd::RiskPlatform;
use serde::de::DeserializeOwned;

use crate::controller::cache::{self, Caches, Feeds};
use crate::metrics::Metrics;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Set once the RiskPlatform cache has synced; served on /readyz.
    pub ready: Arc<AtomicBool>,
    /// Whether this replica holds the lease and runs the controller.
    pub leading: AtomicBool,
    pub backoff: Backoff,
    /// Watch one namespace, or all when None.
    pub namespace: Option<String>,
    /// Time between two autoscaler evaluations.
    pub autoscale_interval: Duration,
    /// Reconciles run at once (0: unbounded).
    pub max_concurrent_reconciles: u16,
    /// The stores reconciles and the autoscaler read.
    pub caches: Caches,
    /// The autoscaler's state between status writes.
    pub autoscale_memo: crate::autoscale::memo::Memo,
    /// Whether each platform's database answers; None leaves the database unchecked (a test
    /// cluster whose platforms point at no database).
    pub database_check: Option<crate::controller::database::DatabaseCheck>,
    /// The watches behind `caches`, until the controller (or a bench) takes them to poll.
    feeds: Mutex<Option<Feeds>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, namespace: Option<String>, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: "riskplatform-operator".into(), instance };
        let (caches, feeds) = cache::start(&client, namespace.as_deref());
        Self {
            caches,
            autoscale_memo: Default::default(),
            database_check: None,
            feeds: Mutex::new(Some(feeds)),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            leading: AtomicBool::new(false),
            backoff: Backoff::default(),
            namespace,
            autoscale_interval: Duration::from_secs(15),
            max_concurrent_reconciles: 0,
        }
    }

    /// The watches that fill `caches`; `None` once taken.
    pub fn take_feeds(&self) -> Option<Feeds> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub fn api_all(&self) -> Api<RiskPlatform> {
        self.owned_api(&self.client)
    }

    /// An Api over the watched namespace (or the whole cluster).
    pub fn owned_api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
}

/// Exponential backoff per object: 1 s doubling up to 5 min, reset by a successful reconcile.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<ObjectRef<RiskPlatform>, u32>>,
}

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Backoff {
    pub fn next(&self, obj: &ObjectRef<RiskPlatform>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(obj.clone()).or_insert(0);
        let delay = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(*n)).min(BACKOFF_MAX);
        *n = n.saturating_add(1);
        delay
    }

    pub fn reset(&self, obj: &ObjectRef<RiskPlatform>) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes_and_resets_after_success() {
        let b = Backoff::default();
        let obj = ObjectRef::new("rp").within("ns");
        let delays: Vec<u64> = (0..11).map(|_| b.next(&obj).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        b.reset(&obj);
        assert_eq!(b.next(&obj).as_secs(), 1);
    }
}
