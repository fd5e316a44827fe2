//! What the policy is configured with: a band per signal, bounds and cooldowns per component.

use serde::{Deserialize, Serialize};

use crate::signal::Signal;

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

/// Sizing the API from its request rate (demand) instead of the seed's two-signal rule: CPU
/// saturates at 100 % and then hides how much more load is waiting, the request rate does not.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandSizing {
    /// A scale-up sizes the fleet so each pod runs at this share of its capacity:
    /// `ceil(rate / (capacity * scale_up_utilisation))`, and happens as soon as that exceeds the
    /// current replicas.
    pub scale_up_utilisation: f64,
    /// A scale-down sizes for this share, below `scale_up_utilisation`: a fleet just sized down
    /// has headroom before the next scale-up, so load that merely returns does not flap it.
    pub scale_down_utilisation: f64,
    /// A scale-up sizes for the lowest rate of this window, so one odd sample adds no pods.
    pub scale_up_window_seconds: i64,
    /// The fleet a scale-up asks for: `ceil(rate / (capacity * target_utilisation))`.
    pub target_utilisation: f64,
    /// A scale-up projects the rate this many seconds ahead along its slope over the scale-up
    /// window (never down): new pods serve only after starting up.
    pub lookahead_seconds: i64,
    /// A scale-down sizes for the highest rate of this window (the HPA's stabilisation window):
    /// capacity goes only once the load has stayed low this long.
    pub stabilisation_window_seconds: i64,
    /// CPU percent at or above which the rate per pod no longer measures a pod's capacity
    /// (saturated pods queue what they cannot serve), so the last unsaturated estimate is kept.
    pub saturated_cpu_percent: f64,
}

impl DemandSizing {
    /// The riskplatform preset, chosen with the replay simulator on the NASA and WorldCup98
    /// traces: scale up once pods would run above 72 % and size for 70 %, scale down to 65 % of
    /// the highest rate of 15 minutes. The 7-point gap between the bars and the long window keep
    /// flaps rare on minute-to-minute noise; a 30 s scale-up window ignores one-sample spikes.
    pub const PRESET: Self = Self {
        scale_up_utilisation: 0.72,
        target_utilisation: 0.7,
        scale_down_utilisation: 0.65,
        scale_up_window_seconds: 30,
        lookahead_seconds: 0,
        stabilisation_window_seconds: 900,
        saturated_cpu_percent: 90.0,
    };
}

/// Sizing the API from a forecast of its request rate (on top of demand sizing, whose measured pod
/// capacity it uses): pods ready when the load arrives instead of a start-up delay after it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastSizing {
    /// How far ahead the fleet must cover the load: a pod's start-up time plus one evaluation,
    /// because a pod asked for now serves only then and the next decision comes one interval later.
    pub horizon_seconds: i64,
    /// Share of a pod's capacity it serves within the latency SLO (from the service's load test);
    /// the fleet is sized so the forecast's upper band runs pods at this share.
    pub max_utilisation: f64,
    /// The forecast adds the level's rise over this window, carried on to the horizon (0: none):
    /// on a ramp the level alone is a horizon behind the load.
    #[serde(default = "preset_rise_window_seconds")]
    pub rise_window_seconds: i64,
    /// A scale-up sizes for the forecast plus this quantile of its recent signed errors in req/s
    /// (the lowest rate of the start-up that ended the horizon minus the forecast): the share of
    /// horizons whose lasting load the band should cover. Below 0.5 the band may lie under the
    /// forecast.
    pub error_quantile: f64,
    /// A scale-down sizes for the forecast of the whole scale-down horizon plus this quantile of
    /// its own signed errors (the highest of the horizon's load and of its scale-up bands, minus
    /// the forecast): pods removed now must neither overload nor be wanted back by the scale-up
    /// rule within it, so this is the share of scale-downs that are not undone.
    #[serde(default = "preset_scale_down_quantile")]
    pub scale_down_quantile: f64,
    /// Errors of the forecasts of this many seconds are scored; shorter history decides by the
    /// reactive demand rule.
    pub error_window_seconds: i64,
    /// The ramp path projects the rate along its slope over this window; when that projection
    /// leaves the forecast's band it sizes the fleet at once.
    pub ramp_window_seconds: i64,
    /// After the ramp path fired, nothing is scaled down for this long.
    pub ramp_hold_seconds: i64,
    /// A scale-down sizes for the highest scale-down band of this window.
    pub stabilisation_window_seconds: i64,
    /// A scale-down also covers the band of a forecast this far ahead, scored on its own errors:
    /// the fleet left must hold for this long, or the next scale-up undoes the scale-down (a flap).
    pub scale_down_horizon_seconds: i64,
    /// Steady sizing, the alternative the API may follow instead: a fleet for this quantile of the
    /// last hour's rate (`policy/steady.rs`).
    #[serde(default = "preset_steady_share")]
    pub steady_share: f64,
    /// Replica-hours one overloaded minute costs when choosing between forecast and steady sizing
    /// by what each one's own fleet would have cost (`policy/select.rs`); 0 follows forecast
    /// sizing alone.
    #[serde(default = "preset_overload_price")]
    pub overload_price: f64,
    /// The costs of that choice fade over this many seconds.
    #[serde(default = "preset_selection_window_seconds")]
    pub selection_window_seconds: i64,
}

fn preset_steady_share() -> f64 {
    ForecastSizing::PRESET.steady_share
}

fn preset_overload_price() -> f64 {
    ForecastSizing::PRESET.overload_price
}

fn preset_selection_window_seconds() -> i64 {
    ForecastSizing::PRESET.selection_window_seconds
}

fn preset_rise_window_seconds() -> i64 {
    ForecastSizing::PRESET.rise_window_seconds
}

fn preset_scale_down_quantile() -> f64 {
    ForecastSizing::PRESET.scale_down_quantile
}

impl ForecastSizing {
    /// The riskplatform preset, chosen with the replay simulator on NASA, WorldCup98 and four
    /// synthetic traces (docs/autoscaling.md). The horizon is the model's 60 s start-up plus the
    /// 15 s interval; 0.8 is the utilisation at which the API's p95 meets its 300 ms SLO. A
    /// scale-up covers 0.85 of the measured lasting misses and a scale-down 0.75 of the next
    /// 300 s (the flap interval), scored against the load and the scale-up band both: the
    /// scale-down quantile sets where a noisy load rests, 0.75 is the lowest that kept NASA's
    /// flaps under a tenth of hpa@0.7's, and scoring errors over the last hour rather than two
    /// follows a day's turns sooner. The rise and ramp windows are eight samples, enough for a
    /// slope that is not one minute's noise; a 300 s stabilisation window cut NASA's flaps
    /// five-fold against none, and the ramp hold is 0 because the scale-down band already keeps
    /// what a ramp added. Steady sizing at 0.93 of the hour is the share of a sweep that beat
    /// hpa@0.7 on NASA with the fewest flaps; an overloaded minute priced at one replica-hour, with
    /// costs fading over three days, is the first price tried (NASA picks steady sizing below
    /// 1.29, the bursty trace keeps forecast sizing above 1.2).
    pub const PRESET: Self = Self {
        horizon_seconds: 75,
        max_utilisation: 0.8,
        error_quantile: 0.85,
        scale_down_quantile: 0.75,
        rise_window_seconds: 120,
        error_window_seconds: 3600,
        ramp_window_seconds: 120,
        ramp_hold_seconds: 0,
        stabilisation_window_seconds: 300,
        scale_down_horizon_seconds: 300,
        steady_share: 0.93,
        overload_price: 1.0,
        selection_window_seconds: 3 * 86_400,
    };

    /// How far back the policy needs the request rate at minute resolution: a week for the weekly
    /// season plus the scored errors and the seasonal smoothing.
    pub fn history_seconds(&self) -> i64 {
        crate::forecast::WEEK_SECONDS + self.error_window_seconds + 2 * crate::forecast::SEASONAL_SMOOTHING_SECONDS
    }

    /// Seconds from asking for a pod to it serving: the horizon less the evaluation it includes.
    pub fn start_up_seconds(&self) -> i64 {
        (self.horizon_seconds - crate::signal::STEP_SECONDS).max(crate::signal::STEP_SECONDS)
    }

    /// How far back the policy needs the request rate at full resolution.
    pub fn recent_seconds(&self) -> i64 {
        self.error_window_seconds
            + self.horizon_seconds.max(self.scale_down_horizon_seconds)
            + crate::forecast::LEVEL_SECONDS
            + self.rise_window_seconds.max(0)
    }
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
    /// Demand-based sizing of the API (None: the seed's rule decides alone).
    #[serde(default)]
    pub demand: Option<DemandSizing>,
    /// Forecast-based sizing of the API; it needs `demand` for the measured pod capacity and its
    /// reactive rule (None: demand sizing alone).
    #[serde(default)]
    pub forecast: Option<ForecastSizing>,
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
            demand: None,
            forecast: None,
        }
    }

    /// The project's preset, chosen with the replay simulator (docs/autoscaling.md): the seed's
    /// thresholds (they decide only until a pod's capacity has been measured, or while the
    /// request rate is unavailable) plus demand sizing. Scale-ups may follow each other every
    /// evaluation, because demand sizing counts pods still starting and never asks for them twice;
    /// a scale-down waits 300 s after any scale event, so capacity just added is not given back
    /// within the flap interval.
    pub fn riskplatform() -> Self {
        let seed = Self::seed_defaults();
        Self {
            api: Bounds { scale_up_cooldown_seconds: 15, scale_down_cooldown_seconds: 300, ..seed.api },
            demand: Some(DemandSizing::PRESET),
            forecast: Some(ForecastSizing::PRESET),
            ..seed
        }
    }

    /// How far back the operator reads `signal`: its evaluation period, the trend window for CPU
    /// and request rate, and for the request rate also the demand and forecast windows.
    pub fn read_window_seconds(&self, signal: Signal) -> i64 {
        let demand = self.demand.map_or(0, |d| d.stabilisation_window_seconds.max(d.scale_up_window_seconds));
        let demand = demand.max(self.forecast.map_or(0, |f| f.recent_seconds()));
        match signal {
            Signal::Cpu => self.cpu.evaluation_period_seconds.max(self.trend_window_seconds),
            Signal::Memory => self.memory.evaluation_period_seconds,
            Signal::RequestRate => {
                self.request_rate.evaluation_period_seconds.max(self.trend_window_seconds).max(demand)
            }
            Signal::QueueLength => self.queue_length.evaluation_period_seconds,
        }
    }

    pub fn bounds(&self, component: Component) -> &Bounds {
        match component {
            Component::Api => &self.api,
            Component::Workers => &self.workers,
        }
    }
}
