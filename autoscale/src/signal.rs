//! Signals and how a series of samples is judged against a band over an evaluation period.
//!
//! The rule: a signal is High only if every sample in `[now - period, now]` is above the
//! scale-up threshold and the samples cover the whole period (the oldest at most one step after
//! its start, the newest not stale); Low likewise below the scale-down threshold. Anything less
//! is Normal. Missing, empty, NaN or stale data is Unavailable, never Low: missing data is not zero.

use serde::{Deserialize, Serialize};

use crate::config::Thresholds;

/// Resolution assumed for coverage: samples are at most this far apart.
pub const STEP_SECONDS: i64 = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Signal {
    Cpu,
    Memory,
    RequestRate,
    QueueLength,
}

/// What a query returned over the window.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// (unix seconds, value), oldest first.
    Series(Vec<(i64, f64)>),
    Unavailable(String),
}

/// A signal's verdict over its evaluation period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SignalState {
    High,
    Low,
    Normal,
    Unavailable,
}

/// The samples of `reading` inside the window ending at `now`, or why there are none usable.
pub fn window(reading: &Reading, now: i64, period: i64, staleness: i64) -> Result<Vec<f64>, String> {
    let samples = match reading {
        Reading::Unavailable(why) => return Err(why.clone()),
        Reading::Series(s) => s,
    };
    let newest = samples.last().map(|(t, _)| *t).ok_or_else(|| "no samples".to_owned())?;
    if now - newest > staleness {
        return Err(format!("stale: newest sample is {} s old", now - newest));
    }
    let start = now - period;
    let inside: Vec<(i64, f64)> = samples.iter().copied().filter(|(t, _)| *t >= start && *t <= now).collect();
    let oldest = inside.first().map(|(t, _)| *t).ok_or_else(|| "no samples in the evaluation period".to_owned())?;
    if oldest - start > STEP_SECONDS {
        return Err(format!("samples cover only {} of {period} s", now - oldest));
    }
    if inside.iter().any(|(_, v)| !v.is_finite()) {
        return Err("NaN or infinite sample".to_owned());
    }
    Ok(inside.into_iter().map(|(_, v)| v).collect())
}

/// Judges `reading` against `band` at `now`; also returns the newest value when usable.
pub fn judge(
    reading: &Reading,
    band: &Thresholds,
    now: i64,
    staleness: i64,
) -> (SignalState, Option<f64>, Option<String>) {
    match window(reading, now, band.evaluation_period_seconds, staleness) {
        Err(why) => (SignalState::Unavailable, None, Some(why)),
        Ok(values) => {
            let latest = values.last().copied();
            let state = if values.iter().all(|v| *v > band.scale_up_above) {
                SignalState::High
            } else if values.iter().all(|v| *v < band.scale_down_below) {
                SignalState::Low
            } else {
                SignalState::Normal
            };
            (state, latest, None)
        }
    }
}

/// Whether a series rises over the window: the least-squares slope, extrapolated over the window,
/// adds at least 10 % of the mean, so noise around a flat line does not count as a trend.
pub fn rising(reading: &Reading, now: i64, window_seconds: i64, staleness: i64) -> Option<bool> {
    let Reading::Series(samples) = reading else { return None };
    if window(reading, now, window_seconds, staleness).is_err() {
        return None;
    }
    let pts: Vec<(f64, f64)> =
        samples.iter().filter(|(t, _)| *t >= now - window_seconds).map(|(t, v)| ((*t - now) as f64, *v)).collect();
    let n = pts.len() as f64;
    if n < 3.0 {
        return None;
    }
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    Some(slope * window_seconds as f64 >= 0.1 * my.abs() && slope > 0.0)
}
