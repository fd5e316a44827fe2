//! The `serve` command: assembles the state from the configuration, serves the router, follows
//! the operator's published breaker state and other pods' cache changes, and drains in-flight
//! requests on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

use crate::config::ServeArgs;
use crate::db::{Db, Replicas};
use crate::deps::Deps;
use crate::invalidation::PubSubConfig;
use crate::model::MODEL_VERSION;
use crate::state::{redis_connection, AppState, Settings};

/// The state `serve` runs with (tests build the same from their own arguments).
pub fn state(args: &ServeArgs) -> anyhow::Result<AppState> {
    let mut registry = Registry::default();
    let deps = Arc::new(Deps::new(args.breaker.config(), &mut registry));
    let replicas = Replicas::new(&args.database, &args.replicas, args.breaker.config(), &mut registry);
    let db = Db::new(&args.database, deps).with_replicas(Arc::new(replicas));
    let redis = redis_connection(&args.redis)?;
    let pubsub = PubSubConfig {
        client: redis::Client::open(args.redis.url.as_str())?,
        channel: args.cache_invalidation_channel.clone(),
        timeout: Duration::from_millis(args.redis.timeout_ms),
    };
    let settings = Settings {
        model_version: MODEL_VERSION.to_owned(),
        bulk_max_rows: args.bulk_max_rows,
        l1_cache_entries: args.l1_cache_entries,
        rate_limit_per_second: args.rate_limit_per_second,
        rate_limit_burst: args.rate_limit_burst,
        slow_request: std::time::Duration::from_millis(args.slow_request_ms),
        compress_above_bytes: args.compress_above_bytes,
        max_in_flight: args.max_in_flight,
    };
    Ok(AppState::new(db, redis, pubsub, settings, registry))
}

/// The tasks a serving process runs beside the router: the queue-length gauges, the cache
/// invalidation subscriber and the replica lag probe.
pub fn spawn_background(state: &AppState) {
    tokio::spawn(state.metrics.clone().watch_queues(state.queue.clone(), Duration::from_secs(2)));
    let span = tracing::info_span!("cache_invalidation", channel = state.subscriber.channel());
    tokio::spawn(state.subscriber.clone().run().instrument(span));
    if let Some(replicas) = &state.db.replicas {
        tokio::spawn(replicas.clone().watch());
    }
}

/// Serves until `shutdown` resolves, drains for the configured seconds ([`crate::drain`]), then
/// lets in-flight requests finish.
pub async fn run(args: ServeArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let state = state(&args)?;
    spawn_background(&state);
    state.db.warm_up(args.db_warm_connections.min(args.database.max_connections));
    if let Some(name) = &args.published.breaker_configmap {
        let follower = crate::published::Follower::connect(&args.published.namespace, name)
            .await
            .context("connecting to the Kubernetes API to follow the published breaker state")?;
        tokio::spawn(follower.run(state.db.deps.clone()));
    }
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("binding {}", args.listen_addr))?;
    tracing::info!(addr = %args.listen_addr, model_version = MODEL_VERSION, "serving");
    let draining = state.draining.clone();
    let drain = Duration::from_secs(args.shutdown_drain_seconds);
    let shutdown = async move {
        shutdown.await;
        draining.start();
        tracing::info!(seconds = drain.as_secs(), "draining before shutdown");
        tokio::time::sleep(drain).await;
    };
    axum::serve(listener, crate::routes::router(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
