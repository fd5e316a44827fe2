//! PostgreSQL access through PgBouncer in transaction mode. PgBouncer 1.18 hands a server
//! connection to a client only for one transaction and does not track prepared statements, so
//! every query here runs inside an explicit transaction (Parse, Bind and Execute land on the same
//! server) and as an unnamed statement: [`Tx`] is the only way to a connection and allows nothing else.

pub mod companies;
pub mod jobs;
pub mod predictions;
pub mod replicas;
pub mod statements;
pub mod sweep;
pub mod tenants;
mod tx;

pub use replicas::Replicas;
pub use tx::Tx;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _, Shared};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseArgs;
use crate::deps::{is_database_outage, Dependency, Deps, ProbeError};
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
fn pool(args: &DatabaseArgs) -> PgPool {
    PgPoolOptions::new()
        .max_connections(args.max_connections)
        .acquire_timeout(Duration::from_millis(args.acquire_timeout_ms))
        .connect_lazy_with(connect_options(args))
}

/// The database as the handlers see it: every call passes the circuit breaker and is recorded.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    /// Readiness has a connection of its own: a pool busy with requests means the pod is working,
    /// not that it cannot reach the database, so a probe must not queue behind them.
    probe_pool: PgPool,
    /// The readiness ping in flight, shared by every probe that arrives while it runs.
    ping_in_flight: Arc<Mutex<Option<Ping>>>,
    pub deps: Arc<Deps>,
    /// Where reads that may lag go when one is healthy (none for workers and admin commands).
    pub replicas: Option<Arc<Replicas>>,
    /// False while [`Db::warm_up`] has not yet opened its connections.
    warm: Arc<AtomicBool>,
}

type PingResult = Result<(), Arc<ProbeError<sqlx::Error>>>;
type Ping = Shared<BoxFuture<'static, PingResult>>;

impl Db {
    pub fn new(args: &DatabaseArgs, deps: Arc<Deps>) -> Self {
        let probe_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(args.acquire_timeout_ms))
            .connect_lazy_with(connect_options(args));
        Self {
            pool: pool(args),
            probe_pool,
            ping_in_flight: Arc::default(),
            deps,
            replicas: None,
            warm: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Opens `n` of the pool's connections in the background (retrying each second) and leaves
    /// them idle in it; until then [`Db::is_warm`] is false and readiness fails. A new pod thus
    /// takes traffic with connections ready for it: a cold pool opening them under load was seen
    /// to time out and open the pod's breaker during a rollout.
    pub fn warm_up(&self, n: u32) {
        if n == 0 {
            return;
        }
        self.warm.store(false, Ordering::Relaxed);
        let (pool, warm) = (self.pool.clone(), self.warm.clone());
        tokio::spawn(async move {
            loop {
                match futures::future::try_join_all((0..n).map(|_| pool.acquire())).await {
                    Ok(_) => {
                        warm.store(true, Ordering::Relaxed);
                        tracing::info!(connections = n, "database pool warm");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "warming the database pool");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Relaxed)
    }

    /// The same database with read replicas for [`Db::read`].
    pub fn with_replicas(self, replicas: Arc<Replicas>) -> Self {
        Self { replicas: Some(replicas), ..self }
    }

    /// Runs a read that may see slightly old data (up to the replica lag bound) in a transaction
    /// on a healthy replica, else on the primary. A read the replica fails is run again on the
    /// primary, so a replica going away costs a read its latency, not its answer. Never use it
    /// for writes or for reading back what the caller just wrote.
    ///
    /// `f` may run twice, so it owns copies of what it needs; its future is boxed because a
    /// future borrowing the transaction cannot otherwise be shown `Send` to axum.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: for<'t> Fn(&'t mut Tx) -> BoxFuture<'t, Result<T, sqlx::Error>>,
    {
        if let Some(replicas) = &self.replicas {
            if let Some(replica) = replicas.pick() {
                let attempt = async {
                    let mut tx = replicas.begin(replica).await?;
                    match f(&mut tx).await {
                        Ok(v) => tx.commit().await.map(|()| v),
                        Err(e) => {
                            let _ = tx.rollback().await;
                            Err(e)
                        }
                    }
                }
                .await;
                match attempt {
                    Ok(v) => {
                        replicas.record(replica, Ok(()));
                        return Ok(v);
                    }
                    Err(e) => replicas.record(replica, Err(&e)),
                }
            }
            replicas.count(replicas::PRIMARY);
        }
        let mut tx = self.begin().await?;
        let result = f(&mut tx).await;
        self.finish(tx, result).await
    }

    /// Opens a transaction, failing fast while the database breaker is open.
    pub async fn begin(&self) -> Result<Tx, ApiError> {
        self.deps.admit(Dependency::Database)?;
        match Tx::begin(&self.pool).await {
            Ok(tx) => Ok(tx),
            Err(e) => self.deps.database(Err(e)),
        }
    }

    /// Commits (or, after an error, rolls back) and records the whole call's outcome with the breaker.
    pub async fn finish<T>(&self, tx: Tx, result: Result<T, sqlx::Error>) -> Result<T, ApiError> {
        let result = match result {
            Ok(v) => tx.commit().await.map(|()| v),
            Err(e) => {
                // A failed rollback leaves the transaction unfinished, so its connection is closed.
                let _ = tx.rollback().await;
                Err(e)
            }
        };
        self.deps.database(result)
    }

    /// `SELECT 1` through PgBouncer, for readiness. The ping runs in a task of its own, so a
    /// prober that gives up (the kubelet's timeoutSeconds) cannot cancel it halfway and cost the
    /// probe connection; probes arriving meanwhile share its answer instead of queueing behind it.
    pub async fn ping(&self) -> PingResult {
        let ping = {
            let mut slot = self.ping_in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref() {
                Some(ping) if ping.peek().is_none() => ping.clone(),
                _ => {
                    let task = tokio::spawn(Self::ping_once(self.probe_pool.clone(), self.deps.clone()));
                    let ping = async move {
                        task.await.unwrap_or_else(|e| Err(ProbeError::Aborted(e.to_string()))).map_err(Arc::new)
                    }
                    .boxed()
                    .shared();
                    *slot = Some(ping.clone());
                    ping
                }
            }
        };
        ping.await
    }

    async fn ping_once(pool: PgPool, deps: Arc<Deps>) -> Result<(), ProbeError<sqlx::Error>> {
        let call = async {
            let mut tx = Tx::begin(&pool).await?;
            sqlx::query("SELECT 1").execute(tx.exec()).await?;
            tx.commit().await
        };
        deps.probe(Dependency::Database, call, is_database_outage).await
    }
}

/// Whether a write failed on a unique constraint (a conflict for the client, not an outage).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
