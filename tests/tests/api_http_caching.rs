//! HTTP caching and compression of the prediction API over its real router and stack: gzip and
//! brotli above the threshold when accepted (and decoding to the same JSON), a weak ETag on GET
//! answers, 304 on a matching If-None-Match, and a new tag once the resource changed.

use std::io::Read as _;

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::http::ApiClient;
use serde_json::{json, Value};

struct Raw {
    status: StatusCode,
    encoding: Option<String>,
    etag: Option<String>,
    body: Vec<u8>,
}

async fn get(base: &str, key: &str, path: &str, headers: &[(&str, &str)]) -> Result<Raw> {
    let mut req = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(key);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await?;
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, encoding, etag) = (resp.status(), header("content-encoding"), header("etag"));
    Ok(Raw { status, encoding, etag, body: resp.bytes().await?.to_vec() })
}

fn gunzip(body: &[u8]) -> Result<Value> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(serde_json::from_slice(&out)?)
}

fn unbrotli(body: &[u8]) -> Result<Value> {
    let mut out = Vec::new();
    brotli_decompressor::Decompressor::new(body, 4096).read_to_end(&mut out)?;
    Ok(serde_json::from_slice(&out)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_compressed_when_accepted_and_validated_with_etags() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let key = stack.create_tenant("caching")?;
    let c = ApiClient::new(&server.url, Some(&key));
    let mut first = String::new();
    for i in 0..20 {
        let r = c
            .post("/api/v1/companies", json!({"symbol": format!("CO{i}"), "name": format!("Company {i} plc")}))
            .await?;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        if i == 0 {
            first = r.body["id"].as_str().context("id")?.to_owned();
        }
    }
    let list = "/api/v1/companies";

    // Above the threshold: compressed as the client prefers, decoding to the plain answer.
    let plain = get(&server.url, &key, list, &[]).await?;
    assert_eq!((plain.status, plain.encoding.as_deref()), (StatusCode::OK, None));
    assert!(plain.body.len() > 512, "the list is above the threshold: {} bytes", plain.body.len());
    let plain_json: Value = serde_json::from_slice(&plain.body)?;
    let gz = get(&server.url, &key, list, &[("accept-encoding", "gzip")]).await?;
    assert_eq!(gz.encoding.as_deref(), Some("gzip"));
    assert!(gz.body.len() < plain.body.len());
    assert_eq!(gunzip(&gz.body)?, plain_json);
    let br = get(&server.url, &key, list, &[("accept-encoding", "br;q=1.0, gzip;q=0.5")]).await?;
    assert_eq!(br.encoding.as_deref(), Some("br"));
    assert_eq!(unbrotli(&br.body)?, plain_json);

    // Below the threshold: sent as is even to a client that accepts gzip.
    let one = get(&server.url, &key, &format!("{list}/{first}"), &[("accept-encoding", "gzip")]).await?;
    assert!(one.body.len() < 512, "{} bytes", one.body.len());
    assert_eq!((one.status, one.encoding.as_deref()), (StatusCode::OK, None));

    // ETag: the same for every encoding, 304 when the client has it, new once the list changed.
    let tag = plain.etag.context("a GET answer carries an ETag")?;
    assert!(tag.starts_with("W/\""), "{tag}");
    assert_eq!(gz.etag.as_deref(), Some(tag.as_str()));
    let again = get(&server.url, &key, list, &[("if-none-match", &tag)]).await?;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.etag.as_deref(), Some(tag.as_str()));
    let renamed = c.patch(&format!("{list}/{first}"), json!({"name": "Renamed plc"})).await?;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    let changed = get(&server.url, &key, list, &[("if-none-match", &tag)]).await?;
    assert_eq!(changed.status, StatusCode::OK, "a changed list is sent again");
    assert_ne!(changed.etag.as_deref(), Some(tag.as_str()));

    // The document says so, for every GET of the API.
    let doc = c.get("/api/v1/openapi.json").await?.body;
    assert!(doc["paths"]["/api/v1/companies"]["get"]["responses"]["304"].is_object(), "304 documented");

    // A streamed answer (a job's results) is compressed as it streams, and arrives whole.
    let job = c.upload(riskplatform_tests::http::bulk_csv(300, None), "").await?;
    let job_id = job.body["id"].as_str().context("job id")?.to_owned();
    let _worker = stack.worker("caching-worker", &[])?;
    c.wait_finished(&job_id, std::time::Duration::from_secs(60)).await?;
    let results = format!("/api/v1/jobs/{job_id}/results");
    let plain_csv = get(&server.url, &key, &results, &[]).await?;
    let gz_csv = get(&server.url, &key, &results, &[("accept-encoding", "gzip")]).await?;
    assert_eq!((gz_csv.status, gz_csv.encoding.as_deref()), (StatusCode::OK, Some("gzip")));
    let mut csv = Vec::new();
    flate2::read::GzDecoder::new(gz_csv.body.as_slice()).read_to_end(&mut csv)?;
    assert_eq!(csv, plain_csv.body);
    assert_eq!(plain_csv.etag, None, "a streamed answer is not held back to be tagged");

    // Errors and writes carry no validator.
    let missing = get(&server.url, &key, &format!("{list}/00000000-0000-0000-0000-000000000000"), &[]).await?;
    assert_eq!((missing.status, missing.etag), (StatusCode::NOT_FOUND, None));
    Ok(())
}
