//! The managed Redis: redis.conf in a ConfigMap, a one-replica StatefulSet and a Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use riskplatform_crd::RedisSnapshot;

use super::common::{self, BuildContext, Component, CONFIG_HASH_ANNOTATION};
use super::workloads::{secret_env, service, value_env};
use super::RedisChildren;

/// Redis's conventional port.
pub const PORT: i32 = 6379;
/// redis_exporter's conventional port.
pub const EXPORTER_PORT: i32 = 9121;
/// uid of the redis user in the official image.
const REDIS_UID: i64 = 999;

/// The redis.conf for a platform. A password, if any, is passed on the command line from the
/// Secret, never written here. Without persistence nothing is written to disk: `/data` is an
/// emptyDir and a restart starts empty, which the job queue's sweep recovers from. Protected mode
/// is off: with a config file and no password Redis would otherwise refuse every client but
/// loopback, i.e. every other pod (the official image turns it off only when it runs without a
/// config file); access is the Service's, and `passwordSecretRef` adds a password.
pub fn conf(ctx: &BuildContext) -> String {
    let r = &ctx.rp.spec.redis;
    let p = &r.persistence;
    let mut conf = format!(
        "bind 0.0.0.0\n\
         protected-mode no\n\
         port {PORT}\n\
         dir /data\n\
         maxmemory {maxmemory}\n\
         maxmemory-policy {policy}\n\
         tcp-keepalive {keepalive}\n\
         timeout {timeout}\n",
        maxmemory = r.maxmemory,
        policy = r.eviction_policy.as_redis(),
        keepalive = r.tcp_keepalive_seconds,
        timeout = r.timeout_seconds,
    );
    let snapshots: &[RedisSnapshot] = if p.enabled { &p.snapshots } else { &[] };
    if snapshots.is_empty() {
        conf.push_str("save \"\"\n");
    }
    for s in snapshots {
        conf.push_str(&format!("save {} {}\n", s.after_seconds, s.changes));
    }
    if p.enabled && p.append_only {
        conf.push_str("appendonly yes\nappendfsync everysec\n");
    } else {
        conf.push_str("appendonly no\n");
    }
    conf
}

/// The metrics sidecar: redis_exporter reading Redis over the pod's loopback, with the password
/// by reference when there is one, and serving on the port Prometheus scrapes by its name.
fn exporter(ctx: &BuildContext) -> Option<Container> {
    let r = &ctx.rp.spec.redis;
    if r.exporter_image.is_empty() {
        return None;
    }
    let mut c = common::container("exporter", &r.exporter_image);
    let mut env = vec![
        value_env("REDIS_ADDR", &format!("redis://localhost:{PORT}")),
        value_env("REDIS_EXPORTER_WEB_LISTEN_ADDRESS", &format!(":{EXPORTER_PORT}")),
    ];
    if let Some(secret) = &r.password_secret_ref {
        env.push(secret_env("REDIS_PASSWORD", &secret.name, &secret.key));
    }
    c.env = Some(env);
    c.ports = Some(vec![common::port("metrics", EXPORTER_PORT)]);
    c.resources = Some(common::sidecar_resources());
    Some(c)
}

pub fn build(ctx: &BuildContext) -> RedisChildren {
    let names = &ctx.names;
    let r = &ctx.rp.spec.redis;
    let conf = conf(ctx);
    let hash = common::config_hash(&[conf.as_bytes()]);

    let mut container = common::container("redis", &r.image);
    let mut args = vec!["/etc/redis/redis.conf".to_owned()];
    if let Some(secret) = &r.password_secret_ref {
        container.env = Some(vec![secret_env("REDIS_PASSWORD", &secret.name, &secret.key)]);
        args.extend(["--requirepass".to_owned(), "$(REDIS_PASSWORD)".to_owned()]);
    }
    container.command = Some(vec!["redis-server".to_owned()]);
    container.args = Some(args);
    container.ports = Some(vec![common::port("redis", PORT)]);
    container.resources = Some(r.resources.clone());
    container.liveness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("redis".to_owned()), ..Default::default() }),
        initial_delay_seconds: Some(15),
        period_seconds: Some(15),
        ..Default::default()
    });
    container.readiness_probe = Some(Probe {
        exec: Some(ExecAction { command: Some(vec!["redis-cli".to_owned(), "ping".to_owned()]) }),
        initial_delay_seconds: Some(2),
        period_seconds: Some(5),
        ..Default::default()
    });
    container.volume_mounts = Some(vec![
        VolumeMount {
            name: "config".to_owned(),
            mount_path: "/etc/redis".to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount { name: "data".to_owned(), mount_path: "/data".to_owned(), ..Default::default() },
    ]);

    let mut containers = vec![container];
    containers.extend(exporter(ctx));

    let mut volumes = vec![Volume {
        name: "config".to_owned(),
        config_map: Some(ConfigMapVolumeSource { name: names.redis.clone(), ..Default::default() }),
        ..Default::default()
    }];
    let claims = if r.persistence.enabled {
        Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("data".to_owned()), ..Default::default() },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: r.persistence.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_owned(), r.persistence.size.clone())])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }])
    } else {
        volumes.push(Volume {
            name: "data".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        None
    };

    RedisChildren {
        config: ConfigMap {
            metadata: ctx.meta(&names.redis, Some(Component::Redis)),
            data: Some(BTreeMap::from([("redis.conf".to_owned(), conf)])),
            ..Default::default()
        },
        service: service(ctx, &names.redis, Component::Redis, "redis", PORT),
        statefulset: StatefulSet {
            metadata: ctx.meta(&names.redis, Some(Component::Redis)),
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                service_name: Some(names.redis.clone()),
                selector: common::selector(&names.platform, Component::Redis),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(common::component_labels(&names.platform, Component::Redis)),
                        annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash)])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(names.platform.clone()),
                        automount_service_account_token: Some(false),
                        security_context: Some(common::restricted_pod_security(REDIS_UID)),
                        containers,
                        volumes: Some(volumes),
                        ..Default::default()
                    }),
                },
                volume_claim_templates: claims,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}
