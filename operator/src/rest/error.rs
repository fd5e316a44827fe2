//! The REST API's one error type, mapped here alone to a status code and one JSON shape.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path segment or the body is not acceptable; the message names the field and what is allowed.
    #[error("{0}")]
    BadRequest(String),

    /// No usable bearer token, or no token configured at all.
    #[error("{0}")]
    Unauthorized(&'static str),

    /// The RiskPlatform does not exist.
    #[error("RiskPlatform {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },

    /// No endpoint has this path.
    #[error("no endpoint {0}")]
    NoRoute(String),

    /// The path exists but not with this method.
    #[error("{0} is not allowed here")]
    MethodNotAllowed(String),

    /// The API server refused the write because the object changed or is in a conflicting state.
    #[error("the RiskPlatform changed while it was being updated; retry the request")]
    Conflict(#[source] kube::Error),

    /// The API server's validation (schema or CEL rules of the CRD) rejected the change; its
    /// message is about the user's own object, so it is returned.
    #[error("the RiskPlatform rejected the change: {0}")]
    Rejected(String),

    /// The Kubernetes API answered with an error the REST API cannot attribute to the request.
    #[error("the Kubernetes API failed")]
    Kube(#[source] kube::Error),

    /// A stored object does not have the shape this operator reads (version skew between CRD and
    /// operator); the reason goes to the log only.
    #[error("a stored RiskPlatform could not be read")]
    Unreadable(String),
}

/// Every error response: `{"error": {"code": "not_found", "message": "..."}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: bad_request, unauthorized, not_found, method_not_allowed,
    /// conflict, rejected, kubernetes_error or kubernetes_unavailable.
    #[schema(example = "not_found")]
    pub code: &'static str,
    /// For people: what went wrong and, for 4xx, how to fix the request.
    #[schema(example = "RiskPlatform prod/risk not found")]
    pub message: String,
}

impl ApiError {
    /// Maps a failed call about one platform: a 404 means the platform is not there.
    pub fn for_platform(error: kube::Error, namespace: &str, name: &str) -> Self {
        match &error {
            kube::Error::Api(status) if status.code == 404 => {
                Self::NotFound { namespace: namespace.to_owned(), name: name.to_owned() }
            }
            _ => Self::from(error),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound { .. } | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Kube(kube::Error::Api(status)) if status.code == 429 || status.code >= 500 => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Any other answer (403 from missing RBAC, 404 of a missing CRD, an unreadable body)
            // means the operator or cluster is misconfigured: a bad gateway, not a bad request.
            Self::Kube(kube::Error::Api(_) | kube::Error::SerdeError(_)) | Self::Unreadable(_) => {
                StatusCode::BAD_GATEWAY
            }
            // Transport failures: the API server is unreachable or timed out.
            Self::Kube(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound { .. } | Self::NoRoute(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::Rejected(_) => "rejected",
            Self::Kube(_) | Self::Unreadable(_) => match self.status_code() {
                StatusCode::SERVICE_UNAVAILABLE => "kubernetes_unavailable",
                _ => "kubernetes_error",
            },
        }
    }

    fn message(&self) -> String {
        match self.status_code() {
            StatusCode::BAD_GATEWAY => "the Kubernetes API failed; the operator's log has the details".to_owned(),
            StatusCode::SERVICE_UNAVAILABLE => "the Kubernetes API is unavailable; retry later".to_owned(),
            _ => self.to_string(),
        }
    }
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) if status.code == 409 => Self::Conflict(error),
            kube::Error::Api(status) if status.code == 422 => Self::Rejected(status.message.clone()),
            _ => Self::Kube(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        match &self {
            Self::Kube(source) => tracing::error!(error = %source, %status, "Kubernetes API call failed"),
            Self::Conflict(source) => tracing::warn!(error = %source, "write conflicted"),
            Self::Unreadable(reason) => tracing::error!(%reason, "stored RiskPlatform unreadable"),
            _ => tracing::debug!(error = %self, %status, "request refused"),
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code(), message: self.message() } };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status { code, message: format!("answer {code}"), ..Default::default() }))
    }

    #[test]
    fn kubernetes_answers_map_to_request_errors_or_gateway_errors() {
        let cases = [
            (404, StatusCode::NOT_FOUND, "not_found"),
            (409, StatusCode::CONFLICT, "conflict"),
            (422, StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            (403, StatusCode::BAD_GATEWAY, "kubernetes_error"),
            (429, StatusCode::SERVICE_UNAVAILABLE, "kubernetes_unavailable"),
            (500, StatusCode::SERVICE_UNAVAILABLE, "kubernetes_unavailable"),
        ];
        for (code, status, label) in cases {
            let e = ApiError::for_platform(api_error(code), "ns", "rp");
            assert_eq!((e.status_code(), e.code()), (status, label), "Kubernetes answered {code}");
        }
    }

    #[test]
    fn gateway_errors_do_not_reveal_the_kubernetes_answer() {
        let e = ApiError::from(api_error(403));
        assert!(!e.message().contains("answer 403"), "{}", e.message());
    }
}
