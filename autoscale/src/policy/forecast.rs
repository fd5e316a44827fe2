//! Forecast sizing of the API: pods for the upper edge of the forecast's error band, a ramp path
//! for load that leaves what the noise explains, and a scale-down sized for the horizon after it.
//!
//! - Forecast: the rate `horizon` ahead (`crate::forecast::point`, plus the level's rise over the
//!   rise window carried on to the horizon) plus the `error_quantile` of the
//!   signed errors in req/s of the forecasts made over the error window, each scored against the
//!   lowest rate of the last start-up of its horizon: the load that lasted long enough for a pod
//!   asked for to serve it. Only under-forecasts widen the band; a smooth trace gets a narrow one
//!   and runs lean, a noisy one a wide one, and spikes shorter than a start-up leave it alone.
//! - Scale-down: to the forecast of the whole scale-down horizon plus the `scale_down_quantile` of
//!   its own errors (scored against the highest of the load and of the scale-up band over that
//!   horizon), the highest of the stabilisation window: the fleet left holds that long at that
//!   share, neither overloaded nor wanted back by the scale-up rule (a flap).
//! - Ramp (Knative's panic window): when the rate projected along its slope over the ramp window
//!   leaves the scale-down band, which covers the noise of the horizon, the projection sizes the
//!   fleet at once, and nothing is scaled down until `ramp_hold_seconds` after it was last seen.
//!
//! Too little recent history to score the forecast returns None: the reactive demand rule decides.

use crate::config::ForecastSizing;
use crate::forecast::{point, quantile, History, Indexed, Seasonality, LEVEL_SECONDS};
use crate::signal::{window, Reading};
use crate::state::{Driver, ForecastRecord};

use super::Want;

/// What a forecast is scored against, over the last seconds of its horizon.
#[derive(Clone, Copy)]
enum Actual<'a> {
    /// The lowest rate of those seconds: load that lasted all of them.
    Sustained(i64),
    /// The highest of the rate and of the scale-up bands (time, band) of those seconds.
    PeakOrBand(i64, &'a [(i64, f64)]),
}

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

/// The forecast at `at` of the rate `horizon` later: the seasonal point forecast plus, with a rise
/// window, the level's measured rise over that window carried on to the horizon (never down: a
/// fall is left to the stabilised scale-down).
fn forecast_at(
    f: &ForecastSizing,
    recent: &Indexed,
    history: &History,
    at: i64,
    horizon: i64,
) -> Option<(f64, Seasonality)> {
    let (p, seasonality) = point(recent, history, at, horizon)?;
    let w = f.rise_window_seconds;
    if w <= 0 {
        return Some((p, seasonality));
    }
    let level = |t: i64| recent.mean(t - LEVEL_SECONDS, t);
    let slope = (level(at)? - level(at - w)?) / w as f64;
    Some((p + slope.max(0.0) * (horizon + LEVEL_SECONDS / 2) as f64, seasonality))
}

/// The forecasts `horizon` ahead made at each sample time in `[from, to]`, as (time, rate).
fn forecasts(
    f: &ForecastSizing,
    recent: &Indexed,
    history: &History,
    (from, to): (i64, i64),
    horizon: i64,
) -> Vec<(i64, f64)> {
    recent.times(from, to).filter_map(|s| Some((s, forecast_at(f, recent, history, s, horizon)?.0))).collect()
}

/// The entries of `series` (time-ordered) with `from < t <= to`.
fn after(series: &[(i64, f64)], from: i64, to: i64) -> &[(i64, f64)] {
    &series[series.partition_point(|(t, _)| *t <= from)..series.partition_point(|(t, _)| *t <= to)]
}

/// The signed errors in req/s of the forecasts `made` `horizon` ahead, each scored against the
/// `actual` rate of the end of the horizon that followed it: positive when the forecast fell
/// short.
fn errors(recent: &Indexed, made: &[(i64, f64)], horizon: i64, actual: Actual) -> Vec<f64> {
    made.iter()
        .filter_map(|(s, forecast)| {
            let end = s + horizon;
            let actual = match actual {
                Actual::Sustained(seconds) => recent.low_after(end - seconds, end)?,
                Actual::PeakOrBand(seconds, bands) => after(bands, end - seconds, end)
                    .iter()
                    .map(|(_, v)| *v)
                    .fold(recent.peak_after(end - seconds, end)?, f64::max),
            };
            Some(actual - forecast)
        })
        .collect()
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
    let pods_for = |rate: f64| super::demand::pods_for(rate.max(0.0), capacity, f.max_utilisation);

    // A pod asked for now serves only a start-up later (the horizon less one evaluation): only
    // load that lasts that long is load a scale-up could have served. A shorter spike is over by
    // the time its pod is ready; the headroom the scale-down band keeps serves it, and scoring it
    // here widened the band by the noise (on NASA, 288 flaps against 175 scored on what lasted).
    // The band is absolute (req/s): the noise of a rate does not shrink with its level the way a
    // relative band assumes, and near zero a relative one is meaningless.
    // The scale-up's forecasts serve both its own scoring and the scale-down's bands below, so
    // they are made once over the span both read.
    let e = f.error_window_seconds;
    let made = forecasts(f, &recent, &history, (now - e - h.max(d), now), h);
    let start_up = f.start_up_seconds();
    let scored = after(&made, now - e - h - 1, now - h);
    let q = quantile(&mut errors(&recent, scored, h, Actual::Sustained(start_up)), f.error_quantile)?;
    let (forecast, seasonality) = forecast_at(f, &recent, &history, now, h)?;
    let band = (forecast + q).max(0.0);
    // Pods removed now are gone at once and a replacement serves only a start-up later: a fleet
    // scaled down must serve every second of the scale-down horizon, at the share of such
    // horizons the scale-down quantile asks for, or the next scale-up undoes it (a flap). That
    // band is also what the noise of the rate explains: only a rate heading above it is a ramp.
    // The scale-up band the next evaluations use rides on a 30 s level, which the load's own
    // peak does not bound: a fleet that serves every peak of the horizon can still be wanted back
    // by that band (a flap). So each horizon is scored against the highest of its load and of
    // the scale-up bands of its seconds (at this decision's error quantile).
    let bands: Vec<(i64, f64)> = after(&made, now - e - d - 1, now).iter().map(|(t, p)| (*t, p + q)).collect();
    let ahead_made = forecasts(f, &recent, &history, (now - e - d, now - d), d);
    let qd = quantile(&mut errors(&recent, &ahead_made, d, Actual::PeakOrBand(d, &bands)), f.scale_down_quantile)?;
    let (ahead, _) = forecast_at(f, &recent, &history, now, d)?;
    let hold = (ahead + qd).max(band);
    let projected = projection(&recent, now, f.ramp_window_seconds, h).unwrap_or(forecast);
    let ramp = projected > hold;
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
    let by_ramp = if ramp { pods_for(projected + q.max(0.0)) } else { 0 };
    let up = by_forecast.max(by_ramp);
    let want = if up > current {
        if by_ramp > by_forecast {
            record.driver = Driver::Ramp;
            Want::Up(format!("ramp: rate heading to {projected:.0}/s, above the band {hold:.0}/s, needs {up} pods"), up)
        } else {
            Want::Up(format!("forecast {forecast:.0}/s {q:+.0}/s = {band:.0}/s needs {up} pods of {capacity:.0}/s"), up)
        }
    } else if let Some(left) = ramp_until.map(|until| until - now).filter(|left| *left > 0) {
        record.driver = Driver::Ramp;
        Want::Hold(format!("ramp seen: no scale-down for {left} s"))
    } else {
        let w = f.stabilisation_window_seconds;
        let peak = recent
            .times(now - w, now)
            .filter_map(|s| forecast_at(f, &recent, &history, s, d))
            .map(|(p, _)| p + qd)
            .fold(hold, f64::max);
        let down = pods_for(peak);
        if down < current {
            Want::Down(
                format!("highest band of the next {d} s over the last {w} s {peak:.0}/s needs {down} pods"),
                down,
            )
        } else {
            Want::Hold(format!("forecast {forecast:.0}/s {q:+.0}/s = {band:.0}/s within {current} pods"))
        }
    };
    Some(Verdict { want, record, ramp_until })
}

#[cfg(test)]
mod tests;
