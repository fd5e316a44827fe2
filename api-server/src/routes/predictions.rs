//! Predictions: one for a company (from a stored statement or an inline one, served from the
//! cache when the same input was scored by the same model version), a synchronous batch of up to
//! 1,000 inline statements, and a company's paginated history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::companies::active_company;
use super::{page_limit, JsonBody, PathParams, QueryParams};
use crate::auth::{hex, Action, Caller};
use crate::db::predictions::{self, HistoryEntry, NewPrediction, PredictionRecord};
use crate::db::statements;
use crate::error::{ApiError, ErrorBody};
use crate::metrics::PredictionLabels;
use crate::model::{self, Prediction, Statement};
use crate::state::AppState;

/// Most statements in one batch request.
pub const BATCH_LIMIT: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/companies/{company_id}/predictions", get(history).post(predict))
        .route("/api/v1/companies/{company_id}/predictions/latest", get(latest))
        .route("/api/v1/predictions/batch", post(batch))
}

/// Name a stored statement or give one inline (exactly one of the two).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub statement_id: Option<Uuid>,
    pub statement: Option<Statement>,
}

/// Two shapes, one field each: a struct's derived schema could not say "exactly one".
impl utoipa::PartialSchema for PredictRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        let one_field = |name: &str, schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(name, schema)
                .required(name)
                .additional_properties(Some(AdditionalProperties::<utoipa::openapi::schema::Schema>::FreeForm(false)))
        };
        OneOfBuilder::new()
            .description(Some("Name a stored statement or give one inline (exactly one of the two)"))
            .item(one_field(
                "statement_id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into(),
            ))
            .item(one_field("statement", utoipa::openapi::Ref::from_schema_name("Statement").into()))
            .into()
    }
}

impl ToSchema for PredictRequest {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push(("Statement".to_owned(), <Statement as utoipa::PartialSchema>::schema()));
    }
}

/// The cache key of a prediction: tenant, company, model version and the input (a stored
/// statement's id, statements being immutable, or a digest of the inline statement), so another
/// tenant, another company or a new model version never shares an entry.
pub fn cache_key(model_version: &str, tenant: Uuid, company: Uuid, input: &PredictionInput) -> String {
    match input {
        PredictionInput::Stored(id) => format!("{model_version}:{tenant}:{company}:s:{id}"),
        PredictionInput::Inline(s) => {
            format!("{model_version}:{tenant}:{company}:i:{}", hex(&input_hash(model_version, s)))
        }
    }
}

/// SHA-256 over the model version and the statement's canonical JSON (fields in declaration order).
pub fn input_hash(model_version: &str, s: &Statement) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(model_version.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(s).unwrap_or_default());
    h.finalize().to_vec()
}

pub enum PredictionInput {
    Stored(Uuid),
    Inline(Statement),
}

fn score(state: &AppState, s: &Statement, source: &'static str) -> Result<Prediction, ApiError> {
    let mut p = model::predict(s)?;
    p.model_version.clone_from(&state.settings.model_version);
    state.metrics.predictions.get_or_create(&PredictionLabels { risk_level: p.risk_level.as_str(), source }).inc();
    Ok(p)
}

#[utoipa::path(post, path = "/api/v1/companies/{company_id}/predictions", tag = "predictions",
    request_body = PredictRequest, params(("company_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The same input was scored by this model version before (from cache)", body = PredictionRecord),
        (status = 201, description = "Scored and stored", body = PredictionRecord),
        (status = 403, description = "The key's role may not request predictions", body = ErrorBody),
        (status = 404, description = "No active company with this id, or no such statement of it", body = ErrorBody),
        (status = 422, description = "The statement cannot be scored; `field` names the input", body = ErrorBody),
    ))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %company_id))]
pub async fn predict(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(company_id): PathParams<Uuid>,
    JsonBody(request): JsonBody<PredictRequest>,
) -> Result<(StatusCode, Json<PredictionRecord>), ApiError> {
    caller.require(Action::Write, "request predictions")?;
    let input = match (request.statement_id, request.statement) {
        (Some(id), None) => PredictionInput::Stored(id),
        (None, Some(s)) => {
            model::validate(&s)?;
            PredictionInput::Inline(s)
        }
        _ => return Err(ApiError::invalid("statement", "give exactly one of statement_id and statement")),
    };
    // Checked before the prediction cache: a deactivated company's cached predictions stay in
    // L1 and L2 until their TTL but are never served. The company cache answers from L1 on the
    // hot path and every pod's copy follows a deactivation (invalidation.rs).
    active_company(&state, &caller, company_id).await?;
    let version = state.settings.model_version.clone();
    let key = cache_key(&version, caller.tenant, company_id, &input);
    if let Some(hit) = state.predictions.get(&key).await {
        return Ok((StatusCode::OK, Json(hit)));
    }
    let (statement_id, statement) = match input {
        PredictionInput::Inline(s) => (None, s),
        PredictionInput::Stored(id) => {
            let mut tx = state.db.begin().await?;
            let found = statements::get(&mut tx, caller.tenant, company_id, id).await;
            let stored = state
                .db
                .finish(tx, found)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("statement {id} of company {company_id}")))?;
            (Some(id), stored.statement)
        }
    };
    let prediction = score(&state, &statement, "api")?;
    let input_hash = input_hash(&version, &statement);
    let record = state
        .writer
        .write(NewPrediction {
            tenant: caller.tenant,
            company: company_id,
            statement: statement_id,
            input_hash,
            prediction,
        })
        .await?;
    state.predictions.put(&key, &record).await;
    Ok((StatusCode::CREATED, Json(record)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1,000 statements.
    #[schema(min_items = 1, max_items = 1000)]
    pub statements: Vec<Statement>,
}

/// One batch item: its prediction, or why it could not be scored.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BatchError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub model_version: String,
    pub results: Vec<BatchItem>,
}

#[utoipa::path(post, path = "/api/v1/predictions/batch", tag = "predictions", request_body = BatchRequest,
    responses((status = 200, description = "One result per statement, in order; bad statements carry an error", body = BatchResponse),
        (status = 403, description = "The key's role may not request predictions", body = ErrorBody),
        (status = 422, description = "No statements or more than 1,000", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, size = request.statements.len()))]
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    caller.require(Action::Write, "request predictions")?;
    let n = request.statements.len();
    if n == 0 || n > BATCH_LIMIT {
        return Err(ApiError::invalid("statements", format!("send 1 to {BATCH_LIMIT} statements, got {n}")));
    }
    let results = request
        .statements
        .iter()
        .enumerate()
        .map(|(index, s)| match score(&state, s, "api") {
            Ok(p) => BatchItem { index, prediction: Some(p), error: None },
            Err(ApiError::Invalid { field, message }) => BatchItem {
                index,
                prediction: None,
                error: Some(BatchError { field: format!("statements[{index}].{field}"), message }),
            },
            Err(other) => BatchItem {
                index,
                prediction: None,
                error: Some(BatchError { field: format!("statements[{index}]"), message: other.to_string() }),
            },
        })
        .collect();
    Ok(Json(BatchResponse { model_version: state.settings.model_version.clone(), results }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only predictions made at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only predictions made before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub items: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(e: &HistoryEntry) -> String {
    format!("{}_{}", e.created_at.timestamp_micros(), e.id)
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::invalid("cursor", "cursor must be a next_cursor value from a previous page");
    let (micros, id) = raw.split_once('_').ok_or_else(bad)?;
    let time = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    Ok((time, id.parse().map_err(|_| bad())?))
}

#[utoipa::path(get, path = "/api/v1/companies/{company_id}/predictions", tag = "predictions",
    params(("company_id" = Uuid, Path), HistoryQuery),
    responses((status = 200, description = "Newest first", body = HistoryPage),
        (status = 404, description = "No company with this id", body = ErrorBody),
        (status = 422, description = "limit or cursor is out of range, or from is not before to", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %company_id))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(company_id): PathParams<Uuid>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(ApiError::invalid("from", "from must be before to"));
        }
    }
    // The company is looked up only when the page is empty (to tell "no such company" from "no
    // predictions"), which saves a statement on the common path.
    let tenant = caller.tenant;
    let found = state
        .db
        .read(move |tx| {
            async move {
                let items = predictions::history(tx, tenant, company_id, q.from, q.to, after, limit).await?;
                if items.is_empty() && crate::db::companies::get(tx, tenant, company_id).await?.is_none() {
                    return Ok(None);
                }
                Ok(Some(items))
            }
            .boxed()
        })
        .await?;
    let items = found.ok_or_else(|| ApiError::NotFound(format!("company {company_id}")))?;
    let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(encode_cursor)).flatten();
    Ok(Json(HistoryPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/api/v1/companies/{company_id}/predictions/latest", tag = "predictions",
    params(("company_id" = Uuid, Path)),
    responses((status = 200, body = PredictionRecord),
        (status = 404, description = "No predictions of a company with this id", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, company = %company_id))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(company_id): PathParams<Uuid>,
) -> Result<Json<PredictionRecord>, ApiError> {
    let tenant = caller.tenant;
    let found = state.db.read(|tx| predictions::latest(tx, tenant, company_id).boxed()).await?;
    Ok(Json(found.ok_or_else(|| ApiError::NotFound(format!("predictions of company {company_id}")))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::healthy as statement;

    #[test]
    fn a_new_model_version_or_another_tenant_never_shares_a_cache_key() {
        let (t1, t2, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let inline = PredictionInput::Inline(statement());
        let base = cache_key("v1", t1, c, &inline);
        assert_eq!(base, cache_key("v1", t1, c, &PredictionInput::Inline(statement())));
        assert_ne!(base, cache_key("v2", t1, c, &inline));
        assert_ne!(base, cache_key("v1", t2, c, &inline));
        let mut changed = statement();
        changed.ebit += 1.0;
        assert_ne!(base, cache_key("v1", t1, c, &PredictionInput::Inline(changed)));
        let stored = PredictionInput::Stored(Uuid::new_v4());
        assert_ne!(cache_key("v1", t1, c, &stored), cache_key("v2", t1, c, &stored));
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let e = HistoryEntry {
            id: Uuid::new_v4(),
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("time"),
            probability: 0.1,
            risk_level: "medium".to_owned(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&e)).ok(), Some((e.created_at, e.id)));
        for bad in ["", "abc", "123_not-a-uuid", "x_00000000-0000-0000-0000-000000000000"] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
