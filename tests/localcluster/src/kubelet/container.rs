//! One container's life in a pod: pull (the image table), configure, start, probe, stop, and
//! restart per restartPolicy with CrashLoopBackOff, recording each state for the Pod status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

use super::backoff::Backoff;
use super::error::{ConfigError, Error};
use super::pod::{Shared, Stop};
use super::probe::{self, Action, Kind, Timing, Tracker};
use super::runtime::{self, Launch};
use super::security::{self, Identity};
use super::status::{exit_reason, State};
use super::{env, images, podvolumes, sources};
use crate::quantity;

/// How a container run ended for the pod worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exited and will not restart (exit code).
    Exited(i32),
    Stopped,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Which list of the record a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Init(usize),
    Main(usize),
}

struct Prepared {
    launch: Launch,
    identity: Identity,
}

fn limits(c: &Container) -> Result<super::cgroup::Limits, ConfigError> {
    let get = |name: &str| -> Result<Option<f64>, ConfigError> {
        match c.resources.as_ref().and_then(|r| r.limits.as_ref()).and_then(|l| l.get(name)) {
            None => Ok(None),
            Some(q) => quantity::parse(&q.0)
                .map(Some)
                .ok_or_else(|| ConfigError::Quantity { what: format!("limits.{name}"), value: q.0.clone() }),
        }
    };
    Ok(super::cgroup::Limits { cpu_cores: get("cpu")?, memory_bytes: get("memory")?.map(|b| b as u64) })
}

async fn prepare(shared: &Shared, c: &Container, image: &images::Image, restart: i32) -> Result<Prepared, Error> {
    let pod = shared.pod.borrow().clone();
    let node = &shared.node;
    let srcs = sources::for_env(&node.client, &shared.namespace, c).await?;
    let ip = shared.ip.to_string();
    let host_ip = node.addr.gateway().to_string();
    let facts = env::PodFacts { pod_ip: &ip, host_ip: &host_ip };
    let api = format!("{}", node.api_port);
    let base: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOSTNAME".into(), shared.hostname.clone()),
        // the API server's certificate names only 127.0.0.1: the pod's sandbox forwards it there
        ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
        ("KUBERNETES_SERVICE_PORT".into(), api.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), api.clone()),
        ("KUBERNETES_PORT".into(), format!("tcp://127.0.0.1:{api}")),
    ];
    let environment = env::build(&pod, c, &srcs, &facts, &base)?;
    let command = env::expand_all(c.command.as_deref().unwrap_or_default(), &environment);
    let args = c.args.as_deref().map(|a| env::expand_all(a, &environment));
    let argv = images::argv(image, &command, args.as_deref());
    let identity = security::identity(&pod, c, image)?;
    let vols = shared.volumes.lock().map(|v| v.clone()).unwrap_or_default();
    let mounts = podvolumes::mounts(&pod, c, &vols, &shared.dir)?;
    let cgroup = shared.cgroup.child(&c.name);
    cgroup.create(limits(c)?)?;
    let launch = Launch {
        netns: node.addr.netns(shared.ip),
        hostname: shared.hostname.clone(),
        cgroup,
        dir: shared.dir.join("containers").join(format!("{}-{restart}", c.name)),
        mounts,
        identity: identity.clone(),
        workdir: c.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".to_owned()),
        argv,
        env: environment,
        log: shared.dir.join(&c.name).join(format!("{restart}.log")),
    };
    Ok(Prepared { launch, identity })
}

fn restart_policy(shared: &Shared) -> String {
    shared.pod.borrow().spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".to_owned())
}

fn grace(shared: &Shared, probe_grace: Option<i64>) -> Duration {
    let pod = shared.pod.borrow();
    let spec_grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    Duration::from_secs(probe_grace.unwrap_or(spec_grace).max(0) as u64)
}

/// SIGTERM to the container's first process, then after `grace` SIGKILL to all of its cgroup.
async fn terminate(
    child: &mut Child,
    cgroup: &super::cgroup::Cgroup,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    for pid in cgroup.pids() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.start_kill();
    child.wait().await
}

async fn run_probe(
    shared: &Shared,
    c: &Container,
    action: &Action,
    timing: Timing,
    pid: u32,
    identity: &Identity,
    env: &[(String, String)],
) -> bool {
    match action {
        Action::Http { port, path, scheme_https, headers } => {
            probe::http(shared.ip, *port, path, *scheme_https, headers, timing.timeout).await
        }
        Action::Tcp { port } | Action::Grpc { port } => probe::tcp(shared.ip, *port, timing.timeout).await,
        Action::Exec { command } => {
            let _ = c;
            runtime::exec(pid, identity, env, command, timing.timeout).await
        }
    }
}

/// Runs the probes of a running container; returns when a liveness or startup probe fails.
async fn probes(
    shared: &Shared,
    slot: Slot,
    c: &Container,
    pid: u32,
    started: Instant,
    identity: &Identity,
    env: &[(String, String)],
) -> Kind {
    let prepared = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().and_then(|p| Some((probe::action(c, p).ok()?, Timing::of(p))))
    };
    let startup = prepared(&c.startup_probe);
    let liveness = prepared(&c.liveness_probe);
    let readiness = prepared(&c.readiness_probe);
    let wait_initial = |t: Timing| tokio::time::sleep_until((started + t.initial_delay).into());
    if let Some((action, timing)) = &startup {
        wait_initial(*timing).await;
        let mut tracker = Tracker::new(*timing);
        loop {
            let ok = run_probe(shared, c, action, *timing, pid, identity, env).await;
            match tracker.observe(ok) {
                Some(true) => break,
                Some(false) => return Kind::Startup,
                None => tokio::time::sleep(timing.period).await,
            }
        }
    }
    shared.set(slot, |r| {
        r.started = true;
        r.ready = readiness.is_none();
    });
    let live = async {
        let Some((action, timing)) = &liveness else { return futures::future::pending().await };
        wait_initial(*timing).await;
        let mut tracker = Tracker::new(*timing);
        loop {
            let ok = run_probe(shared, c, action, *timing, pid, identity, env).await;
            if tracker.observe(ok) == Some(false) {
                return Kind::Liveness;
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    let ready = async {
        let Some((action, timing)) = &readiness else { return futures::future::pending().await };
        wait_initial(*timing).await;
        let mut tracker = Tracker::new(*timing);
        loop {
            let ok = run_probe(shared, c, action, *timing, pid, identity, env).await;
            if let Some(result) = tracker.observe(ok) {
                shared.set(slot, |r| r.ready = result);
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    tokio::select! { kind = live => kind, kind = ready => kind }
}

/// Runs the container until it exits for good or the pod stops.
pub async fn run(shared: Arc<Shared>, slot: Slot, c: Container) -> Outcome {
    let image_name = c.image.clone().unwrap_or_default();
    let mut crash = Backoff::default();
    let mut pull = Backoff::default();
    let mut last_finish: Option<Instant> = None;
    let mut restarts = 0;
    loop {
        if shared.stopping() {
            return Outcome::Stopped;
        }
        if let Some(finished) = last_finish {
            if let Some(wait) = crash.remaining(finished, Instant::now()) {
                let message = format!(
                    "back-off {}s restarting failed container={} pod={}",
                    crash.current().as_secs(),
                    c.name,
                    shared.name
                );
                shared.set(slot, |r| {
                    r.state = State::Waiting { reason: "CrashLoopBackOff".into(), message: Some(message.clone()) }
                });
                shared
                    .event(
                        EventType::Warning,
                        "BackOff",
                        &format!("Back-off restarting failed container {} in pod {}", c.name, shared.name),
                    )
                    .await;
                if shared.sleep_or_stop(wait).await {
                    return Outcome::Stopped;
                }
                continue;
            }
            crash.next(finished);
        }
        let Some(image) = images::resolve(&image_name, &shared.node.bin_dir) else {
            let message =
                format!("failed to pull and unpack image \"{image_name}\": not in the local cluster's image table");
            shared.set(slot, |r| {
                r.state = State::Waiting { reason: "ErrImagePull".into(), message: Some(message.clone()) }
            });
            shared
                .event(EventType::Warning, "Failed", &format!("Failed to pull image \"{image_name}\": {message}"))
                .await;
            shared.event(EventType::Warning, "Failed", "Error: ErrImagePull").await;
            let failed_at = Instant::now();
            pull.next(failed_at);
            if shared.sleep_or_stop(Duration::from_secs(1)).await {
                return Outcome::Stopped;
            }
            let message = format!("Back-off pulling image \"{image_name}\"");
            shared.set(slot, |r| {
                r.state = State::Waiting { reason: "ImagePullBackOff".into(), message: Some(message.clone()) }
            });
            shared.event(EventType::Normal, "BackOff", &message).await;
            let wait = pull.remaining(failed_at, Instant::now()).unwrap_or_default();
            if shared.sleep_or_stop(wait).await {
                return Outcome::Stopped;
            }
            continue;
        };
        let prepared = match prepare(&shared, &c, &image, restarts).await {
            Ok(p) => p,
            Err(e) => {
                let reason =
                    if matches!(e, Error::Config(_)) { "CreateContainerConfigError" } else { "CreateContainerError" };
                shared.set(slot, |r| r.state = State::Waiting { reason: reason.into(), message: Some(e.to_string()) });
                shared.event(EventType::Warning, "Failed", &format!("Error: {e}")).await;
                tracing::warn!(pod = %shared.name, container = %c.name, error = %e, "container not configured");
                if shared.sleep_or_stop(Duration::from_secs(2)).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        let ooms_before = prepared.launch.cgroup.usage().map(|u| u.oom_kills).unwrap_or(0);
        let mut child = match runtime::spawn(&prepared.launch) {
            Ok(child) => child,
            Err(e) => {
                shared.set(slot, |r| {
                    r.state = State::Waiting { reason: "RunContainerError".into(), message: Some(e.to_string()) }
                });
                if shared.sleep_or_stop(Duration::from_secs(2)).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or_default();
        let container_id = format!("localcluster://{}-{}-{restarts}", shared.uid, c.name);
        let started_at = now();
        let started = Instant::now();
        shared.set(slot, |r| {
            r.state = State::Running { started_at: started_at.clone() };
            r.restarts = restarts;
            r.ready = false;
            r.started = false;
            r.id = Some(container_id.clone());
        });
        shared.event(EventType::Normal, "Started", &format!("Started container {}", c.name)).await;
        tracing::info!(pod = %shared.name, container = %c.name, pid, restarts, "container started");
        let mut stop = shared.stop.clone();
        let probe_grace =
            |p: &Option<k8s_openapi::api::core::v1::Probe>| p.as_ref().and_then(|p| p.termination_grace_period_seconds);
        let (status, stopped) = tokio::select! {
            status = child.wait() => (status, false),
            kind = probes(&shared, slot, &c, pid, started, &prepared.identity, &prepared.launch.env) => {
                let what = if kind == Kind::Startup { "Startup" } else { "Liveness" };
                shared.event(EventType::Normal, "Killing", &format!("Container {} failed {} probe, will be restarted", c.name, what.to_lowercase())).await;
                let grace = grace(&shared, probe_grace(if kind == Kind::Startup { &c.startup_probe } else { &c.liveness_probe }));
                (terminate(&mut child, &prepared.launch.cgroup, grace).await, false)
            }
            _ = async { let _ = stop.wait_for(|s| *s != Stop::Run).await; } => {
                let immediate = *shared.stop.borrow() == Stop::Gone;
                let grace = if immediate { Duration::ZERO } else { grace(&shared, None) };
                shared.event(EventType::Normal, "Killing", &format!("Stopping container {}", c.name)).await;
                (terminate(&mut child, &prepared.launch.cgroup, grace).await, true)
            }
        };
        use std::os::unix::process::ExitStatusExt;
        let exit_code = match status {
            Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
            Err(_) => 128 + 9,
        };
        let oom = prepared.launch.cgroup.usage().map(|u| u.oom_kills).unwrap_or(0) > ooms_before;
        let terminated = State::Terminated {
            exit_code,
            reason: exit_reason(exit_code, oom).into(),
            started_at,
            finished_at: now(),
            container_id: Some(container_id.clone()),
        };
        tracing::info!(pod = %shared.name, container = %c.name, exit_code, oom, "container exited");
        shared.set(slot, |r| {
            r.state = terminated.clone();
            r.ready = false;
        });
        if stopped {
            return Outcome::Stopped;
        }
        let policy = restart_policy(&shared);
        let restart = match slot {
            Slot::Init(_) => exit_code != 0 && policy != "Never",
            Slot::Main(_) => policy == "Always" || (policy == "OnFailure" && exit_code != 0),
        };
        if !restart {
            return Outcome::Exited(exit_code);
        }
        shared.set(slot, |r| r.last = Some(terminated.clone()));
        restarts += 1;
        last_finish = Some(Instant::now());
    }
}
