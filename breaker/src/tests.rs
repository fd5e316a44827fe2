//! Table-driven tests of the breaker on a simulated clock.

use super::*;

const NOW: i64 = 10_000;

fn obs(calls: f64, failures: f64, consecutive: f64) -> Option<Observation> {
    Some(Observation { calls, failures, consecutive_failures: consecutive })
}

fn state(s: State, since: i64) -> BreakerState {
    BreakerState { state: s, since, reason: "before".to_owned() }
}

struct Case {
    name: &'static str,
    mode: Mode,
    observation: Option<Observation>,
    previous: BreakerState,
    want: State,
    transition: bool,
    reason: &'static str,
}

#[test]
fn the_breaker_moves_between_states_as_documented() {
    let cases = [
        Case {
            name: "opens after five consecutive failures",
            mode: Mode::Auto,
            observation: obs(5.0, 5.0, 5.0),
            previous: state(State::Closed, 0),
            want: State::Open,
            transition: true,
            reason: "5 consecutive failures",
        },
        Case {
            name: "four consecutive failures keep it closed",
            mode: Mode::Auto,
            observation: obs(4.0, 4.0, 4.0),
            previous: state(State::Closed, 0),
            want: State::Closed,
            transition: false,
            reason: "before",
        },
        Case {
            name: "opens when the failure rate exceeds ten percent with enough calls",
            mode: Mode::Auto,
            observation: obs(100.0, 11.0, 1.0),
            previous: state(State::Closed, 0),
            want: State::Open,
            transition: true,
            reason: "failure rate 11.0 %",
        },
        Case {
            name: "exactly ten percent stays closed",
            mode: Mode::Auto,
            observation: obs(100.0, 10.0, 1.0),
            previous: state(State::Closed, 0),
            want: State::Closed,
            transition: false,
            reason: "before",
        },
        Case {
            name: "a quiet service does not trip on one error",
            mode: Mode::Auto,
            observation: obs(3.0, 1.0, 1.0),
            previous: state(State::Closed, 0),
            want: State::Closed,
            transition: false,
            reason: "before",
        },
        Case {
            name: "open stays open before the recovery timeout",
            mode: Mode::Auto,
            observation: obs(0.0, 0.0, 0.0),
            previous: state(State::Open, NOW - 59),
            want: State::Open,
            transition: false,
            reason: "before",
        },
        Case {
            name: "goes half-open after the recovery timeout",
            mode: Mode::Auto,
            observation: None,
            previous: state(State::Open, NOW - 60),
            want: State::HalfOpen,
            transition: true,
            reason: "recovery timeout of 60 s",
        },
        Case {
            name: "a failed probe reopens",
            mode: Mode::Auto,
            observation: obs(2.0, 1.0, 1.0),
            previous: state(State::HalfOpen, NOW - 5),
            want: State::Open,
            transition: true,
            reason: "1 failed probe calls",
        },
        Case {
            name: "successful probes close it",
            mode: Mode::Auto,
            observation: obs(3.0, 0.0, 0.0),
            previous: state(State::HalfOpen, NOW - 5),
            want: State::Closed,
            transition: true,
            reason: "3 probe calls succeeded",
        },
        Case {
            name: "too few probes keep it half-open",
            mode: Mode::Auto,
            observation: obs(2.0, 0.0, 0.0),
            previous: state(State::HalfOpen, NOW - 5),
            want: State::HalfOpen,
            transition: false,
            reason: "before",
        },
        Case {
            name: "missing prometheus data keeps an open breaker open",
            mode: Mode::Auto,
            observation: None,
            previous: state(State::Open, NOW - 10),
            want: State::Open,
            transition: false,
            reason: "before",
        },
        Case {
            name: "missing prometheus data never closes a half-open breaker",
            mode: Mode::Auto,
            observation: None,
            previous: state(State::HalfOpen, NOW - 10),
            want: State::HalfOpen,
            transition: false,
            reason: "before",
        },
        Case {
            name: "force open wins over a healthy dependency",
            mode: Mode::ForceOpen,
            observation: obs(100.0, 0.0, 0.0),
            previous: state(State::Closed, 0),
            want: State::Open,
            transition: true,
            reason: "forced open",
        },
        Case {
            name: "force closed wins over failures",
            mode: Mode::ForceClosed,
            observation: obs(100.0, 100.0, 100.0),
            previous: state(State::Open, NOW - 1),
            want: State::Closed,
            transition: true,
            reason: "forced closed",
        },
        Case {
            name: "disabled reports disabled",
            mode: Mode::Disabled,
            observation: obs(100.0, 100.0, 100.0),
            previous: state(State::Closed, 0),
            want: State::Disabled,
            transition: true,
            reason: "disabled",
        },
        Case {
            name: "back to auto from disabled starts closed",
            mode: Mode::Auto,
            observation: obs(0.0, 0.0, 0.0),
            previous: state(State::Disabled, 0),
            want: State::Closed,
            transition: true,
            reason: "automatic again",
        },
    ];
    for c in cases {
        let (next, transition) = evaluate(&BreakerConfig::default(), c.mode, c.observation, &c.previous, NOW);
        assert_eq!((next.state, transition), (c.want, c.transition), "{}", c.name);
        assert!(next.reason.contains(c.reason), "{}: reason {:?}", c.name, next.reason);
        if transition {
            assert_eq!(next.since, NOW, "{}: a transition starts now", c.name);
        } else {
            assert_eq!(next, c.previous, "{}: no transition keeps the state as it was", c.name);
        }
    }
}

#[test]
fn a_failed_probe_restarts_the_recovery_timer() {
    let config = BreakerConfig::default();
    let (open, _) = evaluate(&config, Mode::Auto, obs(1.0, 1.0, 1.0), &state(State::HalfOpen, NOW - 5), NOW);
    let (still_open, moved) = evaluate(&config, Mode::Auto, None, &open, NOW + 59);
    assert!(!moved && still_open.state == State::Open);
    let (half_open, moved) = evaluate(&config, Mode::Auto, None, &open, NOW + 60);
    assert!(moved && half_open.state == State::HalfOpen);
}

#[test]
fn half_open_observes_only_the_calls_since_it_began() {
    let config = BreakerConfig::default();
    assert_eq!(observation_window(&config, &state(State::HalfOpen, NOW - 7), NOW), 7);
    assert_eq!(observation_window(&config, &state(State::HalfOpen, NOW - 600), NOW), 60);
    assert_eq!(observation_window(&config, &state(State::Closed, 0), NOW), 60);
}

#[test]
fn the_state_round_trips_through_json_as_in_the_status() {
    let s = BreakerState { state: State::HalfOpen, since: NOW, reason: "probing".to_owned() };
    let json = serde_json::to_value(&s).unwrap_or_default();
    assert_eq!(json["state"], "HalfOpen");
    assert_eq!(serde_json::from_value::<BreakerState>(json).ok(), Some(s));
    assert_eq!([State::Closed, State::Open, State::HalfOpen, State::Disabled].map(State::gauge), [0, 1, 2, 0]);
}
