//! The RiskPlatform operator: reconciles RiskPlatforms into the workloads of the prediction
//! platform and serves health and metrics. `main.rs` only parses the configuration and calls `run`.

pub mod admin;
pub mod autoscale;
pub mod circuit;
pub mod client;
pub mod config;
pub mod context;
pub mod controller;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod rest;
pub mod telemetry;

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;

use config::OperatorConfig;
use context::Context;
pub use error::{Error, Result};

/// Runs the operator until `shutdown` resolves: the controller and the admin HTTP server.
pub async fn run(config: OperatorConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let client = Client::try_default().await?;
    run_with_client(client, config, shutdown).await
}

/// Like [`run`] with a given client (tests point it at their API server).
///
/// With leader election on, the admin server starts at once while the controller waits for the
/// lease; losing the lease stops the controller and returns [`Error::LostLeadership`].
pub async fn run_with_client(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let OperatorConfig {
        listen_addr,
        namespace,
        instance,
        leader,
        api_token_file,
        autoscale_interval_seconds,
        database_check_seconds,
        max_concurrent_reconciles,
        ..
    } = config;
    let auth = rest::RestAuth::from_file(api_token_file.as_deref()).map_err(Error::Admin)?;
    let identity = instance.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(metrics::Metrics::default());
    let client = client::counting(client, metrics.api.clone());
    let mut context = Context::new(client.clone(), metrics, namespace, instance);
    context.autoscale_interval = std::time::Duration::from_secs(autoscale_interval_seconds.max(1));
    context.database_check = (database_check_seconds > 0)
        .then(|| controller::database::DatabaseCheck::new(std::time::Duration::from_secs(database_check_seconds)));
    context.max_concurrent_reconciles = max_concurrent_reconciles;
    let ctx = Arc::new(context);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    });

    let listener = tokio::net::TcpListener::bind(listen_addr).await.map_err(Error::Admin)?;
    tracing::info!(addr = %listener.local_addr().map_err(Error::Admin)?, "admin server listening");
    let server = tokio::spawn(
        axum::serve(listener, admin::router(ctx.clone()).merge(rest::router(client.clone(), auth)))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );

    let outcome = if leader.enabled {
        lead(client, &leader, &identity, ctx, stop_rx).await
    } else {
        ctx.leading.store(true, Ordering::Relaxed);
        controller::run(ctx, stopped(stop_rx)).await;
        Ok(())
    };
    let _ = stop_tx.send(true);
    match server.await {
        Ok(served) => served.map_err(Error::Admin)?,
        Err(e) => tracing::error!(error = %e, "admin server task failed"),
    }
    outcome
}

/// Waits for the lease, then runs the controller until shutdown or until the lease is lost.
async fn lead(
    client: Client,
    config: &config::LeaderElectionConfig,
    identity: &str,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut election = leader::Election::join(client, config, identity).await.map_err(Error::LeaderElection)?;
    tracing::info!(%identity, lease = %config.lease_name, "waiting for leadership");
    tokio::select! {
        () = election.acquired() => {}
        () = stopped(stop.clone()) => {
            election.resign().await;
            return Ok(());
        }
    }
    ctx.leading.store(true, Ordering::Relaxed);
    let lost = Arc::new(AtomicBool::new(false));
    let lost_flag = lost.clone();
    let leadership_lost = election.lost();
    let until = async move {
        tokio::select! {
            () = stopped(stop) => {}
            () = leadership_lost => lost_flag.store(true, Ordering::Relaxed),
        }
    };
    controller::run(ctx.clone(), until).await;
    ctx.leading.store(false, Ordering::Relaxed);
    let was_lost = lost.load(Ordering::Relaxed) || !election.is_leader();
    election.resign().await;
    if was_lost {
        tracing::error!("lost leadership; stopping so a restart re-joins as a standby");
        return Err(Error::LostLeadership);
    }
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A unique name for this process when no pod name is given.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
