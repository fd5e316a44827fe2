//! Ownership of `spec.replicas`: the reconciler never writes it; the autoscaler's field manager
//! sets the first value and keeps it inside the spec's bounds.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::error::Result;

/// The field manager of replica counts; distinct from the reconciler's so the two never fight.
pub const AUTOSCALER_MANAGER: &str = "riskplatform-autoscaler";

/// Whether the autoscaler's field manager owns `spec.replicas` of `d`.
pub fn autoscaler_owns_replicas(d: &Deployment) -> bool {
    d.managed_fields().iter().any(claims_replicas)
}

fn claims_replicas(m: &ManagedFieldsEntry) -> bool {
    m.manager.as_deref() == Some(AUTOSCALER_MANAGER)
        && m.operation.as_deref() == Some("Apply")
        && m.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")).and_then(|spec| spec.get("f:replicas")).is_some()
}

/// Trims managedFields to what [`autoscaler_owns_replicas`] reads: the autoscaler's claim on
/// `spec.replicas`. The other entries (the reconciler's covers the whole pod template, as a
/// JSON tree) were most of a cached Deployment's memory.
pub fn keep_replicas_claim(meta: &mut ObjectMeta) {
    let claim = meta.managed_fields.take().unwrap_or_default().into_iter().find(claims_replicas);
    meta.managed_fields = claim.map(|m| {
        vec![ManagedFieldsEntry {
            manager: m.manager,
            operation: m.operation,
            fields_v1: Some(FieldsV1(json!({ "f:spec": { "f:replicas": {} } }))),
            ..Default::default()
        }]
    });
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
    let mut applied = api.patch(name, &PatchParams::apply(AUTOSCALER_MANAGER).force(), &Patch::Apply(&body)).await?;
    keep_replicas_claim(&mut applied.metadata);
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn trimmed_managed_fields_tell_the_same_owner() {
        let mut reconciler_only = deployment(Some(3), Some("riskplatform-operator"));
        let mut both = deployment(Some(3), Some(AUTOSCALER_MANAGER));
        both.metadata.managed_fields.get_or_insert_default().insert(
            0,
            ManagedFieldsEntry {
                manager: Some("riskplatform-operator".to_owned()),
                operation: Some("Apply".to_owned()),
                fields_v1: Some(FieldsV1(json!({"f:spec": {"f:template": {"f:spec": {}}}}))),
                ..Default::default()
            },
        );
        let mut updated = deployment(Some(3), Some(AUTOSCALER_MANAGER));
        updated.metadata.managed_fields.as_mut().unwrap()[0].operation = Some("Update".to_owned());
        for (d, owned) in [(&mut reconciler_only, false), (&mut both, true), (&mut updated, false)] {
            assert_eq!(autoscaler_owns_replicas(d), owned);
            keep_replicas_claim(&mut d.metadata);
            assert_eq!(autoscaler_owns_replicas(d), owned);
            assert!(d.managed_fields().len() <= 1);
        }
    }
}
