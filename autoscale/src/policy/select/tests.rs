use super::*;
use crate::config::PolicyConfig;

const NOW: i64 = 1_000_000;

fn bounds() -> Bounds {
    Bounds { min_replicas: 2, max_replicas: 20, ..PolicyConfig::riskplatform().api }
}

fn rate(at: i64, rps: f64) -> Reading {
    Reading::Series(vec![(at, rps)])
}

#[test]
fn each_shadow_is_charged_its_pods_and_the_price_of_its_overload() {
    let f = ForecastSizing::PRESET;
    let mut sel = fresh(&f, 2, NOW - 15);
    sel.steady.pods.extend([NOW - 600; 4]);
    // 1,000 req/s: the two pods of forecast sizing serve 480 within the SLO, steady's six 1,440.
    charge(&mut sel, &f, &rate(NOW, 1000.0), 300.0, NOW, 60);
    let expected_forecast = 15.0 * (2.0 / 3600.0 + 1.0 / 60.0);
    let expected_steady = 15.0 * (6.0 / 3600.0);
    assert!((sel.forecast.cost - expected_forecast).abs() < 1e-12, "{}", sel.forecast.cost);
    assert!((sel.steady.cost - expected_steady).abs() < 1e-12, "{}", sel.steady.cost);
    assert_eq!(sel.at, NOW);
}

#[test]
fn pods_still_starting_cost_but_do_not_serve() {
    let f = ForecastSizing::PRESET;
    let mut sel = fresh(&f, 2, NOW - 15);
    sel.steady.pods.extend([NOW - 30; 4]);
    charge(&mut sel, &f, &rate(NOW, 1000.0), 300.0, NOW, 60);
    assert!(sel.steady.cost > 15.0 / 60.0, "six pods paid for, two serving: overloaded");
}

#[test]
fn a_stale_rate_or_a_long_absence_is_not_charged_as_if_seen() {
    let f = ForecastSizing::PRESET;
    let mut stale = fresh(&f, 2, NOW - 15);
    charge(&mut stale, &f, &rate(NOW - 300, 1000.0), 300.0, NOW, 60);
    assert_eq!((stale.forecast.cost, stale.steady.cost, stale.at), (0.0, 0.0, NOW));
    let mut away = fresh(&f, 2, NOW - 86_400);
    charge(&mut away, &f, &rate(NOW, 100.0), 300.0, NOW, 60);
    assert!((away.forecast.cost - 60.0 * 2.0 / 3600.0).abs() < 1e-12, "charged one minute, not a day");
}

#[test]
fn a_shadow_moves_as_the_bounds_and_cooldowns_let_the_real_fleet_move() {
    let b = bounds();
    let up = |n| Want::Up(String::new(), n);
    let down = |n| Want::Down(String::new(), n);
    let cases = [
        ("up at once", ShadowFleet { pods: vec![0; 3], ..Default::default() }, up(5), 5),
        ("never past maxReplicas", ShadowFleet { pods: vec![0; 3], ..Default::default() }, up(50), 20),
        (
            "down waits for the cooldown after the last event",
            ShadowFleet { pods: vec![0; 5], last_scale_up: Some(NOW - 100), ..Default::default() },
            down(3),
            5,
        ),
        (
            "down once it is over",
            ShadowFleet { pods: vec![0; 5], last_scale_up: Some(NOW - 300), ..Default::default() },
            down(3),
            3,
        ),
        ("never below minReplicas", ShadowFleet { pods: vec![0; 5], ..Default::default() }, down(1), 2),
        ("a hold holds", ShadowFleet { pods: vec![0; 5], ..Default::default() }, Want::Hold(String::new()), 5),
    ];
    for (why, mut fleet, want, pods) in cases {
        step(&mut fleet, Some(&want), &b, NOW);
        assert_eq!(fleet.pods.len(), pods, "{why}");
    }
    let mut fleet = ShadowFleet { pods: vec![NOW - 600, NOW - 15, NOW - 600], ..Default::default() };
    step(&mut fleet, Some(&down(2)), &b, NOW);
    assert_eq!(fleet.pods, [NOW - 600, NOW - 600], "the pod still starting goes first");
    assert_eq!(fleet.last_scale_down, Some(NOW));
}

#[test]
fn the_other_sizing_takes_over_only_when_clearly_cheaper() {
    let f = ForecastSizing::PRESET;
    let cases = [
        (10.0, 9.6, Sizing::Forecast, "4 % cheaper is within the margin"),
        (10.0, 9.4, Sizing::Steady, "6 % cheaper takes over"),
    ];
    for (forecast, steady, active, why) in cases {
        let mut sel = fresh(&f, 2, NOW);
        sel.forecast.cost = forecast;
        sel.steady.cost = steady;
        choose(&mut sel);
        assert_eq!(sel.active, active, "{why}");
    }
    let mut back = fresh(&f, 2, NOW);
    back.active = Sizing::Steady;
    back.steady.cost = 10.0;
    back.forecast.cost = 9.0;
    choose(&mut back);
    assert_eq!(back.active, Sizing::Forecast, "and back again");
}
