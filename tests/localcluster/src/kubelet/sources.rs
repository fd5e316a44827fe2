//! Reading the Secrets and ConfigMaps a pod refers to, with `stringData` and `binaryData`
//! folded in as the API server's conversion would.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::{Api, Client};

use super::env::Sources;
use super::error::Result;

pub async fn secret(client: &Client, ns: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let Some(s) = Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await? else {
        return Ok(None);
    };
    let mut data: BTreeMap<String, Vec<u8>> = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    data.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
    Ok(Some(data))
}

pub async fn config_map(client: &Client, ns: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let Some(cm) = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(name).await? else {
        return Ok(None);
    };
    let mut data: BTreeMap<String, Vec<u8>> =
        cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
    Ok(Some(data))
}

/// Every Secret and ConfigMap the container's env and envFrom name.
pub async fn for_env(client: &Client, ns: &str, container: &Container) -> Result<Sources> {
    let mut secrets = Vec::new();
    let mut config_maps = Vec::new();
    for from in container.env_from.iter().flatten() {
        secrets.extend(from.secret_ref.as_ref().map(|s| s.name.clone()));
        config_maps.extend(from.config_map_ref.as_ref().map(|c| c.name.clone()));
    }
    for var in container.env.iter().flatten() {
        if let Some(src) = &var.value_from {
            secrets.extend(src.secret_key_ref.as_ref().map(|s| s.name.clone()));
            config_maps.extend(src.config_map_key_ref.as_ref().map(|c| c.name.clone()));
        }
    }
    let mut out = Sources::default();
    for name in secrets {
        if let Some(data) = secret(client, ns, &name).await? {
            out.secrets.insert(name, data);
        }
    }
    for name in config_maps {
        if let Some(data) = config_map(client, ns, &name).await? {
            out.config_maps
                .insert(name, data.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect());
        }
    }
    Ok(out)
}
