//! Liveness (the process answers) and readiness (PostgreSQL through PgBouncer and Redis answer,
//! within a second each), with each dependency's breaker state.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use redis::AsyncCommands;
use serde::Serialize;
use utoipa::ToSchema;

use crate::deps::Dependency;
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// ok or unavailable.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub dependency: Dependency,
    pub ok: bool,
    /// This pod's breaker for the dependency: Closed, Open, HalfOpen or Disabled.
    pub breaker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/health/live", tag = "health", security(), responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "ok", checks: Vec::new() })
}

async fn check<F>(state: &AppState, dependency: Dependency, probe: F) -> Check
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let error = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
    };
    let breaker = format!("{:?}", state.db.deps.state(dependency));
    Check { dependency, ok: error.is_none(), breaker, error }
}

#[utoipa::path(get, path = "/health/ready", tag = "health", security(),
    responses((status = 200, body = Health), (status = 503, description = "PostgreSQL or Redis is unreachable", body = Health)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = check(&state, Dependency::Database, async { state.db.ping().await.map_err(|e| e.to_string()) });
    let redis = check(&state, Dependency::Redis, async {
        state.db.deps.admit(Dependency::Redis).map_err(|e| e.to_string())?;
        let mut conn = state.redis.clone();
        let pong: redis::RedisResult<String> = conn.ping().await;
        state.db.deps.redis(pong).map(|_| ()).map_err(|e| e.to_string())
    });
    let (database, redis) = tokio::join!(database, redis);
    let ok = database.ok && redis.ok;
    let health = Health { status: if ok { "ok" } else { "unavailable" }, checks: vec![database, redis] };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(health))
}
