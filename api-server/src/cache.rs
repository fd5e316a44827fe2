//! Two-level cache of serialisable values: an in-process L1 (bounded, TTL) in front of Redis (L2,
//! same TTL). Redis is optional for correctness: when it fails or its breaker is open the cache
//! answers "miss" and the caller computes; the failure is recorded for the breaker.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::deps::{Dependency, Deps};

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

pub struct TwoLevel<V> {
    name: &'static str,
    /// Redis's TTL; L1 may keep an entry for less (see [`TwoLevel::new`]).
    ttl: Duration,
    l1: Cache<String, V>,
    redis: ConnectionManager,
    deps: Arc<Deps>,
    metrics: CacheMetrics,
}

impl<V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> TwoLevel<V> {
    pub fn new(
        name: &'static str,
        ttl: Duration,
        // Other pods' L1 entries are not invalidated on a change, so a mutable value needs a
        // short L1 TTL; an immutable one (a prediction under its input hash) can keep `ttl`.
        l1_ttl: Duration,
        l1_entries: u64,
        redis: ConnectionManager,
        deps: Arc<Deps>,
        metrics: CacheMetrics,
    ) -> Self {
        let l1 = Cache::builder().max_capacity(l1_entries).time_to_live(l1_ttl.min(ttl)).build();
        Self { name, ttl, l1, redis, deps, metrics }
    }

    fn count(&self, hit: bool, layer: &'static str) {
        let family = if hit { &self.metrics.hits } else { &self.metrics.misses };
        family.get_or_create(&Labels { cache: self.name, layer }).inc();
    }

    fn redis_key(&self, key: &str) -> String {
        format!("rp:cache:{}:{key}", self.name)
    }

    pub async fn get(&self, key: &str) -> Option<V> {
        if let Some(v) = self.l1.get(key) {
            self.count(true, "l1");
            return Some(v);
        }
        self.count(false, "l1");
        if self.deps.admit(Dependency::Redis).is_err() {
            self.count(false, "l2");
            return None;
        }
        let mut conn = self.redis.clone();
        let raw: Option<Vec<u8>> = self.deps.redis(conn.get(self.redis_key(key)).await).ok().flatten();
        let value = raw.and_then(|bytes| serde_json::from_slice::<V>(&bytes).ok());
        self.count(value.is_some(), "l2");
        if let Some(v) = &value {
            self.l1.insert(key.to_owned(), v.clone());
        }
        value
    }

    pub async fn put(&self, key: &str, value: &V) {
        self.l1.insert(key.to_owned(), value.clone());
        if self.deps.admit(Dependency::Redis).is_err() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(value) else { return };
        let mut conn = self.redis.clone();
        let result: redis::RedisResult<()> = conn.set_ex(self.redis_key(key), bytes, self.ttl.as_secs()).await;
        // A failed write only costs a later miss; the breaker still hears about it.
        let _ = self.deps.redis(result);
    }

    pub async fn remove(&self, key: &str) {
        self.l1.invalidate(key);
        if self.deps.admit(Dependency::Redis).is_err() {
            return;
        }
        let mut conn = self.redis.clone();
        let result: redis::RedisResult<()> = conn.del(self.redis_key(key)).await;
        let _ = self.deps.redis(result);
    }
}
