//! Follows the platform-wide breaker state the operator publishes in a ConfigMap (keys
//! `database` and `redis`, values Closed, Open, HalfOpen or Disabled), through a watch on the
//! Kubernetes API, so every pod changes within a moment of the operator's decision. While the
//! ConfigMap cannot be read (no such object, the API unreachable, a value not understood) the pod
//! falls back to its own breaker.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use riskplatform_breaker::local::Published;
use riskplatform_breaker::State;

use crate::deps::{Dependency, Deps};

pub struct Follower {
    api: Api<ConfigMap>,
    name: String,
}

/// The published state of each dependency in a ConfigMap's data (`<dependency>` holds the
/// state, `<dependency>.mode` says whether an override forced it), with when the operator
/// entered it (`<dependency>.since`, unix seconds).
pub fn parse(cm: &ConfigMap) -> [(Dependency, Option<Published>, Option<i64>); 2] {
    let data = cm.data.as_ref();
    Dependency::ALL.map(|d| {
        let value = |key: &str| data.and_then(|m| m.get(key)).map(String::as_str);
        let state = value(d.as_str()).and_then(|v| match v {
            "Closed" => Some(State::Closed),
            "Open" => Some(State::Open),
            "HalfOpen" => Some(State::HalfOpen),
            "Disabled" => Some(State::Disabled),
            _ => None,
        });
        let forced = value(&format!("{d}.mode")) == Some("Forced");
        let since = value(&format!("{d}.since")).and_then(|v| v.parse().ok());
        (d, state.map(|state| Published { state, forced }), since)
    })
}

impl Follower {
    /// Uses the pod's service account, or `KUBECONFIG` outside a cluster.
    pub async fn connect(namespace: &str, name: &str) -> Result<Self, kube::Error> {
        Ok(Self::new(Client::try_default().await?, namespace, name))
    }

    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_owned() }
    }

    fn apply(deps: &Deps, published: [(Dependency, Option<Published>, Option<i64>); 2]) {
        for (d, state, since) in published {
            deps.follow(d, state, since);
        }
    }

    /// Watches the ConfigMap forever, re-establishing a lost watch with kube-runtime's backoff.
    pub async fn run(self, deps: Arc<Deps>) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut events = watcher::watcher(self.api, config).default_backoff().boxed();
        let unknown = Dependency::ALL.map(|d| (d, None, None));
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => {
                    let published = parse(&cm);
                    tracing::debug!(?published, "following the published breaker state");
                    Self::apply(&deps, published);
                }
                Ok(Event::Delete(_)) => Self::apply(&deps, unknown),
                Ok(Event::Init | Event::InitDone) => {}
                Err(e) => {
                    tracing::warn!(error = %e, configmap = %self.name, "published breaker state unreadable; using this pod's own breakers");
                    Self::apply(&deps, unknown);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_values_map_to_states_and_anything_else_is_unknown() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "risk-circuit-breakers"},
            "data": {"database": "Open", "database.since": "1", "redis": "Sideways"}
        }))
        .expect("configmap");
        let open = Published { state: State::Open, forced: false };
        assert_eq!(parse(&cm), [(Dependency::Database, Some(open), Some(1)), (Dependency::Redis, None, None)]);
        assert_eq!(parse(&ConfigMap::default()), [(Dependency::Database, None, None), (Dependency::Redis, None, None)]);
        let forced: ConfigMap = serde_json::from_value(serde_json::json!({
            "data": {"database": "Closed", "database.mode": "Forced", "redis": "Closed", "redis.mode": "Auto"}
        }))
        .expect("configmap");
        let [(_, database, _), (_, redis, _)] = parse(&forced);
        assert_eq!(database, Some(Published { state: State::Closed, forced: true }));
        assert_eq!(redis, Some(Published { state: State::Closed, forced: false }));
    }
}
