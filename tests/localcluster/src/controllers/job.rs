//! The Job controller (batch/v1, non-indexed): runs pods to completion up to `parallelism` at a
//! time, counts successes and failures, and ends the Job Complete or Failed (backoffLimit,
//! activeDeadlineSeconds) with the conditions upstream's job_controller.go writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::replicaset::owned_pods;
use super::{api_error, controller_ref, error_policy, invalid, pods, Context, Error, RESYNC};

/// Upstream's default backoffLimit.
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// What one reconcile of a Job decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub create: i32,
    /// Pods to delete: the active ones once the Job has failed.
    pub delete: Vec<String>,
    pub status: JobStatus,
}

fn finished(status: &JobStatus) -> bool {
    status.conditions.iter().flatten().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn add_condition(status: &mut JobStatus, c: JobCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if !conditions.iter().any(|old| old.type_ == c.type_) {
        conditions.push(c);
    }
}

/// The Job's next step over its pods at `now`. Failures count failed pods and, with
/// `restartPolicy: OnFailure`, the container restarts of active pods, as upstream does.
pub fn decide(job: &Job, owned: &[Pod], now: Timestamp) -> Decision {
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let active: Vec<&Pod> = owned.iter().filter(|p| pods::is_active(p)).collect();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let succeeded = count(owned.iter().filter(|p| pods::has_succeeded(p)).count());
    let failed = count(owned.iter().filter(|p| pods::has_failed(p)).count());
    let on_failure = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    let restarts: i32 = if on_failure {
        active
            .iter()
            .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    status.start_time.get_or_insert(Time(now));
    status.succeeded = Some(succeeded.max(status.succeeded.unwrap_or(0)));
    status.failed = Some(failed.max(status.failed.unwrap_or(0)));
    status.active = Some(count(active.len()));
    status.ready = Some(count(active.iter().filter(|p| pods::is_ready(p)).count()));
    if finished(&status) {
        return Decision { create: 0, delete: Vec::new(), status };
    }

    let completions = spec.completions.unwrap_or(1);
    let parallelism = spec.parallelism.unwrap_or(1);
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let started = status.start_time.as_ref().map_or(now, |t| t.0);
    let past_deadline = spec.active_deadline_seconds.is_some_and(|s| started + SignedDuration::from_secs(s) <= now);
    let failure = if status.failed.unwrap_or(0) + restarts > backoff_limit {
        Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    } else if past_deadline {
        Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        add_condition(&mut status, condition("FailureTarget", reason, message, now));
        if active.is_empty() {
            add_condition(&mut status, condition("Failed", reason, message, now));
        }
        return Decision { create: 0, delete: active.iter().map(|p| p.name_any()).collect(), status };
    }
    let done = status.succeeded.unwrap_or(0);
    if done >= completions {
        add_condition(
            &mut status,
            condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods", now),
        );
        if active.is_empty() {
            add_condition(
                &mut status,
                condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods", now),
            );
            status.completion_time = Some(Time(now));
        }
        return Decision { create: 0, delete: Vec::new(), status };
    }
    let wanted = parallelism.min(completions - done);
    Decision { create: (wanted - count(active.len())).max(0), delete: Vec::new(), status }
}

#[tracing::instrument(skip_all, fields(namespace = job.namespace(), name = %job.name_any()))]
async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() || job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return Ok(Action::await_change());
    }
    let namespace = job.namespace().ok_or_else(|| invalid(&*job, "no namespace"))?;
    let uid = job.uid().ok_or_else(|| invalid(&*job, "no uid"))?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned = owned_pods(&api, &uid).await.map_err(api_error(&*job))?;
    let decision = decide(&job, &owned, Timestamp::now());

    let template = &job.spec.as_ref().ok_or_else(|| invalid(&*job, "spec is required"))?.template;
    let owner = controller_ref(&*job).ok_or_else(|| invalid(&*job, "no uid to own pods with"))?;
    let labels = BTreeMap::from([
        ("batch.kubernetes.io/job-name".to_owned(), job.name_any()),
        ("job-name".to_owned(), job.name_any()),
        ("batch.kubernetes.io/controller-uid".to_owned(), uid.clone()),
        ("controller-uid".to_owned(), uid.clone()),
    ]);
    for _ in 0..decision.create {
        let pod =
            pods::from_template(template, Some(format!("{}-", job.name_any())), None, labels.clone(), owner.clone());
        api.create(&PostParams::default(), &pod).await.map_err(api_error(&*job))?;
        tracing::info!("created pod");
    }
    for name in &decision.delete {
        api.delete(name, &DeleteParams::default()).await.map_err(api_error(&*job))?;
    }
    if job.status.as_ref() != Some(&decision.status) {
        let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        job_api
            .patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": decision.status })))
            .await
            .map_err(api_error(&*job))?;
    }
    Ok(if finished(&decision.status) { Action::await_change() } else { Action::requeue(RESYNC) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn job(spec: JobSpec) -> Job {
        Job { spec: Some(spec), ..Default::default() }
    }

    fn pod(name: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: None,
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    fn types(d: &Decision) -> Vec<String> {
        d.status.conditions.iter().flatten().map(|c| c.type_.clone()).collect()
    }

    #[test]
    fn a_new_job_starts_one_pod() {
        let d = decide(&job(JobSpec::default()), &[], at(0));
        assert_eq!((d.create, d.status.active), (1, Some(0)));
    }

    #[test]
    fn a_job_whose_pod_succeeded_is_complete() {
        let d = decide(&job(JobSpec::default()), &[pod("a", "Succeeded")], at(5));
        assert_eq!(types(&d), ["SuccessCriteriaMet", "Complete"]);
        assert_eq!((d.create, d.status.succeeded), (0, Some(1)));
        assert!(d.status.completion_time.is_some());
    }

    #[test]
    fn a_failed_pod_is_replaced_until_the_backoff_limit_is_passed() {
        let spec = JobSpec { backoff_limit: Some(1), ..Default::default() };
        let once = decide(&job(spec.clone()), &[pod("a", "Failed")], at(5));
        assert_eq!((once.create, once.status.failed), (1, Some(1)));
        let twice = decide(&job(spec), &[pod("a", "Failed"), pod("b", "Failed")], at(6));
        assert_eq!(types(&twice), ["FailureTarget", "Failed"]);
        assert_eq!(twice.create, 0);
    }

    #[test]
    fn a_job_past_its_deadline_fails_and_deletes_its_active_pods() {
        let mut j = job(JobSpec { active_deadline_seconds: Some(10), ..Default::default() });
        j.status = Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() });
        let d = decide(&j, &[pod("a", "Running")], at(11));
        assert_eq!(d.delete, ["a"]);
        assert_eq!(types(&d), ["FailureTarget"]);
    }

    #[test]
    fn parallelism_bounds_the_active_pods() {
        let d = decide(
            &job(JobSpec { completions: Some(5), parallelism: Some(2), ..Default::default() }),
            &[pod("a", "Succeeded"), pod("b", "Running")],
            at(1),
        );
        assert_eq!(d.create, 1);
    }
}
