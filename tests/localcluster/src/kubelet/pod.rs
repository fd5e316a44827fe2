//! One pod on the node: its sandbox (network namespace, hosts files, API forwarder), volumes,
//! init containers in order then the containers, the status it writes, and its teardown.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource as _};
use tokio::sync::{watch, Notify};

use super::cgroup::Cgroup;
use super::container::{self, Outcome, Slot};
use super::podvolumes::{self, VolumeDir};
use super::status::{self, ContainerRecord, Record};
use super::{hosts, network, Node, PodMetrics};

/// Held by the kubelet on every pod it runs, so that a delete leaves the Pod (with its
/// deletionTimestamp) until the containers are stopped: kube-testenv deletes Pods at once,
/// where kube-apiserver would wait for the kubelet.
pub const FINALIZER: &str = "localcluster.riskplatform.io/kubelet";

/// What the kubelet wants of a pod worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// The Pod has a deletionTimestamp: stop with its grace period, then remove it.
    Graceful,
    /// Node shutdown: stop with the grace period, record phase Failed.
    Shutdown,
    /// The Pod is gone from the API server: kill at once.
    Gone,
}

pub struct Shared {
    pub node: Arc<Node>,
    pub pod: watch::Receiver<Pod>,
    pub stop: watch::Receiver<Stop>,
    pub record: Mutex<Record>,
    pub changed: Notify,
    pub volumes: Mutex<BTreeMap<String, VolumeDir>>,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    pub cgroup: Cgroup,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub hostname: String,
}

impl Shared {
    pub fn set(&self, slot: Slot, f: impl FnOnce(&mut ContainerRecord)) {
        if let Ok(mut record) = self.record.lock() {
            let c = match slot {
                Slot::Init(i) => record.init.get_mut(i),
                Slot::Main(i) => record.containers.get_mut(i),
            };
            if let Some(c) = c {
                f(c);
            }
        }
        self.changed.notify_one();
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow() != Stop::Run
    }

    /// Sleeps for `d`; true if the pod was told to stop meanwhile.
    pub async fn sleep_or_stop(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopping(),
            _ = async { let _ = stop.wait_for(|s| *s != Stop::Run).await; } => true,
        }
    }

    pub async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let reference = self.pod.borrow().object_ref(&());
        if let Err(e) = self.node.events.publish(type_, reason, note, &reference).await {
            tracing::warn!(pod = %self.name, error = %e, "event not recorded");
        }
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.node.client.clone(), &self.namespace)
    }

    async fn write_status(&self) {
        let pod = self.pod.borrow().clone();
        let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let old = pod.status.and_then(|s| s.conditions).unwrap_or_default();
        let Ok(record) = self.record.lock().map(|r| r.clone()) else { return };
        let status = status::build(&record, &policy, &old, &Time(k8s_openapi::jiff::Timestamp::now()));
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = self.api().patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!(pod = %self.name, error = %e, "status not written");
        }
    }

    fn write_hosts(&self, services: &[hosts::ServiceName]) {
        let text = hosts::hosts(self.ip, &self.hostname, &self.namespace, services);
        let path = self.dir.join("hosts");
        // rewritten in place: the file is bind-mounted, a rename would leave the mount on the old inode
        if std::fs::read_to_string(&path).ok().as_deref() != Some(&text) {
            if let Err(e) = std::fs::write(&path, text) {
                tracing::warn!(pod = %self.name, error = %e, "hosts file not written");
            }
        }
    }
}

/// The pod's directory under the state dir, as the logs layout names it.
pub fn pod_dir(state_dir: &std::path::Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    state_dir.join("pods").join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    ))
}

async fn status_writer(shared: Arc<Shared>) {
    loop {
        shared.changed.notified().await;
        // coalesce bursts of changes into one write
        tokio::time::sleep(Duration::from_millis(50)).await;
        shared.write_status().await;
    }
}

async fn refresher(shared: Arc<Shared>) {
    let mut services = shared.node.services.clone();
    loop {
        tokio::select! {
            _ = services.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let list = services.borrow().clone();
        shared.write_hosts(&list);
        let pod = shared.pod.borrow().clone();
        match podvolumes::prepare(&shared.node, &pod, &shared.dir, true).await {
            Ok(v) => {
                if let Ok(mut vols) = shared.volumes.lock() {
                    *vols = v;
                }
            }
            Err(e) => tracing::debug!(pod = %shared.name, error = %e, "volumes not refreshed"),
        }
    }
}

async fn set_finalizer(api: &Api<Pod>, pod: &Pod, present: bool) -> Result<(), kube::Error> {
    let mut finalizers: Vec<String> =
        pod.metadata.finalizers.clone().unwrap_or_default().into_iter().filter(|f| f != FINALIZER).collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    let patch = serde_json::json!({ "metadata": { "finalizers": finalizers, "resourceVersion": pod.metadata.resource_version } });
    api.patch(pod.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Removes the kubelet's finalizer from a pod that is being deleted: the final delete.
pub async fn release(api: &Api<Pod>, name: &str) {
    for _ in 0..10 {
        match api.get_opt(name).await {
            Ok(Some(pod)) => match set_finalizer(api, &pod, false).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(pod = %name, error = %e, "finalizer not removed yet"),
            },
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a pod from admission to its final delete.
pub async fn run(node: Arc<Node>, pod: watch::Receiver<Pod>, stop: watch::Receiver<Stop>) {
    let initial = pod.borrow().clone();
    let m = &initial.metadata;
    let (name, namespace, uid) = (
        m.name.clone().unwrap_or_default(),
        m.namespace.clone().unwrap_or_else(|| "default".into()),
        m.uid.clone().unwrap_or_default(),
    );
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &namespace);
    if let Err(e) = set_finalizer(&api, &initial, true).await {
        tracing::warn!(pod = %name, error = %e, "finalizer not added");
    }
    let Some(host) = node.ips.lock().ok().and_then(|mut ips| ips.allocate()) else {
        tracing::error!(pod = %name, "pod CIDR exhausted");
        return;
    };
    let ip = node.addr.pod_ip(host);
    let spec = initial.spec.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
    let records = |list: &[k8s_openapi::api::core::v1::Container], reason: &str| {
        list.iter()
            .map(|c| ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or_default(), reason))
            .collect::<Vec<_>>()
    };
    let init = spec.init_containers.clone().unwrap_or_default();
    let main_reason = if init.is_empty() { "ContainerCreating" } else { "PodInitializing" };
    let record = Record {
        init: records(&init, "PodInitializing"),
        containers: records(&spec.containers, main_reason),
        pod_ip: Some(ip.to_string()),
        host_ip: node.addr.gateway().to_string(),
        start_time: Time(k8s_openapi::jiff::Timestamp::now()),
        sandbox_ready: false,
        shutdown: false,
        terminal: false,
    };
    let shared = Arc::new(Shared {
        dir: pod_dir(&node.state_dir, &initial),
        cgroup: node.cgroup.child(&format!("pod{uid}")),
        node: node.clone(),
        pod,
        stop,
        record: Mutex::new(record),
        changed: Notify::new(),
        volumes: Mutex::new(BTreeMap::new()),
        ip,
        uid: uid.clone(),
        name: name.clone(),
        namespace: namespace.clone(),
        hostname,
    });
    if let Ok(mut metrics) = node.metrics.lock() {
        let containers =
            spec.containers.iter().map(|c| (c.name.clone(), c.image.clone().unwrap_or_default())).collect();
        metrics.insert(
            uid.clone(),
            PodMetrics { namespace: namespace.clone(), name: name.clone(), cgroup: shared.cgroup.clone(), containers },
        );
    }
    let writer = tokio::spawn(status_writer(shared.clone()));
    shared.changed.notify_one();
    let mut sandbox = None;
    let mut refresh = None;
    if sandbox_up(&shared, &mut sandbox).await {
        refresh = Some(tokio::spawn(refresher(shared.clone())));
        run_containers(&shared, &init, &spec.containers).await;
    }
    if !shared.stopping() {
        let mut stop = shared.stop.clone();
        let _ = stop.wait_for(|s| *s != Stop::Run).await;
    }
    refresh.into_iter().for_each(|r| r.abort());
    drop(sandbox);
    for pid in shared.cgroup.pids() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    network::delete_pod(node.addr, ip).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    shared.cgroup.remove();
    if let Ok(mut ips) = node.ips.lock() {
        ips.release(host);
    }
    if let Ok(mut metrics) = node.metrics.lock() {
        metrics.remove(&uid);
    }
    writer.abort();
    let why = *shared.stop.borrow();
    if let Ok(mut r) = shared.record.lock() {
        r.terminal = true;
        r.shutdown = why == Stop::Shutdown;
    }
    if why != Stop::Gone {
        shared.write_status().await;
    }
    if why == Stop::Graceful {
        release(&api, &name).await;
    }
    tracing::info!(pod = %name, namespace = %namespace, reason = ?why, "pod torn down");
}

/// Network namespace, hosts files, API forwarder and volumes; retried until ready or stopped.
async fn sandbox_up(shared: &Arc<Shared>, sandbox: &mut Option<tokio::process::Child>) -> bool {
    let node = &shared.node;
    loop {
        let result = async {
            network::create_pod(node.addr, shared.ip).await?;
            std::fs::create_dir_all(&shared.dir).map_err(super::error::Error::io("creating the pod dir"))?;
            let services = node.services.borrow().clone();
            shared.write_hosts(&services);
            std::fs::write(shared.dir.join("resolv.conf"), hosts::resolv_conf(&shared.namespace, node.addr.gateway()))
                .map_err(super::error::Error::io("writing resolv.conf"))?;
            *sandbox = Some(node.spawn_forwarder(shared.ip)?);
            let pod = shared.pod.borrow().clone();
            let vols = podvolumes::prepare(node, &pod, &shared.dir, false).await?;
            if let Ok(mut v) = shared.volumes.lock() {
                *v = vols;
            }
            Ok::<(), super::error::Error>(())
        }
        .await;
        match result {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(pod = %shared.name, error = %e, "sandbox not ready");
                shared.event(EventType::Warning, "FailedMount", &format!("MountVolume.SetUp failed: {e}")).await;
                if shared.sleep_or_stop(Duration::from_secs(2)).await {
                    return false;
                }
            }
        }
    }
    if let Ok(mut r) = shared.record.lock() {
        r.sandbox_ready = true;
    }
    shared.changed.notify_one();
    true
}

async fn run_containers(
    shared: &Arc<Shared>,
    init: &[k8s_openapi::api::core::v1::Container],
    main: &[k8s_openapi::api::core::v1::Container],
) {
    for (i, c) in init.iter().enumerate() {
        match container::run(shared.clone(), Slot::Init(i), c.clone()).await {
            Outcome::Exited(0) => {}
            Outcome::Exited(_) | Outcome::Stopped => return,
        }
    }
    if let Ok(mut r) = shared.record.lock() {
        for c in r.containers.iter_mut() {
            c.state = status::State::Waiting { reason: "ContainerCreating".into(), message: None };
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in main.iter().enumerate() {
        set.spawn(container::run(shared.clone(), Slot::Main(i), c.clone()));
    }
    while set.join_next().await.is_some() {}
}
