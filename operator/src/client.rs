//! A Kubernetes client that counts every request it sends by verb and resource
//! (`riskplatform_operator_api_requests_total`), so the cost of a reconcile is measured, not guessed.

use http::{Method, Request, Uri};
use kube::client::Body;
use kube::Client;

use crate::metrics::ApiMetrics;

/// Wraps `client`: every request through the returned client (controller, watches, Events,
/// leases) is counted before it is sent.
pub fn counting(client: Client, metrics: ApiMetrics) -> Client {
    let default_namespace = client.default_namespace().to_owned();
    let service = tower::service_fn(move |request: Request<Body>| {
        let (verb, kind) = classify(request.method(), request.uri());
        metrics.count(verb, &kind);
        let client = client.clone();
        async move { client.send(request).await }
    });
    Client::new(service, default_namespace)
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
