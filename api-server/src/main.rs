use clap::Parser;
use riskplatform_api::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C). The handlers are
/// installed here, before any work starts: a signal that arrived before a lazily installed
/// handler would kill the process instead of draining it.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutdown requested");
    })
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
        Command::Serve(args) => riskplatform_api::server::run(args, shutdown_signal()?).await,
        Command::Worker(args) => riskplatform_api::worker::run(args, shutdown_signal()?).await,
        Command::Migrate(args) => riskplatform_api::admin::migrate(&args).await,
        Command::Admin(command) => riskplatform_api::admin::run(command).await,
        Command::PgbouncerExporter(args) => riskplatform_api::pgbouncer_exporter::run(args, shutdown_signal()?).await,
    }
}
