//! Bulk jobs: the job row with its progress counters, its input chunks and per-row results.
//! Completing a chunk is idempotent: the chunk row is locked and only a pending chunk counts, and
//! results are keyed by (job, row), so a chunk processed twice writes and counts once.

use super::Tx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::Statement;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: Uuid,
    /// pending, processing, completed (every row scored or reported) or failed (some chunks
    /// exhausted their retries; their rows are reported as failed in the results).
    pub status: String,
    pub priority: i16,
    pub total_rows: i32,
    /// Rows with a result so far (scored or rejected by the model).
    pub processed_rows: i32,
    /// Rows that could not be scored (bad input, or in a chunk that failed for good).
    pub failed_rows: i32,
    pub chunks_total: i32,
    pub chunks_done: i32,
    pub chunks_dead: i32,
    /// Chunks queued again by the sweep after their message was lost from Redis (counted once per
    /// requeue).
    pub chunks_requeued: i32,
    /// When the sweep last queued one of its chunks again; null while none was lost.
    pub last_requeued_at: Option<DateTime<Utc>>,
    /// Why the job failed, when it did (which chunks, and what happened to them).
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One input row of a bulk job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BulkRow {
    pub reference: Option<String>,
    pub statement: Statement,
}

/// One output row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BulkResult {
    pub row_no: i32,
    pub reference: Option<String>,
    pub probability: Option<f64>,
    pub risk_level: Option<String>,
    pub zone: Option<String>,
    pub error: Option<String>,
}

/// A chunk claimed for processing.
pub struct Chunk {
    pub first_row: i32,
    pub rows: Vec<BulkRow>,
}

/// Stores a job and its chunks (of `chunk_size` rows); returns the job's id.
pub async fn create(
    tx: &mut Tx,
    tenant: Uuid,
    priority: i16,
    rows: &[BulkRow],
    chunk_size: usize,
) -> Result<(Uuid, i32), sqlx::Error> {
    let id = Uuid::new_v4();
    let chunks: Vec<&[BulkRow]> = rows.chunks(chunk_size.max(1)).collect();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    sqlx::query!(
        "INSERT INTO bulk_jobs (id, tenant_id, status, priority, total_rows, chunks_total)
         VALUES ($1, $2, 'pending', $3, $4, $5)",
        id,
        tenant,
        priority,
        count(rows.len()),
        count(chunks.len()),
    )
    .execute(tx.exec())
    .await?;
    let chunk_nos: Vec<i32> = (0..chunks.len()).map(count).collect();
    let first_rows: Vec<i32> = (0..chunks.len()).map(|i| count(i * chunk_size)).collect();
    let bodies: Vec<Json<&[BulkRow]>> = chunks.iter().map(|c| Json(*c)).collect();
    sqlx::query!(
        "INSERT INTO bulk_job_chunks (job_id, chunk_no, first_row, rows)
         SELECT $1, * FROM UNNEST($2::int[], $3::int[], $4::jsonb[])",
        id,
        &chunk_nos,
        &first_rows,
        &bodies as _,
    )
    .execute(tx.exec())
    .await?;
    Ok((id, count(chunks.len())))
}

pub async fn get(tx: &mut Tx, tenant: Uuid, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "SELECT id, status, priority, total_rows, processed_rows, failed_rows, chunks_total, chunks_done,
             chunks_dead, chunks_requeued, last_requeued_at, error, created_at, started_at, finished_at
         FROM bulk_jobs WHERE tenant_id = $1 AND id = $2",
        tenant,
        id,
    )
    .fetch_optional(tx.exec())
    .await
}

/// The tenant's unfinished jobs, oldest first (the seed's partial index serves this).
pub async fn unfinished(tx: &mut Tx, tenant: Uuid, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        "SELECT id, status, priority, total_rows, processed_rows, failed_rows, chunks_total, chunks_done,
             chunks_dead, chunks_requeued, last_requeued_at, error, created_at, started_at, finished_at
         FROM bulk_jobs WHERE tenant_id = $1 AND status IN ('pending', 'processing')
         ORDER BY created_at LIMIT $2",
        tenant,
        limit,
    )
    .fetch_all(tx.exec())
    .await
}

/// Locks a pending chunk for this transaction; None when it is already done or dead (a
/// duplicate delivery) or gone with its job.
pub async fn claim(tx: &mut Tx, job: Uuid, chunk_no: i32) -> Result<Option<Chunk>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT first_row, rows AS "rows: Json<Vec<BulkRow>>" FROM bulk_job_chunks
           WHERE job_id = $1 AND chunk_no = $2 AND status = 'pending' FOR UPDATE"#,
        job,
        chunk_no,
    )
    .fetch_optional(tx.exec())
    .await?;
    Ok(row.map(|r| Chunk { first_row: r.first_row, rows: r.rows.0 }))
}

/// Writes results, keeping whatever a chunk processed before wrote (the key is job and row).
async fn insert_results(tx: &mut Tx, job: Uuid, results: &[BulkResult]) -> Result<(), sqlx::Error> {
    let row_nos: Vec<i32> = results.iter().map(|r| r.row_no).collect();
    let references: Vec<Option<String>> = results.iter().map(|r| r.reference.clone()).collect();
    let probabilities: Vec<Option<f64>> = results.iter().map(|r| r.probability).collect();
    let levels: Vec<Option<String>> = results.iter().map(|r| r.risk_level.clone()).collect();
    let zones: Vec<Option<String>> = results.iter().map(|r| r.zone.clone()).collect();
    let errors: Vec<Option<String>> = results.iter().map(|r| r.error.clone()).collect();
    sqlx::query!(
        "INSERT INTO bulk_job_results (job_id, row_no, reference, probability, risk_level, zone, error)
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::text[])
         ON CONFLICT (job_id, row_no) DO NOTHING",
        job,
        &row_nos,
        &references as _,
        &probabilities as _,
        &levels as _,
        &zones as _,
        &errors as _,
    )
    .execute(tx.exec())
    .await?;
    Ok(())
}

/// Marks a claimed chunk `done` or `dead` with its results and counts it into the job, which
/// finishes with its last chunk: completed, or failed when any chunk is dead. The only place a
/// job's progress changes.
async fn finish_chunk(
    tx: &mut Tx,
    job: Uuid,
    chunk_no: i32,
    status: &str,
    results: &[BulkResult],
    error: Option<String>,
) -> Result<(), sqlx::Error> {
    insert_results(tx, job, results).await?;
    let failed = i32::try_from(results.iter().filter(|r| r.error.is_some()).count()).unwrap_or(i32::MAX);
    let processed = i32::try_from(results.len()).unwrap_or(i32::MAX);
    sqlx::query!(
        "WITH chunk AS (
             UPDATE bulk_job_chunks SET status = $3, attempts = attempts + 1
             WHERE job_id = $1 AND chunk_no = $2 AND status = 'pending' RETURNING status
         ), counted AS (
             SELECT (status = 'done')::int AS done, (status = 'dead')::int AS dead FROM chunk
         )
         UPDATE bulk_jobs SET
             processed_rows = processed_rows + $4,
             failed_rows = failed_rows + $5,
             chunks_done = chunks_done + counted.done,
             chunks_dead = chunks_dead + counted.dead,
             error = COALESCE($6, error),
             started_at = COALESCE(started_at, now()),
             status = CASE WHEN chunks_done + chunks_dead + 1 < chunks_total THEN 'processing'
                           WHEN chunks_dead + counted.dead > 0 THEN 'failed' ELSE 'completed' END,
             finished_at = CASE WHEN chunks_done + chunks_dead + 1 = chunks_total THEN now() END
         FROM counted
         WHERE id = $1",
        job,
        chunk_no,
        status,
        processed,
        failed,
        error,
    )
    .execute(tx.exec())
    .await?;
    Ok(())
}

/// Writes a claimed chunk's results and counts them into the job.
pub async fn complete(tx: &mut Tx, job: Uuid, chunk_no: i32, results: &[BulkResult]) -> Result<(), sqlx::Error> {
    finish_chunk(tx, job, chunk_no, "done", results, None).await
}

/// Records the delivery attempt a counted failure took a chunk to, so a message rebuilt after
/// Redis lost it keeps the retry budget spent so far.
pub async fn record_attempt(tx: &mut Tx, job: Uuid, chunk_no: i32, attempt: i32) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bulk_job_chunks SET attempt = GREATEST(attempt, $3) WHERE job_id = $1 AND chunk_no = $2",
        job,
        chunk_no,
        attempt,
    )
    .execute(tx.exec())
    .await?;
    Ok(())
}

/// Gives up on a chunk (after its last retry, or lost from the queue too often): its rows are
/// reported as failed with `reason`, the job's error says the chunk `why` (e.g. "failed after
/// its retries"). A chunk whose stored rows cannot be read any more is given up without per-row
/// results; the job's error says so.
pub async fn bury(tx: &mut Tx, job: Uuid, chunk_no: i32, why: &str, reason: &str) -> Result<(), sqlx::Error> {
    let chunk = match claim(tx, job, chunk_no).await {
        Ok(Some(chunk)) => chunk,
        Ok(None) => return Ok(()),
        Err(sqlx::Error::ColumnDecode { source, .. }) => {
            let error = format!("chunk {chunk_no} {why}: {reason}; its stored rows cannot be read: {source}");
            return finish_chunk(tx, job, chunk_no, "dead", &[], Some(error)).await;
        }
        Err(e) => return Err(e),
    };
    let results: Vec<BulkResult> = chunk
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| BulkResult {
            row_no: chunk.first_row + i32::try_from(i).unwrap_or(i32::MAX),
            reference: row.reference.clone(),
            probability: None,
            risk_level: None,
            zone: None,
            error: Some(format!("not processed: {reason}")),
        })
        .collect();
    let error = format!("chunk {chunk_no} {why}: {reason}");
    finish_chunk(tx, job, chunk_no, "dead", &results, Some(error)).await
}

/// A page of a job's results in row order, after `after_row`.
pub async fn results(tx: &mut Tx, job: Uuid, after_row: i32, limit: i64) -> Result<Vec<BulkResult>, sqlx::Error> {
    sqlx::query_as!(
        BulkResult,
        "SELECT row_no, reference, probability, risk_level, zone, error FROM bulk_job_results
         WHERE job_id = $1 AND row_no > $2 ORDER BY row_no LIMIT $3",
        job,
        after_row,
        limit,
    )
    .fetch_all(tx.exec())
    .await
}

/// Marks a job failed before any work started (its chunks could not be queued).
pub async fn fail(tx: &mut Tx, tenant: Uuid, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bulk_jobs SET status = 'failed', error = $3, finished_at = now() WHERE tenant_id = $1 AND id = $2",
        tenant,
        id,
        reason,
    )
    .execute(tx.exec())
    .await?;
    Ok(())
}
