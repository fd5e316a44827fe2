//! The OpenAPI 3.1 document of the REST API, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{actions, platforms};

/// Name of the security scheme in the document.
const BEARER: &str = "bearer_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RiskPlatform operator API",
        description = "What the operator sees and decides about RiskPlatforms, and actions that change \
                       their intent by writing the RiskPlatform itself. Every error has the body \
                       {\"error\": {\"code\": ..., \"message\": ...}}."
    ),
    paths(
        platforms::list,
        platforms::get,
        platforms::decisions,
        platforms::breakers,
        actions::pause,
        actions::resume,
        actions::set_breaker,
        document,
    ),
    modifiers(&BearerToken),
    // The macro takes a literal: it must equal BEARER.
    security(("bearer_token" = [])),
    tags(
        (name = "platforms", description = "Read platforms, scaling decisions and circuit breakers"),
        (name = "actions", description = "Change intent: written to the RiskPlatform's spec"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token that every endpoint but the document requires.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The token from the Secret key mounted at --api-token-file"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
