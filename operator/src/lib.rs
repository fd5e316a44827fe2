//! The RiskPlatform operator: reconciles RiskPlatforms into the workloads of the prediction
//! platform and serves health and metrics. `main.rs` only parses the configuration and calls `run`.

pub mod admin;
pub mod config;
pub mod context;
pub mod controller;
pub mod error;
pub mod metrics;
pub mod telemetry;

use std::future::Future;
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
pub async fn run_with_client(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let OperatorConfig { listen_addr, namespace, instance, .. } = config;
    let metrics = Arc::new(metrics::Metrics::default());
    let ctx = Arc::new(Context::new(client, metrics, namespace, instance));

    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let listener = tokio::net::TcpListener::bind(listen_addr).await.map_err(Error::Admin)?;
    tracing::info!(addr = %listener.local_addr().map_err(Error::Admin)?, "admin server listening");
    let server = axum::serve(listener, admin::router(ctx.clone())).with_graceful_shutdown(wait(rx.clone()));
    let controller = controller::run(ctx, wait(rx));
    let (served, ()) = tokio::join!(server, controller);
    served.map_err(Error::Admin)
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
