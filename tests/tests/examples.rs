//! Every example in `examples/` is accepted by a real API server with the CRD installed, so the
//! examples cannot drift from the schema and its CEL rules.

use std::path::Path;

use anyhow::{Context as _, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use kube::Api;
use riskplatform_crd::RiskPlatform;
use riskplatform_tests::cluster::{install_crd, TestCluster};
use serde::Deserialize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_is_accepted_by_the_api_server() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    install_crd(&client).await?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut platforms = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(document)?;
            let kind = value["kind"].as_str().context("kind")?.to_owned();
            let namespace = value["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
            let namespaces: Api<Namespace> = Api::all(client.clone());
            if namespaces.get_opt(&namespace).await?.is_none() {
                let ns: Namespace = serde_json::from_value(serde_json::json!({ "metadata": { "name": namespace } }))?;
                namespaces.create(&PostParams::default(), &ns).await?;
            }
            match kind.as_str() {
                "RiskPlatform" => {
                    let rp: RiskPlatform = serde_json::from_value(value)?;
                    Api::<RiskPlatform>::namespaced(client.clone(), &namespace)
                        .create(&PostParams::default(), &rp)
                        .await
                        .with_context(|| format!("{} was rejected", path.display()))?;
                    platforms += 1;
                }
                "Secret" => {
                    let secret: Secret = serde_json::from_value(value)?;
                    Api::<Secret>::namespaced(client.clone(), &namespace)
                        .create(&PostParams::default(), &secret)
                        .await?;
                }
                "Job" => {
                    let job: Job = serde_json::from_value(value)?;
                    Api::<Job>::namespaced(client.clone(), &namespace)
                        .create(&PostParams::default(), &job)
                        .await
                        .with_context(|| format!("{} was rejected", path.display()))?;
                }
                other => anyhow::bail!("{}: unexpected kind {other}", path.display()),
            }
        }
    }
    assert!(platforms >= 2, "found {platforms} example platforms");
    Ok(())
}
