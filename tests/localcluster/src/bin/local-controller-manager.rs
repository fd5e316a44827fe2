//! Entry point of the local cluster's controller-manager (see `riskplatform_localcluster::manager`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    riskplatform_localcluster::manager::run(riskplatform_localcluster::manager::Args::parse()).await
}
