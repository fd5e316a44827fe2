//! The volumes of one pod on the node: where each lives under the state dir, its content
//! (kept up to date for Secret, ConfigMap and projected sources), and each container's mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use super::error::{ConfigError, Error, Result};
use super::runtime::BindMount;
use super::volumes::{self, Payload, DEFAULT_MODE};
use super::{sources, Node};

/// Where in-cluster clients look for their credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The volume the ServiceAccount admission plugin would add (kube-testenv has no admission).
pub const SERVICE_ACCOUNT_VOLUME: &str = "kube-api-access-localcluster";

#[derive(Debug, Clone)]
pub struct VolumeDir {
    pub path: PathBuf,
    /// Secret, ConfigMap and projected volumes are always mounted read-only, as upstream.
    pub read_only: bool,
}

fn items(items: &Option<Vec<KeyToPath>>) -> Option<Vec<(String, String, Option<u32>)>> {
    items.as_ref().map(|v| v.iter().map(|i| (i.key.clone(), i.path.clone(), i.mode.map(|m| m as u32))).collect())
}

fn fail(volume: &str, message: impl Into<String>) -> Error {
    Error::Volume { volume: volume.to_owned(), message: message.into() }
}

/// Whether the pod gets the service account volume a cluster's admission would add.
pub fn wants_service_account(pod: &Pod) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    let mounted =
        spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| {
            c.volume_mounts.iter().flatten().any(|m| m.mount_path.trim_end_matches('/') == SERVICE_ACCOUNT_DIR)
        });
    spec.automount_service_account_token != Some(false) && !mounted
}

async fn payload_of(node: &Node, pod: &Pod, volume: &Volume) -> Result<Option<Payload>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = &volume.name;
    if let Some(s) = &volume.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
        return match sources::secret(&node.client, ns, &secret_name).await? {
            Some(data) => {
                volumes::payload(&data, items(&s.items).as_deref(), mode).map(Some).map_err(|m| fail(name, m))
            }
            None if s.optional == Some(true) => Ok(Some(Payload::new())),
            None => Err(fail(name, format!("secret \"{secret_name}\" not found"))),
        };
    }
    if let Some(c) = &volume.config_map {
        let mode = c.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
        return match sources::config_map(&node.client, ns, &c.name).await? {
            Some(data) => {
                volumes::payload(&data, items(&c.items).as_deref(), mode).map(Some).map_err(|m| fail(name, m))
            }
            None if c.optional == Some(true) => Ok(Some(Payload::new())),
            None => Err(fail(name, format!("configmap \"{}\" not found", c.name))),
        };
    }
    if let Some(p) = &volume.projected {
        let mode = p.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
        let mut out = Payload::new();
        for source in p.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                // kube-testenv has no TokenRequest: the token is the kubeconfig's (an administrator)
                out.insert(t.path.clone(), (node.token.clone().into_bytes(), mode));
            }
            if let Some(s) = &source.secret {
                let data = sources::secret(&node.client, ns, &s.name).await?;
                match data {
                    Some(d) => {
                        out.extend(volumes::payload(&d, items(&s.items).as_deref(), mode).map_err(|m| fail(name, m))?)
                    }
                    None if s.optional == Some(true) => {}
                    None => return Err(fail(name, format!("secret \"{}\" not found", s.name))),
                }
            }
            if let Some(c) = &source.config_map {
                let data = sources::config_map(&node.client, ns, &c.name).await?;
                match data {
                    Some(d) => {
                        out.extend(volumes::payload(&d, items(&c.items).as_deref(), mode).map_err(|m| fail(name, m))?)
                    }
                    // the root CA publisher of the controller-manager is not here: serve the API server's CA
                    None if c.name == "kube-root-ca.crt" => {
                        out.insert("ca.crt".to_owned(), (node.ca_pem.clone(), mode));
                    }
                    None if c.optional == Some(true) => {}
                    None => return Err(fail(name, format!("configmap \"{}\" not found", c.name))),
                }
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.iter().flatten() {
                    let field = item.field_ref.as_ref().map(|f| f.field_path.as_str()).unwrap_or_default();
                    let value = match field {
                        "metadata.namespace" => ns.to_owned(),
                        "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                        "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
                        other => return Err(fail(name, format!("downwardAPI field {other} is not supported here"))),
                    };
                    out.insert(item.path.clone(), (value.into_bytes(), item.mode.map(|m| m as u32).unwrap_or(mode)));
                }
            }
        }
        return Ok(Some(out));
    }
    Ok(None)
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec.as_ref()?.security_context.as_ref()?.fs_group.map(|g| g as u32)
}

/// Sets up (or refreshes) every volume of the pod under `pod_dir/volumes`.
pub async fn prepare(
    node: &Node,
    pod: &Pod,
    pod_dir: &Path,
    refresh_only: bool,
) -> Result<BTreeMap<String, VolumeDir>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    let mut volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    if wants_service_account(pod) {
        volumes.push(service_account_volume());
    }
    for volume in &volumes {
        let dir = pod_dir.join("volumes").join(&volume.name);
        if let Some(payload) = payload_of(node, pod, volume).await? {
            volumes::write_atomic(&dir, &payload, fs_group(pod))?;
            out.insert(volume.name.clone(), VolumeDir { path: dir, read_only: true });
        } else if let Some(claim) = &volume.persistent_volume_claim {
            let dir = node.state_dir.join("pvc").join(ns).join(&claim.claim_name);
            if !refresh_only {
                volumes::shared_dir(&dir, fs_group(pod))?;
            }
            out.insert(volume.name.clone(), VolumeDir { path: dir, read_only: claim.read_only == Some(true) });
        } else if volume.empty_dir.is_some() {
            if !refresh_only {
                volumes::shared_dir(&dir, fs_group(pod))?;
            }
            out.insert(volume.name.clone(), VolumeDir { path: dir, read_only: false });
        } else if let Some(host) = &volume.host_path {
            out.insert(volume.name.clone(), VolumeDir { path: PathBuf::from(&host.path), read_only: false });
        } else {
            return Err(fail(&volume.name, "volume source not supported by the local cluster"));
        }
    }
    Ok(out)
}

fn service_account_volume() -> Volume {
    serde_json::from_value(serde_json::json!({
        "name": SERVICE_ACCOUNT_VOLUME,
        "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}
    }))
    .unwrap_or_default()
}

/// The container's bind mounts: its volumeMounts, the service account volume, `/etc/hosts` and
/// `/etc/resolv.conf`.
pub fn mounts(
    pod: &Pod,
    container: &Container,
    vols: &BTreeMap<String, VolumeDir>,
    pod_dir: &Path,
) -> Result<Vec<BindMount>, ConfigError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let vol = vols.get(&m.name).ok_or_else(|| ConfigError::UnknownVolume { mount: m.mount_path.clone() })?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => vol.path.join(sub),
            None => vol.path.clone(),
        };
        out.push(BindMount {
            file: source.is_file(),
            source,
            target: m.mount_path.clone(),
            read_only: vol.read_only || m.read_only == Some(true),
        });
    }
    if wants_service_account(pod) {
        if let Some(vol) = vols.get(SERVICE_ACCOUNT_VOLUME) {
            out.push(BindMount {
                source: vol.path.clone(),
                target: SERVICE_ACCOUNT_DIR.to_owned(),
                read_only: true,
                file: false,
            });
        }
    }
    for file in ["hosts", "resolv.conf"] {
        out.push(BindMount {
            source: pod_dir.join(file),
            target: format!("/etc/{file}"),
            read_only: false,
            file: true,
        });
    }
    Ok(out)
}
