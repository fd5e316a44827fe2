//! The HTTP surface: `/api/v1` resources behind bearer keys, health and metrics in the open, one
//! request-body/query/path rejection mapping into the JSON error shape, and the OpenAPI document.

pub mod companies;
pub mod conditional;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod openapi;
pub mod predictions;
pub mod responses;
pub mod statements;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body whose rejections use the service's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Query parameters whose rejections use the service's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// Path parameters whose rejections use the service's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParams<T>(pub T);

/// A raw request body (the CSV upload) whose rejections use the service's error shape.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state).await.map(Self).map_err(ApiError::from)
    }
}

/// Bulk uploads are up to 100,000 rows of about 100 bytes.
const UPLOAD_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// The whole service: API routes with request metrics, plus health, metrics and OpenAPI.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(companies::router())
        .merge(statements::router())
        .merge(predictions::router())
        .merge(keys::router())
        .merge(jobs::router().layer(DefaultBodyLimit::max(UPLOAD_LIMIT_BYTES)))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(conditional::conditional_get))
        // Inside the request metrics: a shed request still counts, so the rate is the demand.
        .layer(axum::middleware::from_fn_with_state(state.in_flight.clone(), crate::shed::admit))
        .layer(axum::middleware::from_fn_with_state(
            crate::metrics::Tracking { metrics: state.metrics.clone(), slow_after: state.settings.slow_request },
            crate::metrics::track,
        ))
        .layer(compression(state.settings.compress_above_bytes))
        .layer(axum::middleware::from_fn_with_state(state.draining.clone(), crate::drain::close_connections))
        .with_state(state.clone());
    api.merge(Router::new().route("/metrics", get(crate::metrics::serve)).with_state(state.registry.clone()))
}

/// gzip or brotli, as the client prefers, for bodies above `threshold` bytes; images and event
/// streams are left alone.
fn compression(threshold: u16) -> CompressionLayer<impl Predicate> {
    let predicate = SizeAbove::new(threshold)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE);
    CompressionLayer::new().gzip(true).br(true).compress_when(predicate)
}

/// What a worker serves: health and metrics only.
pub fn admin_router(probes: health::Probes, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .with_state(probes)
        .merge(Router::new().route("/metrics", get(crate::metrics::serve)).with_state(registry))
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("endpoint {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::BadRequest(format!("{method} is not allowed on {}", uri.path()))
}

/// Page size: 50 by default, at most 500.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid("limit", format!("limit must be between 1 and 500, got {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    /// The upload route's body extractor behind a limit of `limit` bytes.
    fn upload_route(limit: usize) -> Router {
        Router::new()
            .route("/", post(|RawBody(body): RawBody| async move { body.len().to_string() }))
            .layer(DefaultBodyLimit::max(limit))
    }

    #[tokio::test]
    async fn a_raw_body_over_the_limit_is_a_413_in_the_json_error_shape_not_axums_plain_text() {
        let cases = [(16, StatusCode::OK), (17, StatusCode::PAYLOAD_TOO_LARGE)];
        for (size, want) in cases {
            let request = Request::post("/").body(Body::from(vec![b'x'; size])).expect("request");
            let response = upload_route(16).oneshot(request).await.expect("answered");
            assert_eq!(response.status(), want, "{size} bytes");
            if want != StatusCode::OK {
                let content_type = response.headers()[axum::http::header::CONTENT_TYPE].clone();
                let body = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
                let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                assert_eq!(
                    (content_type.to_str().ok(), json["error"]["code"].as_str()),
                    (Some("application/json"), Some("too_large"))
                );
            }
        }
    }
}
