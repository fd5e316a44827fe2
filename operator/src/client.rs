//! A Kubernetes client that counts every request it sends by verb and resource
//! (`riskplatform_operator_api_requests_total`), so the cost of a reconcile is measured, not
//! guessed, and bounds how many it sends at once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Uri};
use http_body::{Frame, SizeHint};
use kube::client::Body;
use kube::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::ApiMetrics;

/// Requests in flight at once, watches and leases aside. The client speaks HTTP/1.1, so every
/// concurrent request holds a connection of its own, with its TLS session and buffers, which
/// the pool keeps once idle: unbounded, 1,000 platforms converging at once opened over 1,000.
/// The API server does not answer more requests per second with more of them queued inside it.
pub const MAX_IN_FLIGHT: usize = 32;

/// Wraps `client`: every request through the returned client (controller, watches, Events,
/// leases) is counted before it is sent; all but watches and leases wait for one of
/// [`MAX_IN_FLIGHT`] slots, held until the response body is read.
pub fn counting(client: Client, metrics: ApiMetrics) -> Client {
    let default_namespace = client.default_namespace().to_owned();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let service = tower::service_fn(move |request: Request<Body>| {
        let (verb, kind) = classify(request.method(), request.uri());
        metrics.count(verb, &kind);
        // A watch holds its response open for minutes, and a lease renewal must not queue
        // behind a burst of reconciles.
        let bounded = verb != "watch" && kind != "leases";
        let client = client.clone();
        let slots = slots.clone();
        async move {
            let slot = match bounded {
                true => Some(slots.acquire_owned().await.expect("the semaphore is never closed")),
                false => None,
            };
            let response = client.send(request).await?;
            Ok::<_, kube::Error>(response.map(|body| Held { body, _slot: slot }))
        }
    });
    Client::new(service, default_namespace)
}

/// A response body that keeps its request's slot until it is read (or dropped): the connection
/// is busy until then.
struct Held {
    body: Body,
    _slot: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = kube::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The verb and resource of a request, as the API server's audit log would name them.
pub fn classify(method: &Method, uri: &Uri) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest.filter(|r| !r.is_empty()) else { return ("other", "nonresource".to_owned()) };
    if rest[0] == "namespaces" && rest.len() >= 3 {
        rest = &rest[2..];
    }
    let kind = match rest.get(2) {
        Some(sub) => format!("{}/{sub}", rest[0]),
        None => rest[0].to_owned(),
    };
    let named = rest.len() >= 2;
    let watching = uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        let cases = [
            (Method::GET, "/api/v1/namespaces/prod/secrets/db", ("get", "secrets")),
            (Method::GET, "/api/v1/namespaces/prod/secrets?labelSelector=x", ("list", "secrets")),
            (Method::GET, "/apis/apps/v1/deployments?watch=true&resourceVersion=5", ("watch", "deployments")),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/prod/deployments/risk-api?fieldManager=m",
                ("patch", "deployments"),
            ),
            (
                Method::PATCH,
                "/apis/riskplatform.io/v1alpha1/namespaces/prod/riskplatforms/risk/status",
                ("patch", "riskplatforms/status"),
            ),
            (Method::POST, "/apis/events.k8s.io/v1/namespaces/prod/events", ("create", "events")),
            (Method::DELETE, "/api/v1/namespaces/prod/services/risk-redis", ("delete", "services")),
            (Method::GET, "/api/v1/namespaces/prod", ("get", "namespaces")),
            (Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/prod/leases/op", ("update", "leases")),
            (Method::GET, "/version", ("other", "nonresource")),
        ];
        for (method, uri, (verb, kind)) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(classify(&method, &uri), (verb, kind.to_owned()), "{method} {uri}");
        }
    }
}
