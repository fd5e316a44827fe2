//! Leader election: hold a coordination.k8s.io Lease before reconciling or scaling.
//!
//! A replica that loses the lease stops at once and exits with an error, as client-go's leader
//! election does: a restarted process re-joins as a standby instead of risking a second writer.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::LeaderElectionConfig;

/// A running membership in the election.
pub struct Election {
    leading: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Election {
    /// Joins the election under `identity`.
    pub async fn join(
        client: Client,
        config: &LeaderElectionConfig,
        identity: &str,
    ) -> Result<Self, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(identity)
            .with_duration(config.lease_duration_seconds)
            .with_grace(config.lease_grace_seconds)
            .with_field_manager(format!("riskplatform-operator-lease-{identity}"))
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        Ok(Self { leading, task })
    }

    /// Resolves once this replica holds the lease.
    pub async fn acquired(&mut self) {
        if self.leading.wait_for(|leading| *leading).await.is_ok() {
            info!("acquired leadership");
        }
    }

    /// Resolves when this replica loses the lease after having held it.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut leading = self.leading.clone();
        async move {
            let _ = leading.wait_for(|leading| !*leading).await;
        }
    }

    /// Whether the lease is held now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Leaves the election, releasing the lease so a standby takes over without waiting.
    pub async fn resign(self) {
        drop(self.leading);
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "releasing the lease failed; it expires on its own");
        }
    }
}
