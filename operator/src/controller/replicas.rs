//! Ownership of `spec.replicas`: the reconciler never writes it; the autoscaler's field manager
//! sets the first value and keeps it inside the spec's bounds.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::error::Result;

/// The field manager of replica counts; distinct from the reconciler's so the two never fight.
pub const AUTOSCALER_MANAGER: &str = "riskplatform-autoscaler";

/// Whether the autoscaler's field manager owns `spec.replicas` of `d`.
pub fn autoscaler_owns_replicas(d: &Deployment) -> bool {
    d.managed_fields().iter().any(|m| {
        m.manager.as_deref() == Some(AUTOSCALER_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")).and_then(|spec| spec.get("f:replicas")).is_some()
    })
}

/// The replica count to set now, if any: the current count clamped into [min, max] when the
/// autoscaler does not own the field yet or the bounds moved; nothing when it is already fine.
pub fn replicas_to_set(observed: &Deployment, min: i32, max: i32) -> Option<i32> {
    let current = observed.spec.as_ref().and_then(|s| s.replicas);
    let owned = autoscaler_owns_replicas(observed);
    let target = current.unwrap_or(min).clamp(min, max.max(min));
    match (owned, current) {
        (true, Some(c)) if c == target => None,
        _ => Some(target),
    }
}

/// Writes `spec.replicas` under the autoscaler's field manager.
pub async fn set_replicas(client: &Client, namespace: &str, name: &str, replicas: i32) -> Result<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": { "replicas": replicas },
    });
    Ok(api.patch(name, &PatchParams::apply(AUTOSCALER_MANAGER).force(), &Patch::Apply(&body)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn deployment(replicas: Option<i32>, manager: Option<&str>) -> Deployment {
        let mut d = Deployment {
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec { replicas, ..Default::default() }),
            ..Default::default()
        };
        if let Some(manager) = manager {
            d.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
                manager: Some(manager.to_owned()),
                operation: Some("Apply".to_owned()),
                fields_v1: Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}}))),
                ..Default::default()
            }]);
        }
        d
    }

    #[test]
    fn a_new_deployment_starts_at_the_minimum() {
        assert_eq!(replicas_to_set(&deployment(None, None), 2, 20), Some(2));
    }

    #[test]
    fn replicas_owned_by_the_autoscaler_inside_the_bounds_are_left_alone() {
        assert_eq!(replicas_to_set(&deployment(Some(7), Some(AUTOSCALER_MANAGER)), 2, 20), None);
    }

    #[test]
    fn raising_the_minimum_lifts_the_replicas() {
        assert_eq!(replicas_to_set(&deployment(Some(2), Some(AUTOSCALER_MANAGER)), 4, 20), Some(4));
    }

    #[test]
    fn lowering_the_maximum_caps_the_replicas() {
        assert_eq!(replicas_to_set(&deployment(Some(12), Some(AUTOSCALER_MANAGER)), 2, 10), Some(10));
    }

    #[test]
    fn a_hand_scaled_deployment_is_taken_over_at_its_current_count() {
        assert_eq!(replicas_to_set(&deployment(Some(5), Some("kubectl")), 2, 20), Some(5));
    }
}
