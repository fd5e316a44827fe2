//! The managed Redis's persistence as the operator configures it, run by a real `redis-server`
//! from the redis.conf the operator builds: the seeds' snapshot points, with and without the
//! append-only file, and nothing on disk when persistence is off.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::AsyncCommands;
use riskplatform_crd::{RedisSnapshot, RiskPlatform};
use riskplatform_operator::controller::build::{build, config_hash_of};
use riskplatform_operator::controller::validate::{Credentials, Validated};
use riskplatform_tests::cluster::test_platform;
use riskplatform_tests::redis::Redis;

fn platform(persistence: serde_json::Value) -> Result<RiskPlatform> {
    let mut rp = test_platform("durable", "db", serde_json::json!({ "redis": { "persistence": persistence } }))?;
    rp.metadata.namespace = Some("prod".to_owned());
    rp.metadata.uid = Some("6f1c2d3e-0000-4000-8000-000000000009".to_owned());
    Ok(rp)
}

/// The redis.conf the operator writes for `rp`.
fn conf(rp: &RiskPlatform) -> Result<String> {
    let validated = Validated {
        credentials: Credentials {
            username: "risk".into(),
            password: "pw".into(),
            client_password: "c".repeat(64),
            stats_password: "s".repeat(64),
        },
        credentials_hash: config_hash_of(&[b"pw"]),
    };
    let children = build(rp, &validated)?;
    let config = children.redis.context("a managed Redis")?.config;
    Ok(config.data.context("data")?.get("redis.conf").context("redis.conf")?.clone())
}

async fn connect(redis: &Redis) -> Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(redis.url())?.get_multiplexed_async_connection().await?)
}

async fn config_get(conn: &mut redis::aio::MultiplexedConnection, name: &str) -> Result<String> {
    let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(conn).await?;
    pair.get(1).cloned().with_context(|| format!("CONFIG GET {name}: {pair:?}"))
}

async fn keys_present(redis: &Redis, keys: &[&str]) -> Result<Vec<bool>> {
    let mut conn = connect(redis).await?;
    let mut present = Vec::new();
    for k in keys {
        present.push(conn.exists(*k).await?);
    }
    Ok(present)
}

#[tokio::test]
async fn enabled_persistence_runs_the_seeds_snapshot_points_and_the_append_only_file() -> Result<()> {
    let redis = Redis::start_with_conf(&conf(&platform(serde_json::json!({ "enabled": true }))?)?)?;
    let mut conn = connect(&redis).await?;
    assert_eq!(config_get(&mut conn, "save").await?, "900 1 300 10 60 10000");
    assert_eq!(config_get(&mut conn, "appendonly").await?, "yes");
    assert_eq!(config_get(&mut conn, "appendfsync").await?, "everysec");
    // Other pods are not loopback: protected mode would refuse them all.
    assert_eq!(config_get(&mut conn, "protected-mode").await?, "no");
    Ok(())
}

#[tokio::test]
async fn with_the_append_only_file_a_crash_keeps_what_was_written_a_second_before() -> Result<()> {
    let rp = platform(serde_json::json!({ "enabled": true }))?;
    let mut redis = Redis::start_with_conf(&conf(&rp)?)?;
    let mut conn = connect(&redis).await?;
    let _: () = conn.set("prediction:1", "0.12").await?;
    // everysec: the write is on disk within a second, so a crash after that loses nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    redis.service.kill()?;
    redis.service.resume()?;
    assert_eq!(keys_present(&redis, &["prediction:1"]).await?, [true], "the append-only file replayed");
    Ok(())
}

#[tokio::test]
async fn with_snapshots_alone_a_clean_stop_keeps_everything_and_a_crash_loses_what_followed_the_last_snapshot(
) -> Result<()> {
    let rp = platform(serde_json::json!({ "enabled": true, "appendOnly": false }))?;
    let mut redis = Redis::start_with_conf(&conf(&rp)?)?;
    let mut conn = connect(&redis).await?;
    assert_eq!(config_get(&mut conn, "appendonly").await?, "no");
    let _: () = conn.set("before-stop", "1").await?;
    redis.service.stop()?;
    redis.service.resume()?;
    let mut conn = connect(&redis).await?;
    let _: () = conn.set("before-crash", "1").await?;
    redis.service.kill()?;
    redis.service.resume()?;
    assert_eq!(
        keys_present(&redis, &["before-stop", "before-crash"]).await?,
        [true, false],
        "a shutdown writes a snapshot; a crash before the next snapshot point loses the writes since"
    );
    Ok(())
}

#[tokio::test]
async fn a_snapshot_point_of_the_spec_writes_a_snapshot_when_it_is_reached() -> Result<()> {
    let mut rp = platform(serde_json::json!({ "enabled": true, "appendOnly": false }))?;
    rp.spec.redis.persistence.snapshots = vec![RedisSnapshot { after_seconds: 1, changes: 2 }];
    let redis = Redis::start_with_conf(&conf(&rp)?)?;
    let mut conn = connect(&redis).await?;
    assert_eq!(config_get(&mut conn, "save").await?, "1 2");
    let first: i64 = redis::cmd("LASTSAVE").query_async(&mut conn).await?;
    let _: () = conn.set("one", "1").await?;
    // One change is below the point's two: no snapshot however long we wait. Redis's serverCron
    // checks the points every 100 ms and LASTSAVE has one-second resolution, so 2.5 s is enough
    // for one to be written were it due.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let unchanged: i64 = redis::cmd("LASTSAVE").query_async(&mut conn).await?;
    assert_eq!(unchanged, first, "one change does not reach the point");
    let _: () = conn.set("two", "2").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO").arg("persistence").query_async(&mut conn).await?;
        let last: i64 = redis::cmd("LASTSAVE").query_async(&mut conn).await?;
        if last > first && info.lines().any(|l| l.trim() == "rdb_changes_since_last_save:0") {
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot 10 s after the point was reached:\n{info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn without_persistence_nothing_is_written_and_a_restart_comes_back_empty() -> Result<()> {
    let rp = platform(serde_json::json!({ "enabled": false }))?;
    let mut redis = Redis::start_with_conf(&conf(&rp)?)?;
    let mut conn = connect(&redis).await?;
    assert_eq!(config_get(&mut conn, "save").await?, "");
    assert_eq!(config_get(&mut conn, "appendonly").await?, "no");
    let _: () = conn.set("cached", "1").await?;
    redis.service.stop()?;
    redis.service.resume()?;
    assert_eq!(keys_present(&redis, &["cached"]).await?, [false]);
    Ok(())
}
