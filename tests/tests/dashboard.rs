//! The chart's Grafana dashboard and alerting rules against a real Prometheus: every query parses
//! and evaluates, and every series it names is one the platform really exports. Prometheus
//! scrapes the real API server (with traffic), a real worker, the operator's own metrics registry
//! (after one scaling action and one breaker transition, the events its counters count), and the
//! local cluster's kube-state-metrics over the Deployments and pods the operator builds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use riskplatform_operator::controller::build::{build, config_hash_of};
use riskplatform_operator::controller::validate::{Credentials, Validated};
use riskplatform_tests::api::ApiStack;
use riskplatform_tests::cluster::{eventually, test_platform};
use riskplatform_tests::http::{statement, ApiClient};
use riskplatform_tests::prometheus::{free_port, Prometheus, Target};
use serde_json::{json, Value};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/riskplatform-operator");
const NAMESPACE: &str = "prod";
const PLATFORM: &str = "risk";

/// Every PromQL expression of the dashboard (panels and template variables) and of the rules,
/// with the dashboard's variables given values as Grafana would.
fn queries() -> Result<Vec<String>> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{CHART}/dashboards/riskplatform.json"))?)?;
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().context("targets")? {
            out.push(target["expr"].as_str().context("expr")?.to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().context("templating")? {
        if let Some(q) = variable["query"]["query"].as_str() {
            // label_values(<selector>, <label>) asks for the series of the selector.
            let inner = q.strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')).map(|(s, _)| s);
            out.push(inner.with_context(|| format!("template query {q}"))?.to_owned());
        }
    }
    let rules = std::fs::read_to_string(format!("{CHART}/templates/prometheusrule.yaml"))?;
    out.extend(rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_owned));
    Ok(out
        .into_iter()
        .map(|q| q.replace("$__rate_interval", "1m").replace("$namespace", NAMESPACE).replace("$platform", PLATFORM))
        .collect())
}

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers,
/// ranges and grouping clauses that are neither functions nor keywords.
fn metric_names(query: &str) -> BTreeSet<String> {
    // Aggregations take their grouping clause before the parenthesis (`sum by (x) (...)`).
    const KEYWORDS: [&str; 18] = [
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "inf",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = query.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to =
        |from: usize, close: char| chars[from..].iter().position(|&c| c == close).map_or(chars.len(), |p| from + p + 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip_to(i + 1, '"');
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if GROUPING.contains(&word.as_str()) {
                if next == Some('(') {
                    i = skip_to(i, ')');
                }
            } else if next != Some('(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else if c.is_ascii_digit() {
            // A number (or a duration such as 5m): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_selectors_and_not_from_functions_labels_or_clauses() {
    let q = r#"histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{route=~"a|b"}[5m]))) / ignoring(x) group_left foo:bar > 0.8 and on(pod) max without (le) (up offset 5m)"#;
    let expected: BTreeSet<String> =
        ["http_request_duration_seconds_bucket", "foo:bar", "up"].map(str::to_owned).into_iter().collect();
    assert_eq!(metric_names(q), expected);
}

/// Serves a fixed exposition text at /metrics on a free loopback port.
async fn serve_text(text: String) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || async move { text.clone() }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// What kube-state-metrics reports for the API and worker Deployments the operator builds, with
/// the status a Deployment controller writes once their pods run, and a pod of each (as a
/// ReplicaSet makes them from the template).
fn kube_state_metrics() -> Result<String> {
    let mut rp = test_platform(PLATFORM, "db", json!({}))?;
    rp.metadata.namespace = Some(NAMESPACE.to_owned());
    rp.metadata.uid = Some("6f1c2d3e-0000-4000-8000-00000000000d".to_owned());
    let validated = Validated {
        credentials: Credentials {
            username: "risk".into(),
            password: "pw".into(),
            client_password: "c".repeat(64),
            stats_password: "s".repeat(64),
        },
        credentials_hash: config_hash_of(&[b"pw"]),
    };
    let children = build(&rp, &validated)?;
    let mut pods = Vec::new();
    for (d, pod) in [
        (&children.api_deployment, "risk-api-5d8f7c9b4-x2x7q"),
        (&children.worker_deployment, "risk-worker-6c9d8b7f5-q8w2e"),
    ] {
        let template = d.spec.as_ref().context("deployment spec")?.template.clone();
        let mut meta = template.metadata.unwrap_or_default();
        meta.name = Some(pod.to_owned());
        meta.namespace = Some(NAMESPACE.to_owned());
        meta.uid = Some(format!("uid-{pod}"));
        pods.push(Arc::new(Pod {
            metadata: meta,
            spec: Some(template.spec.unwrap_or_else(PodSpec::default)),
            status: None,
        }));
    }
    let deployments = [children.api_deployment, children.worker_deployment].map(|mut d| {
        // The operator leaves replicas to the autoscaler; the API server defaults an unset one to 1.
        let replicas = Some(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
        d.status = Some(DeploymentStatus {
            replicas,
            ready_replicas: replicas,
            available_replicas: replicas,
            updated_replicas: replicas,
            ..Default::default()
        });
        Arc::new(d)
    });
    Ok(riskplatform_localcluster::services::ksm::render(&pods, &deployments, &[]))
}

fn target(job: &str, address: String, pod: &str) -> Target {
    Target {
        job: job.to_owned(),
        address,
        labels: vec![("namespace".to_owned(), NAMESPACE.to_owned()), ("pod".to_owned(), pod.to_owned())],
    }
}

async fn prometheus_get(prometheus: &Prometheus, path: &str, query: &[(&str, &str)]) -> Result<(u16, Value)> {
    let resp = reqwest::Client::new().get(format!("{}{path}", prometheus.url)).query(query).send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_and_alert_query_parses_and_names_series_the_platform_exports() -> Result<()> {
    let stack = ApiStack::start()?;
    let server = stack.serve(&[]).await?;
    let c = ApiClient::new(&server.url, Some(&stack.create_tenant("dash")?));
    let worker_metrics = format!("127.0.0.1:{}", free_port()?);
    let _worker = stack.worker("dash-worker", &[("RISK_METRICS_ADDR", &worker_metrics)])?;

    let company =
        c.post("/api/v1/companies", json!({"symbol": "DASH", "name": "Dash Ltd", "sector": "retail"})).await?;
    let id = company.body["id"].as_str().with_context(|| format!("company: {}", company.text))?.to_owned();
    for _ in 0..3 {
        // The same input again: answered by the cache after the first.
        let p = c.post(&format!("/api/v1/companies/{id}/predictions"), json!({"statement": statement(7.0)})).await?;
        ensure!(p.status.is_success(), "prediction: {}", p.text);
    }
    c.get("/api/v1/companies").await?;

    let operator = riskplatform_operator::metrics::Metrics::default();
    operator.scaling.record(riskplatform_autoscale::Component::Api, "up", "cpu 91 % above 70 %");
    operator.breakers.transition("database", "open");
    let operator_address = serve_text(operator.encode()?).await?;
    let ksm_address = serve_text(kube_state_metrics()?).await?;

    let api_address = server.url.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&[
        target("risk-api", api_address, "risk-api-5d8f7c9b4-x2x7q"),
        target("risk-worker", worker_metrics, "risk-worker-6c9d8b7f5-q8w2e"),
        Target {
            job: "riskplatform-operator".to_owned(),
            address: operator_address,
            labels: vec![("namespace".to_owned(), "riskplatform-system".to_owned())],
        },
        Target { job: "kube-state-metrics".to_owned(), address: ksm_address, labels: vec![] },
    ])
    .await?;

    let queries = queries()?;
    ensure!(queries.len() >= 15, "the dashboard and rules hold {} queries", queries.len());
    let wanted: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    // cAdvisor's series come from the kubelet, not from a process of the platform; the operator's
    // default autoscaling queries already depend on them (see `autoscale/queries.rs`).
    let (from_kubelet, from_platform): (BTreeSet<String>, BTreeSet<String>) =
        wanted.into_iter().partition(|n| n.starts_with("container_"));
    for name in &from_kubelet {
        let used = [riskplatform_operator::autoscale::queries::CPU, riskplatform_operator::autoscale::queries::MEMORY];
        assert!(used.iter().any(|q| q.contains(name.as_str())), "{name} is neither exported nor already queried");
    }
    let known: BTreeSet<String> = eventually(Duration::from_secs(30), || async {
        let (_, body) = prometheus_get(&prometheus, "/api/v1/label/__name__/values", &[]).await?;
        let known: BTreeSet<String> =
            body["data"].as_array().context("names")?.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        let missing: Vec<&String> = from_platform.iter().filter(|n| !known.contains(*n)).collect();
        ensure!(missing.is_empty(), "not scraped (yet?): {missing:?}");
        Ok(known)
    })
    .await?;
    assert!(from_platform.is_subset(&known));

    for q in &queries {
        let (status, body) = prometheus_get(&prometheus, "/api/v1/query", &[("query", q)]).await?;
        assert_eq!((status, body["status"].as_str()), (200, Some("success")), "{q}: {body}");
    }
    Ok(())
}
