//! Tests of the forecast's pieces on hand-made series.

use super::*;

const NOW: i64 = 30 * DAY_SECONDS + DAY_SECONDS / 2;

/// Samples every `step` seconds over `[from, to]`, valued by `f(t)`.
fn series(from: i64, to: i64, step: i64, f: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (0..=(to - from) / step).map(|i| from + i * step).map(|t| (t, f(t))).collect()
}

/// Every day the rate doubles from 100 to 200 req/s 200 s after the time of day of `NOW`.
fn doubling_at(t: i64) -> f64 {
    if t.rem_euclid(DAY_SECONDS) < NOW.rem_euclid(DAY_SECONDS) + 200 {
        100.0
    } else {
        200.0
    }
}

#[test]
fn means_and_peaks_cover_exactly_their_window() {
    let s = series(0, 60, 15, |t| t as f64);
    let ix = Indexed::new(&s);
    assert_eq!(ix.mean(15, 45), Some(30.0));
    assert_eq!(ix.peak_after(15, 45), Some(45.0), "the start is not after itself");
    assert_eq!(ix.peak_after(60, 120), None, "nothing after the newest sample");
    assert_eq!(ix.mean(100, 200), None);
}

#[test]
fn the_seasonal_factor_repeats_the_move_seen_one_day_earlier() {
    let history = series(NOW - 2 * DAY_SECONDS, NOW, 60, doubling_at);
    let (factor, seasonality) = seasonal_factor(&History::new(&history, NOW, NOW, 600), NOW, 600);
    assert_eq!(seasonality, Seasonality::Daily);
    assert_eq!(factor, 2.0, "yesterday doubled within the next 10 minutes");
}

#[test]
fn a_week_of_history_adds_the_weekly_season_and_none_gives_a_flat_forecast() {
    let week = series(NOW - WEEK_SECONDS - 3600, NOW, 60, doubling_at);
    assert_eq!(seasonal_factor(&History::new(&week, NOW, NOW, 600), NOW, 600).1, Seasonality::DailyAndWeekly);
    let hours = series(NOW - 7200, NOW, 60, doubling_at);
    assert_eq!(seasonal_factor(&History::new(&hours, NOW, NOW, 600), NOW, 600), (1.0, Seasonality::None));
}

#[test]
fn a_one_off_event_a_day_earlier_moves_the_forecast_by_at_most_a_factor_of_two() {
    let history = series(NOW - 2 * DAY_SECONDS, NOW, 60, |t| if doubling_at(t) > 150.0 { 5000.0 } else { 10.0 });
    assert_eq!(seasonal_factor(&History::new(&history, NOW, NOW, 600), NOW, 600).0, 2.0);
}

#[test]
fn the_quantile_is_the_nearest_rank() {
    let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(quantile(&mut v, 0.99), Some(99.0));
    assert_eq!(quantile(&mut v, 1.0), Some(100.0));
    assert_eq!(quantile(&mut v, 0.0), Some(1.0));
    assert_eq!(quantile(&mut [], 0.9), None);
}
