//! schemathesis against the prediction API's own OpenAPI document: over every operation, with an
//! admin key, no server error, no status the document does not list, no content type or body that
//! differs from the documented one. The API runs on real PostgreSQL (through PgBouncer), Redis.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::{statement, ApiClient};
use serde_json::json;

const INSTALL_HINT: &str = "schemathesis is not installed: run `bash scripts/install-deps.sh` (or \
    `python3 -m pip install schemathesis==4.32.5`, the version it pins)";

/// Fixed so a run is reproducible; the example count bounds the run to about a minute.
const SEED: &str = "20261201";
const EXAMPLES_PER_OPERATION: &str = "40";

/// schemathesis' CLI (`st`) run as a module of python3, so that no PATH shim is needed.
fn st() -> Command {
    let mut command = Command::new("python3");
    command.args(["-m", "schemathesis.cli"]);
    command
}

fn schemathesis_version() -> Result<String> {
    let out = st().arg("--version").output().context(INSTALL_HINT)?;
    if !out.status.success() {
        bail!(
            "{INSTALL_HINT} (`python3 -m schemathesis.cli --version` failed: {})",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn schemathesis(document: &str, key: &str, work_dir: &Path) -> Result<std::process::Output> {
    // Its crash cache goes to the working directory: the temporary one, not the repository.
    let output = st()
        .current_dir(work_dir)
        .args(["--no-color", "run", document])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--seed", SEED, "--max-examples", EXAMPLES_PER_OPERATION, "--workers", "1"])
        .args(["--generation-database", "none", "--request-timeout", "10"])
        .output()
        .context(INSTALL_HINT)?;
    Ok(output)
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_undocumented_status_or_schema_violation_on_any_operation() -> Result<()> {
    let version = schemathesis_version()?;
    let stack = ApiStack::start()?;
    // The fuzzer sends thousands of requests for one tenant: the limiter must not make 429 the
    // only answer (429 itself is documented and covered by the endpoint tests).
    let server = stack.serve(&["--rate-limit-per-second=100000", "--rate-limit-burst=100000"]).await?;
    let key = stack.create_tenant("fuzz-bank")?;

    // Real objects next to the generated ones, so listings and histories have content to check.
    let admin = ApiClient::new(&server.url, Some(&key));
    let company = admin.post("/api/v1/companies", json!({"symbol": "FUZZ", "name": "Fuzz Inc."})).await?;
    let id = company.body["id"].as_str().context("company id")?.to_owned();
    let mut body = statement(120.0);
    body["period"] = json!("2024");
    admin.post(&format!("/api/v1/companies/{id}/statements"), body).await?;
    admin.post(&format!("/api/v1/companies/{id}/predictions"), json!({"statement": statement(80.0)})).await?;

    let work_dir = tempfile::tempdir()?;
    let document = format!("{}/api/v1/openapi.json", server.url);
    let dir = work_dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || schemathesis(&document, &key, &dir)).await??;
    let report = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{version} found problems (exit {:?}):\n{report}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A run that tested nothing would also exit 0.
    assert!(report.contains("passed"), "no operation was tested:\n{report}");
    println!("{version}:\n{report}");
    Ok(())
}
