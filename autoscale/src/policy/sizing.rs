//! The API sized from its request rate: forecast sizing (or the reactive demand rule while the
//! history is too short) and, when an overload price is set, the choice of steady sizing by what
//! each sizing's own fleet would have cost (`select.rs`).

use crate::config::{Component, DemandSizing, PolicyConfig};
use crate::signal::Reading;
use crate::state::{ComponentState, Driver, ForecastRecord, Sizing};

use super::{demand, forecast, select, steady, Want};

/// What sized the fleet: the want, what forecast sizing saw, and the ramp hold it leaves.
type Sized = (Want, Option<ForecastRecord>, Option<i64>);

fn record(driver: Driver, upper_rps: Option<f64>) -> ForecastRecord {
    ForecastRecord {
        driver,
        forecast_rps: None,
        upper_rps,
        error_quantile: None,
        ramp_rps: None,
        seasonality: crate::forecast::Seasonality::None,
    }
}

/// The API's want from its rate `rate` and measured pod `capacity`; updates the ramp hold and the
/// selection in `next`.
#[allow(clippy::too_many_arguments)]
pub(super) fn by_rate(
    config: &PolicyConfig,
    sizing: &DemandSizing,
    rate: &Reading,
    history: Option<&Reading>,
    capacity: f64,
    current: i32,
    previous: &ComponentState,
    now: i64,
    next: &mut ComponentState,
) -> (Option<Want>, Option<ForecastRecord>) {
    let staleness = config.staleness_seconds;
    let by_forecast = |current: i32, ramp_until: Option<i64>| -> Option<Sized> {
        let verdict = config
            .forecast
            .as_ref()
            .and_then(|f| forecast::rule(f, rate, history, capacity, current, ramp_until, now, staleness));
        match verdict {
            Some(v) => Some((v.want, Some(v.record), v.ramp_until)),
            None => demand::rule(sizing, rate, capacity, current, now, staleness)
                .map(|w| (w, config.forecast.map(|_| record(Driver::Reactive, None)), ramp_until)),
        }
    };
    let chosen = config.forecast.filter(|f| f.overload_price > 0.0).map(|f| {
        let mut sel = previous.selection.clone().unwrap_or_else(|| select::fresh(&f, current, now));
        select::charge(&mut sel, &f, rate, capacity, now, staleness);
        let bounds = config.bounds(Component::Api);
        let (shadow_current, shadow_ramp) = (sel.forecast.pods.len() as i32, sel.forecast.ramp_until);
        let shadow = by_forecast(shadow_current, shadow_ramp);
        // While forecast sizing is in charge its shadow is usually the real fleet: decided once.
        let same = shadow_current == current && shadow_ramp == previous.ramp_until;
        let real_forecast = same.then(|| shadow.clone());
        if let Some((_, _, ramp_until)) = &shadow {
            sel.forecast.ramp_until = *ramp_until;
        }
        select::step(&mut sel.forecast, shadow.as_ref().map(|s| &s.0), bounds, now);
        // Steady sizing's rates do not depend on the fleet: measured once for its shadow and the
        // real fleet.
        let steady = steady::sizes(&f, rate, capacity, now, staleness);
        let shadow = steady.as_ref().map(|s| s.want(sel.steady.pods.len() as i32));
        select::step(&mut sel.steady, shadow.as_ref(), bounds, now);
        select::choose(&mut sel);
        let steady = steady.filter(|_| sel.active == Sizing::Steady).map(|s| {
            let want = select::explained(s.want(current), &sel);
            (want, Some(record(Driver::Steady, Some(s.target_rps))), previous.ramp_until)
        });
        next.selection = Some(sel);
        steady.map(Some).or(real_forecast)
    });
    match chosen.flatten().unwrap_or_else(|| by_forecast(current, previous.ramp_until)) {
        Some((want, record, ramp_until)) => {
            next.ramp_until = ramp_until;
            (Some(want), record)
        }
        None => (None, None),
    }
}

#[cfg(test)]
mod tests;
