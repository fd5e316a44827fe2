//! PostgreSQL access through PgBouncer in transaction mode. PgBouncer 1.18 hands a server
//! connection to a client only for one transaction and does not track prepared statements, so
//! every query here runs inside an explicit transaction (Parse, Bind and Execute land on the same
//! server) and as an unnamed statement (`persistent(false)`: nothing outlives the transaction).

pub mod companies;
pub mod jobs;
pub mod predictions;
pub mod statements;
pub mod sweep;
pub mod tenants;
mod unnamed;

pub use unnamed::unnamed;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::config::DatabaseArgs;
use crate::deps::{Dependency, Deps};
use crate::error::ApiError;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub fn connect_options(args: &DatabaseArgs) -> PgConnectOptions {
    let mut options = PgConnectOptions::new_without_pgpass()
        .host(&args.host)
        .port(args.port)
        .database(&args.database)
        .username(&args.user)
        .application_name("riskplatform-api")
        // A statement cache would keep named statements on a server PgBouncer gives to others.
        .statement_cache_capacity(0)
        // Values travel in binary, so the text precision setting is moot; PgBouncer would
        // otherwise have to be told to ignore it.
        .extra_float_digits(None);
    if let Some(password) = &args.password {
        options = options.password(password);
    }
    options
}

/// A pool that connects lazily: the service starts (and reports not-ready) while the database is down.
pub fn pool(args: &DatabaseArgs) -> PgPool {
    PgPoolOptions::new()
        .max_connections(args.max_connections)
        .acquire_timeout(Duration::from_millis(args.acquire_timeout_ms))
        .connect_lazy_with(connect_options(args))
}

/// The database as the handlers see it: every call passes the circuit breaker and is recorded.
#[derive(Clone)]
pub struct Db {
    pub pool: PgPool,
    pub deps: Arc<Deps>,
}

pub type Tx = Transaction<'static, Postgres>;

impl Db {
    /// Opens a transaction, failing fast while the database breaker is open.
    pub async fn begin(&self) -> Result<Tx, ApiError> {
        self.deps.admit(Dependency::Database)?;
        match self.pool.begin().await {
            Ok(tx) => Ok(tx),
            Err(e) => self.deps.database(Err(e)),
        }
    }

    /// Commits and records the whole call's outcome with the breaker.
    pub async fn finish<T>(&self, tx: Tx, result: Result<T, sqlx::Error>) -> Result<T, ApiError> {
        let result = match result {
            Ok(v) => tx.commit().await.map(|()| v),
            // Dropping the transaction rolls it back.
            Err(e) => Err(e),
        };
        self.deps.database(result)
    }

    /// `SELECT 1` through PgBouncer, for readiness.
    pub async fn ping(&self) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("SELECT 1").execute(&mut *tx).await.map(|_| ());
        self.finish(tx, r).await
    }
}

/// Whether a write failed on a unique constraint (a conflict for the client, not an outage).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
