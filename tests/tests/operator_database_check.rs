//! The operator's database check against a real PostgreSQL that requires a password: a platform
//! whose database host does not resolve, refuses connections, rejects the credentials or lacks
//! the database shows Degraded with that reason, and a fixed Secret clears it.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use riskplatform_crd::{condition, RiskPlatform};
use riskplatform_tests::cluster::{eventually, install_crd, namespace, secret, test_platform, TestCluster};
use riskplatform_tests::operator::RunningOperator;
use riskplatform_tests::postgres::{Postgres, DATABASE, USER};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The Degraded condition as (status, reason, message), once it has one.
async fn degraded(api: &Api<RiskPlatform>, name: &str) -> Result<(String, String, String)> {
    let rp = api.get(name).await?;
    let c = rp.status.as_ref().and_then(|s| s.condition(condition::DEGRADED)).cloned().context("no Degraded yet")?;
    Ok((c.status, c.reason, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_used_is_shown_as_degraded_with_the_reason_until_it_can() -> Result<()> {
    let pg = Postgres::start_with_password("right-password")?;
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "dbcheck").await?;
    let mut config = RunningOperator::config(&ns);
    config.database_check_seconds = 1;
    let _operator = RunningOperator::start_with(client.clone(), config);

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
