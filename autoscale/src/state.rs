//! What the policy remembers between evaluations and what it decided. Stored in the
//! RiskPlatform status, so cooldowns and history survive an operator restart.

use serde::{Deserialize, Serialize};

use crate::forecast::Seasonality;
use crate::signal::{Signal, SignalState};

/// Decisions kept in the bounded history.
pub const HISTORY_LEN: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    ScaleUp,
    ScaleDown,
    Hold,
}

/// One signal as the policy saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalInput {
    pub signal: Signal,
    /// Newest value in the window, when usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub scale_up_above: f64,
    pub scale_down_below: f64,
    pub window_seconds: i64,
    pub state: SignalState,
    /// Why the signal is unavailable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Which part of forecast sizing drove a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Driver {
    /// The forecast's upper band sized the fleet.
    Forecast,
    /// Too little history to score a forecast: the reactive demand rule decided.
    Reactive,
    /// The rate rose out of the forecast's band: its slope projection sized the fleet at once.
    Ramp,
    /// Steady sizing decided: its own fleet has cost less than forecast sizing's lately.
    Steady,
}

/// The sizings the API chooses between by measured cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Sizing {
    Forecast,
    Steady,
}

/// A fleet run beside the real one as one sizing alone would have run it, fed the same rate.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowFleet {
    /// Unix seconds each of its pods was asked for; a pod serves a start-up later.
    pub pods: Vec<i64>,
    /// Its replica-hours plus the price of its overloaded minutes, fading over the selection
    /// window.
    pub cost: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_up: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_down: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_until: Option<i64>,
}

/// The choice between forecast and steady sizing and the shadow fleets it is measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// The sizing the real fleet follows.
    pub active: Sizing,
    /// Unix seconds the costs were last charged.
    pub at: i64,
    pub forecast: ShadowFleet,
    pub steady: ShadowFleet,
}

/// What forecast sizing saw and which part of it decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastRecord {
    pub driver: Driver,
    /// Forecast request rate at the end of the horizon (req/s), when history allowed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_rps: Option<f64>,
    /// Upper edge of the error band around the forecast (req/s): what the fleet is sized for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_rps: Option<f64>,
    /// The measured error quantile that set the band, in req/s added to the forecast (negative when
    /// the forecast mostly overshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_quantile: Option<f64>,
    /// The ramp path's projection of the rate over the horizon (req/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_rps: Option<f64>,
    pub seasonality: Seasonality,
}

/// One evaluation: inputs, the verdict and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Unix seconds.
    pub at: i64,
    pub action: Action,
    pub current_replicas: i32,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
    /// For people, e.g. "held: scale-down cooldown, 412 s left".
    pub reason: String,
    pub inputs: Vec<SignalInput>,
    /// Forecast sizing's view, when it is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastRecord>,
}

/// Memory of one component's autoscaler.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentState {
    /// Unix seconds of the last scale-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_up: Option<i64>,
    /// Unix seconds of the last scale-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_down: Option<i64>,
    /// Evaluations in a row in which no signal was usable.
    #[serde(default)]
    pub consecutive_metric_failures: u32,
    /// Requests per second one ready pod serves at 100 % CPU, as last measured while the pods
    /// were not saturated (demand sizing); kept so a saturated fleet is still sized right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_capacity_rps: Option<f64>,
    /// Unix seconds until which the ramp path holds scale-downs (it fired recently).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_until: Option<i64>,
    /// Forecast sizing's choice of steady sizing by measured cost, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
    /// The latest decisions that changed something or said something new, newest last.
    #[serde(default)]
    pub history: Vec<Decision>,
}

impl ComponentState {
    /// Records `d`, keeping the history bounded and free of repeated identical holds.
    pub fn record(&mut self, d: Decision) {
        let repeats = self.history.last().is_some_and(|last| {
            last.action == d.action && last.reason == d.reason && last.desired_replicas == d.desired_replicas
        });
        if !repeats || d.action != Action::Hold {
            self.history.push(d.clone());
            let excess = self.history.len().saturating_sub(HISTORY_LEN);
            self.history.drain(..excess);
        }
        self.last_decision = Some(d);
    }
}
