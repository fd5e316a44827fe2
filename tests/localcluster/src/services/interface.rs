//! The interface `lcsvcN` holding the instance's cluster IPs, managed with iproute2 as
//! kube-proxy's ipvs mode manages its dummy `kube-ipvs0`. Kernels without the dummy module get
//! a bridge with no ports instead: any local address works the same for the proxy's listeners.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use tokio::process::Command;

use super::Error;
use crate::network::Network;

pub struct ServiceInterface {
    network: Network,
    name: String,
    held: Mutex<BTreeSet<Ipv4Addr>>,
}

async fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().await.map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

impl ServiceInterface {
    /// Creates (or adopts) the instance's interface and brings it up; needs CAP_NET_ADMIN.
    pub async fn create(network: Network) -> Result<Self, Error> {
        let name = network.service_interface();
        let failed = |reason: String| Error::Interface { name: name.clone(), reason };
        let created = match ip(&["link", "add", &name, "type", "dummy"]).await {
            Err(reason) if reason.contains("Unknown device type") => {
                ip(&["link", "add", &name, "type", "bridge"]).await
            }
            other => other,
        };
        if let Err(reason) = created {
            if !reason.contains("File exists") {
                return Err(failed(reason));
            }
        }
        ip(&["link", "set", &name, "up"]).await.map_err(failed)?;
        Ok(Self { network, name: name.clone(), held: Mutex::new(BTreeSet::new()) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the address belongs to this instance's service range.
    pub fn holds(&self, address: Ipv4Addr) -> bool {
        self.network.contains_service_ip(address)
    }

    /// Puts the address on the interface; false (logged) when that fails.
    pub async fn add(&self, address: Ipv4Addr) -> bool {
        if self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&address) {
            return true;
        }
        match ip(&["addr", "add", &format!("{address}/32"), "dev", &self.name]).await {
            Ok(()) => {}
            Err(reason) if reason.contains("File exists") => {}
            Err(reason) => {
                tracing::warn!(interface = %self.name, %address, %reason, "cannot add the cluster IP");
                return false;
            }
        }
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(address);
        true
    }

    /// Removes the addresses no Service uses any more.
    pub async fn retain(&self, keep: &BTreeSet<Ipv4Addr>) {
        let gone: Vec<Ipv4Addr> =
            self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).difference(keep).copied().collect();
        for address in gone {
            if let Err(reason) = ip(&["addr", "del", &format!("{address}/32"), "dev", &self.name]).await {
                tracing::warn!(interface = %self.name, %address, %reason, "cannot remove the cluster IP");
            }
            self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&address);
        }
    }

    /// Deletes the interface and with it every address.
    pub async fn remove(&self) {
        if let Err(reason) = ip(&["link", "del", &self.name]).await {
            tracing::warn!(interface = %self.name, %reason, "cannot delete the service interface");
        }
    }
}
