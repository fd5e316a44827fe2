//! What the two halves of the local cluster (controllers and kubelet) agree on, shared verbatim.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

/// The annotation holding a Service's cluster IP when the API server refuses `spec.clusterIP`.
pub const CLUSTER_IP_ANNOTATION: &str = "localcluster.riskplatform.io/cluster-ip";

/// The annotation listing a Service's host ports on 127.0.0.1 as `port=hostPort,...`.
pub const HOST_PORTS_ANNOTATION: &str = "localcluster.riskplatform.io/host-ports";

/// The one node every pod is scheduled to.
pub const NODE_NAME: &str = "localcluster";

/// The cluster IP of a Service: `spec.clusterIP`, else the local cluster's annotation.
pub fn cluster_ip(service: &Service) -> Option<Ipv4Addr> {
    let spec_ip =
        service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).filter(|ip| !ip.is_empty() && *ip != "None");
    let annotated =
        || service.metadata.annotations.as_ref().and_then(|a| a.get(CLUSTER_IP_ANNOTATION)).map(String::as_str);
    spec_ip.or_else(annotated).and_then(|ip| ip.parse().ok())
}
