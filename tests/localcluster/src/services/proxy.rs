//! The Service proxy, in the spirit of kube-proxy's userspace mode: a TCP listener on every
//! ClusterIP:port (addresses held on the instance's dummy interface) and on a host port of
//! 127.0.0.1, each connection sent to the next ready endpoint in turn.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::interface::ServiceInterface;
use super::Error;
use crate::contract::{cluster_ip, HOST_PORTS_ANNOTATION};
use crate::controllers::endpoints::SERVICE_NAME_LABEL;

/// How long a connection attempt to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One port of one Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// What the proxy should serve for one Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedPort {
    pub key: PortKey,
    pub cluster_ip: Option<Ipv4Addr>,
    /// The host port to keep: the Service's nodePort, else the one recorded earlier.
    pub host_port: Option<u16>,
    pub backends: Vec<SocketAddr>,
}

/// The ready endpoints of a Service port over its EndpointSlices. A missing `ready` condition
/// counts as ready, as the EndpointSlice API documents for consumers.
pub fn ready_backends(
    namespace: &str,
    service: &str,
    port_name: Option<&str>,
    slices: &[Arc<EndpointSlice>],
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices.iter().filter(|s| {
        s.namespace().as_deref() == Some(namespace)
            && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service)
    }) {
        let Some(port) = slice.ports.iter().flatten().find(|p| p.name.as_deref() == port_name).and_then(|p| p.port)
        else {
            continue;
        };
        let Ok(port) = u16::try_from(port) else { continue };
        for endpoint in slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false)) {
            out.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                    .map(|ip| SocketAddr::from((ip, port))),
            );
        }
    }
    out.sort();
    out
}

/// `80=39123,443=39124`: the contract's annotation of host ports.
pub fn format_host_ports(ports: &BTreeMap<u16, u16>) -> String {
    ports.iter().map(|(port, host)| format!("{port}={host}")).collect::<Vec<_>>().join(",")
}

pub fn parse_host_ports(value: &str) -> BTreeMap<u16, u16> {
    value
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(p, h)| Some((p.trim().parse().ok()?, h.trim().parse().ok()?)))
        .collect()
}

/// The ports the proxy should serve for these Services and slices.
pub fn wanted(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<WantedPort> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let (namespace, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let recorded = svc.annotations().get(HOST_PORTS_ANNOTATION).map(|v| parse_host_ports(v)).unwrap_or_default();
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else { continue };
            let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
            out.push(WantedPort {
                key: PortKey { namespace: namespace.clone(), service: name.clone(), port: number },
                cluster_ip: cluster_ip(svc),
                host_port: node_port.or_else(|| recorded.get(&number).copied()),
                backends: ready_backends(&namespace, &name, port.name.as_deref(), slices),
            });
        }
    }
    out
}

/// The endpoints of one port, shared with its listeners; replaced whole when slices change.
#[derive(Default)]
pub struct Backends {
    addrs: RwLock<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Backends {
    /// Every endpoint, starting at the next one in turn: the order to try a connection in.
    fn rotation(&self) -> Vec<SocketAddr> {
        let addrs = self.addrs.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if addrs.is_empty() {
            return addrs;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
        addrs[start..].iter().chain(&addrs[..start]).copied().collect()
    }

    fn set(&self, addrs: Vec<SocketAddr>) {
        *self.addrs.write().unwrap_or_else(std::sync::PoisonError::into_inner) = addrs;
    }
}

struct Running {
    backends: Arc<Backends>,
    host_port: u16,
    /// The Service's cluster IP when the listeners were opened, to notice it change.
    wanted_ip: Option<Ipv4Addr>,
    /// The cluster IP actually listened on (none without the interface).
    listening_ip: Option<Ipv4Addr>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(AbortHandle::abort);
    }
}

/// The proxy's listeners, one entry per Service port.
pub struct Proxy {
    interface: Option<ServiceInterface>,
    running: Mutex<BTreeMap<PortKey, Running>>,
}

async fn forward(mut client: TcpStream, backends: Arc<Backends>, key: Arc<PortKey>) {
    for backend in backends.rotation() {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(mut server)) => {
                if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                    tracing::debug!(service = %key.service, %backend, %error, "proxied connection ended with an error");
                }
                return;
            }
            Ok(Err(error)) => {
                tracing::debug!(service = %key.service, %backend, %error, "endpoint refused; trying the next")
            }
            Err(_) => tracing::debug!(service = %key.service, %backend, "endpoint timed out; trying the next"),
        }
    }
    tracing::debug!(service = %key.service, namespace = %key.namespace, port = key.port, "no ready endpoint: connection closed");
}

fn serve(listener: TcpListener, backends: Arc<Backends>, key: PortKey) -> AbortHandle {
    let key = Arc::new(key);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(forward(stream, backends.clone(), key.clone()));
                }
                Err(error) => {
                    tracing::warn!(service = %key.service, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .abort_handle()
}

impl Proxy {
    /// A proxy; without an interface (not root) it serves host ports only.
    pub fn new(interface: Option<ServiceInterface>) -> Self {
        Self { interface, running: Mutex::new(BTreeMap::new()) }
    }

    pub fn interface(&self) -> Option<&ServiceInterface> {
        self.interface.as_ref()
    }

    /// Makes the listeners match `wanted`; returns the host port of every served port.
    pub async fn sync(&self, wanted: Vec<WantedPort>) -> Result<BTreeMap<PortKey, u16>, Error> {
        let keys: BTreeSet<PortKey> = wanted.iter().map(|w| w.key.clone()).collect();
        let mut to_open = Vec::new();
        {
            let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            running.retain(|key, r| {
                keys.contains(key)
                    && wanted.iter().any(|w| {
                        &w.key == key && w.cluster_ip == r.wanted_ip && w.host_port.is_none_or(|h| h == r.host_port)
                    })
            });
            for w in wanted {
                match running.get(&w.key) {
                    Some(r) => r.backends.set(w.backends),
                    None => to_open.push(w),
                }
            }
        }
        for w in to_open {
            let running = self.open(w).await?;
            if let Some((key, r)) = running {
                self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, r);
            }
        }
        if let Some(interface) = &self.interface {
            let ips: BTreeSet<Ipv4Addr> = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .filter_map(|r| r.listening_ip)
                .collect();
            interface.retain(&ips).await;
        }
        Ok(self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, r)| (k.clone(), r.host_port))
            .collect())
    }

    async fn open(&self, w: WantedPort) -> Result<Option<(PortKey, Running)>, Error> {
        let backends = Arc::new(Backends::default());
        backends.set(w.backends.clone());
        let host = match TcpListener::bind((Ipv4Addr::LOCALHOST, w.host_port.unwrap_or(0))).await {
            Ok(l) => l,
            Err(error) if w.host_port.is_some() => {
                tracing::warn!(service = %w.key.service, port = w.key.port, host_port = w.host_port, %error, "recorded host port taken: allocating another");
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                    .await
                    .map_err(|source| Error::Listen { address: "127.0.0.1:0".into(), source })?
            }
            Err(source) => return Err(Error::Listen { address: "127.0.0.1:0".into(), source }),
        };
        let host_port =
            host.local_addr().map_err(|source| Error::Listen { address: "127.0.0.1".into(), source })?.port();
        let mut tasks = vec![serve(host, backends.clone(), w.key.clone())];
        let mut listening_ip = None;
        if let (Some(interface), Some(ip)) = (&self.interface, w.cluster_ip) {
            if interface.holds(ip) && interface.add(ip).await {
                let address = SocketAddr::from((ip, w.key.port));
                match TcpListener::bind(address).await {
                    Ok(l) => {
                        tasks.push(serve(l, backends.clone(), w.key.clone()));
                        listening_ip = Some(ip);
                    }
                    Err(error) => tracing::warn!(%address, %error, "cannot listen on the cluster IP"),
                }
            }
        }
        tracing::info!(service = %w.key.service, namespace = %w.key.namespace, port = w.key.port, host_port, cluster_ip = ?listening_ip, backends = w.backends.len(), "serving service port");
        Ok(Some((w.key, Running { backends, host_port, wanted_ip: w.cluster_ip, listening_ip, tasks })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_round_trip_through_the_annotation() {
        let ports = BTreeMap::from([(80, 39123), (443, 39124)]);
        assert_eq!(format_host_ports(&ports), "80=39123,443=39124");
        assert_eq!(parse_host_ports("80=39123, 443=39124,junk"), ports);
    }
}
