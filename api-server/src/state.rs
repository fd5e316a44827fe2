//! What every handler shares: the database, Redis-backed caches and queue, the caller cache, the
//! rate limiter, metrics and settings. Built once in `serve` (or by tests).

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::cache::{CacheMetrics, Shared, TwoLevel, COMPANY_TTL, PREDICTION_TTL};
use crate::config::RedisArgs;
use crate::db::companies::Company;
use crate::db::predictions::PredictionRecord;
use crate::db::Db;
use crate::invalidation::{InvalidationMetrics, PubSubConfig, Publisher, Subscriber};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::ratelimit::RateLimiter;
use crate::writer::PredictionWriter;

/// Settings handlers read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The scoring model's version, part of every prediction cache key.
    pub model_version: String,
    pub bulk_max_rows: usize,
    pub l1_cache_entries: u64,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: f64,
    /// Requests slower than this are logged.
    pub slow_request: std::time::Duration,
    /// Responses larger than this many bytes are compressed when the client accepts it.
    pub compress_above_bytes: u16,
    /// API requests admitted at once ([`crate::shed`]); 0 admits all.
    pub max_in_flight: usize,
}

/// The shared state as axum hands it to every handler: one `Arc`, so that a request clones one
/// pointer rather than each pool, cache, connection and metric family (dozens of atomic counts
/// on shared cache lines, which cost the cached-prediction path about a fifth of its throughput).
#[derive(Clone)]
pub struct AppState(Arc<Components>);

impl std::ops::Deref for AppState {
    type Target = Components;

    fn deref(&self) -> &Components {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Clone)]
pub struct Components {
    pub db: Db,
    pub redis: ConnectionManager,
    pub queue: Queue,
    pub keys: crate::auth::KeyCache,
    pub key_lookups: crate::auth::KeyLookups,
    pub limiter: Arc<RateLimiter>,
    pub predictions: Arc<TwoLevel<PredictionRecord>>,
    pub companies: Arc<TwoLevel<Company>>,
    /// Drops this pod's L1 entries on other pods' changes; spawned with the server.
    pub subscriber: Subscriber,
    pub writer: PredictionWriter,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    pub settings: Arc<Settings>,
    /// Set when the process was asked to stop: readiness fails and connections close.
    pub draining: crate::drain::Draining,
    pub in_flight: crate::shed::InFlight,
}

/// Company metadata changes (rename, deactivate). Other pods drop their L1 copy when told; while
/// this pod's invalidation subscription is down (until it notices and resubscribes) its copy
/// may lag a change this long.
const COMPANY_L1_TTL: Duration = Duration::from_secs(30);

/// A Redis connection that connects on first use and reconnects by itself, so the process
/// starts (and reports not-ready) while Redis is down.
pub fn redis_connection(args: &RedisArgs) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(args.url.as_str())?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

impl AppState {
    /// Assembles the state (on a Tokio runtime: it starts the prediction writer); `registry`
    /// already holds the dependency metrics of `db.deps`. `pubsub` is where the invalidation
    /// subscriber will listen (a connection of its own).
    pub fn new(
        db: Db,
        redis: ConnectionManager,
        pubsub: PubSubConfig,
        settings: Settings,
        mut registry: Registry,
    ) -> Self {
        let metrics = Metrics::register(&mut registry);
        let invalidation_metrics = InvalidationMetrics::register(&mut registry);
        let publisher = Publisher::new(redis.clone(), &pubsub.channel, db.deps.clone(), invalidation_metrics.clone());
        let shared = Shared {
            redis: redis.clone(),
            deps: db.deps.clone(),
            metrics: CacheMetrics::register(&mut registry),
            publisher: publisher.clone(),
        };
        let predictions = Arc::new(TwoLevel::new(
            "prediction",
            PREDICTION_TTL,
            PREDICTION_TTL,
            settings.l1_cache_entries,
            shared.clone(),
        ));
        let companies =
            Arc::new(TwoLevel::new("company", COMPANY_TTL, COMPANY_L1_TTL, settings.l1_cache_entries / 10, shared));
        let keys = Cache::builder().max_capacity(100_000).time_to_live(crate::auth::KEY_STALE_TTL).build();
        let subscriber = Subscriber::new(
            pubsub,
            &publisher,
            vec![predictions.clone(), companies.clone()],
            keys.clone(),
            invalidation_metrics,
        );
        Self(Arc::new(Components {
            queue: Queue::new(redis.clone()),
            keys,
            key_lookups: crate::auth::key_lookups(),
            subscriber,
            limiter: Arc::new(RateLimiter::new(settings.rate_limit_per_second, settings.rate_limit_burst)),
            in_flight: crate::shed::InFlight::new(settings.max_in_flight),
            writer: PredictionWriter::spawn(db.clone()),
            predictions,
            companies,
            metrics,
            registry: Arc::new(registry),
            settings: Arc::new(settings),
            draining: Default::default(),
            db,
            redis,
        }))
    }

    /// The same components with other settings (a test deploys "another model version").
    pub fn with_settings(self, settings: Settings) -> Self {
        let mut components = Arc::unwrap_or_clone(self.0);
        components.settings = Arc::new(settings);
        Self(Arc::new(components))
    }
}
