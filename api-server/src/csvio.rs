//! The bulk job CSV formats: parsing an upload into rows (errors name the line and column) and
//! writing results.

use std::collections::HashMap;

use crate::db::jobs::{BulkResult, BulkRow};
use crate::model::Statement;

/// The columns of an upload; `reference` is optional and echoed in the results.
pub const INPUT_COLUMNS: [&str; 10] = [
    "total_assets",
    "total_liabilities",
    "current_assets",
    "current_liabilities",
    "retained_earnings",
    "ebit",
    "net_income",
    "previous_net_income",
    "funds_from_operations",
    "book_equity",
];

pub const RESULT_HEADER: &str = "row,reference,probability,risk_level,zone,error\n";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("the upload is empty: send a header line and at least one row")]
    Empty,
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("missing column `{0}` (required: {cols})", cols = INPUT_COLUMNS.join(", "))]
    MissingColumn(&'static str),
    #[error("unknown column `{0}` (allowed: reference, {cols})", cols = INPUT_COLUMNS.join(", "))]
    UnknownColumn(String),
    #[error("line {line}, column {column}: `{value}` is not a number")]
    NotANumber { line: u64, column: &'static str, value: String },
    #[error("more than {max} rows; split the upload")]
    TooManyRows { max: usize },
    #[error("line {line}, column reference: at most {REFERENCE_MAX} characters without control characters")]
    BadReference { line: u64 },
}

/// Longest reference echoed in the results, in characters.
pub const REFERENCE_MAX: usize = 200;

/// Parses an upload of at most `max_rows` rows. Values are only checked to be numbers here;
/// the model's own checks (e.g. positive total assets) become per-row errors in the results, so
/// one bad row does not reject the other 99,999.
pub fn parse(body: &[u8], max_rows: usize) -> Result<Vec<BulkRow>, CsvError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body);
    let headers = reader.headers().map_err(|e| CsvError::Malformed { line: 1, message: e.to_string() })?.clone();
    if headers.is_empty() || headers.iter().all(str::is_empty) {
        return Err(CsvError::Empty);
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if h != "reference" && !INPUT_COLUMNS.contains(&h) {
            return Err(CsvError::UnknownColumn(h.to_owned()));
        }
        index.insert(h, i);
    }
    let mut columns = [0usize; 10];
    for (slot, name) in columns.iter_mut().zip(INPUT_COLUMNS) {
        *slot = *index.get(name).ok_or(CsvError::MissingColumn(name))?;
    }
    let reference = index.get("reference").copied();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record
            .map_err(|e| CsvError::Malformed { line: e.position().map_or(0, |p| p.line()), message: e.to_string() })?;
        if rows.len() == max_rows {
            return Err(CsvError::TooManyRows { max: max_rows });
        }
        let line = record.position().map_or(0, |p| p.line());
        let mut values = [0f64; 10];
        for ((value, &column), name) in values.iter_mut().zip(&columns).zip(INPUT_COLUMNS) {
            let text = record.get(column).unwrap_or_default();
            *value =
                text.parse::<f64>().map_err(|_| CsvError::NotANumber { line, column: name, value: text.to_owned() })?;
        }
        let [total_assets, total_liabilities, current_assets, current_liabilities, retained_earnings, ebit, net_income, previous_net_income, funds_from_operations, book_equity] =
            values;
        let reference = reference.and_then(|i| record.get(i)).filter(|r| !r.is_empty());
        // PostgreSQL refuses NUL in text; no control character belongs in a reference.
        if reference.is_some_and(|r| r.chars().count() > REFERENCE_MAX || r.chars().any(char::is_control)) {
            return Err(CsvError::BadReference { line });
        }
        rows.push(BulkRow {
            reference: reference.map(str::to_owned),
            statement: Statement {
                total_assets,
                total_liabilities,
                current_assets,
                current_liabilities,
                retained_earnings,
                ebit,
                net_income,
                previous_net_income,
                funds_from_operations,
                book_equity,
            },
        });
    }
    if rows.is_empty() {
        return Err(CsvError::Empty);
    }
    Ok(rows)
}

/// Results as CSV lines (no header), rows numbered from 1 as in the upload.
pub fn write_results(results: &[BulkResult]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    for r in results {
        let probability = r.probability.map(|p| format!("{p:.6}")).unwrap_or_default();
        // Writing to a Vec cannot fail.
        let _ = writer.write_record([
            (r.row_no + 1).to_string().as_str(),
            r.reference.as_deref().unwrap_or(""),
            &probability,
            r.risk_level.as_deref().unwrap_or(""),
            r.zone.as_deref().unwrap_or(""),
            r.error.as_deref().unwrap_or(""),
        ]);
    }
    writer.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "reference,total_assets,total_liabilities,current_assets,current_liabilities,retained_earnings,ebit,net_income,previous_net_income,funds_from_operations,book_equity\n";

    #[test]
    fn an_upload_parses_into_rows_with_their_references() {
        let body = format!("{HEADER}ACME,1000,300,400,150,350,150,100,90,140,700\n,10,5,4,2,1,1,1,1,1,5\n");
        let rows = parse(body.as_bytes(), 10).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].reference.as_deref(), Some("ACME"));
        assert_eq!(rows[0].statement.book_equity, 700.0);
        assert_eq!(rows[1].reference, None);
    }

    #[test]
    fn bad_uploads_say_what_is_wrong_and_where() {
        let cases = [
            ("".to_owned(), CsvError::Empty),
            (HEADER.to_owned(), CsvError::Empty),
            (HEADER.replace(",ebit", ""), CsvError::MissingColumn("ebit")),
            (HEADER.replace("ebit", "ebitda"), CsvError::UnknownColumn("ebitda".to_owned())),
            (
                format!("{HEADER}A,1000,300,400,150,350,abc,100,90,140,700\n"),
                CsvError::NotANumber { line: 2, column: "ebit", value: "abc".to_owned() },
            ),
            (format!("{HEADER}A,1,1,1,1,1,1,1,1,1,1\nB,1,1,1,1,1,1,1,1,1,1\n"), CsvError::TooManyRows { max: 1 }),
            (format!("{HEADER}A\0B,1,1,1,1,1,1,1,1,1,1\n"), CsvError::BadReference { line: 2 }),
            (format!("{HEADER}{},1,1,1,1,1,1,1,1,1,1\n", "R".repeat(201)), CsvError::BadReference { line: 2 }),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes(), 1), Err(want.clone()), "{body}");
        }
        let short = format!("{HEADER}A,1,2\n");
        assert!(matches!(parse(short.as_bytes(), 5), Err(CsvError::Malformed { line: 2, .. })));
    }

    #[test]
    fn results_are_numbered_from_one_and_quote_what_needs_it() {
        let results = [BulkResult {
            row_no: 0,
            reference: Some("A, Inc.".to_owned()),
            probability: Some(0.25),
            risk_level: Some("high".to_owned()),
            zone: Some("grey".to_owned()),
            error: None,
        }];
        assert_eq!(String::from_utf8(write_results(&results)).expect("utf8"), "1,\"A, Inc.\",0.250000,high,grey,\n");
    }
}
