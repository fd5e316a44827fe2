//! Bulk jobs through real workers (processes of the real binary) over real PostgreSQL, PgBouncer
//! and Redis: every row gets a result or an error, and a worker killed mid-job loses nothing and
//! duplicates nothing.

use std::time::{Duration, Instant};

use anyhow::Result;
use redis::AsyncCommands;
use reqwest::StatusCode;
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::{bulk_csv, ApiClient};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_job_gives_every_row_a_result_or_an_error() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("bulk")?));
    let accepted = c.upload(bulk_csv(250, Some(17)), "?priority=high").await?;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    assert_eq!((accepted.body["rows"].as_u64(), accepted.body["chunks"].as_u64()), (Some(250), Some(3)));
    let job = accepted.body["id"].as_str().expect("id").to_owned();
    let pending = c.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_eq!(pending.body["status"], "pending", "no worker yet");
    assert_eq!(c.get("/api/v1/jobs").await?.body.as_array().map(Vec::len), Some(1));

    let _worker = stack.worker("w1", &[])?;
    let done = c.wait_finished(&job, Duration::from_secs(60)).await?;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!((done["processed_rows"].as_i64(), done["failed_rows"].as_i64()), (Some(250), Some(1)));
    assert_eq!(done["progress_percent"], 100.0);

    let csv = c.get(&format!("/api/v1/jobs/{job}/results")).await?.text;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "row,reference,probability,risk_level,zone,error");
    assert_eq!(lines.len(), 251, "a line per row");
    assert!(lines[1].starts_with("1,R0,0.0"), "{}", lines[1]);
    assert_eq!(lines[18], "18,R17,,,,total_assets must be greater than zero");
    assert!(c.get("/api/v1/jobs").await?.body.as_array().is_some_and(Vec::is_empty));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_job_loses_no_row_and_duplicates_none() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("crash")?));
    let rows = 30_000;
    let accepted = c.upload(bulk_csv(rows, None), "").await?;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    let job = accepted.body["id"].as_str().expect("id").to_owned();
    let mut redis = stack.redis_client().await?;
    let fast_reaping = [("RISK_WORKER_DEAD_AFTER_SECONDS", "3")];

    // Kill a worker while it holds a chunk it has not acknowledged (retry if it acked in the
    // instant between our look and the kill).
    let mut in_hand = 0;
    for attempt in 0..5 {
        let name = format!("doomed-{attempt}");
        let mut doomed = stack.worker(&name, &fast_reaping)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held: i64 = redis.llen(format!("rp:processing:{name}")).await?;
            if held > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "worker {name} never took a chunk");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        doomed.kill()?;
        in_hand = redis.llen(format!("rp:processing:{name}")).await?;
        if in_hand > 0 {
            break;
        }
    }
    assert!(in_hand > 0, "a worker died holding a chunk");
    let mid = c.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_ne!(mid.body["status"], "completed", "the kill happened mid-job: {}", mid.text);

    let _survivor = stack.worker("survivor", &fast_reaping)?;
    let done = c.wait_finished(&job, Duration::from_secs(120)).await?;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["processed_rows"].as_i64(), Some(rows as i64));
    assert_eq!(done["chunks_done"].as_i64(), Some(300));

    let pool = stack.sql().await?;
    let (count, distinct, min, max): (i64, i64, i32, i32) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT row_no), min(row_no), max(row_no) FROM bulk_job_results WHERE job_id = $1::uuid",
    )
    .bind(&job)
    .fetch_one(&pool)
    .await?;
    assert_eq!((count, distinct, min, max), (rows as i64, rows as i64, 0, rows as i32 - 1));
    let csv = c.get(&format!("/api/v1/jobs/{job}/results")).await?.text;
    assert_eq!(csv.lines().count(), rows + 1);
    let dead: i64 = redis.llen("rp:dead").await?;
    assert_eq!(dead, 0, "nothing dead-lettered");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_out_of_retries_is_reported_as_failed_rows_and_dead_lettered() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("poison")?));
    let accepted = c.upload(bulk_csv(3, None), "?priority=low").await?;
    let job = accepted.body["id"].as_str().expect("id").to_owned();

    // The chunk's message comes back as if it had failed after every retry.
    let mut redis = stack.redis_client().await?;
    let raw: String = redis.rpop("rp:queue:3", None).await?;
    let mut message: Value = serde_json::from_str(&raw)?;
    message["attempt"] = 4.into();
    let _: () = redis.lpush("rp:queue:3", message.to_string()).await?;

    let _worker = stack.worker("w", &[])?;
    let done = c.wait_finished(&job, Duration::from_secs(60)).await?;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!((done["failed_rows"].as_i64(), done["chunks_dead"].as_i64()), (Some(3), Some(1)));
    assert!(done["error"].as_str().is_some_and(|e| e.contains("chunk 0 failed after its retries")), "{done}");
    let csv = c.get(&format!("/api/v1/jobs/{job}/results")).await?.text;
    assert_eq!(csv.lines().nth(1), Some("1,R0,,,,not processed: failed 4 times"));
    let dead: Vec<String> = redis.lrange("rp:dead", 0, -1).await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains(&job));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_stopped_with_sigterm_finishes_its_chunks_and_leaves_nothing_in_hand() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("drain")?));
    let rows = 30_000;
    let accepted = c.upload(bulk_csv(rows, None), "").await?;
    let job = accepted.body["id"].as_str().expect("id").to_owned();
    let mut redis = stack.redis_client().await?;
    let mut leaving = stack.worker("leaving", &[])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held: i64 = redis.llen("rp:processing:leaving").await?;
        if held > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never took a chunk");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(leaving.terminate(Duration::from_secs(10))?, "the worker exited cleanly on SIGTERM");
    let held: i64 = redis.llen("rp:processing:leaving").await?;
    assert_eq!(held, 0, "nothing left in hand");
    let workers: Vec<String> = redis.zrange("rp:workers", 0, -1).await?;
    assert!(!workers.contains(&"leaving".to_owned()), "it signed off: {workers:?}");
    let mid = c.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_ne!(mid.body["status"], "completed", "stopped mid-job: {}", mid.text);

    // No heartbeat timeout needed: another worker picks up the rest at once.
    let _next = stack.worker("next", &[])?;
    let done = c.wait_finished(&job, Duration::from_secs(60)).await?;
    assert_eq!((done["status"].as_str(), done["processed_rows"].as_i64()), (Some("completed"), Some(rows as i64)));
    Ok(())
}
