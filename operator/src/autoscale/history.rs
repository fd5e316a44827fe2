//! The request-rate history forecast sizing reads: days of the API's request rate from one range
//! query at minute resolution, so the forecast's seasons come from Prometheus and survive an
//! operator restart.

use std::sync::Arc;

use prometheus_http_query::Client;
use riskplatform_autoscale::{ForecastSizing, Reading};

/// Resolution of the history: a minute keeps a week plus the scored errors (about 10,200 points)
/// under Prometheus's limit of 11,000 points per series and query.
pub const STEP_SECONDS: i64 = 60;
/// Prometheus refuses range queries that would return more points than this per series.
pub const PROMETHEUS_MAX_POINTS: i64 = 11_000;

/// Seconds of history to read, capped so the query stays within Prometheus's point limit.
pub fn window_seconds(forecast: &ForecastSizing) -> i64 {
    forecast.history_seconds().min((PROMETHEUS_MAX_POINTS - 1) * STEP_SECONDS)
}

/// Evaluates the request-rate `query` over the history window ending at `now`. A failure is an
/// `Unavailable` reading: forecast sizing then forecasts without seasons, it never scales on it.
pub async fn fetch(client: &Client, query: &str, forecast: &ForecastSizing, now: i64) -> Arc<Reading> {
    let start = now - window_seconds(forecast);
    let reading = match super::prometheus::bounded(client.query_range(query, start, now, STEP_SECONDS as f64).get())
        .await
    {
        Err(e) => Reading::Unavailable(format!("prometheus history query failed: {e}")),
        Ok(response) => match response.data().as_matrix().map(Vec::as_slice) {
            Some([one]) => Reading::Series(one.samples().iter().map(|s| (s.timestamp() as i64, s.value())).collect()),
            Some([]) => Reading::Unavailable("the history query returned no series".to_owned()),
            Some(many) => Reading::Unavailable(format!("the history query returned {} series", many.len())),
            None => Reading::Unavailable("prometheus answered the history query with a non-matrix result".to_owned()),
        },
    };
    Arc::new(reading)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preset_history_is_a_week_and_fits_one_prometheus_query() {
        let preset = ForecastSizing::PRESET;
        assert!(window_seconds(&preset) >= riskplatform_autoscale::forecast::WEEK_SECONDS);
        assert!(window_seconds(&preset) / STEP_SECONDS < PROMETHEUS_MAX_POINTS);
        let long = ForecastSizing { error_window_seconds: 86_400, ..preset };
        assert_eq!(window_seconds(&long), (PROMETHEUS_MAX_POINTS - 1) * STEP_SECONDS, "capped at the point limit");
    }
}
