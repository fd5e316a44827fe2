//! `/api/v1/keys`: an admin creates further API keys for their own tenant.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::JsonBody;
use crate::auth::{self, Action, Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/keys", post(create))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// admin, analyst or viewer.
    #[schema(value_type = Role)]
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: Uuid,
    /// Shown once: only its digest is stored.
    pub key: String,
    pub role: Role,
}

#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = CreatedKey),
        (status = 403, description = "Only an admin key may create keys", body = ErrorBody),
        (status = 422, description = "The role is not admin, analyst or viewer", body = ErrorBody)))]
#[instrument(skip_all, fields(tenant = %caller.tenant))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    caller.require(Action::Administer, "create API keys")?;
    let role = Role::parse(&new.role).ok_or_else(|| {
        ApiError::invalid("role", format!("role must be admin, analyst or viewer, got {:?}", new.role))
    })?;
    let (key, digest) = auth::new_key();
    let mut tx = state.db.begin().await?;
    let added = crate::db::tenants::add_key(&mut tx, caller.tenant, role, &digest, &auth::key_prefix(&key)).await;
    let id = state.db.finish(tx, added).await?;
    tracing::info!(key_id = %id, role = role.as_str(), "API key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { id, key, role })))
}
