//! `/api/v1/companies`: create, list (search by symbol prefix), get, update, deactivate.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;
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

/// Upper-cases and checks a ticker symbol: 1-16 of A-Z, 0-9, `.` and `-`.
fn symbol(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim().to_ascii_uppercase();
    let ok = (1..=16).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if ok {
        Ok(s)
    } else {
        Err(ApiError::invalid("symbol", format!("symbol must be 1-16 letters, digits, '.' or '-', got {raw:?}")))
    }
}

fn name(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 200 {
        return Err(ApiError::invalid("name", "name must be 1-200 characters"));
    }
    Ok(s.to_owned())
}

fn taken(symbol: &str) -> ApiError {
    ApiError::Conflict(format!("an active company with symbol {symbol} exists"))
}

/// Loads an active company of the caller's tenant (through the company cache) or answers 404.
pub async fn active_company(state: &AppState, caller: &Caller, id: Uuid) -> Result<Company, ApiError> {
    let key = format!("{}:{id}", caller.tenant);
    let company = match state.companies.get(&key).await {
        Some(c) => c,
        None => {
            let mut tx = state.db.begin().await?;
            let found = companies::get(&mut tx, caller.tenant, id).await;
            let company =
                state.db.finish(tx, found).await?.ok_or_else(|| ApiError::NotFound(format!("company {id}")))?;
            state.companies.put(&key, &company).await;
            company
        }
    };
    if company.active {
        Ok(company)
    } else {
        Err(ApiError::NotFound(format!("active company {id}")))
    }
}

#[utoipa::path(post, path = "/api/v1/companies", tag = "companies", request_body = NewCompany,
    responses(
        (status = 201, body = Company),
        (status = 409, description = "An active company has this symbol", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    ))]
#[instrument(skip_all, fields(tenant = %caller.tenant))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewCompany>,
) -> Result<(StatusCode, Json<Company>), ApiError> {
    caller.require(Action::Write, "create companies")?;
    let new = NewCompany { symbol: symbol(&new.symbol)?, name: name(&new.name)?, sector: new.sector };
    let mut tx = state.db.begin().await?;
    let inserted = companies::insert(&mut tx, caller.tenant, &new).await;
    let company = state.db.finish(tx, inserted).await?.ok_or_else(|| taken(&new.symbol))?;
    Ok((StatusCode::CREATED, Json(company)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Companies whose symbol starts with this (case-insensitive).
    pub symbol: Option<String>,
    /// Include deactivated companies.
    #[serde(default)]
    pub include_inactive: bool,
    pub limit: Option<i64>,
    #[serde(default)]
    pub offset: i64,
}

#[utoipa::path(get, path = "/api/v1/companies", tag = "companies", params(ListQuery),
    responses((status = 200, body = [Company]), (status = 422, body = ErrorBody)))]
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
    let prefix = q.symbol.as_deref().map(|s| s.trim().to_ascii_uppercase());
    let mut tx = state.db.begin().await?;
    let found = companies::list(&mut tx, caller.tenant, prefix.as_deref(), q.include_inactive, limit, q.offset).await;
    Ok(Json(state.db.finish(tx, found).await?))
}

#[utoipa::path(get, path = "/api/v1/companies/{company_id}", tag = "companies",
    params(("company_id" = Uuid, Path)),
    responses((status = 200, body = Company), (status = 404, body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %id))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<Company>, ApiError> {
    let mut tx = state.db.begin().await?;
    let found = companies::get(&mut tx, caller.tenant, id).await;
    let company = state.db.finish(tx, found).await?.ok_or_else(|| ApiError::NotFound(format!("company {id}")))?;
    Ok(Json(company))
}

#[utoipa::path(patch, path = "/api/v1/companies/{company_id}", tag = "companies", request_body = CompanyPatch,
    params(("company_id" = Uuid, Path)),
    responses((status = 200, body = Company), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %id))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<Uuid>,
    JsonBody(patch): JsonBody<CompanyPatch>,
) -> Result<Json<Company>, ApiError> {
    caller.require(Action::Write, "update companies")?;
    let patch = CompanyPatch {
        symbol: patch.symbol.as_deref().map(symbol).transpose()?,
        name: patch.name.as_deref().map(name).transpose()?,
        sector: patch.sector,
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
    state.companies.remove(&format!("{}:{id}", caller.tenant)).await;
    Ok(Json(company))
}

#[utoipa::path(delete, path = "/api/v1/companies/{company_id}", tag = "companies",
    params(("company_id" = Uuid, Path)),
    responses((status = 200, description = "Deactivated; its history stays", body = Company),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
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
    state.companies.remove(&format!("{}:{id}", caller.tenant)).await;
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
    }
}
