//! The Service proxy with real TCP: two local HTTP servers as a Service's endpoints, reached
//! through the host port and (as root) through the ClusterIP on the instance's interface.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::routing::get;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use riskplatform_localcluster::network::Network;
use riskplatform_localcluster::services::interface::ServiceInterface;
use riskplatform_localcluster::services::proxy::{self, PortKey, Proxy};
use serde_json::json;

/// Two HTTP servers on 127.0.0.2 and 127.0.0.3 sharing one port, each answering its name.
async fn backends() -> Result<(u16, Vec<tokio::task::JoinHandle<()>>)> {
    let first = tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).await?;
    let port = first.local_addr()?.port();
    let second = tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), port)).await?;
    let serve = |listener: tokio::net::TcpListener, name: &'static str| {
        tokio::spawn(async move {
            let _ = axum::serve(listener, axum::Router::new().route("/", get(move || async move { name }))).await;
        })
    };
    Ok((port, vec![serve(first, "a"), serve(second, "b")]))
}

fn service(cluster_ip: &str) -> Result<Arc<Service>> {
    Ok(Arc::new(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "ns" },
        "spec": { "clusterIP": cluster_ip, "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
    }))?))
}

fn slice(port: u16, ready_b: bool) -> Result<Arc<EndpointSlice>> {
    Ok(Arc::new(serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "web-0", "namespace": "ns", "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": port, "protocol": "TCP" }],
        "endpoints": [
            { "addresses": ["127.0.0.2"], "conditions": { "ready": true } },
            { "addresses": ["127.0.0.3"], "conditions": { "ready": ready_b } },
        ],
    }))?))
}

/// Answers of `count` requests, each on a new connection, by backend name.
async fn spread(url: &str, count: usize) -> Result<BTreeMap<String, usize>> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let mut seen = BTreeMap::new();
    for _ in 0..count {
        let body = client.get(url).send().await?.error_for_status()?.text().await?;
        *seen.entry(body).or_default() += 1;
    }
    Ok(seen)
}

fn key() -> PortKey {
    PortKey { namespace: "ns".into(), service: "web".into(), port: 80 }
}

#[tokio::test]
async fn the_host_port_spreads_connections_over_the_ready_endpoints_only() -> Result<()> {
    let (port, _servers) = backends().await?;
    let proxy = Proxy::new(None);
    let services = [service("10.96.0.9")?];
    let host_ports = proxy.sync(proxy::wanted(&services, &[slice(port, true)?])).await?;
    let host_port = *host_ports.get(&key()).context("no host port")?;
    let url = format!("http://127.0.0.1:{host_port}/");
    assert_eq!(spread(&url, 10).await?, BTreeMap::from([("a".into(), 5), ("b".into(), 5)]), "round robin over both");

    let again = proxy.sync(proxy::wanted(&services, &[slice(port, false)?])).await?;
    assert_eq!(again.get(&key()), Some(&host_port), "the host port stays while the Service does");
    assert_eq!(spread(&url, 6).await?, BTreeMap::from([("a".into(), 6)]), "nothing goes to the unready endpoint");

    proxy.sync(Vec::new()).await?;
    let closed = reqwest::Client::new().get(&url).send().await;
    assert!(closed.is_err(), "the listener of a removed Service is closed");
    Ok(())
}

#[tokio::test]
async fn an_endpoint_that_refuses_is_skipped_for_the_next_one() -> Result<()> {
    let (port, servers) = backends().await?;
    servers[1].abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while !servers[1].is_finished() {
            tokio::task::yield_now().await
        }
    })
    .await;
    let proxy = Proxy::new(None);
    let host_ports = proxy.sync(proxy::wanted(&[service("10.96.0.9")?], &[slice(port, true)?])).await?;
    let url = format!("http://127.0.0.1:{}/", host_ports[&key()]);
    assert_eq!(spread(&url, 4).await?, BTreeMap::from([("a".into(), 4)]));
    Ok(())
}

/// Claims a free instance index as the starter does, from the top so clusters started by the
/// script (from 0) rarely meet it; the lock is held as long as the file is open.
fn claim_index() -> Result<(u8, File)> {
    for index in (0..=99u8).rev() {
        let file = File::create(format!("/tmp/localcluster-{index}.lock"))?;
        if file.try_lock().is_ok() {
            return Ok((index, file));
        }
    }
    anyhow::bail!("every local cluster index is taken")
}

#[tokio::test]
async fn as_root_the_cluster_ip_on_the_service_interface_reaches_the_endpoints() -> Result<()> {
    let is_root = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !is_root {
        eprintln!("skipped: needs root for the service interface");
        return Ok(());
    }
    let (index, _lock) = claim_index()?;
    let network = Network::new(index).context("index")?;
    let (port, _servers) = backends().await?;
    let proxy = Proxy::new(Some(ServiceInterface::create(network).await?));
    let ip = network.service_ip(7);
    let result = async {
        proxy.sync(proxy::wanted(&[service(&ip.to_string())?], &[slice(port, true)?])).await?;
        spread(&format!("http://{}/", SocketAddr::from((ip, 80))), 4).await
    }
    .await;
    if let Some(interface) = proxy.interface() {
        interface.remove().await;
    }
    assert_eq!(result?, BTreeMap::from([("a".into(), 2), ("b".into(), 2)]));
    Ok(())
}

#[tokio::test]
async fn a_cluster_ip_allocated_after_the_service_leaves_its_host_port_in_place() -> Result<()> {
    let (port, _servers) = backends().await?;
    let proxy = Proxy::new(None);
    let before = proxy.sync(proxy::wanted(&[service("")?], &[slice(port, true)?])).await?[&key()];
    let after = proxy.sync(proxy::wanted(&[service("10.96.0.9")?], &[slice(port, true)?])).await?[&key()];
    assert_eq!(before, after);
    assert_eq!(spread(&format!("http://127.0.0.1:{after}/"), 2).await?.values().sum::<usize>(), 2);
    Ok(())
}
