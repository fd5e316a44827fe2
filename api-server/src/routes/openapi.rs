//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        health::live, health::ready,
        document,
    ),
    modifiers(&BearerKey),
    // The macro takes a literal: it must be the scheme's name below.
    security(("api_key" = [])),
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An API key from `riskplatform-api admin create-tenant` or POST /api/v1/keys"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(), responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
