//! The RiskPlatform reconciler: fetch -> validate -> build (pure) -> apply -> status.

pub mod apply;
pub mod build;
pub mod cache;
pub mod compact;
pub mod database;
pub mod drift;
pub mod hpa;
pub mod replicas;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use riskplatform_crd::RiskPlatform;
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use apply::{Applied, Outcome, FIELD_MANAGER};
use status::{Observed, Problem};

/// How often a converged platform is checked again even without a watch event.
const RESYNC: Duration = Duration::from_secs(300);

/// Runs the controller and the autoscaler until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let shutdown = shutdown.shared();
    let Some(feeds) = ctx.take_feeds() else {
        warn!("the caches' watches were already taken; the controller runs once per context");
        return;
    };
    let platforms: Api<RiskPlatform> = ctx.api_all();
    // As Controller::new builds it, with managedFields dropped: nothing reads them from the
    // store, and the status and spec field sets were most of each cached platform.
    let (store, writer) = reflector::store();
    let platform_feed = watcher(platforms, watcher::Config::default().any_semantic())
        .modify(|rp: &mut RiskPlatform| rp.metadata.managed_fields = None)
        .reflect(writer)
        .applied_objects()
        // A reconcile follows the spec (and the children's and Secrets' own watches), not the
        // status: at 1,000 platforms the autoscaler's status writes queued 1,000 reconciles per
        // tick ahead of the platforms still converging.
        .predicate_filter(predicates::generation, Default::default());
    let controller = Controller::for_stream(platform_feed, store.clone());
    let autoscaler =
        tokio::spawn(crate::autoscale::run(ctx.clone(), store.clone(), ctx.autoscale_interval, shutdown.clone()));
    let hpa_store = store.clone();
    let ready = ctx.ready.clone();
    let readiness_store = store.clone();
    tokio::spawn(async move {
        // Re-asked on a short interval: a waiter registered before the first list completes was
        // seen never to wake (kube-runtime 5.0), while a fresh one sees the synced store.
        loop {
            if let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_millis(250), readiness_store.wait_until_ready()).await
            {
                info!("RiskPlatform cache synced");
                ready.store(true, std::sync::atomic::Ordering::Relaxed);
                break;
            }
        }
    });
    controller
        .owns_stream(feeds.deployments)
        .owns_stream(feeds.statefulsets)
        .owns_stream(feeds.services)
        .owns_stream(feeds.configmaps)
        .owns_stream(feeds.service_accounts)
        .owns_stream(feeds.pdbs)
        .owns_stream(feeds.roles)
        .owns_stream(feeds.role_bindings)
        // One metadata watch of Secrets serves both the owned auth Secret (its owner) and a
        // referenced credentials Secret appearing or changing (the platforms using it).
        .watches_stream(feeds.secrets, move |secret: PartialObjectMeta<Secret>| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            let owner = secret
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true) && o.kind == RiskPlatform::kind(&()))
                .map(|o| ObjectRef::new(&o.name).within(namespace.as_deref().unwrap_or_default()));
            let users = store
                .state()
                .into_iter()
                .filter(|rp| rp.namespace() == namespace && rp.spec.pgbouncer.credentials_secret_ref.name == name)
                .map(|rp| ObjectRef::from_obj(rp.as_ref()));
            owner.into_iter().chain(users).collect::<Vec<_>>()
        })
        // An HPA appearing on one of our Deployments must show up as Degraded without delay.
        .watches_stream(feeds.hpas, move |hpa: HorizontalPodAutoscaler| {
            let namespace = hpa.namespace();
            let target = hpa.spec.map(|s| s.scale_target_ref.name).unwrap_or_default();
            hpa_store
                .state()
                .into_iter()
                .filter(|rp| {
                    let names = build::names(rp);
                    rp.namespace() == namespace && (names.api == target || names.workers == target)
                })
                .map(|rp| ObjectRef::from_obj(rp.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(ControllerConfig::default().concurrency(ctx.max_concurrent_reconciles))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    if let Err(e) = autoscaler.await {
        warn!(error = %e, "autoscaler task failed");
    }
}

/// One reconcile of one platform.
#[instrument(skip_all, fields(name = %rp.name_any(), namespace = rp.namespace().unwrap_or_default()))]
pub async fn reconcile(rp: Arc<RiskPlatform>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile.start();
    let namespace = rp.namespace().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let client = &ctx.client;
    let caches = &ctx.caches;
    caches.synced().await;

    // fetch: from the caches; the credentials' content only when their resourceVersion moved
    let secret_name = &rp.spec.pgbouncer.credentials_secret_ref.name;
    let meta = caches.secrets.get(&cache::key(&namespace, secret_name));
    let secret = caches.credentials.get(client, &namespace, secret_name, meta.as_deref()).await?;

    // validate + build (pure), then apply; permanent problems (a spec that cannot work, a child
    // the API server refuses) wait for a change of the spec or the Secret
    let names = build::names(&rp);
    let auth_name = &names.pgbouncer_auth;
    let auth = match caches.secrets.get(&cache::key(&namespace, auth_name)) {
        Some(meta) => caches.credentials.get(client, &namespace, auth_name, Some(&meta)).await?,
        // Not in the store: new, or applied so recently that its watch event is still on the
        // way; asked once, so a password already handed to the pods is never replaced.
        None => Api::<Secret>::namespaced(client.clone(), &namespace).get_opt(auth_name).await?.map(Arc::new),
    };
    let generated = validate::GeneratedPasswords::kept_or_new(auth.as_deref());
    let (built, validated, held) = match validate::validate(&rp, &namespace, secret.as_deref(), generated) {
        Ok(v) => {
            let (v, held) = match &ctx.database_check {
                Some(check) => {
                    check.hold_refused(&rp, validate::deployed_database_credentials(auth.as_deref()), v).await
                }
                None => (v, None),
            };
            (build::build(&rp, &v), Some(v), held)
        }
        Err(e) => (Err(e), None, None),
    };
    let applied = match built {
        Ok(children) => apply::apply_all(client, &namespace, &children, caches).await,
        Err(e) => Err(e),
    };
    let result = match applied {
        Ok(result) => result,
        Err(e) if e.is_permanent() => {
            warn!(error = %e, "platform cannot be deployed as specified");
            ctx.metrics.reconcile.set_failure(&e);
            let problem = Problem { reason: e.reason().to_owned(), message: e.to_string() };
            ctx.publish(&rp, EventType::Warning, e.reason(), "Reconcile", e.to_string()).await;
            write_status(&ctx, &rp, &namespace, &Observed::default(), Some(&problem)).await?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    for (reason, note) in applied_events(&result.applied) {
        ctx.publish(&rp, EventType::Normal, reason, "Apply", note).await;
    }
    let mut observed = result.observed;
    let scaling = &rp.spec.autoscaling;
    for (slot, settings) in
        [(&mut observed.api, scaling.api.bounds()), (&mut observed.workers, scaling.workers.bounds())]
    {
        if let Some(d) = slot.as_ref() {
            if let Some(n) = replicas::replicas_to_set(d, settings.min_replicas, settings.max_replicas) {
                info!(deployment = %d.name_any(), replicas = n, "setting replicas within bounds");
                *slot = Some(replicas::set_replicas(client, &namespace, &d.name_any(), n).await?);
            }
        }
    }

    // Another autoscaler on our Deployments: report it; the autoscaler leaves that component alone.
    let hpas = caches.hpas.state_filter(|h| h.namespace().as_deref() == Some(namespace.as_str()));
    let competing = hpa::competing(hpas.iter().map(|h| h.as_ref()), &[&names.api, &names.workers]);
    let competing = (!competing.is_empty()).then(|| {
        let list: Vec<String> =
            competing.iter().map(|(h, d)| format!("HorizontalPodAutoscaler {h} targets {d}")).collect();
        Problem {
            reason: "CompetingAutoscaler".to_owned(),
            message: format!(
                "{}; the operator is the only writer of these replica counts and stops scaling them",
                list.join(", ")
            ),
        }
    });
    if let Some(p) = competing.as_ref().filter(|p| !has_condition(&rp, p)) {
        ctx.publish(&rp, EventType::Warning, &p.reason, "DetectAutoscaler", p.message.clone()).await;
    }

    // The children are applied either way, so the platform comes up by itself once its
    // database answers; until then it says why it cannot work and looks again soon.
    let (database, recheck) = match (&ctx.database_check, &validated, held) {
        (Some(check), _, Some(held)) => (Some(held), check.interval),
        (Some(check), Some(v), None) => match check.check(&rp.spec.pgbouncer.database, v).await {
            Some(unreachable) => (Some(unreachable.problem()), check.interval),
            None => (None, RESYNC),
        },
        _ => (None, RESYNC),
    };
    if let Some(p) = database.as_ref().filter(|p| !has_condition(&rp, p)) {
        warn!(reason = %p.reason, message = %p.message, "database check failed");
        ctx.publish(&rp, EventType::Warning, &p.reason, "CheckDatabase", p.message.clone()).await;
    }

    // status
    let problem = match (database, competing) {
        (Some(d), Some(c)) => Some(Problem { reason: d.reason, message: format!("{}; {}", d.message, c.message) }),
        (d, c) => d.or(c),
    };
    write_status(&ctx, &rp, &namespace, &observed, problem.as_ref()).await?;
    ctx.backoff.reset(&ObjectRef::from_obj(rp.as_ref()));
    Ok(Action::requeue(recheck))
}

/// Events.k8s.io caps a note at 1 kB; a longer list of children is cut at a name.
const NOTE_LIMIT: usize = 1024;

/// One Event per reconcile for the children it created and one for those it updated, each
/// naming them. One per child was 16 Events for every new platform, most of the writes of a
/// cluster's first convergence, and the recorder keeps each of them for six minutes.
fn applied_events(applied: &[Applied]) -> Vec<(&'static str, String)> {
    [(Outcome::Created, "Created", "created"), (Outcome::Updated, "Updated", "updated")]
        .into_iter()
        .filter_map(|(outcome, reason, verb)| {
            let children: Vec<String> =
                applied.iter().filter(|a| a.outcome == outcome).map(|a| format!("{} {}", a.kind, a.name)).collect();
            (!children.is_empty()).then(|| (reason, bounded_note(verb, &children)))
        })
        .collect()
}

fn bounded_note(verb: &str, children: &[String]) -> String {
    let mut note = format!("{verb} {}", children.join(", "));
    if note.len() > NOTE_LIMIT {
        let suffix = format!(" and others ({} in all)", children.len());
        let mut cut = NOTE_LIMIT - suffix.len();
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(note[..cut].rfind(", ").unwrap_or(cut));
        note.push_str(&suffix);
    }
    note
}

async fn write_status(
    ctx: &Context,
    rp: &RiskPlatform,
    namespace: &str,
    observed: &Observed,
    problem: Option<&Problem>,
) -> Result<()> {
    let status = status::compute(rp, observed, problem, Time(k8s_openapi::jiff::Timestamp::now()));
    if status::unchanged(rp.status.as_ref(), &status) {
        return Ok(());
    }
    let api: Api<RiskPlatform> = Api::namespaced(ctx.client.clone(), namespace);
    let body = json!({
        "apiVersion": RiskPlatform::api_version(&()),
        "kind": RiskPlatform::kind(&()),
        "status": status,
    });
    api.patch_status(&rp.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// Whether the platform already reports `problem` in its Degraded condition (alone or with
/// another), so a steady-state reconcile does not repeat the Warning.
fn has_condition(rp: &RiskPlatform, problem: &Problem) -> bool {
    rp.status
        .as_ref()
        .and_then(|s| s.condition(riskplatform_crd::condition::DEGRADED))
        .is_some_and(|c| c.status == "True" && c.message.contains(&problem.message))
}

/// Transient failures requeue with exponential backoff per platform.
pub fn error_policy(rp: Arc<RiskPlatform>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %rp.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile.set_failure(error);
    Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(rp.as_ref())))
}

impl Context {
    async fn publish(&self, rp: &RiskPlatform, type_: EventType, reason: &str, action: &str, note: String) {
        let event =
            Event { type_, reason: reason.to_owned(), note: Some(note), action: action.to_owned(), secondary: None };
        if let Err(e) = self.recorder.publish(&event, &rp.object_ref(&())).await {
            warn!(error = %e, "could not publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(kind: &str, name: &str, outcome: Outcome) -> Applied {
        Applied { kind: kind.into(), name: name.into(), outcome }
    }

    #[test]
    fn a_reconcile_reports_its_created_and_its_updated_children_in_one_event_each() {
        let events = applied_events(&[
            applied("Deployment", "rp-api", Outcome::Created),
            applied("Service", "rp-api", Outcome::Unchanged),
            applied("ConfigMap", "rp-config", Outcome::Updated),
            applied("Service", "rp-redis", Outcome::Created),
        ]);
        assert_eq!(
            events,
            [
                ("Created", "created Deployment rp-api, Service rp-redis".to_owned()),
                ("Updated", "updated ConfigMap rp-config".to_owned()),
            ]
        );
    }

    #[test]
    fn a_reconcile_that_changed_nothing_publishes_no_event() {
        assert!(applied_events(&[applied("Deployment", "rp-api", Outcome::Unchanged)]).is_empty());
    }

    #[test]
    fn a_note_too_long_for_the_api_is_cut_at_a_name_and_says_how_many_there_were() {
        let many: Vec<Applied> =
            (0..100).map(|i| applied("Deployment", &format!("platform-{i}-api"), Outcome::Created)).collect();
        let (_, note) = &applied_events(&many)[0];
        assert!(note.len() <= NOTE_LIMIT, "{} bytes", note.len());
        assert!(note.ends_with("api and others (100 in all)"), "{note}");
    }
}
