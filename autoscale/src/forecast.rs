//! Forecasting the request rate a short horizon ahead from its own past: a level from the newest
//! samples, a seasonal factor from the same span one day and one week earlier (seasonal naive), and
//! the quantiles of the forecast's own measured errors, so headroom follows how wrong it has
//! recently been.
//!
//! Everything here reads only samples at or before `now`; the past forecasts it scores are
//! recomputed from the same samples, so nothing depends on memory an operator restart would lose.

use serde::{Deserialize, Serialize};

/// Seconds in a day and a week: the seasonal periods.
pub const DAY_SECONDS: i64 = 86_400;
pub const WEEK_SECONDS: i64 = 7 * DAY_SECONDS;
/// The level is the mean of this many seconds of samples: two 15 s samples and the newest, so one
/// odd scrape moves it by a third, not fully. (Measured: a 300 s or 900 s level lags ramps and
/// overloads WorldCup twice as long for fewer flaps on NASA only.)
pub const LEVEL_SECONDS: i64 = 30;
/// Seasonal means cover this many seconds either side of a point: minute-resolution history is
/// noisy, five minutes of it is not, and the seasonal shape does not change within them.
pub const SEASONAL_SMOOTHING_SECONDS: i64 = 150;
/// A seasonal factor outside this range is a one-off event of that day, not a season.
const SEASONAL_FACTOR_RANGE: (f64, f64) = (0.5, 2.0);

/// Which seasonal periods the history covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Seasonality {
    None,
    Daily,
    DailyAndWeekly,
}

/// Samples (unix seconds, value), oldest first, with prefix sums for window means.
pub struct Indexed<'a> {
    samples: &'a [(i64, f64)],
    prefix: Vec<f64>,
}

impl<'a> Indexed<'a> {
    pub fn new(samples: &'a [(i64, f64)]) -> Self {
        let mut prefix = Vec::with_capacity(samples.len() + 1);
        prefix.push(0.0);
        let mut sum = 0.0;
        for (_, v) in samples {
            sum += if v.is_finite() { *v } else { 0.0 };
            prefix.push(sum);
        }
        Self { samples, prefix }
    }

    fn range(&self, from: i64, to: i64) -> (usize, usize) {
        (self.samples.partition_point(|(t, _)| *t < from), self.samples.partition_point(|(t, _)| *t <= to))
    }

    /// Mean of the samples with `from <= t <= to`.
    pub fn mean(&self, from: i64, to: i64) -> Option<f64> {
        let (a, b) = self.range(from, to);
        (b > a).then(|| (self.prefix[b] - self.prefix[a]) / (b - a) as f64)
    }

    /// Highest sample with `from < t <= to`.
    pub fn peak_after(&self, from: i64, to: i64) -> Option<f64> {
        let (a, b) = self.range(from.saturating_add(1), to);
        self.samples[a..b].iter().map(|(_, v)| *v).reduce(f64::max)
    }

    /// Lowest sample with `from < t <= to`.
    pub fn low_after(&self, from: i64, to: i64) -> Option<f64> {
        let (a, b) = self.range(from.saturating_add(1), to);
        self.samples[a..b].iter().map(|(_, v)| *v).reduce(f64::min)
    }

    /// Sample times with `from <= t <= to`.
    pub fn times(&self, from: i64, to: i64) -> impl Iterator<Item = i64> + '_ {
        let (a, b) = self.range(from, to);
        self.samples[a..b].iter().map(|(t, _)| *t)
    }
}

/// The minute history around the two places a seasonal factor reads (one day and one week before
/// the forecasts), indexed separately: a week is ten thousand samples, but the forecasts of one
/// decision only read a few hours of it at each place.
pub struct History<'a> {
    first: Option<i64>,
    day: Indexed<'a>,
    week: Indexed<'a>,
}

impl<'a> History<'a> {
    /// The history for forecasts made in `[from, to]` up to `horizon` seconds ahead.
    pub fn new(samples: &'a [(i64, f64)], from: i64, to: i64, horizon: i64) -> Self {
        let w = SEASONAL_SMOOTHING_SECONDS;
        let around = |period: i64| {
            let a = samples.partition_point(|(t, _)| *t < from - period - w);
            let b = samples.partition_point(|(t, _)| *t <= to + horizon - period + w);
            Indexed::new(&samples[a..b.max(a)])
        };
        Self { first: samples.first().map(|(t, _)| *t), day: around(DAY_SECONDS), week: around(WEEK_SECONDS) }
    }
}

/// How the rate moved from `at` to `at + horizon` one day and one week earlier, as a factor, and
/// which periods the history covered; 1 without history.
pub fn seasonal_factor(history: &History, at: i64, horizon: i64) -> (f64, Seasonality) {
    let w = SEASONAL_SMOOTHING_SECONDS;
    let covered = |period: i64| history.first.is_some_and(|first| first <= at - period - w);
    let factor_of = |period: i64, season: &Indexed| {
        let before = season.mean(at - period - w, at - period + w)?;
        let after = season.mean(at + horizon - period - w, at + horizon - period + w)?;
        let f = after / before;
        (before > 0.0 && f.is_finite()).then(|| f.clamp(SEASONAL_FACTOR_RANGE.0, SEASONAL_FACTOR_RANGE.1))
    };
    let daily = covered(DAY_SECONDS).then(|| factor_of(DAY_SECONDS, &history.day)).flatten();
    let weekly = covered(WEEK_SECONDS).then(|| factor_of(WEEK_SECONDS, &history.week)).flatten();
    match (daily, weekly) {
        (Some(d), Some(w)) => ((d * w).sqrt(), Seasonality::DailyAndWeekly),
        (Some(d), None) => (d, Seasonality::Daily),
        _ => (1.0, Seasonality::None),
    }
}

/// The point forecast at `at` of the rate `horizon` seconds later: the level times the seasonal
/// factor.
pub fn point(recent: &Indexed, history: &History, at: i64, horizon: i64) -> Option<(f64, Seasonality)> {
    let level = recent.mean(at - LEVEL_SECONDS, at)?;
    let (factor, seasonality) = seasonal_factor(history, at, horizon);
    Some((level * factor, seasonality))
}

/// The `q` quantile of `values` (nearest rank), or None when empty.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    Some(*v)
}

#[cfg(test)]
mod tests;
