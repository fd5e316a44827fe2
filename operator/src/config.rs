//! Command line and environment configuration, parsed once in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "riskplatform-operator", version, about = "Runs RiskPlatforms on Kubernetes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub operator: OperatorConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (the default).
    Run,
    /// Write the CustomResourceDefinition YAML into a directory.
    Crdgen {
        /// Directory to write into.
        #[arg(long, default_value = "crds")]
        out_dir: PathBuf,
    },
}

/// Settings of the controller process. The cluster comes from KUBECONFIG or the in-cluster
/// service account, as kube's `Client::try_default` finds it.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorConfig {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "RISK_OPERATOR_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Watch only this namespace; all namespaces when unset.
    #[arg(long, env = "RISK_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of this replica in Events (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "RISK_OPERATOR_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}
