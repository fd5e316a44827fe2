//! The scaling decision: a pure function of (config, inputs, previous state, now).
//!
//! API servers follow the seed's rule: scale up when at least two of {CPU high, memory high,
//! request rate high, trending up} hold; scale down when CPU and memory are both low; otherwise
//! hold. Workers scale on queue length. Cooldowns: a scale-up waits `scaleUpCooldownSeconds` after
//! the previous scale-up (a scale-up right after a scale-down is allowed: load came back); a
//! scale-down waits `scaleDownCooldownSeconds` after the last scale event of either direction, so
//! capacity just added is never removed before it had time to help.
//!
//! Sizing: proportional, like the HPA: `ceil(ready * value / target)`, where the target is the
//! middle of the signal's band (50 % CPU for 70/30), so one step lands inside the band instead of
//! on its edge. A step adds at least one replica and at most max(current, 4) (the HPA's default
//! 100 % or 4 pods); a scale-down removes at least one and at most half.
//!
//! With `demand` configured (the riskplatform preset), the API is instead sized from its request
//! rate and a pod's measured capacity (`demand.rs`); the seed's rule decides whenever the request
//! rate or a capacity measurement is missing. With `forecast` configured as well, the fleet is
//! sized for a forecast of the rate a start-up ahead (`forecast.rs`), and the demand rule decides
//! only while the history is too short to score that forecast; with an overload price, steady
//! sizing (`steady.rs`) takes over when its own fleet has cost less lately (`select.rs`,
//! `sizing.rs`).

mod demand;
mod forecast;
mod select;
mod sizing;
mod steady;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Component, DemandSizing, PolicyConfig, Thresholds};
use crate::signal::{judge, rising, Reading, Signal, SignalState};
use crate::state::{Action, ComponentState, Decision, SignalInput};

/// What the operator observed for one component at `now`.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub current_replicas: i32,
    /// Ready pods of the current rollout: the capacity that actually serves.
    pub ready_replicas: i32,
    pub readings: BTreeMap<Signal, Reading>,
    /// Some(reason) blocks scale-ups, e.g. "database breaker open", unless the API's own CPU is
    /// saturated: then the failures behind the reason are most likely the overloaded pods' own
    /// timeouts, and more pods are the cure.
    pub suppress_scale_up: Option<String>,
    /// Days of the API's request rate at minute resolution, for forecast sizing's seasons; shared,
    /// because it is thousands of samples and the same for several evaluations.
    pub request_rate_history: Option<Arc<Reading>>,
}

fn band(config: &PolicyConfig, s: Signal) -> &Thresholds {
    match s {
        Signal::Cpu => &config.cpu,
        Signal::Memory => &config.memory,
        Signal::RequestRate => &config.request_rate,
        Signal::QueueLength => &config.queue_length,
    }
}

/// Signals each component decides on.
pub fn signals_of(component: Component) -> &'static [Signal] {
    match component {
        Component::Api => &[Signal::Cpu, Signal::Memory, Signal::RequestRate],
        Component::Workers => &[Signal::QueueLength],
    }
}

fn label(s: Signal) -> &'static str {
    match s {
        Signal::Cpu => "cpu",
        Signal::Memory => "memory",
        Signal::RequestRate => "request rate",
        Signal::QueueLength => "queue length",
    }
}

/// What a rule asks for: a direction, why, and the replica count it sized.
#[derive(Clone)]
enum Want {
    Up(String, i32),
    Down(String, i32),
    Hold(String),
}

/// Decides the replica count of `component` and returns the decision with the updated state.
pub fn decide(
    config: &PolicyConfig,
    component: Component,
    inputs: &Inputs,
    previous: &ComponentState,
    now: i64,
) -> (Decision, ComponentState) {
    let bounds = config.bounds(component);
    let current = inputs.current_replicas;
    let ready = inputs.ready_replicas.clamp(0, current.max(0));
    let missing = Reading::Unavailable("not queried".to_owned());

    let mut judged = Vec::new();
    for &s in signals_of(component) {
        let b = band(config, s);
        let reading = inputs.readings.get(&s).unwrap_or(&missing);
        let (state, value, note) = judge(reading, b, now, config.staleness_seconds);
        judged.push(SignalInput {
            signal: s,
            value,
            scale_up_above: b.scale_up_above,
            scale_down_below: b.scale_down_below,
            window_seconds: b.evaluation_period_seconds,
            state,
            note,
        });
    }
    let state_of = |s: Signal| judged.iter().find(|i| i.signal == s).map_or(SignalState::Unavailable, |i| i.state);
    let mut next = previous.clone();
    if let (Component::Api, Some(sizing)) = (component, &config.demand) {
        let newest = |s: Signal| judged.iter().find(|i| i.signal == s).and_then(|i| i.value);
        let measured =
            demand::measured_capacity(sizing, newest(Signal::Cpu), newest(Signal::RequestRate), ready, current);
        next.pod_capacity_rps = measured.or(previous.pod_capacity_rps);
    }
    let all_unavailable = judged.iter().all(|i| i.state == SignalState::Unavailable);
    next.consecutive_metric_failures =
        if all_unavailable { previous.consecutive_metric_failures.saturating_add(1) } else { 0 };

    let mut record = None;
    let (desired, action, reason) = if bounds.paused {
        (current, Action::Hold, "paused".to_owned())
    } else if current < bounds.min_replicas {
        (bounds.min_replicas, Action::ScaleUp, format!("below minReplicas {}", bounds.min_replicas))
    } else if current > bounds.max_replicas {
        (bounds.max_replicas, Action::ScaleDown, format!("above maxReplicas {}", bounds.max_replicas))
    } else if all_unavailable {
        let why = judged.iter().filter_map(|i| i.note.clone()).next().unwrap_or_default();
        match bounds.fallback_replicas {
            Some(fallback) if next.consecutive_metric_failures >= config.fallback_after_failures => {
                let target = fallback.clamp(bounds.min_replicas, bounds.max_replicas);
                let action = match target.cmp(&current) {
                    std::cmp::Ordering::Greater => Action::ScaleUp,
                    std::cmp::Ordering::Less => Action::ScaleDown,
                    std::cmp::Ordering::Equal => Action::Hold,
                };
                let n = next.consecutive_metric_failures;
                (
                    target,
                    action,
                    format!("fallback to {target} replicas: metrics unavailable for {n} evaluations ({why})"),
                )
            }
            _ => (current, Action::Hold, format!("held: metrics unavailable ({why})")),
        }
    } else {
        let by_demand =
            match (component, &config.demand, next.pod_capacity_rps, inputs.readings.get(&Signal::RequestRate)) {
                (Component::Api, Some(sizing), Some(capacity), Some(rate)) => {
                    let history = inputs.request_rate_history.as_deref();
                    let (want, sized_by) =
                        sizing::by_rate(config, sizing, rate, history, capacity, current, previous, now, &mut next);
                    record = sized_by;
                    want
                }
                (Component::Api, Some(sizing), None, _) => inputs
                    .readings
                    .get(&Signal::Cpu)
                    .and_then(|cpu| demand::saturated_rule(sizing, cpu, current, ready, now, config.staleness_seconds)),
                _ => None,
            };
        let want = match (by_demand, component) {
            (Some(want), _) => want,
            (None, Component::Api) => api_rule(config, inputs, &state_of, now, &judged, ready),
            (None, Component::Workers) => match state_of(Signal::QueueLength) {
                SignalState::High => Want::Up("queue length high".to_owned(), size_up(current, ready, &judged)),
                SignalState::Low => Want::Down("queue length low".to_owned(), size_down(current, &judged)),
                _ => Want::Hold("queue length within its band".to_owned()),
            },
        };
        let saturation = config.demand.map_or(DemandSizing::PRESET.saturated_cpu_percent, |d| d.saturated_cpu_percent);
        let cpu = judged.iter().find(|i| i.signal == Signal::Cpu).and_then(|i| i.value);
        let saturated = component == Component::Api && cpu.is_some_and(|c| c >= saturation);
        apply_want(want, config, component, inputs, saturated, previous, now)
    };

    match action {
        Action::ScaleUp if desired != current => next.last_scale_up = Some(now),
        Action::ScaleDown if desired != current => next.last_scale_down = Some(now),
        _ => {}
    }
    let decision = Decision {
        at: now,
        action: if desired == current { Action::Hold } else { action },
        current_replicas: current,
        ready_replicas: ready,
        desired_replicas: desired,
        reason,
        inputs: judged,
        forecast: record,
    };
    next.record(decision.clone());
    (decision, next)
}

fn api_rule(
    config: &PolicyConfig,
    inputs: &Inputs,
    state_of: &dyn Fn(Signal) -> SignalState,
    now: i64,
    judged: &[SignalInput],
    ready: i32,
) -> Want {
    let current = inputs.current_replicas;
    let mut high: Vec<&str> = [Signal::Cpu, Signal::Memory, Signal::RequestRate]
        .into_iter()
        .filter(|s| state_of(*s) == SignalState::High)
        .map(label)
        .collect();
    let trend =
        |s| inputs.readings.get(&s).and_then(|r| rising(r, now, config.trend_window_seconds, config.staleness_seconds));
    if trend(Signal::Cpu) == Some(true) && trend(Signal::RequestRate) == Some(true) {
        high.push("trending up");
    }
    if high.len() >= 2 {
        Want::Up(format!("{} high", high.join(", ")), size_up(current, ready, judged))
    } else if state_of(Signal::Cpu) == SignalState::Low && state_of(Signal::Memory) == SignalState::Low {
        Want::Down("cpu and memory low".to_owned(), size_down(current, judged))
    } else if high.len() == 1 {
        Want::Hold(format!("only {} high; scale-up needs two signals", high[0]))
    } else {
        Want::Hold("signals within their bands".to_owned())
    }
}

/// Applies bounds, cooldowns and suppression to what a rule asks for.
fn apply_want(
    want: Want,
    config: &PolicyConfig,
    component: Component,
    inputs: &Inputs,
    saturated: bool,
    previous: &ComponentState,
    now: i64,
) -> (i32, Action, String) {
    let bounds = config.bounds(component);
    let current = inputs.current_replicas;
    match want {
        Want::Hold(why) => (current, Action::Hold, format!("held: {why}")),
        Want::Up(mut why, sized) => {
            match &inputs.suppress_scale_up {
                Some(block) if !saturated => return (current, Action::Hold, format!("suppressed: {block}")),
                Some(block) => why = format!("{why}; not suppressed by {block}: the pods are saturated"),
                None => {}
            }
            if current >= bounds.max_replicas {
                return (current, Action::Hold, format!("held: {why} but at maxReplicas {}", bounds.max_replicas));
            }
            if let Some(left) = left(previous.last_scale_up, bounds.scale_up_cooldown_seconds, now) {
                return (current, Action::Hold, format!("held: scale-up cooldown, {left} s left ({why})"));
            }
            let desired = sized.clamp(bounds.min_replicas, bounds.max_replicas);
            (desired, Action::ScaleUp, format!("scale up {current} -> {desired}: {why}"))
        }
        Want::Down(why, sized) => {
            if current <= bounds.min_replicas {
                return (current, Action::Hold, format!("held: {why} but at minReplicas {}", bounds.min_replicas));
            }
            let last_event = previous.last_scale_up.max(previous.last_scale_down);
            if let Some(left) = left(last_event, bounds.scale_down_cooldown_seconds, now) {
                return (current, Action::Hold, format!("held: scale-down cooldown, {left} s left ({why})"));
            }
            let desired = sized.clamp(bounds.min_replicas, bounds.max_replicas);
            (desired, Action::ScaleDown, format!("scale down {current} -> {desired}: {why}"))
        }
    }
}

/// Seconds of cooldown left after an event at `since`, if any.
fn left(since: Option<i64>, cooldown: i64, now: i64) -> Option<i64> {
    since.map(|t| cooldown - (now - t)).filter(|left| *left > 0)
}

fn target(i: &SignalInput) -> f64 {
    (i.scale_up_above + i.scale_down_below) / 2.0
}

/// Proportional step up from the hottest utilisation-like signal; request rate is a total over
/// all pods and does not shrink with more pods, so it votes but does not size.
fn size_up(current: i32, ready: i32, judged: &[SignalInput]) -> i32 {
    let base = f64::from(ready.max(1));
    let proportional = judged
        .iter()
        .filter(|i| i.signal != Signal::RequestRate && i.state == SignalState::High)
        .filter_map(|i| i.value.map(|v| (base * v / target(i).max(f64::EPSILON)).ceil()))
        .fold(0.0_f64, f64::max);
    let step_cap = current.max(4);
    let desired =
        if proportional.is_finite() && proportional > 0.0 { proportional.min(f64::from(i32::MAX)) as i32 } else { 0 };
    desired.clamp(current.saturating_add(1), current.saturating_add(step_cap))
}

/// Proportional step down sized by CPU (or the queue, for workers): memory gates a scale-down
/// but holds caches and does not shrink with load, so it would keep idle pods. At most half goes
/// in one step.
fn size_down(current: i32, judged: &[SignalInput]) -> i32 {
    let needed = judged
        .iter()
        .filter(|i| matches!(i.signal, Signal::Cpu | Signal::QueueLength))
        .filter_map(|i| i.value.map(|v| (f64::from(current) * v / target(i).max(f64::EPSILON)).ceil()))
        .fold(0.0_f64, f64::max);
    let floor = (current + 1) / 2;
    let desired = if needed.is_finite() { needed.min(f64::from(i32::MAX)) as i32 } else { current };
    desired.clamp(floor, (current - 1).max(floor))
}

#[cfg(test)]
mod tests;
