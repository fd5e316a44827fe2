//! The local cluster's kubelet (see `riskplatform_localcluster::kubelet`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use riskplatform_localcluster::kubelet::{self, Config};

#[derive(Parser)]
#[command(about = "Runs the Pods bound to the node `localcluster` as real processes", subcommand_negates_reqs = true)]
struct Cli {
    #[arg(long, required = true)]
    kubeconfig: Option<PathBuf>,
    /// Pod directories, logs and PVC directories live here.
    #[arg(long, required = true)]
    state_dir: Option<PathBuf>,
    /// The cluster instance (0..=99) whose lock the starter holds.
    #[arg(long, required = true, value_parser = clap::value_parser!(u8).range(0..=99))]
    index: Option<u8>,
    /// Port of /metrics/cadvisor; 0 picks a free one, written to <state-dir>/kubelet.port.
    #[arg(long, default_value_t = 0)]
    cadvisor_port: u16,
    /// Where the workspace binaries are; default: the directory of this binary.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// A pod's sandbox process: forwards a TCP port (run inside the pod's network namespace).
    Forward {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
    },
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    if let Some(Command::Forward { listen, to }) = cli.command {
        return Ok(kubelet::run_forwarder(listen, to).await?);
    }
    let bin_dir = match cli.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?.parent().context("the kubelet binary has no directory")?.to_path_buf(),
    };
    let config = Config {
        kubeconfig: cli.kubeconfig.context("--kubeconfig")?,
        state_dir: cli.state_dir.context("--state-dir")?,
        index: cli.index.context("--index")?,
        cadvisor_port: cli.cadvisor_port,
        bin_dir,
    };
    kubelet::run(config, shutdown_signal()).await?;
    Ok(())
}
