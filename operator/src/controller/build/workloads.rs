//! The API and worker workloads: Deployments, Services and the API's PodDisruptionBudget.
//!
//! Deployments carry no `spec.replicas`: the autoscaler owns that field under its own field
//! manager, so a reconcile never resets what the autoscaler decided.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    SecretKeySelector, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{self, BuildContext, Component, CONFIG_HASH_ANNOTATION};
use super::pgbouncer::PORT as PGBOUNCER_PORT;
use crate::controller::validate::{Validated, CLIENT_PASSWORD_KEY, DATABASE_PASSWORD_KEY, DATABASE_USERNAME_KEY};

/// Port of the API's HTTP listener (REST, health and metrics).
pub const API_PORT: i32 = 8080;
/// Port of the worker's health and metrics listener.
pub const WORKER_METRICS_PORT: i32 = 9090;
/// The API image's non-root user.
const APP_UID: i64 = 10001;

pub struct Workloads {
    pub api_deployment: Deployment,
    pub api_service: Service,
    pub api_pdb: PodDisruptionBudget,
    pub worker_deployment: Deployment,
    pub worker_service: Service,
}

pub fn build(ctx: &BuildContext, validated: &Validated, redis_url: &str) -> Workloads {
    let spec = &ctx.rp.spec;
    let api_image = spec.api.image.as_str();
    let worker_image = spec.workers.image.as_deref().unwrap_or(api_image);
    let env = app_env(ctx, validated, redis_url);

    let mut api = common::container("api", api_image);
    api.args = Some(vec!["serve".to_owned()]);
    api.ports = Some(vec![common::port("http", API_PORT)]);
    api.env = Some(overridden(api_env(ctx, env.clone()), &spec.api.env));
    api.resources = Some(spec.api.resources.clone());
    api.liveness_probe = Some(common::http_probe("/health/live", "http", 30, 15));
    api.readiness_probe = Some(common::http_probe("/health/ready", "http", 5, 5));
    api.volume_mounts = Some(vec![tmp_mount()]);

    let mut worker = common::container("worker", worker_image);
    worker.args = Some(vec!["worker".to_owned()]);
    worker.ports = Some(vec![common::port("metrics", WORKER_METRICS_PORT)]);
    worker.env =
        Some(overridden(with(env, "RISK_METRICS_ADDR", &format!("0.0.0.0:{WORKER_METRICS_PORT}")), &spec.workers.env));
    worker.resources = Some(spec.workers.resources.clone());
    worker.liveness_probe = Some(common::http_probe("/health/live", "metrics", 30, 15));
    worker.readiness_probe = Some(common::http_probe("/health/ready", "metrics", 5, 5));
    worker.volume_mounts = Some(vec![tmp_mount()]);

    let migrate = migrate_container(ctx, api_image);
    let names = &ctx.names;
    Workloads {
        api_deployment: deployment(ctx, &names.api, Component::Api, vec![api], Some(migrate), validated),
        api_service: service(ctx, &names.api, Component::Api, "http", 80),
        api_pdb: PodDisruptionBudget {
            metadata: ctx.meta(&names.api, Some(Component::Api)),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(common::selector(&names.platform, Component::Api)),
                ..Default::default()
            }),
            ..Default::default()
        },
        worker_deployment: deployment(ctx, &names.workers, Component::Worker, vec![worker], None, validated),
        worker_service: service(ctx, &names.workers, Component::Worker, "metrics", WORKER_METRICS_PORT),
    }
}

/// Environment shared by API and workers: where PgBouncer and Redis are, and the pods' own
/// PgBouncer login, its password by reference to the owned auth Secret (never as a value).
fn app_env(ctx: &BuildContext, validated: &Validated, redis_url: &str) -> Vec<EnvVar> {
    let spec = &ctx.rp.spec;
    let mut env = vec![
        value_env("PGHOST", &ctx.names.pgbouncer),
        value_env("PGPORT", &PGBOUNCER_PORT.to_string()),
        value_env("PGDATABASE", &spec.pgbouncer.database.name),
        value_env("PGUSER", super::pgbouncer::client_user(&validated.credentials.username)),
        secret_env("PGPASSWORD", &ctx.names.pgbouncer_auth, CLIENT_PASSWORD_KEY),
    ];
    match &spec.redis.password_secret_ref {
        Some(secret) => {
            env.push(secret_env("REDIS_PASSWORD", &secret.name, &secret.key));
            // Kubernetes expands $(VAR) from variables defined earlier, so the password stays in
            // the Secret and never appears in the pod spec.
            let with_auth = redis_url.replacen("://", "://:$(REDIS_PASSWORD)@", 1);
            env.push(value_env("REDIS_URL", &with_auth));
        }
        None => env.push(value_env("REDIS_URL", redis_url)),
    }
    env.push(value_env("RUST_LOG", "info"));
    env
}

/// The API's own variables: its listener, and the breaker ConfigMap it follows in its own
/// namespace (from the downward API, so the pod needs no extra permission to learn it).
fn api_env(ctx: &BuildContext, mut env: Vec<EnvVar>) -> Vec<EnvVar> {
    env.push(value_env("RISK_LISTEN_ADDR", &format!("0.0.0.0:{API_PORT}")));
    env.push(value_env("RISK_BREAKER_CONFIGMAP", &ctx.names.breaker_configmap));
    let db = &ctx.rp.spec.pgbouncer.database;
    if !db.read_replicas.is_empty() {
        let names: Vec<String> =
            (0..db.read_replicas.len()).map(|n| super::pgbouncer::replica_database(&db.name, n)).collect();
        env.push(value_env("RISK_READ_DATABASES", &names.join(",")));
    }
    env.push(EnvVar {
        name: "POD_NAMESPACE".to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "metadata.namespace".to_owned(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    });
    env
}

/// libpq-style variables of the migrations, which log in to PostgreSQL itself as the database
/// user. The credentials are the ones PgBouncer was given, by reference to the owned auth Secret,
/// so a new pod does not start on credentials the operator held back because the database
/// refuses them.
fn database_env(ctx: &BuildContext, host: &str, port: i32) -> Vec<EnvVar> {
    let auth = &ctx.names.pgbouncer_auth;
    vec![
        value_env("PGHOST", host),
        value_env("PGPORT", &port.to_string()),
        value_env("PGDATABASE", &ctx.rp.spec.pgbouncer.database.name),
        secret_env("PGUSER", auth, DATABASE_USERNAME_KEY),
        secret_env("PGPASSWORD", auth, DATABASE_PASSWORD_KEY),
    ]
}

/// Migrations run before the API starts, straight against PostgreSQL: they take a session-level
/// advisory lock, which PgBouncer's transaction pooling cannot hold.
fn migrate_container(ctx: &BuildContext, image: &str) -> Container {
    let db = &ctx.rp.spec.pgbouncer.database;
    let mut c = common::container("migrate", image);
    c.args = Some(vec!["migrate".to_owned()]);
    c.env = Some(database_env(ctx, &db.host, db.port));
    c.resources = Some(ctx.rp.spec.api.resources.clone());
    c
}

fn deployment(
    ctx: &BuildContext,
    name: &str,
    component: Component,
    containers: Vec<Container>,
    init: Option<Container>,
    validated: &Validated,
) -> Deployment {
    let platform = &ctx.names.platform;
    Deployment {
        metadata: ctx.meta(name, Some(component)),
        spec: Some(DeploymentSpec {
            selector: common::selector(platform, component),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".to_owned())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(common::component_labels(platform, component)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        validated.credentials_hash.clone(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(platform.clone()),
                    security_context: Some(common::restricted_pod_security(APP_UID)),
                    init_containers: init.map(|c| vec![c]),
                    containers,
                    volumes: Some(vec![Volume {
                        name: "tmp".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A ClusterIP Service in front of a component; the named target port keeps it valid when a
/// container's port number changes.
pub fn service(ctx: &BuildContext, name: &str, component: Component, port_name: &str, port: i32) -> Service {
    Service {
        metadata: ctx.meta(name, Some(component)),
        spec: Some(ServiceSpec {
            selector: Some(common::selector_labels(&ctx.names.platform, component)),
            ports: Some(vec![ServicePort {
                name: Some(port_name.to_owned()),
                port,
                target_port: Some(IntOrString::String(port_name.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tmp_mount() -> VolumeMount {
    VolumeMount { name: "tmp".to_owned(), mount_path: "/tmp".to_owned(), ..Default::default() }
}

pub fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), ..Default::default() }
}

pub fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The operator's variables with the spec's `extra` after them; an extra one of the same name
/// (only `RUST_LOG` can be: the schema refuses the reserved names) replaces the operator's, since
/// a container's env list must not repeat a name under server-side apply.
fn overridden(mut env: Vec<EnvVar>, extra: &[EnvVar]) -> Vec<EnvVar> {
    env.retain(|e| !extra.iter().any(|x| x.name == e.name));
    env.extend(extra.iter().cloned());
    env
}

fn with(mut env: Vec<EnvVar>, name: &str, value: &str) -> Vec<EnvVar> {
    env.push(value_env(name, value));
    env
}
