//! The committed CRD YAML must be exactly what the Rust types generate.

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = format!("{}/../crds/{}", env!("CARGO_MANIFEST_DIR"), riskplatform_crd::CRD_FILE_NAME);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    assert!(
        committed == riskplatform_crd::crd_yaml(),
        "{path} is stale: run `cargo run -p riskplatform-operator -- crdgen --out-dir crds` and commit the result"
    );
}

#[test]
fn schema_defaults_are_the_documented_ones() {
    let yaml = riskplatform_crd::crd_yaml();
    let crd: serde_json::Value = serde_yaml::from_str(&yaml).expect("crd parses");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let scaling = &spec["autoscaling"]["properties"];
    let default = |v: &serde_json::Value, f: &str| v["properties"][f]["default"].clone();
    assert_eq!(default(&scaling["cpu"], "scaleUpAbove"), 70.0);
    assert_eq!(default(&scaling["cpu"], "scaleDownBelow"), 30.0);
    assert_eq!(default(&scaling["memory"], "scaleUpAbove"), 80.0);
    assert_eq!(default(&scaling["requestRate"], "scaleUpAbove"), 1500.0);
    assert_eq!(default(&scaling["requestRate"], "evaluationPeriodSeconds"), 180);
    assert_eq!(default(&scaling["queueLength"], "scaleDownBelow"), 100.0);
    assert_eq!(default(&scaling["queueLength"], "evaluationPeriodSeconds"), 120);
    assert_eq!(default(&scaling["api"], "minReplicas"), 2);
    assert_eq!(default(&scaling["api"], "scaleDownCooldownSeconds"), 900);
    assert_eq!(default(&scaling["workers"], "maxReplicas"), 50);
    assert_eq!(default(&scaling["workers"], "scaleUpCooldownSeconds"), 180);
    let pgb = &spec["pgbouncer"];
    assert_eq!(default(pgb, "poolMode"), "transaction");
    assert_eq!(default(pgb, "maxClientConn"), 2000);
    assert_eq!(default(pgb, "defaultPoolSize"), 50);
    assert_eq!(default(pgb, "reservePoolSize"), 10);
    assert_eq!(default(pgb, "maxDbConnections"), 200);
    assert_eq!(default(&spec["redis"], "maxmemory"), "1gb");
    assert_eq!(default(&spec["redis"], "evictionPolicy"), "volatile-lru");
    assert_eq!(default(&spec["circuitBreaker"], "failureThreshold"), 5);
    assert_eq!(default(&spec["circuitBreaker"], "recoveryTimeoutSeconds"), 60);
}
