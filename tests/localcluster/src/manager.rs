//! The local controller-manager process: controllers, scheduler, ClusterIP allocator, Service
//! proxy, kube-state-metrics and the Prometheus configuration, run together until a signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config};

use crate::network::Network;
use crate::services::interface::ServiceInterface;
use crate::services::{clusterip, ksm, podsd, promconfig, proxy::Proxy};

/// The flags every local-cluster binary takes (the contract), plus this one's own.
#[derive(Clone, Debug, clap::Parser)]
#[command(about = "Controllers, scheduler, Service proxy and kube-state-metrics of a local cluster")]
pub struct Args {
    /// Kubeconfig of the API server (kube-testenv's).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Directory of the instance's state; port files and the Prometheus configuration go here.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The instance index N (0..=99) its starter claimed with /tmp/localcluster-N.lock.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=99))]
    pub index: u8,
    /// Port of kube-state-metrics on 127.0.0.1; 0 picks a free one, written to
    /// `<state-dir>/kube-state-metrics.port`.
    #[arg(long, default_value_t = 0)]
    pub metrics_port: u16,
}

/// How often the kubelet's port file is looked for, to point Prometheus at cAdvisor.
const KUBELET_PORT_POLL: Duration = Duration::from_secs(2);

pub async fn client(kubeconfig: &Path) -> Result<Client> {
    let config = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Runs everything until SIGTERM or SIGINT, then removes the service interface it created.
pub async fn run(args: Args) -> Result<()> {
    let network = Network::new(args.index).context("--index must be at most 99")?;
    std::fs::create_dir_all(&args.state_dir).with_context(|| format!("creating {}", args.state_dir.display()))?;
    let client = client(&args.kubeconfig).await?;

    let interface = match ServiceInterface::create(network).await {
        Ok(i) => Some(i),
        Err(error) => {
            tracing::warn!(%error, "no service interface (not root?): Services are reachable on host ports only");
            None
        }
    };
    let proxy = Arc::new(Proxy::new(interface));

    let (pods, pods_writer) = reflector::store::<Pod>();
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let (statefulsets, statefulsets_writer) = reflector::store::<StatefulSet>();
    let caches = futures::future::join3(
        reflector::reflector(pods_writer, watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {}),
        reflector::reflector(
            deployments_writer,
            watcher(Api::<Deployment>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(|_| async {}),
        reflector::reflector(
            statefulsets_writer,
            watcher(Api::<StatefulSet>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(|_| async {}),
    );
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", args.metrics_port)).await.context("binding kube-state-metrics")?;
    let metrics_address = listener.local_addr()?;
    let prometheus_dir = args.state_dir.join("prometheus");
    let access = promconfig::api_access(&std::fs::read_to_string(&args.kubeconfig)?)?;
    let prometheus_config = promconfig::write_config(&prometheus_dir, &access, &metrics_address.to_string())?;
    std::fs::write(args.state_dir.join("kube-state-metrics.port"), metrics_address.port().to_string())?;
    tracing::info!(kube_state_metrics = %metrics_address, prometheus_config = %prometheus_config.display(), index = args.index, "local controller-manager started");
    let pods_file = prometheus_dir.join("pods.json");
    let pod_targets = podsd::keep_written(pods.clone(), &pods_file);
    let app = ksm::router(ksm::Stores { pods, deployments, statefulsets });

    tokio::select! {
        () = crate::controllers::run(client.clone()) => tracing::error!("controllers ended"),
        () = clusterip::run(client.clone(), network) => tracing::error!("cluster IP allocator ended"),
        () = crate::services::run_proxy(client.clone(), proxy.clone()) => tracing::error!("proxy ended"),
        _ = caches => tracing::error!("metrics caches ended"),
        result = axum::serve(listener, app) => tracing::error!(?result, "kube-state-metrics server ended"),
        () = watch_kubelet_port(&args.state_dir, &prometheus_dir) => {},
        () = pod_targets => {},
        () = shutdown_signal() => tracing::info!("stopping"),
    }
    if let Some(interface) = proxy.interface() {
        interface.remove().await;
    }
    Ok(())
}

/// Points Prometheus's cAdvisor job at the kubelet once `<state-dir>/kubelet.port` appears.
async fn watch_kubelet_port(state_dir: &Path, prometheus_dir: &Path) {
    let mut written = None;
    loop {
        let port =
            std::fs::read_to_string(state_dir.join("kubelet.port")).ok().and_then(|s| s.trim().parse::<u16>().ok());
        if port.is_some() && port != written {
            let targets = promconfig::kubelet_targets(port.unwrap_or_default()).to_string();
            match std::fs::write(prometheus_dir.join("kubelet-targets.json"), targets) {
                Ok(()) => written = port,
                Err(error) => tracing::warn!(%error, "cannot write the kubelet's scrape target"),
            }
        }
        tokio::time::sleep(KUBELET_PORT_POLL).await;
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot install the SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
