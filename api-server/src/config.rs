//! Command line and environment: one clap struct per subcommand, parsed once in `main`. The
//! environment names are the ones the operator sets on the API and worker pods.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use riskplatform_breaker::BreakerConfig;

use crate::auth::Role;
use crate::sweep::SweepConfig;

#[derive(Parser, Debug)]
#[command(
    name = "riskplatform-api",
    version,
    about = "Default-risk prediction service: REST API, workers, migrations, admin"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: text or json.
    #[arg(long, env = "RISK_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the REST API.
    Serve(ServeArgs),
    /// Process bulk jobs from the queue.
    Worker(WorkerArgs),
    /// Apply the database migrations (connects to PostgreSQL directly, not through PgBouncer).
    Migrate(DatabaseArgs),
    /// Administration: tenants and API keys.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Export PgBouncer's pools and stats (its admin console) as Prometheus metrics: the sidecar
    /// in the PgBouncer pod.
    PgbouncerExporter(PgBouncerExporterArgs),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a tenant and print its first admin API key (shown once; only a hash is stored).
    /// With RISK_ADMIN_KEY set (for example from a Secret in a Job), that key is registered
    /// instead and nothing is printed, so the key never reaches a log.
    CreateTenant {
        #[arg(long)]
        name: String,
        /// Read from the environment only, like PGPASSWORD.
        #[arg(skip = std::env::var("RISK_ADMIN_KEY").ok().filter(|k| !k.is_empty()))]
        key: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Create another API key for a tenant and print it once.
    CreateKey {
        /// The tenant's name.
        #[arg(long)]
        tenant: String,
        #[arg(long, value_enum, default_value = "analyst")]
        role: Role,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// PostgreSQL (through PgBouncer for `serve` and `worker`), with libpq's variable names.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    #[arg(long = "pg-host", env = "PGHOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long = "pg-port", env = "PGPORT", default_value_t = 5432)]
    pub port: u16,
    #[arg(long = "pg-database", env = "PGDATABASE", default_value = "risk")]
    pub database: String,
    #[arg(long = "pg-user", env = "PGUSER", default_value = "risk")]
    pub user: String,
    /// Read from the environment only, so it never shows in a process list.
    #[arg(skip = std::env::var("PGPASSWORD").ok())]
    pub password: Option<String>,
    /// Connections this process keeps to PgBouncer.
    #[arg(long, env = "RISK_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable.
    #[arg(long, env = "RISK_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub acquire_timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct PgBouncerExporterArgs {
    /// PgBouncer's address; the exporter runs beside it in its pod.
    #[arg(long = "pgbouncer-host", env = "PGBOUNCER_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long = "pgbouncer-port", env = "PGBOUNCER_PORT", default_value_t = 6432)]
    pub port: u16,
    /// A user in PgBouncer's `stats_users` (read-only access to the admin console).
    #[arg(long = "pgbouncer-user", env = "PGBOUNCER_USER", default_value = "riskplatform-stats")]
    pub user: String,
    /// Read from the environment only, so it never shows in a process list.
    #[arg(skip = std::env::var("PGBOUNCER_PASSWORD").ok())]
    pub password: Option<String>,
    /// Where `/metrics` is served (9127 is the usual PgBouncer exporter port).
    #[arg(long, env = "RISK_EXPORTER_LISTEN", default_value = "0.0.0.0:9127")]
    pub listen: String,
    /// How long one scrape waits for PgBouncer before it reports `pgbouncer_up 0`.
    #[arg(long, env = "RISK_EXPORTER_TIMEOUT_MS", default_value_t = 3000)]
    pub timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    #[arg(long = "redis-url", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub url: String,
    /// Timeout of one Redis command; a slower answer counts as a failure.
    #[arg(long = "redis-timeout-ms", env = "RISK_REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub timeout_ms: u64,
}

/// The per-pod circuit breakers (documented defaults: open after 5 failures or a failure rate
/// above 10 %, half-open after 60 s).
#[derive(Args, Debug, Clone)]
pub struct BreakerArgs {
    #[arg(long, env = "RISK_BREAKER_FAILURE_THRESHOLD", default_value_t = 5)]
    pub breaker_failure_threshold: u32,
    #[arg(long, env = "RISK_BREAKER_FAILURE_RATE_PERCENT", default_value_t = 10.0)]
    pub breaker_failure_rate_percent: f64,
    /// Calls in the window before the failure rate counts.
    #[arg(long, env = "RISK_BREAKER_MINIMUM_CALLS", default_value_t = 20)]
    pub breaker_minimum_calls: u32,
    #[arg(long, env = "RISK_BREAKER_WINDOW_SECONDS", default_value_t = 60)]
    pub breaker_window_seconds: i64,
    #[arg(long, env = "RISK_BREAKER_RECOVERY_SECONDS", default_value_t = 60)]
    pub breaker_recovery_seconds: i64,
    #[arg(long, env = "RISK_BREAKER_HALF_OPEN_CALLS", default_value_t = 3)]
    pub breaker_half_open_calls: u32,
}

impl BreakerArgs {
    pub fn config(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.breaker_failure_threshold,
            failure_rate: self.breaker_failure_rate_percent / 100.0,
            minimum_calls: self.breaker_minimum_calls,
            window_seconds: self.breaker_window_seconds,
            recovery_timeout_seconds: self.breaker_recovery_seconds,
            half_open_max_calls: self.breaker_half_open_calls,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[arg(long, env = "RISK_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Sustained requests per second per tenant (token bucket refill rate, per pod).
    #[arg(long, env = "RISK_RATE_LIMIT_PER_SECOND", default_value_t = 500.0)]
    pub rate_limit_per_second: f64,
    /// Burst a tenant may send above the sustained rate (bucket size).
    #[arg(long, env = "RISK_RATE_LIMIT_BURST", default_value_t = 1000.0)]
    pub rate_limit_burst: f64,
    /// Entries of the in-process (L1) cache.
    #[arg(long, env = "RISK_L1_CACHE_ENTRIES", default_value_t = 100_000)]
    pub l1_cache_entries: u64,
    /// Redis pub/sub channel on which pods announce cache changes so that the others drop their
    /// L1 copies; every pod of a platform must use the same one.
    #[arg(long, env = "RISK_CACHE_INVALIDATION_CHANNEL", default_value = crate::invalidation::DEFAULT_CHANNEL)]
    pub cache_invalidation_channel: String,
    /// Largest bulk upload.
    #[arg(long, env = "RISK_BULK_MAX_ROWS", default_value_t = 100_000)]
    pub bulk_max_rows: usize,
    /// A request slower than this (milliseconds) is logged with its route, status and duration.
    #[arg(long, env = "RISK_SLOW_REQUEST_MS", default_value_t = 1000)]
    pub slow_request_ms: u64,
    /// Responses larger than this (bytes) are compressed (gzip or brotli) for clients that accept it.
    #[arg(long, env = "RISK_COMPRESS_ABOVE_BYTES", default_value_t = 512)]
    pub compress_above_bytes: u16,
    /// API requests one pod holds at once; one more is answered at once with 503 `overloaded` and
    /// `Retry-After: 1` (0: no bound). At saturation the held requests share the pod's CPU, so
    /// their latency is about this bound over the pod's requests per second.
    #[arg(long, env = "RISK_MAX_IN_FLIGHT", default_value_t = 32)]
    pub max_in_flight: usize,
    /// Seconds between the stop signal and closing the listener, while readiness fails and every
    /// response closes its connection, so clients and the Service move to other pods first.
    #[arg(long, env = "RISK_SHUTDOWN_DRAIN_SECONDS", default_value_t = 5)]
    pub shutdown_drain_seconds: u64,
    /// Database connections opened before the pod first reports ready (at most the pool's size).
    #[arg(long, env = "RISK_DB_WARM_CONNECTIONS", default_value_t = 4)]
    pub db_warm_connections: u32,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub breaker: BreakerArgs,
    #[command(flatten)]
    pub published: PublishedArgs,
    #[command(flatten)]
    pub replicas: ReplicaArgs,
}

/// Read replicas, each a PgBouncer database of its own (the operator adds `<database>_ro_<n>`
/// per replica), reached with the primary's host, port, user and password.
#[derive(Args, Debug, Clone)]
pub struct ReplicaArgs {
    /// The replicas' PgBouncer database names, comma-separated; none: every read goes to the primary.
    #[arg(long = "pg-read-databases", env = "RISK_READ_DATABASES", value_delimiter = ',')]
    pub read_databases: Vec<String>,
    /// A replica further behind the primary than this is skipped (the seeds: healthy under 10 s).
    #[arg(long, env = "RISK_REPLICA_MAX_LAG_SECONDS", default_value_t = 10.0)]
    pub replica_max_lag_seconds: f64,
    /// How often each replica's lag is measured; a replica unmeasured for 3 intervals is skipped.
    #[arg(long, env = "RISK_REPLICA_PROBE_INTERVAL_MS", default_value_t = 1000)]
    pub replica_probe_interval_ms: u64,
    /// Connections this process keeps to each replica's PgBouncer database.
    #[arg(long, env = "RISK_REPLICA_MAX_CONNECTIONS", default_value_t = 10)]
    pub replica_max_connections: u32,
}

/// Where the operator publishes the platform-wide breaker state (a ConfigMap read through the
/// Kubernetes API with the pod's service account, watched). Unset: only the local breaker decides.
#[derive(Args, Debug, Clone)]
pub struct PublishedArgs {
    #[arg(long, env = "RISK_BREAKER_CONFIGMAP")]
    pub breaker_configmap: Option<String>,
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// `/metrics`, `/health/live` and `/health/ready` of the worker.
    #[arg(long, env = "RISK_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Identifies this worker's processing list; the pod name by default.
    #[arg(long, env = "HOSTNAME")]
    pub worker_id: Option<String>,
    /// Chunks this process works on at once.
    #[arg(long, env = "RISK_WORKER_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,
    /// A worker whose heartbeat is older than this is dead and its chunks go back to the queue.
    #[arg(long, env = "RISK_WORKER_DEAD_AFTER_SECONDS", default_value_t = 15)]
    pub dead_after_seconds: u64,
    /// How often a worker tries to sweep (rebuild queue messages Redis lost from PostgreSQL; one
    /// worker at a time). A lost chunk is queued again within this plus the grace period.
    #[arg(long, env = "RISK_SWEEP_INTERVAL_SECONDS", default_value_t = 5)]
    pub sweep_interval_seconds: u64,
    /// How long after being queued a chunk is left unchecked (covers an upload between storing
    /// its chunks and queueing them).
    #[arg(long, env = "RISK_SWEEP_GRACE_SECONDS", default_value_t = 10)]
    pub sweep_grace_seconds: u64,
    /// Times the sweep queues a lost chunk again before giving it up (its rows reported failed).
    #[arg(long, env = "RISK_SWEEP_MAX_REQUEUES", default_value_t = 5)]
    pub sweep_max_requeues: i32,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub breaker: BreakerArgs,
}

impl WorkerArgs {
    pub fn dead_after(&self) -> Duration {
        Duration::from_secs(self.dead_after_seconds.max(1))
    }

    pub fn sweep(&self) -> SweepConfig {
        SweepConfig {
            interval: Duration::from_secs(self.sweep_interval_seconds.max(1)),
            grace: Duration::from_secs(self.sweep_grace_seconds),
            max_requeues: self.sweep_max_requeues.max(0),
        }
    }
}
