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

/// Counts and times every request under its route template (never the raw path, whose ids
/// would make a series per company).
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics
        .duration
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    response
}

/// `/metrics` in the text exposition format.
pub async fn serve(State(registry): State<Arc<Registry>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &registry) {
        Ok(()) => ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response(),
        Err(e) => crate::error::ApiError::internal(anyhow::anyhow!("encoding metrics: {e}")).into_response(),
    }
}
