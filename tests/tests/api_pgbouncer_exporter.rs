//! The PgBouncer exporter (`riskplatform-api pgbouncer-exporter`) against a real PgBouncer: the
//! pools and stats of its admin console as Prometheus metrics, and `pgbouncer_up 0` with an
//! answer (not an error) while PgBouncer is down.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use riskplatform_api::config::PgBouncerExporterArgs;
use riskplatform_tests::http::{metric, metrics};
use riskplatform_tests::pgbouncer::{PgBouncer, STATS_PASSWORD, STATS_USER};
use riskplatform_tests::postgres::{Postgres, DATABASE};
use riskplatform_tests::prometheus::free_port;
use sqlx::Connection as _;

#[tokio::test]
async fn the_exporter_reports_pools_and_stats_and_says_when_pgbouncer_is_down() -> Result<()> {
    let postgres = Postgres::start()?;
    let mut pgbouncer = PgBouncer::start(postgres.port())?;
    let mut app = sqlx::PgConnection::connect(&pgbouncer.url()).await?;
    for _ in 0..5 {
        sqlx::query("SELECT 1").execute(&mut app).await?;
    }
    app.close().await?;

    let port = free_port()?;
    let args = PgBouncerExporterArgs {
        host: "127.0.0.1".to_owned(),
        port: pgbouncer.port(),
        user: STATS_USER.to_owned(),
        password: Some(STATS_PASSWORD.to_owned()),
        listen: format!("127.0.0.1:{port}"),
        timeout_ms: 2000,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let exporter = tokio::spawn(riskplatform_api::pgbouncer_exporter::run(args, async {
        let _ = stopped.await;
    }));
    let url = format!("http://127.0.0.1:{port}");
    let mut text = String::new();
    for _ in 0..50 {
        if let Ok(t) = metrics(&url).await {
            text = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(metric(&text, "pgbouncer_up ") == Some(1.0), "PgBouncer up:\n{text}");
    let queries = metric(&text, &format!("pgbouncer_stats_queries_pooled_total{{database=\"{DATABASE}\"}}"))
        .with_context(|| format!("queries of {DATABASE}:\n{text}"))?;
    ensure!(queries >= 5.0, "at least the 5 queries sent: {queries}\n{text}");
    ensure!(
        text.contains("# TYPE pgbouncer_pools_server_idle_connections gauge")
            && text.contains(&format!("pgbouncer_pools_client_waiting_connections{{database=\"{DATABASE}\"")),
        "pool gauges of {DATABASE}:\n{text}"
    );
    ensure!(text.contains("pgbouncer_stats_queries_duration_seconds_total{"), "query time in seconds:\n{text}");

    pgbouncer.service.stop()?;
    let down = metrics(&url).await?;
    ensure!(metric(&down, "pgbouncer_up ") == Some(0.0), "PgBouncer down:\n{down}");
    ensure!(!down.contains("pgbouncer_pools_"), "no stale series while down:\n{down}");

    let _ = stop.send(());
    exporter.await??;
    Ok(())
}
