//! A plain SVG of load and replicas over time, one panel per policy.

use std::fmt::Write;

use super::engine::Outcome;
use super::model::Model;

const WIDTH: f64 = 1200.0;
const PANEL: f64 = 140.0;
/// At most this many points per line keeps the file small on month-long traces.
const MAX_POINTS: usize = 2000;

fn polyline(values: &[f64], top: f64, scale: f64, color: &str) -> String {
    let step = values.len().div_ceil(MAX_POINTS).max(1);
    let n = values.len().max(1) as f64;
    let mut points = String::new();
    for (i, chunk) in values.chunks(step).enumerate() {
        let v = chunk.iter().copied().fold(f64::MIN, f64::max);
        let x = (i * step) as f64 / n * WIDTH;
        let y = top + PANEL - (v * scale).min(PANEL);
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    format!(r#"<polyline fill="none" stroke="{color}" stroke-width="1" points="{points}"/>"#)
}

/// Load (as pods needed at full CPU, grey) and replicas (blue) per policy.
pub fn svg(rps: &[f64], results: &[Outcome], model: &Model) -> String {
    let height = PANEL * results.len() as f64 + 20.0;
    let needed: Vec<f64> = rps.iter().map(|r| r / model.pod_capacity_rps).collect();
    let peak = results
        .iter()
        .flat_map(|r| r.replicas_per_row.iter().map(|v| f64::from(*v)))
        .chain(needed.iter().copied())
        .fold(1.0_f64, f64::max);
    let scale = (PANEL - 20.0) / peak;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    for (i, r) in results.iter().enumerate() {
        let top = i as f64 * PANEL + 10.0;
        let replicas: Vec<f64> = r.replicas_per_row.iter().map(|v| f64::from(*v)).collect();
        let _ = write!(
            out,
            r#"<text x="4" y="{:.0}">{} (grey: load in pods at 100 % CPU, blue: replicas)</text>"#,
            top + 12.0,
            r.policy
        );
        out.push_str(&polyline(&needed, top, scale, "#999"));
        out.push_str(&polyline(&replicas, top, scale, "#1f5fbf"));
    }
    out.push_str("</svg>\n");
    out
}
