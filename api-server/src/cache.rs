//! Two-level cache of serialisable values: an in-process L1 (bounded, TTL) in front of Redis (L2,
//! same TTL). Redis is optional for correctness: when it fails or its breaker is open the cache
//! answers "miss" and the caller computes; the failure is recorded for the breaker. A change is
//! written through and announced to the other pods ([`crate::invalidation`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, ExistenceCheck, SetExpiry, SetOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::deps::{Dependency, Deps};
use crate::invalidation::{Local, Publisher};

/// Documented TTLs.
pub const PREDICTION_TTL: Duration = Duration::from_secs(3600);
pub const COMPANY_TTL: Duration = Duration::from_secs(7200);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    cache: &'static str,
    layer: &'static str,
}

/// Hit and miss counters shared by every cache of the process.
#[derive(Clone, Default)]
pub struct CacheMetrics {
    hits: Family<Labels, Counter>,
    misses: Family<Labels, Counter>,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "riskplatform_cache_hits",
            "Cache lookups answered, by cache and layer (l1, l2)",
            m.hits.clone(),
        );
        registry.register(
            "riskplatform_cache_misses",
            "Cache lookups not answered, by cache and layer",
            m.misses.clone(),
        );
        m
    }
}

/// What the caches of a process share.
#[derive(Clone)]
pub struct Shared {
    pub redis: ConnectionManager,
    pub deps: Arc<Deps>,
    pub metrics: CacheMetrics,
    pub publisher: Publisher,
}

pub struct TwoLevel<V> {
    name: &'static str,
    /// Redis's TTL; L1 may keep an entry for less (see [`TwoLevel::new`]).
    ttl: Duration,
    l1: Cache<String, V>,
    /// Counts L1 invalidations. A read that fetched a value before an invalidation must not put
    /// it into L1 after it (it may be the old value the invalidation was about), so a read notes
    /// the epoch before fetching and keeps its L1 copy only if the epoch did not move.
    epoch: AtomicU64,
    shared: Shared,
}

impl<V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> TwoLevel<V> {
    pub fn new(
        name: &'static str,
        ttl: Duration,
        // A mutable value's L1 TTL bounds how long another pod's copy lags a change while the
        // invalidation subscription is down; an immutable one (a prediction under its input
        // hash) can keep `ttl`.
        l1_ttl: Duration,
        l1_entries: u64,
        shared: Shared,
    ) -> Self {
        let l1 = Cache::builder().max_capacity(l1_entries).time_to_live(l1_ttl.min(ttl)).build();
        Self { name, ttl, l1, epoch: AtomicU64::new(0), shared }
    }

    fn count(&self, hit: bool, layer: &'static str) {
        let family = if hit { &self.shared.metrics.hits } else { &self.shared.metrics.misses };
        family.get_or_create(&Labels { cache: self.name, layer }).inc();
    }

    fn redis_key(&self, key: &str) -> String {
        format!("rp:cache:{}:{key}", self.name)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Puts a value read at `epoch` into L1 unless an invalidation came in between. Checked after
    /// the insert as well, so an invalidation racing the insert still wins (at worst it drops a
    /// newer copy, which only costs a miss).
    fn fill_l1(&self, key: &str, value: &V, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        self.l1.insert(key.to_owned(), value.clone());
        if self.epoch() != epoch {
            self.l1.invalidate(key);
        }
    }

    pub async fn get(&self, key: &str) -> Option<V> {
        if let Some(v) = self.l1.get(key) {
            self.count(true, "l1");
            return Some(v);
        }
        self.count(false, "l1");
        if self.shared.deps.admit(Dependency::Redis).is_err() {
            self.count(false, "l2");
            return None;
        }
        let epoch = self.epoch();
        let mut conn = self.shared.redis.clone();
        let raw: Option<Vec<u8>> = self.shared.deps.redis(conn.get(self.redis_key(key)).await).ok().flatten();
        let value = raw.and_then(|bytes| serde_json::from_slice::<V>(&bytes).ok());
        self.count(value.is_some(), "l2");
        if let Some(v) = &value {
            self.fill_l1(key, v, epoch);
        }
        value
    }

    /// The cached value, or what `load` finds (the source of truth), which is then cached. Filling
    /// L2 only where it holds nothing (`SET NX`) keeps a value loaded before a concurrent change
    /// from overwriting the one [`TwoLevel::changed`] wrote.
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<Option<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(v) = self.get(key).await {
            return Ok(Some(v));
        }
        let epoch = self.epoch();
        let Some(value) = load().await? else { return Ok(None) };
        self.fill_l1(key, &value, epoch);
        let options = SetOptions::default()
            .conditional_set(ExistenceCheck::NX)
            .with_expiration(SetExpiry::EX(self.ttl.as_secs()));
        self.write_l2(key, &value, options).await;
        Ok(Some(value))
    }

    /// Caches a value that never changes under its key (a prediction under its input).
    pub async fn put(&self, key: &str, value: &V) {
        self.l1.insert(key.to_owned(), value.clone());
        let options = SetOptions::default().with_expiration(SetExpiry::EX(self.ttl.as_secs()));
        self.write_l2(key, value, options).await;
    }

    /// Records a change the source of truth committed: this pod's L1 and L2 take the new value,
    /// then the other pods are told to drop their L1 copies (their next read finds it in L2).
    pub async fn changed(&self, key: &str, value: &V) {
        self.forget(key);
        self.l1.insert(key.to_owned(), value.clone());
        let options = SetOptions::default().with_expiration(SetExpiry::EX(self.ttl.as_secs()));
        self.write_l2(key, value, options).await;
        self.shared.publisher.publish(self.name, key).await;
    }

    async fn write_l2(&self, key: &str, value: &V, options: SetOptions) {
        if self.shared.deps.admit(Dependency::Redis).is_err() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(value) else { return };
        let mut conn = self.shared.redis.clone();
        let result: redis::RedisResult<()> = conn.set_options(self.redis_key(key), bytes, options).await;
        // A failed write only costs a later miss; the breaker still hears about it.
        let _ = self.shared.deps.redis(result);
    }
}

impl<V: Clone + Send + Sync + 'static> Local for TwoLevel<V> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn forget(&self, key: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate(key);
    }

    fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::config::RedisArgs;
    use crate::invalidation::{InvalidationMetrics, DEFAULT_CHANNEL};

    /// A cache over a Redis that is not there (port 1): L2 misses, so L1 alone is observed.
    fn cache() -> TwoLevel<String> {
        let args = RedisArgs { url: "redis://127.0.0.1:1".to_owned(), timeout_ms: 50 };
        let redis = crate::state::redis_connection(&args).expect("lazy connection");
        let deps = Arc::new(Deps::new(riskplatform_breaker::BreakerConfig::default(), &mut Registry::default()));
        let publisher = Publisher::new(redis.clone(), DEFAULT_CHANNEL, deps.clone(), InvalidationMetrics::default());
        let shared = Shared { redis, deps, metrics: CacheMetrics::default(), publisher };
        TwoLevel::new("company", COMPANY_TTL, Duration::from_secs(30), 100, shared)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_value_loaded_before_an_invalidation_is_not_kept_in_l1() {
        let c = cache();
        // The invalidation arrives while the old value is being read from the database.
        let loaded = c
            .get_or_load("k", || async {
                c.forget("k");
                Ok::<_, ()>(Some("old".to_owned()))
            })
            .await;
        assert_eq!(loaded, Ok(Some("old".to_owned())), "the caller still gets what it read");
        assert_eq!(c.l1.get("k"), None);

        let loaded = c.get_or_load("k", || async { Ok::<_, ()>(Some("new".to_owned())) }).await;
        assert_eq!(loaded, Ok(Some("new".to_owned())));
        assert_eq!(c.l1.get("k").as_deref(), Some("new"), "without an invalidation in between it is kept");
    }
}
