//! The desired state of a platform: workloads, Redis, PgBouncer, circuit breakers and Prometheus.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::scaling::AutoscalingSpec;
use crate::status::RiskPlatformStatus;

/// A financial default-risk prediction platform: the REST API, its workers, Redis and PgBouncer in
/// front of the user's PostgreSQL, scaled from Prometheus metrics by the operator.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "riskplatform.io",
    version = "v1alpha1",
    kind = "RiskPlatform",
    plural = "riskplatforms",
    shortname = "rp",
    namespaced,
    status = "RiskPlatformStatus",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "API",
        type_ = "string",
        json_path = ".status.api.ready",
        description = "ready/desired API replicas"
    ),
    printcolumn(
        name = "Workers",
        type_ = "string",
        json_path = ".status.workers.ready",
        description = "ready/desired worker replicas"
    ),
    printcolumn(
        name = "Breaker",
        type_ = "string",
        json_path = ".status.breakerSummary",
        description = "circuit breaker state per dependency"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(crate::names::name_length_rule()).message(crate::names::name_length_message()),
    validation = Rule::new(crate::names::NAME_FORM_RULE).message(crate::names::NAME_FORM_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct RiskPlatformSpec {
    /// The prediction REST API.
    #[serde(default)]
    pub api: ApiSpec,
    /// Background workers that process bulk jobs from the Redis queue.
    #[serde(default)]
    pub workers: WorkerSpec,
    /// Redis: cache and job queue.
    #[serde(default)]
    pub redis: RedisSpec,
    /// PgBouncer in front of the user's PostgreSQL.
    pub pgbouncer: PgBouncerSpec,
    /// Scaling thresholds, evaluation periods, bounds and cooldowns.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Circuit-breaker settings and per-dependency overrides.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerSpec,
    /// Where the operator reads metrics from.
    #[serde(default)]
    pub prometheus: PrometheusSpec,
}

/// The documented default image tag follows the operator's own version so both move together.
pub const DEFAULT_API_IMAGE: &str = concat!("ghcr.io/riskplatform/riskplatform-api:", env!("CARGO_PKG_VERSION"));

/// The prediction API Deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Container image of `riskplatform-api`.
    #[serde(default = "default_api_image")]
    #[x_kube(validation = Rule::new("self != ''").message("api.image must not be empty"))]
    pub image: String,
    /// Container resources (documented default: requests 100m / 256Mi, limits 500m / 512Mi).
    #[serde(default = "default_resources")]
    pub resources: ResourceRequirements,
    /// Extra environment variables of the container, one per name (`RUST_LOG` among them
    /// replaces the operator's `info`); secrets by `valueFrom.secretKeyRef`, never as values. The
    /// variables that wire the pod to PgBouncer, Redis and the breaker are the operator's and
    /// refused here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new(RESERVED_ENV_RULE).message(RESERVED_ENV_MESSAGE))]
    pub env: Vec<EnvVar>,
}

impl Default for ApiSpec {
    fn default() -> Self {
        Self { image: default_api_image(), resources: default_resources(), env: Vec::new() }
    }
}

/// Variables the operator sets to connect the pods, which a spec's `env` may not set.
pub const RESERVED_ENV: [&str; 12] = [
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "RISK_LISTEN_ADDR",
    "RISK_METRICS_ADDR",
    "RISK_BREAKER_CONFIGMAP",
    "RISK_READ_DATABASES",
    "POD_NAMESPACE",
];
const RESERVED_ENV_RULE: &str = "self.all(e, !(e.name in ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'REDIS_URL', 'REDIS_PASSWORD', 'RISK_LISTEN_ADDR', 'RISK_METRICS_ADDR', 'RISK_BREAKER_CONFIGMAP', 'RISK_READ_DATABASES', 'POD_NAMESPACE']))";
const RESERVED_ENV_MESSAGE: &str = "env must not set PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, REDIS_URL, REDIS_PASSWORD, RISK_LISTEN_ADDR, RISK_METRICS_ADDR, RISK_BREAKER_CONFIGMAP, RISK_READ_DATABASES or POD_NAMESPACE: the operator sets them";

/// The worker Deployment; runs the same image as the API with the `worker` command.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Container image; defaults to the API image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Container resources (documented default: requests 100m / 256Mi, limits 500m / 512Mi).
    #[serde(default = "default_resources")]
    pub resources: ResourceRequirements,
    /// Extra environment variables, as `api.env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new(RESERVED_ENV_RULE).message(RESERVED_ENV_MESSAGE))]
    pub env: Vec<EnvVar>,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        Self { image: None, resources: default_resources(), env: Vec::new() }
    }
}

/// Whether the operator runs Redis or the platform uses an existing one.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// The operator runs a Redis StatefulSet.
    #[default]
    Managed,
    /// The platform connects to `externalUrl`.
    External,
}

/// Redis eviction policies (`maxmemory-policy`). The default is volatile-lru: every cache entry
/// carries a TTL and the job queue's keys carry none, so it evicts cache entries by LRU (as the
/// seeds' allkeys-lru would) and never the queue.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    #[default]
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
    Noeviction,
}

impl EvictionPolicy {
    /// The name Redis uses in `redis.conf`.
    pub fn as_redis(self) -> &'static str {
        match self {
            Self::AllkeysLru => "allkeys-lru",
            Self::AllkeysLfu => "allkeys-lfu",
            Self::AllkeysRandom => "allkeys-random",
            Self::VolatileLru => "volatile-lru",
            Self::VolatileLfu => "volatile-lfu",
            Self::VolatileRandom => "volatile-random",
            Self::VolatileTtl => "volatile-ttl",
            Self::Noeviction => "noeviction",
        }
    }
}

/// Redis: the cache (L2) and the job queue.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode != 'External' || has(self.externalUrl)").message("redis.externalUrl is required when redis.mode is External"),
    validation = Rule::new("!has(self.externalUrl) || !self.externalUrl.contains('@')").message("redis.externalUrl must not contain credentials; use redis.passwordSecretRef"),
    validation = Rule::new("self.timeoutSeconds >= 0 && self.tcpKeepaliveSeconds >= 0").message("redis timeouts must not be negative")
)]
pub struct RedisSpec {
    /// Managed (the operator runs Redis) or External.
    #[serde(default)]
    pub mode: RedisMode,
    /// `redis://host:port/db` of an existing Redis when mode is External; no credentials here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
    /// Secret key holding the Redis password, if Redis requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Container image of the managed Redis.
    #[serde(default = "default_redis_image")]
    pub image: String,
    /// `maxmemory` (documented default 1gb).
    #[serde(default = "default_maxmemory")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(b|kb|mb|gb)?$')").message("redis.maxmemory must be a number with an optional unit b, kb, mb or gb, e.g. 1gb"))]
    pub maxmemory: String,
    /// `maxmemory-policy` (default volatile-lru: the cache's LRU eviction of the seeds'
    /// allkeys-lru, without evicting the job queue, which shares this Redis; allkeys-lru would
    /// evict queued chunks under cache pressure, and the workers' sweep would have to rebuild them).
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
    /// `tcp-keepalive` in seconds (documented default 300).
    #[serde(default = "default_redis_seconds")]
    pub tcp_keepalive_seconds: i32,
    /// `timeout` for idle clients in seconds (documented default 300).
    #[serde(default = "default_redis_seconds")]
    pub timeout_seconds: i32,
    /// Persistence (RDB snapshots and the append-only file) on a PersistentVolumeClaim.
    #[serde(default)]
    pub persistence: RedisPersistence,
    /// Container resources of the managed Redis.
    #[serde(default = "default_redis_resources")]
    pub resources: ResourceRequirements,
    /// Image of the metrics sidecar (redis_exporter) beside the managed Redis, which Prometheus
    /// scrapes on the container port named `metrics` (9121); an empty string runs none.
    #[serde(default = "default_redis_exporter_image")]
    pub exporter_image: String,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            mode: RedisMode::Managed,
            external_url: None,
            password_secret_ref: None,
            image: default_redis_image(),
            maxmemory: default_maxmemory(),
            eviction_policy: EvictionPolicy::VolatileLru,
            tcp_keepalive_seconds: default_redis_seconds(),
            timeout_seconds: default_redis_seconds(),
            persistence: RedisPersistence::default(),
            resources: default_redis_resources(),
            exporter_image: default_redis_exporter_image(),
        }
    }
}

/// Optional Redis persistence: RDB snapshots and, unless turned off, the append-only file, on a
/// PersistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisPersistence {
    /// Whether Redis keeps its data on a volume.
    #[serde(default)]
    pub enabled: bool,
    /// Size of the volume.
    #[serde(default = "default_volume_size")]
    pub size: Quantity,
    /// StorageClass of the volume; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// RDB snapshot points (`save <seconds> <changes>`): a snapshot is written when at least
    /// `changes` keys changed within `afterSeconds`. Default: the seeds' 900 s/1, 300 s/10 and
    /// 60 s/10000. An empty list writes no snapshots.
    #[serde(default = "default_snapshots")]
    #[schemars(length(max = 16))]
    pub snapshots: Vec<RedisSnapshot>,
    /// Whether Redis also keeps the append-only file (`appendfsync everysec`: at most a second of
    /// writes lost on a crash, against up to a snapshot interval with snapshots alone). Default
    /// true.
    #[serde(default = "default_true")]
    pub append_only: bool,
}

impl Default for RedisPersistence {
    fn default() -> Self {
        Self {
            enabled: false,
            size: default_volume_size(),
            storage_class_name: None,
            snapshots: default_snapshots(),
            append_only: true,
        }
    }
}

/// One RDB snapshot point.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.afterSeconds >= 1 && self.changes >= 1").message("redis.persistence.snapshots: afterSeconds and changes must be at least 1"))]
pub struct RedisSnapshot {
    /// Seconds since the last snapshot.
    pub after_seconds: i32,
    /// Keys changed in that time.
    pub changes: i32,
}

fn default_snapshots() -> Vec<RedisSnapshot> {
    [(900, 1), (300, 10), (60, 10_000)]
        .map(|(after_seconds, changes)| RedisSnapshot { after_seconds, changes })
        .to_vec()
}

fn default_true() -> bool {
    true
}

/// PgBouncer pool modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Session,
    #[default]
    Transaction,
    Statement,
}

impl PoolMode {
    /// The name PgBouncer uses in `pgbouncer.ini`.
    pub fn as_ini(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
            Self::Statement => "statement",
        }
    }
}

/// PgBouncer in front of the user's PostgreSQL.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.maxClientConn > 0 && self.defaultPoolSize > 0 && self.reservePoolSize >= 0 && self.maxDbConnections > 0").message("pgbouncer pool sizes must be positive"),
    validation = Rule::new("self.defaultPoolSize <= self.maxDbConnections").message("pgbouncer.defaultPoolSize must not exceed pgbouncer.maxDbConnections")
)]
pub struct PgBouncerSpec {
    /// Container image of PgBouncer (reads /etc/pgbouncer/pgbouncer.ini).
    #[serde(default = "default_pgbouncer_image")]
    pub image: String,
    /// `pool_mode` (documented default transaction).
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// `max_client_conn` (documented default 2000).
    #[serde(default = "default_max_client_conn")]
    pub max_client_conn: i32,
    /// `default_pool_size` (documented default 50).
    #[serde(default = "default_pool_size")]
    pub default_pool_size: i32,
    /// `reserve_pool_size` (documented default 10).
    #[serde(default = "default_reserve_pool_size")]
    pub reserve_pool_size: i32,
    /// `max_db_connections` (documented default 200).
    #[serde(default = "default_max_db_connections")]
    pub max_db_connections: i32,
    /// The PostgreSQL database PgBouncer connects to.
    pub database: DatabaseSpec,
    /// The Secret holding the database username and password; never inline.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// Container resources of PgBouncer.
    #[serde(default = "default_pgbouncer_resources")]
    pub resources: ResourceRequirements,
    /// Image of the metrics sidecar beside PgBouncer, an image of the API that runs its
    /// `pgbouncer-exporter` (reading the admin console as a read-only stats user), which
    /// Prometheus scrapes on the container port named `metrics` (9127); an empty string runs
    /// none. A field of its own, not `api.image`, so that upgrading the API does not restart
    /// PgBouncer.
    #[serde(default = "default_api_image")]
    pub exporter_image: String,
}

/// Where the user's PostgreSQL is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.port > 0 && self.port <= 65535").message("pgbouncer.database.port must be between 1 and 65535"))]
pub struct DatabaseSpec {
    /// Host name or address of PostgreSQL.
    #[x_kube(validation = Rule::new("self != ''").message("pgbouncer.database.host must not be empty"))]
    pub host: String,
    /// Port of PostgreSQL.
    #[serde(default = "default_pg_port")]
    pub port: i32,
    /// Database name.
    #[x_kube(validation = Rule::new("self != ''").message("pgbouncer.database.name must not be empty"))]
    pub name: String,
    /// Streaming replicas of this database. PgBouncer gets a read-only database `<name>_ro_<n>`
    /// for the n-th (from 0), and the API sends reads that may lag slightly (prediction history,
    /// company and job reads) to whichever is healthy; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub read_replicas: Vec<ReadReplicaSpec>,
}

/// Where one read replica (a hot standby of the database) is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.port > 0 && self.port <= 65535").message("pgbouncer.database.readReplicas port must be between 1 and 65535"))]
pub struct ReadReplicaSpec {
    /// Host name or address of the replica.
    #[x_kube(validation = Rule::new("self != ''").message("pgbouncer.database.readReplicas host must not be empty"))]
    pub host: String,
    /// Port of the replica.
    #[serde(default = "default_pg_port")]
    pub port: i32,
}

/// A Secret in the platform's namespace with a username and a password.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[x_kube(validation = Rule::new("self != ''").message("credentialsSecretRef.name must not be empty"))]
    pub name: String,
    /// Key of the username.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the password.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

/// One key of a Secret in the platform's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_password_key")]
    pub key: String,
}

/// How one dependency's breaker is driven.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BreakerMode {
    /// Computed from the failure counters.
    #[default]
    Auto,
    /// Held open: calls fail fast.
    ForceOpen,
    /// Held closed: calls always go through.
    ForceClosed,
    /// No breaker: calls always go through and no state is published.
    Disabled,
}

/// Per-dependency breaker overrides (GitOps friendly: the resource is the source of truth).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BreakerOverrides {
    /// PostgreSQL (through PgBouncer).
    #[serde(default)]
    pub database: BreakerMode,
    /// Redis.
    #[serde(default)]
    pub redis: BreakerMode,
}

/// Circuit-breaker thresholds (documented: open after 5 failures or a failure rate above 10 %,
/// half-open after 60 s).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.failureThreshold > 0").message("circuitBreaker.failureThreshold must be positive"),
    validation = Rule::new("self.failureRatePercent >= 0.0 && self.failureRatePercent <= 100.0").message("circuitBreaker.failureRatePercent must be between 0 and 100"),
    validation = Rule::new("self.recoveryTimeoutSeconds > 0 && self.windowSeconds > 0").message("circuitBreaker durations must be positive"),
    validation = Rule::new("self.minimumCalls > 0 && self.halfOpenMaxCalls > 0").message("circuitBreaker.minimumCalls and halfOpenMaxCalls must be positive")
)]
pub struct CircuitBreakerSpec {
    /// Consecutive failures that open the breaker.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: i32,
    /// Failure rate over the window (percent) that opens the breaker.
    #[serde(default = "default_failure_rate")]
    pub failure_rate_percent: f64,
    /// Calls in the window before the rate counts, so a quiet service does not trip on one error.
    #[serde(default = "default_minimum_calls")]
    pub minimum_calls: i32,
    /// Length of the sliding window for the failure rate.
    #[serde(default = "default_window_seconds")]
    pub window_seconds: i32,
    /// Seconds open before probing (half-open).
    #[serde(default = "default_recovery_timeout")]
    pub recovery_timeout_seconds: i32,
    /// Probe calls let through while half-open.
    #[serde(default = "default_half_open_calls")]
    pub half_open_max_calls: i32,
    /// Declarative overrides per dependency.
    #[serde(default)]
    pub overrides: BreakerOverrides,
}

impl Default for CircuitBreakerSpec {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            failure_rate_percent: default_failure_rate(),
            minimum_calls: default_minimum_calls(),
            window_seconds: default_window_seconds(),
            recovery_timeout_seconds: default_recovery_timeout(),
            half_open_max_calls: default_half_open_calls(),
            overrides: BreakerOverrides::default(),
        }
    }
}

/// The Prometheus the operator queries.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API.
    #[serde(default = "default_prometheus_url")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("prometheus.url must start with http:// or https://"))]
    pub url: String,
}

impl Default for PrometheusSpec {
    fn default() -> Self {
        Self { url: default_prometheus_url() }
    }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("cpu".to_owned(), Quantity(cpu.to_owned())), ("memory".to_owned(), Quantity(memory.to_owned()))])
}

/// Documented pod resources: requests 100m / 256Mi, limits 500m / 512Mi.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities("100m", "256Mi")),
        limits: Some(quantities("500m", "512Mi")),
        ..Default::default()
    }
}

/// Redis holds maxmemory (1gb) plus overhead, so its limit sits above it.
fn default_redis_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities("100m", "256Mi")),
        limits: Some(quantities("1", "1280Mi")),
        ..Default::default()
    }
}

fn default_pgbouncer_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities("50m", "64Mi")),
        limits: Some(quantities("500m", "256Mi")),
        ..Default::default()
    }
}

fn default_api_image() -> String {
    DEFAULT_API_IMAGE.to_owned()
}
fn default_redis_image() -> String {
    "redis:7.2-alpine".to_owned()
}
fn default_redis_exporter_image() -> String {
    "oliver006/redis_exporter:v1.45.0".to_owned()
}
fn default_pgbouncer_image() -> String {
    "docker.io/edoburu/pgbouncer:v1.18.0-p0".to_owned()
}
fn default_maxmemory() -> String {
    "1gb".to_owned()
}
fn default_redis_seconds() -> i32 {
    300
}
fn default_volume_size() -> Quantity {
    Quantity("2Gi".to_owned())
}
fn default_max_client_conn() -> i32 {
    2000
}
fn default_pool_size() -> i32 {
    50
}
fn default_reserve_pool_size() -> i32 {
    10
}
fn default_max_db_connections() -> i32 {
    200
}
fn default_pg_port() -> i32 {
    5432
}
fn default_username_key() -> String {
    "username".to_owned()
}
fn default_password_key() -> String {
    "password".to_owned()
}
fn default_failure_threshold() -> i32 {
    5
}
fn default_failure_rate() -> f64 {
    10.0
}
fn default_minimum_calls() -> i32 {
    20
}
fn default_window_seconds() -> i32 {
    60
}
fn default_recovery_timeout() -> i32 {
    60
}
fn default_half_open_calls() -> i32 {
    3
}
fn default_prometheus_url() -> String {
    "http://prometheus-operated.monitoring.svc:9090".to_owned()
}
