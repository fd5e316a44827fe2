//! Circuit-breaker state machine for a dependency of the platform, pure: time and observations
//! are passed in. The operator evaluates it platform-wide from the API pods' failure counters.
//!
//! Closed opens on `failure_threshold` consecutive failures, or on a failure rate above
//! `failure_rate` over the window once at least `minimum_calls` were made (so a quiet service
//! does not trip on one error). Open goes half-open after `recovery_timeout_seconds`. Half-open
//! closes once `half_open_max_calls` probe calls succeeded without a failure, and re-opens on any
//! failure (restarting the recovery timer). Missing observations keep the state: missing data
//! never closes a breaker.

use serde::{Deserialize, Serialize};

pub mod local;

/// Thresholds (documented defaults: 5 failures, 10 %, half-open after 60 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    /// Fraction, e.g. 0.10.
    pub failure_rate: f64,
    pub minimum_calls: u32,
    pub window_seconds: i64,
    pub recovery_timeout_seconds: i64,
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            failure_rate: 0.10,
            minimum_calls: 20,
            window_seconds: 60,
            recovery_timeout_seconds: 60,
            half_open_max_calls: 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
    /// No breaker: calls always go through.
    Disabled,
}

impl State {
    /// The value of the `riskplatform_circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open
    /// (a disabled breaker lets every call through, like a closed one).
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed | Self::Disabled => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// How the state is driven (the RiskPlatform's declarative override).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Auto,
    ForceOpen,
    ForceClosed,
    Disabled,
}

/// Calls seen across all API pods since the evaluation window started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub calls: f64,
    pub failures: f64,
    /// Failures since the last success (the largest streak of any pod).
    pub consecutive_failures: f64,
}

/// A breaker's state, when it was entered and why. Stored in the RiskPlatform status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerState {
    pub state: State,
    /// Unix seconds.
    pub since: i64,
    pub reason: String,
}

impl BreakerState {
    pub fn closed(since: i64) -> Self {
        Self { state: State::Closed, since, reason: "no failures observed".to_owned() }
    }
}

/// The window the next observation should cover: the configured window, or only the time since
/// the breaker went half-open, so failures from before the probe do not count against it.
pub fn observation_window(config: &BreakerConfig, current: &BreakerState, now: i64) -> i64 {
    match current.state {
        State::HalfOpen => (now - current.since).clamp(1, config.window_seconds.max(1)),
        _ => config.window_seconds.max(1),
    }
}

/// The next state. Returns the new state and whether it differs from `previous` (a transition).
pub fn evaluate(
    config: &BreakerConfig,
    mode: Mode,
    observation: Option<Observation>,
    previous: &BreakerState,
    now: i64,
) -> (BreakerState, bool) {
    let to = |state: State, reason: String| BreakerState { state, since: now, reason };
    let next = match mode {
        Mode::ForceOpen => Some(to(State::Open, "forced open by spec.circuitBreaker.overrides".to_owned())),
        Mode::ForceClosed => Some(to(State::Closed, "forced closed by spec.circuitBreaker.overrides".to_owned())),
        Mode::Disabled => Some(to(State::Disabled, "disabled by spec.circuitBreaker.overrides".to_owned())),
        Mode::Auto => auto(config, observation, previous, now),
    };
    match next {
        // Leaving a forced state or a real transition.
        Some(n) if n.state != previous.state => (n, true),
        // Same state: keep the original time and reason.
        _ => (previous.clone(), false),
    }
}

fn auto(
    config: &BreakerConfig,
    observation: Option<Observation>,
    previous: &BreakerState,
    now: i64,
) -> Option<BreakerState> {
    let to = |state: State, reason: String| Some(BreakerState { state, since: now, reason });
    match previous.state {
        // A forced or disabled breaker handed back to Auto starts closed and is judged afresh.
        State::Disabled => to(State::Closed, "automatic again".to_owned()),
        State::Open if now - previous.since >= config.recovery_timeout_seconds => {
            to(State::HalfOpen, format!("recovery timeout of {} s elapsed; probing", config.recovery_timeout_seconds))
        }
        State::Open => None,
        State::Closed => {
            let o = observation?;
            if o.consecutive_failures >= f64::from(config.failure_threshold) {
                return to(State::Open, format!("{} consecutive failures", o.consecutive_failures.round()));
            }
            let rate = if o.calls > 0.0 { o.failures / o.calls } else { 0.0 };
            if o.calls >= f64::from(config.minimum_calls) && rate > config.failure_rate {
                return to(
                    State::Open,
                    format!(
                        "failure rate {:.1} % over {} s ({} calls)",
                        rate * 100.0,
                        config.window_seconds,
                        o.calls.round()
                    ),
                );
            }
            None
        }
        State::HalfOpen => {
            let o = observation?;
            if o.failures > 0.0 {
                to(State::Open, format!("{} failed probe calls", o.failures.round()))
            } else if o.calls >= f64::from(config.half_open_max_calls) {
                to(State::Closed, format!("{} probe calls succeeded", o.calls.round()))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
