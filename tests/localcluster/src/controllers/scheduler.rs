//! The trivial scheduler: every pod without a node is bound to the one node, through the
//! pods/binding subresource where the API server serves it, else by setting `spec.nodeName`.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::contract::NODE_NAME;

pub async fn run(client: Client) {
    let binding_served = AtomicBool::new(true);
    let pods: Api<Pod> = Api::all(client.clone());
    let stream = watcher(pods, watcher::Config::default()).default_backoff().applied_objects();
    let result = stream
        .try_for_each(|pod| {
            let client = client.clone();
            let binding_served = &binding_served;
            async move {
                let unscheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.as_deref().unwrap_or("").is_empty());
                if unscheduled && pod.metadata.deletion_timestamp.is_none() {
                    if let Err(error) = bind(&client, &pod, binding_served).await {
                        tracing::warn!(pod = %pod.name_any(), namespace = ?pod.namespace(), %error, "binding failed");
                    }
                }
                Ok(())
            }
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "pod watch ended");
    }
}

async fn bind(client: &Client, pod: &Pod, binding_served: &AtomicBool) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let name = pod.name_any();
    if binding_served.load(Ordering::Relaxed) {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": { "name": name },
            "target": { "apiVersion": "v1", "kind": "Node", "name": NODE_NAME },
        });
        match api.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 && api.get_opt(&name).await?.is_some() => {
                tracing::info!("the API server does not serve pods/binding: scheduling by patching spec.nodeName");
                binding_served.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    let patch = Patch::Merge(json!({ "spec": { "nodeName": NODE_NAME } }));
    api.patch(&name, &PatchParams::default(), &patch).await?;
    tracing::debug!(pod = %name, node = NODE_NAME, "scheduled");
    Ok(())
}
