//! `/api/v1/companies`: create, list (search by symbol prefix), get, update, deactivate.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use futures::FutureExt as _;
use serde::Deserialize;
use tracing::instrument;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{page_limit, JsonBody, PathParams, QueryParams};
use crate::auth::{Action, Caller};
use crate::db::companies::{self, Company, CompanyPatch, NewCompany};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/companies", get(list).post(create))
        .route("/api/v1/companies/{company_id}", get(read).patch(update).delete(deactivate))
}

/// Longest company name and sector, in characters.
const NAME_MAX: usize = 200;
const SECTOR_MAX: usize = 100;

/// Text with at least one character that is not whitespace and no control character (the same
/// classes as `str::trim` and `char::is_control`).
const TEXT_PATTERN: &str =
    "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";

fn text_schema(max: usize, nullable: bool) -> Object {
    let types = if nullable { vec![Type::String, Type::Null] } else { vec![Type::String] };
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter(types))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(TEXT_PATTERN))
        .build()
}

fn name_schema() -> Object {
    text_schema(NAME_MAX, false)
}

fn optional_name_schema() -> Object {
    text_schema(NAME_MAX, true)
}

fn sector_schema() -> Object {
    text_schema(SECTOR_MAX, true)
}

/// A new company.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCompany {
    /// 1-16 letters, digits, `.` or `-`; stored upper-case.
    #[schema(example = "ACME", pattern = "^[A-Za-z0-9.-]{1,16}$")]
    pub symbol: String,
    #[schema(example = "Acme Corporation", schema_with = name_schema)]
    pub name: String,
    #[schema(example = "retail", schema_with = sector_schema)]
    pub sector: Option<String>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCompany {
    #[schema(pattern = "^[A-Za-z0-9.-]{1,16}$")]
    pub symbol: Option<String>,
    #[schema(schema_with = optional_name_schema)]
    pub name: Option<String>,
    #[schema(schema_with = sector_schema)]
    pub sector: Option<String>,
}

fn symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

/// Upper-cases and checks a ticker symbol: 1-16 of A-Z, 0-9, `.` and `-`.
fn symbol(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim().to_ascii_uppercase();
    if (1..=16).contains(&s.len()) && s.chars().all(symbol_char) {
        Ok(s)
    } else {
        Err(ApiError::invalid("symbol", format!("symbol must be 1-16 letters, digits, '.' or '-', got {raw:?}")))
    }
}

/// Upper-cases and checks a symbol prefix to search by: up to 16 symbol characters.
fn symbol_prefix(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim().to_ascii_uppercase();
    if s.len() <= 16 && s.chars().all(symbol_char) {
        Ok(s)
    } else {
        Err(ApiError::invalid("symbol", format!("symbol must be up to 16 letters, digits, '.' or '-', got {raw:?}")))
    }
}

/// Trims and checks a name or sector: 1 to `max` characters, no control characters (PostgreSQL
/// refuses NUL in text, and the others have no place in a name).
fn text(field: &'static str, raw: &str, max: usize) -> Result<String, ApiError> {
    let s = raw.trim();
    let length = s.chars().count();
    if length == 0 || length > max || s.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, format!("{field} must be 1-{max} characters without control characters")));
    }
    Ok(s.to_owned())
}

fn taken(symbol: &str) -> ApiError {
    ApiError::Conflict(format!("an active company with symbol {symbol} exists"))
}

/// The company cache's key of a company.
fn cache_key(tenant: Uuid, id: Uuid) -> String {
    format!("{tenant}:{id}")
}

/// Loads a company of the caller's tenant, active or not, through the company cache, or answers
/// 404.
async fn cached_company(state: &AppState, caller: &Caller, id: Uuid) -> Result<Company, ApiError> {
    // Filled from the primary, never a replica: a lagging replica's old row would be cached in
    // Redis (SET NX) for the company TTL, past the invalidation that announced the new one.
    let load = || async {
        let mut tx = state.db.begin().await?;
        let found = companies::get(&mut tx, caller.tenant, id).await;
        state.db.finish(tx, found).await
    };
    state
        .companies
        .get_or_load(&cache_key(caller.tenant, id), load)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("company {id}")))
}

/// Loads an active company of the caller's tenant (through the company cache) or answers 404.
pub async fn active_company(state: &AppState, caller: &Caller, id: Uuid) -> Result<Company, ApiError> {
    let company = cached_company(state, caller, id).await?;
    if company.active {
        Ok(company)
    } else {
        Err(ApiError::NotFound(format!("active company {id}")))
    }
}

#[utoipa::path(post, path = "/api/v1/companies", tag = "companies", request_body = CreateCompany,
    responses(
        (status = 201, body = Company),
        (status = 403, description = "The key's role may not create companies", body = ErrorBody),
        (status = 409, description = "An active company has this symbol", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    ))]
#[instrument(skip_all, fields(tenant = %caller.tenant))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<CreateCompany>,
) -> Result<(StatusCode, Json<Company>), ApiError> {
    caller.require(Action::Write, "create companies")?;
    let new = NewCompany {
        symbol: symbol(&new.symbol)?,
        name: text("name", &new.name, NAME_MAX)?,
        sector: new.sector.as_deref().map(|s| text("sector", s, SECTOR_MAX)).transpose()?,
    };
    let mut tx = state.db.begin().await?;
    let inserted = companies::insert(&mut tx, caller.tenant, &new).await;
    let company = state.db.finish(tx, inserted).await?.ok_or_else(|| taken(&new.symbol))?;
    Ok((StatusCode::CREATED, Json(company)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Companies whose symbol starts with this (case-insensitive).
    #[param(pattern = "^[A-Za-z0-9.-]{0,16}$")]
    pub symbol: Option<String>,
    /// Include deactivated companies.
    #[serde(default)]
    pub include_inactive: bool,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Companies to skip, default 0.
    #[serde(default)]
    #[param(minimum = 0)]
    pub offset: i64,
}

#[utoipa::path(get, path = "/api/v1/companies", tag = "companies", params(ListQuery),
    responses((status = 200, body = [Company]),
        (status = 422, description = "limit, offset or symbol is out of range", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Vec<Company>>, ApiError> {
    let limit = page_limit(q.limit)?;
    if q.offset < 0 {
        return Err(ApiError::invalid("offset", "offset must not be negative"));
    }
    let prefix = q.symbol.as_deref().map(symbol_prefix).transpose()?;
    let (tenant, include_inactive, offset) = (caller.tenant, q.include_inactive, q.offset);
    let found = state
        .db
        .read(move |tx| {
            let prefix = prefix.clone();
            async move { companies::list(tx, tenant, prefix.as_deref(), include_inactive, limit, offset).await }.boxed()
        })
        .await?;
    Ok(Json(found))
}

#[utoipa::path(get, path = "/api/v1/companies/{company_id}", tag = "companies",
    params(("company_id" = Uuid, Path)),
    responses((status = 200, body = Company), (status = 404, description = "No company with this id", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %id))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<Company>, ApiError> {
    Ok(Json(cached_company(&state, &caller, id).await?))
}

#[utoipa::path(patch, path = "/api/v1/companies/{company_id}", tag = "companies", request_body = UpdateCompany,
    params(("company_id" = Uuid, Path)),
    responses((status = 200, body = Company),
        (status = 403, description = "The key's role may not update companies", body = ErrorBody),
        (status = 404, description = "No active company with this id", body = ErrorBody),
        (status = 409, description = "An active company has the new symbol", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %id))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<Uuid>,
    JsonBody(patch): JsonBody<UpdateCompany>,
) -> Result<Json<Company>, ApiError> {
    caller.require(Action::Write, "update companies")?;
    let patch = CompanyPatch {
        symbol: patch.symbol.as_deref().map(symbol).transpose()?,
        name: patch.name.as_deref().map(|s| text("name", s, NAME_MAX)).transpose()?,
        sector: patch.sector.as_deref().map(|s| text("sector", s, SECTOR_MAX)).transpose()?,
    };
    let mut tx = state.db.begin().await?;
    let updated = companies::update(&mut tx, caller.tenant, id, &patch).await;
    let updated = match updated {
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(taken(patch.symbol.as_deref().unwrap_or_default()));
        }
        other => other,
    };
    let company =
        state.db.finish(tx, updated).await?.ok_or_else(|| ApiError::NotFound(format!("active company {id}")))?;
    state.companies.changed(&cache_key(caller.tenant, id), &company).await;
    Ok(Json(company))
}

#[utoipa::path(delete, path = "/api/v1/companies/{company_id}", tag = "companies",
    params(("company_id" = Uuid, Path)),
    responses((status = 200, description = "Deactivated; its history stays", body = Company),
        (status = 403, description = "Only an admin key may deactivate companies", body = ErrorBody),
        (status = 404, description = "No active company with this id", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %id))]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<Company>, ApiError> {
    caller.require(Action::Administer, "deactivate companies")?;
    let mut tx = state.db.begin().await?;
    let done = companies::deactivate(&mut tx, caller.tenant, id).await;
    let company = state.db.finish(tx, done).await?.ok_or_else(|| ApiError::NotFound(format!("active company {id}")))?;
    state.companies.changed(&cache_key(caller.tenant, id), &company).await;
    Ok(Json(company))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_upper_cased_and_checked() {
        assert_eq!(symbol(" brk.b ").ok().as_deref(), Some("BRK.B"));
        for bad in ["", "A B", "ÄPFEL", "ABCDEFGHIJKLMNOPQ"] {
            assert!(matches!(symbol(bad), Err(ApiError::Invalid { field, .. }) if field == "symbol"), "{bad:?}");
        }
        assert_eq!(symbol_prefix(" ac").ok().as_deref(), Some("AC"));
        assert_eq!(symbol_prefix("").ok().as_deref(), Some(""));
        for bad in ["A\0", "A%", "ABCDEFGHIJKLMNOPQ"] {
            assert!(symbol_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_counted_in_characters_and_free_of_control_characters() {
        let cases = [
            (" Acme ", 200, Some("Acme")),
            (&*"é".repeat(200), 200, Some(&*"é".repeat(200))),
            (&*"é".repeat(201), 200, None),
            ("   ", 200, None),
            ("Ac\0me", 200, None),
            ("Ac\u{85}me", 200, None),
            ("retail", 5, None),
        ];
        for (raw, max, want) in cases {
            assert_eq!(text("name", raw, max).ok().as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn the_symbol_pattern_of_the_document_is_the_one_checked() {
        let doc = serde_json::to_value(<CreateCompany as utoipa::PartialSchema>::schema()).expect("schema");
        assert_eq!(doc["properties"]["symbol"]["pattern"], "^[A-Za-z0-9.-]{1,16}$");
        assert!(symbol("A.B-1").is_ok() && symbol(&"A".repeat(16)).is_ok());
        assert_eq!(doc["properties"]["name"]["maxLength"], NAME_MAX);
        assert_eq!(doc["properties"]["sector"]["maxLength"], SECTOR_MAX);
    }
}
