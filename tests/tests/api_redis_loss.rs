//! An accepted bulk job survives Redis losing its data, against real PostgreSQL, PgBouncer, Redis
//! and worker processes: a FLUSHALL mid-job, Redis killed and restarted empty on the same port,
//! and cache pressure under a small `maxmemory` (the queue survives `volatile-lru`; under
//! `allkeys-lru` it is evicted and the sweep rebuilds it). Each time every row is reported exactly
//! once. A job whose chunks can no longer complete fails with a reason. Each recovery prints the
//! time from the loss to the job's completion (`--nocapture`).

use std::time::{Duration, Instant};

use anyhow::Result;
use redis::AsyncCommands;
use reqwest::StatusCode;
use riskplatform_tests::api::{ApiStack, Server};
use riskplatform_tests::http::{bulk_csv, ApiClient};
use riskplatform_tests::prometheus::free_port;
use riskplatform_tests::redis::Redis;
use serde_json::Value;

/// Workers that sweep every second with a 2 s grace period, and whose Redis breaker tries again
/// after 2 s (the documented 60 s would dominate the restart case).
const FAST_SWEEP: [(&str, &str); 3] =
    [("RISK_SWEEP_INTERVAL_SECONDS", "1"), ("RISK_SWEEP_GRACE_SECONDS", "2"), ("RISK_BREAKER_RECOVERY_SECONDS", "2")];

/// [`FAST_SWEEP`] with the worker's metrics on `addr`.
fn with_metrics(addr: &str) -> Vec<(&'static str, &str)> {
    let mut env = vec![("RISK_METRICS_ADDR", addr)];
    env.extend(FAST_SWEEP);
    env
}

/// The bulk queue of the default priority (batch, 1).
const BATCH_QUEUE: &str = "rp:queue:1";

async fn upload(c: &ApiClient, rows: usize, query: &str) -> Result<String> {
    let accepted = c.upload(bulk_csv(rows, None), query).await?;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    Ok(accepted.body["id"].as_str().expect("id").to_owned())
}

async fn wait_chunks_done(c: &ApiClient, job: &str, at_least: i64) -> Result<Value> {
    c.wait_job(job, Duration::from_secs(60), |b| b["chunks_done"].as_i64().is_some_and(|n| n >= at_least)).await
}

/// The job completed and every row has exactly one result.
async fn assert_every_row_once(stack: &ApiStack, done: &Value, job: &str, rows: usize) -> Result<()> {
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["processed_rows"].as_i64(), Some(rows as i64), "{done}");
    assert_eq!(done["chunks_done"].as_i64(), Some((rows / 100) as i64), "{done}");
    let pool = stack.sql().await?;
    let (count, distinct, min, max): (i64, i64, i32, i32) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT row_no), min(row_no), max(row_no) FROM bulk_job_results WHERE job_id = $1::uuid",
    )
    .bind(job)
    .fetch_one(&pool)
    .await?;
    assert_eq!((count, distinct, min, max), (rows as i64, rows as i64, 0, rows as i32 - 1));
    Ok(())
}

fn assert_requeued(done: &Value) {
    assert!(done["chunks_requeued"].as_i64().is_some_and(|n| n > 0), "the sweep requeued lost chunks: {done}");
    assert!(done["last_requeued_at"].is_string(), "the job shows when: {done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_completes_with_every_row_once_after_redis_is_flushed_mid_job() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("flush")?));
    let rows = 20_000;
    let job = upload(&c, rows, "").await?;
    let metrics = [format!("127.0.0.1:{}", free_port()?), format!("127.0.0.1:{}", free_port()?)];
    let _w1 = stack.worker("w1", &with_metrics(&metrics[0]))?;
    let _w2 = stack.worker("w2", &with_metrics(&metrics[1]))?;
    let mid = wait_chunks_done(&c, &job, 40).await?;
    assert_ne!(mid["status"], "completed", "{mid}");

    let mut redis = stack.redis_client().await?;
    let () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
    let lost = Instant::now();
    let done = c.wait_finished(&job, Duration::from_secs(90)).await?;
    eprintln!(
        "FLUSHALL at {} of 200 chunks: job completed {:.1} s after the loss",
        mid["chunks_done"],
        lost.elapsed().as_secs_f64()
    );
    assert_every_row_once(&stack, &done, &job, rows).await?;
    assert_requeued(&done);

    // The sweeper counted what it requeued; every worker exports the oldest pending job's age.
    let mut requeued = 0.0;
    for addr in &metrics {
        let text = reqwest::get(format!("http://{addr}/metrics")).await?.text().await?;
        requeued += sample(&text, "riskplatform_job_chunks_requeued_total").unwrap_or(0.0);
        assert!(sample(&text, "riskplatform_oldest_pending_chunk_age_seconds").is_some(), "{text}");
    }
    assert_eq!(Some(requeued), done["chunks_requeued"].as_f64(), "the counter matches the job's count");
    Ok(())
}

/// The value of an unlabelled series in a text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_completes_with_every_row_once_after_redis_restarts_empty_mid_job() -> Result<()> {
    let mut stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("restart")?));
    let rows = 20_000;
    let job = upload(&c, rows, "").await?;
    let _w1 = stack.worker("w1", &FAST_SWEEP)?;
    let _w2 = stack.worker("w2", &FAST_SWEEP)?;
    let mid = wait_chunks_done(&c, &job, 40).await?;

    // SIGKILL, as an OOM kill or a node loss would; without persistence it comes back empty.
    let lost = Instant::now();
    stack.redis.service.kill()?;
    stack.redis.service.resume()?;
    let done = c.wait_finished(&job, Duration::from_secs(90)).await?;
    eprintln!(
        "Redis killed and restarted empty at {} of 200 chunks: job completed {:.1} s after the loss",
        mid["chunks_done"],
        lost.elapsed().as_secs_f64()
    );
    assert_every_row_once(&stack, &done, &job, rows).await?;
    assert_requeued(&done);
    Ok(())
}

/// Writes cache entries the way the API's cache does (`SET .. EX`, the prediction TTL) until
/// Redis has evicted keys, and returns how many it evicted. Bounded: at most 12 MB in 4 KB values.
async fn flood_cache(redis: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let value = "x".repeat(4096);
    for batch in 0..30 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.set_ex(format!("rp:cache:prediction:flood-{batch}-{i}"), &value, 3600).ignore();
        }
        // Under volatile-lru a full Redis refuses writes it cannot make room for: an answer, not a
        // test failure (the cache treats a failed write as a later miss).
        let _: redis::RedisResult<()> = pipe.query_async(redis).await;
    }
    let info: String = redis::cmd("INFO").arg("stats").query_async(redis).await?;
    let evicted =
        info.lines().find_map(|l| l.strip_prefix("evicted_keys:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    Ok(evicted)
}

/// A job stopped mid-way under cache pressure: the stack, its server, the job, how many queued
/// chunks were evicted and when the pressure ended.
struct Pressured {
    stack: ApiStack,
    _server: Server,
    c: ApiClient,
    job: String,
    lost: i64,
    flooded: Instant,
}

/// A job stopped mid-way (its worker drained with SIGTERM), then heavy cache traffic on a Redis
/// of `maxmemory` 4mb under `policy`.
async fn job_under_cache_pressure(policy: &str) -> Result<Pressured> {
    let stack = ApiStack::start_with(Redis::start_with("4mb", policy)?)?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("pressure")?));
    let job = upload(&c, 10_000, "").await?;
    let mut first = stack.worker("first", &FAST_SWEEP)?;
    wait_chunks_done(&c, &job, 20).await?;
    assert!(first.terminate(Duration::from_secs(10))?, "the worker drained on SIGTERM");
    let mut redis = stack.redis_client().await?;
    let before: i64 = redis.llen(BATCH_QUEUE).await?;
    assert!(before > 0, "chunks were left in the queue");
    // Redis's LRU clock ticks in seconds: the queue must be idle longer than the fresh cache
    // entries for LRU to prefer it, as an idle queue under real traffic would be.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let evicted = flood_cache(&mut redis).await?;
    let flooded = Instant::now();
    assert!(evicted > 0, "the cache traffic filled Redis ({policy}: {evicted} keys evicted)");
    let after: i64 = redis.llen(BATCH_QUEUE).await?;
    eprintln!("{policy}: {evicted} keys evicted; the queue held {before} chunks before, {after} after");
    Ok(Pressured { stack, _server: server, c, job, lost: before - after, flooded })
}

#[tokio::test(flavor = "multi_thread")]
async fn under_volatile_lru_cache_pressure_evicts_cache_entries_and_never_the_queue() -> Result<()> {
    let Pressured { stack, _server, c, job, lost, flooded } = job_under_cache_pressure("volatile-lru").await?;
    assert_eq!(lost, 0, "no queued chunk was evicted");
    let _w1 = stack.worker("w1", &FAST_SWEEP)?;
    let _w2 = stack.worker("w2", &FAST_SWEEP)?;
    let done = c.wait_finished(&job, Duration::from_secs(90)).await?;
    eprintln!("volatile-lru: job completed {:.1} s after the cache pressure", flooded.elapsed().as_secs_f64());
    assert_every_row_once(&stack, &done, &job, 10_000).await?;
    assert_eq!(done["chunks_requeued"], 0, "nothing had to be rebuilt: {done}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn under_allkeys_lru_cache_pressure_evicts_the_queue_and_the_sweep_rebuilds_it() -> Result<()> {
    let Pressured { stack, _server, c, job, lost, flooded } = job_under_cache_pressure("allkeys-lru").await?;
    assert!(lost > 0, "allkeys-lru evicted queued chunks");
    let _w1 = stack.worker("w1", &FAST_SWEEP)?;
    let _w2 = stack.worker("w2", &FAST_SWEEP)?;
    let done = c.wait_finished(&job, Duration::from_secs(90)).await?;
    eprintln!(
        "allkeys-lru: {lost} queued chunks evicted; job completed {:.1} s after the eviction",
        flooded.elapsed().as_secs_f64()
    );
    assert_every_row_once(&stack, &done, &job, 10_000).await?;
    assert_requeued(&done);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_chunks_cannot_complete_fails_with_a_reason_instead_of_waiting() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("stuck")?));
    let unreadable = upload(&c, 200, "").await?;
    let deleted = upload(&c, 200, "").await?;
    let lost_often = upload(&c, 100, "?priority=low").await?;
    let out_of_retries = upload(&c, 100, "?priority=normal").await?;
    let pool = stack.sql().await?;
    sqlx::query("UPDATE bulk_job_chunks SET rows = '\"gone\"' WHERE job_id = $1::uuid AND chunk_no = 1")
        .bind(&unreadable)
        .execute(&pool)
        .await?;
    sqlx::query("DELETE FROM bulk_job_chunks WHERE job_id = $1::uuid AND chunk_no = 1")
        .bind(&deleted)
        .execute(&pool)
        .await?;
    // Lost from Redis once more after as many requeues as the sweep allows (5 by default).
    sqlx::query("UPDATE bulk_job_chunks SET requeues = 5 WHERE job_id = $1::uuid")
        .bind(&lost_often)
        .execute(&pool)
        .await?;
    // Its counted failures reached the last retry, then Redis lost its message: the rebuilt one
    // keeps the attempt, so the chunk is not retried afresh.
    sqlx::query("UPDATE bulk_job_chunks SET attempt = 4 WHERE job_id = $1::uuid")
        .bind(&out_of_retries)
        .execute(&pool)
        .await?;
    let mut redis = stack.redis_client().await?;
    let () = redis.del(&["rp:queue:3", "rp:queue:5"]).await?;

    let _worker = stack.worker("w", &FAST_SWEEP)?;
    let cases = [
        (&unreadable, "chunk 1 failed after its retries: failed 4 times; its stored rows cannot be read"),
        (&deleted, "1 of 2 chunks are missing from the database"),
        (&lost_often, "chunk 0 could not be kept queued: lost from the queue after 5 requeues"),
        (&out_of_retries, "chunk 0 failed after its retries: failed 4 times"),
    ];
    for (job, reason) in cases {
        let done = c.wait_finished(job, Duration::from_secs(60)).await?;
        assert_eq!(done["status"], "failed", "{done}");
        assert!(done["error"].as_str().is_some_and(|e| e.contains(reason)), "{reason:?} in {done}");
        assert!(done["finished_at"].is_string(), "{done}");
    }
    let csv = c.get(&format!("/api/v1/jobs/{lost_often}/results")).await?.text;
    assert_eq!(csv.lines().nth(1), Some("1,R0,,,,not processed: lost from the queue after 5 requeues"));
    let doc = c.get("/api/v1/openapi.json").await?.body;
    let job = &doc["components"]["schemas"]["Job"]["properties"];
    for field in ["chunks_requeued", "last_requeued_at", "error"] {
        assert!(job[field]["description"].is_string(), "{field} documented in {job}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_to_a_redis_full_of_queue_state_is_refused_with_503_and_its_job_failed() -> Result<()> {
    let stack = ApiStack::start_with(Redis::start_with("4mb", "volatile-lru")?)?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("full")?));
    // Keys without a TTL, as queue state is: volatile-lru may not evict them.
    let mut redis = stack.redis_client().await?;
    // 2 MB of them, then a limit below that: no write fits and nothing may be evicted.
    let value = "q".repeat(4096);
    for n in 0..500 {
        let () = redis.set(format!("rp:fill:{n}"), &value).await?;
    }
    let () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1mb").query_async(&mut redis).await?;
    let refused: redis::RedisResult<()> = redis.set("rp:fill:more", 1).await;
    assert_eq!(refused.map_err(|e| e.code().map(str::to_owned)), Err(Some("OOM".to_owned())), "Redis is full");
    let refused = c.upload(bulk_csv(300, None), "").await?;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text);
    assert!(refused.retry_after.is_some(), "{refused:?}");
    let pool = stack.sql().await?;
    let statuses: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, error FROM bulk_jobs").fetch_all(&pool).await?;
    assert_eq!(statuses, [("failed".to_owned(), Some("the job queue was unavailable at upload".to_owned()))]);
    Ok(())
}
