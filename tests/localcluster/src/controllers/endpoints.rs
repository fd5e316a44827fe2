//! The EndpointSlice and Endpoints controllers: for every Service with a selector, the pods it
//! selects that have an IP, with ready/serving/terminating conditions and resolved target ports.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::{api_error, controller_ref, error_policy, invalid, pods, Context, Error, FIELD_MANAGER, RESYNC};

/// The label naming a slice's Service, which consumers (kube-proxy, the proxy here) select on.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    controller
        .watches(Api::<Pod>::all(client), watcher::Config::default(), move |pod: Pod| {
            let namespace = pod.namespace();
            services
                .state()
                .into_iter()
                .filter(|svc| svc.namespace() == namespace && selects(svc, &pod))
                .map(|svc| ObjectRef::from_obj(&*svc))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether the Service's selector picks the pod (a Service without one picks none).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    selector(svc).is_some_and(|sel| sel.iter().all(|(k, v)| pod.labels().get(k) == Some(v)))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone().filter(|ip| !ip.is_empty())
}

/// Upstream's FindPort: a number is itself, a name is looked up in the pod's container ports.
pub fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port),
    }
}

fn protocol(port: &ServicePort) -> String {
    port.protocol.clone().unwrap_or_else(|| "TCP".to_owned())
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.namespace(),
        uid: pod.uid(),
        ..Default::default()
    }
}

/// The EndpointSlices of a Service: one per distinct set of resolved ports (named target ports
/// may resolve differently per pod), each named `<service>-<n>` after the port set's rank.
pub fn slices(svc: &Service, selected: &[&Pod]) -> Vec<EndpointSlice> {
    let publish_not_ready = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true);
    let ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let mut groups: BTreeMap<Vec<(Option<String>, i32)>, Vec<Endpoint>> = BTreeMap::new();
    for pod in selected.iter().filter(|p| !pods::has_finished(p)) {
        let Some(ip) = pod_ip(pod) else { continue };
        let resolved: Vec<(Option<String>, i32)> =
            ports.iter().filter_map(|p| Some((p.name.clone(), target_port(p, pod)?))).collect();
        let terminating = pods::is_terminating(pod);
        let serving = publish_not_ready || pods::is_ready(pod);
        groups.entry(resolved).or_default().push(Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(serving && !terminating),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            ..Default::default()
        });
    }
    if groups.is_empty() {
        groups.insert(Vec::new(), Vec::new());
    }
    let owner = controller_ref(svc);
    groups
        .into_iter()
        .enumerate()
        .map(|(n, (resolved, endpoints))| EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{}-{n}", svc.name_any())),
                namespace: svc.namespace(),
                labels: Some(BTreeMap::from([
                    (SERVICE_NAME_LABEL.into(), svc.name_any()),
                    (MANAGED_BY_LABEL.into(), MANAGED_BY.into()),
                ])),
                owner_references: owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(
                resolved
                    .into_iter()
                    .map(|(name, port)| {
                        let sp = ports.iter().find(|p| p.name == name);
                        SlicePort {
                            name,
                            port: Some(port),
                            protocol: sp.map(protocol),
                            app_protocol: sp.and_then(|p| p.app_protocol.clone()),
                        }
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// The legacy Endpoints object: ready pods as addresses, unready ones as notReadyAddresses,
/// terminating pods left out, one subset per distinct resolved port set.
pub fn endpoints(svc: &Service, selected: &[&Pod]) -> Endpoints {
    let mut subsets = Vec::new();
    for slice in slices(svc, selected) {
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        for e in &slice.endpoints {
            let c = e.conditions.clone().unwrap_or_default();
            if c.terminating == Some(true) {
                continue;
            }
            let address = EndpointAddress {
                ip: e.addresses[0].clone(),
                node_name: e.node_name.clone(),
                target_ref: e.target_ref.clone(),
                hostname: None,
            };
            if c.ready == Some(true) {
                ready.push(address)
            } else {
                not_ready.push(address)
            }
        }
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        let ports = slice
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name,
                port: p.port.unwrap_or(0),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        subsets.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(ports),
        });
    }
    Endpoints {
        metadata: ObjectMeta {
            name: Some(svc.name_any()),
            namespace: svc.namespace(),
            labels: svc.metadata.labels.clone(),
            owner_references: controller_ref(svc).map(|o| vec![o]),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

#[tracing::instrument(skip_all, fields(namespace = svc.namespace(), name = %svc.name_any()))]
async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() || selector(&svc).is_none() {
        return Ok(Action::await_change());
    }
    let namespace = svc.namespace().ok_or_else(|| invalid(&*svc, "no namespace"))?;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let all = pod_api.list(&ListParams::default()).await.map_err(api_error(&*svc))?;
    let selected: Vec<&Pod> = all.items.iter().filter(|p| selects(&svc, p)).collect();

    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let slice_api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let wanted = slices(&svc, &selected);
    for slice in &wanted {
        let mut body = serde_json::to_value(slice).map_err(|e| invalid(&*svc, e.to_string()))?;
        body["apiVersion"] = "discovery.k8s.io/v1".into();
        body["kind"] = "EndpointSlice".into();
        slice_api.patch(&slice.name_any(), &apply, &Patch::Apply(body)).await.map_err(api_error(&*svc))?;
    }
    let existing = slice_api
        .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={}", svc.name_any())))
        .await
        .map_err(api_error(&*svc))?;
    for stale in existing.items.iter().filter(|s| !wanted.iter().any(|w| w.metadata.name == s.metadata.name)) {
        slice_api.delete(&stale.name_any(), &DeleteParams::default()).await.map_err(api_error(&*svc))?;
    }

    let ep_api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut body = serde_json::to_value(endpoints(&svc, &selected)).map_err(|e| invalid(&*svc, e.to_string()))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Endpoints".into();
    ep_api.patch(&svc.name_any(), &apply, &Patch::Apply(body)).await.map_err(api_error(&*svc))?;
    Ok(Action::requeue(RESYNC))
}
