//! Read endpoints: the platform list, one platform, its scaling decisions and its breakers.

use axum::extract::State;
use axum::Json;
use kube::api::ListParams;
use tracing::instrument;

use super::error::{ApiError, ErrorBody};
use super::model::{BreakersView, DecisionsView, Platform, PlatformDetail, PlatformSummary};
use super::{PlatformRef, RestState};

/// Lists every RiskPlatform in all namespaces with a summary.
#[utoipa::path(
    get,
    path = "/api/v1/platforms",
    tag = "platforms",
    responses(
        (status = 200, description = "All platforms, sorted by namespace and name", body = [PlatformSummary]),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 502, description = "The Kubernetes API failed", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    )
)]
#[instrument(skip_all)]
pub async fn list(State(state): State<RestState>) -> Result<Json<Vec<PlatformSummary>>, ApiError> {
    let objects = state.all_platforms().list(&ListParams::default()).await?;
    let mut summaries =
        objects.items.into_iter().map(|obj| Platform::try_from(obj)?.summary()).collect::<Result<Vec<_>, _>>()?;
    summaries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(Json(summaries))
}

/// One platform: a summary of its spec and its full status.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/platforms/{name}",
    tag = "platforms",
    params(PlatformRef),
    responses(
        (status = 200, description = "The platform", body = PlatformDetail),
        (status = 400, description = "Namespace or name is not a valid Kubernetes name", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 502, description = "The Kubernetes API failed", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    )
)]
#[instrument(skip_all, fields(namespace = %target.namespace, name = %target.name))]
pub async fn get(State(state): State<RestState>, target: PlatformRef) -> Result<Json<PlatformDetail>, ApiError> {
    Ok(Json(state.platform(&target).await?.detail()))
}

/// The autoscaler's recent decisions for a platform, with their inputs and reasons.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/platforms/{name}/decisions",
    tag = "platforms",
    params(PlatformRef),
    responses(
        (status = 200, description = "status.autoscaling as stored", body = DecisionsView),
        (status = 400, description = "Namespace or name is not a valid Kubernetes name", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 502, description = "The Kubernetes API failed", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    )
)]
#[instrument(skip_all, fields(namespace = %target.namespace, name = %target.name))]
pub async fn decisions(State(state): State<RestState>, target: PlatformRef) -> Result<Json<DecisionsView>, ApiError> {
    Ok(Json(state.platform(&target).await?.decisions()))
}

/// The circuit breakers of a platform: overrides from the spec and states from the status.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/platforms/{name}/breakers",
    tag = "platforms",
    params(PlatformRef),
    responses(
        (status = 200, description = "Overrides and observed breaker states", body = BreakersView),
        (status = 400, description = "Namespace or name is not a valid Kubernetes name", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 502, description = "The Kubernetes API failed", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    )
)]
#[instrument(skip_all, fields(namespace = %target.namespace, name = %target.name))]
pub async fn breakers(State(state): State<RestState>, target: PlatformRef) -> Result<Json<BreakersView>, ApiError> {
    Ok(Json(state.platform(&target).await?.breakers()))
}
