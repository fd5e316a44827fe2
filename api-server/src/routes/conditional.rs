//! HTTP caching of GET answers: a weak `ETag` computed from the body, and `304 Not Modified`
//! when the request's `If-None-Match` already holds it. Weak, because the compression layer
//! outside may send the same representation in other encodings.

use axum::body::HttpBody as _;
use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Larger bodies (and streamed ones, such as job results, whose size is not known up front) pass
/// through untouched: holding them to hash them would cost what the cache saves.
const MAX_TAGGED_BYTES: u64 = 4 * 1024 * 1024;

/// The weak validator of a body: its SHA-256, shortened to 128 bits.
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// Whether an `If-None-Match` value matches `tag` (weak comparison, as RFC 9110 asks for GET).
pub fn none_match(header: &str, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header.trim() == "*" || header.split(',').any(|candidate| opaque(candidate) == opaque(tag))
}

pub async fn conditional_get(request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    let if_none_match = request.headers().get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let response = next.run(request).await;
    let small = response.body().size_hint().exact().is_some_and(|n| n <= MAX_TAGGED_BYTES);
    if response.status() != StatusCode::OK || !small || response.headers().contains_key(ETAG) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = etag(&bytes);
    let Ok(value) = HeaderValue::from_str(&tag) else { return Response::from_parts(parts, Body::from(bytes)) };
    // Answers depend on the caller's key: caches may keep them, but only for that caller.
    parts.headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("private, no-cache"));
    parts.headers.insert(ETAG, value);
    if if_none_match.is_some_and(|h| none_match(&h, &tag)) {
        let mut not_modified = Response::from_parts(parts, Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        not_modified.headers_mut().remove(axum::http::header::CONTENT_TYPE);
        not_modified.headers_mut().remove(axum::http::header::CONTENT_LENGTH);
        return not_modified;
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_body_gets_the_same_weak_tag_and_another_body_another() {
        let a = etag(b"{\"id\":1}");
        assert!(a.starts_with("W/\"") && a.len() == 3 + 32 + 1, "{a}");
        assert_eq!(a, etag(b"{\"id\":1}"));
        assert_ne!(a, etag(b"{\"id\":2}"));
    }

    #[test]
    fn if_none_match_compares_weakly_over_a_list_and_honours_the_star() {
        let tag = "W/\"abc\"";
        for (header, matches) in [
            ("W/\"abc\"", true),
            ("\"abc\"", true),
            ("\"x\", W/\"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("", false),
        ] {
            assert_eq!(none_match(header, tag), matches, "{header:?}");
        }
    }
}
