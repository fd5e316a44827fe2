//! The addresses a local cluster instance derives from its index N (pod and service CIDRs, interfaces).

use std::net::Ipv4Addr;

/// Highest index: the third octet of 10.244.N.0/24 and 10.96.N.0/24 caps it, 100 is plenty.
pub const MAX_INDEX: u8 = 99;

/// The addresses of cluster instance N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub index: u8,
}

impl Network {
    pub fn new(index: u8) -> Option<Self> {
        (index <= MAX_INDEX).then_some(Self { index })
    }

    /// `10.96.N.host`: the ClusterIP range, one /24 per instance.
    pub fn service_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, self.index, host)
    }

    pub fn contains_service_ip(&self, ip: Ipv4Addr) -> bool {
        let [a, b, c, _] = ip.octets();
        (a, b, c) == (10, 96, self.index)
    }

    /// The dummy interface holding this instance's cluster IPs.
    pub fn service_interface(&self) -> String {
        format!("lcsvc{}", self.index)
    }
}
