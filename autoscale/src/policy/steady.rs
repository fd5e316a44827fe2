//! Steady sizing of the API: a fleet for the `steady_share` quantile of the last hour's request
//! rate, never below the rate that lasted a start-up, scaled down to the highest of the
//! stabilisation window.
//!
//! It does not follow the rate's level. A spike shorter than a start-up moves neither the hour's
//! quantile nor the lasting rate, so on a noisy rate the fleet rests where the hour says instead
//! of at the peak of the noise, and the noise above it is accepted as overload. It follows a ramp
//! only as fast as the hour's upper tail climbs, which is why it decides only when the measured
//! costs say so (`select.rs`).

use crate::config::ForecastSizing;
use crate::forecast::{quantile, Indexed};
use crate::signal::{window, Reading};

use super::Want;

/// Seconds of rates the quantile is taken over.
pub const WINDOW_SECONDS: i64 = 3600;

/// What steady sizing sizes for at one evaluation, whatever the fleet: the rate now and the
/// highest of the stabilisation window, and the pods each needs.
#[derive(Clone, Copy)]
pub(super) struct Steady {
    pub target_rps: f64,
    held_rps: f64,
    up: i32,
    down: i32,
    share: f64,
    window_seconds: i64,
    capacity: f64,
}

/// The rate the steady fleet serves at `at`: the share's quantile of the hour up to `at`, or the
/// lowest rate of the start-up that ended at `at` when that is higher.
fn target(f: &ForecastSizing, recent: &Indexed, samples: &[(i64, f64)], at: i64) -> Option<f64> {
    let from = samples.partition_point(|(t, _)| *t <= at - WINDOW_SECONDS);
    let to = samples.partition_point(|(t, _)| *t <= at);
    let mut hour: Vec<f64> = samples[from..to].iter().map(|(_, v)| *v).filter(|v| v.is_finite()).collect();
    let share = quantile(&mut hour, f.steady_share)?;
    Some(recent.low_after(at - f.start_up_seconds(), at).map_or(share, |lasting| share.max(lasting)))
}

/// The rates steady sizing sizes for at `now`, or None while the samples do not cover the hour and
/// the stabilisation window.
pub(super) fn sizes(f: &ForecastSizing, recent: &Reading, capacity: f64, now: i64, staleness: i64) -> Option<Steady> {
    let w = f.stabilisation_window_seconds;
    window(recent, now, WINDOW_SECONDS + w, staleness).ok()?;
    let Reading::Series(series) = recent else { return None };
    let samples = &series[..series.partition_point(|(t, _)| *t <= now)];
    let indexed = Indexed::new(samples);
    let now_rps = target(f, &indexed, samples, now)?;
    let held = indexed.times(now - w + 1, now).filter_map(|t| target(f, &indexed, samples, t)).fold(now_rps, f64::max);
    let pods_for = |rate: f64| super::demand::pods_for(rate.max(0.0), capacity, f.max_utilisation);
    Some(Steady {
        target_rps: now_rps,
        held_rps: held,
        up: pods_for(now_rps),
        down: pods_for(held),
        share: f.steady_share,
        window_seconds: w,
        capacity,
    })
}

impl Steady {
    /// What steady sizing asks of a fleet of `current` pods.
    pub fn want(&self, current: i32) -> Want {
        let Self { target_rps: now_rps, held_rps: held, up, down, share, window_seconds: w, capacity } = *self;
        if up > current {
            Want::Up(format!("steady: {share} of the last hour {now_rps:.0}/s needs {up} pods of {capacity:.0}/s"), up)
        } else if down < current {
            Want::Down(format!("steady: the highest of the last {w} s {held:.0}/s needs {down} pods"), down)
        } else {
            Want::Hold(format!("steady: {share} of the last hour {now_rps:.0}/s within {current} pods"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    /// One sample every 15 s over the hour and a stabilisation window up to `NOW`, from `rate(i)`
    /// with i counting samples from the oldest.
    fn series(rate: impl Fn(usize) -> f64) -> Reading {
        let n = ((WINDOW_SECONDS + 300) / 15) as usize;
        Reading::Series((0..n).map(|i| (NOW - (n - 1 - i) as i64 * 15, rate(i))).collect())
    }

    fn decide(reading: &Reading, current: i32) -> Option<(String, i32)> {
        let f = ForecastSizing::PRESET;
        sizes(&f, reading, 300.0, NOW, 60).map(|s| match s.want(current) {
            Want::Up(_, n) => ("up".to_owned(), n),
            Want::Down(_, n) => ("down".to_owned(), n),
            Want::Hold(_) => ("hold".to_owned(), current),
        })
    }

    #[test]
    fn the_fleet_serves_the_hours_share_and_what_lasted_a_start_up() {
        // Pods serve 240 req/s within the SLO (300 at 80 %).
        let cases: [(&str, Reading, i32, (&str, i32)); 5] = [
            ("a flat 400 needs two pods", series(|_| 400.0), 2, ("hold", 2)),
            (
                "a 15 s spike in twenty is left to overload",
                series(|i| if i % 20 == 19 { 1000.0 } else { 400.0 }),
                2,
                ("hold", 2),
            ),
            (
                "a quarter of the hour at 1,000 is inside 0.93 of it",
                series(|i| if i % 4 == 0 { 1000.0 } else { 300.0 }),
                2,
                ("up", 5),
            ),
            (
                "a minute at 1,000 has lasted a start-up",
                series(|i| if i >= 256 { 1000.0 } else { 400.0 }),
                2,
                ("up", 5),
            ),
            ("three samples of it have not", series(|i| if i >= 257 { 1000.0 } else { 400.0 }), 2, ("hold", 2)),
        ];
        for (why, reading, current, want) in cases {
            let got = decide(&reading, current);
            assert_eq!(got.as_ref().map(|(a, n)| (a.as_str(), *n)), Some(want), "{why}");
        }
    }

    #[test]
    fn a_scale_down_keeps_the_highest_of_the_stabilisation_window() {
        // 1,000 req/s lasted until 90 s ago: the window still holds five pods' worth.
        let recent = series(|i| if (250..254).contains(&i) { 1000.0 } else { 400.0 });
        assert_eq!(decide(&recent, 6), Some(("down".to_owned(), 5)));
        let calm = series(|_| 400.0);
        assert_eq!(decide(&calm, 6), Some(("down".to_owned(), 2)));
    }

    #[test]
    fn stale_or_missing_rates_decide_nothing() {
        let stale = Reading::Series(vec![(NOW - 600, 400.0)]);
        assert!(decide(&stale, 2).is_none());
        assert!(decide(&Reading::Unavailable("down".to_owned()), 2).is_none());
    }
}
