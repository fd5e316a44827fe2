//! The signals of every platform read at once: one range query per signal, Prometheus and
//! window over all platforms on the default queries, its series split by namespace and
//! deployment (or platform) and matched back to each platform. A query a spec overrides stays
//! per platform.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use riskplatform_autoscale::policy::signals_of;
use riskplatform_autoscale::{Component, Reading, Signal};
use riskplatform_crd::RiskPlatform;

use super::{policy_config, prometheus, queries};
use crate::context::Context;
use crate::controller::build::names;

/// Readings by (namespace, platform, signal); each signal belongs to one component.
#[derive(Default)]
pub struct Readings(HashMap<(String, String, Signal), Reading>);

impl Readings {
    pub fn get(&self, namespace: &str, platform: &str, signal: Signal) -> Reading {
        self.0
            .get(&(namespace.to_owned(), platform.to_owned(), signal))
            .cloned()
            .unwrap_or_else(|| Reading::Unavailable("the signal was not read".to_owned()))
    }
}

/// One batched query: the signal, the Prometheus it goes to and the window it covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Batch {
    url: String,
    signal: Signal,
    window: i64,
}

/// A platform's place in a batch: where its reading goes and the series name it is found under.
struct Member {
    namespace: String,
    platform: String,
    series: String,
}

/// Reads every signal of every platform for the evaluation at `now`.
pub async fn read_all(ctx: &Context, platforms: &[Arc<RiskPlatform>], now: i64) -> Readings {
    let mut readings = Readings::default();
    let mut batches: HashMap<Batch, Vec<Member>> = HashMap::new();
    let mut custom = Vec::new();
    for rp in platforms {
        let Some(namespace) = rp.namespace() else { continue };
        let names = names(rp);
        let config = policy_config(&rp.spec);
        for (component, deployment) in [(Component::Api, &names.api), (Component::Workers, &names.workers)] {
            for &signal in signals_of(component) {
                let window = config.read_window_seconds(signal);
                let slot = (namespace.clone(), names.platform.clone(), signal);
                if let Some(template) = super::custom_query(&rp.spec, signal) {
                    let target = queries::QueryTarget { namespace: &namespace, platform: &names.platform, deployment };
                    let query = queries::render(&template, &target);
                    let url = rp.spec.prometheus.url.clone();
                    custom.push(async move {
                        let reading = match prometheus_http_query::Client::try_from(url.as_str()) {
                            Ok(client) => {
                                ctx.metrics.scaling.query("autoscaler");
                                prometheus::range(&client, &query, now, window).await
                            }
                            Err(_) => Reading::Unavailable(bad_url(&url)),
                        };
                        (slot, reading)
                    });
                    continue;
                }
                let series = match signal {
                    Signal::QueueLength => names.platform.clone(),
                    _ => deployment.clone(),
                };
                let batch = Batch { url: rp.spec.prometheus.url.clone(), signal, window };
                batches.entry(batch).or_default().push(Member {
                    namespace: namespace.clone(),
                    platform: names.platform.clone(),
                    series,
                });
            }
        }
    }
    // Every query at once: a Prometheus that does not answer costs one query timeout in all.
    let batched = futures::future::join_all(batches.into_iter().map(|(batch, members)| async move {
        let split = match prometheus_http_query::Client::try_from(batch.url.as_str()) {
            Ok(client) => {
                let namespaces: BTreeSet<&str> = members.iter().map(|m| m.namespace.as_str()).collect();
                let query = queries::batched(batch.signal, namespaces);
                ctx.metrics.scaling.query("autoscaler");
                prometheus::range_split(&client, &query, now, batch.window, queries::split_label(batch.signal)).await
            }
            Err(_) => Err(bad_url(&batch.url)),
        };
        (batch, members, split)
    }));
    let (custom, batched) = futures::join!(futures::future::join_all(custom), batched);
    readings.0.extend(custom);
    for (batch, members, split) in batched {
        for m in members {
            let reading = match &split {
                Ok(series) => match series.get(&(m.namespace.clone(), m.series.clone())) {
                    Some(samples) => Reading::Series(samples.clone()),
                    None => Reading::Unavailable("the query returned no series".to_owned()),
                },
                Err(reason) => Reading::Unavailable(reason.clone()),
            };
            readings.0.insert((m.namespace, m.platform, batch.signal), reading);
        }
    }
    readings
}

fn bad_url(url: &str) -> String {
    format!("bad prometheus.url {url:?}")
}
