//! The error responses the shared extractors give before a handler runs (bearer key, path and
//! query parameters, request bodies), added to the OpenAPI document of every operation that uses
//! them, so that no handler's annotation can leave one out. Handler-specific statuses (403, 404,
//! 409, a handler's own 413 or 422) stay in the handlers' annotations and are never overwritten.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Components, ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, PartialSchema};

use crate::error::ErrorBody;

/// (status, component name, description, carries Retry-After).
const COMMON: [(&str, &str, &str, bool); 7] = [
    ("400", "BadRequest", "Malformed request: a path or query parameter of the wrong type or unknown, a body that is not JSON or sent without `Content-Type: application/json`, or a body that cannot be read", false),
    ("401", "Unauthorized", "No API key, or not a valid one: send `Authorization: Bearer <key>`", false),
    ("413", "PayloadTooLarge", "The request body is larger than the endpoint accepts", false),
    ("422", "Unprocessable", "The body is JSON but not of the documented shape; `field` names the culprit where one is to blame", false),
    ("429", "RateLimited", "The tenant's rate limit is used up; retry after `Retry-After` seconds", true),
    ("500", "Internal", "An unexpected failure; details are in the service's log, never in the response", false),
    ("503", "Unavailable", "PostgreSQL or Redis is unavailable or its circuit breaker is open (code `unavailable`), or the pod already holds its maximum of requests in flight (code `overloaded`, `RISK_MAX_IN_FLIGHT`); retry after `Retry-After` seconds", true),
];

/// What an operation takes, which decides the extractor errors it can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inputs {
    pub authenticated: bool,
    pub parameters: bool,
    pub body: Option<BodyKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Other,
}

/// The statuses the extractors can give for these inputs, in ascending order. Pure.
pub fn extractor_statuses(inputs: Inputs) -> Vec<&'static str> {
    let mut statuses = Vec::new();
    if inputs.parameters || inputs.body.is_some() {
        statuses.push("400");
    }
    if inputs.authenticated {
        statuses.push("401");
    }
    if inputs.body.is_some() {
        statuses.push("413");
    }
    if inputs.body == Some(BodyKind::Json) {
        statuses.push("422");
    }
    if inputs.authenticated {
        // The key lookup goes to PostgreSQL (on a cache miss) and charges the rate limit.
        statuses.extend(["429", "500", "503"]);
    }
    statuses
}

fn inputs(op: &Operation) -> Inputs {
    // An operation without its own `security` inherits the document's bearer key; open ones
    // (health, metrics, this document) declare an empty requirement.
    let authenticated =
        op.security.as_ref().is_none_or(|reqs| reqs.iter().any(|r| *r != SecurityRequirement::default()));
    let body = op.request_body.as_ref().map(|b| {
        if b.content.keys().any(|media| media == "application/json") {
            BodyKind::Json
        } else {
            BodyKind::Other
        }
    });
    Inputs { authenticated, parameters: op.parameters.as_ref().is_some_and(|p| !p.is_empty()), body }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .filter_map(Option::as_mut)
}

fn component(description: &str, retry_after: bool) -> Response {
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", body);
    if retry_after {
        let header = HeaderBuilder::new()
            .schema(u64::schema())
            .description(Some("Seconds to wait before retrying (at least 1)"))
            .build();
        response = response.header("Retry-After", header);
    }
    response.build()
}

/// Adds the extractor errors to every operation (as references to shared response components).
pub struct ExtractorErrors;

impl Modify for ExtractorErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        components.schemas.entry("ErrorBody".to_owned()).or_insert_with(ErrorBody::schema);
        for (_, name, description, retry_after) in COMMON {
            components.responses.insert(name.to_owned(), RefOr::T(component(description, retry_after)));
        }
        let not_modified = ResponseBuilder::new()
            .description("The representation is unchanged: the request's `If-None-Match` holds its `ETag`")
            .build();
        components.responses.insert("NotModified".to_owned(), RefOr::T(not_modified));
        for (path, item) in openapi.paths.paths.iter_mut() {
            // Every GET answer of the API router carries an ETag (routes/conditional.rs).
            if let Some(get) = item.get.as_mut().filter(|_| path != "/metrics") {
                get.responses
                    .responses
                    .entry("304".to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::new("#/components/responses/NotModified")));
            }
            for op in operations(item) {
                for status in extractor_statuses(inputs(op)) {
                    let name = COMMON.iter().find(|(s, ..)| *s == status).map(|(_, name, ..)| *name);
                    if let Some(name) = name {
                        op.responses
                            .responses
                            .entry(status.to_owned())
                            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_input_brings_the_errors_its_extractor_can_give() {
        let open = Inputs { authenticated: false, parameters: false, body: None };
        let table = [
            (open, vec![]),
            (Inputs { authenticated: true, ..open }, vec!["401", "429", "500", "503"]),
            (Inputs { parameters: true, ..open }, vec!["400"]),
            (
                Inputs { authenticated: true, parameters: true, body: Some(BodyKind::Json) },
                vec!["400", "401", "413", "422", "429", "500", "503"],
            ),
            (Inputs { body: Some(BodyKind::Other), ..open }, vec!["400", "413"]),
        ];
        for (inputs, want) in table {
            assert_eq!(extractor_statuses(inputs), want, "{inputs:?}");
        }
    }
}
