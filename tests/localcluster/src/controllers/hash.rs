//! The pod-template hash, computed and encoded the way upstream's ComputeHash does.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Upstream's rand.SafeEncodeString alphabet: no vowels, no look-alike characters, so a hash
/// never spells a word nor confuses 0 with o.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-32a of the template's JSON and the collision count, encoded like upstream's
/// `rand.SafeEncodeString(fmt.Sprint(hash))`. Upstream hashes a spew dump instead of JSON, so
/// the values differ from a real cluster's but have the same shape and stability.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash = fnv32a(serde_json::to_string(template).unwrap_or_default().as_bytes(), 0x811c_9dc5);
    if let Some(count) = collision_count {
        hash = fnv32a(&count.to_le_bytes(), hash);
    }
    hash.to_string().bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

fn fnv32a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_same_template_always_hashes_the_same_and_a_change_changes_it() {
        assert_eq!(template_hash(&template("a"), None), template_hash(&template("a"), None));
        assert_ne!(template_hash(&template("a"), None), template_hash(&template("b"), None));
        assert_ne!(template_hash(&template("a"), None), template_hash(&template("a"), Some(1)));
    }

    #[test]
    fn a_hash_uses_only_the_safe_alphabet() {
        assert!(template_hash(&template("a"), None).bytes().all(|b| ALPHANUMS.contains(&b)));
    }
}
