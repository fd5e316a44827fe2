//! Read access of the platform's ServiceAccount to the circuit-breaker ConfigMap: a Role limited
//! to that one object by name and a RoleBinding to the ServiceAccount.
//!
//! The API pods watch that ConfigMap (a watcher with a `metadata.name` field selector), which
//! needs get, list and watch; nothing else of the namespace is readable with this Role.

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::common::BuildContext;

/// The Role and its binding.
pub struct BreakerReader {
    pub role: Role,
    pub binding: RoleBinding,
}

pub fn build(ctx: &BuildContext) -> BreakerReader {
    let names = &ctx.names;
    let role = Role {
        metadata: ctx.meta(&names.breaker_reader, None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_owned()]),
            resource_names: Some(vec![names.breaker_configmap.clone()]),
            verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: ctx.meta(&names.breaker_reader, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: names.breaker_reader.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: names.platform.clone(),
            namespace: Some(ctx.namespace.clone()),
            ..Default::default()
        }]),
    };
    BreakerReader { role, binding }
}
