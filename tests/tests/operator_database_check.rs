//! The operator's database check against a real PostgreSQL that requires a password: a platform
//! whose database host does not resolve, refuses connections, rejects the credentials or lacks
//! the database shows Degraded with that reason, and a fixed Secret clears it; a new password the
//! database refuses is held back from the pods.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use riskplatform_crd::{condition, RiskPlatform};
use riskplatform_operator::controller::build::CONFIG_HASH_ANNOTATION;
use riskplatform_tests::cluster::{eventually, install_crd, namespace, secret, test_platform, TestCluster};
use riskplatform_tests::operator::RunningOperator;
use riskplatform_tests::postgres::{Postgres, DATABASE, USER};
use serde_json::json;
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(30);

/// The Degraded condition as (status, reason, message), once it has one.
async fn degraded(api: &Api<RiskPlatform>, name: &str) -> Result<(String, String, String)> {
    let rp = api.get(name).await?;
    let c = rp.status.as_ref().and_then(|s| s.condition(condition::DEGRADED)).cloned().context("no Degraded yet")?;
    Ok((c.status, c.reason, c.message))
}

/// An API server with the CRD, a namespace and an operator checking databases every second.
async fn checking_operator(prefix: &str) -> Result<(TestCluster, kube::Client, String, RunningOperator)> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    install_crd(&client).await?;
    let ns = namespace(&client, prefix).await?;
    let mut config = RunningOperator::config(&ns);
    config.database_check_seconds = 1;
    let operator = RunningOperator::start_with(client.clone(), config);
    Ok((cluster, client, ns, operator))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_used_is_shown_as_degraded_with_the_reason_until_it_can() -> Result<()> {
    let pg = Postgres::start_with_password("right-password")?;
    let (_cluster, client, ns, _operator) = checking_operator("dbcheck").await?;

    secret(&client, &ns, "good", &[("username", USER), ("password", "right-password")]).await?;
    secret(&client, &ns, "bad", &[("username", USER), ("password", "wrong-password")]).await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let closed_port = closed.local_addr()?.port();
    drop(closed);
    let cases = [
        ("healthy", "127.0.0.1", pg.port(), DATABASE, "good", "AsExpected", "all children applied"),
        (
            "nohost",
            "no-such-database-host.invalid",
            5432,
            DATABASE,
            "good",
            "DatabaseHostNotFound",
            "\"no-such-database-host.invalid\" does not resolve",
        ),
        ("refused", "127.0.0.1", closed_port, DATABASE, "good", "DatabaseUnreachable", "refuses connections"),
        (
            "badpassword",
            "127.0.0.1",
            pg.port(),
            DATABASE,
            "bad",
            "DatabaseAuthenticationFailed",
            "password authentication failed",
        ),
        ("nodatabase", "127.0.0.1", pg.port(), "no_such_db", "good", "DatabaseNotFound", "no database \"no_such_db\""),
    ];
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    for (name, host, port, database, creds, ..) in &cases {
        let database = json!({ "host": host, "port": port, "name": database });
        let mut rp = test_platform(name, creds, json!({}))?;
        rp.spec.pgbouncer.database = serde_json::from_value(database)?;
        api.create(&PostParams::default(), &rp).await?;
    }
    for (name, .., reason, needle) in &cases {
        let (status, got, message) = eventually(WAIT, || async {
            let d = degraded(&api, name).await?;
            ensure!(d.1 == *reason, "{name}: Degraded reason {} ({}), want {reason}", d.1, d.2);
            Ok(d)
        })
        .await?;
        ensure!(message.contains(needle), "{name}: {got}: {message:?} does not say {needle:?}");
        ensure!(!message.contains("right-password") && !message.contains("wrong-password"), "{message}");
        let want = if *reason == "AsExpected" { "False" } else { "True" };
        ensure!(status == want, "{name}: Degraded={status}, want {want}");
        eprintln!("{name}: Degraded={status} {got}: {message}");
    }

    // The wrong password fixed in the Secret: the check runs again at once (other credentials)
    // and the platform is no longer Degraded.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let password = ByteString(b"right-password".to_vec());
    let fixed = json!({ "data": { "password": password } });
    secrets.patch("bad", &PatchParams::default(), &Patch::Merge(&fixed)).await?;
    eventually(WAIT, || async {
        let (status, reason, message) = degraded(&api, "badpassword").await?;
        ensure!(status == "False", "still Degraded after the fix: {reason}: {message}");
        Ok(())
    })
    .await?;
    Ok(())
}

/// The config hash on the PgBouncer pods and the database password the owned auth Secret hands
/// to PgBouncer and the migrations: what a credentials change rolls.
async fn deployed(client: &kube::Client, ns: &str, platform: &str) -> Result<(String, String)> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pgbouncer = deployments.get(&format!("{platform}-pgbouncer")).await?;
    let hash = pgbouncer
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        .context("PgBouncer pods without a config hash")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let auth = secrets.get(&format!("{platform}-pgbouncer-auth")).await?;
    let password = auth.data.and_then(|d| d.get("database-password").cloned()).context("no database-password")?;
    Ok((hash, String::from_utf8(password.0)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_the_database_refuses_is_held_back_and_a_working_one_rolls_pgbouncer() -> Result<()> {
    let pg = Postgres::start_with_password("first-password")?;
    let (_cluster, client, ns, _operator) = checking_operator("dbhold").await?;

    secret(&client, &ns, "creds", &[("username", USER), ("password", "first-password")]).await?;
    let mut rp = test_platform("rotate", "creds", json!({}))?;
    rp.spec.pgbouncer.database =
        serde_json::from_value(json!({ "host": "127.0.0.1", "port": pg.port(), "name": DATABASE }))?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &rp).await?;
    let healthy = |api: Api<RiskPlatform>| async move {
        eventually(WAIT, || async {
            let (status, reason, message) = degraded(&api, "rotate").await?;
            ensure!(status == "False", "Degraded: {reason}: {message}");
            Ok(())
        })
        .await
    };
    healthy(api.clone()).await?;
    let (first_hash, first_password) = deployed(&client, &ns, "rotate").await?;
    ensure!(first_password == "first-password", "the auth Secret holds another password");

    // A typo in the Secret: the database refuses it, so PgBouncer and the migrations keep the
    // password that works and the status says why.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let set_password = |password: &'static str| {
        let secrets = secrets.clone();
        async move {
            let patch = json!({ "data": { "password": ByteString(password.as_bytes().to_vec()) } });
            secrets.patch("creds", &PatchParams::default(), &Patch::Merge(&patch)).await
        }
    };
    set_password("typo-password").await?;
    let message = eventually(WAIT, || async {
        let (status, reason, message) = degraded(&api, "rotate").await?;
        ensure!(status == "True" && reason == "DatabaseAuthenticationFailed", "Degraded={status} {reason}: {message}");
        Ok(message)
    })
    .await?;
    ensure!(message.contains("keep the credentials they run with"), "{message}");
    ensure!(!message.contains("password\"") && !message.contains("typo-password"), "{message}");
    // A few more reconciles (the check runs every second) must not hand the typo out either.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = deployed(&client, &ns, "rotate").await?;
    ensure!(held == (first_hash.clone(), first_password), "the refused password was applied: {held:?}");

    // The rotation done in order: the database first, then the Secret. PgBouncer rolls onto it.
    let mut db =
        sqlx::PgConnection::connect(&format!("postgres://{USER}:first-password@127.0.0.1:{}/{DATABASE}", pg.port()))
            .await?;
    sqlx::query("ALTER USER risk PASSWORD 'second-password'").execute(&mut db).await?;
    set_password("second-password").await?;
    healthy(api.clone()).await?;
    let (second_hash, second_password) = deployed(&client, &ns, "rotate").await?;
    ensure!(second_password == "second-password", "the accepted password was not applied");
    ensure!(second_hash != first_hash, "PgBouncer's pods did not roll onto the new password");
    eprintln!("held a refused password, then rolled PgBouncer onto the accepted one");
    Ok(())
}
