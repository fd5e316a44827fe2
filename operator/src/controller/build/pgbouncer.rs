//! PgBouncer: pgbouncer.ini in a ConfigMap (no secrets), the auth file in an owned Secret, a
//! Deployment and a Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, PodSpec, PodTemplateSpec, Probe, Secret, SecretVolumeSource, Service,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::common::{self, BuildContext, Component, CONFIG_HASH_ANNOTATION};
use super::workloads::{secret_env, service, value_env};
use crate::controller::validate::{
    Validated, CLIENT_PASSWORD_KEY, DATABASE_PASSWORD_KEY, DATABASE_USERNAME_KEY, STATS_PASSWORD_KEY,
};

/// PgBouncer's conventional port.
pub const PORT: i32 = 6432;
/// The PgBouncer exporter's conventional port.
pub const EXPORTER_PORT: i32 = 9127;
const CONFIG_DIR: &str = "/etc/pgbouncer";
/// A sibling of the config directory, not inside it: ConfigMap volumes are mounted read-only, so
/// the runtime cannot create a mount point in one (the local cluster's kubelet showed it).
const AUTH_DIR: &str = "/etc/pgbouncer-auth";
/// How long a client's query may wait for a server connection before PgBouncer fails it
/// (PgBouncer's default is 120 s): with PostgreSQL down, the API's calls then fail within
/// seconds, so its breaker opens instead of every request hanging for two minutes.
const QUERY_WAIT_TIMEOUT_SECONDS: u32 = 10;
/// Seconds between PgBouncer's attempts to log in to a server that refused it (default 15), so
/// a restarted PostgreSQL is used again at once.
const SERVER_LOGIN_RETRY_SECONDS: u32 = 2;
/// uid of the pgbouncer user in the default image.
const PGBOUNCER_UID: i64 = 70;

pub struct PgBouncerChildren {
    pub config: ConfigMap,
    pub auth: Secret,
    pub deployment: Deployment,
    pub service: Service,
}

/// PgBouncer's name for the `n`th read replica of database `name`. One entry per replica, not
/// one entry listing every host: PgBouncer would then pick a host per connection, and the API
/// could neither measure each replica's lag nor skip the one that lags.
pub fn replica_database(name: &str, n: usize) -> String {
    format!("{name}_ro_{n}")
}

/// The pgbouncer.ini for a platform. Passwords live in the auth file, never here: PgBouncer
/// logs in to PostgreSQL as `server_user` with that user's password from the auth file, whoever
/// the client is.
pub fn ini(ctx: &BuildContext, server_user: &str) -> String {
    let stats_users =
        if has_exporter(ctx) { format!("stats_users = {}\n", stats_user(server_user)) } else { String::new() };
    let server_user = connstring_value(server_user);
    let pg = &ctx.rp.spec.pgbouncer;
    let db = &pg.database;
    // A replica is the same database on another server, so it is reached under its own name.
    let replicas: String = db
        .read_replicas
        .iter()
        .enumerate()
        .map(|(n, r)| {
            format!(
                "{} = host={} port={} dbname={} user={server_user}\n",
                replica_database(&db.name, n),
                r.host,
                r.port,
                db.name
            )
        })
        .collect();
    format!(
        "[databases]\n\
         {name} = host={host} port={port} dbname={name} user={server_user}\n\
         {replicas}\
         \n\
         [pgbouncer]\n\
         listen_addr = 0.0.0.0\n\
         listen_port = {PORT}\n\
         auth_type = scram-sha-256\n\
         auth_file = {AUTH_DIR}/userlist.txt\n\
         pool_mode = {mode}\n\
         max_client_conn = {max_client}\n\
         default_pool_size = {pool}\n\
         reserve_pool_size = {reserve}\n\
         max_db_connections = {max_db}\n\
         {stats_users}\
         ignore_startup_parameters = extra_float_digits\n\
         query_wait_timeout = {QUERY_WAIT_TIMEOUT_SECONDS}\n\
         server_login_retry = {SERVER_LOGIN_RETRY_SECONDS}\n\
         server_tls_sslmode = prefer\n\
         unix_socket_dir =\n",
        name = db.name,
        host = db.host,
        port = db.port,
        mode = pg.pool_mode.as_ini(),
        max_client = pg.max_client_conn,
        pool = pg.default_pool_size,
        reserve = pg.reserve_pool_size,
        max_db = pg.max_db_connections,
    )
}

/// A value in a PgBouncer connect string: quoted, with `'` doubled, when it is not a plain word.
fn connstring_value(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', "''"))
    }
}

/// The user the API and workers log in to PgBouncer as, with their own password: never the
/// database user, so the database password can change without them.
pub fn client_user(database_user: &str) -> &'static str {
    const CLIENT_USER: &str = "riskplatform-app";
    if database_user == CLIENT_USER {
        "riskplatform-app-client"
    } else {
        CLIENT_USER
    }
}

/// The exporter's user at PgBouncer's admin console, read-only (`stats_users`): never the
/// database user, which would then be allowed on the console.
pub fn stats_user(database_user: &str) -> &'static str {
    const STATS_USER: &str = "riskplatform-stats";
    if database_user == STATS_USER {
        "riskplatform-stats-exporter"
    } else {
        STATS_USER
    }
}

/// PgBouncer 1.18 stops at once on SIGTERM, cutting every transaction in flight; SIGINT is its
/// graceful stop (`PAUSE`, then `SHUTDOWN`: transactions finish first). Kubernetes stops a
/// container with SIGTERM, so a shell runs PgBouncer and turns that into SIGINT. A shell rather
/// than a preStop `kill -INT 1`: PgBouncer is not PID 1 where the pod shares the host's PID
/// namespace, and the shell's exit status is PgBouncer's.
fn graceful_command(ini: &str) -> Vec<String> {
    let script = format!(
        "pgbouncer {ini} & child=$!\n\
         trap 'kill -INT \"$child\" 2>/dev/null' TERM INT\n\
         while :; do wait \"$child\"; status=$?; kill -0 \"$child\" 2>/dev/null || exit \"$status\"; done\n"
    );
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script]
}

fn has_exporter(ctx: &BuildContext) -> bool {
    !ctx.rp.spec.pgbouncer.exporter_image.is_empty()
}

/// The metrics sidecar: the API image's `pgbouncer-exporter`, reading PgBouncer's admin console
/// over the pod's loopback as the read-only stats user, on the port Prometheus scrapes by name.
fn exporter(ctx: &BuildContext, database_user: &str) -> Option<Container> {
    if !has_exporter(ctx) {
        return None;
    }
    let mut c = common::container("exporter", &ctx.rp.spec.pgbouncer.exporter_image);
    c.args = Some(vec!["pgbouncer-exporter".to_owned()]);
    c.env = Some(vec![
        value_env("PGBOUNCER_HOST", "127.0.0.1"),
        value_env("PGBOUNCER_PORT", &PORT.to_string()),
        value_env("PGBOUNCER_USER", stats_user(database_user)),
        secret_env("PGBOUNCER_PASSWORD", &ctx.names.pgbouncer_auth, STATS_PASSWORD_KEY),
        value_env("RISK_EXPORTER_LISTEN", &format!("0.0.0.0:{EXPORTER_PORT}")),
    ]);
    c.ports = Some(vec![common::port("metrics", EXPORTER_PORT)]);
    c.resources = Some(common::sidecar_resources());
    Some(c)
}

/// PgBouncer's userlist.txt format: `"user" "password"` per line, with `"` doubled inside values.
fn userlist(users: &[(&str, &str)]) -> String {
    users.iter().map(|(u, p)| format!("\"{}\" \"{}\"\n", u.replace('"', "\"\""), p.replace('"', "\"\""))).collect()
}

pub fn build(ctx: &BuildContext, validated: &Validated) -> PgBouncerChildren {
    let names = &ctx.names;
    let pg = &ctx.rp.spec.pgbouncer;
    let c = &validated.credentials;
    let ini = ini(ctx, &c.username);
    let mut users = vec![(c.username.as_str(), c.password.as_str()), (client_user(&c.username), &c.client_password)];
    if has_exporter(ctx) {
        users.push((stats_user(&c.username), &c.stats_password));
    }
    let userlist = userlist(&users);
    let hash = common::config_hash(&[ini.as_bytes(), userlist.as_bytes()]);

    let mut container = common::container("pgbouncer", &pg.image);
    container.command = Some(graceful_command(&format!("{CONFIG_DIR}/pgbouncer.ini")));
    container.ports = Some(vec![common::port("postgres", PORT)]);
    container.resources = Some(pg.resources.clone());
    let tcp = |initial, period| Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("postgres".to_owned()), ..Default::default() }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        ..Default::default()
    };
    container.liveness_probe = Some(tcp(15, 15));
    container.readiness_probe = Some(tcp(2, 5));
    container.volume_mounts = Some(vec![
        VolumeMount {
            name: "config".to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "auth".to_owned(),
            mount_path: AUTH_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
    ]);

    let deployment = Deployment {
        metadata: ctx.meta(&names.pgbouncer, Some(Component::PgBouncer)),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: common::selector(&names.platform, Component::PgBouncer),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(common::component_labels(&names.platform, Component::PgBouncer)),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash)])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.platform.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(common::restricted_pod_security(PGBOUNCER_UID)),
                    containers: std::iter::once(container).chain(exporter(ctx, &c.username)).collect(),
                    volumes: Some(vec![
                        Volume {
                            name: "config".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: names.pgbouncer.clone(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "auth".to_owned(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(names.pgbouncer_auth.clone()),
                                default_mode: Some(0o400),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };

    PgBouncerChildren {
        config: ConfigMap {
            metadata: ctx.meta(&names.pgbouncer, Some(Component::PgBouncer)),
            data: Some(BTreeMap::from([("pgbouncer.ini".to_owned(), ini)])),
            ..Default::default()
        },
        auth: Secret {
            metadata: ctx.meta(&names.pgbouncer_auth, Some(Component::PgBouncer)),
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([
                ("userlist.txt".to_owned(), ByteString(userlist.into_bytes())),
                (CLIENT_PASSWORD_KEY.to_owned(), ByteString(c.client_password.clone().into_bytes())),
                (STATS_PASSWORD_KEY.to_owned(), ByteString(c.stats_password.clone().into_bytes())),
                (DATABASE_USERNAME_KEY.to_owned(), ByteString(c.username.clone().into_bytes())),
                (DATABASE_PASSWORD_KEY.to_owned(), ByteString(c.password.clone().into_bytes())),
            ])),
            ..Default::default()
        },
        deployment,
        service: service(ctx, &names.pgbouncer, Component::PgBouncer, "postgres", PORT),
    }
}
