//! Table-driven tests of forecast sizing on a simulated clock, through `decide` as the operator
//! calls it. The pods' capacity is known (300 req/s, from the state) and CPU is not read, so each
//! case is only the request rate's recent samples, its history and the previous state.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Bounds, Component, ForecastSizing, PolicyConfig};
use crate::forecast::{Seasonality, DAY_SECONDS};
use crate::policy::{decide, Inputs};
use crate::signal::{Reading, Signal};
use crate::state::{Action, ComponentState, Driver};

const NOW: i64 = 40 * DAY_SECONDS;

fn config() -> PolicyConfig {
    let preset = PolicyConfig::riskplatform();
    PolicyConfig {
        api: Bounds { min_replicas: 2, max_replicas: 50, scale_down_cooldown_seconds: 300, ..preset.api },
        forecast: Some(ForecastSizing::PRESET),
        ..preset
    }
}

/// Samples every 15 s over the last `seconds` before NOW, valued by `f(seconds before NOW)`.
fn recent(seconds: i64, f: impl Fn(i64) -> f64) -> Reading {
    Reading::Series((0..=seconds / 15).map(|i| (NOW - seconds + i * 15, f(seconds - i * 15))).collect())
}

/// Two hours and a bit of samples: enough to score the forecast.
fn scored(f: impl Fn(i64) -> f64) -> Reading {
    recent(ForecastSizing::PRESET.recent_seconds(), f)
}

/// A minute-step history of `days` days before NOW, valued by `f(seconds before NOW)`.
fn history(days: i64, f: impl Fn(i64) -> f64) -> Option<Arc<Reading>> {
    let seconds = days * DAY_SECONDS;
    Some(Arc::new(Reading::Series((0..=seconds / 60).map(|i| (NOW - seconds + i * 60, f(seconds - i * 60))).collect())))
}

fn inputs(rate: Reading, history: Option<Arc<Reading>>, current: i32) -> Inputs {
    Inputs {
        current_replicas: current,
        ready_replicas: current,
        readings: BTreeMap::from([
            (Signal::Cpu, Reading::Unavailable("not scraped".to_owned())),
            (Signal::Memory, Reading::Unavailable("not scraped".to_owned())),
            (Signal::RequestRate, rate),
        ]),
        suppress_scale_up: None,
        request_rate_history: history,
    }
}

fn state() -> ComponentState {
    ComponentState { pod_capacity_rps: Some(300.0), ..Default::default() }
}

/// Noise that repeats every minute: +30 % on one 15 s sample in four.
fn spiky(base: f64) -> impl Fn(i64) -> f64 {
    move |ago| if ago.rem_euclid(60) == 0 { base * 1.3 } else { base }
}

struct Case {
    name: &'static str,
    inputs: Inputs,
    state: ComponentState,
    want: (Action, i32),
    driver: Option<Driver>,
    reason: &'static str,
}

#[test]
fn forecast_sizing_decides_by_forecast_reactive_rule_or_ramp() {
    let cases = vec![
        Case {
            name: "with less than two hours of samples the reactive demand rule decides",
            inputs: inputs(recent(1800, |_| 2400.0), None, 4),
            state: state(),
            // Demand sizing's preset: 2400 / (300 * 0.7) = 11.4.
            want: (Action::ScaleUp, 12),
            driver: Some(Driver::Reactive),
            reason: "needs 12 pods",
        },
        Case {
            name: "a steady rate is forecast exactly and runs the pods at the SLO utilisation",
            inputs: inputs(scored(|_| 2400.0), None, 4),
            state: state(),
            // No error: 2400 / (300 * 0.8) = 10 pods.
            want: (Action::ScaleUp, 10),
            driver: Some(Driver::Forecast),
            reason: "forecast 2400/s +0 %",
        },
        Case {
            name: "a noisy rate gets a band as wide as its measured error",
            inputs: inputs(scored(spiky(2400.0)), None, 4),
            state: state(),
            // The newest sample is a spike (level 2640); the band adds the 30 % it measured.
            want: (Action::ScaleUp, 15),
            driver: Some(Driver::Forecast),
            reason: "forecast 2640/s +30 % = 3432/s",
        },
        Case {
            name: "a rate rising out of the band is a ramp and is sized along its slope at once",
            inputs: inputs(scored(|ago| if ago < 60 { 2400.0 + 20.0 * (60 - ago) as f64 } else { 2400.0 }), None, 10),
            state: state(),
            want: (Action::ScaleUp, 19),
            driver: Some(Driver::Ramp),
            reason: "ramp: rate heading to",
        },
        Case {
            name: "after a ramp nothing is scaled down while its hold lasts",
            inputs: inputs(scored(|_| 600.0), None, 16),
            state: ComponentState { ramp_until: Some(NOW + 100), ..state() },
            want: (Action::Hold, 16),
            driver: Some(Driver::Ramp),
            reason: "no scale-down for 100 s",
        },
        Case {
            name: "a rate low for the whole stabilisation window scales down to its band",
            inputs: inputs(scored(|ago| if ago < 1200 { 600.0 } else { 2400.0 }), None, 10),
            state: state(),
            want: (Action::ScaleDown, 3),
            driver: Some(Driver::Forecast),
            reason: "highest band of the last 600 s",
        },
        Case {
            name: "a rate low for less than the stabilisation window holds",
            inputs: inputs(scored(|ago| if ago < 300 { 600.0 } else { 2400.0 }), None, 10),
            state: state(),
            want: (Action::Hold, 10),
            driver: Some(Driver::Forecast),
            reason: "within 10 pods",
        },
        Case {
            name: "a stale rate is never forecast on and never scales down",
            inputs: inputs(
                Reading::Series(vec![(NOW - 7400, 600.0), (NOW - 7300, 600.0), (NOW - 600, 600.0)]),
                None,
                10,
            ),
            state: state(),
            want: (Action::Hold, 10),
            driver: None,
            reason: "held",
        },
    ];
    for c in cases {
        let (d, _) = decide(&config(), Component::Api, &c.inputs, &c.state, NOW);
        assert_eq!((d.action, d.desired_replicas), c.want, "{}: {}", c.name, d.reason);
        assert_eq!(d.forecast.as_ref().map(|f| f.driver), c.driver, "{}: {}", c.name, d.reason);
        assert!(d.reason.contains(c.reason), "{}: reason {:?} lacks {:?}", c.name, d.reason, c.reason);
    }
}

#[test]
fn a_rise_seen_at_this_time_one_day_earlier_raises_the_forecast_before_it_happens() {
    // Yesterday the rate doubled one minute after this time of day, for an hour; today it is
    // still flat.
    let yesterday = history(2, |ago| {
        let after_this_time_of_day = (DAY_SECONDS - ago.rem_euclid(DAY_SECONDS)).rem_euclid(DAY_SECONDS);
        if (60..3600).contains(&after_this_time_of_day) {
            2400.0
        } else {
            1200.0
        }
    });
    let flat = decide(&config(), Component::Api, &inputs(scored(|_| 1200.0), None, 2), &state(), NOW).0;
    let seasonal = decide(&config(), Component::Api, &inputs(scored(|_| 1200.0), yesterday, 2), &state(), NOW).0;
    let (flat, seasonal) = (flat.forecast.expect("flat"), seasonal.forecast.expect("seasonal"));
    assert_eq!(flat.seasonality, Seasonality::None);
    assert_eq!(seasonal.seasonality, Seasonality::Daily);
    assert!(seasonal.forecast_rps > flat.forecast_rps, "{seasonal:?} vs {flat:?}");
}

#[test]
fn samples_stamped_after_now_never_reach_the_decision() {
    let past = scored(|_| 1200.0);
    let Reading::Series(mut with_future) = past.clone() else { unreachable!() };
    with_future.extend((1..=20).map(|i| (NOW + i * 15, 6000.0)));
    let future_history = history(2, |_| 1200.0).map(|h| match &*h {
        Reading::Series(s) => {
            Arc::new(Reading::Series(s.iter().copied().chain((1..=60).map(|i| (NOW + i * 60, 6000.0))).collect()))
        }
        other => Arc::new(other.clone()),
    });
    let a = decide(&config(), Component::Api, &inputs(past, history(2, |_| 1200.0), 4), &state(), NOW).0;
    let b =
        decide(&config(), Component::Api, &inputs(Reading::Series(with_future), future_history, 4), &state(), NOW).0;
    assert_eq!((a.desired_replicas, &a.forecast, &a.reason), (b.desired_replicas, &b.forecast, &b.reason));
}
