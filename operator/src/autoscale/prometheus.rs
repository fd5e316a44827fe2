//! Range queries against Prometheus, reduced to one series per signal. Failures are values, not
//! errors: an unreachable server, an error answer, an empty result or several series where one was
//! expected all come back as `Unavailable` with the reason, so the policy can hold.

use std::collections::HashMap;

use prometheus_http_query::Client;
use riskplatform_autoscale::Reading;

/// Resolution of range queries: the usual 15 s scrape interval, shortened for evaluation periods
/// under a minute so a window still holds several samples.
pub fn step_seconds(window_seconds: i64) -> i64 {
    (window_seconds / 4).clamp(1, riskplatform_autoscale::signal::STEP_SECONDS)
}

/// Evaluates `query` over `[now - window, now]`.
pub async fn range(client: &Client, query: &str, now: i64, window_seconds: i64) -> Reading {
    let start = now - window_seconds;
    let response = match client.query_range(query, start, now, step_seconds(window_seconds) as f64).get().await {
        Ok(r) => r,
        Err(e) => return Reading::Unavailable(format!("prometheus query failed: {e}")),
    };
    let Some(matrix) = response.data().as_matrix() else {
        return Reading::Unavailable("prometheus answered with a non-matrix result".to_owned());
    };
    match matrix.as_slice() {
        [] => Reading::Unavailable("the query returned no series".to_owned()),
        [one] => Reading::Series(one.samples().iter().map(|s| (s.timestamp() as i64, s.value())).collect()),
        many => Reading::Unavailable(format!("the query returned {} series; it must aggregate to one", many.len())),
    }
}

/// Series of one batched range query, by the values of `namespace` and `label`.
pub type Split = HashMap<(String, String), Vec<(i64, f64)>>;

/// Evaluates a query over many platforms over `[now - window, now]` and splits its series by
/// `namespace` and `label`; a failed query is the reason, for every platform it covered.
pub async fn range_split(
    client: &Client,
    query: &str,
    now: i64,
    window_seconds: i64,
    label: &str,
) -> Result<Split, String> {
    let start = now - window_seconds;
    let response = client
        .query_range(query, start, now, step_seconds(window_seconds) as f64)
        .get()
        .await
        .map_err(|e| format!("prometheus query failed: {e}"))?;
    let matrix = response.data().as_matrix().ok_or("prometheus answered with a non-matrix result")?;
    Ok(matrix
        .iter()
        .filter_map(|series| {
            let labels = series.metric();
            let key = (labels.get("namespace")?.clone(), labels.get(label)?.clone());
            Some((key, series.samples().iter().map(|s| (s.timestamp() as i64, s.value())).collect()))
        })
        .collect())
}
