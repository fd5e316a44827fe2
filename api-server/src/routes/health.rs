//! Liveness (the process answers) and readiness (PostgreSQL through PgBouncer and Redis answer,
//! within a second each), with each dependency's breaker state.

use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use redis::AsyncCommands;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::Db;
use crate::deps::Dependency;
use crate::state::AppState;

/// What readiness probes: the database (through PgBouncer) and Redis, the same connections the
/// process serves with.
#[derive(Clone)]
pub struct Probes {
    pub db: Db,
    pub redis: redis::aio::ConnectionManager,
}

impl FromRef<AppState> for Probes {
    fn from_ref(state: &AppState) -> Self {
        Self { db: state.db.clone(), redis: state.redis.clone() }
    }
}

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

async fn check<F>(probes: &Probes, dependency: Dependency, probe: F) -> Check
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let error = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
    };
    let breaker = format!("{:?}", probes.db.deps.state(dependency));
    Check { dependency, ok: error.is_none(), breaker, error }
}

#[utoipa::path(get, path = "/health/ready", tag = "health", security(),
    responses((status = 200, body = Health), (status = 503, description = "PostgreSQL or Redis is unreachable", body = Health)))]
pub async fn ready(State(probes): State<Probes>) -> (StatusCode, Json<Health>) {
    let database = check(&probes, Dependency::Database, async { probes.db.ping().await.map_err(|e| e.to_string()) });
    let redis = check(&probes, Dependency::Redis, async {
        probes.db.deps.admit(Dependency::Redis).map_err(|e| e.to_string())?;
        let mut conn = probes.redis.clone();
        let pong: redis::RedisResult<String> = conn.ping().await;
        probes.db.deps.redis(pong).map(|_| ()).map_err(|e| e.to_string())
    });
    let (database, redis) = tokio::join!(database, redis);
    let ok = database.ok && redis.ok;
    let health = Health { status: if ok { "ok" } else { "unavailable" }, checks: vec![database, redis] };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(health))
}
