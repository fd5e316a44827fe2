//! A bounded load generator for loopback targets: closed loop (N connections back to back) or
//! open loop (a fixed request rate), for a fixed time, recording each request's latency and
//! status. It stops by itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;

/// One request to send; `n` numbers requests so bodies can differ.
#[derive(Clone, Debug)]
pub struct Spec {
    pub method: Method,
    pub url: String,
    pub key: Option<String>,
    pub body: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub sent: u64,
    /// Transport failures (no HTTP status).
    pub failed: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency percentile in milliseconds (p in 0..=1) over requests that got an answer.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }

    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn merge(mut parts: Vec<Report>, elapsed: Duration) -> Report {
        let mut out = Report { elapsed, ..Report::default() };
        for p in parts.drain(..) {
            out.sent += p.sent;
            out.failed += p.failed;
            for (s, n) in p.statuses {
                *out.statuses.entry(s).or_default() += n;
            }
            out.latencies_us.extend(p.latencies_us);
        }
        out.latencies_us.sort_unstable();
        out
    }
}

async fn send(client: &reqwest::Client, spec: Spec, report: &mut Report) {
    let started = Instant::now();
    let mut req = client.request(spec.method, &spec.url);
    if let Some(key) = spec.key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = spec.body {
        req = req.header("content-type", "application/json").body(body);
    }
    report.sent += 1;
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read the whole body: a benchmark that ignores it measures less than a client does.
            let _ = resp.bytes().await;
            report.latencies_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            *report.statuses.entry(status).or_default() += 1;
        }
        Err(_) => report.failed += 1,
    }
}

fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client with default TLS settings builds")
}

/// `connections` loops each sending the next request as soon as the last one answered.
pub async fn closed_loop<F>(connections: usize, duration: Duration, make: F) -> Report
where
    F: Fn(u64) -> Spec + Send + Sync + 'static,
{
    let client = client(connections);
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, make, counter) = (client.clone(), make.clone(), counter.clone());
            tokio::spawn(async move {
                let mut report = Report::default();
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    send(&client, make(n), &mut report).await;
                }
                report
            })
        })
        .collect();
    let mut parts = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            parts.push(r);
        }
    }
    Report::merge(parts, started.elapsed())
}

/// Sends `rate` requests per second for `duration`, whether or not earlier ones answered.
pub async fn open_loop<F>(rate: f64, duration: Duration, make: F) -> Report
where
    F: Fn(u64) -> Spec + Send + Sync + 'static,
{
    open_loop_until(rate, duration, Arc::new(AtomicBool::new(false)), make).await
}

/// Like [`open_loop`], but sends nothing more once `stop` is set (still at most `duration`);
/// requests already sent are waited for and reported.
pub async fn open_loop_until<F>(rate: f64, duration: Duration, stop: Arc<AtomicBool>, make: F) -> Report
where
    F: Fn(u64) -> Spec + Send + Sync + 'static,
{
    let client = client(256);
    let parts = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut handles = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for n in 0..total {
        let due = started + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (client, spec, parts) = (client.clone(), make(n), parts.clone());
        handles.push(tokio::spawn(async move {
            let mut report = Report::default();
            send(&client, spec, &mut report).await;
            parts.lock().unwrap_or_else(|p| p.into_inner()).push(report);
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let elapsed = started.elapsed();
    let parts = std::mem::take(&mut *parts.lock().unwrap_or_else(|p| p.into_inner()));
    Report::merge(parts, elapsed)
}

/// What became of one request of a scheduled replay.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Seconds from the start of the replay at which it was sent.
    pub at: f64,
    /// Seconds until its answer was read; None without one (connection error, 10 s timeout).
    pub latency: Option<f64>,
    pub status: Option<u16>,
}

/// Sends one request at each of `times` (seconds from now, ascending), whether or not earlier ones
/// answered, and reports every request in the order it was sent.
pub async fn open_loop_at<F>(times: &[f64], make: F) -> Vec<Sent>
where
    F: Fn(u64) -> Spec,
{
    let client = client(512);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(times.len());
    for (n, at) in times.iter().copied().enumerate() {
        tokio::time::sleep_until((started + Duration::from_secs_f64(at.max(0.0))).into()).await;
        let (client, spec) = (client.clone(), make(n as u64));
        handles.push(tokio::spawn(async move {
            let mut report = Report::default();
            send(&client, spec, &mut report).await;
            let status = report.statuses.keys().next().copied();
            let latency = report.latencies_us.first().map(|us| *us as f64 / 1e6);
            Sent { at, latency, status }
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for (h, at) in handles.into_iter().zip(times) {
        out.push(h.await.unwrap_or(Sent { at: *at, latency: None, status: None }));
    }
    out
}
