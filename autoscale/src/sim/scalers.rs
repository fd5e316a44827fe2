//! The autoscalers the simulator compares: the project's policy (through the same `decide` the
//! operator runs) and the Kubernetes HPA algorithm, with KEDA as a slower-polling HPA.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::config::{Component, PolicyConfig};
use crate::policy::{decide, signals_of, Inputs};
use crate::signal::{Reading, Signal};
use crate::state::ComponentState;

/// What a scaler sees at one sync: replicas asked for, replicas ready, and per-pod metrics.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub now: i64,
    pub current: i32,
    pub ready: i32,
    pub cpu: f64,
    pub memory: f64,
    pub request_rate: f64,
}

pub trait Scaler {
    fn name(&self) -> String;
    /// Seconds between two syncs.
    fn period(&self) -> i64;
    /// The replica count wanted now.
    fn desired(&mut self, obs: &Observation) -> i32;
}

/// Seconds between two samples of the request-rate history, as the operator's range query steps.
pub const HISTORY_STEP_SECONDS: i64 = 60;

/// The project's policy fed with the series Prometheus would hold: 15 s resolution over each
/// signal's read window and, for forecast sizing, the request rate per minute over days. It is
/// only ever given observations up to the current tick.
pub struct PolicyScaler {
    name: String,
    config: PolicyConfig,
    state: ComponentState,
    recent: VecDeque<Observation>,
    keep_seconds: i64,
    history: Arc<Reading>,
}

impl PolicyScaler {
    pub fn new(name: &str, config: PolicyConfig) -> Self {
        let keep_seconds = signals_of(Component::Api).iter().map(|s| config.read_window_seconds(*s)).max().unwrap_or(0);
        Self {
            name: name.to_owned(),
            config,
            state: ComponentState::default(),
            recent: VecDeque::new(),
            keep_seconds,
            history: Arc::new(Reading::Series(Vec::new())),
        }
    }

    fn series(&self, signal: Signal, f: impl Fn(&Observation) -> f64) -> Reading {
        let from = self.recent.back().map_or(0, |o| o.now) - self.config.read_window_seconds(signal);
        Reading::Series(self.recent.iter().filter(|o| o.now >= from).map(|o| (o.now, f(o))).collect())
    }

    /// Appends the minute's sample to the history and drops what the forecast no longer reads
    /// (in batches of a day, so the buffer is not shifted every minute).
    fn remember(&mut self, obs: &Observation) {
        let Some(forecast) = self.config.forecast else { return };
        if obs.now % HISTORY_STEP_SECONDS != 0 {
            return;
        }
        if let Reading::Series(samples) = Arc::make_mut(&mut self.history) {
            samples.push((obs.now, obs.request_rate));
            let keep_from = obs.now - forecast.history_seconds();
            if samples.first().is_some_and(|(t, _)| *t < keep_from - crate::forecast::DAY_SECONDS) {
                let stale = samples.partition_point(|(t, _)| *t < keep_from);
                samples.drain(..stale);
            }
        }
    }
}

impl Scaler for PolicyScaler {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn period(&self) -> i64 {
        15
    }

    fn desired(&mut self, obs: &Observation) -> i32 {
        self.recent.push_back(*obs);
        while self.recent.front().is_some_and(|o| o.now < obs.now - self.keep_seconds) {
            self.recent.pop_front();
        }
        self.remember(obs);
        let inputs = Inputs {
            current_replicas: obs.current,
            ready_replicas: obs.ready,
            readings: BTreeMap::from([
                (Signal::Cpu, self.series(Signal::Cpu, |o| o.cpu)),
                (Signal::Memory, self.series(Signal::Memory, |o| o.memory)),
                (Signal::RequestRate, self.series(Signal::RequestRate, |o| o.request_rate)),
            ]),
            suppress_scale_up: None,
            request_rate_history: self.config.forecast.map(|_| Arc::clone(&self.history)),
        };
        let (decision, state) = decide(&self.config, Component::Api, &inputs, &self.state, obs.now);
        // The simulator keeps no history of its own decisions; only cooldowns and the measured
        // capacity matter.
        self.state = ComponentState { history: Vec::new(), last_decision: None, ..state };
        decision.desired_replicas
    }
}

/// The autoscaling/v2 HPA algorithm with the default behavior: tolerance 0.1, scale-up by at
/// most max(100 %, 4 pods) per period, scale-down to the highest recommendation of the last 300 s.
pub struct HpaScaler {
    name: String,
    target: f64,
    period: i64,
    min: i32,
    max: i32,
    /// Seconds between metric polls (KEDA polls every 30 s and feeds the HPA).
    poll: i64,
    last_poll: Option<(i64, f64)>,
    recommendations: VecDeque<(i64, i32)>,
}

/// Default `scaleDown.stabilizationWindowSeconds`.
const STABILISATION_SECONDS: i64 = 300;
const TOLERANCE: f64 = 0.1;

impl HpaScaler {
    pub fn hpa(target: f64, min: i32, max: i32) -> Self {
        Self::new(format!("hpa@{target}"), target, min, max, 15)
    }

    pub fn keda(target: f64, min: i32, max: i32) -> Self {
        Self::new("keda".to_owned(), target, min, max, 30)
    }

    fn new(name: String, target: f64, min: i32, max: i32, poll: i64) -> Self {
        Self { name, target, period: 15, min, max, poll, last_poll: None, recommendations: VecDeque::new() }
    }
}

impl Scaler for HpaScaler {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn period(&self) -> i64 {
        self.period
    }

    fn desired(&mut self, obs: &Observation) -> i32 {
        let cpu = match self.last_poll {
            Some((at, value)) if obs.now - at < self.poll => value,
            _ => {
                self.last_poll = Some((obs.now, obs.cpu));
                obs.cpu
            }
        };
        let current = obs.current.max(1);
        let ratio = cpu / (self.target * 100.0);
        // Not-ready pods count as 0 % for a scale-up, which the ready-based sum below expresses.
        let raw = if (ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            ((f64::from(obs.ready.max(1)) * cpu) / (self.target * 100.0)).ceil() as i32
        };
        let recommendation = raw.clamp(self.min, self.max);
        self.recommendations.push_back((obs.now, recommendation));
        while self.recommendations.front().is_some_and(|(t, _)| *t <= obs.now - STABILISATION_SECONDS) {
            self.recommendations.pop_front();
        }
        if recommendation > current {
            recommendation.min(current.saturating_mul(2).max(current + 4)).min(self.max)
        } else {
            let stabilised = self.recommendations.iter().map(|(_, r)| *r).max().unwrap_or(recommendation);
            stabilised.min(current).max(self.min)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(now: i64, current: i32, cpu: f64) -> Observation {
        Observation { now, current, ready: current, cpu, memory: 50.0, request_rate: 1000.0 }
    }

    #[test]
    fn the_hpa_ignores_changes_within_the_tolerance() {
        let mut h = HpaScaler::hpa(0.7, 2, 20);
        assert_eq!(h.desired(&obs(0, 4, 75.0)), 4);
    }

    #[test]
    fn the_hpa_scales_up_proportionally_and_at_most_doubles_or_adds_four() {
        let mut h = HpaScaler::hpa(0.5, 2, 50);
        assert_eq!(h.desired(&obs(0, 4, 100.0)), 8);
        let mut h = HpaScaler::hpa(0.1, 2, 50);
        assert_eq!(h.desired(&obs(0, 10, 100.0)), 20);
        let mut h = HpaScaler::hpa(0.1, 2, 50);
        assert_eq!(h.desired(&obs(0, 2, 100.0)), 6);
    }

    #[test]
    fn the_hpa_scale_down_waits_for_the_stabilisation_window() {
        let mut h = HpaScaler::hpa(0.7, 2, 20);
        assert_eq!(h.desired(&obs(0, 10, 70.0)), 10);
        assert_eq!(h.desired(&obs(15, 10, 20.0)), 10, "the 10 recommended 15 s ago still counts");
        assert_eq!(h.desired(&obs(300, 10, 20.0)), 3);
    }

    #[test]
    fn no_future_of_the_trace_reaches_the_forecasting_policy() {
        // Two traces equal for 300 minutes, then one triples. Until the load starts moving toward
        // the first different minute (minute 299 interpolates toward it) both runs must decide the
        // same, or the policy saw the future.
        let model = crate::sim::model::Model::default();
        let base: Vec<f64> = (0..400).map(|m| 1500.0 + 900.0 * (f64::from(m) / 37.0).sin()).collect();
        let surge: Vec<f64> = base.iter().enumerate().map(|(m, v)| if m >= 300 { v * 3.0 } else { *v }).collect();
        let run = |rps: &[f64]| {
            let mut scaler = PolicyScaler::new("riskplatform", PolicyConfig::riskplatform());
            crate::sim::engine::simulate(&mut scaler, rps, &model, |_| {}).replicas_per_row
        };
        let (calm, surged) = (run(&base), run(&surge));
        assert_eq!(calm[..299], surged[..299]);
        assert_ne!(calm[299..], surged[299..], "the surge itself is seen once it happens");
    }

    #[test]
    fn keda_sees_a_new_value_only_every_thirty_seconds() {
        let mut k = HpaScaler::keda(0.7, 2, 20);
        assert_eq!(k.desired(&obs(0, 4, 70.0)), 4);
        assert_eq!(k.desired(&obs(15, 4, 140.0)), 4, "the poll at 0 s is still current");
        assert_eq!(k.desired(&obs(30, 4, 140.0)), 8);
    }
}
