//! Pod networking: the bridge `lcbrN` holding 10.244.N.1/24, one network namespace per pod
//! with a veth into the bridge, and the allocation of pod IPs from the pod CIDR.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use tokio::process::Command;

use super::error::{Error, Result};

/// Runs a host tool and fails with its stderr.
pub async fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().await.map_err(Error::io(format!("running {program}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The addresses of cluster instance N, as the shared contract defines them.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub index: u8,
}

impl Addresses {
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, 1)
    }
    pub fn pod_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, host)
    }
    pub fn bridge(&self) -> String {
        format!("lcbr{}", self.index)
    }
    pub fn cidr(&self) -> String {
        format!("10.244.{}.0/24", self.index)
    }
    fn netns_prefix(&self) -> String {
        format!("lc{}-", self.index)
    }
    /// The pod's network namespace, named after its IP so that names are unique while it lives.
    pub fn netns(&self, ip: Ipv4Addr) -> String {
        format!("{}{}", self.netns_prefix(), ip.octets()[3])
    }
    fn veth(&self, ip: Ipv4Addr) -> String {
        format!("lcv{}-{}", self.index, ip.octets()[3])
    }
}

/// Pod IPs in use; .1 is the gateway, .255 broadcast. As CNI's host-local IPAM, the search
/// starts after the last address handed out, so a released IP is reused only once the others
/// have been: peers still hold the old pod's MAC for it in their neighbour caches.
#[derive(Debug, Default)]
pub struct IpAllocator {
    used: BTreeSet<u8>,
    last: u8,
}

impl IpAllocator {
    pub fn allocate(&mut self) -> Option<u8> {
        let start = self.last.max(1);
        let host = (start + 1..=254).chain(2..=start).find(|h| !self.used.contains(h))?;
        self.used.insert(host);
        self.last = host;
        Some(host)
    }
    pub fn release(&mut self, host: u8) {
        self.used.remove(&host);
    }
}

/// Creates the bridge (idempotent) and removes namespaces a previous kubelet of this index left.
pub async fn setup_node(addr: Addresses) -> Result<()> {
    teardown_node(addr).await?;
    run("ip", &["link", "add", &addr.bridge(), "type", "bridge"]).await?;
    run("ip", &["addr", "add", &format!("{}/24", addr.gateway()), "dev", &addr.bridge()]).await?;
    run("ip", &["link", "set", &addr.bridge(), "up"]).await?;
    Ok(())
}

/// Deletes every pod namespace of this index and the bridge.
pub async fn teardown_node(addr: Addresses) -> Result<()> {
    let list = run("ip", &["netns", "list"]).await?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(&addr.netns_prefix()))
    {
        let _ = run("ip", &["netns", "del", name]).await;
    }
    let _ = run("ip", &["link", "del", &addr.bridge()]).await;
    Ok(())
}

/// A network namespace with `ip` on eth0, loopback up and the default route via the gateway.
pub async fn create_pod(addr: Addresses, ip: Ipv4Addr) -> Result<()> {
    let (ns, veth) = (addr.netns(ip), addr.veth(ip));
    delete_pod(addr, ip).await;
    // a previous pod with this IP left the host's neighbour entry with its MAC: until the entry
    // went stale (tens of seconds) the host, and so probes and the proxy, could not reach it
    let _ = run("ip", &["neigh", "flush", "to", &ip.to_string(), "dev", &addr.bridge()]).await;
    run("ip", &["netns", "add", &ns]).await?;
    run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]).await?;
    run("ip", &["link", "set", &veth, "master", &addr.bridge(), "up"]).await?;
    let in_ns = |args: &[&str]| {
        let mut all = vec!["netns", "exec", &ns, "ip"];
        all.extend_from_slice(args);
        all.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>()
    };
    for args in [
        in_ns(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]),
        in_ns(&["link", "set", "eth0", "up"]),
        in_ns(&["link", "set", "lo", "up"]),
        in_ns(&["route", "add", "default", "via", &addr.gateway().to_string()]),
    ] {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("ip", &refs).await?;
    }
    Ok(())
}

/// Removes the pod's namespace (its end of the veth goes with it) and the host end.
pub async fn delete_pod(addr: Addresses, ip: Ipv4Addr) {
    let _ = run("ip", &["netns", "del", &addr.netns(ip)]).await;
    let _ = run("ip", &["link", "del", &addr.veth(ip)]).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_index_and_released_ips_are_reused_only_after_the_others() {
        let addr = Addresses { index: 7 };
        assert_eq!(
            (addr.gateway(), addr.bridge(), addr.cidr()),
            (Ipv4Addr::new(10, 244, 7, 1), "lcbr7".to_owned(), "10.244.7.0/24".to_owned())
        );
        let mut ips = IpAllocator::default();
        assert_eq!((ips.allocate(), ips.allocate()), (Some(2), Some(3)));
        ips.release(2);
        assert_eq!(ips.allocate(), Some(4), "2 waits until the search wraps around");
        let rest: Vec<_> = std::iter::from_fn(|| ips.allocate()).collect();
        assert_eq!(rest.first(), Some(&5));
        assert_eq!(rest.last(), Some(&2), "then the released one is found");
        assert_eq!(rest.len(), 253 - 2, "2..=254 less 3 and 4");
        ips.release(100);
        assert_eq!((ips.allocate(), ips.allocate()), (Some(100), None), "the only free address, then none");
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let addr = Addresses { index: 99 };
        assert!(addr.veth(addr.pod_ip(254)).len() <= 15);
    }
}
