//! What the controllers read from Pods (active, ready, available) and how they build them from a
//! template, as upstream's controller_utils and podutil do.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The annotation ranking pods for scale-down: lower cost goes first.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn has_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn has_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

pub fn has_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

/// Upstream's IsPodActive: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !has_finished(pod) && !is_terminating(pod)
}

pub fn is_running(pod: &Pod) -> bool {
    phase(pod) == "Running"
}

/// When the Ready condition last became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's IsPodAvailable: ready for at least minReadySeconds at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// How long until a ready pod becomes available, for a requeue; None when nothing is pending.
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<std::time::Duration> {
    let since = ready_since(pod)?;
    let at = since + SignedDuration::from_secs(i64::from(min_ready_seconds));
    (at > now).then(|| std::time::Duration::try_from(at.duration_since(now)).unwrap_or_default())
}

fn restart_count(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0)).unwrap_or(0)
}

fn deletion_cost(pod: &Pod) -> i32 {
    let annotations = pod.metadata.annotations.as_ref();
    annotations.and_then(|a| a.get(DELETION_COST_ANNOTATION)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    }
}

/// Seconds ready, bucketed by powers of two as upstream's LogarithmicScaleDown ranks them, so
/// pods ready at nearly the same time count as equally old and the next criteria decide.
fn ready_bucket(pod: &Pod, now: Timestamp) -> Option<u32> {
    let seconds = now.duration_since(ready_since(pod)?).as_secs().max(0);
    Some(u64::try_from(seconds + 1).unwrap_or(1).ilog2())
}

/// Upstream's ActivePodsWithRanks ordering: the pod to delete first sorts first. Unscheduled
/// before scheduled, Pending before Unknown before Running, not ready before ready, lower
/// deletion cost first, ready for less time first, more restarts first, newer first. (The rank
/// of pods doubled up on a node never differs here: there is one node.)
pub fn deletion_order(a: &Pod, b: &Pod, now: Timestamp) -> Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| match (ready_bucket(a, now), ready_bucket(b, now)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => Ordering::Equal,
        })
        .then(restart_count(b).cmp(&restart_count(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// The `count` pods a scale-down removes, in upstream's order.
pub fn pods_to_delete(mut pods: Vec<&Pod>, count: usize, now: Timestamp) -> Vec<&Pod> {
    pods.sort_by(|a, b| deletion_order(a, b, now));
    pods.truncate(count);
    pods
}

/// A Pod from a controller's template, as upstream's GetPodFromTemplate builds it: the
/// template's labels, annotations and spec, a generated name and the controller reference.
pub fn from_template(
    template: &PodTemplateSpec,
    generate_name: Option<String>,
    name: Option<String>,
    extra_labels: BTreeMap<String, String>,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(extra_labels);
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn pod(name: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some("localcluster".into()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(t))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn with_cost(mut pod: Pod, cost: &str) -> Pod {
        pod.metadata.annotations = Some(BTreeMap::from([(DELETION_COST_ANNOTATION.into(), cost.into())]));
        pod
    }

    fn first_to_delete(pods: &[Pod]) -> String {
        pods_to_delete(pods.iter().collect(), 1, at(10_000))[0].metadata.name.clone().unwrap()
    }

    #[test]
    fn scale_down_picks_a_pending_pod_before_a_running_one() {
        assert_eq!(
            first_to_delete(&[pod("running", "Running", Some(100), 0), pod("pending", "Pending", None, 50)]),
            "pending"
        );
    }

    #[test]
    fn scale_down_picks_a_not_ready_pod_before_a_ready_one() {
        assert_eq!(
            first_to_delete(&[pod("ready", "Running", Some(100), 50), pod("unready", "Running", None, 0)]),
            "unready"
        );
    }

    #[test]
    fn scale_down_honours_a_lower_deletion_cost_over_age() {
        let cheap = with_cost(pod("cheap", "Running", Some(100), 0), "-5");
        let dear = with_cost(pod("dear", "Running", Some(9000), 9000), "10");
        assert_eq!(first_to_delete(&[dear, cheap]), "cheap");
    }

    #[test]
    fn scale_down_picks_the_most_recently_ready_pod_among_equals() {
        assert_eq!(
            first_to_delete(&[pod("old", "Running", Some(100), 0), pod("new", "Running", Some(9990), 9980)]),
            "new"
        );
    }

    #[test]
    fn a_pod_is_available_only_after_min_ready_seconds() {
        let p = pod("p", "Running", Some(100), 0);
        assert!(!is_available(&p, 10, at(105)));
        assert!(is_available(&p, 10, at(110)));
        assert!(is_available(&p, 0, at(100)));
        assert_eq!(until_available(&p, 10, at(105)), Some(std::time::Duration::from_secs(5)));
    }
}
