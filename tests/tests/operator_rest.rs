//! The operator's REST API (the real router) over HTTP against a real Kubernetes API server:
//! authentication, reads, actions written to the RiskPlatform, clear 4xx errors, the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use reqwest::{Method, RequestBuilder};
use riskplatform_crd::{BreakerMode, RiskPlatform};
use riskplatform_operator::admin;
use riskplatform_operator::context::Context;
use riskplatform_operator::metrics::Metrics;
use riskplatform_operator::rest::{self, RestAuth};
use riskplatform_tests::cluster::{eventually, install_crd, namespace, test_platform, TestCluster};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const TOKEN: &str = "test-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    _cluster: TestCluster,
    client: Client,
    ns: String,
    base: String,
    http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Env {
    async fn start(prefix: &str, auth: RestAuth) -> Result<Self> {
        let cluster = TestCluster::start()?;
        let client = cluster.client().await?;
        install_crd(&client).await?;
        let ns = namespace(&client, prefix).await?;
        let (base, server) = serve(client.clone(), auth).await?;
        Ok(Self { _cluster: cluster, client, ns, base, http: reqwest::Client::new(), server })
    }

    /// A request carrying the right token.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.anonymous(method, path).bearer_auth(TOKEN)
    }

    fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    fn platform_path(&self, name: &str) -> String {
        format!("/api/v1/namespaces/{}/platforms/{name}", self.ns)
    }

    fn platforms(&self) -> Api<RiskPlatform> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create_platform(&self, name: &str) -> Result<RiskPlatform> {
        let rp = test_platform(name, "db", json!({}))?;
        Ok(self.platforms().create(&PostParams::default(), &rp).await?)
    }
}

/// Serves the real REST router on a free loopback port.
async fn serve(client: Client, auth: RestAuth) -> Result<(String, JoinHandle<()>)> {
    serve_router(rest::router(client, auth)).await
}

async fn serve_router(router: axum::Router) -> Result<(String, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((base, server))
}

/// Sends a request and returns the status code and the JSON body.
async fn send(request: RequestBuilder) -> Result<(u16, Value)> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).with_context(|| format!("{status} with a body that is not JSON: {text}"))?;
    Ok((status, body))
}

/// The code and message of the one error shape, failing when the body has another shape.
fn error_of(body: &Value) -> Result<(String, String)> {
    let code = body.pointer("/error/code").and_then(Value::as_str).context(format!("no error.code in {body}"))?;
    let message =
        body.pointer("/error/message").and_then(Value::as_str).context(format!("no error.message in {body}"))?;
    Ok((code.to_owned(), message.to_owned()))
}

/// Sends a request expected to fail and returns its error code and message.
async fn expect_error(request: RequestBuilder, status: u16) -> Result<(String, String)> {
    let (got, body) = send(request).await?;
    ensure!(got == status, "want {status}, got {got}: {body}");
    error_of(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_right_token_are_refused_and_the_document_is_public() -> Result<()> {
    let env = Env::start("rest-auth", RestAuth::token(TOKEN)).await?;
    let list = "/api/v1/platforms";

    let response = env.anonymous(Method::GET, list).send().await?;
    ensure!(response.headers().get("www-authenticate").is_some_and(|v| v == "Bearer"), "no WWW-Authenticate");
    let (code, message) = expect_error(env.anonymous(Method::GET, list), 401).await?;
    assert_eq!(code, "unauthorized");
    assert!(message.contains("missing bearer token"), "{message}");

    let wrong = env.anonymous(Method::GET, list).bearer_auth("test-token-0123456788");
    let (_, message) = expect_error(wrong, 401).await?;
    assert_eq!(message, "invalid bearer token");
    let (_, message) = expect_error(env.anonymous(Method::GET, list).bearer_auth(""), 401).await?;
    assert!(message.contains("missing bearer token"), "{message}");

    let (status, body) = send(env.request(Method::GET, list)).await?;
    ensure!(status == 200 && body.is_array(), "{status}: {body}");

    // Merged into the admin router as the operator serves it: health and metrics stay open.
    let ctx = Arc::new(Context::new(env.client.clone(), Arc::new(Metrics::default()), None, None));
    let admin = admin::router(ctx).merge(rest::router(env.client.clone(), RestAuth::token(TOKEN)));
    let (base, server) = serve_router(admin).await?;
    for open in ["/healthz", "/readyz", "/metrics"] {
        let status = env.http.get(format!("{base}{open}")).send().await?.status();
        ensure!(status == 200, "{open} answered {status} without a token");
    }
    let (code, _) = expect_error(env.http.get(format!("{base}{list}")), 401).await?;
    assert_eq!(code, "unauthorized");
    server.abort();

    // Without a configured token nothing under /api is served, whatever the request sends.
    let (base, server) = serve(env.client.clone(), RestAuth::unconfigured()).await?;
    let unconfigured = env.http.get(format!("{base}{list}")).bearer_auth(TOKEN);
    let (_, message) = expect_error(unconfigured, 401).await?;
    assert!(message.contains("token is not configured"), "{message}");
    server.abort();

    let (status, doc) = send(env.anonymous(Method::GET, "/api/v1/openapi.json")).await?;
    ensure!(status == 200, "openapi.json: {status}");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().context("paths")?;
    for (path, method) in [
        ("/api/v1/platforms", "get"),
        ("/api/v1/namespaces/{namespace}/platforms/{name}", "get"),
        ("/api/v1/namespaces/{namespace}/platforms/{name}/decisions", "get"),
        ("/api/v1/namespaces/{namespace}/platforms/{name}/breakers", "get"),
        ("/api/v1/namespaces/{namespace}/platforms/{name}/autoscaling/{component}/pause", "post"),
        ("/api/v1/namespaces/{namespace}/platforms/{name}/autoscaling/{component}/resume", "post"),
        ("/api/v1/namespaces/{namespace}/platforms/{name}/breakers/{dependency}", "put"),
        ("/api/v1/openapi.json", "get"),
    ] {
        ensure!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from the document");
    }
    assert_eq!(doc.pointer("/components/securitySchemes/bearer_token/scheme"), Some(&json!("bearer")));
    assert_eq!(doc["security"], json!([{ "bearer_token": [] }]));
    let error_schema = doc.pointer("/components/schemas/ErrorBody/properties/error").context("ErrorBody schema")?;
    assert!(error_schema.is_object(), "{error_schema}");
    let breaker_modes = doc.pointer("/components/schemas/BreakerModeRequest/properties/mode/enum");
    assert_eq!(breaker_modes, Some(&json!(["Auto", "ForceOpen", "ForceClosed", "Disabled"])));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_show_a_platform_its_status_and_what_others_recorded() -> Result<()> {
    let env = Env::start("rest-read", RestAuth::token(TOKEN)).await?;
    env.create_platform("risk").await?;
    env.create_platform("quiet").await?;

    let decision = json!({
        "at": 1767225600, "action": "scaleUp", "currentReplicas": 2, "readyReplicas": 2, "desiredReplicas": 4,
        "reason": "scale up 2 -> 4: cpu, request rate high",
        "inputs": [{ "signal": "cpu", "value": 85.5, "scaleUpAbove": 70, "scaleDownBelow": 30,
                     "windowSeconds": 300, "state": "high" }]
    });
    let autoscaling = json!({
        "api": { "lastScaleUp": 1767225600, "consecutiveMetricFailures": 0, "lastDecision": decision,
                 "history": [decision] },
        "workers": { "consecutiveMetricFailures": 0, "history": [] }
    });
    let circuit_breakers = json!({
        "database": { "state": "Open", "since": 1767225600, "reason": "5 consecutive failures" },
        "redis": { "state": "Closed", "since": 1767225600, "reason": "no failures observed" }
    });
    let status = json!({ "status": {
        "observedGeneration": 1,
        "conditions": [{ "type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "",
                         "lastTransitionTime": "2026-01-01T00:00:00Z" }],
        "api": { "desiredReplicas": 2, "readyReplicas": 2, "ready": "2/2" },
        "workers": { "desiredReplicas": 3, "readyReplicas": 1, "ready": "1/3" },
        "breakerSummary": "database=Open redis=Closed",
        "autoscaling": autoscaling,
        "circuitBreakers": circuit_breakers,
    }});
    // The status the operator's reconciler, autoscaler and breaker evaluation would write.
    let decisions_path = format!("{}/decisions", env.platform_path("risk"));
    eventually(WAIT, || async {
        env.platforms().patch_status("risk", &PatchParams::default(), &Patch::Merge(&status)).await?;
        let (code, body) = send(env.request(Method::GET, &decisions_path)).await?;
        ensure!(code == 200 && body["autoscaling"] == autoscaling, "{code}: {body}");
        Ok(())
    })
    .await?;

    let (code, list) = send(env.request(Method::GET, "/api/v1/platforms")).await?;
    ensure!(code == 200, "{code}: {list}");
    let mine: Vec<&Value> = list.as_array().context("list")?.iter().filter(|p| p["namespace"] == env.ns).collect();
    let names: Vec<&Value> = mine.iter().map(|p| &p["name"]).collect();
    assert_eq!(names, [&json!("quiet"), &json!("risk")], "sorted by name");
    let risk = mine[1];
    assert_eq!(risk["ready"], "True");
    assert_eq!(risk["api"], "2/2");
    assert_eq!(risk["workers"], "1/3");
    assert_eq!(risk["breakers"], "database=Open redis=Closed");
    assert_eq!(risk["paused"], json!({ "api": false, "workers": false }));
    assert_eq!((&risk["generation"], &risk["observedGeneration"]), (&json!(1), &json!(1)));
    assert_eq!(mine[0]["ready"], "Unknown", "a platform without status is not ready yet");

    let (code, one) = send(env.request(Method::GET, &env.platform_path("risk"))).await?;
    ensure!(code == 200, "{code}: {one}");
    assert_eq!(
        one.pointer("/spec/autoscaling/api"),
        Some(&json!({ "minReplicas": 2, "maxReplicas": 20, "paused": false }))
    );
    assert_eq!(one.pointer("/spec/breakerOverrides"), Some(&json!({ "database": "Auto", "redis": "Auto" })));
    assert_eq!(one.pointer("/status/workers/ready"), Some(&json!("1/3")));
    assert_eq!(one.pointer("/status/circuitBreakers"), Some(&circuit_breakers), "the whole status is served");

    let (code, breakers) = send(env.request(Method::GET, &format!("{}/breakers", env.platform_path("risk")))).await?;
    ensure!(code == 200, "{code}: {breakers}");
    assert_eq!(breakers["circuitBreakers"], circuit_breakers);
    assert_eq!(breakers["overrides"], json!({ "database": "Auto", "redis": "Auto" }));
    assert_eq!(breakers["summary"], "database=Open redis=Closed");

    // Nothing recorded yet is an empty answer, not an error.
    let (code, quiet) = send(env.request(Method::GET, &format!("{}/decisions", env.platform_path("quiet")))).await?;
    ensure!(code == 200 && quiet["autoscaling"].is_null(), "{code}: {quiet}");
    let (code, quiet) = send(env.request(Method::GET, &env.platform_path("quiet"))).await?;
    ensure!(code == 200 && quiet["status"].is_null(), "{code}: {quiet}");

    for path in [env.platform_path("absent"), format!("{}/decisions", env.platform_path("absent"))] {
        let (code, message) = expect_error(env.request(Method::GET, &path), 404).await?;
        assert_eq!(code, "not_found");
        assert_eq!(message, format!("RiskPlatform {}/absent not found", env.ns));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_write_paused_into_the_spec() -> Result<()> {
    let env = Env::start("rest-pause", RestAuth::token(TOKEN)).await?;
    env.create_platform("risk").await?;
    let scaling = format!("{}/autoscaling", env.platform_path("risk"));

    let (code, body) = send(env.request(Method::POST, &format!("{scaling}/api/pause"))).await?;
    ensure!(code == 200, "{code}: {body}");
    assert_eq!((&body["component"], &body["paused"], &body["generation"]), (&json!("api"), &json!(true), &json!(2)));
    let rp = env.platforms().get("risk").await?;
    assert!(rp.spec.autoscaling.api.paused && !rp.spec.autoscaling.workers.paused);
    let managers: Vec<&str> = rp.managed_fields().iter().filter_map(|m| m.manager.as_deref()).collect();
    assert!(managers.contains(&rest::FIELD_MANAGER), "{managers:?}");

    // Pausing twice is the same state, not an error.
    let (code, body) = send(env.request(Method::POST, &format!("{scaling}/api/pause"))).await?;
    ensure!(code == 200 && body["paused"] == true, "{code}: {body}");

    let (code, body) = send(env.request(Method::POST, &format!("{scaling}/workers/pause"))).await?;
    ensure!(code == 200 && body["component"] == "workers" && body["paused"] == true, "{code}: {body}");
    let (_, list) = send(env.request(Method::GET, "/api/v1/platforms")).await?;
    let risk = list.as_array().context("list")?.iter().find(|p| p["namespace"] == env.ns).context("listed")?;
    assert_eq!(risk["paused"], json!({ "api": true, "workers": true }));

    let (code, body) = send(env.request(Method::POST, &format!("{scaling}/api/resume"))).await?;
    ensure!(code == 200 && body["paused"] == false, "{code}: {body}");
    let rp = env.platforms().get("risk").await?;
    assert!(!rp.spec.autoscaling.api.paused && rp.spec.autoscaling.workers.paused);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forcing_a_breaker_writes_the_override_into_the_spec() -> Result<()> {
    let env = Env::start("rest-breaker", RestAuth::token(TOKEN)).await?;
    env.create_platform("risk").await?;
    let breakers = format!("{}/breakers", env.platform_path("risk"));

    let force = env.request(Method::PUT, &format!("{breakers}/database")).json(&json!({ "mode": "ForceOpen" }));
    let (code, body) = send(force).await?;
    ensure!(code == 200, "{code}: {body}");
    assert_eq!(body["overrides"], json!({ "database": "ForceOpen", "redis": "Auto" }));
    let overrides = env.platforms().get("risk").await?.spec.circuit_breaker.overrides;
    assert_eq!((overrides.database, overrides.redis), (BreakerMode::ForceOpen, BreakerMode::Auto));

    let disable = env.request(Method::PUT, &format!("{breakers}/redis")).json(&json!({ "mode": "Disabled" }));
    let (code, body) = send(disable).await?;
    ensure!(code == 200 && body["overrides"]["redis"] == "Disabled", "{code}: {body}");

    let auto = env.request(Method::PUT, &format!("{breakers}/database")).json(&json!({ "mode": "Auto" }));
    let (code, _) = send(auto).await?;
    ensure!(code == 200);
    let overrides = env.platforms().get("risk").await?.spec.circuit_breaker.overrides;
    assert_eq!((overrides.database, overrides.redis), (BreakerMode::Auto, BreakerMode::Disabled));

    let (code, body) = send(env.request(Method::GET, &breakers)).await?;
    ensure!(code == 200 && body["overrides"] == json!({ "database": "Auto", "redis": "Disabled" }), "{code}: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_naming_the_field_and_leave_the_spec_alone() -> Result<()> {
    let env = Env::start("rest-bad", RestAuth::token(TOKEN)).await?;
    let before = env.create_platform("risk").await?;
    let platform = env.platform_path("risk");

    let (code, message) =
        expect_error(env.request(Method::POST, &format!("{platform}/autoscaling/db/pause")), 400).await?;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("bad_request", r#"component must be one of api, workers; got "db""#)
    );

    let put = |dependency: &str| env.request(Method::PUT, &format!("{platform}/breakers/{dependency}"));
    let (_, message) = expect_error(put("kafka").json(&json!({ "mode": "ForceOpen" })), 400).await?;
    assert_eq!(message, r#"dependency must be one of database, redis; got "kafka""#);

    let (_, message) = expect_error(put("database").json(&json!({ "mode": "Open" })), 400).await?;
    assert_eq!(message, r#"mode must be one of Auto, ForceOpen, ForceClosed, Disabled; got "Open""#);

    let (_, message) = expect_error(put("database").body("{mode: ForceOpen"), 400).await?;
    assert!(message.starts_with(r#"the body must be JSON like {"mode": "ForceOpen"}"#), "{message}");
    let (_, message) = expect_error(put("database").json(&json!({ "state": "ForceOpen" })), 400).await?;
    assert!(message.contains("unknown field `state`"), "{message}");
    let (_, message) = expect_error(put("database"), 400).await?;
    assert!(message.starts_with("the body must be JSON"), "{message}");

    let (_, message) = expect_error(env.request(Method::GET, "/api/v1/namespaces/Bad_NS/platforms/risk"), 400).await?;
    assert!(message.starts_with(r#"namespace "Bad_NS" is not a valid Kubernetes name"#), "{message}");
    let (_, message) = expect_error(env.request(Method::GET, &format!("{platform}..%2Fx")), 400).await?;
    assert!(message.contains("is not a valid Kubernetes name"), "{message}");

    let (code, _) =
        expect_error(env.request(Method::POST, &format!("{}/autoscaling/api/pause", env.platform_path("absent"))), 404)
            .await?;
    assert_eq!(code, "not_found");
    let (code, _) = expect_error(env.request(Method::GET, "/api/v1/nothing"), 404).await?;
    assert_eq!(code, "not_found");
    let (code, _) = expect_error(env.request(Method::GET, &format!("{platform}/autoscaling/api/pause")), 405).await?;
    assert_eq!(code, "method_not_allowed");

    let after = env.platforms().get("risk").await?;
    assert_eq!(after.spec, before.spec, "refused requests changed the spec");
    assert_eq!(after.metadata.generation, Some(1));
    Ok(())
}
