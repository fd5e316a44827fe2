//! The process's metrics: one registry, each component registering its own families; names
//! follow Prometheus conventions and the names the operator's queries expect.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::queue::Queue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PredictionLabels {
    pub risk_level: &'static str,
    /// api (single and batch requests) or bulk.
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Families of this process; the registry they live in is encoded on `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub predictions: Family<PredictionLabels, Counter>,
    pub queue_length: Family<QueueLabels, Gauge>,
    pub dead_letters: Gauge,
    pub chunks: Family<OutcomeLabels, Counter>,
    /// Chunks the queue sweep queued again after Redis lost their message.
    pub requeued: Counter,
    /// Seconds the oldest unfinished bulk job has waited (an alert: it grows while work is stuck).
    pub oldest_pending_age: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        // 0.5 ms to ~8 s: a cached prediction takes under a millisecond, a bulk upload seconds.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        let m = Self {
            requests: Family::default(),
            duration,
            predictions: Family::default(),
            queue_length: Family::default(),
            dead_letters: Gauge::default(),
            chunks: Family::default(),
            requeued: Counter::default(),
            oldest_pending_age: Gauge::default(),
        };
        registry.register("http_requests", "HTTP requests by method, route and status", m.requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            m.duration.clone(),
        );
        registry.register(
            "riskplatform_predictions",
            "Predictions made, by risk level and source",
            m.predictions.clone(),
        );
        registry.register("riskplatform_queue_length", "Chunks waiting in each job queue", m.queue_length.clone());
        registry.register(
            "riskplatform_dead_letter_length",
            "Chunks in the dead-letter list (failed after every retry)",
            m.dead_letters.clone(),
        );
        registry.register(
            "riskplatform_job_chunks",
            "Bulk job chunks handled by this worker, by outcome",
            m.chunks.clone(),
        );
        registry.register(
            "riskplatform_job_chunks_requeued",
            "Bulk job chunks the queue sweep queued again after Redis lost their message",
            m.requeued.clone(),
        );
        registry.register_with_unit(
            "riskplatform_oldest_pending_chunk_age",
            "Age of the oldest bulk job with chunks still pending",
            prometheus_client::registry::Unit::Seconds,
            m.oldest_pending_age.clone(),
        );
        m
    }

    /// Refreshes the queue gauges from Redis every `every`, forever (a failed read keeps the last values).
    pub async fn watch_queues(self, queue: Queue, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match queue.lengths().await {
                Ok((queues, dead)) => {
                    for (name, len) in queues {
                        self.queue_length.get_or_create(&QueueLabels { queue: name }).set(len);
                    }
                    self.dead_letters.set(dead);
                }
                Err(e) => tracing::debug!(error = %e, "queue lengths unavailable"),
            }
        }
    }
}

/// What the request middleware needs: the families, and when a request counts as slow.
#[derive(Clone)]
pub struct Tracking {
    pub metrics: Metrics,
    pub slow_after: std::time::Duration,
}

/// Counts and times every request under its route template (never the raw path, whose ids
/// would make a series per company), and logs the slow ones.
pub async fn track(State(Tracking { metrics, slow_after }): State<Tracking>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if elapsed >= slow_after {
        let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(%method, %route, status, duration_ms, "slow request");
    }
    metrics
        .duration
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(elapsed.as_secs_f64());
    metrics.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    response
}

/// `/metrics` in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(),
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)",
        content_type = "application/openmetrics-text", body = String),
        (status = 500, description = "The registry could not be encoded", body = crate::error::ErrorBody)))]
pub async fn serve(State(registry): State<Arc<Registry>>) -> Response {
    encoded(&registry)
}

/// `registry` in the text exposition format, as a `/metrics` response.
pub fn encoded(registry: &Registry) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, registry) {
        Ok(()) => ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response(),
        Err(e) => crate::error::ApiError::internal(anyhow::anyhow!("encoding metrics: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    use super::*;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn call(router: &Router, path: &str) {
        let request = axum::http::Request::get(path).body(axum::body::Body::empty()).expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 200);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_slower_than_the_threshold_is_logged_with_route_status_and_duration() {
        let log = Captured::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || sink.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let tracking =
            Tracking { metrics: Metrics::register(&mut Registry::default()), slow_after: Duration::from_millis(50) };
        let router = Router::new()
            .route("/slow/{id}", get(|| async { tokio::time::sleep(Duration::from_millis(80)).await }))
            .route("/fast", get(|| async {}))
            .layer(axum::middleware::from_fn_with_state(tracking, track));

        call(&router, "/fast").await;
        call(&router, "/slow/42").await;

        let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
        let slow: Vec<&str> = text.lines().filter(|l| l.contains("slow request")).collect();
        assert_eq!(slow.len(), 1, "{text}");
        assert!(slow[0].contains("route=/slow/{id}") && slow[0].contains("status=200"), "{}", slow[0]);
        let ms: u64 = slow[0]
            .split("duration_ms=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .expect("duration_ms");
        assert!(ms >= 80, "{ms}");
    }
}
