//! The default-risk model: Ohlson's O-score for the probability of default and Altman's Z''-score
//! for the zone, combined into one probability, a risk level and the ratios behind them. Pure.
//!
//! Sources:
//! - J. A. Ohlson, "Financial Ratios and the Probabilistic Prediction of Bankruptcy", Journal of
//!   Accounting Research 18(1), 1980, pp. 109-131 (model 1, one year before failure).
//! - E. I. Altman, J. Hartzell, M. Peck, "Emerging Market Corporate Bonds: A Scoring System",
//!   Salomon Brothers, 1995; E. I. Altman, "Predicting Financial Distress of Companies: Revisiting
//!   the Z-Score and ZETA Models", 2000 (Z'' for non-manufacturers and emerging markets, with the
//!   +3.25 constant of the emerging-market version).

use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;

/// Identifies the model in every prediction and in cache keys, so a new version never serves a
/// result computed by an old one.
pub const MODEL_VERSION: &str = "ohlson1980-altman1995-v1";

/// One period's financial statement, in one currency unit (millions for the O-score's size term).
/// Its OpenAPI schema is built from [`FIELDS`], the same table [`validate`] checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub total_assets: f64,
    pub total_liabilities: f64,
    pub current_assets: f64,
    pub current_liabilities: f64,
    pub retained_earnings: f64,
    pub ebit: f64,
    pub net_income: f64,
    /// Net income of the previous period.
    pub previous_net_income: f64,
    /// Funds from operations (e.g. cash flow from operations).
    pub funds_from_operations: f64,
    pub book_equity: f64,
}

/// Largest magnitude of an amount: a quadrillion, beyond any balance sheet in millions. With
/// [`MIN_POSITIVE_AMOUNT`] it keeps every ratio below 1e21 and so every score finite.
pub const MAX_AMOUNT: f64 = 1e15;

/// Smallest assets or liabilities a ratio may divide by: one currency unit when amounts are in
/// millions.
pub const MIN_POSITIVE_AMOUNT: f64 = 1e-6;

/// The range an amount must lie in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// [`MIN_POSITIVE_AMOUNT`] to [`MAX_AMOUNT`]: the divisors of the ratios.
    Positive,
    /// 0 to [`MAX_AMOUNT`].
    NonNegative,
    /// -[`MAX_AMOUNT`] to [`MAX_AMOUNT`].
    Signed,
}

impl Bound {
    pub fn range(self) -> (f64, f64) {
        match self {
            Self::Positive => (MIN_POSITIVE_AMOUNT, MAX_AMOUNT),
            Self::NonNegative => (0.0, MAX_AMOUNT),
            Self::Signed => (-MAX_AMOUNT, MAX_AMOUNT),
        }
    }
}

/// Every field of a statement with its bound and its description, in declaration order.
pub const FIELDS: [(&str, Bound, &str); 10] = [
    ("total_assets", Bound::Positive, "Total assets"),
    ("total_liabilities", Bound::Positive, "Total liabilities"),
    ("current_assets", Bound::Positive, "Current assets"),
    ("current_liabilities", Bound::NonNegative, "Current liabilities"),
    ("retained_earnings", Bound::Signed, "Retained earnings"),
    ("ebit", Bound::Signed, "Earnings before interest and taxes"),
    ("net_income", Bound::Signed, "Net income"),
    ("previous_net_income", Bound::Signed, "Net income of the previous period"),
    ("funds_from_operations", Bound::Signed, "Funds from operations (e.g. cash flow from operations)"),
    ("book_equity", Bound::Signed, "Book value of equity"),
];

impl Statement {
    /// The values in the order of [`FIELDS`].
    pub fn values(&self) -> [f64; 10] {
        [
            self.total_assets,
            self.total_liabilities,
            self.current_assets,
            self.current_liabilities,
            self.retained_earnings,
            self.ebit,
            self.net_income,
            self.previous_net_income,
            self.funds_from_operations,
            self.book_equity,
        ]
    }
}

impl utoipa::PartialSchema for Statement {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let mut object = ObjectBuilder::new()
            .description(Some("One period's financial statement, in one currency unit (millions for the O-score)"));
        for (name, bound, description) in FIELDS {
            let (min, max) = bound.range();
            let amount = ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
                .minimum(Some(min))
                .maximum(Some(max))
                .description(Some(description));
            object = object.property(name, amount).required(name);
        }
        object.into()
    }
}

impl ToSchema for Statement {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    Safe,
    Grey,
    Distress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl Zone {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Safe => "safe",
            Self::Grey => "grey",
            Self::Distress => "distress",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Safe, Self::Grey, Self::Distress].into_iter().find(|z| z.as_str() == s)
    }
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Low, Self::Medium, Self::High, Self::Critical].into_iter().find(|l| l.as_str() == s)
    }
}

/// The ratios behind a prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ratios {
    pub working_capital_to_assets: f64,
    pub retained_earnings_to_assets: f64,
    pub ebit_to_assets: f64,
    pub book_equity_to_liabilities: f64,
    pub liabilities_to_assets: f64,
    pub current_liabilities_to_current_assets: f64,
    pub net_income_to_assets: f64,
    pub funds_from_operations_to_liabilities: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    pub model_version: String,
    /// Probability of default within a year, 0 to 1.
    pub probability: f64,
    pub risk_level: RiskLevel,
    pub o_score: f64,
    pub z_score: f64,
    pub zone: Zone,
    pub ratios: Ratios,
}

/// Input that cannot be scored, naming the field.
#[derive(Debug, Error, PartialEq)]
pub enum ModelError {
    #[error("{field} must be a finite number")]
    NotFinite { field: &'static str },
    #[error("{field} must be greater than zero")]
    NotPositive { field: &'static str },
    #[error("{field} must not be negative")]
    Negative { field: &'static str },
    #[error("{field} must be at least {MIN_POSITIVE_AMOUNT}")]
    TooSmall { field: &'static str },
    #[error("{field} must be between -{MAX_AMOUNT:e} and {MAX_AMOUNT:e}")]
    TooLarge { field: &'static str },
}

/// Risk-level cut-offs on the combined probability: below 5 % low, below 20 % medium, below 50 %
/// high, else critical. The 5 % line sits near speculative-grade one-year default rates, 50 % is
/// where default is more likely than not.
pub const CUTOFFS: [(f64, RiskLevel); 3] = [(0.05, RiskLevel::Low), (0.20, RiskLevel::Medium), (0.50, RiskLevel::High)];

/// Z'' zone boundaries with the +3.25 constant (Altman 2000): above 5.85 safe, below 4.35 distress.
const Z_SAFE: f64 = 5.85;
const Z_DISTRESS: f64 = 4.35;

/// Weight of the O-score probability in the combination; the rest comes from the Z'' zone, so a
/// firm in distress by both measures ranks above one flagged by only one.
const OHLSON_WEIGHT: f64 = 0.7;

/// Checks that a statement can be scored; the error names the first bad field.
pub fn validate(s: &Statement) -> Result<(), ModelError> {
    let values = s.values();
    if let Some(((field, ..), _)) = FIELDS.iter().zip(values).find(|(_, v)| !v.is_finite()) {
        return Err(ModelError::NotFinite { field });
    }
    for ((field, bound, _), v) in FIELDS.into_iter().zip(values) {
        let (min, _) = bound.range();
        match bound {
            Bound::Positive if v <= 0.0 => return Err(ModelError::NotPositive { field }),
            Bound::NonNegative if v < 0.0 => return Err(ModelError::Negative { field }),
            _ if v.abs() > MAX_AMOUNT => return Err(ModelError::TooLarge { field }),
            _ if v < min => return Err(ModelError::TooSmall { field }),
            _ => {}
        }
    }
    Ok(())
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Scores one statement.
pub fn predict(s: &Statement) -> Result<Prediction, ModelError> {
    validate(s)?;
    let ta = s.total_assets;
    let tl = s.total_liabilities;
    let wc = s.current_assets - s.current_liabilities;
    let ratios = Ratios {
        working_capital_to_assets: wc / ta,
        retained_earnings_to_assets: s.retained_earnings / ta,
        ebit_to_assets: s.ebit / ta,
        book_equity_to_liabilities: s.book_equity / tl,
        liabilities_to_assets: tl / ta,
        current_liabilities_to_current_assets: s.current_liabilities / s.current_assets,
        net_income_to_assets: s.net_income / ta,
        funds_from_operations_to_liabilities: s.funds_from_operations / tl,
    };
    let insolvent = if tl > ta { 1.0 } else { 0.0 };
    let two_losses = if s.net_income < 0.0 && s.previous_net_income < 0.0 { 1.0 } else { 0.0 };
    let change_denominator = s.net_income.abs() + s.previous_net_income.abs();
    let income_change =
        if change_denominator > 0.0 { (s.net_income - s.previous_net_income) / change_denominator } else { 0.0 };
    // Ohlson's size term is log(total assets / GNP price-level index); with assets in millions of
    // today's currency the index is taken as 1 (a documented simplification).
    let o_score = -1.32 - 0.407 * ta.ln() + 6.03 * ratios.liabilities_to_assets
        - 1.43 * ratios.working_capital_to_assets
        + 0.0757 * ratios.current_liabilities_to_current_assets
        - 1.72 * insolvent
        - 2.37 * ratios.net_income_to_assets
        - 1.83 * ratios.funds_from_operations_to_liabilities
        + 0.285 * two_losses
        - 0.521 * income_change;
    let z_score = 3.25
        + 6.56 * ratios.working_capital_to_assets
        + 3.26 * ratios.retained_earnings_to_assets
        + 6.72 * ratios.ebit_to_assets
        + 1.05 * ratios.book_equity_to_liabilities;
    let zone = if z_score > Z_SAFE {
        Zone::Safe
    } else if z_score < Z_DISTRESS {
        Zone::Distress
    } else {
        Zone::Grey
    };
    let zone_probability = match zone {
        Zone::Safe => 0.01,
        Zone::Grey => 0.15,
        Zone::Distress => 0.60,
    };
    let probability = (OHLSON_WEIGHT * logistic(o_score) + (1.0 - OHLSON_WEIGHT) * zone_probability).clamp(0.0, 1.0);
    let risk_level =
        CUTOFFS.iter().find(|(limit, _)| probability < *limit).map_or(RiskLevel::Critical, |(_, level)| *level);
    Ok(Prediction { model_version: MODEL_VERSION.to_owned(), probability, risk_level, o_score, z_score, zone, ratios })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sound company's statement, shared by tests elsewhere in the crate.
    pub(crate) fn healthy() -> Statement {
        Statement {
            total_assets: 1000.0,
            total_liabilities: 300.0,
            current_assets: 400.0,
            current_liabilities: 150.0,
            retained_earnings: 350.0,
            ebit: 150.0,
            net_income: 100.0,
            previous_net_income: 90.0,
            funds_from_operations: 140.0,
            book_equity: 700.0,
        }
    }

    fn distressed() -> Statement {
        Statement {
            total_assets: 100.0,
            total_liabilities: 130.0,
            current_assets: 20.0,
            current_liabilities: 45.0,
            retained_earnings: -60.0,
            ebit: -12.0,
            net_income: -15.0,
            previous_net_income: -8.0,
            funds_from_operations: -5.0,
            book_equity: -30.0,
        }
    }

    #[test]
    fn a_healthy_firm_is_low_risk_in_the_safe_zone() {
        let p = predict(&healthy()).expect("scores");
        assert_eq!((p.zone, p.risk_level), (Zone::Safe, RiskLevel::Low), "{p:?}");
        assert!(p.probability < 0.05);
        assert_eq!(p.model_version, MODEL_VERSION);
    }

    #[test]
    fn a_loss_making_insolvent_firm_is_critical_in_the_distress_zone() {
        let p = predict(&distressed()).expect("scores");
        assert_eq!((p.zone, p.risk_level), (Zone::Distress, RiskLevel::Critical), "{p:?}");
        assert!(p.probability > 0.5);
    }

    #[test]
    fn the_scores_follow_the_published_coefficients() {
        let p = predict(&healthy()).expect("scores");
        // Z'' = 3.25 + 6.56*0.25 + 3.26*0.35 + 6.72*0.15 + 1.05*(700/300)
        let z = 3.25 + 6.56 * 0.25 + 3.26 * 0.35 + 6.72 * 0.15 + 1.05 * (700.0 / 300.0);
        assert!((p.z_score - z).abs() < 1e-9);
        let o = -1.32 - 0.407 * 1000f64.ln() + 6.03 * 0.3 - 1.43 * 0.25 + 0.0757 * (150.0 / 400.0)
            - 2.37 * 0.1
            - 1.83 * (140.0 / 300.0)
            - 0.521 * (10.0 / 190.0);
        assert!((p.o_score - o).abs() < 1e-9);
    }

    #[test]
    fn every_statement_within_the_bounds_scores_to_finite_numbers() {
        let corners = |bound: Bound| {
            let (min, max) = bound.range();
            [min, max]
        };
        // Every combination of each field at its lower or upper bound: the extremes of each ratio.
        for mask in 0u32..1 << FIELDS.len() {
            let v: Vec<f64> = FIELDS
                .iter()
                .enumerate()
                .map(|(i, (_, bound, _))| corners(*bound)[usize::from(mask & (1 << i) != 0)])
                .collect();
            let s = Statement {
                total_assets: v[0],
                total_liabilities: v[1],
                current_assets: v[2],
                current_liabilities: v[3],
                retained_earnings: v[4],
                ebit: v[5],
                net_income: v[6],
                previous_net_income: v[7],
                funds_from_operations: v[8],
                book_equity: v[9],
            };
            let p = predict(&s).expect("within the bounds");
            let r = &p.ratios;
            let numbers = [
                p.probability,
                p.o_score,
                p.z_score,
                r.working_capital_to_assets,
                r.retained_earnings_to_assets,
                r.ebit_to_assets,
                r.book_equity_to_liabilities,
                r.liabilities_to_assets,
                r.current_liabilities_to_current_assets,
                r.net_income_to_assets,
                r.funds_from_operations_to_liabilities,
            ];
            assert!(numbers.iter().all(|n| n.is_finite()), "{s:?} gave {p:?}");
        }
    }

    #[test]
    fn worse_ratios_never_lower_the_probability() {
        let mut s = healthy();
        let mut last = predict(&s).expect("scores").probability;
        for _ in 0..10 {
            s.total_liabilities += 60.0;
            s.net_income -= 20.0;
            let p = predict(&s).expect("scores").probability;
            assert!(p >= last, "{p} < {last}");
            last = p;
        }
    }

    #[test]
    fn bad_inputs_name_the_field() {
        type Breaks = fn(&mut Statement);
        let cases: [(Breaks, ModelError); 9] = [
            (|s| s.total_assets = -5.0, ModelError::NotPositive { field: "total_assets" }),
            (|s| s.total_assets = 1e-9, ModelError::TooSmall { field: "total_assets" }),
            (|s| s.total_liabilities = -1.0, ModelError::NotPositive { field: "total_liabilities" }),
            (|s| s.ebit = -2e15, ModelError::TooLarge { field: "ebit" }),
            (|s| s.book_equity = 1e300, ModelError::TooLarge { field: "book_equity" }),
            (|s| s.total_assets = 0.0, ModelError::NotPositive { field: "total_assets" }),
            (|s| s.current_assets = 0.0, ModelError::NotPositive { field: "current_assets" }),
            (|s| s.total_liabilities = 0.0, ModelError::NotPositive { field: "total_liabilities" }),
            (|s| s.ebit = f64::NAN, ModelError::NotFinite { field: "ebit" }),
        ];
        for (break_it, want) in cases {
            let mut s = healthy();
            break_it(&mut s);
            assert_eq!(predict(&s).err(), Some(want));
        }
        let mut s = healthy();
        s.current_liabilities = -1.0;
        assert_eq!(
            predict(&s).err().map(|e| e.to_string()).as_deref(),
            Some("current_liabilities must not be negative")
        );
    }
}
