//! The replay simulator: per-minute request traces through the project's policies and the HPA and
//! KEDA baselines, under one capacity model, side by side in one run.

pub mod engine;
pub mod model;
pub mod plot;
pub mod quantile;
pub mod scalers;
pub mod trace;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use crate::config::PolicyConfig;
use engine::Outcome;
use model::Model;
use quantile::QuantileScaler;
use scalers::{HpaScaler, PolicyScaler, Scaler};

/// The share of the hour the reference `quantile@` run serves: the preset's steady share.
const REFERENCE_QUANTILE: f64 = crate::config::ForecastSizing::PRESET.steady_share;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} line {line}: {message}")]
    BadRow { path: String, line: usize, message: String },
    #[error("empty window: {0}")]
    EmptyWindow(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Table,
}

/// `riskplatform-operator simulate`: replay a trace through every policy.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Per-minute request trace (CSV: a time key and `requests`).
    #[arg(long)]
    pub trace: PathBuf,
    /// Scale the selected rows so their busiest minute equals this many requests per second.
    #[arg(long, default_value_t = 6000.0)]
    pub peak_rps: f64,
    /// First data row to replay, counted from 0.
    #[arg(long, default_value_t = 0)]
    pub start_minute: usize,
    /// Number of rows to replay; all remaining rows when absent.
    #[arg(long)]
    pub minutes: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Draw load and replicas over time per policy into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// First minute of the replayed window the plot shows (e.g. one busy day of a long run, whose
    /// policies still had the whole past as history).
    #[arg(long, default_value_t = 0)]
    pub plot_start_minute: usize,
    /// Minutes the plot shows; the rest of the window when absent.
    #[arg(long)]
    pub plot_minutes: Option<usize>,
    /// Only these policies (comma separated names, e.g. `riskplatform,hpa@0.7`); `quantile@S` runs
    /// the quantile reference at any share S in (0, 1].
    #[arg(long, value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Forecast sizing settings of the `riskplatform` run that differ from the preset, as a JSON
    /// object of `ForecastSizing` fields (e.g. `{"error_quantile": 0.9}`): for sweeps.
    #[arg(long)]
    pub riskplatform_forecast: Option<String>,
    #[command(flatten)]
    pub model: Model,
}

/// The preset's forecast sizing with the fields of the JSON object `overrides` replaced.
fn forecast_with(overrides: &str) -> Result<crate::config::ForecastSizing, SimError> {
    let mut sizing = serde_json::to_value(crate::config::ForecastSizing::PRESET)?;
    let serde_json::Value::Object(changes) = serde_json::from_str(overrides)? else {
        return Err(SimError::InvalidArgument(format!(
            "--riskplatform-forecast must be a JSON object, got {overrides}"
        )));
    };
    for (field, value) in changes {
        match sizing.get_mut(&field) {
            Some(slot) => *slot = value,
            None => return Err(SimError::InvalidArgument(format!("--riskplatform-forecast: no field {field}"))),
        }
    }
    Ok(serde_json::from_value(sizing)?)
}

/// `config` with the API bounds of `model`, so every policy is held to the same fleet limits.
fn bounded(config: PolicyConfig, model: &Model) -> PolicyConfig {
    let api =
        crate::config::Bounds { min_replicas: model.min_replicas, max_replicas: model.max_replicas, ..config.api };
    PolicyConfig { api, ..config }
}

/// Every policy compared, in report order (the oracle, computed apart, comes first).
pub fn all_policies(model: &Model, riskplatform: PolicyConfig) -> Vec<Box<dyn Scaler>> {
    let (min, max) = (model.min_replicas, model.max_replicas);
    let mut out: Vec<Box<dyn Scaler>> = vec![
        Box::new(PolicyScaler::new("riskplatform", bounded(riskplatform, model))),
        Box::new(PolicyScaler::new("seed", bounded(PolicyConfig::seed_defaults(), model))),
    ];
    for target in [0.5, 0.6, 0.7, 0.8] {
        out.push(Box::new(HpaScaler::hpa(target, min, max)));
    }
    out.push(Box::new(HpaScaler::keda(0.7, min, max)));
    out.push(Box::new(QuantileScaler::new(REFERENCE_QUANTILE, model.slo_capacity_rps(), min, max)));
    out
}

#[derive(Serialize)]
struct Report<'a> {
    results: &'a [Outcome],
}

/// Runs the simulation described by `args` and writes the report to `out`.
pub fn run_simulate(args: &SimulateArgs, out: &mut dyn Write) -> Result<(), SimError> {
    if !(args.peak_rps.is_finite() && args.peak_rps > 0.0) {
        return Err(SimError::InvalidArgument(format!("--peak-rps must be a positive number, got {}", args.peak_rps)));
    }
    let text = std::fs::read_to_string(&args.trace)
        .map_err(|source| SimError::Read { path: args.trace.display().to_string(), source })?;
    args.model.validate().map_err(SimError::InvalidArgument)?;
    let rows = trace::parse(&text, &args.trace)?;
    let rps = trace::window(&rows, args.start_minute, args.minutes, args.peak_rps)?;
    let model = args.model;
    let mut riskplatform = PolicyConfig::riskplatform();
    if let Some(overrides) = &args.riskplatform_forecast {
        riskplatform.forecast = Some(forecast_with(overrides)?);
    }
    let mut policies = all_policies(&model, riskplatform.clone());
    for name in &args.policies {
        if let Some(share) = name.strip_prefix("quantile@").filter(|_| !policies.iter().any(|p| p.name() == *name)) {
            let share: f64 = share.parse().ok().filter(|s: &f64| *s > 0.0 && *s <= 1.0).ok_or_else(|| {
                SimError::InvalidArgument(format!("--policies {name}: the share after quantile@ must lie in (0, 1]"))
            })?;
            let (min, max) = (model.min_replicas, model.max_replicas);
            policies.push(Box::new(QuantileScaler::new(share, model.slo_capacity_rps(), min, max)));
        }
    }
    if !args.policies.is_empty() {
        policies.retain(|p| args.policies.contains(&p.name()));
        if policies.is_empty() {
            let known: Vec<String> = all_policies(&model, riskplatform).iter().map(|p| p.name()).collect();
            return Err(SimError::InvalidArgument(format!(
                "no such policy in {:?}; known: {}",
                args.policies,
                known.join(", ")
            )));
        }
    }
    let show_progress = std::io::stderr().is_terminal() && rps.len() > 10_000;
    let total = rps.len() * policies.len();
    let oracle = engine::oracle(&rps, &model);
    let mut results = vec![oracle.clone()];
    for (i, policy) in policies.iter_mut().enumerate() {
        let done_before = i * rps.len();
        let mut outcome = engine::simulate(policy.as_mut(), &rps, &model, |minute| {
            if show_progress && minute % 5000 == 0 {
                let pct = (done_before + minute) * 100 / total.max(1);
                eprint!("\r[{:<50}] {pct:>3}% {}", "#".repeat(pct / 2), policy_label(i));
            }
        });
        engine::compare_with_oracle(&mut outcome, &oracle);
        results.push(outcome);
    }
    if show_progress {
        eprintln!("\r[{}] 100%", "#".repeat(50));
    }
    if let Some(path) = &args.plot {
        let end = args.plot_minutes.map_or(rps.len(), |m| args.plot_start_minute.saturating_add(m).min(rps.len()));
        if args.plot_start_minute >= end {
            return Err(SimError::InvalidArgument(format!(
                "--plot-start-minute {} is past the window's {} minutes",
                args.plot_start_minute,
                rps.len()
            )));
        }
        let shown: Vec<Outcome> = results
            .iter()
            .map(|r| Outcome {
                replicas_per_row: r.replicas_per_row[args.plot_start_minute..end].to_vec(),
                ..r.clone()
            })
            .collect();
        std::fs::write(path, plot::svg(&rps[args.plot_start_minute..end], &shown, &model))
            .map_err(|source| SimError::Read { path: path.display().to_string(), source })?;
    }
    match args.output {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&Report { results: &results })?)?,
        OutputFormat::Table => write_table(out, &results)?,
    }
    Ok(())
}

fn policy_label(i: usize) -> String {
    format!("policy {}", i + 1)
}

fn write_table(out: &mut dyn Write, results: &[Outcome]) -> Result<(), SimError> {
    writeln!(
        out,
        "| policy | overload minutes | replica-hours | excess overload minutes | excess replica-hours % | scale events | flaps |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    for r in results {
        writeln!(
            out,
            "| {} | {:.2} | {:.1} | {:.2} | {:.1} | {} | {} |",
            r.policy,
            r.overload_minutes,
            r.replica_hours,
            r.excess_overload_minutes,
            r.excess_replica_hours_percent,
            r.scale_events,
            r.flaps
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(trace: PathBuf) -> SimulateArgs {
        SimulateArgs {
            trace,
            peak_rps: 3000.0,
            start_minute: 1,
            minutes: Some(600),
            output: OutputFormat::Json,
            plot: None,
            plot_start_minute: 0,
            plot_minutes: None,
            policies: Vec::new(),
            riskplatform_forecast: None,
            model: Model::default(),
        }
    }

    /// 700 minutes of a rate that climbs and drops in a saw-tooth.
    fn saw_trace() -> String {
        std::iter::once("minute_offset,requests\n".to_owned())
            .chain((0..700).map(|m| format!("{m},{}\n", 100 + (m * 37) % 900)))
            .collect()
    }

    fn trace_file(name: &str, body: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("riskplatform-sim-{}-{name}.csv", std::process::id()));
        std::fs::write(&path, body).ok();
        path
    }

    #[test]
    fn the_json_report_lists_every_policy_with_its_figures() {
        let path = trace_file("ok", &saw_trace());
        let mut out = Vec::new();
        run_simulate(&args(path.clone()), &mut out).expect("simulate");
        let report: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let names: Vec<&str> =
            report["results"].as_array().into_iter().flatten().filter_map(|r| r["policy"].as_str()).collect();
        assert_eq!(
            names,
            ["oracle", "riskplatform", "seed", "hpa@0.5", "hpa@0.6", "hpa@0.7", "hpa@0.8", "keda", "quantile@0.93"]
        );
        for r in report["results"].as_array().into_iter().flatten() {
            let fields = [
                "overload_minutes",
                "replica_hours",
                "scale_events",
                "flaps",
                "excess_replica_hours_percent",
                "excess_overload_minutes",
            ];
            for field in fields {
                assert!(r[field].is_number(), "{field} in {r}");
            }
        }
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn a_quantile_reference_runs_at_any_share_asked_for() {
        let path = trace_file("shares", &saw_trace());
        let mut asked = args(path.clone());
        asked.policies = vec!["quantile@0.5".to_owned(), "quantile@0.93".to_owned()];
        let mut out = Vec::new();
        run_simulate(&asked, &mut out).expect("simulate");
        let report: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let results = report["results"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = results.iter().filter_map(|r| r["policy"].as_str()).collect();
        assert_eq!(names, ["oracle", "quantile@0.93", "quantile@0.5"]);
        let hours = |i: usize| results[i]["replica_hours"].as_f64().unwrap_or(f64::NAN);
        assert!(hours(2) < hours(1), "serving half the hour's seconds takes fewer pods than 93 %");
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn bad_input_gives_a_clear_error() {
        let missing =
            run_simulate(&args(PathBuf::from("/nonexistent/trace.csv")), &mut Vec::new()).err().map(|e| e.to_string());
        assert!(missing.is_some_and(|m| m.starts_with("cannot read /nonexistent/trace.csv")));
        let path = trace_file("short", "minute_offset,requests\n0,1\n");
        let empty = run_simulate(&args(path.clone()), &mut Vec::new()).err().map(|e| e.to_string());
        assert!(empty.is_some_and(|m| m.contains("past the trace's 1 rows")));
        let mut unknown = args(path.clone());
        unknown.start_minute = 0;
        unknown.policies = vec!["nope".to_owned()];
        let err = run_simulate(&unknown, &mut Vec::new()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|m| m.contains("known: riskplatform, seed")));
        for bad in ["quantile@1.5", "quantile@x", "quantile@0"] {
            unknown.policies = vec![bad.to_owned()];
            let err = run_simulate(&unknown, &mut Vec::new()).err().map(|e| e.to_string());
            assert!(err.is_some_and(|m| m.contains(bad) && m.contains("(0, 1]")), "{bad}");
        }
        std::fs::remove_file(path).ok();
    }
}
