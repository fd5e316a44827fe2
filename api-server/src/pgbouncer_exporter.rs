//! `pgbouncer-exporter`: PgBouncer's admin console (`SHOW POOLS`, `SHOW STATS`) as Prometheus
//! metrics, read on each scrape. It runs as a sidecar in the PgBouncer pod, so Prometheus sees
//! the pool that the API's database calls queue in.
//!
//! Metric names follow the Prometheus community's pgbouncer_exporter, so its dashboards and
//! alerts work unchanged. Columns are read by name, so PgBouncer versions that add or drop
//! columns only add or drop series.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{Column, ConnectOptions, Connection, Row};
use tracing::{info, warn};

use crate::config::PgBouncerExporterArgs;

/// The database name of PgBouncer's admin console.
const ADMIN_DATABASE: &str = "pgbouncer";

/// How a column of a `SHOW` command becomes a metric.
struct ColumnMetric {
    column: &'static str,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    /// PgBouncer reports times in microseconds; Prometheus wants seconds.
    scale: f64,
}

const fn gauge(column: &'static str, name: &'static str, help: &'static str) -> ColumnMetric {
    ColumnMetric { column, name, help, kind: MetricType::Gauge, scale: 1.0 }
}

const fn counter(column: &'static str, name: &'static str, help: &'static str, scale: f64) -> ColumnMetric {
    ColumnMetric { column, name, help, kind: MetricType::Counter, scale }
}

const MICROS: f64 = 1e-6;

const POOLS: &[ColumnMetric] = &[
    gauge("cl_active", "pgbouncer_pools_client_active_connections", "Clients linked to a server connection or idle"),
    gauge("cl_waiting", "pgbouncer_pools_client_waiting_connections", "Clients waiting for a server connection"),
    gauge("sv_active", "pgbouncer_pools_server_active_connections", "Server connections linked to a client"),
    gauge("sv_idle", "pgbouncer_pools_server_idle_connections", "Server connections unused and ready"),
    gauge(
        "sv_used",
        "pgbouncer_pools_server_used_connections",
        "Server connections idle longer than server_check_delay",
    ),
    gauge("sv_tested", "pgbouncer_pools_server_testing_connections", "Server connections being tested or reset"),
    gauge("sv_login", "pgbouncer_pools_server_login_connections", "Server connections logging in"),
    gauge("maxwait", "pgbouncer_pools_client_maxwait_seconds", "Seconds the oldest waiting client has waited"),
];

const STATS: &[ColumnMetric] = &[
    counter("total_xact_count", "pgbouncer_stats_sql_transactions_pooled", "SQL transactions pooled", 1.0),
    counter("total_query_count", "pgbouncer_stats_queries_pooled", "SQL queries pooled", 1.0),
    counter("total_received", "pgbouncer_stats_received_bytes", "Bytes received from clients", 1.0),
    counter("total_sent", "pgbouncer_stats_sent_bytes", "Bytes sent to clients", 1.0),
    counter(
        "total_xact_time",
        "pgbouncer_stats_server_in_transaction_seconds",
        "Seconds server connections spent in a transaction",
        MICROS,
    ),
    counter("total_query_time", "pgbouncer_stats_queries_duration_seconds", "Seconds spent running queries", MICROS),
    counter(
        "total_wait_time",
        "pgbouncer_stats_client_wait_seconds",
        "Seconds clients spent waiting for a server connection",
        MICROS,
    ),
];

/// One series: the metric, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    value: f64,
}

/// What one scrape read: whether PgBouncer answered, and the series it gave.
#[derive(Debug, Default)]
struct Snapshot {
    up: bool,
    samples: Vec<Sample>,
}

/// The collector the registry encodes: the latest snapshot, set by the scrape handler just
/// before encoding.
#[derive(Debug, Default)]
struct PgBouncerCollector {
    snapshot: Mutex<Snapshot>,
}

impl Collector for PgBouncerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let up = ConstGauge::new(i64::from(snapshot.up));
        up.encode(encoder.encode_descriptor(
            "pgbouncer_up",
            "Whether PgBouncer's admin console answered the last scrape",
            None,
            up.metric_type(),
        )?)?;
        for metric in POOLS.iter().chain(STATS) {
            let mut series = snapshot.samples.iter().filter(|s| s.name == metric.name).peekable();
            if series.peek().is_none() {
                continue;
            }
            let mut family = encoder.encode_descriptor(metric.name, metric.help, None, metric.kind)?;
            for sample in series {
                let labels = family.encode_family(&sample.labels)?;
                match metric.kind {
                    MetricType::Counter => ConstCounter::new(sample.value).encode(labels)?,
                    _ => ConstGauge::new(sample.value).encode(labels)?,
                }
            }
        }
        Ok(())
    }
}

/// Why a scrape read nothing.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("PgBouncer's admin console did not answer within {0:?}")]
    Timeout(Duration),
    #[error("PgBouncer's admin console: {0}")]
    Database(#[from] sqlx::Error),
    #[error("column {column} of SHOW {command} is not a number: {value:?}")]
    NotANumber { command: &'static str, column: String, value: String },
}

/// The series of one `SHOW` command's rows: `labels` name the text columns that identify a row,
/// every column of `metrics` present in the rows gives one series per row.
fn samples(
    command: &'static str,
    rows: &[Vec<(String, Option<String>)>],
    labels: &[&'static str],
    metrics: &[ColumnMetric],
) -> Result<Vec<Sample>, ScrapeError> {
    let mut out = Vec::new();
    for row in rows {
        let text = |column: &str| row.iter().find(|(c, _)| c == column).and_then(|(_, v)| v.clone());
        let row_labels: Vec<_> = labels.iter().map(|l| (*l, text(l).unwrap_or_default())).collect();
        for metric in metrics {
            let Some(value) = text(metric.column) else { continue };
            let number: f64 = value.trim().parse().map_err(|_| ScrapeError::NotANumber {
                command,
                column: metric.column.to_owned(),
                value: value.clone(),
            })?;
            out.push(Sample { name: metric.name, labels: row_labels.clone(), value: number * metric.scale });
        }
    }
    Ok(out)
}

/// A row as column name and text value: the admin console answers the simple query protocol,
/// whose values are text whatever type a column is declared with.
fn text_row(row: &PgRow) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    row.columns()
        .iter()
        .map(|c| {
            let raw = row.try_get_raw(c.ordinal())?;
            let value = if sqlx::ValueRef::is_null(&raw) {
                None
            } else {
                Some(raw.as_str().map_err(sqlx::Error::Decode)?.to_owned())
            };
            Ok((c.name().to_owned(), value))
        })
        .collect()
}

/// Rows of an admin console command. `raw_sql` sends the simple query protocol, the only one
/// the console speaks.
async fn show(conn: &mut PgConnection, query: &'static str) -> Result<Vec<Vec<(String, Option<String>)>>, sqlx::Error> {
    let rows = sqlx::Executor::fetch_all(&mut *conn, sqlx::raw_sql(query)).await?;
    rows.iter().map(text_row).collect()
}

async fn read(options: &PgConnectOptions) -> Result<Vec<Sample>, ScrapeError> {
    let mut conn = options.connect().await?;
    let pools = show(&mut conn, "SHOW POOLS").await?;
    let stats = show(&mut conn, "SHOW STATS").await?;
    // Closing is best effort: the scrape already has what it came for.
    let _ = conn.close().await;
    let mut out = samples("POOLS", &pools, &["database", "user"], POOLS)?;
    out.extend(samples("STATS", &stats, &["database"], STATS)?);
    Ok(out)
}

struct Exporter {
    options: PgConnectOptions,
    timeout: Duration,
    collector: Arc<PgBouncerCollector>,
    registry: Registry,
}

async fn scrape(State(exporter): State<Arc<Exporter>>) -> Response {
    let started = Instant::now();
    let result = match tokio::time::timeout(exporter.timeout, read(&exporter.options)).await {
        Ok(result) => result,
        Err(_) => Err(ScrapeError::Timeout(exporter.timeout)),
    };
    let snapshot = match result {
        Ok(samples) => Snapshot { up: true, samples },
        Err(error) => {
            warn!(%error, elapsed_ms = started.elapsed().as_millis() as u64, "PgBouncer scrape failed");
            Snapshot::default()
        }
    };
    *exporter.collector.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    crate::metrics::encoded(&exporter.registry)
}

/// Serves `/metrics` on `args.listen` until `shutdown` resolves.
pub async fn run(
    args: PgBouncerExporterArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut options = PgConnectOptions::new()
        .host(&args.host)
        .port(args.port)
        .username(&args.user)
        .database(ADMIN_DATABASE)
        .application_name("riskplatform-pgbouncer-exporter")
        .extra_float_digits(None)
        .disable_statement_logging();
    if let Some(password) = &args.password {
        options = options.password(password);
    }
    let collector = Arc::new(PgBouncerCollector::default());
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector.clone()));
    let exporter = Arc::new(Exporter { options, timeout: Duration::from_millis(args.timeout_ms), collector, registry });
    let app = Router::new().route("/metrics", get(scrape)).with_state(exporter);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    info!(listen = %listener.local_addr()?, pgbouncer = %format!("{}:{}", args.host, args.port), "PgBouncer exporter listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        cells.iter().map(|(c, v)| ((*c).to_owned(), Some((*v).to_owned()))).collect()
    }

    #[test]
    fn each_pool_row_gives_one_series_per_known_column_labelled_by_database_and_user() {
        let rows = [
            row(&[
                ("database", "risk"),
                ("user", "app"),
                ("cl_active", "3"),
                ("cl_waiting", "1"),
                ("pool_mode", "transaction"),
            ]),
            row(&[("database", "pgbouncer"), ("user", "pgbouncer"), ("cl_active", "1")]),
        ];
        let got = samples("POOLS", &rows, &["database", "user"], POOLS).expect("numbers");
        assert_eq!(got.len(), 3, "cl_active twice, cl_waiting once; pool_mode is no metric: {got:?}");
        assert_eq!(
            got[1],
            Sample {
                name: "pgbouncer_pools_client_waiting_connections",
                labels: vec![("database", "risk".to_owned()), ("user", "app".to_owned())],
                value: 1.0
            }
        );
    }

    #[test]
    fn times_in_microseconds_become_seconds() {
        let rows = [row(&[("database", "risk"), ("total_query_time", "2500000"), ("total_query_count", "7")])];
        let got = samples("STATS", &rows, &["database"], STATS).expect("numbers");
        let time = got.iter().find(|s| s.name == "pgbouncer_stats_queries_duration_seconds").expect("time");
        assert!((time.value - 2.5).abs() < 1e-9, "{time:?}");
        assert!(got.iter().any(|s| s.name == "pgbouncer_stats_queries_pooled" && s.value == 7.0));
    }

    #[test]
    fn a_column_that_is_not_a_number_is_an_error_naming_it() {
        let rows = [row(&[("database", "risk"), ("total_sent", "lots")])];
        let err = samples("STATS", &rows, &["database"], STATS).expect_err("not a number");
        assert_eq!(err.to_string(), "column total_sent of SHOW STATS is not a number: \"lots\"");
    }

    #[test]
    fn the_collector_reports_down_and_no_series_before_a_scrape_reads_anything() {
        let collector = Arc::new(PgBouncerCollector::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        assert!(out.contains("pgbouncer_up 0"), "{out}");
        assert!(!out.contains("pgbouncer_pools"), "{out}");

        *collector.snapshot.lock().expect("lock") = Snapshot {
            up: true,
            samples: vec![Sample {
                name: "pgbouncer_stats_queries_pooled",
                labels: vec![("database", "risk".to_owned())],
                value: 4.0,
            }],
        };
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        assert!(out.contains("pgbouncer_up 1"), "{out}");
        assert!(out.contains("# TYPE pgbouncer_stats_queries_pooled counter"), "{out}");
        assert!(out.contains("pgbouncer_stats_queries_pooled_total{database=\"risk\"} 4"), "{out}");
    }
}
