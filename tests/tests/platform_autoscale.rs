//! Live autoscaling on the local cluster (scenario 6 of the end-to-end issue): API pods with a
//! small CPU limit, so one pod's capacity is measured, a window of a shared trace replayed
//! open-loop and time-compressed at the API's Service, the operator scaling the real Deployment
//! from the real Prometheus; then `simulate` over the same window with the measured capacity and
//! start-up delay, and the two compared. Prints its figures (`figure:` lines) and writes the SVG
//! and the per-second CSV to `target/live-autoscaling/`.
//!
//! The CI run replays 40 trace rows (10 minutes); a longer window is the benchmark command:
//! `RISK_LIVE_TRACE_START=97741 RISK_LIVE_TRACE_ROWS=250 cargo test -p riskplatform-tests --test
//! platform_autoscale -- --nocapture` (the evening of the semi-final of 1998-07-07, about an hour;
//! `cargo test` has no time limit, where nextest's profile stops this test after 20 minutes).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use reqwest::StatusCode;
use riskplatform_autoscale::sim::engine::{self, Outcome};
use riskplatform_autoscale::sim::model::Model;
use riskplatform_autoscale::sim::scalers::{HpaScaler, PolicyScaler, Scaler};
use riskplatform_autoscale::{Bounds, PolicyConfig};
use riskplatform_tests::http::{statement, ApiClient};
use riskplatform_tests::liverun::{self, Figures, Schedule, Second};
use riskplatform_tests::load::{self, Spec};
use riskplatform_tests::platform::{LivePlatform, NAMESPACE, PLATFORM};
use serde_json::{json, Value};

/// Seconds each trace row lasts: a trace minute every 15 s, four times compressed.
const ROW_SECONDS: i64 = 15;
/// WorldCup rows of the CI run: the first 40 minutes of the climb before the semi-final of
/// 1998-07-07, from a quarter of its peak (replayed in 10 minutes).
const CI_START: usize = 97741;
const CI_ROWS: usize = 40;
/// The window's busiest row, in pods' worth of load at 100 % CPU.
const PEAK_PODS: f64 = 2.6;
const MIN_REPLICAS: i32 = 1;
const MAX_REPLICAS: i32 = 4;
/// One API pod's CPU (request = limit, so the CPU signal's 100 % is the pod's capacity).
const API_CPU: &str = "100m";
/// Distinct predictions in the replayed mix: after the warm-up all are cache hits, so a request's
/// cost is the API pod's own CPU (HTTP, authentication, the cache), which its limit bounds.
const STATEMENTS: usize = 16;
const SLO_P95_MS: f64 = 300.0;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The spec of the run: the riskplatform preset (demand and forecast sizing, 15 s / 300 s
/// cooldowns) within 1..=4 API pods, one worker, and autoscaling paused until the replay starts.
fn spec() -> Value {
    let resources =
        json!({ "requests": { "cpu": API_CPU, "memory": "256Mi" }, "limits": { "cpu": API_CPU, "memory": "512Mi" } });
    json!({
        "api": { "resources": resources },
        "autoscaling": {
            "api": { "minReplicas": MIN_REPLICAS, "maxReplicas": MAX_REPLICAS, "scaleUpCooldownSeconds": 15,
                     "scaleDownCooldownSeconds": 300, "paused": true },
            "workers": { "minReplicas": 1, "maxReplicas": 1 },
            "demand": {},
            "forecast": {}
        }
    })
}

/// What `simulate`'s `riskplatform` policy runs with under `model`.
fn simulated_config(model: &Model) -> PolicyConfig {
    let preset = PolicyConfig::riskplatform();
    let api = Bounds { min_replicas: model.min_replicas, max_replicas: model.max_replicas, ..preset.api };
    PolicyConfig { api, ..preset }
}

struct Mix {
    api: ApiClient,
    targets: Vec<(String, Value)>,
}

impl Mix {
    async fn new(api: ApiClient) -> Result<Self> {
        let mut targets = Vec::new();
        for c in 0..4 {
            let symbol = format!("LIVE{c}");
            let r =
                api.post("/api/v1/companies", json!({ "symbol": symbol, "name": format!("{symbol} Inc.") })).await?;
            ensure!(r.status == StatusCode::CREATED, "create company {symbol}: {} {}", r.status, r.text);
            let id = r.body["id"].as_str().context("company id")?.to_owned();
            for s in 0..STATEMENTS / 4 {
                let body = json!({ "statement": statement(40.0 + (c * 10 + s) as f64) });
                let path = format!("/api/v1/companies/{id}/predictions");
                let r = api.post(&path, body.clone()).await?;
                ensure!(r.status.is_success(), "warm-up prediction: {} {}", r.status, r.text);
                targets.push((format!("{}{path}", api.base), body));
            }
        }
        Ok(Self { api, targets })
    }

    fn request(&self) -> impl Fn(u64) -> Spec + Send + Sync + 'static {
        let (targets, key) = (self.targets.clone(), self.api.key.clone());
        move |n| {
            let (url, body) = &targets[n as usize % targets.len()];
            Spec { method: reqwest::Method::POST, url: url.clone(), key: key.clone(), body: Some(body.to_string()) }
        }
    }
}

/// The API pod's CPU percent of its request over a minute without load: probes, scrapes and
/// background tasks, which the simulator's CPU signal then adds to the load's share.
async fn idle_cpu_percent(live: &LivePlatform) -> Result<f64> {
    tokio::time::sleep(Duration::from_secs(65)).await;
    let pods = format!(r#"namespace="{NAMESPACE}",pod=~"{PLATFORM}-api-[a-z0-9]+-[a-z0-9]+""#);
    let query = format!(
        r#"100 * sum(rate(container_cpu_usage_seconds_total{{{pods},container!="",container!="POD"}}[1m])) / sum(kube_pod_container_resource_requests{{{pods},resource="cpu"}})"#
    );
    let result = riskplatform_tests::prometheus::instant_query(&live.prometheus, &query).await?;
    let idle = result.first().map(|(_, v)| *v).context("no idle CPU sample")?;
    eprintln!("figure: live autoscaling: one idle {API_CPU} API pod uses {idle:.1} % of its CPU");
    ensure!((0.0..100.0).contains(&idle), "idle CPU {idle} % is not a percentage below 100");
    Ok(idle)
}

/// One Ready pod's requests per second at 100 % CPU: what it answers when saturated by a closed
/// loop (autoscaling is paused, so it stays one pod).
async fn calibrate(mix: &Mix) -> Result<f64> {
    load::closed_loop(8, Duration::from_secs(5), mix.request()).await;
    let report = load::closed_loop(8, Duration::from_secs(20), mix.request()).await;
    let ok: u64 = report.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
    let capacity = ok as f64 / report.elapsed.as_secs_f64();
    eprintln!(
        "figure: live autoscaling: one {API_CPU} API pod saturated by 8 connections answers {capacity:.1} req/s (p50 {:.0} ms, p99 {:.0} ms, statuses {:?}, {} without an answer)",
        report.percentile_ms(0.5),
        report.percentile_ms(0.99),
        report.statuses,
        report.failed
    );
    ensure!(capacity > 1.0, "one API pod answered only {capacity:.2} req/s: {report:?}");
    Ok(capacity)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn patch_paused(live: &LivePlatform, paused: bool) -> Result<()> {
    let patch = json!({ "spec": { "autoscaling": { "api": { "paused": paused } } } });
    live.kubectl(
        &["-n", NAMESPACE, "patch", "riskplatform", PLATFORM, "--type", "merge", "-p", &patch.to_string()],
        None,
    )?;
    Ok(())
}

fn write_outputs(timeline: &[Second], model: &Model, simulated: &Outcome) -> Result<PathBuf> {
    let dir = repo("target/live-autoscaling");
    std::fs::create_dir_all(&dir)?;
    let svg = liverun::plot::svg(
        timeline,
        model.slo_capacity_rps(),
        model.slo_p95_ms,
        &simulated.replicas_per_row,
        ROW_SECONDS,
    );
    std::fs::write(dir.join("live-autoscaling.svg"), svg)?;
    let mut csv = String::from("second,offered,failed,p95_ms,p99_ms,replicas,ready\n");
    for s in timeline {
        csv.push_str(&format!(
            "{},{},{},{:.1},{:.1},{},{}\n",
            s.second, s.offered, s.failed, s.p95_ms, s.p99_ms, s.replicas, s.ready
        ));
    }
    std::fs::write(dir.join("live-autoscaling.csv"), csv)?;
    Ok(dir)
}

fn report(live: &Figures, model: &Model, outcomes: &[Outcome]) {
    eprintln!("figure: live autoscaling: | run | overload seconds | replica-seconds | peak replicas |");
    eprintln!(
        "figure: live autoscaling: | live (p95 > {} ms or > 5 % failed) | {} | {:.0} | {} |",
        model.slo_p95_ms, live.overload_seconds, live.replica_seconds, live.peak_replicas
    );
    eprintln!(
        "figure: live autoscaling: | live fleet under the model (load > Ready pods x {:.1} req/s) | {} | {:.0} | |",
        model.slo_capacity_rps(),
        live.model_overload_seconds,
        live.replica_seconds
    );
    for o in outcomes {
        let peak = o.replicas_per_row.iter().max().copied().unwrap_or(0);
        eprintln!(
            "figure: live autoscaling: | simulate {} | {:.0} | {:.0} | {peak} |",
            o.policy,
            o.overload_minutes * 60.0,
            o.replica_hours * 3600.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_scales_the_api_from_prometheus_under_a_replayed_trace_and_simulate_is_compared() -> Result<()> {
    let live = LivePlatform::install(json!({ "replicaCount": 1, "autoscaleIntervalSeconds": 15 })).await?;
    live.apply_example(spec()).await?;
    live.wait_ready(Duration::from_secs(300)).await?;
    let result = run(&live).await;
    if let Err(e) = result {
        let status = live.platforms().get(PLATFORM).await.ok().and_then(|rp| rp.status);
        panic!("{e:#}\nplatform status: {}", serde_json::to_string(&status).unwrap_or_default());
    }
    Ok(())
}

async fn run(live: &LivePlatform) -> Result<()> {
    let key = live.create_tenant(Duration::from_secs(120)).await?;
    let mix = Mix::new(live.api(Some(&key)).await?).await?;
    let idle = idle_cpu_percent(live).await?;
    let capacity = calibrate(&mix).await?;
    let trace = std::env::var("RISK_LIVE_TRACE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo("../shared/traces/worldcup98-per-minute.csv"));
    let (start, rows) = (env_or("RISK_LIVE_TRACE_START", CI_START), env_or("RISK_LIVE_TRACE_ROWS", CI_ROWS));
    let peak = PEAK_PODS * capacity;
    let schedule = Schedule::from_trace(&trace, start, rows, peak, ROW_SECONDS)?;
    let times = schedule.send_times();
    eprintln!(
        "figure: live autoscaling: replaying {} rows {start}..{} at a row per {ROW_SECONDS} s ({} s, {} requests, peak {peak:.0} req/s)",
        trace.display(),
        start + rows,
        schedule.seconds(),
        times.len()
    );

    let deployments: Api<Deployment> = Api::namespaced(live.client.clone(), NAMESPACE);
    let stop = Arc::new(AtomicBool::new(false));
    let fleet = tokio::spawn(liverun::sample_fleet(
        deployments,
        format!("{PLATFORM}-api"),
        Duration::from_secs(1),
        stop.clone(),
    ));
    patch_paused(live, false)?;
    let began = unix_now();
    let sent = load::open_loop_at(&times, mix.request()).await;
    stop.store(true, Ordering::Relaxed);
    let fleet = fleet.await?;

    let timeline = liverun::timeline(&sent, &fleet, usize::try_from(schedule.seconds()).unwrap_or(0));
    let start_up = liverun::median(&liverun::figures(&timeline, &fleet, &Model::default()).startup_seconds);
    let bins = liverun::latency_by_utilisation(&timeline, capacity, SLO_P95_MS);
    for (upper, seconds, within) in bins.iter().filter(|b| b.1 > 0) {
        eprintln!(
            "figure: live autoscaling: load per Ready pod up to {:.0} % of its capacity: p95 within {SLO_P95_MS} ms in {within} of {seconds} seconds",
            upper * 100.0
        );
    }
    let slo_utilisation = liverun::measured_slo_utilisation(&bins, 10);
    let model = Model {
        pod_capacity_rps: capacity,
        startup_seconds: start_up.map_or(0, |s| s.round() as i64),
        min_replicas: MIN_REPLICAS,
        max_replicas: MAX_REPLICAS,
        slo_p95_ms: SLO_P95_MS,
        row_seconds: ROW_SECONDS,
        // What the operator's default queries average over: rate(...[1m]) and CPU over [2m].
        rate_window_seconds: 60,
        cpu_window_seconds: 120,
        idle_cpu_percent: idle,
        slo_utilisation,
    };
    let figures = liverun::figures(&timeline, &fleet, &model);
    eprintln!(
        "figure: live autoscaling: {} requests, {} failed; start-up delays {:?} s (median {start_up:?}); model: {model:?}",
        figures.requests, figures.failed, figures.startup_seconds
    );

    // The live platform runs exactly the simulator's riskplatform policy.
    let rp = live.platforms().get(PLATFORM).await?;
    let history = rp.status.as_ref().and_then(|s| s.autoscaling.as_ref()).map(|a| a.api.history.clone());
    for d in history.unwrap_or_default() {
        eprintln!(
            "figure: live autoscaling: decision at +{} s: {:?} {} -> {} ({} ready): {}",
            d.at - began,
            d.action,
            d.current_replicas,
            d.desired_replicas,
            d.ready_replicas,
            d.reason
        );
    }
    let live_config = riskplatform_operator::autoscale::policy_config(&rp.spec);
    let config = simulated_config(&model);
    ensure!(
        (live_config.api.min_replicas, live_config.api.max_replicas, live_config.demand, live_config.forecast)
            == (config.api.min_replicas, config.api.max_replicas, config.demand, config.forecast)
            && (live_config.api.scale_up_cooldown_seconds, live_config.api.scale_down_cooldown_seconds)
                == (config.api.scale_up_cooldown_seconds, config.api.scale_down_cooldown_seconds)
            && (live_config.cpu, live_config.memory, live_config.request_rate)
                == (config.cpu, config.memory, config.request_rate),
        "the live spec's policy differs from simulate's: {live_config:?} against {config:?}"
    );
    // The model as it was before the live run: each tick's own load and CPU, no idle CPU, and the
    // SLO at 80 % of a pod from the latency curve.
    let instant =
        Model { rate_window_seconds: 0, cpu_window_seconds: 0, idle_cpu_percent: 0.0, slo_utilisation: None, ..model };
    let mut outcomes = vec![engine::oracle(&schedule.rates, &model)];
    let runs: [(&str, Box<dyn Scaler>, &Model); 3] = [
        ("riskplatform", Box::new(PolicyScaler::new("riskplatform", config.clone())), &model),
        ("riskplatform, the model before this run", Box::new(PolicyScaler::new("riskplatform", config)), &instant),
        ("hpa@0.7", Box::new(HpaScaler::hpa(0.7, MIN_REPLICAS, MAX_REPLICAS)), &model),
    ];
    for (name, mut scaler, model) in runs {
        let outcome = engine::simulate(scaler.as_mut(), &schedule.rates, model, |_| {});
        outcomes.push(Outcome { policy: name.to_owned(), ..outcome });
    }
    report(&figures, &model, &outcomes);
    eprintln!(
        "figure: live autoscaling: the same in simulate: simulate --trace {} --start-minute {start} --minutes {rows} --peak-rps {peak:.1} --pod-capacity-rps {:.1} --startup-seconds {} --min-replicas {MIN_REPLICAS} --max-replicas {MAX_REPLICAS} --row-seconds {ROW_SECONDS} --rate-window-seconds 60 --cpu-window-seconds 120 --idle-cpu-percent {:.1}{} --policies riskplatform,hpa@0.7",
        trace.display(),
        model.pod_capacity_rps,
        model.startup_seconds,
        model.idle_cpu_percent,
        model.slo_utilisation.map(|u| format!(" --slo-utilisation {u:.1}")).unwrap_or_default()
    );
    let dir = write_outputs(&timeline, &model, &outcomes[1])?;
    let _ = std::fs::remove_dir_all(dir.join("logs"));
    let logs = live.cluster.save_logs(&dir.join("logs"))?;
    eprintln!("figure: live autoscaling: plot, per-second CSV and {logs} logs in {}", dir.display());

    ensure!(
        fleet.iter().all(|s| (MIN_REPLICAS..=MAX_REPLICAS).contains(&s.replicas)),
        "replicas left the bounds {MIN_REPLICAS}..={MAX_REPLICAS}: {fleet:?}"
    );
    ensure!(
        figures.peak_replicas >= 2,
        "a load of {PEAK_PODS} pods' worth never made the operator scale the API past one pod"
    );
    ensure!(!figures.startup_seconds.is_empty(), "no scale-up was followed by as many Ready pods: {fleet:?}");
    Ok(())
}
