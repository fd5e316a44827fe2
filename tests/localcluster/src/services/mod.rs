//! Services of the local cluster: ClusterIP allocation, the userspace proxy with its host
//! ports, kube-state-metrics, the Prometheus configuration and its file-based pod discovery.

pub mod clusterip;
pub mod interface;
pub mod ksm;
pub mod podsd;
pub mod promconfig;
pub mod proxy;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::contract::HOST_PORTS_ANNOTATION;
use proxy::{format_host_ports, PortKey, Proxy};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the service CIDR is exhausted: no cluster IP left")]
    RangeFull,
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {name}: {reason}")]
    Interface { name: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
}

/// Batches bursts of watch events (a rollout changes many slices) into one proxy sync.
const SYNC_DEBOUNCE: Duration = Duration::from_millis(50);

/// Keeps the proxy in line with the Services and EndpointSlices, recording host ports (and
/// nodePorts of NodePort Services) on the Services.
pub async fn run_proxy(client: Client, proxy: Arc<Proxy>) {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_events =
        reflector::reflector(svc_writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .map(|_| ());
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let mut events = std::pin::pin!(stream::select(svc_events, slice_events).ready_chunks(256));
    let mut resync = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            batch = events.next() => if batch.is_none() { break },
            _ = resync.tick() => {},
        }
        tokio::time::sleep(SYNC_DEBOUNCE).await;
        if let Err(error) = sync_once(&client, &proxy, &services, &slices).await {
            tracing::warn!(%error, "proxy sync failed");
        }
    }
}

async fn sync_once(
    client: &Client,
    proxy: &Proxy,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> Result<(), Error> {
    let all = services.state();
    let host_ports = proxy.sync(proxy::wanted(&all, &slices.state())).await?;
    let mut by_service: BTreeMap<(String, String), BTreeMap<u16, u16>> = BTreeMap::new();
    for (PortKey { namespace, service, port }, host) in host_ports {
        by_service.entry((namespace, service)).or_default().insert(port, host);
    }
    for svc in &all {
        let key = (svc.namespace().unwrap_or_default(), svc.name_any());
        let Some(ports) = by_service.get(&key) else { continue };
        record_host_ports(client, svc, ports).await?;
    }
    Ok(())
}

/// Writes the host-ports annotation when it changed and, on a NodePort Service, the nodePort
/// of every port that has none yet.
async fn record_host_ports(client: &Client, svc: &Service, ports: &BTreeMap<u16, u16>) -> Result<(), Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), &svc.namespace().unwrap_or_default());
    let value = format_host_ports(ports);
    let api_error = |source| Error::Api {
        what: format!("Service {}/{}", svc.namespace().unwrap_or_default(), svc.name_any()),
        source,
    };
    if svc.annotations().get(HOST_PORTS_ANNOTATION) != Some(&value) {
        let patch = Patch::Merge(json!({ "metadata": { "annotations": { HOST_PORTS_ANNOTATION: value } } }));
        api.patch(&svc.name_any(), &PatchParams::default(), &patch).await.map_err(api_error)?;
    }
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("NodePort") {
        // Strategic merge keys service ports by `port`, so only the missing nodePorts are set.
        let missing: Vec<serde_json::Value> = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter(|p| p.node_port.unwrap_or(0) == 0)
            .filter_map(|p| Some(json!({ "port": p.port, "nodePort": ports.get(&u16::try_from(p.port).ok()?)? })))
            .collect();
        if !missing.is_empty() {
            let patch = Patch::Strategic(json!({ "spec": { "ports": missing } }));
            api.patch(&svc.name_any(), &PatchParams::default(), &patch).await.map_err(api_error)?;
        }
    }
    Ok(())
}
