//! Forecast sizing of the API: pods for the upper edge of the forecast's error band, a ramp path
//! for load that leaves the band, and a stabilised scale-down.
//!
//! - Forecast: the rate `horizon` ahead (`crate::forecast::point`), its band from the quantile of
//!   the relative errors of the forecasts made over the error window, each scored against the
//!   peak that followed it. A smooth trace gets a narrow band and runs lean, a noisy one a wide one.
//! - Ramp (Knative's panic window): when the rate projected along its slope over the ramp window
//!   leaves the band, the projection sizes the fleet at once, and nothing is scaled down until
//!   `ramp_hold_seconds` after the ramp was last seen.
//! - Scale-down: to the highest upper band of the stabilisation window, so capacity goes only
//!   after the band stayed low that long.
//!
//! Too little recent history to score the forecast returns None: the reactive demand rule decides.

use crate::config::ForecastSizing;
use crate::forecast::{point, quantile, relative_error, upper, Indexed};
use crate::signal::{window, Reading};
use crate::state::{Driver, ForecastRecord};

use super::Want;

/// What forecast sizing asks for, what it saw, and until when the ramp path holds scale-downs.
pub(super) struct Verdict {
    pub want: Want,
    pub record: ForecastRecord,
    pub ramp_until: Option<i64>,
}

/// The samples of `reading` at or before `now`, oldest first: a sample stamped later is not
/// known yet at `now` and must never reach a decision.
fn past(reading: Option<&Reading>, now: i64) -> &[(i64, f64)] {
    match reading {
        Some(Reading::Series(s)) => &s[..s.partition_point(|(t, _)| *t <= now)],
        _ => &[],
    }
}

/// The rate's slope (per second) from the oldest to the newest sample of the ramp window.
fn slope(samples: &[(i64, f64)], now: i64, window_seconds: i64) -> f64 {
    let inside = &samples[samples.partition_point(|(t, _)| *t < now - window_seconds)..];
    match (inside.first(), inside.last()) {
        (Some((t0, v0)), Some((t1, v1))) if t1 > t0 => (v1 - v0) / (t1 - t0) as f64,
        _ => 0.0,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rule(
    f: &ForecastSizing,
    recent: &Reading,
    history: Option<&Reading>,
    capacity: f64,
    current: i32,
    ramp_until: Option<i64>,
    now: i64,
    staleness: i64,
) -> Option<Verdict> {
    window(recent, now, f.recent_seconds(), staleness).ok()?;
    let samples = past(Some(recent), now);
    let (recent, history) = (Indexed::new(samples), Indexed::new(past(history, now)));
    let h = f.horizon_seconds;
    // One pod's SLO capacity: below it a relative error measures noise the minimum fleet absorbs.
    let floor = capacity * f.max_utilisation;
    let pods_for = |rate: f64| super::demand::pods_for(rate, capacity, f.max_utilisation);

    let mut errors: Vec<f64> = recent
        .times(now - f.error_window_seconds - h, now - h)
        .filter_map(|s| Some(relative_error(recent.peak_after(s, s + h)?, point(&recent, &history, s, h)?.0, floor)))
        .collect();
    let q = quantile(&mut errors, f.error_quantile)?;
    let (forecast, seasonality) = point(&recent, &history, now, h)?;
    let band = upper(forecast, q, floor);
    let newest = samples.last().map_or(0.0, |(_, v)| *v);
    let projected = newest + slope(samples, now, f.ramp_window_seconds).max(0.0) * h as f64;
    let ramp = projected > band;
    let ramp_until = if ramp { Some(now + f.ramp_hold_seconds) } else { ramp_until };
    let mut record = ForecastRecord {
        driver: Driver::Forecast,
        forecast_rps: Some(forecast),
        upper_rps: Some(band),
        error_quantile: Some(q),
        ramp_rps: Some(projected),
        seasonality,
    };
    let by_forecast = pods_for(band);
    let by_ramp = if ramp { pods_for(upper(projected, q.max(0.0), floor)) } else { 0 };
    let pct = q * 100.0;
    let up = by_forecast.max(by_ramp);
    let want = if up > current {
        if by_ramp > by_forecast {
            record.driver = Driver::Ramp;
            Want::Up(format!("ramp: rate heading to {projected:.0}/s, above the band {band:.0}/s, needs {up} pods"), up)
        } else {
            Want::Up(
                format!("forecast {forecast:.0}/s {pct:+.0} % = {band:.0}/s needs {up} pods of {capacity:.0}/s"),
                up,
            )
        }
    } else if let Some(left) = ramp_until.map(|until| until - now).filter(|left| *left > 0) {
        record.driver = Driver::Ramp;
        Want::Hold(format!("ramp seen: no scale-down for {left} s"))
    } else {
        let w = f.stabilisation_window_seconds;
        let peak = recent
            .times(now - w, now)
            .filter_map(|s| point(&recent, &history, s, h))
            .map(|(p, _)| upper(p, q, floor))
            .fold(band, f64::max);
        let down = pods_for(peak);
        if down < current {
            Want::Down(format!("highest band of the last {w} s {peak:.0}/s needs {down} pods"), down)
        } else {
            Want::Hold(format!("forecast {forecast:.0}/s {pct:+.0} % = {band:.0}/s within {current} pods"))
        }
    };
    Some(Verdict { want, record, ramp_until })
}

#[cfg(test)]
mod tests;
