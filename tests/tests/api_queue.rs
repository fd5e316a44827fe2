//! The job queue's scripts on a real Redis: a chunk in the hands of a worker that died is always
//! returned, however early it died and whatever Redis lost of its heartbeat.

use anyhow::{Context, Result};
use redis::AsyncCommands;
use riskplatform_api::queue::{Message, Queue};
use riskplatform_tests::redis::Redis;
use uuid::Uuid;

const DEAD_AFTER_MS: i64 = 3_000;

async fn queue_with_one_chunk(redis: &Redis) -> Result<(Queue, redis::aio::ConnectionManager, Message)> {
    let conn = redis::Client::open(redis.url())?.get_connection_manager().await?;
    let queue = Queue::new(conn.clone());
    let message = Message { job: Uuid::new_v4(), chunk: 4, priority: 7, attempt: 0 };
    queue.push(std::slice::from_ref(&message)).await?;
    Ok((queue, conn, message))
}

#[tokio::test]
async fn a_worker_killed_right_after_its_first_take_is_reaped_without_ever_having_sent_a_heartbeat() -> Result<()> {
    let redis = Redis::start()?;
    let (queue, _conn, message) = queue_with_one_chunk(&redis).await?;
    let taken_at = 1_000_000;
    let delivery = queue.take("ghost", taken_at).await?.context("the chunk is there to take")?;
    assert_eq!(delivery.message, message);

    assert_eq!(queue.reap(taken_at - DEAD_AFTER_MS).await?, 0, "not dead yet: taking a chunk is a sign of life");
    assert_eq!(queue.reap(taken_at + 1).await?, 1, "silent since the take: reaped");
    let again = queue.take("survivor", taken_at + 2).await?.context("the chunk is back in its queue")?;
    assert_eq!(again.message, Message { attempt: 1, ..message }, "the crash counts as an attempt");
    Ok(())
}

#[tokio::test]
async fn a_processing_list_whose_heartbeat_redis_lost_is_reaped() -> Result<()> {
    let redis = Redis::start()?;
    let (queue, mut conn, message) = queue_with_one_chunk(&redis).await?;
    let now = 1_000_000;
    queue.take("forgotten", now).await?.context("the chunk is there to take")?;
    queue.heartbeat("alive", now).await?;
    let _: () = conn.zrem("rp:workers", "forgotten").await?;

    assert_eq!(queue.reap(now - DEAD_AFTER_MS).await?, 1, "a list with no heartbeat belongs to no live worker");
    let again = queue.take("alive", now).await?.context("the chunk is back in its queue")?;
    assert_eq!(again.message.chunk, message.chunk);
    assert_eq!(queue.reap(now - DEAD_AFTER_MS).await?, 0, "a live worker's list is left alone");
    let held: i64 = conn.llen("rp:processing:alive").await?;
    assert_eq!(held, 1);
    Ok(())
}
