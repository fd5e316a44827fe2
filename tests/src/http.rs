//! A small JSON client for the prediction API in tests: every call returns status and body.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    pub key: Option<String>,
    http: reqwest::Client,
}

/// A response: status, Retry-After (if any) and the body as JSON (Null when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub body: Value,
    pub text: String,
}

impl ApiClient {
    pub fn new(base: &str, key: Option<&str>) -> Self {
        Self { base: base.to_owned(), key: key.map(str::to_owned), http: reqwest::Client::new() }
    }

    /// A client over a given HTTP client (its timeouts, for example).
    pub fn from_client(http: reqwest::Client, base: &str, key: Option<&str>) -> Self {
        Self { base: base.to_owned(), key: key.map(str::to_owned), http }
    }

    pub fn with_key(&self, key: &str) -> Self {
        Self { key: Some(key.to_owned()), ..self.clone() }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Result<Reply> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::reply(req.send().await?).await
    }

    pub async fn reply(resp: reqwest::Response) -> Result<Reply> {
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply { status, retry_after, body, text })
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Reply> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Reply> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply> {
        self.send(Method::DELETE, path, None).await
    }

    /// Uploads a CSV bulk job.
    pub async fn upload(&self, csv: String, query: &str) -> Result<Reply> {
        let mut req =
            self.http.post(format!("{}/api/v1/jobs{query}", self.base)).header("content-type", "text/csv").body(csv);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        Self::reply(req.send().await?).await
    }

    /// Polls a job's status until `done` holds for it (or `within` passes: an error with the
    /// last status).
    pub async fn wait_job(&self, job: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get(&format!("/api/v1/jobs/{job}")).await?;
            if done(&r.body) {
                return Ok(r.body);
            }
            if Instant::now() > deadline {
                bail!("job {job} not there after {within:?}: {}", r.text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a job is completed or failed.
    pub async fn wait_finished(&self, job: &str, within: Duration) -> Result<Value> {
        self.wait_job(job, within, |b| matches!(b["status"].as_str(), Some("completed" | "failed"))).await
    }
}

/// A healthy company's statement as JSON, with `ebit` varied so each is a distinct input.
pub fn statement(ebit: f64) -> Value {
    serde_json::json!({
        "total_assets": 1000.0, "total_liabilities": 300.0, "current_assets": 400.0,
        "current_liabilities": 150.0, "retained_earnings": 350.0, "ebit": ebit, "net_income": 100.0,
        "previous_net_income": 90.0, "funds_from_operations": 140.0, "book_equity": 700.0
    })
}

/// A bulk upload of `rows` rows (header included); row `bad` (if any) has negative total assets.
pub fn bulk_csv(rows: usize, bad: Option<usize>) -> String {
    let mut out = String::from(
        "reference,total_assets,total_liabilities,current_assets,current_liabilities,retained_earnings,ebit,net_income,previous_net_income,funds_from_operations,book_equity\n",
    );
    for i in 0..rows {
        let assets = if Some(i) == bad { -5.0 } else { 1000.0 + i as f64 };
        out.push_str(&format!("R{i},{assets},300,400,150,350,{},100,90,140,700\n", 50 + i % 200));
    }
    out
}

/// A sample's value in the text exposition format, e.g. `metric(text, "x{a=\"b\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A server's `/metrics` text.
pub async fn metrics(url: &str) -> Result<String> {
    Ok(reqwest::get(format!("{url}/metrics")).await?.text().await?)
}
