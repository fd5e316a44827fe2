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
    host_task: AbortHandle,
    /// The Service's cluster IP when last synced, to notice it appear or change.
    wanted_ip: Option<Ipv4Addr>,
    /// The cluster IP listened on and its task (none without the interface).
    cluster: Option<(Ipv4Addr, AbortHandle)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.host_task.abort();
        if let Some((_, task)) = &self.cluster {
            task.abort();
        }
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

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<PortKey, Running>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the listeners match `wanted`; returns the host port of every served port. A host
    /// listener stays open while its Service port exists (a cluster IP appearing later only adds
    /// the ClusterIP listener), so a recorded host port never moves under a client.
    pub async fn sync(&self, wanted: Vec<WantedPort>) -> Result<BTreeMap<PortKey, u16>, Error> {
        let mut to_open = Vec::new();
        let mut to_attach = Vec::new();
        {
            let mut running = self.running();
            running
                .retain(|key, r| wanted.iter().any(|w| &w.key == key && w.host_port.is_none_or(|h| h == r.host_port)));
            for w in wanted {
                match running.get_mut(&w.key) {
                    Some(r) => {
                        r.backends.set(w.backends);
                        if r.wanted_ip != w.cluster_ip {
                            if let Some((_, task)) = r.cluster.take() {
                                task.abort();
                            }
                            r.wanted_ip = w.cluster_ip;
                            to_attach.push((w.key, w.cluster_ip, r.backends.clone()));
                        }
                    }
                    None => to_open.push(w),
                }
            }
        }
        for w in to_open {
            let (key, r) = self.open(w).await?;
            to_attach.push((key.clone(), r.wanted_ip, r.backends.clone()));
            self.running().insert(key, r);
        }
        for (key, ip, backends) in to_attach {
            let Some(ip) = ip else { continue };
            let cluster = self.listen_on_cluster_ip(ip, &key, backends).await;
            if let Some(r) = self.running().get_mut(&key) {
                r.cluster = cluster;
            }
        }
        if let Some(interface) = &self.interface {
            let ips: BTreeSet<Ipv4Addr> =
                self.running().values().filter_map(|r| r.cluster.as_ref().map(|(ip, _)| *ip)).collect();
            interface.retain(&ips).await;
        }
        Ok(self.running().iter().map(|(k, r)| (k.clone(), r.host_port)).collect())
    }

    /// The host listener of a new Service port, on its recorded host port when still free.
    async fn open(&self, w: WantedPort) -> Result<(PortKey, Running), Error> {
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
        let host_task = serve(host, backends.clone(), w.key.clone());
        tracing::info!(service = %w.key.service, namespace = %w.key.namespace, port = w.key.port, host_port, backends = w.backends.len(), "serving service port");
        Ok((w.key, Running { backends, host_port, host_task, wanted_ip: w.cluster_ip, cluster: None }))
    }

    /// The ClusterIP listener, when the interface can hold the address.
    async fn listen_on_cluster_ip(
        &self,
        ip: Ipv4Addr,
        key: &PortKey,
        backends: Arc<Backends>,
    ) -> Option<(Ipv4Addr, AbortHandle)> {
        let interface = self.interface.as_ref()?;
        if !interface.holds(ip) || !interface.add(ip).await {
            return None;
        }
        let address = SocketAddr::from((ip, key.port));
        match TcpListener::bind(address).await {
            Ok(listener) => {
                tracing::info!(service = %key.service, namespace = %key.namespace, %address, "serving cluster IP");
                Some((ip, serve(listener, backends, key.clone())))
            }
            Err(error) => {
                tracing::warn!(%address, %error, "cannot listen on the cluster IP");
                None
            }
        }
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
