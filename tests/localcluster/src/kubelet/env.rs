//! A container's environment as the kubelet builds it: envFrom, then env in order (each value
//! may refer to earlier ones), and `$(VAR)` expansion as upstream's `third_party/forked/golang/expansion`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::error::ConfigError;

/// The data of the Secrets and ConfigMaps a container refers to, fetched beforehand; a missing
/// name means the object does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

/// What `fieldRef` can read besides the Pod object itself.
pub struct PodFacts<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// Expands `$(NAME)` from `vars`; `$$` is a literal `$`; an undefined or unterminated reference
/// is kept as written.
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        out.push_str(&vars(name).unwrap_or_else(|| format!("$({name})")));
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    let ch = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

fn field_ref(pod: &Pod, facts: &PodFacts<'_>, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_owned(),
        other => {
            let key = |prefix: &str| other.strip_prefix(prefix)?.strip_suffix("']").map(str::to_owned);
            if let Some(k) = key("metadata.labels['") {
                from_map(&meta.labels, &k)
            } else if let Some(k) = key("metadata.annotations['") {
                from_map(&meta.annotations, &k)
            } else {
                return Err(ConfigError::UnsupportedField(other.to_owned()));
            }
        }
    };
    Ok(value)
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// The environment of `container`, in the order a kubelet passes it, starting from `base`
/// (the variables every container gets, such as KUBERNETES_SERVICE_HOST).
pub fn build(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    facts: &PodFacts<'_>,
    base: &[(String, String)],
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = namespace(pod);
    let mut env: Vec<(String, String)> = base.to_vec();
    let set =
        |env: &mut Vec<(String, String)>, name: String, value: String| match env.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => env.push((name, value)),
        };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(cm) = &from.config_map_ref {
            match sources.config_maps.get(&cm.name) {
                Some(data) => data.iter().for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v.clone())),
                None if cm.optional == Some(true) => {}
                None => return Err(ConfigError::ConfigMapNotFound(cm.name.clone())),
            }
        }
        if let Some(s) = &from.secret_ref {
            match sources.secrets.get(&s.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), String::from_utf8_lossy(v).into_owned())),
                None if s.optional == Some(true) => {}
                None => return Err(ConfigError::SecretNotFound(s.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(source) = &var.value_from {
            let value = if let Some(f) = &source.field_ref {
                Some(field_ref(pod, facts, &f.field_path)?)
            } else if let Some(sel) = &source.secret_key_ref {
                let optional = sel.optional == Some(true);
                match sources.secrets.get(&sel.name) {
                    None if optional => None,
                    None => return Err(ConfigError::SecretNotFound(sel.name.clone())),
                    Some(data) => match data.get(&sel.key) {
                        Some(v) => Some(String::from_utf8_lossy(v).into_owned()),
                        None if optional => None,
                        None => {
                            return Err(ConfigError::SecretKeyNotFound {
                                key: sel.key.clone(),
                                secret: format!("{ns}/{}", sel.name),
                            })
                        }
                    },
                }
            } else if let Some(sel) = &source.config_map_key_ref {
                let optional = sel.optional == Some(true);
                match sources.config_maps.get(&sel.name) {
                    None if optional => None,
                    None => return Err(ConfigError::ConfigMapNotFound(sel.name.clone())),
                    Some(data) => match data.get(&sel.key) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(ConfigError::ConfigMapKeyNotFound {
                                key: sel.key.clone(),
                                config_map: format!("{ns}/{}", sel.name),
                            })
                        }
                    },
                }
            } else {
                return Err(ConfigError::UnsupportedField(format!("env {}: valueFrom source", var.name)));
            };
            match value {
                Some(v) => v,
                None => continue,
            }
        } else {
            let raw = var.value.clone().unwrap_or_default();
            let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            expand(&raw, &lookup)
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// `command` and `args` with `$(VAR)` expanded from the container's final environment.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    items.iter().map(|item| expand(item, &lookup)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_expand_as_upstream_does() {
        for (input, expected) in [
            ("$(A)", "alpha"),
            ("x-$(A)-y", "x-alpha-y"),
            ("$(A)$(A)", "alphaalpha"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$alpha"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$(EMPTY)z", "z"),
            ("$(A", "$(A"),
            ("$A", "$A"),
            ("a$", "a$"),
            ("100%$", "100%$"),
            ("", ""),
        ] {
            assert_eq!(expand(input, &vars), expected, "{input}");
        }
    }
}
