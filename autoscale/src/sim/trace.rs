//! Per-minute request traces: parsing the CSVs, selecting a window of rows and scaling it so its
//! peak equals a requested rate.

use std::path::Path;

use super::SimError;

/// Requests per minute, one value per row of the trace, in file order.
pub fn parse(text: &str, path: &Path) -> Result<Vec<f64>, SimError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.contains("requests")) {
            continue;
        }
        let value = line.rsplit(',').next().unwrap_or_default().trim();
        let requests: f64 = value.parse().map_err(|_| SimError::BadRow {
            path: path.display().to_string(),
            line: line_no,
            message: format!("requests column {value:?} is not a number"),
        })?;
        if !requests.is_finite() || requests < 0.0 {
            return Err(SimError::BadRow {
                path: path.display().to_string(),
                line: line_no,
                message: format!("requests must be a non-negative number, got {requests}"),
            });
        }
        rows.push(requests);
    }
    Ok(rows)
}

/// Rows `[start, start + minutes)` (all remaining rows when `minutes` is None), scaled so the
/// busiest minute equals `peak_rps` requests per second. Returns requests per second per minute.
pub fn window(rows: &[f64], start: usize, minutes: Option<usize>, peak_rps: f64) -> Result<Vec<f64>, SimError> {
    if start >= rows.len() {
        return Err(SimError::EmptyWindow(format!("--start-minute {start} is past the trace's {} rows", rows.len())));
    }
    let end = minutes.map_or(rows.len(), |m| start.saturating_add(m).min(rows.len()));
    let selected = &rows[start..end];
    let peak = selected.iter().copied().fold(0.0_f64, f64::max);
    if selected.is_empty() || peak <= 0.0 {
        return Err(SimError::EmptyWindow(format!("rows {start}..{end} hold no requests")));
    }
    Ok(selected.iter().map(|r| r / peak * peak_rps).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_trace_formats_parse() {
        let p = Path::new("t.csv");
        assert_eq!(parse("minute_offset,requests\n0,42\n1,62\n", p).ok(), Some(vec![42.0, 62.0]));
        assert_eq!(parse("period_utc_plus2,requests\n1998-04-30 21:30:00,2\n", p).ok(), Some(vec![2.0]));
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let err = parse("minute_offset,requests\n0,42\n1,many\n", Path::new("t.csv")).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("t.csv line 3: requests column \"many\" is not a number"));
    }

    #[test]
    fn the_window_is_scaled_to_the_peak() {
        let w = window(&[10.0, 20.0, 40.0, 5.0], 1, Some(2), 6000.0).ok();
        assert_eq!(w, Some(vec![3000.0, 6000.0]));
    }

    #[test]
    fn an_empty_window_is_an_error() {
        assert!(window(&[1.0, 2.0], 5, None, 10.0).is_err());
        assert!(window(&[0.0, 0.0], 0, None, 10.0).is_err());
    }
}
