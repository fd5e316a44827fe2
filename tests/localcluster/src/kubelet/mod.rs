//! The local cluster's kubelet: registers the Node, runs the Pods bound to it as real processes
//! and serves cAdvisor metrics. Pods are run only when `spec.nodeName` is this node: kube-testenv
//! serves no `pods/binding`, so the scheduler of the controllers half sets nodeName by patch.

mod backoff;
mod cadvisor;
mod cgroup;
mod container;
mod env;
mod error;
mod events;
mod forward;
pub mod harness;
mod hosts;
mod images;
mod network;
mod pod;
mod podvolumes;
mod probe;
mod runtime;
mod security;
mod sources;
mod status;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node as NodeObject, Pod, Service};
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

pub use error::{Error, Result};
use network::{Addresses, IpAllocator};
use pod::Stop;

use crate::contract::{cluster_ip, NODE_NAME};

/// The kubelet's command line, per the shared contract.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub state_dir: PathBuf,
    pub index: u8,
    /// 0 picks a free port; the port is written to `<state-dir>/kubelet.port`.
    pub cadvisor_port: u16,
    pub bin_dir: PathBuf,
}

/// What a pod's cgroups are reported as.
pub struct PodMetrics {
    pub namespace: String,
    pub name: String,
    pub cgroup: cgroup::Cgroup,
    pub containers: Vec<(String, String)>,
}

/// The node-wide context every pod worker shares.
pub struct Node {
    pub client: Client,
    pub addr: Addresses,
    pub state_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub api_port: u16,
    pub token: String,
    pub ca_pem: Vec<u8>,
    pub ips: Mutex<IpAllocator>,
    pub metrics: Mutex<BTreeMap<String, PodMetrics>>,
    pub services: watch::Receiver<Vec<hosts::ServiceName>>,
    pub events: events::Events,
    pub cgroup: cgroup::Cgroup,
    self_exe: PathBuf,
}

impl Node {
    /// The pod's sandbox process: forwards the pod's 127.0.0.1:<api port> to the node.
    fn spawn_forwarder(&self, ip: Ipv4Addr) -> Result<tokio::process::Child> {
        let port = self.api_port;
        tokio::process::Command::new("/usr/bin/nsenter")
            .arg(format!("--net=/run/netns/{}", self.addr.netns(ip)))
            .arg("--")
            .arg(&self.self_exe)
            .args([
                "forward",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--to",
                &format!("{}:{port}", self.addr.gateway()),
            ])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io("starting the pod sandbox forwarder"))
    }
}

struct Credentials {
    api_port: u16,
    token: String,
    ca_pem: Vec<u8>,
}

fn credentials(path: &Path) -> Result<Credentials> {
    let bad = |message: &str| Error::Kubeconfig { path: path.display().to_string(), message: message.to_owned() };
    let text = std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let cluster = &doc["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().ok_or_else(|| bad("clusters[0].cluster.server missing"))?;
    let api_port = server
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| bad("server has no port"))?;
    let ca = cluster["certificate-authority-data"].as_str().ok_or_else(|| bad("certificate-authority-data missing"))?;
    let ca_pem = serde_json::from_value::<ByteString>(serde_json::Value::String(ca.to_owned()))
        .map_err(|_| bad("CA data is not base64"))?
        .0;
    let token = doc["users"][0]["user"]["token"].as_str().ok_or_else(|| bad("users[0].user.token missing"))?.to_owned();
    Ok(Credentials { api_port, token, ca_pem })
}

fn node_object(addr: Addresses, port: u16) -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| serde_json::json!({"type": type_, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let capacity = serde_json::json!({"cpu": cpus.to_string(), "memory": format!("{mem_kib}Ki"), "pods": "110"});
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "spec": {"podCIDR": addr.cidr(), "podCIDRs": [addr.cidr()]},
        "status": {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": addr.gateway().to_string()}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "localcluster",
                "containerRuntimeVersion": "localcluster://0.1", "kubeletVersion": "v1.33.0-localcluster", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64"}
        }
    })
}

async fn register(client: &Client, addr: Addresses, port: u16) -> Result<()> {
    let api: Api<NodeObject> = Api::all(client.clone());
    let node = node_object(addr, port);
    let params = PatchParams::apply("kubelet").force();
    api.patch(NODE_NAME, &params, &Patch::Apply(&node)).await?;
    api.patch_status(NODE_NAME, &params, &Patch::Apply(&node)).await?;
    Ok(())
}

fn service_names(services: &[Arc<Service>]) -> Vec<hosts::ServiceName> {
    services
        .iter()
        .filter_map(|s| {
            Some(hosts::ServiceName {
                namespace: s.metadata.namespace.clone()?,
                name: s.metadata.name.clone()?,
                ip: cluster_ip(s)?,
            })
        })
        .collect()
}

async fn watch_services(client: Client, tx: watch::Sender<Vec<hosts::ServiceName>>) {
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(Api::<Service>::all(client), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        if item.is_ok() {
            let names = service_names(&reader.state());
            tx.send_if_modified(|old| {
                let changed = *old != names;
                *old = names;
                changed
            });
        }
    }
}

struct Worker {
    pod: watch::Sender<Pod>,
    stop: watch::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

fn bound_here(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE_NAME)
}

fn admit(node: &Arc<Node>, workers: &mut HashMap<String, Worker>, pod: Pod) {
    if !bound_here(&pod) {
        return;
    }
    let Some(uid) = pod.metadata.uid.clone() else { return };
    let deleting = pod.metadata.deletion_timestamp.is_some();
    if let Some(w) = workers.get(&uid) {
        w.pod.send_replace(pod);
        if deleting && *w.stop.borrow() == Stop::Run {
            w.stop.send_replace(Stop::Graceful);
        }
        return;
    }
    let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    if deleting || finished {
        // a pod this kubelet ran before a restart: nothing runs, only the final delete is left
        if deleting && pod.metadata.finalizers.iter().flatten().any(|f| f == pod::FINALIZER) {
            let api: Api<Pod> =
                Api::namespaced(node.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
            let name = pod.metadata.name.clone().unwrap_or_default();
            tokio::spawn(async move { pod::release(&api, &name).await });
        }
        return;
    }
    let (pod_tx, pod_rx) = watch::channel(pod);
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let task = tokio::spawn(pod::run(node.clone(), pod_rx, stop_rx));
    workers.insert(uid, Worker { pod: pod_tx, stop: stop_tx, task });
}

/// Runs the kubelet until `shutdown` resolves, then stops every pod (graceful node shutdown)
/// and removes the bridge, namespaces and cgroups it made.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let Config { kubeconfig, state_dir, index, cadvisor_port, bin_dir } = config;
    let creds = credentials(&kubeconfig)?;
    let kc = Kubeconfig::read_from(&kubeconfig)
        .map_err(|e| Error::Kubeconfig { path: kubeconfig.display().to_string(), message: e.to_string() })?;
    let client_config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig { path: kubeconfig.display().to_string(), message: e.to_string() })?;
    let client = Client::try_from(client_config)?;
    let addr = Addresses { index };
    std::fs::create_dir_all(&state_dir).map_err(Error::io(format!("creating {}", state_dir.display())))?;
    network::setup_node(addr).await?;
    let node_cgroup = cgroup::Cgroup::node(index);
    node_cgroup.remove();
    node_cgroup.create(cgroup::Limits::default())?;

    let host_forward = tokio::net::TcpListener::bind((addr.gateway(), creds.api_port))
        .await
        .map_err(Error::io("binding the API forwarder"))?;
    tokio::spawn(forward::serve(host_forward, SocketAddr::from(([127, 0, 0, 1], creds.api_port))));

    let (services_tx, services_rx) = watch::channel(Vec::new());
    tokio::spawn(watch_services(client.clone(), services_tx));
    let node = Arc::new(Node {
        events: events::Events::new(client.clone()),
        client: client.clone(),
        addr,
        state_dir: state_dir.clone(),
        bin_dir,
        api_port: creds.api_port,
        token: creds.token,
        ca_pem: creds.ca_pem,
        ips: Mutex::new(IpAllocator::default()),
        metrics: Mutex::new(BTreeMap::new()),
        services: services_rx,
        cgroup: node_cgroup.clone(),
        self_exe: std::env::current_exe().map_err(Error::io("locating the kubelet binary"))?,
    });

    let local = tokio::net::TcpListener::bind(("127.0.0.1", cadvisor_port))
        .await
        .map_err(Error::io("binding the cAdvisor port"))?;
    let port = local.local_addr().map_err(Error::io("reading the cAdvisor port"))?.port();
    let on_bridge = tokio::net::TcpListener::bind((addr.gateway(), port))
        .await
        .map_err(Error::io("binding the cAdvisor port on the bridge"))?;
    tokio::spawn(std::future::IntoFuture::into_future(axum::serve(local, cadvisor::router(node.clone()))));
    tokio::spawn(std::future::IntoFuture::into_future(axum::serve(on_bridge, cadvisor::router(node.clone()))));
    std::fs::write(state_dir.join("kubelet.port"), port.to_string()).map_err(Error::io("writing kubelet.port"))?;

    register(&client, addr, port).await?;
    let heartbeat = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                // nodeStatusUpdateFrequency
                tokio::time::sleep(Duration::from_secs(10)).await;
                if let Err(e) = register(&client, addr, port).await {
                    tracing::warn!(error = %e, "node status not updated");
                }
            }
        })
    };
    tracing::info!(index, cadvisor_port = port, pod_cidr = %addr.cidr(), "kubelet ready");

    let mut workers: HashMap<String, Worker> = HashMap::new();
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff();
    futures::pin_mut!(pods);
    futures::pin_mut!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = pods.try_next() => match event {
                Ok(Some(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => admit(&node, &mut workers, pod),
                Ok(Some(watcher::Event::Delete(pod))) => {
                    if let Some(w) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                        w.stop.send_replace(Stop::Gone);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => tracing::warn!(error = %e, "pod watch failed"),
            },
        }
        workers.retain(|_, w| !w.task.is_finished());
    }
    tracing::info!(pods = workers.len(), "node shutting down: stopping every pod");
    heartbeat.abort();
    for w in workers.values() {
        w.stop.send_replace(Stop::Shutdown);
    }
    for (_, w) in workers {
        let _ = tokio::time::timeout(Duration::from_secs(40), w.task).await;
    }
    network::teardown_node(addr).await?;
    node_cgroup.remove();
    Ok(())
}

/// The sandbox subcommand: forwards `listen` to `to` until killed.
pub async fn run_forwarder(listen: SocketAddr, to: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(Error::io(format!("binding {listen}")))?;
    forward::serve(listener, to).await;
    Ok(())
}
