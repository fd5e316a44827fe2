//! `build` of PgBouncer's pod: its graceful stop and its metrics sidecar.

use super::tests::{container, env, fixture, validated};
use super::*;

fn ini(children: &Children) -> String {
    children.pgbouncer_config.data.as_ref().expect("data")["pgbouncer.ini"].clone()
}

fn userlist(children: &Children) -> String {
    String::from_utf8_lossy(&children.pgbouncer_auth.data.as_ref().expect("data")["userlist.txt"].0).into_owned()
}

#[test]
fn pgbouncer_is_stopped_with_sigint_its_graceful_stop_and_not_sigterm() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let pgbouncer = container(&children.pgbouncer_deployment, "pgbouncer");
    let command = pgbouncer.command.as_deref().expect("command");
    assert_eq!(&command[..2], ["/bin/sh", "-c"]);
    let script = &command[2];
    assert!(script.starts_with("pgbouncer /etc/pgbouncer/pgbouncer.ini & child=$!\n"), "{script}");
    assert!(script.contains("trap 'kill -INT \"$child\" 2>/dev/null' TERM INT"), "{script}");
    assert!(script.contains("exit \"$status\""), "PgBouncer's exit status is the container's: {script}");
}

#[test]
fn pgbouncer_gets_a_metrics_sidecar_reading_its_console_as_a_read_only_user() {
    let children = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let exporter = container(&children.pgbouncer_deployment, "exporter");
    assert_eq!(exporter.image.as_deref(), Some(riskplatform_crd::DEFAULT_API_IMAGE), "the API image runs it");
    assert_eq!(exporter.args.as_deref(), Some(&["pgbouncer-exporter".to_owned()][..]));
    let port = exporter.ports.iter().flatten().find(|p| p.name.as_deref() == Some("metrics")).expect("metrics port");
    assert_eq!(port.container_port, 9127);
    assert_eq!(env(exporter, "PGBOUNCER_USER").value.as_deref(), Some("riskplatform-stats"));
    let pw = env(exporter, "PGBOUNCER_PASSWORD").value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref());
    let pw = pw.expect("password by reference");
    assert_eq!((pw.name.as_str(), pw.key.as_str()), ("risk-pgbouncer-auth", "stats-password"));

    assert!(ini(&children).lines().any(|l| l == "stats_users = riskplatform-stats"), "{}", ini(&children));
    assert!(!ini(&children).contains("admin_users"), "read-only: {}", ini(&children));
    let stats_password = "s".repeat(64);
    assert!(userlist(&children).contains(&format!("\"riskplatform-stats\" \"{stats_password}\"\n")));
    let auth = children.pgbouncer_auth.data.as_ref().expect("data");
    assert_eq!(auth["stats-password"].0, stats_password.as_bytes());
}

#[test]
fn without_the_exporter_pgbouncer_runs_alone_and_has_no_stats_user() {
    let mut rp = fixture("minimal.yaml");
    rp.spec.pgbouncer.exporter_image = String::new();
    let children = build(&rp, &validated("pw")).expect("build");
    let pod = children.pgbouncer_deployment.spec.and_then(|s| s.template.spec).expect("pod");
    assert_eq!(pod.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["pgbouncer"]);
    let children = build(&rp, &validated("pw")).expect("build");
    assert!(!ini(&children).contains("stats_users"), "{}", ini(&children));
    assert!(!userlist(&children).contains("riskplatform-stats"), "{}", userlist(&children));
}

#[test]
fn a_new_api_image_does_not_restart_pgbouncer() {
    let before = build(&fixture("minimal.yaml"), &validated("pw")).expect("build");
    let mut upgraded = fixture("minimal.yaml");
    upgraded.spec.api.image = "ghcr.io/riskplatform/riskplatform-api:9.9.9".to_owned();
    let after = build(&upgraded, &validated("pw")).expect("build");
    assert_ne!(container(&before.api_deployment, "api").image, container(&after.api_deployment, "api").image);
    assert_eq!(before.pgbouncer_deployment.spec, after.pgbouncer_deployment.spec);
}

#[test]
fn a_database_user_named_like_the_stats_user_gets_the_exporter_another_name() {
    assert_eq!(pgbouncer::stats_user("risk"), "riskplatform-stats");
    assert_ne!(pgbouncer::stats_user("riskplatform-stats"), "riskplatform-stats");
}
