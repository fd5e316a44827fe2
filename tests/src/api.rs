//! The prediction API's world for tests: real PostgreSQL, PgBouncer (transaction mode) and Redis
//! on loopback, the schema migrated by the real binary, tenants created by its admin command,
//! the server run in-process on a free port (its real router) and workers run as processes.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use clap::Parser as _;
use riskplatform_api::config::{Cli, Command as ApiCommand, ServeArgs};
use riskplatform_api::state::AppState;

use crate::pgbouncer::{replica_database, PgBouncer, PASSWORD};
use crate::postgres::{Postgres, DATABASE, USER};
use crate::process::{binary, ChildProcess};
use crate::prometheus::free_port;
use crate::redis::Redis;
use crate::replica::Standby;

pub struct ApiStack {
    pub postgres: Postgres,
    pub pgbouncer: PgBouncer,
    pub redis: Redis,
    /// A streaming replica of `postgres`, PgBouncer's `risk_ro_0`, when the test asked for one.
    pub standby: Option<Standby>,
}

/// A server running in this process.
pub struct Server {
    pub url: String,
    pub state: AppState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiStack {
    /// Starts the three servers and applies the migrations with `riskplatform-api migrate`.
    pub fn start() -> Result<Self> {
        Self::start_with(Redis::start()?)
    }

    /// The same with a given Redis (its own memory limit and eviction policy).
    pub fn start_with(redis: Redis) -> Result<Self> {
        let postgres = Postgres::start()?;
        let pgbouncer = PgBouncer::start(postgres.port())?;
        Self::migrated(Self { postgres, pgbouncer, redis, standby: None })
    }

    /// The stack with a hot standby of its PostgreSQL behind PgBouncer's `risk_ro_0`, which
    /// [`ApiStack::serve`] gives the server as its read replica.
    pub fn start_with_standby() -> Result<Self> {
        let postgres = Postgres::start()?;
        let standby = Standby::start(&postgres)?;
        let pgbouncer = PgBouncer::start_with_replicas(postgres.port(), &[standby.port()])?;
        let stack = Self::migrated(Self { postgres, pgbouncer, redis: Redis::start()?, standby: None })?;
        // The schema is there before a test reads through the standby.
        standby.catch_up(&stack.postgres)?;
        Ok(Self { standby: Some(standby), ..stack })
    }

    fn migrated(stack: Self) -> Result<Self> {
        let out = stack.command(false).arg("migrate").output().context("running riskplatform-api migrate")?;
        if !out.status.success() {
            bail!("migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(stack)
    }

    /// The API binary with the environment the operator gives its pods (through PgBouncer, or
    /// straight to PostgreSQL as the migrate init container does).
    pub fn command(&self, through_pgbouncer: bool) -> Command {
        let port = if through_pgbouncer { self.pgbouncer.port() } else { self.postgres.port() };
        let mut c = Command::new(binary("riskplatform-api").expect("riskplatform-api is built"));
        c.env("PGHOST", "127.0.0.1")
            .env("PGPORT", port.to_string())
            .env("PGDATABASE", DATABASE)
            .env("PGUSER", USER)
            .env("PGPASSWORD", PASSWORD)
            .env("REDIS_URL", self.redis.url())
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null());
        c
    }

    /// Creates a tenant with `riskplatform-api admin create-tenant` and returns its admin key.
    pub fn create_tenant(&self, name: &str) -> Result<String> {
        let out = self.command(true).args(["admin", "create-tenant", "--name", name]).output()?;
        if !out.status.success() {
            bail!("create-tenant failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Arguments of `serve` against this stack; `extra` are further flags.
    pub fn serve_args(&self, extra: &[&str]) -> ServeArgs {
        let mut argv = vec![
            "riskplatform-api".to_owned(),
            "serve".to_owned(),
            format!("--pg-port={}", self.pgbouncer.port()),
            "--pg-host=127.0.0.1".to_owned(),
            format!("--pg-database={DATABASE}"),
            format!("--pg-user={USER}"),
            format!("--redis-url={}", self.redis.url()),
        ];
        if self.standby.is_some() {
            argv.push(format!("--pg-read-databases={}", replica_database(0)));
        }
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        match Cli::parse_from(argv).command {
            ApiCommand::Serve(mut args) => {
                args.database.password = Some(PASSWORD.to_owned());
                args
            }
            _ => unreachable!("parsed a serve command"),
        }
    }

    /// Serves the real router in this process on a free loopback port.
    pub async fn serve(&self, extra: &[&str]) -> Result<Server> {
        let args = self.serve_args(extra);
        Self::serve_state(riskplatform_api::server::state(&args)?).await
    }

    /// Serves a given state (tests that change settings, such as the model version).
    pub async fn serve_state(state: AppState) -> Result<Server> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        riskplatform_api::server::spawn_background(&state);
        let router = riskplatform_api::routes::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Server { url, state, task })
    }

    /// Starts a worker process with the given name; it is SIGKILLed when dropped.
    pub fn worker(&self, name: &str, extra_env: &[(&str, &str)]) -> Result<ChildProcess> {
        let mut c = self.command(true);
        c.arg("worker")
            .env("HOSTNAME", name)
            .env("RISK_METRICS_ADDR", format!("127.0.0.1:{}", free_port()?))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        ChildProcess::spawn(&mut c)
    }

    /// A direct connection to PostgreSQL, for assertions on what was stored.
    pub async fn sql(&self) -> Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&self.postgres.url()).await?)
    }

    pub async fn redis_client(&self) -> Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.redis.url())?.get_multiplexed_async_connection().await?)
    }
}
