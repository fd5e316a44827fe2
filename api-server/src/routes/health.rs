//! Liveness (the process answers) and readiness (PostgreSQL through PgBouncer and Redis answer,
//! within a second each), with each dependency's breaker state and, for a failed check, what kind
//! of failure it was (the cause itself goes to the log).

use std::borrow::Borrow;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use redis::AsyncCommands;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::Db;
use crate::deps::{is_redis_outage, Dependency, ProbeError};
use crate::state::AppState;

/// What readiness probes: the database (through PgBouncer) and Redis, the same connections the
/// process serves with.
#[derive(Clone)]
pub struct Probes {
    pub db: Db,
    pub redis: redis::aio::ConnectionManager,
    pub draining: crate::drain::Draining,
}

impl FromRef<AppState> for Probes {
    fn from_ref(state: &AppState) -> Self {
        Self { db: state.db.clone(), redis: state.redis.clone(), draining: state.draining.clone() }
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// ok, degraded (Ready: a dependency is down for the whole platform, as the operator
    /// published, and this pod serves what it can without it), unavailable, warming (reachable,
    /// its first connections still opening) or draining (the process is stopping: send no more
    /// traffic).
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
    /// For a failed check: timeout, refused, breaker_open, pool_timeout, io, tls, protocol,
    /// database (with its SQLSTATE class) or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'static str>,
    /// For a failed check: the failure in words, without internals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A failed check: its kind, and a description fit for the response.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

fn io_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => Failure::new("refused", "connection refused"),
        ErrorKind::TimedOut => Failure::new("timeout", "connection timed out"),
        kind => Failure::new("io", format!("network error: {kind}")),
    }
}

/// Describes a probe's failure, `describe` saying what the dependency's own error was.
fn probe_failure<E>(e: &ProbeError<E>, describe: fn(&E) -> Failure) -> Failure {
    match e {
        ProbeError::BreakerOpen { retry_after_secs } => {
            Failure::new("breaker_open", format!("circuit breaker open; next try in {retry_after_secs} s"))
        }
        ProbeError::Failed(e) => describe(e),
        ProbeError::Aborted(_) => Failure::new("error", "the check stopped before it finished"),
    }
}

fn database_failure(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Io(io) => io_failure(io),
        sqlx::Error::Tls(_) => Failure::new("tls", "TLS handshake failed"),
        sqlx::Error::PoolTimedOut => Failure::new("pool_timeout", "no pooled connection became free in time"),
        sqlx::Error::PoolClosed => Failure::new("error", "connection pool closed"),
        sqlx::Error::Protocol(_) => Failure::new("protocol", "protocol error"),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default().into_owned();
            let class = code.get(..2).unwrap_or("??");
            Failure::new("database", format!("database error, SQLSTATE {code} (class {class})"))
        }
        _ => Failure::new("error", "database error"),
    }
}

fn redis_failure(e: &redis::RedisError) -> Failure {
    if e.is_connection_refusal() {
        Failure::new("refused", "connection refused")
    } else if e.is_timeout() {
        Failure::new("timeout", "no answer in time")
    } else if e.is_connection_dropped() || e.is_io_error() {
        Failure::new("io", "connection lost")
    } else {
        Failure::new("error", format!("redis error: {:?}", e.kind()))
    }
}

#[utoipa::path(get, path = "/health/live", tag = "health", security(), responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "ok", checks: Vec::new() })
}

async fn check<F, P, E>(probes: &Probes, dependency: Dependency, probe: F, describe: fn(&E) -> Failure) -> Check
where
    F: std::future::Future<Output = Result<(), P>>,
    P: Borrow<ProbeError<E>>,
    E: std::fmt::Debug,
{
    let failure = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            let e = e.borrow();
            let failure = probe_failure(e, describe);
            tracing::warn!(%dependency, kind = failure.kind, error = ?e, "readiness check failed");
            Some(failure)
        }
        Err(_) => {
            tracing::warn!(%dependency, timeout_ms = CHECK_TIMEOUT.as_millis(), "readiness check timed out");
            Some(Failure::new("timeout", format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())))
        }
    };
    let breaker = format!("{:?}", probes.db.deps.state(dependency));
    let (failure, error) = failure.map_or((None, None), |f| (Some(f.kind), Some(f.message)));
    Check { dependency, ok: error.is_none(), breaker, failure, error }
}

#[utoipa::path(get, path = "/health/ready", tag = "health", security(),
    responses((status = 200, body = Health), (status = 503, description = "PostgreSQL or Redis is unreachable", body = Health)))]
pub async fn ready(State(probes): State<Probes>) -> (StatusCode, Json<Health>) {
    if probes.draining.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "draining", checks: Vec::new() }));
    }
    let database = check(&probes, Dependency::Database, probes.db.ping(), database_failure);
    let mut conn = probes.redis.clone();
    let pong = async move { conn.ping::<String>().await.map(|_| ()) };
    let redis = check(
        &probes,
        Dependency::Redis,
        probes.db.deps.probe(Dependency::Redis, pong, is_redis_outage),
        redis_failure,
    );
    let (database, redis) = tokio::join!(database, redis);
    // An outage the operator published for the whole platform leaves every pod in this state:
    // taking them out of the Service would only stop what they still serve (cached predictions,
    // and fast 503s with Retry-After for the rest).
    let shared = |c: &Check| c.ok || probes.db.deps.platform_wide_outage(c.dependency);
    let reachable = database.ok && redis.ok;
    let serving = shared(&database) && shared(&redis);
    let ok = serving && probes.db.is_warm();
    let status = match (reachable, ok) {
        (true, true) => "ok",
        (false, true) => "degraded",
        (true, false) => "warming",
        (false, false) => "unavailable",
    };
    let health = Health { status, checks: vec![database, redis] };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(health))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of_database(e: sqlx::Error) -> &'static str {
        probe_failure(&ProbeError::Failed(e), database_failure).kind
    }

    #[test]
    fn a_failed_database_check_says_what_kind_of_failure_it_was() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(kind_of_database(sqlx::Error::Io(refused)), "refused");
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(kind_of_database(sqlx::Error::Io(timed_out)), "timeout");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(kind_of_database(sqlx::Error::Io(reset)), "io");
        assert_eq!(kind_of_database(sqlx::Error::PoolTimedOut), "pool_timeout");
        assert_eq!(kind_of_database(sqlx::Error::Protocol("unexpected message 'Z'".into())), "protocol");
    }

    #[test]
    fn an_open_breaker_is_reported_with_the_time_to_the_next_try() {
        let f = probe_failure::<sqlx::Error>(&ProbeError::BreakerOpen { retry_after_secs: 7 }, database_failure);
        assert_eq!(f, Failure::new("breaker_open", "circuit breaker open; next try in 7 s"));
    }

    #[test]
    fn failure_descriptions_leave_out_the_underlying_error_text() {
        let f = database_failure(&sqlx::Error::Protocol("secret internals at 10.0.0.5".into()));
        assert!(!f.message.contains("10.0.0.5"), "{f:?}");
        let refused = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(redis_failure(&refused).kind, "refused");
    }
}
