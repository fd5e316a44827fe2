//! Shared pieces of every child: names, labels, owner reference, security contexts, config hashes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, PodSecurityContext, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use riskplatform_crd::RiskPlatform;
use sha2::{Digest, Sha256};

use super::Names;
use crate::error::{Error, Result};

/// Pod-template annotation holding a hash of the configuration a pod reads at start-up, so a
/// change of that configuration rolls the pods (Kubernetes does not restart pods on its own).
pub const CONFIG_HASH_ANNOTATION: &str = "riskplatform.io/config-hash";

const MANAGED_BY: &str = "riskplatform-operator";

/// The parts of a platform; each is one workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Api,
    Worker,
    Redis,
    PgBouncer,
}

impl Component {
    pub fn label(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker => "worker",
            Self::Redis => "redis",
            Self::PgBouncer => "pgbouncer",
        }
    }
}

/// What every builder needs: names, namespace, owner reference.
pub struct BuildContext<'a> {
    pub rp: &'a RiskPlatform,
    pub names: Names,
    pub namespace: String,
    owner: OwnerReference,
}

impl<'a> BuildContext<'a> {
    pub fn new(rp: &'a RiskPlatform) -> Result<Self> {
        let namespace = rp.namespace().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
        let owner = rp.controller_owner_ref(&()).ok_or(Error::MissingObjectKey("metadata.uid"))?;
        Ok(Self { rp, names: Names::new(&rp.name_any()), namespace, owner })
    }

    /// Metadata of a child: name, namespace, labels and the controller owner reference that lets
    /// the garbage collector delete it with the platform.
    pub fn meta(&self, name: &str, component: Option<Component>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(match component {
                Some(c) => component_labels(&self.names.platform, c),
                None => instance_labels(&self.names.platform),
            }),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }
}

fn instance_labels(platform: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "riskplatform".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), platform.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned()),
    ])
}

/// Labels of a child that belongs to one component.
pub fn component_labels(platform: &str, component: Component) -> BTreeMap<String, String> {
    let mut labels = instance_labels(platform);
    labels.insert("app.kubernetes.io/component".to_owned(), component.label().to_owned());
    labels
}

/// The immutable selector of a component's pods (a subset of its labels).
pub fn selector_labels(platform: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), platform.to_owned()),
        ("app.kubernetes.io/component".to_owned(), component.label().to_owned()),
    ])
}

pub fn selector(platform: &str, component: Component) -> LabelSelector {
    LabelSelector { match_labels: Some(selector_labels(platform, component)), ..Default::default() }
}

/// The ServiceAccount the platform's pods run as.
pub fn service_account(ctx: &BuildContext) -> ServiceAccount {
    ServiceAccount { metadata: ctx.meta(&ctx.names.platform, None), ..Default::default() }
}

/// Hex SHA-256 of configuration text, for [`CONFIG_HASH_ANNOTATION`].
pub fn config_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Pod Security "restricted" profile for a container.
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Default::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..Default::default() }),
        ..Default::default()
    }
}

/// Pod Security "restricted" profile for a pod; `uid` is the image's non-root user.
pub fn restricted_pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..Default::default() }),
        ..Default::default()
    }
}

pub fn http_probe(path: &str, port: &str, initial_delay: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

/// A container with the restricted security context; callers fill the rest.
/// Requests and limits of a metrics sidecar: small, and bounded so that one cannot starve the
/// container it watches.
pub fn sidecar_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".to_owned())),
            ("memory".to_owned(), Quantity("32Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        ..Default::default()
    }
}

pub fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        security_context: Some(restricted_container_security()),
        ..Default::default()
    }
}
