//! ClusterIP allocation: every Service that should have a cluster IP gets the lowest free one
//! of the instance's service CIDR, in `spec.clusterIP` (or the contract's annotation when the
//! API server refuses to set it).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::Error;
use crate::contract::{cluster_ip, CLUSTER_IP_ANNOTATION};
use crate::network::Network;

/// Upstream reserves the first address of the range for the `kubernetes` Service.
const FIRST_ALLOCATED_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

/// Whether a Service should get a cluster IP: not headless (`None`), not ExternalName, none yet.
pub fn needs_ip(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    let headless = spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    !headless && !external && cluster_ip(svc).is_none()
}

/// The lowest address of the instance's range not in `used`.
pub fn allocate(network: Network, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    (FIRST_ALLOCATED_HOST..=LAST_HOST).map(|h| network.service_ip(h)).find(|ip| !used.contains(ip))
}

struct Ctx {
    client: Client,
    network: Network,
    services: Store<Service>,
    /// Addresses handed out by this process, so concurrent reconciles never give one twice
    /// before the watch cache shows the first.
    handed_out: Mutex<BTreeSet<Ipv4Addr>>,
}

pub async fn run(client: Client, network: Network) {
    let controller = Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Ctx { client, network, services: controller.store(), handed_out: Mutex::new(BTreeSet::new()) });
    controller
        .run(reconcile, |svc, error: &Error, _| {
            tracing::warn!(service = %svc.name_any(), namespace = ?svc.namespace(), %error, "cluster IP allocation failed");
            Action::requeue(Duration::from_secs(1))
        }, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !needs_ip(&svc) {
        return Ok(Action::await_change());
    }
    let ip = {
        let mut handed_out = ctx.handed_out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut used: BTreeSet<Ipv4Addr> = ctx.services.state().iter().filter_map(|s| cluster_ip(s)).collect();
        used.extend(handed_out.iter().copied());
        let ip = allocate(ctx.network, &used).ok_or(Error::RangeFull)?;
        handed_out.insert(ip);
        ip
    };
    let namespace = svc.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let in_spec = Patch::Merge(json!({ "spec": { "clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()] } }));
    let api_error = |source| Error::Api { what: format!("Service {namespace}/{}", svc.name_any()), source };
    match api.patch(&svc.name_any(), &PatchParams::default(), &in_spec).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 422 => {
            let annotated =
                Patch::Merge(json!({ "metadata": { "annotations": { CLUSTER_IP_ANNOTATION: ip.to_string() } } }));
            api.patch(&svc.name_any(), &PatchParams::default(), &annotated).await.map_err(api_error)?;
        }
        Err(e) => return Err(api_error(e)),
    }
    tracing::info!(service = %svc.name_any(), %namespace, %ip, "allocated cluster IP");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    fn svc(cluster_ip: Option<&str>, type_: Option<&str>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                cluster_ip: cluster_ip.map(Into::into),
                type_: type_.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_services_without_an_ip_that_are_not_headless_or_external_need_one() {
        assert!(needs_ip(&svc(None, None)));
        assert!(needs_ip(&svc(Some(""), Some("NodePort"))));
        assert!(!needs_ip(&svc(Some("None"), None)));
        assert!(!needs_ip(&svc(None, Some("ExternalName"))));
        assert!(!needs_ip(&svc(Some("10.96.3.7"), None)));
    }

    #[test]
    fn allocation_takes_the_lowest_free_address_of_the_instance_range() {
        let network = Network::new(3).unwrap();
        assert_eq!(allocate(network, &BTreeSet::new()), Some(Ipv4Addr::new(10, 96, 3, 2)));
        let used = BTreeSet::from([Ipv4Addr::new(10, 96, 3, 2), Ipv4Addr::new(10, 96, 3, 3)]);
        assert_eq!(allocate(network, &used), Some(Ipv4Addr::new(10, 96, 3, 4)));
        let full: BTreeSet<Ipv4Addr> = (2..=254).map(|h| network.service_ip(h)).collect();
        assert_eq!(allocate(network, &full), None);
    }
}
