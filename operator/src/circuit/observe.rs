//! The breakers' observations of every platform read at once: per Prometheus and window, three
//! instant queries (calls, failures, longest failure streak) over all platforms and both
//! dependencies, split by namespace, platform and dependency.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use prometheus_http_query::Client;
use riskplatform_breaker::{observation_window, BreakerState, Observation};
use riskplatform_crd::RiskPlatform;

use super::{breaker_config, DEPENDENCIES};
use crate::context::Context;

/// Observations by (namespace, platform, dependency); None where Prometheus could not say,
/// which keeps that breaker as it is.
#[derive(Default)]
pub struct Observations(HashMap<(String, String, &'static str), Observation>);

impl Observations {
    pub fn get(&self, namespace: &str, platform: &str, dependency: &'static str) -> Option<Observation> {
        self.0.get(&(namespace.to_owned(), platform.to_owned(), dependency)).copied()
    }
}

/// A platform's pods, named `<platform>-(api|worker)-<hash>-<suffix>`, labelled with the platform.
const PLATFORM_OF_POD: &str = r#""platform", "$1", "pod", "(.+)-(api|worker)-[a-z0-9]+-[a-z0-9]+""#;

/// The three queries of one batch over `namespaces` and `window` seconds.
pub fn batched_queries(namespaces: &str, window: i64) -> [String; 3] {
    let selector = format!(r#"namespace=~"{namespaces}",dependency=~"database|redis""#);
    let by = "by (namespace, platform, dependency)";
    [
        format!("sum {by} (label_replace(increase(riskplatform_dependency_calls_total{{{selector}}}[{window}s]), {PLATFORM_OF_POD}))"),
        format!("sum {by} (label_replace(increase(riskplatform_dependency_failures_total{{{selector}}}[{window}s]), {PLATFORM_OF_POD}))"),
        format!("max {by} (label_replace(riskplatform_dependency_consecutive_failures{{{selector}}}, {PLATFORM_OF_POD}))"),
    ]
}

type Values = HashMap<(String, String, String), f64>;

/// One breaker in a batch: namespace, platform and dependency.
type Member = (String, String, &'static str);

async fn instant_split(client: &Client, query: &str) -> Option<Values> {
    let response = crate::autoscale::prometheus::bounded(client.query(query).get()).await.ok()?;
    let vector = response.data().as_vector()?;
    Some(
        vector
            .iter()
            .filter_map(|v| {
                let m = v.metric();
                let key = (m.get("namespace")?.clone(), m.get("platform")?.clone(), m.get("dependency")?.clone());
                Some((key, v.sample().value()))
            })
            .collect(),
    )
}

/// Reads the observations of both breakers of every platform for the evaluation at `now`.
pub async fn observe_all(ctx: &Context, platforms: &[Arc<RiskPlatform>], now: i64) -> Observations {
    // (url, window) -> (namespace, platform, dependency); a half-open breaker looks back only
    // to when it went half-open, so its window may differ from the others'.
    let mut batches: HashMap<(String, i64), Vec<Member>> = HashMap::new();
    for rp in platforms {
        let Some(namespace) = rp.namespace() else { continue };
        let config = breaker_config(&rp.spec.circuit_breaker);
        let previous = rp.status.as_ref().and_then(|s| s.circuit_breakers.clone());
        for dependency in DEPENDENCIES {
            let before = match (&previous, dependency) {
                (Some(p), "database") => p.database.clone(),
                (Some(p), _) => p.redis.clone(),
                (None, _) => BreakerState::closed(now),
            };
            let window = observation_window(&config, &before, now);
            batches.entry((rp.spec.prometheus.url.clone(), window)).or_default().push((
                namespace.clone(),
                rp.name_any(),
                dependency,
            ));
        }
    }
    // Every batch and query at once: one Prometheus that does not answer costs the evaluation
    // one query timeout, not one per query.
    let answers = futures::future::join_all(batches.into_iter().map(|((url, window), members)| async move {
        let client = Client::try_from(url.as_str()).ok()?;
        let namespaces: BTreeSet<&str> = members.iter().map(|m| m.0.as_str()).collect();
        let namespaces = namespaces.into_iter().collect::<Vec<_>>().join("|");
        let [calls, failures, consecutive] = batched_queries(&namespaces, window);
        for _ in 0..3 {
            ctx.metrics.scaling.query("breaker");
        }
        let (calls, failures, consecutive) = futures::join!(
            instant_split(&client, &calls),
            instant_split(&client, &failures),
            instant_split(&client, &consecutive)
        );
        Some((members, calls?, failures?, consecutive?))
    }))
    .await;
    let mut observations = Observations::default();
    for (members, calls, failures, consecutive) in answers.into_iter().flatten() {
        for (namespace, platform, dependency) in members {
            let k = (namespace, platform, dependency.to_owned());
            // A platform without series had no calls, as a sum over no series says.
            let value = |m: &Values| m.get(&k).copied().unwrap_or(0.0);
            let observation = Observation {
                calls: value(&calls),
                failures: value(&failures),
                consecutive_failures: value(&consecutive),
            };
            let finite = [observation.calls, observation.failures, observation.consecutive_failures]
                .iter()
                .all(|v| v.is_finite());
            if finite {
                observations.0.insert((k.0, k.1, dependency), observation);
            }
        }
    }
    observations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batched_breaker_queries_split_by_platform_and_dependency() {
        let [calls, failures, streak] = batched_queries("prod|staging", 60);
        for q in [&calls, &failures, &streak] {
            assert!(q.contains("by (namespace, platform, dependency)"), "{q}");
            assert!(q.contains(r#"namespace=~"prod|staging",dependency=~"database|redis""#), "{q}");
            assert!(q.contains(r#""platform", "$1", "pod", "(.+)-(api|worker)-[a-z0-9]+-[a-z0-9]+""#), "{q}");
        }
        assert!(calls.contains("increase(riskplatform_dependency_calls_total{") && calls.contains("[60s]"));
        assert!(failures.contains("riskplatform_dependency_failures_total"));
        assert!(streak.starts_with("max by") && streak.contains("riskplatform_dependency_consecutive_failures"));
    }
}
