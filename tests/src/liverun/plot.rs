//! An SVG of a live autoscaling run over time: load against the Ready pods' capacity, replicas
//! (live and simulated), and p99 latency against the SLO with the overloaded seconds marked.

use std::fmt::Write;

use super::Second;

const WIDTH: f64 = 1200.0;
const PANEL: f64 = 160.0;
const LEFT: f64 = 50.0;

struct Panel {
    top: f64,
    peak: f64,
    seconds: usize,
}

impl Panel {
    fn x(&self, second: f64) -> f64 {
        LEFT + second / self.seconds.max(1) as f64 * (WIDTH - LEFT - 10.0)
    }

    fn y(&self, value: f64) -> f64 {
        let v = if value.is_finite() { value } else { self.peak };
        self.top + PANEL - 20.0 - (v / self.peak.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) * (PANEL - 40.0)
    }

    fn line(&self, points: impl Iterator<Item = (f64, f64)>, color: &str, dashed: bool) -> String {
        let mut p = String::new();
        for (x, v) in points {
            let _ = write!(p, "{:.1},{:.1} ", self.x(x), self.y(v));
        }
        let dash = if dashed { r#" stroke-dasharray="6 3""# } else { "" };
        format!(r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{p}"/>"#)
    }

    fn frame(&self, title: &str) -> String {
        format!(
            r##"<text x="{LEFT}" y="{:.0}">{title}</text><text x="4" y="{:.0}">{:.0}</text><text x="4" y="{:.0}">0</text><line x1="{LEFT}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#ccc"/>"##,
            self.top + 12.0,
            self.y(self.peak) + 4.0,
            self.peak,
            self.y(0.0) + 4.0,
            WIDTH - 10.0,
            self.y(0.0),
            self.y(0.0)
        )
    }
}

/// Stepped points: each value held until the next.
fn steps(values: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (x, v) in values {
        if let Some(&(_, last)) = out.last() {
            out.push((x, last));
        }
        out.push((x, v));
    }
    out
}

/// The run as three panels; `slo_capacity_rps` is one Ready pod's rate within the SLO, and
/// `simulated` the simulator's replicas per trace row of `row_seconds`.
pub fn svg(timeline: &[Second], slo_capacity_rps: f64, slo_ms: f64, simulated: &[i32], row_seconds: i64) -> String {
    let seconds = timeline.len();
    let capacity = |s: &Second| f64::from(s.ready) * slo_capacity_rps;
    let peak_load = timeline.iter().map(|s| f64::from(s.offered).max(capacity(s))).fold(1.0, f64::max);
    let peak_pods = timeline.iter().map(|s| s.replicas).chain(simulated.iter().copied()).max().unwrap_or(1).max(1);
    let finite_p99 = timeline.iter().map(|s| s.p99_ms).filter(|v| v.is_finite());
    let peak_latency = finite_p99.fold(slo_ms * 1.5, f64::max).min(slo_ms * 10.0);
    let panels = [
        Panel { top: 10.0, peak: peak_load, seconds },
        Panel { top: 10.0 + PANEL, peak: f64::from(peak_pods) + 1.0, seconds },
        Panel { top: 10.0 + 2.0 * PANEL, peak: peak_latency, seconds },
    ];
    let height = 20.0 + 3.0 * PANEL;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let at = |s: &Second| s.second as f64;
    let [load, pods, latency] = &panels;
    out.push_str(&load.frame("requests/s sent (grey) and what the Ready pods serve within the SLO (green)"));
    out.push_str(&load.line(timeline.iter().map(|s| (at(s), f64::from(s.offered))), "#999", false));
    out.push_str(&load.line(steps(timeline.iter().map(|s| (at(s), capacity(s)))).into_iter(), "#2a9d3a", false));
    out.push_str(&pods.frame("replicas asked for (blue), Ready (green), the simulator's replicas (orange, dashed)"));
    out.push_str(&pods.line(
        steps(timeline.iter().map(|s| (at(s), f64::from(s.replicas)))).into_iter(),
        "#1f5fbf",
        false,
    ));
    out.push_str(&pods.line(steps(timeline.iter().map(|s| (at(s), f64::from(s.ready)))).into_iter(), "#2a9d3a", false));
    let rows = simulated.iter().enumerate().map(|(i, r)| ((i as i64 * row_seconds) as f64, f64::from(*r)));
    out.push_str(&pods.line(steps(rows).into_iter(), "#e07b00", true));
    out.push_str(&latency.frame("p99 latency in ms (red), the p95 SLO (dashed), overloaded seconds (marks below)"));
    out.push_str(&latency.line(timeline.iter().filter(|s| s.offered > 0).map(|s| (at(s), s.p99_ms)), "#c0392b", false));
    out.push_str(&latency.line([(0.0, slo_ms), (seconds as f64, slo_ms)].into_iter(), "#555", true));
    for s in timeline.iter().filter(|s| s.offered > 0 && s.p95_ms > slo_ms) {
        let (x, y) = (latency.x(at(s)), latency.y(0.0));
        let _ = write!(out, r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{y:.1}" stroke="#c0392b"/>"##, y + 8.0);
    }
    out.push_str("</svg>\n");
    out
}
