//! The queue sweep: rebuilds from PostgreSQL the messages Redis lost (a flush, a restart without
//! persistence, a failover to an empty replica, eviction). One worker at a time, under a
//! PostgreSQL advisory lock, takes the pending chunks last queued more than the grace period ago,
//! asks Redis in one script which of them have no message in any queue, processing list or the
//! retry set, and queues those again with their job's priority and their recorded attempt. A
//! chunk lost more often than allowed is given up (its rows reported as failed), and a job left
//! with no pending chunk to finish it is failed, so no job waits forever.
//!
//! A chunk is requeued at most `grace + interval` after it was lost (documented defaults 10 s +
//! 5 s). Should both the original and the rebuilt message be delivered, the chunk still counts
//! once: completion locks the chunk row and counts only a pending chunk.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::watch;

use crate::db::sweep::{self, PendingChunk};
use crate::db::{jobs, Db};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::queue::{ChunkId, Message, Queue};

/// Pending chunks one sweep checks at most (the oldest first; the next sweep takes the rest).
/// 10,000 chunks is a million rows, and one scan of that many messages keeps Redis busy for
/// milliseconds, not seconds.
const BATCH: i64 = 10_000;

/// When and how the sweep runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepConfig {
    pub interval: Duration,
    /// How long a chunk stays unchecked after it was queued (covers the upload's moment between
    /// committing the chunks and pushing their messages).
    pub grace: Duration,
    /// Requeues after which a lost chunk is given up.
    pub max_requeues: i32,
}

/// What the sweep does with the candidates Redis has no message for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub requeue: Vec<Message>,
    pub give_up: Vec<PendingChunk>,
}

/// Splits the candidates that `missing` names into those queued again (with their priority and
/// attempt) and those lost too often; candidates that still have a message are left alone.
pub fn plan(candidates: &[PendingChunk], missing: &[ChunkId], max_requeues: i32) -> Plan {
    let missing: HashSet<&ChunkId> = missing.iter().collect();
    let mut plan = Plan::default();
    for c in candidates.iter().filter(|c| missing.contains(&c.id)) {
        if c.requeues >= max_requeues {
            plan.give_up.push(c.clone());
        } else {
            plan.requeue.push(Message {
                job: c.id.job,
                chunk: c.id.chunk,
                priority: c.priority,
                attempt: u32::try_from(c.attempt).unwrap_or(0),
            });
        }
    }
    plan
}

/// What one sweep did (nothing when another worker held the lock).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub requeued: usize,
    pub given_up: usize,
    pub jobs_failed: usize,
}

/// One sweep, if this worker gets the lock.
pub async fn sweep_once(db: &Db, queue: &Queue, config: &SweepConfig) -> Result<Report, ApiError> {
    let deps = &db.deps;
    // Dropping the transaction on an early return rolls it back and releases the lock.
    let mut tx = db.begin().await?;
    if !deps.database(sweep::try_lock(&mut tx).await)? {
        return Ok(Report::default());
    }
    let failed = deps.database(sweep::fail_stranded_jobs(&mut tx).await)?;
    let candidates = deps.database(sweep::stale_pending(&mut tx, config.grace.as_secs_f64(), BATCH).await)?;
    let ids: Vec<ChunkId> = candidates.iter().map(|c| c.id.clone()).collect();
    // Still under the lock: a second sweeper would otherwise check the same chunks meanwhile.
    let missing = deps.redis(queue.missing(&ids).await)?;
    let plan = plan(&candidates, &missing, config.max_requeues);
    let written = async {
        for c in &plan.give_up {
            let reason = format!("lost from the queue after {} requeues", c.requeues);
            jobs::bury(&mut tx, c.id.job, c.id.chunk, "could not be kept queued", &reason).await?;
        }
        let lost: Vec<ChunkId> = plan.requeue.iter().map(|m| ChunkId { job: m.job, chunk: m.chunk }).collect();
        sweep::mark_requeued(&mut tx, &lost).await
    }
    .await;
    let recorded: HashSet<ChunkId> = db.finish(tx, written).await?.into_iter().collect();
    // Pushed after the commit: should the push fail, the chunks are found missing again once
    // their new queue time is past the grace period.
    let messages: Vec<Message> =
        plan.requeue.into_iter().filter(|m| recorded.contains(&ChunkId { job: m.job, chunk: m.chunk })).collect();
    deps.redis(queue.requeue(&messages).await)?;
    for job in &failed {
        tracing::error!(%job, "job failed: chunks are missing from the database");
    }
    for c in &plan.give_up {
        tracing::error!(job = %c.id.job, chunk = c.id.chunk, requeues = c.requeues, "chunk given up: lost from the queue too often");
    }
    Ok(Report { requeued: messages.len(), given_up: plan.give_up.len(), jobs_failed: failed.len() })
}

/// Sets the oldest-pending-chunk gauge (every worker, so the series survives any one of them).
async fn observe_oldest(db: &Db, metrics: &Metrics) -> Result<(), ApiError> {
    let mut tx = db.begin().await?;
    let age = sweep::oldest_pending_age(&mut tx).await;
    metrics.oldest_pending_age.set(db.finish(tx, age).await?);
    Ok(())
}

/// Sweeps every `config.interval` until `stop`.
pub async fn run(db: Db, queue: Queue, metrics: Metrics, config: SweepConfig, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = observe_oldest(&db, &metrics).await {
            tracing::debug!(error = %e, "oldest pending chunk unavailable");
        }
        match sweep_once(&db, &queue, &config).await {
            Ok(report) if report.requeued + report.given_up + report.jobs_failed > 0 => {
                metrics.requeued.inc_by(report.requeued as u64);
                tracing::warn!(
                    requeued = report.requeued,
                    given_up = report.given_up,
                    jobs_failed = report.jobs_failed,
                    "queue sweep rebuilt lost messages"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "queue sweep failed; the next one retries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn chunk(n: i32, attempt: i32, requeues: i32) -> PendingChunk {
        PendingChunk { id: ChunkId { job: Uuid::from_u128(1), chunk: n }, priority: 7, attempt, requeues }
    }

    fn message(n: i32, attempt: u32) -> Message {
        Message { job: Uuid::from_u128(1), chunk: n, priority: 7, attempt }
    }

    #[test]
    fn the_sweep_plans_by_what_redis_lost_and_how_often() {
        let cases: [(&str, Vec<PendingChunk>, Vec<i32>, Plan); 4] = [
            ("nothing lost leaves every chunk alone", vec![chunk(0, 0, 0), chunk(1, 0, 0)], vec![], Plan::default()),
            (
                "a lost chunk is queued again with its priority and attempt",
                vec![chunk(0, 0, 0), chunk(1, 2, 1)],
                vec![1],
                Plan { requeue: vec![message(1, 2)], give_up: vec![] },
            ),
            (
                "a chunk lost as often as allowed is given up",
                vec![chunk(0, 0, 5), chunk(1, 0, 4)],
                vec![0, 1],
                Plan { requeue: vec![message(1, 0)], give_up: vec![chunk(0, 0, 5)] },
            ),
            ("a missing id that is no candidate is ignored", vec![chunk(0, 0, 0)], vec![9], Plan::default()),
        ];
        for (name, candidates, missing, expected) in cases {
            let missing: Vec<ChunkId> =
                missing.into_iter().map(|n| ChunkId { job: Uuid::from_u128(1), chunk: n }).collect();
            assert_eq!(plan(&candidates, &missing, 5), expected, "{name}");
        }
    }
}
