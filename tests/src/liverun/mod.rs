//! The live autoscaling run's arithmetic: a trace window as a time-compressed request schedule,
//! the fleet sampled while it is replayed, the per-second timeline of the replay and its figures
//! (overload seconds, replica-seconds, start-up delays), for comparison with `simulate`.

pub mod plot;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use riskplatform_autoscale::sim::engine::{load_at, TICK_SECONDS};
use riskplatform_autoscale::sim::model::Model;
use riskplatform_autoscale::sim::trace;

use crate::load::Sent;

/// Requests per second per trace row, replayed with the simulator's own load curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub rates: Vec<f64>,
    pub row_seconds: i64,
}

impl Schedule {
    /// Rows `[start, start + rows)` of a trace file, scaled so the busiest row is `peak_rps`, each
    /// lasting `row_seconds` (a multiple of the simulator's 15 s tick).
    pub fn from_trace(path: &Path, start: usize, rows: usize, peak_rps: f64, row_seconds: i64) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let all = trace::parse(&text, path)?;
        Ok(Self { rates: trace::window(&all, start, Some(rows), peak_rps)?, row_seconds })
    }

    pub fn seconds(&self) -> i64 {
        self.rates.len() as i64 * self.row_seconds
    }

    /// The rate at `t` seconds: as the simulator replays a row, constant over each 15 s tick, from
    /// the row's rate linearly toward the next row's.
    pub fn rate_at(&self, t: f64) -> f64 {
        if t < 0.0 || self.rates.is_empty() {
            return 0.0;
        }
        let tick = (t / TICK_SECONDS as f64).floor() as i64;
        let ticks_per_row = (self.row_seconds / TICK_SECONDS).max(1);
        match usize::try_from(tick / ticks_per_row) {
            Ok(row) if row < self.rates.len() => load_at(&self.rates, row, tick % ticks_per_row, ticks_per_row),
            _ => 0.0,
        }
    }

    /// When each request is sent, in seconds from the start: the n-th (from 0) once the integral of
    /// the rate reaches n + 1/2, so the replay is open-loop at exactly the trace's rate.
    pub fn send_times(&self) -> Vec<f64> {
        const STEP: f64 = 0.001;
        let end = self.seconds() as f64;
        let (mut t, mut integral, mut next) = (0.0, 0.0, 0.5);
        let mut out = Vec::new();
        while t < end {
            integral += self.rate_at(t) * STEP;
            while integral >= next {
                out.push(t);
                next += 1.0;
            }
            t += STEP;
        }
        out
    }
}

/// The scaled Deployment at one moment of the replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FleetSample {
    pub at: f64,
    /// `spec.replicas`: what the operator asked for.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

/// Samples the Deployment every `every` until `stop` is set; a failed read is skipped (the next
/// one follows a moment later).
pub async fn sample_fleet(
    api: Api<Deployment>,
    name: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<FleetSample> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut ticker = tokio::time::interval(every);
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        if let Ok(d) = api.get(&name).await {
            let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(1);
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            out.push(FleetSample { at: started.elapsed().as_secs_f64(), replicas, ready });
        }
    }
    out
}

/// One second of the replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Second {
    pub second: usize,
    /// Requests sent in this second.
    pub offered: u32,
    /// Of those, the ones without a 2xx answer.
    pub failed: u32,
    /// Latency percentiles of this second's requests in milliseconds, a failure counting as
    /// infinitely slow; 0 for a second without requests.
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub replicas: i32,
    pub ready: i32,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The fleet as last sampled at or before `t` (the first sample before any).
fn fleet_at(fleet: &[FleetSample], t: f64) -> (i32, i32) {
    let i = fleet.partition_point(|s| s.at <= t);
    fleet.get(i.saturating_sub(1)).map_or((0, 0), |s| (s.replicas, s.ready))
}

/// Every second of a replay of `seconds` seconds, from its requests and the fleet samples.
pub fn timeline(sent: &[Sent], fleet: &[FleetSample], seconds: usize) -> Vec<Second> {
    let mut latencies = vec![Vec::new(); seconds];
    let mut failed = vec![0u32; seconds];
    for s in sent {
        let Some(bucket) = latencies.get_mut(s.at.max(0.0) as usize) else { continue };
        let ok = s.status.is_some_and(|c| (200..300).contains(&c));
        bucket.push(if ok { s.latency.unwrap_or(f64::INFINITY) * 1000.0 } else { f64::INFINITY });
        failed[s.at.max(0.0) as usize] += u32::from(!ok);
    }
    latencies
        .into_iter()
        .enumerate()
        .map(|(second, mut l)| {
            l.sort_unstable_by(f64::total_cmp);
            let (replicas, ready) = fleet_at(fleet, second as f64 + 0.5);
            Second {
                second,
                offered: l.len() as u32,
                failed: failed[second],
                p95_ms: percentile(&l, 0.95),
                p99_ms: percentile(&l, 0.99),
                replicas,
                ready,
            }
        })
        .collect()
}

/// A run's outcome in the simulator's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Seconds whose p95 latency exceeded the SLO (or more than 5 % of whose requests failed).
    pub overload_seconds: usize,
    /// Seconds the simulator's model calls overloaded for the live fleet: the offered rate above
    /// what the Ready pods serve within the SLO.
    pub model_overload_seconds: usize,
    /// The integral of `spec.replicas`, as the simulator's replica-hours count pods asked for.
    pub replica_seconds: f64,
    pub requests: u64,
    pub failed: u64,
    pub peak_replicas: i32,
    /// Seconds from each scale-up to the Deployment having that many Ready pods.
    pub startup_seconds: Vec<f64>,
}

pub fn figures(timeline: &[Second], fleet: &[FleetSample], model: &Model) -> Figures {
    let overload_seconds = timeline.iter().filter(|s| s.offered > 0 && s.p95_ms > model.slo_p95_ms).count();
    let model_overload_seconds = timeline.iter().filter(|s| model.overloaded(f64::from(s.offered), s.ready)).count();
    Figures {
        overload_seconds,
        model_overload_seconds,
        replica_seconds: timeline.iter().map(|s| f64::from(s.replicas)).sum(),
        requests: timeline.iter().map(|s| u64::from(s.offered)).sum(),
        failed: timeline.iter().map(|s| u64::from(s.failed)).sum(),
        peak_replicas: timeline.iter().map(|s| s.replicas).max().unwrap_or(0),
        startup_seconds: startup_delays(fleet),
    }
}

/// Seconds without a failed request, by the load per Ready pod as a share of a pod's capacity
/// (bins of a tenth, up to 1.5): (bin's upper bound, seconds, seconds whose p95 met `slo_ms`).
pub fn latency_by_utilisation(timeline: &[Second], capacity: f64, slo_ms: f64) -> Vec<(f64, usize, usize)> {
    let mut bins = vec![(0usize, 0usize); 15];
    for s in timeline.iter().filter(|s| s.offered > 0 && s.failed == 0 && s.ready > 0) {
        let u = f64::from(s.offered) / (f64::from(s.ready) * capacity);
        let Some(bin) = bins.get_mut(((u * 10.0).floor() as usize).min(14)) else { continue };
        bin.0 += 1;
        bin.1 += usize::from(s.p95_ms <= slo_ms);
    }
    bins.into_iter().enumerate().map(|(i, (n, ok))| ((i + 1) as f64 / 10.0, n, ok)).collect()
}

/// The highest utilisation up to which the seconds met the SLO: the upper bound of the last bin
/// before the first one (with at least `min_seconds`) where fewer than 95 % did; None when no bin
/// had enough seconds.
pub fn measured_slo_utilisation(bins: &[(f64, usize, usize)], min_seconds: usize) -> Option<f64> {
    let mut last = None;
    for &(upper, n, ok) in bins.iter().filter(|b| b.1 >= min_seconds) {
        if ok * 100 < n * 95 {
            return last.or(Some(upper - 0.1).filter(|u| *u > 0.0));
        }
        last = Some(upper);
    }
    last
}

/// For each rise of `spec.replicas`, the seconds until as many pods were Ready; a rise overtaken
/// by a scale-down before its pods were ready is left out.
pub fn startup_delays(fleet: &[FleetSample]) -> Vec<f64> {
    let mut out = Vec::new();
    for (i, w) in fleet.windows(2).enumerate() {
        let (before, after) = (w[0], w[1]);
        if after.replicas <= before.replicas {
            continue;
        }
        let rest = &fleet[i + 1..];
        let shrunk = rest.iter().position(|s| s.replicas < after.replicas).unwrap_or(rest.len());
        if let Some(ready) = rest[..shrunk].iter().find(|s| s.ready >= after.replicas) {
            out.push(ready.at - after.at);
        }
    }
    out
}

/// The median of `values`, if any.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    (!v.is_empty()).then(|| if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 })
}

#[cfg(test)]
mod tests;
