use clap::Parser;
use riskplatform_api::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Serve(args) => riskplatform_api::server::run(args, shutdown_signal()).await,
        Command::Worker(args) => riskplatform_api::worker::run(args, shutdown_signal()).await,
        Command::Migrate(args) => riskplatform_api::admin::migrate(&args).await,
        Command::Admin(command) => riskplatform_api::admin::run(command).await,
    }
}
