//! `build` from YAML fixtures: what each spec turns into.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar};
use kube::ResourceExt;
use riskplatform_crd::RiskPlatform;

use super::*;
use crate::controller::validate::{Credentials, Validated};

pub(super) fn fixture(name: &str) -> RiskPlatform {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

pub(super) fn validated(password: &str) -> Validated {
    Validated {
        credentials: Credentials {
            username: "risk".into(),
            password: password.into(),
            client_password: "c".repeat(64),
            stats_password: "s".repeat(64),
        },
        // What the API and worker pods read at start: not the database password.
        credentials_hash: config_hash_of(&[b"risk", b"c"]),
    }
}

pub(super) fn container<'a>(d: &'a Deployment, name: &str) -> &'a Container {
    let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    pod.containers.iter().chain(pod.init_containers.iter().flatten()).find(|c| c.name == name).expect("container")
}

pub(super) fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
    c.env.iter().flatten().find(|e| e.name == name).unwrap_or_else(|| panic!("env {name} in {}", c.name))
}

fn all_metadata(c: &Children) -> Vec<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
    let mut m = vec![
        &c.service_account.metadata,
        &c.breaker_reader_role.metadata,
        &c.breaker_reader_binding.metadata,
        &c.api_deployment.metadata,
        &c.api_service.metadata,
        &c.api_pdb.metadata,
        &c.worker_deployment.metadata,
        &c.worker_service.metadata,
        &c.pgbouncer_config.metadata,
        &c.pgbouncer_auth.metadata,
        &c.pgbouncer_deployment.metadata,
        &c.pgbouncer_service.metadata,
    ];
    if let Some(r) = &c.redis {
        m.extend([&r.config.metadata, &r.service.metadata, &r.statefulset.metadata]);
    }
    m
}

#[test]
fn every_child_is_owned_by_the_platform_and_lives_in_its_namespace() {
    let rp = fixture("minimal.yaml");
    let children = build(&rp, &validated("pw")).expect("build");
    let metas = all_metadata(&children);
    assert_eq!(metas.len(), 15);
    for meta in metas {
        assert_eq!(meta.namespace.as_deref(), Some("prod"));
        let owners = meta.owner_references.as_ref().expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "RiskPlatform");
        assert_eq!(owners[0].uid, "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
        assert_eq!(owners[0].controller, Some(true));
    }
}

#[test]
fn the_api_follows_the_published_breaker_configmap_of_its_own_namespace() {
    let children = build(&fixture("external-redis.yaml"), &validated("pw")).expect("build");
    let api = container(&children.api_deployment, "api");
    assert_eq!(env(api, "RISK_BREAKER_CONFIGMAP").value.as_deref(), Some("ext-circuit-breakers"));
    assert_eq!(crate::circuit::configmap_name("ext"), "ext-circuit-breakers");
    let namespace = env(api, "POD_NAMESPACE").value_from.as_ref().and_then(|v| v.field_ref.as_ref()).expect("ref");
    assert_eq!(namespace.field_path, "metadata.namespace");
    let worker = container(&children.worker_deployment, "worker");
    let migrate = container(&children.api_deployment, "migrate");
    for c in [worker, migrate] {
        let names: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert!(!names.contains(&"RISK_BREAKER_CONFIGMAP") && !names.contains(&"POD_NAMESPACE"), "{}", c.name);
    }
}

#[test]
fn the_service_account_may_read_the_breaker_configmap_and_nothing_else() {
    let children = build(&fixture("external-redis.yaml"), &validated("pw")).expect("build");
    let role = &children.breaker_reader_role;
    assert_eq!(role.name_any(), "ext-breaker-reader");
    let rules = role.rules.as_deref().expect("rules");
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(rule.resources.as_deref(), Some(&["configmaps".to_owned()][..]));
    assert_eq!(rule.resource_names.as_deref(), Some(&["ext-circuit-breakers".to_owned()][..]));
    assert_eq!(rule.verbs, ["get", "list", "watch"]);
    assert!(rule.non_resource_urls.is_none());

    let binding = &children.breaker_reader_binding;
    assert_eq!(binding.name_any(), "ext-breaker-reader");
    let role_ref = &binding.role_ref;
    assert_eq!(
        (role_ref.api_group.as_str(), role_ref.kind.as_str(), role_ref.name.as_str()),
        ("rbac.authorization.k8s.io", "Role", "ext-breaker-reader")
    );
    let subjects = binding.subjects.as_deref().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!((subjects[0].kind.as_str(), subjects[0].namespace.as_deref()), ("ServiceAccount", Some("prod")));
    // The subject is the account the API pods run as, whatever that is named.
    let pod = children.api_deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(subjects[0].name.as_str()));
    assert_eq!(children.service_account.name_any(), subjects[0].name);
}

#[test]
fn deployments_leave_replicas_to_the_autoscaler() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    assert_eq!(children.api_deployment.spec.as_ref().and_then(|s| s.replicas), None);
    assert_eq!(children.worker_deployment.spec.as_ref().and_then(|s| s.replicas), None);
}

#[test]
fn the_api_has_the_documented_probes_and_resources() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let api = container(&children.api_deployment, "api");
    let live = api.liveness_probe.as_ref().expect("liveness");
    let ready = api.readiness_probe.as_ref().expect("readiness");
    assert_eq!(live.http_get.as_ref().and_then(|h| h.path.as_deref()), Some("/health/live"));
    assert_eq!((live.initial_delay_seconds, live.period_seconds), (Some(30), Some(15)));
    assert_eq!(ready.http_get.as_ref().and_then(|h| h.path.as_deref()), Some("/health/ready"));
    assert_eq!((ready.initial_delay_seconds, ready.period_seconds), (Some(5), Some(5)));
    let res = api.resources.as_ref().expect("resources");
    let get =
        |m: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| { m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone()) };
    assert_eq!(get(&res.requests, "cpu").as_deref(), Some("100m"));
    assert_eq!(get(&res.requests, "memory").as_deref(), Some("256Mi"));
    assert_eq!(get(&res.limits, "cpu").as_deref(), Some("500m"));
    assert_eq!(get(&res.limits, "memory").as_deref(), Some("512Mi"));
    assert_eq!(api.args.as_deref(), Some(&["serve".to_owned()][..]));
}

#[test]
fn pgbouncer_ini_carries_the_documented_pool_settings_and_no_password() {
    let children = build(&fixture("minimal.yaml"), &validated("s3cret-pw")).expect("build");
    let ini = &children.pgbouncer_config.data.as_ref().expect("data")["pgbouncer.ini"];
    for line in [
        "risk = host=postgres.databases.svc port=5432 dbname=risk user=risk",
        "pool_mode = transaction",
        "max_client_conn = 2000",
        "default_pool_size = 50",
        "reserve_pool_size = 10",
        "max_db_connections = 200",
        "query_wait_timeout = 10",
        "server_login_retry = 2",
    ] {
        assert!(ini.lines().any(|l| l == line), "missing {line:?} in\n{ini}");
    }
    assert!(!ini.contains("s3cret-pw"));
    let auth = &children.pgbouncer_auth.data.as_ref().expect("data")["userlist.txt"];
    assert!(String::from_utf8_lossy(&auth.0).starts_with("\"risk\" \"s3cret-pw\"\n\"riskplatform-app\" "));
}

#[test]
fn each_read_replica_gets_a_read_only_pgbouncer_database_and_the_api_is_told_their_names() {
    let children = build(&fixture("read-replicas.yaml"), &validated("pw")).expect("build");
    let ini = &children.pgbouncer_config.data.as_ref().expect("data")["pgbouncer.ini"];
    let databases: Vec<&str> =
        ini.lines().skip_while(|l| *l != "[databases]").skip(1).take_while(|l| !l.is_empty()).collect();
    assert_eq!(
        databases,
        [
            "risk = host=postgres.databases.svc port=5432 dbname=risk user=risk",
            "risk_ro_0 = host=postgres-replica-0.databases.svc port=5432 dbname=risk user=risk",
            "risk_ro_1 = host=10.0.0.12 port=6543 dbname=risk user=risk",
        ]
    );
    let api = container(&children.api_deployment, "api");
    assert_eq!(env(api, "RISK_READ_DATABASES").value.as_deref(), Some("risk_ro_0,risk_ro_1"));
    assert_eq!(env(api, "PGDATABASE").value.as_deref(), Some("risk"), "writes still go to the primary");
    // Workers write (and read back what they wrote): they are not given the replicas.
    let worker = container(&children.worker_deployment, "worker");
    assert!(worker.env.iter().flatten().all(|e| e.name != "RISK_READ_DATABASES"));
}

#[test]
fn without_read_replicas_pgbouncer_has_only_the_primary_and_the_api_no_replica_list() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let ini = &children.pgbouncer_config.data.as_ref().expect("data")["pgbouncer.ini"];
    assert!(!ini.contains("_ro_"), "{ini}");
    let api = container(&children.api_deployment, "api");
    assert!(api.env.iter().flatten().all(|e| e.name != "RISK_READ_DATABASES"));
}

#[test]
fn no_configmap_or_pod_spec_contains_the_password() {
    let children = build(&fixture("minimal.yaml"), &validated("s3cret-pw")).expect("build");
    let redis = children.redis.as_ref().expect("managed redis");
    for text in [
        serde_json::to_string(&children.pgbouncer_config).unwrap_or_default(),
        serde_json::to_string(&redis.config).unwrap_or_default(),
        serde_json::to_string(&children.api_deployment).unwrap_or_default(),
        serde_json::to_string(&children.worker_deployment).unwrap_or_default(),
        serde_json::to_string(&children.pgbouncer_deployment).unwrap_or_default(),
    ] {
        assert!(!text.contains("s3cret-pw") && !text.contains(&"c".repeat(64)), "password leaked into {text}");
    }
    let migrate = container(&children.api_deployment, "migrate");
    let password =
        env(migrate, "PGPASSWORD").value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("secret ref");
    assert_eq!((password.name.as_str(), password.key.as_str()), ("risk-pgbouncer-auth", "database-password"));
}

#[test]
fn the_api_reaches_postgres_through_pgbouncer_and_migrations_go_direct() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let api = container(&children.api_deployment, "api");
    assert_eq!(env(api, "PGHOST").value.as_deref(), Some("risk-pgbouncer"));
    assert_eq!(env(api, "PGPORT").value.as_deref(), Some("6432"));
    assert_eq!(env(api, "REDIS_URL").value.as_deref(), Some("redis://risk-redis:6379"));
    let migrate = container(&children.api_deployment, "migrate");
    assert_eq!(env(migrate, "PGHOST").value.as_deref(), Some("postgres.databases.svc"));
    assert_eq!(env(migrate, "PGPORT").value.as_deref(), Some("5432"));
}

#[test]
fn managed_redis_gets_the_documented_configuration() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let redis = children.redis.expect("managed redis");
    let conf = &redis.config.data.as_ref().expect("data")["redis.conf"];
    let documented = [
        "maxmemory 1gb",
        "maxmemory-policy volatile-lru",
        "tcp-keepalive 300",
        "timeout 300",
        "appendonly no",
        "save \"\"",
    ];
    for line in documented {
        assert!(conf.lines().any(|l| l == line), "missing {line:?} in\n{conf}");
    }
    assert!(redis.statefulset.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).is_none());
}

#[test]
fn redis_persistence_adds_a_volume_claim_and_append_only_file() {
    let children = build(&fixture("persistent-redis.yaml"), &validated("pw")).expect("build");
    let redis = children.redis.expect("managed redis");
    let conf = &redis.config.data.as_ref().expect("data")["redis.conf"];
    let lines: Vec<&str> = conf.lines().collect();
    for line in ["appendonly yes", "appendfsync everysec", "maxmemory 4gb", "maxmemory-policy allkeys-lru"] {
        assert!(lines.contains(&line), "missing {line:?} in\n{conf}");
    }
    let saves: Vec<&&str> = lines.iter().filter(|l| l.starts_with("save")).collect();
    assert_eq!(saves, [&"save 900 1", &"save 300 10", &"save 60 10000"], "the seeds' snapshot points by default");
    let claims = redis.statefulset.spec.as_ref().and_then(|s| s.volume_claim_templates.clone()).expect("claims");
    let spec = claims[0].spec.as_ref().expect("claim spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    let size = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).map(|r| r["storage"].0.clone());
    assert_eq!(size.as_deref(), Some("10Gi"));
}

#[test]
fn redis_snapshot_points_and_the_append_only_file_can_be_chosen() {
    let mut rp = fixture("persistent-redis.yaml");
    let conf = |rp: &RiskPlatform| {
        let children = build(rp, &validated("pw")).expect("build");
        children.redis.expect("managed redis").config.data.expect("data")["redis.conf"].clone()
    };
    let persistence = &mut rp.spec.redis.persistence;
    persistence.snapshots = vec![riskplatform_crd::RedisSnapshot { after_seconds: 120, changes: 5 }];
    persistence.append_only = false;
    let custom = conf(&rp);
    let saves: Vec<&str> = custom.lines().filter(|l| l.starts_with("save") || l.starts_with("append")).collect();
    assert_eq!(saves, ["save 120 5", "appendonly no"], "{custom}");

    rp.spec.redis.persistence.snapshots.clear();
    rp.spec.redis.persistence.append_only = true;
    let aof_only = conf(&rp);
    let saves: Vec<&str> = aof_only.lines().filter(|l| l.starts_with("save") || l.starts_with("append")).collect();
    assert_eq!(saves, ["save \"\"", "appendonly yes", "appendfsync everysec"], "{aof_only}");
}

#[test]
fn external_redis_builds_no_redis_and_passes_the_password_by_reference() {
    let children = build(&fixture("external-redis.yaml"), &validated("pw")).expect("build");
    assert!(children.redis.is_none());
    let worker = container(&children.worker_deployment, "worker");
    assert_eq!(worker.image.as_deref(), Some("registry.example/riskplatform-worker:1.2.3"));
    assert_eq!(env(worker, "REDIS_URL").value.as_deref(), Some("redis://:$(REDIS_PASSWORD)@cache.example:6380/2"));
    let pw = env(worker, "REDIS_PASSWORD").value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("ref");
    assert_eq!((pw.name.as_str(), pw.key.as_str()), ("redis-auth", "pw"));
    let migrate = container(&children.api_deployment, "migrate");
    let user = env(migrate, "PGUSER").value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("ref");
    assert_eq!((user.name.as_str(), user.key.as_str()), ("ext-pgbouncer-auth", "database-username"));
    let ini = &children.pgbouncer_config.data.as_ref().expect("data")["pgbouncer.ini"];
    assert!(ini.contains("scoring = host=db.example port=6543 dbname=scoring user=risk"));
    assert!(ini.contains("pool_mode = session") && ini.contains("default_pool_size = 20"));
}

#[test]
fn a_new_database_password_rolls_pgbouncer_only_and_the_pods_keep_their_own_login() {
    let rp = fixture("minimal.yaml");
    let before = build(&rp, &validated("old")).expect("build");
    let after = build(&rp, &validated("new")).expect("build");
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .map(|a| a[CONFIG_HASH_ANNOTATION].clone())
    };
    assert_ne!(hash(&before.pgbouncer_deployment), hash(&after.pgbouncer_deployment));
    assert_eq!(hash(&before.api_deployment), hash(&after.api_deployment));
    assert_eq!(hash(&before.worker_deployment), hash(&after.worker_deployment));

    // The pods log in to PgBouncer as their own user with the password kept in the auth Secret;
    // PgBouncer logs in to PostgreSQL as the database user.
    let api = container(&after.api_deployment, "api");
    assert_eq!(env(api, "PGUSER").value.as_deref(), Some("riskplatform-app"));
    let pw = env(api, "PGPASSWORD").value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("ref");
    assert_eq!((pw.name.as_str(), pw.key.as_str()), ("risk-pgbouncer-auth", "client-password"));
    let auth = after.pgbouncer_auth.data.as_ref().expect("data");
    let userlist = String::from_utf8(auth["userlist.txt"].0.clone()).expect("utf-8");
    assert_eq!(
        userlist,
        format!(
            "\"risk\" \"new\"\n\"riskplatform-app\" \"{}\"\n\"riskplatform-stats\" \"{}\"\n",
            "c".repeat(64),
            "s".repeat(64)
        )
    );
    assert_eq!(auth["client-password"].0, "c".repeat(64).into_bytes());
    // The migrations read the copy the operator handed out, so the same credentials as PgBouncer.
    assert_eq!(
        (auth["database-username"].0.as_slice(), auth["database-password"].0.as_slice()),
        (&b"risk"[..], &b"new"[..])
    );

    // Another client password (a new platform) rolls the API and the workers.
    let mut other = validated("new");
    other.credentials.client_password = "d".repeat(64);
    other.credentials_hash = config_hash_of(&[b"d"]);
    let rebuilt = build(&rp, &other).expect("build");
    assert_ne!(hash(&after.api_deployment), hash(&rebuilt.api_deployment));
}

#[test]
fn a_database_user_named_like_the_pods_own_gets_them_another_name() {
    assert_eq!(pgbouncer::client_user("risk"), "riskplatform-app");
    assert_ne!(pgbouncer::client_user("riskplatform-app"), "riskplatform-app");
}

#[test]
fn the_generated_passwords_are_kept_once_generated() {
    use crate::controller::validate::GeneratedPasswords;
    let fresh = GeneratedPasswords::kept_or_new(None);
    assert_eq!((fresh.client.len(), fresh.stats.len()), (64, 64));
    assert_ne!(fresh.client, fresh.stats, "one password per user");
    assert_ne!(fresh.client, GeneratedPasswords::kept_or_new(None).client, "random");
    let kept = k8s_openapi::api::core::v1::Secret {
        data: Some(
            [
                ("client-password".to_owned(), k8s_openapi::ByteString(fresh.client.clone().into_bytes())),
                ("stats-password".to_owned(), k8s_openapi::ByteString(fresh.stats.clone().into_bytes())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    assert!(GeneratedPasswords::kept_or_new(Some(&kept)) == fresh);
}

#[test]
fn every_container_meets_the_restricted_pod_security_profile() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let redis = children.redis.as_ref().expect("redis");
    let pods = [
        children.api_deployment.spec.as_ref().and_then(|s| s.template.spec.clone()),
        children.worker_deployment.spec.as_ref().and_then(|s| s.template.spec.clone()),
        children.pgbouncer_deployment.spec.as_ref().and_then(|s| s.template.spec.clone()),
        redis.statefulset.spec.as_ref().and_then(|s| s.template.spec.clone()),
    ];
    for pod in pods.into_iter().map(|p| p.expect("pod spec")) {
        assert_eq!(pod.security_context.as_ref().and_then(|s| s.run_as_non_root), Some(true));
        for c in pod.containers.iter().chain(pod.init_containers.iter().flatten()) {
            let sc = c.security_context.as_ref().expect("security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_owned()]));
            assert_eq!(sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
        }
    }
}

#[test]
fn a_platform_without_a_uid_is_an_error_not_a_panic() {
    let mut rp = fixture("minimal.yaml");
    rp.metadata.uid = None;
    assert!(matches!(build(&rp, &validated("pw")), Err(crate::error::Error::MissingObjectKey(_))));
    assert_eq!(rp.name_any(), "risk");
}

/// ConfigMap and Secret volumes are mounted read-only, so the container runtime cannot create
/// a mount point inside one: no mount may sit below a mount of such a volume.
#[test]
fn no_volume_is_mounted_inside_a_read_only_configmap_or_secret_mount() {
    use k8s_openapi::api::core::v1::PodSpec;
    let children = build(&fixture("persistent-redis.yaml"), &validated("pw")).expect("build");
    let redis = children.redis.as_ref().expect("managed redis");
    let specs: Vec<(&str, &PodSpec)> = [
        ("api", &children.api_deployment),
        ("worker", &children.worker_deployment),
        ("pgbouncer", &children.pgbouncer_deployment),
    ]
    .into_iter()
    .filter_map(|(n, d)| Some((n, d.spec.as_ref()?.template.spec.as_ref()?)))
    .chain(redis.statefulset.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|p| ("redis", p)))
    .collect();
    assert_eq!(specs.len(), 4);
    for (workload, pod) in specs {
        let read_only: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.config_map.is_some() || v.secret.is_some())
            .map(|v| v.name.as_str())
            .collect();
        for c in pod.containers.iter().chain(pod.init_containers.iter().flatten()) {
            let mounts: Vec<_> = c.volume_mounts.iter().flatten().collect();
            for outer in mounts.iter().filter(|m| read_only.contains(&m.name.as_str())) {
                let prefix = format!("{}/", outer.mount_path.trim_end_matches('/'));
                for inner in &mounts {
                    assert!(
                        !inner.mount_path.starts_with(&prefix),
                        "{workload}/{}: {} is mounted inside the read-only {} at {}",
                        c.name,
                        inner.mount_path,
                        outer.name,
                        outer.mount_path
                    );
                }
            }
        }
    }
}

#[test]
fn extra_env_is_added_to_its_container_and_rust_log_replaces_the_operators_default() {
    let mut rp = fixture("minimal.yaml");
    let var = |name: &str, value: &str| EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() };
    rp.spec.api.env = vec![var("RUST_LOG", "debug"), var("FEATURE_X", "on")];
    rp.spec.workers.env = vec![var("WORKER_ONLY", "1")];
    let children = build(&rp, &validated("pw")).expect("build");
    let api = container(&children.api_deployment, "api");
    assert_eq!(env(api, "RUST_LOG").value.as_deref(), Some("debug"));
    assert_eq!(env(api, "FEATURE_X").value.as_deref(), Some("on"));
    assert_eq!(api.env.iter().flatten().filter(|e| e.name == "RUST_LOG").count(), 1, "one RUST_LOG");
    assert_eq!(env(api, "PGHOST").value.as_deref(), Some("risk-pgbouncer"));
    let worker = container(&children.worker_deployment, "worker");
    assert_eq!(env(worker, "WORKER_ONLY").value.as_deref(), Some("1"));
    assert_eq!(env(worker, "RUST_LOG").value.as_deref(), Some("info"));
    assert!(!api.env.iter().flatten().any(|e| e.name == "WORKER_ONLY"));
}

#[test]
fn the_reserved_env_names_are_the_ones_the_operator_sets() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let api = container(&children.api_deployment, "api");
    let worker = container(&children.worker_deployment, "worker");
    let set: std::collections::BTreeSet<&str> = api
        .env
        .iter()
        .chain(worker.env.iter())
        .flatten()
        .map(|e| e.name.as_str())
        .filter(|n| *n != "RUST_LOG")
        .collect();
    for name in &set {
        assert!(riskplatform_crd::RESERVED_ENV.contains(name), "{name} is set by the operator but not reserved");
    }
}

#[test]
fn managed_redis_gets_a_metrics_sidecar_on_a_port_named_metrics_unless_its_image_is_empty() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let redis = children.redis.expect("managed redis");
    let pod = redis.statefulset.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
    let exporter = pod.containers.iter().find(|c| c.name == "exporter").expect("exporter container");
    assert_eq!(exporter.image.as_deref(), Some("oliver006/redis_exporter:v1.45.0"));
    let port = exporter.ports.iter().flatten().find(|p| p.name.as_deref() == Some("metrics")).expect("metrics port");
    assert_eq!(port.container_port, 9121);
    assert_eq!(env(exporter, "REDIS_ADDR").value.as_deref(), Some("redis://localhost:6379"));

    let mut locked = fixture("minimal.yaml");
    locked.spec.redis.password_secret_ref =
        Some(serde_json::from_value(serde_json::json!({ "name": "redis-auth", "key": "pw" })).expect("ref"));
    let children = build(&locked, &validated("pw")).expect("build");
    let pod = children.redis.expect("managed redis").statefulset.spec.and_then(|s| s.template.spec).expect("pod");
    let exporter = pod.containers.iter().find(|c| c.name == "exporter").expect("exporter container");
    let pw = env(exporter, "REDIS_PASSWORD").value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("ref");
    assert_eq!((pw.name.as_str(), pw.key.as_str()), ("redis-auth", "pw"));

    let mut bare = fixture("minimal.yaml");
    bare.spec.redis.exporter_image = String::new();
    let children = build(&bare, &validated("pw")).expect("build");
    let pod = children.redis.expect("managed redis").statefulset.spec.and_then(|s| s.template.spec).expect("pod");
    assert_eq!(pod.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["redis"]);
}
