//! Load shedding: at most a bounded number of API requests in one pod at once; one more is
//! answered at once with 503 `overloaded` and `Retry-After: 1`.
//!
//! A pod past its CPU shares that CPU among every request it holds, so without a bound an
//! overload turns into seconds of latency for all of them: calls to Redis and PgBouncer then
//! time out and open this pod's breakers, and the readiness probe times out and takes the pod
//! out of its Service, which moves the load onto the others. Answering the excess at once keeps
//! the admitted requests within their latency and the pod Ready, and the shed requests still
//! count in `http_requests_total`, so the autoscaler sees the demand and not only what was served.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The pod's admission bound; `None` admits everything.
#[derive(Clone, Debug)]
pub struct InFlight(Option<Arc<Semaphore>>);

impl InFlight {
    /// At most `max` requests at once; 0 turns shedding off.
    pub fn new(max: usize) -> Self {
        Self((max > 0).then(|| Arc::new(Semaphore::new(max))))
    }
}

/// Probes bypass the bound: a Ready pod that is shedding is still the right place for traffic.
fn exempt(path: &str) -> bool {
    path.starts_with("/health/")
}

pub async fn admit(State(in_flight): State<InFlight>, request: Request, next: Next) -> Response {
    let Some(permits) = in_flight.0.filter(|_| !exempt(request.uri().path())) else {
        return next.run(request).await;
    };
    match permits.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::Overloaded.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    fn app(max: usize, gate: Arc<tokio::sync::Notify>) -> Router {
        let slow = move || {
            let gate = gate.clone();
            async move { gate.notified().await }
        };
        Router::new()
            .route("/slow", get(slow))
            .route("/health/ready", get(|| async {}))
            .layer(axum::middleware::from_fn_with_state(InFlight::new(max), admit))
    }

    async fn status(app: &Router, path: &str) -> (StatusCode, Option<String>) {
        let request = Request::builder().uri(path).body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("answered");
        let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        (response.status(), retry)
    }

    #[tokio::test]
    async fn a_request_beyond_the_bound_is_shed_at_once_while_probes_still_pass() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let app = app(2, gate.clone());
        let held: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn({
                    let app = app.clone();
                    async move { status(&app, "/slow").await }
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(status(&app, "/slow").await, (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned())));
        assert_eq!(status(&app, "/health/ready").await.0, StatusCode::OK);
        gate.notify_waiters();
        for h in held {
            assert_eq!(h.await.expect("joined").0, StatusCode::OK);
        }
        tokio::spawn({
            let gate = gate.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                gate.notify_waiters()
            }
        });
        assert_eq!(status(&app, "/slow").await.0, StatusCode::OK, "the permits came back");
    }

    #[tokio::test]
    async fn a_bound_of_zero_admits_everything() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let app = app(0, gate.clone());
        let held = tokio::spawn({
            let app = app.clone();
            async move { status(&app, "/slow").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tokio::spawn({
            let gate = gate.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                gate.notify_waiters()
            }
        });
        assert_eq!(status(&app, "/slow").await.0, StatusCode::OK);
        assert_eq!(held.await.expect("joined").0, StatusCode::OK);
    }
}
