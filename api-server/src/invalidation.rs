//! Cross-pod invalidation of the in-process (L1) caches over Redis pub/sub: a pod that changes a
//! cached value writes it through to Redis (L2) and publishes `{origin, cache, key}` on one
//! channel; every other pod's subscriber drops its L1 copy, so its next read takes the new value
//! from L2. Pub/sub delivers only to connected subscribers, so a subscriber that (re)subscribes
//! drops its whole L1: whatever was published while it was away is lost.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::deps::{Dependency, Deps};

/// The channel's default: beside the cache's keys (`rp:cache:<cache>:<key>`).
pub const DEFAULT_CHANNEL: &str = "rp:cache:invalidate";

/// How often the subscriber pings Redis on its connection. A connection that died without a
/// FIN (a partition, a vanished node) neither delivers nor fails, so this (plus the Redis
/// timeout) is how long a dead subscription can go unnoticed; 5 s keeps it well under the 30 s
/// company L1 TTL that bounds staleness anyway.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Reconnect delays: 100 ms doubling to 5 s, jittered so that every pod does not reconnect in
/// the same instant after a Redis restart.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What is published: the cache (its metric name, `company`) and the key whose copies to drop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The publishing process, which changed its own copy already and ignores the echo.
    pub origin: Uuid,
    pub cache: String,
    pub key: String,
}

/// An in-process cache whose entries the subscriber drops.
pub trait Local: Send + Sync {
    /// The `cache` of the messages addressed to it.
    fn name(&self) -> &'static str;
    fn forget(&self, key: &str);
    fn forget_all(&self);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    cache: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClearLabels {
    reason: &'static str,
}

#[derive(Clone, Default)]
pub struct InvalidationMetrics {
    published: Family<PublishLabels, Counter>,
    received: Family<CacheLabels, Counter>,
    clears: Family<ClearLabels, Counter>,
    subscribed: Gauge,
}

impl InvalidationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "riskplatform_cache_invalidations_published",
            "Cache invalidations this pod published, by cache and outcome (ok, failed)",
            m.published.clone(),
        );
        registry.register(
            "riskplatform_cache_invalidations_received",
            "Cache invalidations from other pods that dropped an L1 entry here, by cache",
            m.received.clone(),
        );
        registry.register(
            "riskplatform_cache_l1_clears",
            "Times this pod dropped its whole L1, by reason (subscribed: messages may have been missed; unreadable_message)",
            m.clears.clone(),
        );
        registry.register(
            "riskplatform_cache_invalidation_subscribed",
            "1 while this pod's invalidation subscription is up",
            m.subscribed.clone(),
        );
        m
    }
}

/// How a serving process reaches the channel.
pub struct PubSubConfig {
    pub client: redis::Client,
    pub channel: String,
    /// Timeout of connecting, subscribing and each ping.
    pub timeout: Duration,
}

/// Announces changes on the shared Redis connection.
#[derive(Clone)]
pub struct Publisher {
    redis: ConnectionManager,
    channel: Arc<str>,
    origin: Uuid,
    deps: Arc<Deps>,
    metrics: InvalidationMetrics,
}

impl Publisher {
    pub fn new(redis: ConnectionManager, channel: &str, deps: Arc<Deps>, metrics: InvalidationMetrics) -> Self {
        Self { redis, channel: channel.into(), origin: Uuid::new_v4(), deps, metrics }
    }

    /// Tells the other pods to drop their L1 copy of `key` (called after the change committed and
    /// L2 holds the new value). A failure is logged and counted: the other pods' copies then lag
    /// until their L1 TTL.
    pub async fn publish(&self, cache: &'static str, key: &str) {
        let message = Message { origin: self.origin, cache: cache.to_owned(), key: key.to_owned() };
        let sent = match (self.deps.admit(Dependency::Redis), serde_json::to_vec(&message)) {
            (Ok(()), Ok(payload)) => {
                let mut conn = self.redis.clone();
                let result: redis::RedisResult<u64> = conn.publish(&*self.channel, payload).await;
                self.deps.redis(result).map_err(|e| e.to_string())
            }
            (Err(e), _) => Err(e.to_string()),
            (_, Err(e)) => Err(e.to_string()),
        };
        let outcome = match sent {
            Ok(receivers) => {
                tracing::debug!(cache, key, receivers, "cache invalidation published");
                "ok"
            }
            Err(error) => {
                tracing::warn!(cache, key, %error, "cache invalidation not published; other pods keep their L1 copy until its TTL");
                "failed"
            }
        };
        self.metrics.published.get_or_create(&PublishLabels { cache, outcome }).inc();
    }

    pub fn origin(&self) -> Uuid {
        self.origin
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{during}: {source}")]
    Redis {
        during: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("{during}: no answer within {after:?}")]
    Timeout { during: &'static str, after: Duration },
    #[error("the connection closed")]
    Closed,
}

/// Listens on its own connection (a subscribed connection can run no other command) and drops
/// L1 entries as told.
#[derive(Clone)]
pub struct Subscriber {
    client: redis::Client,
    channel: Arc<str>,
    timeout: Duration,
    origin: Uuid,
    caches: Vec<Arc<dyn Local>>,
    /// No message addresses an API key (keys never change through the service; a revoked one
    /// lapses within the key cache's TTL), but a wholesale clear drops them too: after a gap in
    /// the subscription nothing in L1 is trusted.
    keys: crate::auth::KeyCache,
    metrics: InvalidationMetrics,
}

impl Subscriber {
    pub fn new(
        config: PubSubConfig,
        publisher: &Publisher,
        caches: Vec<Arc<dyn Local>>,
        keys: crate::auth::KeyCache,
        metrics: InvalidationMetrics,
    ) -> Self {
        Self {
            client: config.client,
            channel: config.channel.into(),
            timeout: config.timeout,
            origin: publisher.origin(),
            caches,
            keys,
            metrics,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    fn backoff() -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(RECONNECT_MIN)
            .with_max_delay(RECONNECT_MAX)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Subscribes, listens, and subscribes again after every loss, forever.
    pub async fn run(self) {
        let mut backoff = Self::backoff();
        loop {
            let Err(error) = self.session(&mut backoff).await;
            self.metrics.subscribed.set(0);
            let delay = backoff.next().unwrap_or(RECONNECT_MAX);
            let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(%error, retry_in_ms, "cache invalidation subscription lost; L1 copies may lag until it is back");
            tokio::time::sleep(delay).await;
        }
    }

    async fn within<T>(
        &self,
        during: &'static str,
        step: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SubscriptionError> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(result) => result.map_err(|source| SubscriptionError::Redis { during, source }),
            Err(_) => Err(SubscriptionError::Timeout { during, after: self.timeout }),
        }
    }

    /// One connection's life: returns only when it is lost.
    async fn session(&self, backoff: &mut ExponentialBackoff) -> Result<Infallible, SubscriptionError> {
        let pubsub = self.within("connecting", self.client.get_async_pubsub()).await?;
        let (mut sink, mut stream) = pubsub.split();
        self.within("subscribing", sink.subscribe(&*self.channel)).await?;
        // Every message from here on reaches this pod; any published before (while it was away,
        // or before it started) did not, so no L1 entry can be trusted.
        self.clear("subscribed");
        self.metrics.subscribed.set(1);
        *backoff = Self::backoff();
        tracing::info!("cache invalidation subscribed; L1 cleared");
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.apply(message.get_payload_bytes()),
                    None => return Err(SubscriptionError::Closed),
                },
                _ = ping.tick() => {
                    self.within("pinging", sink.ping::<redis::Value>()).await?;
                }
            }
        }
    }

    fn clear(&self, reason: &'static str) {
        for cache in &self.caches {
            cache.forget_all();
        }
        self.keys.invalidate_all();
        self.metrics.clears.get_or_create(&ClearLabels { reason }).inc();
    }

    fn apply(&self, payload: &[u8]) {
        let message = match serde_json::from_slice::<Message>(payload) {
            Ok(m) => m,
            Err(error) => {
                // Perhaps a newer version's message: whatever it meant to drop, this drops too.
                tracing::warn!(%error, "unreadable cache invalidation; dropping the whole L1");
                self.clear("unreadable_message");
                return;
            }
        };
        if message.origin == self.origin {
            return;
        }
        match self.caches.iter().find(|c| c.name() == message.cache) {
            Some(cache) => {
                cache.forget(&message.key);
                self.metrics.received.get_or_create(&CacheLabels { cache: cache.name() }).inc();
                tracing::debug!(cache = cache.name(), key = %message.key, "L1 entry dropped on another pod's change");
            }
            None => {
                tracing::warn!(cache = %message.cache, "cache invalidation for a cache this pod does not have; dropping the whole L1");
                self.clear("unreadable_message");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::auth::Caller;
    use crate::config::RedisArgs;
    use moka::sync::Cache;

    /// Records what it was told to drop.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Local for Recorder {
        fn name(&self) -> &'static str {
            "company"
        }
        fn forget(&self, key: &str) {
            self.0.lock().expect("recorder").push(key.to_owned());
        }
        fn forget_all(&self) {
            self.0.lock().expect("recorder").push("*".to_owned());
        }
    }

    /// A subscriber that is never run (nothing listens on port 1): `apply` is driven directly.
    fn subscriber(cache: Arc<Recorder>) -> (Subscriber, Publisher, InvalidationMetrics) {
        let args = RedisArgs { url: "redis://127.0.0.1:1".to_owned(), timeout_ms: 50 };
        let redis = crate::state::redis_connection(&args).expect("lazy connection");
        let deps = Arc::new(Deps::new(riskplatform_breaker::BreakerConfig::default(), &mut Registry::default()));
        let metrics = InvalidationMetrics::default();
        let publisher = Publisher::new(redis, DEFAULT_CHANNEL, deps, metrics.clone());
        let config = PubSubConfig {
            client: redis::Client::open(args.url.as_str()).expect("client"),
            channel: DEFAULT_CHANNEL.to_owned(),
            timeout: Duration::from_millis(50),
        };
        let keys = Cache::builder().max_capacity(10).build();
        (Subscriber::new(config, &publisher, vec![cache], keys, metrics.clone()), publisher, metrics)
    }

    fn payload(origin: Uuid, cache: &str, key: &str) -> Vec<u8> {
        serde_json::to_vec(&Message { origin, cache: cache.to_owned(), key: key.to_owned() }).expect("json")
    }

    fn clears(metrics: &InvalidationMetrics, reason: &'static str) -> u64 {
        metrics.clears.get_or_create(&ClearLabels { reason }).get()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn another_pods_message_drops_that_key_and_this_pods_own_echo_is_ignored() {
        let cache = Arc::new(Recorder::default());
        let (subscriber, publisher, metrics) = subscriber(cache.clone());
        subscriber.apply(&payload(publisher.origin(), "company", "t:own"));
        subscriber.apply(&payload(Uuid::new_v4(), "company", "t:other"));
        assert_eq!(*cache.0.lock().expect("recorder"), ["t:other"]);
        assert_eq!(metrics.received.get_or_create(&CacheLabels { cache: "company" }).get(), 1);
        assert_eq!(clears(&metrics, "unreadable_message"), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_message_this_pod_cannot_read_or_place_drops_every_l1_entry() {
        let cache = Arc::new(Recorder::default());
        let (subscriber, _publisher, metrics) = subscriber(cache.clone());
        subscriber.keys.insert(
            vec![1],
            crate::auth::KeyEntry {
                caller: Caller { key_id: Uuid::new_v4(), tenant: Uuid::new_v4(), role: crate::auth::Role::Admin },
                fetched: std::time::Instant::now(),
            },
        );
        subscriber.apply(b"{\"cache\": 3}");
        assert_eq!(subscriber.keys.get(&vec![1]), None, "the API key cache is cleared too");
        subscriber.apply(&payload(Uuid::new_v4(), "tenant", "t"));
        assert_eq!(*cache.0.lock().expect("recorder"), ["*", "*"]);
        assert_eq!(clears(&metrics, "unreadable_message"), 2);
    }
}
