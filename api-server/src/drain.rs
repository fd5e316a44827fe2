//! Shutdown in two steps, so a rollout loses no request: first drain (readiness fails, and every
//! response asks its client to close the connection, so keep-alive clients and the Service move
//! to other pods while this one still answers), then stop accepting and finish what is in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// Set once the process was asked to stop.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Middleware: while draining, each response closes its connection after it is sent.
pub async fn close_connections(State(draining): State<Draining>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if draining.is_draining() {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn responses_close_their_connection_only_once_draining_started() {
        let draining = Draining::default();
        let app = axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(draining.clone(), close_connections));
        let get = || Request::builder().uri("/").body(axum::body::Body::empty()).expect("request");
        let before = app.clone().oneshot(get()).await.expect("response");
        assert!(before.headers().get(header::CONNECTION).is_none());
        draining.start();
        let after = app.oneshot(get()).await.expect("response");
        assert_eq!(after.headers().get(header::CONNECTION).map(|v| v.as_bytes()), Some(&b"close"[..]));
    }
}
