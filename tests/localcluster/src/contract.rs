//! What the kubelet and the controllers halves agree on, read from the API server only.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

/// Where a Service's ClusterIP is recorded when the API server refuses to set `spec.clusterIP`.
pub const CLUSTER_IP_ANNOTATION: &str = "localcluster.riskplatform.io/cluster-ip";

/// The one Node of a local cluster.
pub const NODE_NAME: &str = "localcluster";

/// The Service's ClusterIP: `spec.clusterIP`, else the annotation; `None` for headless or unallocated.
pub fn cluster_ip(service: &Service) -> Option<Ipv4Addr> {
    let from_spec = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).and_then(|ip| ip.parse().ok());
    from_spec.or_else(|| service.metadata.annotations.as_ref()?.get(CLUSTER_IP_ANNOTATION)?.parse().ok())
}
