//! Bearer-token authentication of the REST API: the token is read once from a mounted Secret key.

use std::io;
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The token every /api request must present, or none: then every /api request is refused, so a
/// missing Secret never leaves the API open.
#[derive(Clone)]
pub struct RestAuth {
    /// Only the digest is kept: comparing fixed-size digests takes the same time whatever the
    /// length of the presented token, which a comparison of the raw bytes would leak.
    token_digest: Option<[u8; 32]>,
}

impl RestAuth {
    /// Requests must send `Authorization: Bearer <token>`.
    pub fn token(token: &str) -> Self {
        Self { token_digest: Some(Sha256::digest(token.as_bytes()).into()) }
    }

    /// No token configured: every /api request gets 401.
    pub fn unconfigured() -> Self {
        Self { token_digest: None }
    }

    /// Reads the token from `path` (a Secret key mounted as a file), trimmed of the newline that
    /// editors and `kubectl create secret --from-file` leave; no path means no token.
    pub fn from_file(path: Option<&Path>) -> io::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::unconfigured());
        };
        let read = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading API token file {}: {e}", path.display())))?;
        let token = read.trim();
        if token.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("API token file {} is empty", path.display()),
            ));
        }
        Ok(Self::token(token))
    }

    pub fn is_configured(&self) -> bool {
        self.token_digest.is_some()
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token_digest else {
            return Err(ApiError::Unauthorized(
                "the REST API token is not configured: mount a Secret key and set --api-token-file \
                 (RISK_OPERATOR_API_TOKEN_FILE)",
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized("missing bearer token: send the header Authorization: Bearer <token>"))?;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if constant_time_eq(&presented, expected) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("invalid bearer token"))
        }
    }
}

/// The token of an `Authorization` header value; the scheme is case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares every byte whatever the first difference, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Middleware in front of every /api route except the OpenAPI document.
pub async fn require_token(State(auth): State<RestAuth>, request: Request, next: Next) -> Response {
    match auth.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(authorization) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn only_the_configured_token_passes() {
        let auth = RestAuth::token("s3cret");
        assert!(auth.check(&headers("Bearer s3cret")).is_ok());
        assert!(auth.check(&headers("bearer s3cret")).is_ok());
        for refused in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearer ", "s3cret", ""] {
            assert!(auth.check(&headers(refused)).is_err(), "{refused:?} passed");
        }
    }

    #[test]
    fn without_a_token_every_request_is_refused_with_a_hint() {
        let err = RestAuth::unconfigured().check(&headers("Bearer anything")).err().map(|e| e.to_string());
        assert!(err.is_some_and(|m| m.contains("not configured")));
    }

    #[test]
    fn the_token_file_is_trimmed_and_must_not_be_empty() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n")?;
        assert!(RestAuth::from_file(Some(&path))?.check(&headers("Bearer s3cret")).is_ok());
        std::fs::write(&path, " \n")?;
        assert!(RestAuth::from_file(Some(&path)).is_err());
        assert!(RestAuth::from_file(Some(&dir.path().join("missing"))).is_err());
        assert!(!RestAuth::from_file(None)?.is_configured());
        Ok(())
    }
}
