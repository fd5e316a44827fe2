//! Forecast sizing settings of the API (`spec.autoscaling.forecast`), every field defaulting to
//! the riskplatform preset.

use kube::KubeSchema;
use riskplatform_autoscale::ForecastSizing;
use serde::{Deserialize, Serialize};

/// Forecast sizing of the API; every field defaults to the riskplatform preset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.horizonSeconds > 0 && self.scaleDownHorizonSeconds > 0 && self.rampWindowSeconds > 0 && self.rampHoldSeconds >= 0 && self.riseWindowSeconds >= 0").message("autoscaling.forecast: horizons and the ramp window must be positive, the ramp hold and the rise window not negative"),
    validation = Rule::new("0.0 < self.maxUtilisation && self.maxUtilisation <= 1.0 && 0.0 < self.errorQuantile && self.errorQuantile < 1.0 && 0.0 < self.scaleDownQuantile && self.scaleDownQuantile < 1.0").message("autoscaling.forecast: maxUtilisation must lie in (0, 1], errorQuantile and scaleDownQuantile in (0, 1)"),
    validation = Rule::new("self.errorWindowSeconds >= 600 && self.errorWindowSeconds <= 86400 && self.stabilisationWindowSeconds > 0 && self.stabilisationWindowSeconds <= self.errorWindowSeconds").message("autoscaling.forecast: errorWindowSeconds must lie in [600, 86400] and stabilisationWindowSeconds in (0, errorWindowSeconds]"),
    validation = Rule::new("0.0 < self.steadyShare && self.steadyShare <= 1.0 && self.overloadPrice >= 0.0 && self.selectionWindowSeconds > 0").message("autoscaling.forecast: steadyShare must lie in (0, 1], overloadPrice must not be negative and selectionWindowSeconds must be positive")
)]
pub struct ForecastSpec {
    /// Seconds ahead the fleet must cover: the API pods' start-up time plus one evaluation.
    #[serde(default = "forecast_horizon")]
    pub horizon_seconds: i64,
    /// Share of a pod's capacity it serves within the latency SLO (from a load test).
    #[serde(default = "forecast_max_utilisation")]
    pub max_utilisation: f64,
    /// Quantile of the forecast's recent signed errors (req/s) added to a scale-up's forecast.
    #[serde(default = "forecast_error_quantile")]
    pub error_quantile: f64,
    /// Quantile of the scale-down horizon's forecast errors (req/s) the fleet left keeps: the
    /// share of scale-downs not undone within that horizon.
    #[serde(default = "forecast_scale_down_quantile")]
    pub scale_down_quantile: f64,
    /// Seconds over which the forecast measures the rate's rise and carries it on to the horizon
    /// (0: no rise).
    #[serde(default = "forecast_rise_window")]
    pub rise_window_seconds: i64,
    /// Seconds of past forecasts whose errors are scored (at most a day: the operator reads them
    /// at full resolution).
    #[serde(default = "forecast_error_window")]
    pub error_window_seconds: i64,
    /// Seconds over which the ramp path measures the rate's slope.
    #[serde(default = "forecast_ramp_window")]
    pub ramp_window_seconds: i64,
    /// Seconds without scale-down after the ramp path fired.
    #[serde(default = "forecast_ramp_hold")]
    pub ramp_hold_seconds: i64,
    /// A scale-down sizes for the highest band of this many seconds.
    #[serde(default = "forecast_stabilisation")]
    pub stabilisation_window_seconds: i64,
    /// A scale-down also covers the band of a forecast this many seconds ahead.
    #[serde(default = "forecast_scale_down_horizon")]
    pub scale_down_horizon_seconds: i64,
    /// Steady sizing, which the API follows instead when its own fleet has cost less lately: a
    /// fleet for this quantile of the last hour's request rate.
    #[serde(default = "forecast_steady_share")]
    pub steady_share: f64,
    /// Replica-hours one minute of overload costs when forecast and steady sizing are compared by
    /// what each one's own fleet would have cost; 0 follows forecast sizing alone.
    #[serde(default = "forecast_overload_price")]
    pub overload_price: f64,
    /// Seconds over which those costs fade.
    #[serde(default = "forecast_selection_window")]
    pub selection_window_seconds: i64,
}

impl ForecastSpec {
    /// The sizing in the shape the policy takes.
    pub fn sizing(&self) -> ForecastSizing {
        ForecastSizing {
            horizon_seconds: self.horizon_seconds,
            max_utilisation: self.max_utilisation,
            error_quantile: self.error_quantile,
            scale_down_quantile: self.scale_down_quantile,
            rise_window_seconds: self.rise_window_seconds,
            error_window_seconds: self.error_window_seconds,
            ramp_window_seconds: self.ramp_window_seconds,
            ramp_hold_seconds: self.ramp_hold_seconds,
            stabilisation_window_seconds: self.stabilisation_window_seconds,
            scale_down_horizon_seconds: self.scale_down_horizon_seconds,
            steady_share: self.steady_share,
            overload_price: self.overload_price,
            selection_window_seconds: self.selection_window_seconds,
        }
    }
}

fn forecast_horizon() -> i64 {
    ForecastSizing::PRESET.horizon_seconds
}
fn forecast_max_utilisation() -> f64 {
    ForecastSizing::PRESET.max_utilisation
}
fn forecast_error_quantile() -> f64 {
    ForecastSizing::PRESET.error_quantile
}
fn forecast_scale_down_quantile() -> f64 {
    ForecastSizing::PRESET.scale_down_quantile
}
fn forecast_rise_window() -> i64 {
    ForecastSizing::PRESET.rise_window_seconds
}
fn forecast_error_window() -> i64 {
    ForecastSizing::PRESET.error_window_seconds
}
fn forecast_ramp_window() -> i64 {
    ForecastSizing::PRESET.ramp_window_seconds
}
fn forecast_ramp_hold() -> i64 {
    ForecastSizing::PRESET.ramp_hold_seconds
}
fn forecast_stabilisation() -> i64 {
    ForecastSizing::PRESET.stabilisation_window_seconds
}
fn forecast_scale_down_horizon() -> i64 {
    ForecastSizing::PRESET.scale_down_horizon_seconds
}
fn forecast_steady_share() -> f64 {
    ForecastSizing::PRESET.steady_share
}
fn forecast_overload_price() -> f64 {
    ForecastSizing::PRESET.overload_price
}
fn forecast_selection_window() -> i64 {
    ForecastSizing::PRESET.selection_window_seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AutoscalingSpec;

    #[test]
    fn an_empty_forecast_spec_is_the_riskplatform_preset() {
        let spec: ForecastSpec = serde_json::from_str("{}").expect("every field has a default");
        assert_eq!(spec.sizing(), ForecastSizing::PRESET);
    }

    #[test]
    fn forecast_sizing_is_off_unless_asked_for() {
        let spec: AutoscalingSpec = serde_json::from_str(r#"{"demand": {}}"#).expect("demand alone");
        assert_eq!(spec.forecast, None);
        let spec: AutoscalingSpec =
            serde_json::from_str(r#"{"demand": {}, "forecast": {"errorQuantile": 0.95}}"#).expect("forecast");
        assert_eq!(spec.forecast.map(|f| f.sizing().error_quantile), Some(0.95));
    }
}
