//! Bulk jobs: upload a CSV (202 with the job's id; rows stored in PostgreSQL, chunks queued in
//! Redis), follow its progress, and stream its results as CSV.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{stream, FutureExt as _};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{PathParams, QueryParams, RawBody};
use crate::auth::{Action, Caller};
use crate::csvio::{self, CsvError};
use crate::db::jobs::{self, Job};
use crate::deps::Dependency;
use crate::error::{ApiError, ErrorBody};
use crate::queue::{self, Message};
use crate::state::AppState;

/// Rows per chunk (the documented unit of work and of progress).
pub const CHUNK_ROWS: usize = 100;

/// Results read from PostgreSQL per page of the export stream.
const EXPORT_PAGE: i64 = 5000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", get(list).post(upload))
        .route("/api/v1/jobs/{job_id}", get(status))
        .route("/api/v1/jobs/{job_id}/results", get(results))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// critical, high, normal, low or batch (default).
    #[param(schema_with = priority_schema)]
    pub priority: Option<String>,
}

fn priority_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(queue::PRIORITIES.map(|(name, _)| name)))
        .build()
}

/// The CSV upload, for the document: a string whose pattern is the canonical layout (header, then
/// rows of ten numbers), so that generated clients and fuzzers send uploads the server accepts.
pub struct UploadCsv;

impl utoipa::PartialSchema for UploadCsv {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let number = "-?[0-9]{1,9}(\\.[0-9]{1,4})?";
        let header = csvio::INPUT_COLUMNS.join(",");
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(format!("^{header}\n({number}(,{number}){{9}}\n){{1,20}}$")))
            .examples([format!("{header}\n1000,300,400,150,350,150,100,90,140,700\n")])
            .into()
    }
}

impl ToSchema for UploadCsv {}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    pub status_url: String,
    pub results_url: String,
    pub rows: usize,
    pub chunks: i32,
}

impl From<CsvError> for ApiError {
    fn from(e: CsvError) -> Self {
        match e {
            CsvError::TooManyRows { .. } => ApiError::TooLarge(e.to_string()),
            CsvError::NotANumber { column, .. } => ApiError::invalid(column, e.to_string()),
            CsvError::MissingColumn(column) => ApiError::invalid(column, e.to_string()),
            other => ApiError::invalid("body", other.to_string()),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", params(UploadQuery),
    request_body(content = UploadCsv, content_type = "text/csv",
        description = "A header line naming the columns total_assets, total_liabilities, current_assets, \
                       current_liabilities, retained_earnings, ebit, net_income, previous_net_income, \
                       funds_from_operations, book_equity (and optionally reference, echoed in the results), \
                       then up to 100,000 rows of numbers. The schema's pattern is the canonical layout; \
                       columns in another order, quoted fields and CRLF line ends are accepted too. A row \
                       the model cannot score becomes an error in the results, not a rejected upload."),
    responses(
        (status = 202, description = "Accepted: every row will have a result or an error", body = Accepted),
        (status = 403, description = "The key's role may not submit jobs", body = ErrorBody),
        (status = 413, description = "More rows than the server accepts, or a body over 64 MiB", body = ErrorBody),
        (status = 422, description = "The CSV is malformed or the priority unknown; the message names line and column", body = ErrorBody),
    ))]
#[instrument(skip_all, fields(tenant = %caller.tenant))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<UploadQuery>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    caller.require(Action::Write, "submit jobs")?;
    let priority_name = q.priority.as_deref().unwrap_or("batch");
    let priority = queue::priority_value(priority_name).ok_or_else(|| {
        ApiError::invalid(
            "priority",
            format!("priority must be critical, high, normal, low or batch, got {priority_name:?}"),
        )
    })?;
    let max_rows = state.settings.bulk_max_rows;
    let rows =
        tokio::task::spawn_blocking(move || csvio::parse(&body, max_rows)).await.map_err(ApiError::internal)??;
    let mut tx = state.db.begin().await?;
    let created = jobs::create(&mut tx, caller.tenant, priority, &rows, CHUNK_ROWS).await;
    let (id, chunks) = state.db.finish(tx, created).await?;
    let messages: Vec<Message> = (0..chunks).map(|chunk| Message { job: id, chunk, priority, attempt: 0 }).collect();
    let queued = match state.db.deps.admit(Dependency::Redis) {
        Ok(()) => state.db.deps.redis(state.queue.push(&messages).await),
        Err(e) => Err(e),
    };
    if let Err(e) = queued {
        // Not accepted after all: say so in the job too, so nothing waits for it.
        let mut tx = state.db.begin().await?;
        let failed = jobs::fail(&mut tx, caller.tenant, id, "the job queue was unavailable at upload").await;
        state.db.finish(tx, failed).await?;
        return Err(e);
    }
    tracing::info!(job = %id, rows = rows.len(), chunks, priority = priority_name, "bulk job accepted");
    let accepted = Accepted {
        id,
        status_url: format!("/api/v1/jobs/{id}"),
        results_url: format!("/api/v1/jobs/{id}/results"),
        rows: rows.len(),
        chunks,
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobStatus {
    #[serde(flatten)]
    pub job: Job,
    /// Chunks finished (done or failed for good) over all chunks, in percent.
    pub progress_percent: f64,
}

impl From<Job> for JobStatus {
    fn from(job: Job) -> Self {
        let finished = f64::from(job.chunks_done + job.chunks_dead);
        let progress_percent =
            if job.chunks_total > 0 { 100.0 * finished / f64::from(job.chunks_total) } else { 100.0 };
        Self { job, progress_percent }
    }
}

#[utoipa::path(get, path = "/api/v1/jobs/{job_id}", tag = "jobs", params(("job_id" = Uuid, Path)),
    responses((status = 200, body = JobStatus), (status = 404, description = "No job with this id", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, job = %id))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<Uuid>,
) -> Result<Json<JobStatus>, ApiError> {
    let tenant = caller.tenant;
    let found = state.db.read(|tx| jobs::get(tx, tenant, id).boxed()).await?;
    let job = found.ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
    Ok(Json(job.into()))
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, description = "Pending and processing jobs, oldest first", body = [JobStatus])))]
#[instrument(skip_all, fields(tenant = %caller.tenant))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<JobStatus>>, ApiError> {
    let tenant = caller.tenant;
    let found = state.db.read(|tx| jobs::unfinished(tx, tenant, 500).boxed()).await?;
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/results", tag = "jobs", params(("job_id" = Uuid, Path)),
    responses((status = 200, description = "CSV: row,reference,probability,risk_level,zone,error; rows so far, in order",
        content_type = "text/csv", body = String), (status = 404, description = "No job with this id", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant, job = %id))]
pub async fn results(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<Uuid>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant;
    let found = state.db.read(|tx| jobs::get(tx, tenant, id).boxed()).await?;
    found.ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
    // Pages of short transactions, not one long cursor: PgBouncer lends a server connection per
    // transaction, and a slow client must not hold one.
    let pages = stream::unfold(Some(-1), move |after| {
        let state = state.clone();
        async move {
            let after = after?;
            let page = state.db.read(|tx| jobs::results(tx, id, after, EXPORT_PAGE).boxed()).await;
            match page {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = (rows.len() as i64 == EXPORT_PAGE).then(|| rows.last().map(|r| r.row_no)).flatten();
                    Some((Ok::<_, ApiError>(Bytes::from(csvio::write_results(&rows))), next))
                }
                Err(e) => {
                    tracing::warn!(error = %e, job = %id, "results export stopped");
                    Some((Err(e), None))
                }
            }
        }
    });
    let header = stream::once(async { Ok::<_, ApiError>(Bytes::from_static(csvio::RESULT_HEADER.as_bytes())) });
    // Fused: a consumer may poll again after the end (the compression layer does), which an
    // unfold stream answers with a panic.
    let body = Body::from_stream(futures::StreamExt::fuse(futures::StreamExt::chain(header, pages)));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"results.csv\""),
        ],
        body,
    )
        .into_response())
}
