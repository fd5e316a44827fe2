//! Runs the real operator library in-process against a test cluster.

use std::net::SocketAddr;

use anyhow::Result;
use kube::Client;
use riskplatform_operator::config::{LeaderElectionConfig, OperatorConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The operator running in a background task; stops gracefully on drop or [`RunningOperator::stop`].
pub struct RunningOperator {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<riskplatform_operator::Result<()>>>,
}

impl RunningOperator {
    /// Starts the operator watching `namespace` only, so tests sharing a cluster stay apart.
    pub fn start(client: Client, namespace: &str) -> Self {
        Self::start_with(client, Self::config(namespace))
    }

    /// The configuration [`RunningOperator::start`] uses, for a test to change before
    /// [`RunningOperator::start_with`].
    pub fn config(namespace: &str) -> OperatorConfig {
        OperatorConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            namespace: Some(namespace.to_owned()),
            instance: Some("test".to_owned()),
            log_format: "text".to_owned(),
            autoscale_interval_seconds: 2,
            api_token_file: None,
            // The test cluster's platforms point at no database; tests that check one set it.
            database_check_seconds: 0,
            max_concurrent_reconciles: 0,
            leader: LeaderElectionConfig {
                enabled: true,
                lease_name: "riskplatform-operator".to_owned(),
                lease_namespace: namespace.to_owned(),
                lease_duration_seconds: 15,
                lease_grace_seconds: 5,
            },
        }
    }

    pub fn start_with(client: Client, config: OperatorConfig) -> Self {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(riskplatform_operator::run_with_client(client, config, async {
            let _ = rx.await;
        }));
        Self { stop: Some(tx), task: Some(task) }
    }

    /// Stops the operator and waits for it to finish, returning its result.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
