//! Table-driven tests of demand-based sizing, through `decide` as the operator calls it.

use std::collections::BTreeMap;

use super::*;
use crate::config::{Component, PolicyConfig};
use crate::policy::{decide, Inputs};
use crate::signal::Signal;
use crate::state::{Action, ComponentState};

const NOW: i64 = 1_000_000;

/// Samples every 15 s over the last `seconds`, valued by `f(seconds ago)`.
fn series(seconds: i64, f: impl Fn(i64) -> f64) -> Reading {
    Reading::Series((0..=seconds / 15).map(|i| (NOW - seconds + i * 15, f(seconds - i * 15))).collect())
}

fn flat(value: f64) -> Reading {
    series(1800, |_| value)
}

fn sizing() -> DemandSizing {
    DemandSizing {
        scale_up_utilisation: 0.9,
        target_utilisation: 0.8,
        scale_down_utilisation: 0.7,
        scale_up_window_seconds: 30,
        lookahead_seconds: 0,
        stabilisation_window_seconds: 900,
        saturated_cpu_percent: 90.0,
    }
}

fn config(sizing: DemandSizing) -> PolicyConfig {
    let seed = PolicyConfig::seed_defaults();
    PolicyConfig {
        demand: Some(sizing),
        api: crate::config::Bounds { scale_up_cooldown_seconds: 15, scale_down_cooldown_seconds: 15, ..seed.api },
        ..seed
    }
}

/// API inputs with `ready` pods at `cpu` percent serving `rate`.
fn inputs(cpu: f64, rate: Reading, ready: i32) -> Inputs {
    Inputs {
        current_replicas: ready,
        ready_replicas: ready,
        readings: BTreeMap::from([
            (Signal::Cpu, flat(cpu)),
            (Signal::Memory, flat(30.0 + 0.3 * cpu)),
            (Signal::RequestRate, rate),
        ]),
        suppress_scale_up: None,
        request_rate_history: None,
    }
}

fn knowing(capacity: f64) -> ComponentState {
    ComponentState { pod_capacity_rps: Some(capacity), ..Default::default() }
}

struct Case {
    name: &'static str,
    sizing: DemandSizing,
    inputs: Inputs,
    state: ComponentState,
    want: (Action, i32),
    want_reason: &'static str,
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let (d, _) = decide(&config(c.sizing), Component::Api, &c.inputs, &c.state, NOW);
        assert_eq!((d.action, d.desired_replicas), c.want, "{}: {}", c.name, d.reason);
        assert!(d.reason.contains(c.want_reason), "{}: reason {:?} lacks {:?}", c.name, d.reason, c.want_reason);
    }
}

#[test]
fn the_capacity_is_measured_only_while_pods_are_neither_idle_nor_saturated() {
    let s = sizing();
    for (name, cpu, rate, ready, current, want) in [
        ("four pods at 50 % serving 600/s serve 300/s each at 100 %", 50.0, 600.0, 4, 4, Some(300.0)),
        ("saturated pods queue what they cannot serve", 95.0, 2000.0, 4, 4, None),
        ("nearly idle pods say little", 2.0, 20.0, 4, 4, None),
        ("no ready pod measures nothing", 50.0, 600.0, 0, 0, None),
        ("pods still starting share the cpu signal's denominator", 25.0, 600.0, 4, 8, None),
    ] {
        assert_eq!(measured_capacity(&s, Some(cpu), Some(rate), ready, current), want, "{name}");
    }
    assert_eq!(measured_capacity(&s, None, Some(600.0), 4, 4), None, "without cpu");
}

#[test]
fn demand_sizing_follows_the_request_rate() {
    // 800/s on 4 pods at 300/s each: 67 % CPU, within both bars.
    let spike_last = series(1800, |ago| if ago == 0 { 2000.0 } else { 800.0 });
    let ramp = series(1800, |ago| 1050.0 - 5.0 * ago.min(30) as f64);
    run(vec![
        Case {
            name: "a rate the fleet serves holds",
            sizing: sizing(),
            inputs: inputs(800.0 / 12.0, flat(800.0), 4),
            state: ComponentState::default(),
            want: (Action::Hold, 4),
            want_reason: "within the capacity of 4 pods",
        },
        Case {
            name: "a rate above the scale-up bar scales up, measuring the capacity on the way",
            sizing: DemandSizing { scale_up_utilisation: 0.8, ..sizing() },
            // 1020/s on 4 pods at 85 %: 300/s each; 1020 / (300 * 0.8) = 4.25, so 5.
            inputs: inputs(85.0, flat(1020.0), 4),
            state: ComponentState::default(),
            want: (Action::ScaleUp, 5),
            want_reason: "request rate 1020/s needs 5 pods of 300/s",
        },
        Case {
            name: "saturated pods are sized in one step with the last unsaturated capacity",
            sizing: sizing(),
            inputs: inputs(100.0, flat(3000.0), 4),
            state: knowing(300.0),
            // 3000 / (300 * 0.9) = 11.1 > 4 pods; 3000 / (300 * 0.8) = 12.5, so 13.
            want: (Action::ScaleUp, 13),
            want_reason: "request rate 3000/s needs 13 pods of 300/s",
        },
        Case {
            name: "a spike shorter than the scale-up window adds no pods",
            sizing: sizing(),
            inputs: inputs(100.0, spike_last, 4),
            state: knowing(300.0),
            want: (Action::Hold, 4),
            want_reason: "within the capacity",
        },
        Case {
            name: "a rising rate is projected over the lookahead",
            sizing: DemandSizing { lookahead_seconds: 60, ..sizing() },
            inputs: inputs(1050.0 / 12.0, ramp.clone(), 4),
            state: knowing(300.0),
            // The lowest rate of the window is 900/s, rising 5/s: 1200/s in 60 s needs 5 pods.
            want: (Action::ScaleUp, 5),
            want_reason: "request rate 1200/s",
        },
        Case {
            name: "without a lookahead the same ramp holds",
            sizing: sizing(),
            inputs: inputs(1050.0 / 12.0, ramp, 4),
            state: knowing(300.0),
            want: (Action::Hold, 4),
            want_reason: "within the capacity",
        },
    ]);
}

#[test]
fn scale_down_waits_for_the_stabilisation_window() {
    // 5 pods serving 300/s (20 % CPU); the rate was 1000/s until `ago_high` seconds ago.
    let was_busy = |ago_high: i64| series(1800, move |ago| if ago > ago_high { 1000.0 } else { 300.0 });
    run(vec![
        Case {
            name: "a peak inside the window keeps the capacity it needs",
            sizing: sizing(),
            inputs: inputs(20.0, was_busy(600), 5),
            state: ComponentState::default(),
            want: (Action::Hold, 5),
            want_reason: "within the capacity of 5 pods",
        },
        Case {
            name: "once the peak left the window the fleet shrinks to the scale-down utilisation",
            sizing: sizing(),
            inputs: inputs(20.0, was_busy(1000), 5),
            state: ComponentState::default(),
            // 300 / (300 * 0.7) = 1.4: 2 pods, which is also minReplicas.
            want: (Action::ScaleDown, 2),
            want_reason: "peak request rate 300/s of the last 900 s needs 2 pods",
        },
        Case {
            name: "samples shorter than the window never scale down",
            sizing: sizing(),
            inputs: inputs(20.0, series(600, |_| 300.0), 5),
            state: ComponentState::default(),
            want: (Action::Hold, 5),
            want_reason: "a scale-down needs 900 s of samples",
        },
        Case {
            name: "the scale-down leaves headroom below the scale-up bar",
            sizing: sizing(),
            // 1000/s needs ceil(1000 / 210) = 5 pods at 70 %, which run at 67 % each: a rate
            // back at 1000/s stays below the scale-up bar of 90 %.
            inputs: inputs(1000.0 / 18.0, flat(1000.0), 6),
            state: ComponentState::default(),
            want: (Action::ScaleDown, 5),
            want_reason: "needs 5 pods",
        },
    ]);
}

#[test]
fn without_a_request_rate_or_a_capacity_the_seed_rule_decides() {
    let no_rate = Inputs {
        readings: BTreeMap::from([(Signal::Cpu, flat(95.0)), (Signal::Memory, flat(90.0))]),
        ..inputs(95.0, flat(0.0), 4)
    };
    let (d, _) = decide(&config(sizing()), Component::Api, &no_rate, &knowing(300.0), NOW);
    assert_eq!((d.action, d.desired_replicas), (Action::ScaleUp, 8), "{}", d.reason);
    assert!(d.reason.contains("cpu, memory high"), "{}", d.reason);
    // Saturated from the start: nothing measured yet, so the CPU sizes the step (4 * 100 / 80).
    let (d, next) =
        decide(&config(sizing()), Component::Api, &inputs(100.0, flat(3000.0), 4), &Default::default(), NOW);
    assert_eq!((d.action, d.desired_replicas), (Action::ScaleUp, 5), "{}", d.reason);
    assert!(d.reason.contains("no pod capacity measured yet"), "{}", d.reason);
    assert_eq!(next.pod_capacity_rps, None);
}

#[test]
fn the_measured_capacity_survives_a_restart_and_old_status_still_parses() {
    let (_, state) = decide(&config(sizing()), Component::Api, &inputs(50.0, flat(600.0), 4), &Default::default(), NOW);
    assert_eq!(state.pod_capacity_rps, Some(300.0));
    let json = serde_json::to_value(&state).unwrap_or_default();
    assert_eq!(json["podCapacityRps"], serde_json::json!(300.0));
    let restored: Option<ComponentState> = serde_json::from_value(json).ok();
    assert_eq!(restored.as_ref(), Some(&state));
    // Saturated now: the remembered measurement stays.
    let (_, later) = decide(&config(sizing()), Component::Api, &inputs(100.0, flat(3000.0), 4), &state, NOW + 15);
    assert_eq!(later.pod_capacity_rps, Some(300.0));
    let old: Option<ComponentState> =
        serde_json::from_value(serde_json::json!({"lastScaleUp": 5, "consecutiveMetricFailures": 0, "history": []}))
            .ok();
    assert_eq!(old.map(|s| (s.last_scale_up, s.pod_capacity_rps)), Some((Some(5), None)));
}

#[test]
fn the_operator_reads_the_request_rate_over_the_stabilisation_window() {
    let mut c = config(DemandSizing { stabilisation_window_seconds: 3600, ..sizing() });
    assert_eq!(c.read_window_seconds(Signal::RequestRate), 3600);
    c.demand = None;
    assert_eq!(c.read_window_seconds(Signal::RequestRate), 1800, "the seed's trend window");
    assert_eq!(c.read_window_seconds(Signal::Memory), 300);
}

#[test]
fn saturated_pods_whose_capacity_was_never_measured_scale_up_in_proportion_to_their_cpu() {
    let starting = Inputs { current_replicas: 3, ..inputs(100.0, flat(260.0), 2) };
    let brief = Inputs {
        readings: BTreeMap::from([
            (Signal::Cpu, series(1800, |ago| if ago <= 15 { 100.0 } else { 60.0 })),
            (Signal::Memory, flat(40.0)),
            (Signal::RequestRate, flat(130.0)),
        ]),
        ..inputs(100.0, flat(260.0), 2)
    };
    run(vec![
        Case {
            name: "two pods at 100 % with nothing measured ask for 2 * 100 / 80 pods",
            sizing: sizing(),
            inputs: inputs(100.0, flat(260.0), 2),
            state: ComponentState::default(),
            want: (Action::ScaleUp, 3),
            want_reason: "no pod capacity measured yet needs 3 pods",
        },
        Case {
            name: "three saturated pods ask for four",
            sizing: sizing(),
            inputs: inputs(95.0, flat(400.0), 3),
            state: ComponentState::default(),
            want: (Action::ScaleUp, 4),
            want_reason: "cpu 95 %",
        },
        Case {
            name: "a pod still starting is waited for",
            sizing: sizing(),
            inputs: starting,
            state: ComponentState::default(),
            want: (Action::Hold, 3),
            want_reason: "",
        },
        Case {
            name: "saturation for less than the scale-up window is not acted on",
            sizing: sizing(),
            inputs: brief,
            state: ComponentState::default(),
            want: (Action::Hold, 2),
            want_reason: "",
        },
    ]);
}
