//! Actions that change intent: each writes one field of the RiskPlatform's spec, so the resource
//! stays the source of truth and the controller acts on it like on any other spec change.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde_json::json;
use tracing::instrument;

use super::error::{ApiError, ErrorBody};
use super::model::{parse_breaker_mode, BreakerModeRequest, BreakersView, Component, Dependency, PauseView};
use super::{PlatformRef, RestState};

/// Pauses autoscaling of one component: sets spec.autoscaling.{component}.paused to true.
#[utoipa::path(
    post,
    path = "/api/v1/namespaces/{namespace}/platforms/{name}/autoscaling/{component}/pause",
    tag = "actions",
    params(PlatformRef, ("component" = String, Path, description = "api or workers")),
    responses(
        (status = 200, description = "Autoscaling of the component is paused", body = PauseView),
        (status = 400, description = "Unknown component, or invalid namespace or name", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 409, description = "The platform changed concurrently", body = ErrorBody),
        (status = 502, description = "The Kubernetes API failed", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    )
)]
#[instrument(skip_all, fields(namespace = %target.namespace, name = %target.name, component = component.as_str()))]
pub async fn pause(
    State(state): State<RestState>,
    target: PlatformRef,
    component: Component,
) -> Result<Json<PauseView>, ApiError> {
    set_paused(&state, &target, component, true).await
}

/// Resumes autoscaling of one component: sets spec.autoscaling.{component}.paused to false.
#[utoipa::path(
    post,
    path = "/api/v1/namespaces/{namespace}/platforms/{name}/autoscaling/{component}/resume",
    tag = "actions",
    params(PlatformRef, ("component" = String, Path, description = "api or workers")),
    responses(
        (status = 200, description = "Autoscaling of the component is resumed", body = PauseView),
        (status = 400, description = "Unknown component, or invalid namespace or name", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 409, description = "The platform changed concurrently", body = ErrorBody),
        (status = 502, description = "The Kubernetes API failed", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    )
)]
#[instrument(skip_all, fields(namespace = %target.namespace, name = %target.name, component = component.as_str()))]
pub async fn resume(
    State(state): State<RestState>,
    target: PlatformRef,
    component: Component,
) -> Result<Json<PauseView>, ApiError> {
    set_paused(&state, &target, component, false).await
}

async fn set_paused(
    state: &RestState,
    target: &PlatformRef,
    component: Component,
    paused: bool,
) -> Result<Json<PauseView>, ApiError> {
    let spec = json!({ "autoscaling": { component.as_str(): { "paused": paused } } });
    let platform = state.patch_spec(target, spec).await?;
    tracing::info!(paused, generation = ?platform.generation, "autoscaling pause set through the REST API");
    Ok(Json(platform.pause_state(component)))
}

/// Forces a dependency's circuit breaker, or hands it back to the failure counters.
///
/// Sets spec.circuitBreaker.overrides.{dependency} to the mode; `Auto` returns the breaker to the
/// failure counters.
#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{namespace}/platforms/{name}/breakers/{dependency}",
    tag = "actions",
    params(PlatformRef, ("dependency" = String, Path, description = "database or redis")),
    request_body = BreakerModeRequest,
    responses(
        (status = 200, description = "The breakers after the change", body = BreakersView),
        (status = 400, description = "Unknown dependency or mode, malformed body, or invalid namespace or name", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such platform", body = ErrorBody),
        (status = 409, description = "The platform changed concurrently", body = ErrorBody),
        (status = 502, description = "The Kubernetes API failed", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody),
    )
)]
#[instrument(skip_all, fields(namespace = %target.namespace, name = %target.name, dependency = dependency.as_str()))]
pub async fn set_breaker(
    State(state): State<RestState>,
    target: PlatformRef,
    dependency: Dependency,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BreakersView>, ApiError> {
    let body = body.map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
    let mode = parse_breaker_mode(&body)?;
    let spec = json!({ "circuitBreaker": { "overrides": { dependency.as_str(): mode } } });
    let platform = state.patch_spec(&target, spec).await?;
    tracing::info!(?mode, generation = ?platform.generation, "breaker override set through the REST API");
    Ok(Json(platform.breakers()))
}
