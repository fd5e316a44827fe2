//! Range queries against Prometheus, reduced to one series per signal. Failures are values, not
//! errors: an unreachable server, an error answer, an empty result or several series where one was
//! expected all come back as `Unavailable` with the reason, so the policy can hold.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use prometheus_http_query::Client;
use riskplatform_autoscale::Reading;

/// How long one query may take, resolving and connecting included. An evaluation waits for all
/// its queries, so a Prometheus that never answers (a name the cluster's DNS is slow to refuse,
/// a black-holed address) would otherwise hold every other platform's breakers and scaling for
/// as long as a connection attempt lasts: 30 s was seen on the local cluster. Its platforms
/// read Unavailable and hold instead.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// `query` bounded by [`QUERY_TIMEOUT`], its error as text.
pub async fn bounded<T, E: Display>(query: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", QUERY_TIMEOUT.as_secs())),
    }
}

/// Resolution of range queries: the usual 15 s scrape interval, shortened for evaluation periods
/// under a minute so a window still holds several samples.
pub fn step_seconds(window_seconds: i64) -> i64 {
    (window_seconds / 4).clamp(1, riskplatform_autoscale::signal::STEP_SECONDS)
}

/// Evaluates `query` over `[now - window, now]`.
pub async fn range(client: &Client, query: &str, now: i64, window_seconds: i64) -> Reading {
    let start = now - window_seconds;
    let response = match bounded(client.query_range(query, start, now, step_seconds(window_seconds) as f64).get()).await
    {
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
    let response = bounded(client.query_range(query, start, now, step_seconds(window_seconds) as f64).get())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prometheus_that_accepts_but_never_answers_reads_unavailable_after_the_query_timeout() {
        // Bound but never accepted: connections complete in the backlog and then hear nothing.
        let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", black_hole.local_addr().expect("addr"));
        let client = Client::try_from(url.as_str()).expect("client");
        let started = std::time::Instant::now();
        let (reading, split) =
            tokio::join!(range(&client, "up", 1_000, 60), range_split(&client, "up", 1_000, 60, "deployment"));
        let waited = started.elapsed();
        assert!(matches!(&reading, Reading::Unavailable(r) if r.contains("no answer within 5 s")), "{reading:?}");
        assert!(split.as_ref().is_err_and(|e| e.contains("no answer within 5 s")), "{split:?}");
        assert!(waited < QUERY_TIMEOUT * 2, "two queries at once waited {waited:?}");
    }
}
