//! The pod's `/etc/hosts` and `/etc/resolv.conf`: the kubelet-managed hosts file plus every
//! Service name form, standing in for cluster DNS (there is no DNS server here).

use std::net::Ipv4Addr;

/// A Service as the hosts file needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
}

/// As kubelet's `managedHostsHeader` file, then one line per Service with the names that the
/// search path `<ns>.svc.cluster.local svc.cluster.local cluster.local` would resolve.
pub fn hosts(pod_ip: Ipv4Addr, hostname: &str, namespace: &str, services: &[ServiceName]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    out.push_str(&format!("{pod_ip}\t{hostname}\n"));
    out.push_str("# Services (the local cluster has no DNS server)\n");
    let mut sorted = services.to_vec();
    sorted.sort();
    for s in sorted {
        let (n, ns) = (&s.name, &s.namespace);
        let short = if ns == namespace { format!(" {n}") } else { String::new() };
        out.push_str(&format!("{}\t{n}.{ns}.svc.cluster.local {n}.{ns}.svc {n}.{ns}{short}\n", s.ip));
    }
    out
}

/// The search path a pod with `dnsPolicy: ClusterFirst` gets; the nameserver is the node,
/// where nothing answers, so names outside the hosts file fail at once.
pub fn resolv_conf(namespace: &str, nameserver: Ipv4Addr) -> String {
    format!("search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {nameserver}\noptions ndots:5\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_of_the_pods_namespace_also_get_their_short_name() {
        let services = [
            ServiceName { namespace: "other".into(), name: "db".into(), ip: Ipv4Addr::new(10, 96, 0, 9) },
            ServiceName { namespace: "app".into(), name: "redis".into(), ip: Ipv4Addr::new(10, 96, 0, 5) },
        ];
        let text = hosts(Ipv4Addr::new(10, 244, 0, 2), "web-0", "app", &services);
        assert!(text.contains("10.244.0.2\tweb-0\n"));
        assert!(text.contains("10.96.0.5\tredis.app.svc.cluster.local redis.app.svc redis.app redis\n"));
        assert!(text.contains("10.96.0.9\tdb.other.svc.cluster.local db.other.svc db.other\n"));
        assert!(resolv_conf("app", Ipv4Addr::new(10, 244, 0, 1))
            .starts_with("search app.svc.cluster.local svc.cluster.local cluster.local\n"));
    }
}
