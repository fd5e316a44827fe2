//! Cross-pod cache invalidation with real components: two API servers (two pods: each its own L1
//! caches, Redis connections and invalidation subscriber) share one PostgreSQL, PgBouncer and
//! Redis. A change through one pod is served by the other within a second, a deactivated
//! company's cached predictions are served by neither, and a pod whose subscription broke drops
//! its whole L1 when it resubscribes.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use reqwest::StatusCode;
use riskplatform_tests::api::{ApiStack, Server};
use riskplatform_tests::http::{metric, metrics, statement, ApiClient};
use serde_json::json;

/// How long another pod may take to serve a change (the bound).
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

async fn value(server: &Server, series: &str) -> Result<f64> {
    Ok(metric(&metrics(&server.url).await?, series).unwrap_or(0.0))
}

async fn clears(server: &Server) -> Result<f64> {
    value(server, "riskplatform_cache_l1_clears_total{reason=\"subscribed\"}").await
}

async fn company_l1_hits(server: &Server) -> Result<f64> {
    value(server, "riskplatform_cache_hits_total{cache=\"company\",layer=\"l1\"}").await
}

/// Waits until `server`'s invalidation subscription is up and has cleared L1 `times` times in
/// all: a pod is not told of changes before that.
async fn wait_subscribed(server: &Server, times: f64, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let text = metrics(&server.url).await?;
        let up = metric(&text, "riskplatform_cache_invalidation_subscribed") == Some(1.0);
        if up && metric(&text, "riskplatform_cache_l1_clears_total{reason=\"subscribed\"}") == Some(times) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} not subscribed ({times} clears) within {within:?}:\n{text}", server.url);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two pods of one platform and an admin key of a tenant.
async fn two_pods(stack: &ApiStack) -> Result<(Server, Server, String)> {
    let (a, b) = (stack.serve(&[]).await?, stack.serve(&[]).await?);
    for pod in [&a, &b] {
        wait_subscribed(pod, 1.0, Duration::from_secs(10)).await?;
    }
    Ok((a, b, stack.create_tenant("acme-bank")?))
}

async fn create_company(client: &ApiClient, symbol: &str) -> Result<String> {
    let r = client.post("/api/v1/companies", json!({"symbol": symbol, "name": "Old Name"})).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    Ok(r.body["id"].as_str().expect("id").to_owned())
}

/// Reads the company through `client` twice, so that the second answer comes from the pod's L1.
async fn read_into_l1(client: &ApiClient, server: &Server, path: &str) -> Result<()> {
    let before = company_l1_hits(server).await?;
    for _ in 0..2 {
        let r = client.get(path).await?;
        assert_eq!((r.status, r.body["name"].as_str()), (StatusCode::OK, Some("Old Name")), "{}", r.text);
    }
    assert_eq!(company_l1_hits(server).await?, before + 1.0, "the second read is an L1 hit");
    Ok(())
}

/// Polls `path` on `client` until its name is `want`; returns how long that took.
async fn wait_for_name(client: &ApiClient, path: &str, want: &str, within: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let r = client.get(path).await?;
        if r.body["name"].as_str() == Some(want) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!("{path} still answers {} after {within:?}", r.text);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_company_changed_through_one_pod_is_served_new_by_the_other_within_a_second() -> Result<()> {
    let stack = ApiStack::start()?;
    let (a, b, key) = two_pods(&stack).await?;
    let (via_a, via_b) = (ApiClient::new(&a.url, Some(&key)), ApiClient::new(&b.url, Some(&key)));
    let path = format!("/api/v1/companies/{}", create_company(&via_a, "ACME").await?);
    read_into_l1(&via_a, &a, &path).await?;
    read_into_l1(&via_b, &b, &path).await?;

    let renamed = via_a.patch(&path, json!({"name": "New Name"})).await?;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    let took = wait_for_name(&via_b, &path, "New Name", PROPAGATION_BOUND).await?;
    eprintln!("pod B served the change {} µs after pod A answered the update", took.as_micros());
    // The writing pod serves its own change at once.
    assert_eq!(via_a.get(&path).await?.body["name"], "New Name");

    let published = "riskplatform_cache_invalidations_published_total{cache=\"company\",outcome=\"ok\"}";
    assert_eq!(value(&a, published).await?, 1.0);
    let received = "riskplatform_cache_invalidations_received_total{cache=\"company\"}";
    assert_eq!(value(&b, received).await?, 1.0);
    assert_eq!(value(&a, received).await?, 0.0, "a pod ignores its own announcement");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_company_deactivated_through_one_pod_has_its_cached_predictions_served_by_neither() -> Result<()> {
    let stack = ApiStack::start()?;
    let (a, b, key) = two_pods(&stack).await?;
    let (via_a, via_b) = (ApiClient::new(&a.url, Some(&key)), ApiClient::new(&b.url, Some(&key)));
    let id = create_company(&via_a, "ACME").await?;
    let predictions = format!("/api/v1/companies/{id}/predictions");
    let mut stored = statement(7.0);
    stored["period"] = json!("2024");
    let added = via_a.post(&format!("/api/v1/companies/{id}/statements"), stored).await?;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let inputs = [json!({"statement": statement(42.0)}), json!({"statement_id": added.body["id"]})];
    for input in &inputs {
        let scored = via_a.post(&predictions, input.clone()).await?;
        assert_eq!(scored.status, StatusCode::CREATED, "{}", scored.text);
        // Both pods now answer from their caches: A from L1, B from L2 and then from its L1.
        for client in [&via_a, &via_b, &via_b] {
            let cached = client.post(&predictions, input.clone()).await?;
            assert_eq!((cached.status, &cached.body["id"]), (StatusCode::OK, &scored.body["id"]), "{}", cached.text);
        }
    }
    let l1_hits = "riskplatform_cache_hits_total{cache=\"prediction\",layer=\"l1\"}";
    assert_eq!(value(&b, l1_hits).await?, 2.0, "pod B holds both predictions in L1");

    let gone = via_a.delete(&format!("/api/v1/companies/{id}")).await?;
    assert_eq!((gone.status, &gone.body["active"]), (StatusCode::OK, &json!(false)), "{}", gone.text);
    let refused = via_a.post(&predictions, inputs[0].clone()).await?;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "the deactivating pod: {}", refused.text);
    assert!(refused.text.contains("active company"), "{}", refused.text);

    let started = Instant::now();
    loop {
        let r = via_b.post(&predictions, inputs[0].clone()).await?;
        if r.status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if started.elapsed() > PROPAGATION_BOUND {
            bail!("pod B still serves the cached prediction {PROPAGATION_BOUND:?} after the deactivation");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("pod B stopped serving the cached prediction after {} µs", started.elapsed().as_micros());
    // And it stays that way on both pods, from a stored statement as from the inline one.
    for (client, input) in [&via_a, &via_b].into_iter().flat_map(|c| inputs.iter().map(move |i| (c, i))) {
        let r = client.post(&predictions, input.clone()).await?;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_whose_subscription_broke_drops_its_whole_l1_when_it_resubscribes() -> Result<()> {
    let mut stack = ApiStack::start()?;
    let (a, b, key) = two_pods(&stack).await?;
    let (via_a, via_b) = (ApiClient::new(&a.url, Some(&key)), ApiClient::new(&b.url, Some(&key)));
    let path = format!("/api/v1/companies/{}", create_company(&via_a, "ACME").await?);
    read_into_l1(&via_b, &b, &path).await?;

    // The connection is killed from Redis's side (as a failover or a proxy does): every
    // subscriber reconnects, resubscribes and starts from an empty L1.
    let mut redis = stack.redis_client().await?;
    let killed: u64 = redis::cmd("CLIENT").arg(&["KILL", "TYPE", "pubsub"]).query_async(&mut redis).await?;
    assert_eq!(killed, 2, "one subscription per pod");
    for pod in [&a, &b] {
        wait_subscribed(pod, 2.0, Duration::from_secs(10)).await?;
    }
    let before = company_l1_hits(&b).await?;
    assert_eq!(via_b.get(&path).await?.body["name"], "Old Name");
    assert_eq!(company_l1_hits(&b).await?, before, "the read after resubscribing missed L1");

    // Redis goes away: the change made meanwhile is neither written to L2 nor announced, and pod
    // B's L1 still holds the old name (it would for 30 s).
    stack.redis.service.kill()?;
    let renamed = via_a.patch(&path, json!({"name": "New Name"})).await?;
    assert_eq!(renamed.status, StatusCode::OK, "the database took the change: {}", renamed.text);
    let failed = "riskplatform_cache_invalidations_published_total{cache=\"company\",outcome=\"failed\"}";
    assert_eq!(value(&a, failed).await?, 1.0);
    assert_eq!(via_b.get(&path).await?.body["name"], "Old Name", "pod B's L1 copy, not yet dropped");

    // Back (empty, without persistence): pod B resubscribes and drops everything it held.
    stack.redis.service.resume()?;
    wait_subscribed(&b, 3.0, Duration::from_secs(15)).await?;
    assert_eq!(via_b.get(&path).await?.body["name"], "New Name");
    assert_eq!(clears(&b).await?, 3.0);
    Ok(())
}
