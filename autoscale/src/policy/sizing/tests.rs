use std::collections::BTreeMap;

use crate::config::{Component, ForecastSizing, PolicyConfig};
use crate::policy::{decide, Inputs};
use crate::signal::{Reading, Signal};
use crate::state::{Action, ComponentState, Decision, Driver, Selection, ShadowFleet, Sizing};

const NOW: i64 = 1_000_000;

/// A flat rate sampled every 15 s over more than forecast sizing and steady sizing read.
fn flat(rps: f64, now: i64) -> Reading {
    let seconds = ForecastSizing::PRESET.recent_seconds() + 120;
    Reading::Series((0..=seconds / 15).map(|i| (now - seconds + i * 15, rps)).collect())
}

fn inputs(rps: f64, current: i32, now: i64) -> Inputs {
    Inputs {
        current_replicas: current,
        ready_replicas: current,
        readings: BTreeMap::from([
            (Signal::Cpu, Reading::Unavailable("not scraped".to_owned())),
            (Signal::Memory, Reading::Unavailable("not scraped".to_owned())),
            (Signal::RequestRate, flat(rps, now)),
        ]),
        suppress_scale_up: None,
        request_rate_history: None,
    }
}

/// Five pods, both shadows at five serving pods with the given costs, forecast sizing in charge.
fn state(forecast_cost: f64, steady_cost: f64) -> ComponentState {
    let shadow = |cost| ShadowFleet { pods: vec![NOW - 600; 5], cost, ..Default::default() };
    let selection = Selection {
        active: Sizing::Forecast,
        at: NOW - 15,
        forecast: shadow(forecast_cost),
        steady: shadow(steady_cost),
    };
    ComponentState { pod_capacity_rps: Some(300.0), selection: Some(selection), ..Default::default() }
}

fn run(config: &PolicyConfig, state: &ComponentState, now: i64) -> (Decision, ComponentState) {
    decide(config, Component::Api, &inputs(400.0, 5, now), state, now)
}

#[test]
fn steady_sizing_decides_once_its_fleet_has_cost_clearly_less() {
    let config = PolicyConfig::riskplatform();
    let (d, next) = run(&config, &state(10.0, 1.0), NOW);
    assert_eq!(next.selection.map(|s| s.active), Some(Sizing::Steady));
    // 400 req/s all hour: two pods of 240 within the SLO.
    assert_eq!((d.action, d.desired_replicas), (Action::ScaleDown, 2));
    assert_eq!(d.forecast.as_ref().map(|r| r.driver), Some(Driver::Steady));
    assert!(d.reason.contains("steady") && d.reason.contains("its fleet cost 1.0"), "{}", d.reason);

    let (d, next) = run(&config, &state(10.0, 9.8), NOW);
    assert_eq!(next.selection.map(|s| s.active), Some(Sizing::Forecast), "2 % cheaper is not enough");
    assert_eq!(d.forecast.map(|r| r.driver), Some(Driver::Forecast));
}

#[test]
fn without_an_overload_price_forecast_sizing_decides_alone() {
    let mut config = PolicyConfig::riskplatform();
    config.forecast = config.forecast.map(|f| ForecastSizing { overload_price: 0.0, ..f });
    let (d, next) = run(&config, &state(10.0, 1.0), NOW);
    assert_eq!(d.forecast.map(|r| r.driver), Some(Driver::Forecast));
    assert_eq!(next.selection, state(10.0, 1.0).selection, "left as it was");
}

#[test]
fn the_choice_and_its_shadows_survive_a_restart() {
    let config = PolicyConfig::riskplatform();
    let (_, kept) = run(&config, &state(10.0, 1.0), NOW);
    let restored: ComponentState =
        serde_json::from_value(serde_json::to_value(&kept).expect("encode")).expect("decode");
    let later = NOW + 15;
    assert_eq!(run(&config, &restored, later), run(&config, &kept, later));
    assert_eq!(restored.selection.map(|s| s.active), Some(Sizing::Steady));
}
