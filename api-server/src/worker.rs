//! The `worker` command: takes chunks from the queue, scores their rows, writes the results and
//! progress in one transaction, then acknowledges. Heartbeats let other workers return a dead
//! worker's chunks to the queue; a chunk that keeps failing is retried with backoff and, after
//! the last retry, reported as failed rows and dead-lettered. A dependency outage is not the
//! chunk's fault: it waits for the dependency without using up retries. Every worker also runs
//! the queue sweep (`sweep.rs`), which rebuilds messages Redis lost.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::config::WorkerArgs;
use crate::db::jobs::{self, BulkResult};
use crate::db::Db;
use crate::deps::{Dependency, Deps};
use crate::error::ApiError;
use crate::metrics::{Metrics, OutcomeLabels, PredictionLabels};
use crate::model;
use crate::queue::Queue;
use crate::queue::{backoff, Delivery, MAX_RETRIES};
use crate::routes::health::Probes;
use crate::state::redis_connection;

/// How long an idle worker waits before looking at the queue again.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long a chunk waits while its dependency is down.
const OUTAGE_DELAY: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Scores one chunk's rows; a row the model refuses gets its error, naming the field.
pub fn score_rows(chunk: &jobs::Chunk) -> Vec<BulkResult> {
    chunk
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let row_no = chunk.first_row + i32::try_from(i).unwrap_or(i32::MAX);
            let reference = row.reference.clone();
            match model::predict(&row.statement) {
                Ok(p) => BulkResult {
                    row_no,
                    reference,
                    probability: Some(p.probability),
                    risk_level: Some(p.risk_level.as_str().to_owned()),
                    zone: Some(p.zone.as_str().to_owned()),
                    error: None,
                },
                Err(e) => BulkResult {
                    row_no,
                    reference,
                    probability: None,
                    risk_level: None,
                    zone: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

struct Worker {
    id: String,
    db: Db,
    queue: Queue,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
}

enum Outcome {
    Done,
    Duplicate,
}

impl Worker {
    fn count(&self, outcome: &'static str) {
        self.metrics.chunks.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Retries a queue operation that must not be dropped (an acknowledgement or a deferral)
    /// until Redis takes it: a message left in a live worker's processing list is seen again
    /// only when the worker stops (and returns its list) or dies (and is reaped).
    async fn settle<F, Fut>(&self, what: &'static str, op: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = redis::RedisResult<()>>,
    {
        let mut delay = Duration::from_millis(100);
        while let Err(e) = self.db.deps.redis(op().await) {
            if *self.stop.borrow() {
                tracing::warn!(error = %e, what, "queue unavailable while stopping; the list is returned on exit");
                return;
            }
            tracing::warn!(error = %e, what, "queue unavailable; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn process(&self, d: &Delivery) -> Result<Outcome, ApiError> {
        let db = &self.db;
        let (job, chunk_no) = (d.message.job, d.message.chunk);
        let mut tx = db.begin().await?;
        let result = async {
            let Some(chunk) = jobs::claim(&mut tx, job, chunk_no).await? else { return Ok(Outcome::Duplicate) };
            let results = score_rows(&chunk);
            for r in &results {
                let risk_level =
                    r.risk_level.as_deref().and_then(model::RiskLevel::parse).map_or("error", |l| l.as_str());
                self.metrics.predictions.get_or_create(&PredictionLabels { risk_level, source: "bulk" }).inc();
            }
            jobs::complete(&mut tx, job, chunk_no, &results).await?;
            Ok(Outcome::Done)
        }
        .await;
        db.finish(tx, result).await
    }

    /// Keeps the spent retry budget in PostgreSQL too, for a message rebuilt after Redis lost it.
    /// Best effort: the deferred message carries the attempt either way.
    async fn record_attempt(&self, job: uuid::Uuid, chunk: i32, attempt: u32) {
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        let recorded = async {
            let mut tx = self.db.begin().await?;
            let r = jobs::record_attempt(&mut tx, job, chunk, attempt).await;
            self.db.finish(tx, r).await
        }
        .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, %job, chunk, attempt, "could not record the attempt in the database");
        }
    }

    async fn bury(&self, d: &Delivery, reason: &str) -> Result<(), ApiError> {
        let db = &self.db;
        let mut tx = db.begin().await?;
        let buried = jobs::bury(&mut tx, d.message.job, d.message.chunk, "failed after its retries", reason).await;
        db.finish(tx, buried).await?;
        self.db.deps.redis(self.queue.bury(&self.id, d).await)
    }

    /// Handles one delivery to the end: acknowledged, deferred or buried.
    async fn handle(&self, d: Delivery) {
        let queue = &self.queue;
        let m = &d.message;
        if m.attempt > MAX_RETRIES {
            let reason = format!("failed {} times", m.attempt);
            match self.bury(&d, &reason).await {
                Ok(()) => {
                    self.count("dead");
                    tracing::error!(job = %m.job, chunk = m.chunk, "chunk dead-lettered after its retries");
                }
                // Reporting needs the database: wait for it, the chunk is not dropped.
                Err(e) => {
                    tracing::warn!(error = %e, job = %m.job, chunk = m.chunk, "could not report a dead chunk yet");
                    self.settle("defer", || queue.defer(&self.id, &d, m.attempt, OUTAGE_DELAY, now_ms())).await;
                }
            }
            return;
        }
        match self.process(&d).await {
            Ok(outcome) => {
                self.count(match outcome {
                    Outcome::Done => "done",
                    Outcome::Duplicate => "duplicate",
                });
                // The results are committed; should the ack still be lost, a redelivery finds the
                // chunk done.
                self.settle("ack", || queue.ack(&self.id, &d)).await;
            }
            Err(e @ ApiError::Unavailable { .. }) => {
                self.count("deferred");
                tracing::warn!(error = %e, job = %m.job, chunk = m.chunk, "dependency down; chunk deferred");
                self.settle("defer", || queue.defer(&self.id, &d, m.attempt, OUTAGE_DELAY, now_ms())).await;
            }
            Err(e) => {
                self.count("retried");
                let attempt = m.attempt + 1;
                self.record_attempt(m.job, m.chunk, attempt).await;
                tracing::warn!(error = %e, job = %m.job, chunk = m.chunk, attempt, "chunk failed; retrying after backoff");
                self.settle("defer", || queue.defer(&self.id, &d, attempt, backoff(attempt), now_ms())).await;
            }
        }
    }

    async fn take_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let deps = self.db.deps.clone();
        while !*stop.borrow() {
            let down = [Dependency::Database, Dependency::Redis].into_iter().any(|d| deps.rejecting(d));
            let taken = if down {
                None
            } else {
                match deps.admit(Dependency::Redis) {
                    Ok(()) => deps.redis(self.queue.take(&self.id, now_ms()).await).ok().flatten(),
                    Err(_) => None,
                }
            };
            match taken {
                Some(d) => {
                    let span = tracing::info_span!("chunk", job = %d.message.job, chunk = d.message.chunk);
                    self.handle(d).instrument(span).await;
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    /// Heartbeats, returns dead workers' chunks, and moves due retries back to their queues.
    async fn housekeeping(self: Arc<Self>, dead_after: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let dead_after_ms = i64::try_from(dead_after.as_millis()).unwrap_or(i64::MAX);
        while !*stop.borrow() {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let q = &self.queue;
            let now = now_ms();
            let result = async {
                q.heartbeat(&self.id, now).await?;
                q.reap(now - dead_after_ms).await?;
                q.promote(now).await
            }
            .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "queue housekeeping failed; next tick retries");
            }
        }
    }
}

/// Runs the worker until `shutdown` resolves, then finishes the chunks in hand and leaves.
pub async fn run(args: WorkerArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let deps = Arc::new(Deps::new(args.breaker.config(), &mut registry));
    let db = Db::new(&args.database, deps);
    let redis = redis_connection(&args.redis)?;
    let queue = Queue::new(redis.clone());
    let metrics = Metrics::register(&mut registry);
    let id = args.worker_id.clone().unwrap_or_else(|| format!("worker-{}", uuid::Uuid::new_v4()));
    let (stop_tx, stop) = watch::channel(false);
    let worker = Arc::new(Worker {
        id: id.clone(),
        db: db.clone(),
        queue: queue.clone(),
        metrics: metrics.clone(),
        stop: stop.clone(),
    });

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let admin =
        crate::routes::admin_router(Probes { db: db.clone(), redis, draining: Default::default() }, Arc::new(registry));
    let mut admin_stop = stop.clone();
    let admin_task = tokio::spawn(async move {
        let _ = axum::serve(listener, admin)
            .with_graceful_shutdown(async move {
                let _ = admin_stop.changed().await;
            })
            .await;
    });
    tokio::spawn(metrics.clone().watch_queues(queue.clone(), Duration::from_secs(2)));

    // Chunks left in this worker's list by an earlier process under the same name go back first.
    if let Err(e) = queue.release(&id).await {
        tracing::warn!(error = %e, "could not check for chunks of an earlier run");
    }
    tracing::info!(worker = %id, concurrency = args.concurrency, "worker started");
    let housekeeping = tokio::spawn(worker.clone().housekeeping(args.dead_after(), stop.clone()));
    let sweeper = tokio::spawn(crate::sweep::run(db, queue.clone(), metrics, args.sweep(), stop.clone()));
    let takers: Vec<_> =
        (0..args.concurrency.max(1)).map(|_| tokio::spawn(worker.clone().take_loop(stop.clone()))).collect();

    shutdown.await;
    tracing::info!(worker = %id, "stopping: finishing the chunks in hand");
    let _ = stop_tx.send(true);
    for t in takers {
        let _ = t.await;
    }
    let _ = housekeeping.await;
    let _ = sweeper.await;
    // Nothing should be left in hand; if something is, it goes back to the queue.
    if let Err(e) = queue.release(&id).await {
        tracing::warn!(error = %e, "could not return this worker's chunks; another worker will after the heartbeat timeout");
    }
    let _ = admin_task.await;
    Ok(())
}
