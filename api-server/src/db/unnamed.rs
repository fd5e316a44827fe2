//! An executor that runs every statement as PostgreSQL's unnamed prepared statement. sqlx's
//! compile-time checked macros always name their statements (`sqlx_s_N`), and a named statement
//! outlives its transaction on a server PgBouncer then hands to another client, whose own
//! `sqlx_s_N` collides with it. The unnamed statement is replaced by the next Parse, so nothing
//! outlives the transaction.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgConnection, Postgres};

#[derive(Debug)]
pub struct Unnamed<'c>(&'c mut PgConnection);

/// Runs the statements given to the returned executor unnamed, on `conn` (a transaction's connection).
pub fn unnamed(conn: &mut PgConnection) -> Unnamed<'_> {
    Unnamed(conn)
}

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

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.describe(sql)
    }
}
