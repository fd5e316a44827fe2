//! The service's one error type, mapped here alone to a status code and one JSON shape; internal
//! details go to the log, never into a response.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::deps::Dependency;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (path, query or body shape); the message says where.
    #[error("{0}")]
    BadRequest(String),

    /// A field's value cannot be used; the message names the field.
    #[error("{message}")]
    Invalid { field: String, message: String },

    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,

    #[error("the {role} role may not {action}")]
    Forbidden { role: &'static str, action: &'static str },

    #[error("{0} not found")]
    NotFound(String),

    #[error("{0}")]
    Conflict(String),

    #[error("{0}")]
    TooLarge(String),

    #[error("rate limit exceeded for this tenant; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },

    /// A dependency is down or its circuit breaker is open.
    #[error("{dependency} is unavailable; retry in {retry_after_secs} s")]
    Unavailable { dependency: Dependency, retry_after_secs: u64 },

    /// This pod holds as many requests as it admits at once ([`crate::shed`]).
    #[error("the service is at capacity; retry in 1 s")]
    Overloaded,

    /// Anything else: logged with its cause, answered with a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Every error response: `{"error": {"code": "invalid", "message": "...", "field": "total_assets"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: bad_request, invalid, unauthorized, forbidden, not_found,
    /// conflict, too_large, rate_limited, unavailable, overloaded or internal.
    #[schema(example = "invalid")]
    pub code: &'static str,
    /// For people: what is wrong and, for 4xx, how to fix the request.
    #[schema(example = "total_assets must be greater than zero")]
    pub message: String,
    /// The offending field, where one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "total_assets")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Invalid { .. } => "invalid",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::TooLarge(_) => "too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::Overloaded => "overloaded",
            Self::Internal(_) => "internal",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } | Self::Unavailable { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            Self::Overloaded => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let field = match &self {
            Self::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string(), field } };
        let mut response = (self.status_code(), axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        let field = match &e {
            ModelError::NotFinite { field }
            | ModelError::NotPositive { field }
            | ModelError::Negative { field }
            | ModelError::TooSmall { field }
            | ModelError::TooLarge { field } => field,
        };
        Self::invalid(*field, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            // serde's message names the field and position ("missing field `symbol` at line 1 column 2").
            JsonRejection::JsonDataError(e) => Self::invalid("body", e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::BadRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                Self::BadRequest("send the body as JSON with `Content-Type: application/json`".to_owned())
            }
            JsonRejection::BytesRejection(e) => e.into(),
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        // The body limit is the one rejection that is not the client's malformed request.
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge(format!("the request body is larger than this endpoint accepts ({})", r.body_text()))
        } else {
            Self::BadRequest(r.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::BadRequest(r.body_text())
    }
}
