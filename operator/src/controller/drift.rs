//! Whether a child as the cache holds it still matches what the reconciler would apply, so an
//! unchanged child costs no request.
//!
//! The desired object carries a hash of itself in an annotation: a field the reconciler stops
//! sending changes the hash (server-side apply would remove it), and a field someone else edits
//! or removes breaks the subset check. Fields the server adds (status, uid, managedFields,
//! defaults) are not in the desired object and are ignored.

use serde_json::Value;

use super::build::config_hash_of;

/// Hash of the applied configuration of a child, written by the reconciler.
pub const DESIRED_HASH_ANNOTATION: &str = "riskplatform.io/desired-hash";

/// Adds [`DESIRED_HASH_ANNOTATION`] to an apply body, hashed over the body without it.
pub fn with_desired_hash(mut body: Value) -> Value {
    let hash = config_hash_of(&[body.to_string().as_bytes()]);
    if !body["metadata"]["annotations"].is_object() {
        body["metadata"]["annotations"] = Value::Object(Default::default());
    }
    body["metadata"]["annotations"][DESIRED_HASH_ANNOTATION] = Value::String(hash);
    body
}

/// Whether every field of `desired` is in `stored` with the same value. Lists of objects are
/// matched element by element anywhere in the stored list (server-side apply merges them by
/// key and keeps other managers' entries); lists of scalars are atomic and must be equal.
pub fn is_subset(desired: &Value, stored: &Value) -> bool {
    match (desired, stored) {
        (Value::Object(d), Value::Object(s)) => d.iter().all(|(k, dv)| match s.get(k) {
            Some(sv) => is_subset(dv, sv),
            None => dv.is_null(),
        }),
        (Value::Array(d), Value::Array(s)) if d.iter().all(Value::is_object) => d
            .iter()
            .enumerate()
            .all(|(i, dv)| s.get(i).is_some_and(|sv| is_subset(dv, sv)) || s.iter().any(|sv| is_subset(dv, sv))),
        (Value::Array(d), Value::Array(s)) => d.len() == s.len() && d.iter().zip(s).all(|(dv, sv)| is_subset(dv, sv)),
        (d, s) => d == s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_object_is_compared_on_the_desired_fields_only() {
        let desired = json!({
            "metadata": { "name": "risk-api", "labels": { "a": "1" } },
            "spec": { "ports": [{ "name": "http", "port": 80 }], "args": ["serve"] }
        });
        let cases = [
            (
                "server-populated fields are ignored",
                json!({
                    "metadata": { "name": "risk-api", "uid": "u", "resourceVersion": "7", "labels": { "a": "1" } },
                    "spec": { "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }], "args": ["serve"], "clusterIP": "10.0.0.1" },
                    "status": {}
                }),
                true,
            ),
            (
                "a hand-edited value differs",
                json!({
                    "metadata": { "name": "risk-api", "labels": { "a": "2" } },
                    "spec": { "ports": [{ "name": "http", "port": 80 }], "args": ["serve"] }
                }),
                false,
            ),
            (
                "a removed label differs",
                json!({
                    "metadata": { "name": "risk-api" },
                    "spec": { "ports": [{ "name": "http", "port": 80 }], "args": ["serve"] }
                }),
                false,
            ),
            (
                "another manager's list entry is kept",
                json!({
                    "metadata": { "name": "risk-api", "labels": { "a": "1" } },
                    "spec": { "ports": [{ "name": "debug", "port": 9 }, { "name": "http", "port": 80 }], "args": ["serve"] }
                }),
                true,
            ),
            (
                "an atomic list with an extra item differs",
                json!({
                    "metadata": { "name": "risk-api", "labels": { "a": "1" } },
                    "spec": { "ports": [{ "name": "http", "port": 80 }], "args": ["serve", "--debug"] }
                }),
                false,
            ),
            (
                "a removed list entry differs",
                json!({
                    "metadata": { "name": "risk-api", "labels": { "a": "1" } },
                    "spec": { "ports": [], "args": ["serve"] }
                }),
                false,
            ),
        ];
        for (case, stored, expected) in cases {
            assert_eq!(is_subset(&desired, &stored), expected, "{case}");
        }
    }

    #[test]
    fn the_hash_changes_when_a_field_is_no_longer_sent() {
        let full = with_desired_hash(json!({ "metadata": { "name": "x" }, "data": { "a": "1", "b": "2" } }));
        let fewer = with_desired_hash(json!({ "metadata": { "name": "x" }, "data": { "a": "1" } }));
        // The stored object still holds `b` from the last apply; only the hash tells the difference.
        assert!(!is_subset(&fewer, &full));
        assert!(is_subset(&full, &full));
    }

    #[test]
    fn the_hash_keeps_existing_annotations() {
        let body = with_desired_hash(json!({ "metadata": { "name": "x", "annotations": { "k": "v" } } }));
        assert_eq!(body["metadata"]["annotations"]["k"], "v");
        assert!(body["metadata"]["annotations"][DESIRED_HASH_ANNOTATION].is_string());
    }
}
