//! What the policy is configured with: a band per signal, bounds and cooldowns per component.

use serde::{Deserialize, Serialize};

/// The two scaled components.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Component {
    Api,
    Workers,
}

/// A signal's band and how long a breach must last.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub scale_up_above: f64,
    pub scale_down_below: f64,
    pub evaluation_period_seconds: i64,
}

/// Replica bounds and cooldowns of one component.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub scale_up_cooldown_seconds: i64,
    pub scale_down_cooldown_seconds: i64,
    pub paused: bool,
    pub fallback_replicas: Option<i32>,
}

/// Everything the policy needs besides samples and state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    pub cpu: Thresholds,
    pub memory: Thresholds,
    pub request_rate: Thresholds,
    pub queue_length: Thresholds,
    pub api: Bounds,
    pub workers: Bounds,
    /// Consecutive evaluations without usable metrics before `fallback_replicas` applies.
    pub fallback_after_failures: u32,
    /// Window of the API's "trending up" signal (the seed: 30 minutes).
    pub trend_window_seconds: i64,
    /// Newest sample older than this makes a signal unavailable (stale): two scrapes of 15 s
    /// plus a rule-evaluation delay.
    pub staleness_seconds: i64,
    /// No scale event in the opposite direction of the previous one within this many seconds
    /// (0: only the per-direction cooldowns apply, as documented in the seed).
    pub direction_change_hold_seconds: i64,
}

impl PolicyConfig {
    /// The documented defaults (DESIGN.md, from the seed).
    pub fn seed_defaults() -> Self {
        Self {
            cpu: Thresholds { scale_up_above: 70.0, scale_down_below: 30.0, evaluation_period_seconds: 300 },
            memory: Thresholds { scale_up_above: 80.0, scale_down_below: 40.0, evaluation_period_seconds: 300 },
            request_rate: Thresholds {
                scale_up_above: 1500.0,
                scale_down_below: 500.0,
                evaluation_period_seconds: 180,
            },
            queue_length: Thresholds {
                scale_up_above: 1000.0,
                scale_down_below: 100.0,
                evaluation_period_seconds: 120,
            },
            api: Bounds {
                min_replicas: 2,
                max_replicas: 20,
                scale_up_cooldown_seconds: 300,
                scale_down_cooldown_seconds: 900,
                paused: false,
                fallback_replicas: None,
            },
            workers: Bounds {
                min_replicas: 3,
                max_replicas: 50,
                scale_up_cooldown_seconds: 180,
                scale_down_cooldown_seconds: 600,
                paused: false,
                fallback_replicas: None,
            },
            fallback_after_failures: 5,
            trend_window_seconds: 1800,
            staleness_seconds: 60,
            direction_change_hold_seconds: 0,
        }
    }

    /// The project's preset, chosen with the replay simulator (docs/autoscaling.md): 30 s
    /// evaluation periods and a 60 s scale-up cooldown react within a minute to ramps; a low
    /// request-rate bar lets "busy and CPU high" count as the two signals the rule needs; a CPU
    /// band of 65/40 and a memory scale-down bar of 60 % (which the memory model passes at
    /// moderate CPU) let idle capacity go after 600 s; and a 300 s hold after a scale-down keeps
    /// a scale-up from following it, which removes flaps.
    pub fn riskplatform() -> Self {
        let seed = Self::seed_defaults();
        Self {
            cpu: Thresholds { scale_up_above: 65.0, scale_down_below: 40.0, evaluation_period_seconds: 30 },
            memory: Thresholds { scale_up_above: 80.0, scale_down_below: 60.0, evaluation_period_seconds: 30 },
            request_rate: Thresholds { scale_up_above: 300.0, scale_down_below: 100.0, evaluation_period_seconds: 30 },
            api: Bounds { scale_up_cooldown_seconds: 60, scale_down_cooldown_seconds: 600, ..seed.api },
            direction_change_hold_seconds: 300,
            ..seed
        }
    }

    pub fn bounds(&self, component: Component) -> &Bounds {
        match component {
            Component::Api => &self.api,
            Component::Workers => &self.workers,
        }
    }
}
