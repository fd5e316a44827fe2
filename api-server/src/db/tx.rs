//! The only way to the database: a transaction whose statements always run as PostgreSQL's
//! unnamed prepared statement, and whose connection goes back to the pool only in a known state.
//!
//! Two PgBouncer (transaction mode) hazards are made impossible by construction here, since no
//! code outside this module can reach the raw connection:
//! - sqlx names its prepared statements (`sqlx_s_N`, even for `sqlx::query`), and a named
//!   statement outlives its transaction on a server PgBouncer then hands to another client, whose
//!   own `sqlx_s_N` collides with it. The unnamed statement is replaced by the next Parse.
//! - A future dropped mid-transaction (a client that disconnects cancels its handler) leaves the
//!   connection inside `BEGIN` or with a `COMMIT` in flight; returned to the pool, the next user's
//!   `BEGIN` would run inside someone else's transaction. A transaction that did not finish is
//!   closed instead of reused (PostgreSQL, or PgBouncer, rolls it back when the client goes).

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgConnection, PgPool, Postgres};

/// An open transaction. Commit or roll it back; dropping it unfinished closes its connection.
#[derive(Debug)]
pub struct Tx {
    conn: PoolConnection<Postgres>,
    finished: bool,
}

impl Tx {
    /// Takes a connection from the pool and opens a transaction on it.
    pub async fn begin(pool: &PgPool) -> Result<Self, sqlx::Error> {
        // The guard exists before BEGIN is sent, so a cancellation during BEGIN closes it too.
        let mut tx = Self { conn: pool.acquire().await?, finished: false };
        tx.simple("BEGIN").await?;
        Ok(tx)
    }

    /// The executor for this transaction's statements: every statement runs unnamed.
    pub fn exec(&mut self) -> Unnamed<'_> {
        Unnamed(&mut self.conn)
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.simple("COMMIT").await?;
        self.finished = true;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.simple("ROLLBACK").await?;
        self.finished = true;
        Ok(())
    }

    /// Transaction control goes over the simple query protocol (a statement without arguments):
    /// nothing is prepared at all.
    async fn simple(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        self.conn.execute(sql).await.map(|_| ())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// An executor that runs every statement unnamed, on a transaction's connection.
#[derive(Debug)]
pub struct Unnamed<'c>(&'c mut PgConnection);

struct NotPersistent<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for NotPersistent<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

impl<'c> Executor<'c> for Unnamed<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        self.0.fetch_many(NotPersistent(query))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        self.0.fetch_optional(NotPersistent(query))
    }

    /// Refused: a prepared statement made here would be named and outlive the transaction.
    fn prepare_with<'e, 'q: 'e>(
        self,
        _sql: &'q str,
        _parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async { Err(named_statements_refused()) })
    }

    /// Refused for the same reason: describing a statement prepares it.
    fn describe<'e, 'q: 'e>(self, _sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async { Err(named_statements_refused()) })
    }
}

fn named_statements_refused() -> sqlx::Error {
    sqlx::Error::Protocol("statements are not prepared separately through PgBouncer; run them in a query".to_owned())
}
