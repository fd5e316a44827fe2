//! How the operator names a platform's children, and the names a RiskPlatform may have so that
//! every child's name and label is valid: the bound is computed here from the same suffixes.

use kube::core::Message;

/// Suffixes the operator appends to the platform's name, one per child (or pair of children).
pub const API_SUFFIX: &str = "-api";
pub const WORKER_SUFFIX: &str = "-worker";
pub const REDIS_SUFFIX: &str = "-redis";
pub const PGBOUNCER_SUFFIX: &str = "-pgbouncer";
pub const PGBOUNCER_AUTH_SUFFIX: &str = "-pgbouncer-auth";
pub const CIRCUIT_BREAKERS_SUFFIX: &str = "-circuit-breakers";
pub const BREAKER_READER_SUFFIX: &str = "-breaker-reader";

/// A label value, a Service name (DNS-1035 label) and a pod hostname hold at most 63 characters.
const LABEL_MAX: usize = 63;

/// The StatefulSet controller labels each pod `controller-revision-hash: <statefulset>-<hash>`,
/// the hash being up to 10 characters, so a StatefulSet's name has at most 63 - 11 characters.
const STATEFULSET_NAME_MAX: usize = LABEL_MAX - 11;

const fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}

/// The longest platform name for which every child is valid. The bounding children:
/// - the Redis StatefulSet `<name>-redis` (see [`STATEFULSET_NAME_MAX`]);
/// - the Services `<name>-api`, `-worker`, `-redis`, `-pgbouncer` (DNS-1035 labels);
/// - the label `app.kubernetes.io/instance: <name>` on every child.
///
/// Everything else (ConfigMaps, Secrets, Roles, Deployments and their ReplicaSets, whose pod
/// hostnames Kubernetes truncates itself) allows 253 characters.
pub const MAX_NAME_LEN: usize = min(
    STATEFULSET_NAME_MAX - REDIS_SUFFIX.len(),
    min(LABEL_MAX - PGBOUNCER_SUFFIX.len(), min(LABEL_MAX - WORKER_SUFFIX.len(), LABEL_MAX)),
);

/// CEL on the root of the schema: the name fits [`MAX_NAME_LEN`].
pub fn name_length_rule() -> String {
    format!("self.metadata.name.size() <= {MAX_NAME_LEN}")
}

pub fn name_length_message() -> Message {
    Message::Message(format!(
        "metadata.name may have at most {MAX_NAME_LEN} characters: the operator names the Redis StatefulSet \
         <name>{REDIS_SUFFIX}, whose pods carry the label controller-revision-hash=<name>{REDIS_SUFFIX}-<10-character hash> \
         (at most 63 characters)"
    ))
}

/// Service names are DNS-1035 labels: no dots, and a letter first (a RiskPlatform name, a DNS
/// subdomain, could otherwise be `1risk` or `risk.eu`).
pub const NAME_FORM_RULE: &str = "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";

pub const NAME_FORM_MESSAGE: &str =
    "metadata.name must start with a lowercase letter and hold only lowercase letters, \
     digits and '-' (no dots): the operator's Services are named <name>-api, <name>-pgbouncer, ... and a Service name \
     is a DNS-1035 label";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_allowed_name_keeps_the_redis_pods_revision_label_within_63_characters() {
        let name = "a".repeat(MAX_NAME_LEN);
        let revision_label = format!("{name}{REDIS_SUFFIX}-{}", "h".repeat(10));
        assert_eq!(revision_label.len(), LABEL_MAX);
        assert_eq!(MAX_NAME_LEN, 46);
    }

    #[test]
    fn every_service_name_of_the_longest_platform_is_a_valid_label() {
        let name = "a".repeat(MAX_NAME_LEN);
        for suffix in [API_SUFFIX, WORKER_SUFFIX, REDIS_SUFFIX, PGBOUNCER_SUFFIX] {
            assert!(format!("{name}{suffix}").len() <= LABEL_MAX, "{suffix}");
        }
    }
}
