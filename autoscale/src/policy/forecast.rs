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
use crate::forecast::{point, quantile, relative_error, upper, History, Indexed, LEVEL_SECONDS};
use crate::signal::{window, Reading};
use crate::state::{Driver, ForecastRecord};

use super::Want;

/// The seconds at the end of the horizon a scale-up decision is the last one able to serve: one
/// evaluation interval plus one sample (so the sample at its start counts).
const LAST_CHANCE_SECONDS: i64 = 2 * crate::signal::STEP_SECONDS;

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

/// The rate projected `horizon` ahead along the slope of its level over the ramp window (never
/// down); levels, not single samples, so one noisy scrape is not taken for a ramp.
fn projection(recent: &Indexed, now: i64, window_seconds: i64, horizon: i64) -> Option<f64> {
    let level = |at: i64| recent.mean(at - LEVEL_SECONDS, at);
    let (then, newest) = (level(now - window_seconds)?, level(now)?);
    let slope = (newest - then) / window_seconds.max(1) as f64;
    Some(newest + slope.max(0.0) * horizon as f64)
}

/// The `error_quantile` of the relative errors of the forecasts `horizon` ahead made over the
/// error window, each scored against the peak of the last `covers` seconds of the horizon that
/// followed it (the seconds the decision is the last one able to serve).
fn error_quantile(
    f: &ForecastSizing,
    recent: &Indexed,
    history: &History,
    now: i64,
    (horizon, covers): (i64, i64),
    floor: f64,
) -> Option<f64> {
    let mut errors: Vec<f64> = recent
        .times(now - f.error_window_seconds - horizon, now - horizon)
        .filter_map(|s| {
            let actual = recent.peak_after(s + horizon - covers, s + horizon)?;
            Some(relative_error(actual, point(recent, history, s, horizon)?.0, floor))
        })
        .collect();
    quantile(&mut errors, f.error_quantile)
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
    let h = f.horizon_seconds;
    let d = f.scale_down_horizon_seconds;
    // The oldest forecast this decision re-makes: the scored window before the longer horizon,
    // or the stabilisation window.
    let from = now - (f.error_window_seconds + h.max(d)).max(f.stabilisation_window_seconds);
    let (recent, history) = (Indexed::new(samples), History::new(past(history, now), from, now, h.max(d)));
    // One pod's SLO capacity: below it a relative error measures noise the minimum fleet absorbs.
    let floor = capacity * f.max_utilisation;
    let pods_for = |rate: f64| super::demand::pods_for(rate, capacity, f.max_utilisation);

    // A pod asked for now serves only from the start-up on, and the next evaluation can ask for
    // more that serve one interval later: this decision alone must serve the horizon's last
    // interval.
    let q = error_quantile(f, &recent, &history, now, (h, LAST_CHANCE_SECONDS), floor)?;
    let (forecast, seasonality) = point(&recent, &history, now, h)?;
    let band = upper(forecast, q, floor);
    let projected = projection(&recent, now, f.ramp_window_seconds, h).unwrap_or(forecast);
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
        // Pods removed now are gone at once: the fleet left must serve every second until a
        // scale-up could replace them.
        let ahead = error_quantile(f, &recent, &history, now, (d, d), floor)
            .zip(point(&recent, &history, now, d))
            .map_or(f64::INFINITY, |(qd, (p, _))| upper(p, qd, floor));
        let down = pods_for(peak.max(ahead));
        if down < current {
            Want::Down(
                format!(
                    "highest band of the last {w} s {peak:.0}/s and of the next {d} s {ahead:.0}/s need {down} pods"
                ),
                down,
            )
        } else {
            Want::Hold(format!("forecast {forecast:.0}/s {pct:+.0} % = {band:.0}/s within {current} pods"))
        }
    };
    Some(Verdict { want, record, ramp_until })
}

#[cfg(test)]
mod tests;
