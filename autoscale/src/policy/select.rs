//! Choosing between forecast sizing and steady sizing by what each would have cost.
//!
//! Each sizing runs a shadow fleet of its own, fed the same request rate as the real one: its pods
//! are asked for, serve a start-up later and are given back newest first, under the API's bounds
//! and cooldowns. Every evaluation charges each shadow fleet its replica-hours plus
//! `overload_price` replica-hours per minute it could not serve the rate within the SLO, the
//! older charges fading over `selection_window_seconds`, and the real fleet follows the cheaper
//! sizing, switching only when the other is cheaper by [`SWITCH_MARGIN`]. Forecast sizing runs
//! lean on a smooth rate and pays for a noisy one's peaks; steady sizing the reverse; the costs
//! say which this platform's rate is, and the shadows live in the status, so a restarted
//! operator continues them.

use crate::config::{Bounds, ForecastSizing};
use crate::signal::{window, Reading, STEP_SECONDS};
use crate::state::{Selection, ShadowFleet, Sizing};

use super::Want;

/// The other sizing takes over only when its fleet cost this much less.
pub const SWITCH_MARGIN: f64 = 0.05;
/// An evaluation is charged for at most this many seconds since the last one: an operator that
/// was away did not see what the rate did meanwhile.
const MAX_CHARGE_SECONDS: i64 = 60;

/// Both shadows at the real fleet, all of it serving, forecast sizing in charge.
pub(super) fn fresh(f: &ForecastSizing, current: i32, now: i64) -> Selection {
    let fleet = ShadowFleet {
        pods: vec![now - f.start_up_seconds(); usize::try_from(current).unwrap_or(0)],
        ..Default::default()
    };
    Selection { active: Sizing::Forecast, at: now, forecast: fleet.clone(), steady: fleet }
}

/// Charges each shadow fleet for the seconds since the last charge at the newest rate, when that
/// rate is fresh: missing data is not an idle fleet.
pub(super) fn charge(sel: &mut Selection, f: &ForecastSizing, rate: &Reading, capacity: f64, now: i64, staleness: i64) {
    let load = window(rate, now, STEP_SECONDS, staleness).ok().and_then(|v| v.last().copied());
    let elapsed = (now - sel.at).clamp(0, MAX_CHARGE_SECONDS) as f64;
    sel.at = sel.at.max(now);
    let Some(load) = load else { return };
    let decay = (-elapsed / f.selection_window_seconds.max(1) as f64).exp();
    let slo_rps = capacity * f.max_utilisation;
    let start_up = f.start_up_seconds();
    for fleet in [&mut sel.forecast, &mut sel.steady] {
        let ready = fleet.pods.iter().filter(|asked| now - **asked >= start_up).count() as f64;
        let overloaded = if load > ready * slo_rps { f.overload_price / 60.0 } else { 0.0 };
        fleet.cost = fleet.cost * decay + elapsed * (fleet.pods.len() as f64 / 3600.0 + overloaded);
    }
}

/// Moves a shadow fleet as the API's bounds and cooldowns let `want` move the real one.
pub(super) fn step(fleet: &mut ShadowFleet, want: Option<&Want>, bounds: &Bounds, now: i64) {
    let n = i32::try_from(fleet.pods.len()).unwrap_or(i32::MAX);
    let last_event = fleet.last_scale_up.max(fleet.last_scale_down);
    let target = match want {
        Some(Want::Up(_, sized))
            if super::left(fleet.last_scale_up, bounds.scale_up_cooldown_seconds, now).is_none() =>
        {
            (*sized).max(n)
        }
        Some(Want::Down(_, sized)) if super::left(last_event, bounds.scale_down_cooldown_seconds, now).is_none() => {
            (*sized).min(n)
        }
        _ => n,
    }
    .clamp(bounds.min_replicas, bounds.max_replicas);
    if target > n {
        fleet.pods.extend(std::iter::repeat_n(now, usize::try_from(target - n).unwrap_or(0)));
        fleet.last_scale_up = Some(now);
    } else if target < n {
        // Newest first: pods still starting are the cheapest to give up.
        fleet.pods.sort_unstable();
        fleet.pods.truncate(usize::try_from(target).unwrap_or(0));
        fleet.last_scale_down = Some(now);
    }
}

/// Hands the real fleet to the other sizing when its shadow cost clearly less.
pub(super) fn choose(sel: &mut Selection) {
    let (active, other, to) = match sel.active {
        Sizing::Forecast => (sel.forecast.cost, sel.steady.cost, Sizing::Steady),
        Sizing::Steady => (sel.steady.cost, sel.forecast.cost, Sizing::Forecast),
    };
    if other < active * (1.0 - SWITCH_MARGIN) {
        sel.active = to;
    }
}

/// `want`'s reason with the costs that chose steady sizing.
pub(super) fn explained(want: Want, sel: &Selection) -> Want {
    let why =
        |w: String| format!("{w} (its fleet cost {:.1}, forecast sizing's {:.1})", sel.steady.cost, sel.forecast.cost);
    match want {
        Want::Up(w, n) => Want::Up(why(w), n),
        Want::Down(w, n) => Want::Down(why(w), n),
        Want::Hold(w) => Want::Hold(why(w)),
    }
}

#[cfg(test)]
mod tests;
