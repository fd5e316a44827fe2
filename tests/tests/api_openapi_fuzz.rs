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

/// One raw request: method, path template (as in the document), concrete path, content type, body.
struct Raw {
    method: &'static str,
    template: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn raw(
    method: &'static str,
    template: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: &[u8],
) -> Raw {
    Raw { method, template, path, content_type, body: body.to_vec() }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_input_is_answered_with_a_documented_status_in_the_one_json_error_shape() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let key = stack.create_tenant("bad-input-bank")?;
    let admin = ApiClient::new(&server.url, Some(&key));
    let company = admin.post("/api/v1/companies", json!({"symbol": "BAD", "name": "Bad Inc."})).await?;
    let id = company.body["id"].as_str().context("company id")?.to_owned();
    let doc: serde_json::Value =
        reqwest::get(format!("{}/api/v1/openapi.json", server.url)).await?.error_for_status()?.json().await?;

    let json = Some("application/json");
    let company_body = br#"{"symbol":"ACME","name":"Acme"}"#;
    let predictions = format!("/api/v1/companies/{id}/predictions");
    let with_assets = |value: &str| {
        let body = statement(1.0).to_string().replace("\"total_assets\":1000.0", &format!("\"total_assets\":{value}"));
        format!("{{\"statement\":{body}}}").into_bytes()
    };
    let header = "total_assets,total_liabilities,current_assets,current_liabilities,retained_earnings,ebit,net_income,previous_net_income,funds_from_operations,book_equity";
    // A batch of 1,000 statements is about 300 KB; this is over the 2 MiB a JSON body may be.
    let oversized = format!("{{\"statements\":[{}]}}", vec![statement(1.0).to_string(); 10_000].join(","));
    let cases: Vec<(Raw, u16, &str)> = vec![
        (raw("post", "/api/v1/companies", "/api/v1/companies".into(), None, company_body), 400, "no content type"),
        (
            raw("post", "/api/v1/companies", "/api/v1/companies".into(), Some("text/plain"), company_body),
            400,
            "wrong content type",
        ),
        (
            raw("post", "/api/v1/companies", "/api/v1/companies".into(), Some("multipart/form-data"), company_body),
            400,
            "multipart without a boundary",
        ),
        (raw("post", "/api/v1/companies", "/api/v1/companies".into(), json, b"{\"symbol\":"), 400, "JSON syntax"),
        (
            raw("post", "/api/v1/companies", "/api/v1/companies".into(), json, b"{\"symbol\":\"A\",\"name\":\"\xff\"}"),
            400,
            "non-UTF-8 JSON",
        ),
        (
            raw(
                "post",
                "/api/v1/companies",
                "/api/v1/companies".into(),
                json,
                br#"{"symbol":"NUL","name":"Ac\u0000me"}"#,
            ),
            422,
            "NUL in a name",
        ),
        (
            raw(
                "post",
                "/api/v1/companies",
                "/api/v1/companies".into(),
                json,
                br#"{"symbol":"S","name":"x","sector":"\u0007"}"#,
            ),
            422,
            "control character in a sector",
        ),
        (
            raw("post", "/api/v1/companies/{company_id}/predictions", predictions.clone(), json, &with_assets("1e400")),
            400,
            "a number beyond f64",
        ),
        (
            raw(
                "post",
                "/api/v1/companies/{company_id}/predictions",
                predictions.clone(),
                json,
                &with_assets("\"NaN\""),
            ),
            422,
            "NaN as a string",
        ),
        (
            raw(
                "post",
                "/api/v1/companies/{company_id}/predictions",
                predictions.clone(),
                json,
                &with_assets("1e-300"),
            ),
            422,
            "assets too small to divide by",
        ),
        (
            raw("post", "/api/v1/companies/{company_id}/predictions", predictions.clone(), json, &with_assets("1e300")),
            422,
            "assets beyond the bound",
        ),
        (
            raw("post", "/api/v1/predictions/batch", "/api/v1/predictions/batch".into(), json, oversized.as_bytes()),
            413,
            "a JSON body over the limit",
        ),
        (
            raw("get", "/api/v1/companies/{company_id}", "/api/v1/companies/not-a-uuid".into(), None, b""),
            400,
            "a path id that is not a UUID",
        ),
        (
            raw("get", "/api/v1/companies/{company_id}", "/api/v1/companies/%FF%FE".into(), None, b""),
            400,
            "a non-UTF-8 path",
        ),
        (
            raw("get", "/api/v1/companies", "/api/v1/companies?limit=99999999999999999999".into(), None, b""),
            400,
            "a limit beyond i64",
        ),
        (raw("get", "/api/v1/companies", "/api/v1/companies?limit=501".into(), None, b""), 422, "a limit out of range"),
        (raw("get", "/api/v1/companies", "/api/v1/companies?offset=-1".into(), None, b""), 422, "a negative offset"),
        (
            raw("get", "/api/v1/companies", "/api/v1/companies?typo=1".into(), None, b""),
            400,
            "an unknown query parameter",
        ),
        (
            raw("get", "/api/v1/companies", "/api/v1/companies?symbol=%00".into(), None, b""),
            422,
            "NUL in the symbol search",
        ),
        (
            raw(
                "get",
                "/api/v1/companies/{company_id}/predictions",
                format!("{predictions}?from=yesterday"),
                None,
                b"",
            ),
            400,
            "a time that is not RFC 3339",
        ),
        (
            raw("post", "/api/v1/jobs", "/api/v1/jobs".into(), Some("text/csv"), b"\xff\xfe\x00"),
            422,
            "a non-UTF-8 upload",
        ),
        (
            raw(
                "post",
                "/api/v1/jobs",
                "/api/v1/jobs".into(),
                Some("text/csv"),
                format!("reference,{header}\nA\0B,1,1,1,1,1,1,1,1,1,1\n").as_bytes(),
            ),
            422,
            "NUL in a CSV reference",
        ),
        (
            raw(
                "post",
                "/api/v1/jobs",
                "/api/v1/jobs?priority=urgent".into(),
                Some("text/csv"),
                format!("{header}\n1,1,1,1,1,1,1,1,1,1\n").as_bytes(),
            ),
            422,
            "an unknown priority",
        ),
    ];
    let http = reqwest::Client::new();
    for (request, want, what) in cases {
        let method = reqwest::Method::from_bytes(request.method.to_uppercase().as_bytes())?;
        let mut builder =
            http.request(method, format!("{}{}", server.url, request.path)).bearer_auth(&key).body(request.body);
        if let Some(content_type) = request.content_type {
            builder = builder.header("content-type", content_type);
        }
        let response = builder.send().await?;
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let reply = ApiClient::reply(response).await?;
        assert_eq!(reply.status.as_u16(), want, "{what}: {}", reply.text);
        assert_eq!(content_type, "application/json", "{what}: {}", reply.text);
        assert!(
            reply.body["error"]["code"].is_string() && reply.body["error"]["message"].is_string(),
            "{what}: not the error shape: {}",
            reply.text
        );
        let documented = &doc["paths"][request.template][request.method]["responses"][want.to_string()];
        assert!(documented.is_object(), "{what}: {want} is not documented for {} {}", request.method, request.template);
    }
    Ok(())
}
