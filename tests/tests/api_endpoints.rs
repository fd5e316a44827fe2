//! The prediction API through its real router, over real PostgreSQL (through PgBouncer in
//! transaction mode) and Redis: every endpoint, tenant isolation, roles, bad input, the cache.

use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::StatusCode;
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::{bulk_csv, statement, ApiClient};
use serde_json::json;

async fn company(client: &ApiClient, symbol: &str) -> Result<String> {
    let r = client.post("/api/v1/companies", json!({"symbol": symbol, "name": format!("{symbol} Inc.")})).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    Ok(r.body["id"].as_str().expect("id").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn companies_statements_and_predictions_work_end_to_end() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let admin = ApiClient::new(&server.url, Some(&stack.create_tenant("acme-bank")?));

    // Companies: create, conflict, search, get, update, deactivate.
    let id = company(&admin, "acme").await?;
    company(&admin, "acmx").await?;
    company(&admin, "zeta").await?;
    let dup = admin.post("/api/v1/companies", json!({"symbol": "ACME", "name": "again"})).await?;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text);
    let found = admin.get("/api/v1/companies?symbol=ac").await?;
    let symbols: Vec<&str> =
        found.body.as_array().expect("list").iter().map(|c| c["symbol"].as_str().expect("s")).collect();
    assert_eq!(symbols, ["ACME", "ACMX"]);
    let one = admin.get(&format!("/api/v1/companies/{id}")).await?;
    assert_eq!((one.status, one.body["symbol"].as_str()), (StatusCode::OK, Some("ACME")));
    let renamed =
        admin.patch(&format!("/api/v1/companies/{id}"), json!({"name": "Acme Corp", "sector": "retail"})).await?;
    assert_eq!((renamed.body["name"].as_str(), renamed.body["sector"].as_str()), (Some("Acme Corp"), Some("retail")));
    let clash = admin.patch(&format!("/api/v1/companies/{id}"), json!({"symbol": "ZETA"})).await?;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.text);

    // Statements: create, duplicate period, list, get.
    let mut body = statement(150.0);
    body["period"] = json!("2024-q4");
    let st = admin.post(&format!("/api/v1/companies/{id}/statements"), body.clone()).await?;
    assert_eq!(st.status, StatusCode::CREATED, "{}", st.text);
    assert_eq!(st.body["period"], "2024-Q4");
    let statement_id = st.body["id"].as_str().expect("id").to_owned();
    let again = admin.post(&format!("/api/v1/companies/{id}/statements"), body).await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let listed = admin.get(&format!("/api/v1/companies/{id}/statements")).await?;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    let got = admin.get(&format!("/api/v1/companies/{id}/statements/{statement_id}")).await?;
    assert_eq!(got.body["total_assets"], 1000.0);

    // Predictions: stored statement, inline, the same inline again from the cache.
    let path = format!("/api/v1/companies/{id}/predictions");
    let stored = admin.post(&path, json!({"statement_id": statement_id})).await?;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.text);
    assert_eq!(stored.body["statement_id"].as_str(), Some(statement_id.as_str()));
    assert_eq!(stored.body["risk_level"], "low");
    let first = admin.post(&path, json!({"statement": statement(10.0)})).await?;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let cached = admin.post(&path, json!({"statement": statement(10.0)})).await?;
    assert_eq!(cached.status, StatusCode::OK, "served from the cache: {}", cached.text);
    assert_eq!(cached.body["id"], first.body["id"]);
    assert!(cached.body["ratios"]["ebit_to_assets"].as_f64().is_some());

    // History: pages of 2 with a cursor, newest first, and a date range.
    for ebit in [20.0, 30.0, 40.0] {
        admin.post(&path, json!({"statement": statement(ebit)})).await?;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let page = admin.get(&format!("{path}?limit=2{q}")).await?;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for item in page.body["items"].as_array().expect("items") {
            seen.push(item["created_at"].as_str().expect("time").to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "every prediction once: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first: {seen:?}");
    let future = admin.get(&format!("{path}?from=2999-01-01T00:00:00Z")).await?;
    assert_eq!(future.body["items"].as_array().map(Vec::len), Some(0));
    let latest = admin.get(&format!("{path}/latest")).await?;
    assert_eq!(latest.body["created_at"].as_str(), seen.first().map(String::as_str));

    // Batch: per-item errors name the field; over the limit is refused.
    let mut bad = statement(1.0);
    bad["total_assets"] = json!(-1.0);
    let batch =
        admin.post("/api/v1/predictions/batch", json!({"statements": [statement(1.0), bad, statement(2.0)]})).await?;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.text);
    let results = batch.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert!(results[0]["prediction"]["probability"].is_number());
    assert_eq!(results[1]["error"]["field"], "statements[1].total_assets");
    let too_many = admin.post("/api/v1/predictions/batch", json!({"statements": vec![statement(1.0); 1001]})).await?;
    assert_eq!(
        (too_many.status, too_many.body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("statements"))
    );

    // Deactivation keeps the history but hides the company from new work.
    let gone = admin.delete(&format!("/api/v1/companies/{id}")).await?;
    assert_eq!((gone.status, gone.body["active"].as_bool()), (StatusCode::OK, Some(false)));
    let listed = admin.get("/api/v1/companies?symbol=ACME").await?;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(0));
    let after = admin.post(&path, json!({"statement": statement(99.0)})).await?;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "{}", after.text);
    let history = admin.get(&path).await?;
    assert_eq!(history.body["items"].as_array().map(Vec::len), Some(5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_never_see_each_others_data_and_roles_are_enforced() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let a = ApiClient::new(&server.url, Some(&stack.create_tenant("bank-a")?));
    let b = ApiClient::new(&server.url, Some(&stack.create_tenant("bank-b")?));
    let id = company(&a, "SHARED").await?;
    // The same symbol is free in another tenant.
    let b_id = company(&b, "SHARED").await?;
    assert_ne!(id, b_id);
    a.post(&format!("/api/v1/companies/{id}/predictions"), json!({"statement": statement(5.0)})).await?;
    let job = a.upload(bulk_csv(3, None), "").await?;
    let job_id = job.body["id"].as_str().expect("job id").to_owned();

    for path in [
        format!("/api/v1/companies/{id}"),
        format!("/api/v1/companies/{id}/statements"),
        format!("/api/v1/companies/{id}/predictions"),
        format!("/api/v1/companies/{id}/predictions/latest"),
        format!("/api/v1/jobs/{job_id}"),
        format!("/api/v1/jobs/{job_id}/results"),
    ] {
        let r = b.get(&path).await?;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
    }
    let r = b.post(&format!("/api/v1/companies/{id}/predictions"), json!({"statement": statement(5.0)})).await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another tenant's cached prediction is not served: {}", r.text);
    let r = b.patch(&format!("/api/v1/companies/{id}"), json!({"name": "mine"})).await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let listed = b.get("/api/v1/companies").await?;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));

    // Keys: an admin makes a viewer and an analyst key; each role gets what it may do.
    let viewer = a.post("/api/v1/keys", json!({"role": "viewer"})).await?;
    assert_eq!(viewer.status, StatusCode::CREATED, "{}", viewer.text);
    let viewer = a.with_key(viewer.body["key"].as_str().expect("key"));
    let analyst = a.post("/api/v1/keys", json!({"role": "analyst"})).await?;
    let analyst = a.with_key(analyst.body["key"].as_str().expect("key"));
    assert_eq!(viewer.get(&format!("/api/v1/companies/{id}")).await?.status, StatusCode::OK);
    let denied = viewer.post("/api/v1/companies", json!({"symbol": "NEW", "name": "n"})).await?;
    assert_eq!((denied.status, denied.body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    assert_eq!(
        analyst.post("/api/v1/companies", json!({"symbol": "NEW", "name": "n"})).await?.status,
        StatusCode::CREATED
    );
    assert_eq!(analyst.delete(&format!("/api/v1/companies/{id}")).await?.status, StatusCode::FORBIDDEN);
    assert_eq!(analyst.post("/api/v1/keys", json!({"role": "admin"})).await?.status, StatusCode::FORBIDDEN);

    // No key, a wrong key, a malformed header.
    let anonymous = ApiClient::new(&server.url, None);
    for client in [anonymous.clone(), anonymous.with_key("rpk_not-a-key")] {
        let r = client.get("/api/v1/companies").await?;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_naming_what_is_wrong() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("t")?));
    let id = company(&c, "BAD").await?;
    let path = format!("/api/v1/companies/{id}/predictions");
    let mut negative = statement(1.0);
    negative["total_assets"] = json!(-10.0);
    let mut missing = statement(1.0);
    missing.as_object_mut().expect("object").remove("ebit");
    let mut zero_liabilities = statement(1.0);
    zero_liabilities["total_liabilities"] = json!(0.0);
    let cases = [
        (json!({"statement": negative}), "total_assets", "total_assets must be greater than zero"),
        (json!({"statement": zero_liabilities}), "total_liabilities", "total_liabilities must be greater than zero"),
        (json!({"statement": missing}), "body", "missing field `ebit`"),
        (json!({}), "statement", "exactly one of statement_id and statement"),
        (json!({"statement": statement(1.0), "typo": 1}), "body", "unknown field `typo`"),
    ];
    for (body, field, message) in cases {
        let r = c.post(&path, body).await?;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["error"]["field"].as_str(), Some(field), "{}", r.text);
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains(message)), "{}", r.text);
    }
    let r = c.post("/api/v1/companies", json!({"symbol": "a b", "name": "x"})).await?;
    assert_eq!((r.status, r.body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("symbol")));
    let r = c.get("/api/v1/companies/not-a-uuid").await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = c.get(&format!("{path}?limit=0")).await?;
    assert_eq!(r.body["error"]["field"], "limit");
    let r = c.get(&format!("{path}?cursor=garbage")).await?;
    assert_eq!(r.body["error"]["field"], "cursor");
    let r = c.get("/api/v1/nothing-here").await?;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let mut bad_period = statement(1.0);
    bad_period["period"] = json!("last year");
    let r = c.post(&format!("/api/v1/companies/{id}/statements"), bad_period).await?;
    assert_eq!(r.body["error"]["field"], "period");

    // Malformed JSON is a 400 with the shape, never a 500.
    let raw = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .bearer_auth(c.key.as_deref().expect("key"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    let r = ApiClient::reply(raw).await?;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));

    // Bulk uploads: line and column named, too many rows refused.
    let r = c.upload(bulk_csv(3, None).replacen("R1,1001", "R1,lots", 1), "").await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["error"]["message"], "line 3, column total_assets: `lots` is not a number");
    let r = c.upload(bulk_csv(3, None).replace(",ebit", ",ebitda"), "").await?;
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("unknown column `ebitda`")), "{}", r.text);
    let r = c.upload(String::new(), "").await?;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = c.upload(bulk_csv(2, None), "?priority=urgent").await?;
    assert_eq!(r.body["error"]["field"], "priority");
    let small = stack.serve(&["--bulk-max-rows=10"]).await?;
    let r = ApiClient::new(&small.url, c.key.as_deref()).upload(bulk_csv(11, None), "").await?;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_model_version_never_serves_a_cached_prediction() -> Result<()> {
    let stack = ApiStack::start()?;
    let key = stack.create_tenant("t")?;
    let old = stack.serve(&[]).await?;
    let c = ApiClient::new(&old.url, Some(&key));
    let id = company(&c, "VER").await?;
    let path = format!("/api/v1/companies/{id}/predictions");
    let first = c.post(&path, json!({"statement": statement(7.0)})).await?;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(c.post(&path, json!({"statement": statement(7.0)})).await?.status, StatusCode::OK);

    // The same code deployed as a new model version, sharing Redis (the L2 cache).
    let state = riskplatform_api::server::state(&stack.serve_args(&[]))?;
    let mut settings = (*state.settings).clone();
    settings.model_version = "next-model-v2".to_owned();
    let state = state.with_settings(settings);
    let new = ApiStack::serve_state(state).await?;
    let c2 = ApiClient::new(&new.url, Some(&key));
    let fresh = c2.post(&path, json!({"statement": statement(7.0)})).await?;
    assert_eq!(fresh.status, StatusCode::CREATED, "computed again, not served from the cache: {}", fresh.text);
    assert_eq!(fresh.body["model_version"], "next-model-v2");
    assert_ne!(fresh.body["id"], first.body["id"]);
    // The old version's entry is still its own.
    let again = c.post(&path, json!({"statement": statement(7.0)})).await?;
    assert_eq!((again.status, again.body["id"].clone()), (StatusCode::OK, first.body["id"].clone()));

    let metrics = reqwest::get(format!("{}/metrics", old.url)).await?.text().await?;
    assert!(metrics.contains("riskplatform_cache_hits_total{cache=\"prediction\",layer=\"l1\"} 2"), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_over_its_rate_gets_429_with_retry_after() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&["--rate-limit-per-second=1", "--rate-limit-burst=3"]).await?;
    let a = ApiClient::new(&server.url, Some(&stack.create_tenant("a")?));
    let b = ApiClient::new(&server.url, Some(&stack.create_tenant("b")?));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(a.get("/api/v1/companies").await?.status);
    }
    assert_eq!(&statuses[..3], [StatusCode::OK; 3]);
    let limited = a.get("/api/v1/companies").await?;
    assert_eq!(
        (limited.status, limited.body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert_eq!(limited.retry_after.as_deref(), Some("1"));
    assert_eq!(b.get("/api/v1/companies").await?.status, StatusCode::OK, "another tenant is not limited");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_the_openapi_document_answer() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let open = ApiClient::new(&server.url, None);
    assert_eq!(open.get("/health/live").await?.status, StatusCode::OK);
    let ready = open.get("/health/ready").await?;
    assert_eq!((ready.status, ready.body["status"].as_str()), (StatusCode::OK, Some("ok")), "{}", ready.text);
    let doc = open.get("/api/v1/openapi.json").await?;
    assert_eq!(doc.status, StatusCode::OK);
    for path in ["/api/v1/companies", "/api/v1/jobs/{job_id}/results", "/api/v1/predictions/batch"] {
        assert!(doc.body["paths"][path].is_object(), "{path} documented");
    }
    let metrics = reqwest::get(format!("{}/metrics", server.url)).await?.text().await?;
    for name in [
        "http_requests_total{method=\"GET\",route=\"/health/ready\",status=\"200\"}",
        "http_request_duration_seconds_bucket",
        "riskplatform_dependency_calls_total{dependency=\"database\"}",
        "riskplatform_circuit_breaker_state{dependency=\"redis\"} 0",
    ] {
        assert!(metrics.contains(name), "{name} in\n{metrics}");
    }
    // Queue lengths are refreshed every 2 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reqwest::get(format!("{}/metrics", server.url))
        .await?
        .text()
        .await?
        .contains("riskplatform_queue_length{queue=\"batch\"} 0")
    {
        assert!(Instant::now() < deadline, "queue length exported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Redis stopped: not ready, and the body says which dependency.
    drop(stack.redis);
    let r = open.get("/health/ready").await?;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.body["checks"][1]["dependency"], "redis");
    assert_eq!(r.body["checks"][1]["ok"], false);
    assert_eq!(r.body["checks"][0]["ok"], true);
    Ok(())
}
