//! The OpenAPI 3.1 document, generated from the handlers' annotations; the extractors' common
//! errors and the bearer security scheme are added by modifiers, once for every operation.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::responses::ExtractorErrors;
use super::{companies, health, jobs, keys, predictions, statements};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RiskPlatform prediction API",
        description = "Default-risk predictions (Ohlson O-score and Altman Z''), companies, financial \
                       statements and bulk jobs, per tenant. Every error has the body \
                       {\"error\": {\"code\": ..., \"message\": ..., \"field\": ...}}; 429 and 503 carry Retry-After."
    ),
    paths(
        companies::create, companies::list, companies::read, companies::update, companies::deactivate,
        statements::create, statements::list, statements::read,
        predictions::predict, predictions::batch, predictions::history, predictions::latest,
        jobs::upload, jobs::status, jobs::list, jobs::results,
        keys::create,
        health::live, health::ready, crate::metrics::serve,
        document,
    ),
    modifiers(&BearerAuth, &ExtractorErrors),
    // The macro takes a literal: it must be BEARER_AUTH.
    security(("bearerAuth" = [])),
)]
pub struct ApiDoc;

/// The security scheme's name in the document.
pub const BEARER_AUTH: &str = "bearerAuth";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An API key from `riskplatform-api admin create-tenant` or POST /api/v1/keys"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER_AUTH, SecurityScheme::Http(scheme));
    }
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(),
    responses(
        (status = 200, description = "OpenAPI 3.1"),
        (status = 503, description = "The pod already holds its maximum of requests in flight (code `overloaded`)",
            body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying (at least 1)"))),
    ))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serializes")
    }

    /// Every (path, method, operation) of the document.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().expect("path item").iter().map(|(m, op)| (path.clone(), m.clone(), op.clone()))
            })
            .collect()
    }

    /// A response, following a reference into the shared components.
    fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
        match response["$ref"].as_str() {
            Some(r) => &doc["components"]["responses"][r.trim_start_matches("#/components/responses/")],
            None => response,
        }
    }

    fn is_open(op: &Value) -> bool {
        op["security"].as_array().is_some_and(|reqs| reqs.iter().all(|r| r.as_object().is_some_and(|o| o.is_empty())))
    }

    #[test]
    fn only_health_metrics_and_the_document_itself_are_open_the_rest_needs_the_bearer_key() {
        let doc = document();
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER_AUTH],
            serde_json::json!({
                "type": "http", "scheme": "bearer",
                "description": "An API key from `riskplatform-api admin create-tenant` or POST /api/v1/keys"
            })
        );
        assert_eq!(doc["security"], serde_json::json!([{ BEARER_AUTH: [] }]));
        let mut open: Vec<String> =
            operations(&doc).into_iter().filter(|(.., op)| is_open(op)).map(|(path, ..)| path).collect();
        open.sort();
        assert_eq!(open, ["/api/v1/openapi.json", "/health/live", "/health/ready", "/metrics"]);
    }

    #[test]
    fn every_operation_with_a_key_documents_401_429_500_and_503_with_retry_after() {
        let doc = document();
        for (path, method, op) in operations(&doc).into_iter().filter(|(.., op)| !is_open(op)) {
            for status in ["401", "429", "500", "503"] {
                assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
            }
            for status in ["429", "503"] {
                let response = resolve(&doc, &op["responses"][status]);
                assert!(response["headers"]["Retry-After"].is_object(), "{method} {path} {status}: {response}");
            }
        }
    }

    #[test]
    fn every_operation_behind_load_shedding_documents_503_overloaded() {
        let doc = document();
        for (path, method, op) in operations(&doc) {
            if path.starts_with("/health/") || path == "/metrics" {
                continue;
            }
            let response = resolve(&doc, &op["responses"]["503"]);
            let description = response["description"].as_str().unwrap_or_default();
            assert!(description.contains("`overloaded`"), "{method} {path} 503: {response}");
        }
    }

    #[test]
    fn every_operation_with_parameters_or_a_body_documents_400_and_json_bodies_413_and_422() {
        let doc = document();
        for (path, method, op) in operations(&doc) {
            let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let json_body = op["requestBody"]["content"].get("application/json").is_some();
            if has_params || op.get("requestBody").is_some() {
                assert!(op["responses"].get("400").is_some(), "{method} {path} lacks 400");
            }
            if json_body {
                for status in ["413", "422"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
                }
            }
        }
    }

    #[test]
    fn every_error_of_an_operation_with_a_key_has_the_one_error_body() {
        let doc = document();
        for (path, method, op) in operations(&doc).into_iter().filter(|(.., op)| !is_open(op)) {
            for (status, response) in op["responses"].as_object().expect("responses") {
                if status.as_str() < "400" {
                    continue;
                }
                let schema = &resolve(&doc, response)["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
            }
        }
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }
}
