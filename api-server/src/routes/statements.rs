//! `/api/v1/companies/{id}/statements`: a company's financial statements, one per period.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::companies::active_company;
use super::{JsonBody, PathParams};
use crate::auth::{Action, Caller};
use crate::db::statements::{self, StoredStatement};
use crate::error::{ApiError, ErrorBody};
use crate::model::{self, Statement};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/companies/{company_id}/statements", get(list).post(create))
        .route("/api/v1/companies/{company_id}/statements/{statement_id}", get(read))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewStatement {
    /// The reporting period: a year (`2024`), a quarter (`2024-Q4`) or a half (`2024-H1`).
    #[schema(example = "2024-Q4", pattern = "^[0-9]{4}(-([Qq][1-4]|[Hh][12]))?$")]
    pub period: String,
    #[serde(flatten)]
    pub statement: Statement,
}

fn period(raw: &str) -> Result<String, ApiError> {
    let p = raw.trim().to_ascii_uppercase();
    let (year, part) = p.split_once('-').map_or((p.as_str(), None), |(y, r)| (y, Some(r)));
    let year_ok = year.len() == 4 && year.chars().all(|c| c.is_ascii_digit());
    let part_ok = part.is_none_or(|r| matches!(r, "Q1" | "Q2" | "Q3" | "Q4" | "H1" | "H2"));
    if year_ok && part_ok {
        Ok(p)
    } else {
        Err(ApiError::invalid("period", format!("period must look like 2024, 2024-Q4 or 2024-H1, got {raw:?}")))
    }
}

#[utoipa::path(post, path = "/api/v1/companies/{company_id}/statements", tag = "statements",
    request_body = NewStatement, params(("company_id" = Uuid, Path)),
    responses((status = 201, body = StoredStatement),
        (status = 403, description = "The key's role may not add statements", body = ErrorBody),
        (status = 404, description = "No active company with this id", body = ErrorBody),
        (status = 409, description = "The company has a statement for this period", body = ErrorBody),
        (status = 422, description = "A field is missing or cannot be scored", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %company_id))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(company_id): PathParams<Uuid>,
    JsonBody(new): JsonBody<NewStatement>,
) -> Result<(StatusCode, Json<StoredStatement>), ApiError> {
    caller.require(Action::Write, "add statements")?;
    let period = period(&new.period)?;
    model::validate(&new.statement)?;
    active_company(&state, &caller, company_id).await?;
    let mut tx = state.db.begin().await?;
    let inserted = statements::insert(&mut tx, caller.tenant, company_id, &period, &new.statement).await;
    let stored = state
        .db
        .finish(tx, inserted)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("company {company_id} has a statement for {period}")))?;
    Ok((StatusCode::CREATED, Json(stored)))
}

#[utoipa::path(get, path = "/api/v1/companies/{company_id}/statements", tag = "statements",
    params(("company_id" = Uuid, Path)),
    responses((status = 200, description = "Newest period first", body = [StoredStatement]),
        (status = 404, description = "No company with this id", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %company_id))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(company_id): PathParams<Uuid>,
) -> Result<Json<Vec<StoredStatement>>, ApiError> {
    let mut tx = state.db.begin().await?;
    let found = async {
        if crate::db::companies::get(&mut tx, caller.tenant, company_id).await?.is_none() {
            return Ok(None);
        }
        statements::list(&mut tx, caller.tenant, company_id).await.map(Some)
    }
    .await;
    let found = state.db.finish(tx, found).await?;
    found.map(Json).ok_or_else(|| ApiError::NotFound(format!("company {company_id}")))
}

#[utoipa::path(get, path = "/api/v1/companies/{company_id}/statements/{statement_id}", tag = "statements",
    params(("company_id" = Uuid, Path), ("statement_id" = Uuid, Path)),
    responses((status = 200, body = StoredStatement),
        (status = 404, description = "No such statement of this company", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %company_id))]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((company_id, statement_id)): PathParams<(Uuid, Uuid)>,
) -> Result<Json<StoredStatement>, ApiError> {
    let mut tx = state.db.begin().await?;
    let found = statements::get(&mut tx, caller.tenant, company_id, statement_id).await;
    let stored =
        state.db.finish(tx, found).await?.ok_or_else(|| ApiError::NotFound(format!("statement {statement_id}")))?;
    Ok(Json(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_years_quarters_or_halves() {
        for (raw, want) in [("2024", "2024"), ("2024-q4", "2024-Q4"), (" 2023-H1", "2023-H1")] {
            assert_eq!(period(raw).ok().as_deref(), Some(want));
        }
        for bad in ["24", "2024-Q5", "2024Q4", "next year", ""] {
            assert!(period(bad).is_err(), "{bad:?}");
        }
    }
}
