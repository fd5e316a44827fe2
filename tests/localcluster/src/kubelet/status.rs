//! The Pod status a kubelet writes, computed from what the pod worker observed: phase as
//! `getPhase`, the conditions and the container statuses.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// One container's state as the worker last saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    /// `container_id` names the container that ended, which `lastState` keeps after a restart.
    Terminated {
        exit_code: i32,
        reason: String,
        started_at: Time,
        finished_at: Time,
        container_id: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<State>,
    pub restarts: i32,
    pub ready: bool,
    pub started: bool,
    pub id: Option<String>,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            state: State::Waiting { reason: reason.to_owned(), message: None },
            last: None,
            restarts: 0,
            ready: false,
            started: false,
            id: None,
        }
    }

    fn succeeded(&self) -> bool {
        matches!(self.state, State::Terminated { exit_code: 0, .. })
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub init: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Time,
    pub sandbox_ready: bool,
    /// Set on graceful node shutdown, as the kubelet's shutdown manager does.
    pub shutdown: bool,
    /// Every container was stopped for good (the Pod is deleted): getPhase's `podIsTerminal`.
    pub terminal: bool,
}

/// Reason of a terminated container, as the runtime reports it.
pub fn exit_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    match (oom_killed, exit_code) {
        (true, _) => "OOMKilled",
        (false, 0) => "Completed",
        (false, _) => "Error",
    }
}

fn state(s: &State) -> ContainerState {
    match s.clone() {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason), message }),
            ..Default::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(started_at) }),
            ..Default::default()
        },
        State::Terminated { exit_code, reason, started_at, finished_at, container_id } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id,
                exit_code,
                reason: Some(reason),
                started_at: Some(started_at),
                finished_at: Some(finished_at),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn container_status(c: &ContainerRecord) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image.clone(),
        container_id: c.id.clone(),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restarts,
        state: Some(state(&c.state)),
        last_state: Some(c.last.as_ref().map(state).unwrap_or_default()),
        ..Default::default()
    }
}

/// `getPhase` of `pkg/kubelet/kubelet_pods.go`.
pub fn phase(record: &Record, restart_policy: &str) -> &'static str {
    if record.init.iter().any(|c| matches!(c.state, State::Terminated { exit_code, .. } if exit_code != 0))
        && restart_policy == "Never"
    {
        return "Failed";
    }
    if !record.init.iter().all(ContainerRecord::succeeded) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &record.containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if c.last.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        // a terminal pod's containers will not restart whatever the policy
        if record.terminal {
            if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    old: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" }.to_owned();
    // the transition time moves only when the status does
    let since =
        old.iter().find(|c| c.type_ == type_ && c.status == status).and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: type_.to_owned(),
        status,
        reason,
        message,
        last_transition_time: Some(since.unwrap_or_else(|| now.clone())),
        ..Default::default()
    }
}

fn names(cs: &[&ContainerRecord]) -> String {
    cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(" ")
}

pub fn build(record: &Record, restart_policy: &str, old: &[PodCondition], now: &Time) -> PodStatus {
    let mut phase = phase(record, restart_policy).to_owned();
    let (mut reason, mut message) = (None, None);
    if record.shutdown {
        phase = "Failed".to_owned();
        reason = Some("Terminated".to_owned());
        message = Some("Pod was terminated in response to imminent node shutdown.".to_owned());
    }
    let finished = phase == "Succeeded" || phase == "Failed";
    let init_pending: Vec<&ContainerRecord> = record.init.iter().filter(|c| !c.succeeded()).collect();
    let unready: Vec<&ContainerRecord> = record.containers.iter().filter(|c| !c.ready).collect();
    let (ready_reason, ready_message) = if finished {
        (Some("PodCompleted".to_owned()), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (Some("ContainersNotReady".to_owned()), Some(format!("containers with unready status: [{}]", names(&unready))))
    };
    let ready = unready.is_empty() && !finished;
    let conditions = vec![
        condition("PodReadyToStartContainers", record.sandbox_ready, None, None, old, now),
        if init_pending.is_empty() {
            condition(
                "Initialized",
                true,
                finished.then(|| "PodCompleted".to_owned()).filter(|_| !record.init.is_empty()),
                None,
                old,
                now,
            )
        } else {
            condition(
                "Initialized",
                false,
                Some("ContainersNotInitialized".to_owned()),
                Some(format!("containers with incomplete status: [{}]", names(&init_pending))),
                old,
                now,
            )
        },
        condition("Ready", ready, ready_reason.clone(), ready_message.clone(), old, now),
        condition("ContainersReady", ready, ready_reason, ready_message, old, now),
        condition("PodScheduled", true, None, None, old, now),
    ];
    PodStatus {
        phase: Some(phase),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: Some(record.host_ip.clone()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP { ip: record.host_ip.clone() }]),
        pod_ip: record.pod_ip.clone(),
        pod_ips: record.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(record.start_time.clone()),
        init_container_statuses: (!record.init.is_empty()).then(|| record.init.iter().map(container_status).collect()),
        container_statuses: Some(record.containers.iter().map(container_status).collect()),
        qos_class: None,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn c(state: State, last: bool) -> ContainerRecord {
        let mut r = ContainerRecord::new("c", "i", "x");
        r.state = state;
        if last {
            r.last = Some(State::Terminated {
                exit_code: 1,
                reason: "Error".into(),
                started_at: t(),
                finished_at: t(),
                container_id: None,
            });
        }
        r
    }

    fn record(init: Vec<ContainerRecord>, containers: Vec<ContainerRecord>) -> Record {
        Record {
            init,
            containers,
            pod_ip: None,
            host_ip: "h".into(),
            start_time: t(),
            sandbox_ready: true,
            shutdown: false,
            terminal: false,
        }
    }

    fn waiting() -> State {
        State::Waiting { reason: "ContainerCreating".into(), message: None }
    }
    fn running() -> State {
        State::Running { started_at: t() }
    }
    fn exited(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            reason: exit_reason(code, false).into(),
            started_at: t(),
            finished_at: t(),
            container_id: None,
        }
    }

    fn terminal(r: Record) -> Record {
        Record { terminal: true, ..r }
    }

    #[test]
    fn the_phase_follows_get_phase() {
        let cases = [
            (
                "a waiting container keeps the pod pending",
                record(vec![], vec![c(waiting(), false)]),
                "Always",
                "Pending",
            ),
            (
                "an unfinished init container keeps it pending",
                record(vec![c(running(), false)], vec![c(waiting(), false)]),
                "Always",
                "Pending",
            ),
            (
                "a failed init container fails a Never pod",
                record(vec![c(exited(1), false)], vec![c(waiting(), false)]),
                "Never",
                "Failed",
            ),
            (
                "a running container makes it running",
                record(vec![c(exited(0), false)], vec![c(running(), false)]),
                "Always",
                "Running",
            ),
            (
                "a crash-looping container is still running",
                record(vec![], vec![c(waiting(), true)]),
                "Always",
                "Running",
            ),
            (
                "all exited 0 under OnFailure is success",
                record(vec![], vec![c(exited(0), false)]),
                "OnFailure",
                "Succeeded",
            ),
            (
                "an exit 1 under Never is failure",
                record(vec![], vec![c(exited(1), false), c(exited(0), false)]),
                "Never",
                "Failed",
            ),
            ("an exit 1 under OnFailure restarts", record(vec![], vec![c(exited(1), false)]), "OnFailure", "Running"),
            (
                "a deleted pod whose containers exited 0 succeeded, even under Always",
                terminal(record(vec![], vec![c(exited(0), false)])),
                "Always",
                "Succeeded",
            ),
            (
                "a deleted pod with a killed container failed",
                terminal(record(vec![], vec![c(exited(0), false), c(exited(137), false)])),
                "Always",
                "Failed",
            ),
            (
                "a deleted pod stopped in back-off failed",
                terminal(record(vec![], vec![c(waiting(), true)])),
                "Always",
                "Failed",
            ),
        ];
        for (name, r, policy, expected) in cases {
            assert_eq!(phase(&r, policy), expected, "{name}");
        }
    }

    #[test]
    fn ready_needs_every_container_ready_and_names_the_unready_ones() {
        let mut a = c(running(), false);
        a.name = "a".into();
        a.ready = true;
        let mut b = c(running(), false);
        b.name = "b".into();
        let s = build(&record(vec![], vec![a, b]), "Always", &[], &t());
        let ready = s.conditions.iter().flatten().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.message.as_deref()),
            ("False", Some("containers with unready status: [b]"))
        );
    }

    #[test]
    fn an_oom_kill_is_reported_as_oomkilled_whatever_the_exit_code() {
        assert_eq!(
            [exit_reason(137, true), exit_reason(0, false), exit_reason(2, false)],
            ["OOMKilled", "Completed", "Error"]
        );
    }
}
