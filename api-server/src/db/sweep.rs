//! The PostgreSQL side of the queue sweep: the lock that lets one worker sweep at a time, the
//! pending chunks old enough to be checked against Redis, recording a requeue, failing jobs whose
//! chunks can no longer complete, and the age of the oldest unfinished work.

use super::Tx;
use uuid::Uuid;

use crate::queue::ChunkId;

/// The advisory lock key of the sweep (any constant the schema uses for nothing else: "rpsweep"
/// in ASCII). Transaction-scoped, so it works through PgBouncer in transaction mode and is gone
/// with the transaction when the sweeper dies; it lives in PostgreSQL, so a Redis flush that
/// drops the queue does not drop the lock as well.
const SWEEP_LOCK: i64 = 0x0072_7073_7765_6570;

/// A pending chunk the sweep may have to queue again, with what its rebuilt message needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChunk {
    pub id: ChunkId,
    pub priority: i16,
    /// The delivery attempt its counted failures reached.
    pub attempt: i32,
    /// How often the sweep queued it again so far.
    pub requeues: i32,
}

/// Takes the sweep lock for this transaction; false when another worker is sweeping.
pub async fn try_lock(tx: &mut Tx) -> Result<bool, sqlx::Error> {
    let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_xact_lock($1) AS "locked!""#, SWEEP_LOCK)
        .fetch_one(tx.exec())
        .await?;
    Ok(locked)
}

/// Pending chunks of unfinished jobs last queued more than `grace_seconds` ago, oldest first
/// (younger ones may still be on their way into Redis: committed, not yet pushed).
pub async fn stale_pending(tx: &mut Tx, grace_seconds: f64, limit: i64) -> Result<Vec<PendingChunk>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT c.job_id, c.chunk_no, j.priority, c.attempt, c.requeues
         FROM bulk_job_chunks c JOIN bulk_jobs j ON j.id = c.job_id
         WHERE c.status = 'pending' AND c.queued_at < now() - make_interval(secs => $1)
           AND j.status IN ('pending', 'processing')
         ORDER BY c.queued_at LIMIT $2",
        grace_seconds,
        limit,
    )
    .fetch_all(tx.exec())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PendingChunk {
            id: ChunkId { job: r.job_id, chunk: r.chunk_no },
            priority: r.priority,
            attempt: r.attempt,
            requeues: r.requeues,
        })
        .collect())
}

/// Records that these chunks are queued again (those still pending: one finished meanwhile
/// needs no message) and counts them into their jobs; returns the ones recorded.
pub async fn mark_requeued(tx: &mut Tx, chunks: &[ChunkId]) -> Result<Vec<ChunkId>, sqlx::Error> {
    let jobs: Vec<Uuid> = chunks.iter().map(|c| c.job).collect();
    let numbers: Vec<i32> = chunks.iter().map(|c| c.chunk).collect();
    let rows = sqlx::query!(
        r#"WITH requeued AS (
               UPDATE bulk_job_chunks c SET queued_at = now(), requeues = requeues + 1
               FROM UNNEST($1::uuid[], $2::int[]) AS lost (job_id, chunk_no)
               WHERE c.job_id = lost.job_id AND c.chunk_no = lost.chunk_no AND c.status = 'pending'
               RETURNING c.job_id, c.chunk_no
           ), per_job AS (
               UPDATE bulk_jobs j SET chunks_requeued = chunks_requeued + n.count, last_requeued_at = now()
               FROM (SELECT job_id, count(*)::int AS count FROM requeued GROUP BY job_id) n
               WHERE j.id = n.job_id
           )
           SELECT job_id AS "job_id!", chunk_no AS "chunk_no!" FROM requeued"#,
        &jobs,
        &numbers,
    )
    .fetch_all(tx.exec())
    .await?;
    Ok(rows.into_iter().map(|r| ChunkId { job: r.job_id, chunk: r.chunk_no }).collect())
}

/// Fails unfinished jobs that have no pending chunk left to finish them (a chunk row is gone):
/// the last chunk's transaction finishes a job, so an unfinished one without pending chunks would
/// wait forever. Returns the jobs failed.
pub async fn fail_stranded_jobs(tx: &mut Tx) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE bulk_jobs j SET status = 'failed', finished_at = now(),
             error = COALESCE(error || '; ', '')
                 || format('%s of %s chunks are missing from the database',
                           chunks_total - chunks_done - chunks_dead, chunks_total)
         WHERE status IN ('pending', 'processing')
           AND NOT EXISTS (SELECT 1 FROM bulk_job_chunks c WHERE c.job_id = j.id AND c.status = 'pending')
         RETURNING id",
    )
    .fetch_all(tx.exec())
    .await
}

/// Seconds since the oldest unfinished job was accepted (its pending chunks have waited that
/// long); zero when nothing is waiting.
pub async fn oldest_pending_age(tx: &mut Tx) -> Result<f64, sqlx::Error> {
    let age = sqlx::query_scalar!(
        r#"SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) AS "age!"
           FROM bulk_jobs WHERE status IN ('pending', 'processing')"#,
    )
    .fetch_one(tx.exec())
    .await?;
    Ok(age)
}
