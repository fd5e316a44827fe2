//! The per-process breaker an API pod keeps for each dependency, pure: every call passes the time
//! in milliseconds. It judges single calls as they happen (the platform-wide [`crate::evaluate`]
//! judges counters scraped from every pod) with the same thresholds: open on `failure_threshold`
//! consecutive failures or a failure rate above `failure_rate` over the last `window_seconds` once
//! `minimum_calls` were seen; fail fast while open; after `recovery_timeout_seconds` let
//! `half_open_max_calls` probes through; close when they all succeed, re-open on a failed probe.
//!
//! A state the operator publishes for the whole platform is followed ([`LocalBreaker::follow`]):
//! a forced one (an override in the spec) exactly; a computed one as a floor, so a platform-wide
//! Open or HalfOpen applies to every pod while a pod whose own breaker opened stays open even if
//! the platform as a whole is still closed. When it cannot be read, the local breaker decides.

use std::collections::VecDeque;

use crate::{BreakerConfig, State};

/// The operator's published state for the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub state: State,
    /// Set by an override in the spec: followed exactly, even against the local judgement.
    pub forced: bool,
}

/// Whether a call may go out now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Fail fast; the dependency is tried again in this many milliseconds.
    Rejected {
        retry_after_ms: i64,
    },
}

#[derive(Clone, Debug)]
pub struct LocalBreaker {
    config: BreakerConfig,
    state: State,
    since_ms: i64,
    consecutive_failures: u32,
    /// Outcomes in the sliding window: (time, failed).
    window: VecDeque<(i64, bool)>,
    probes_in_flight: u32,
    probe_successes: u32,
    published: Option<Published>,
}

impl LocalBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed,
            since_ms: 0,
            consecutive_failures: 0,
            window: VecDeque::new(),
            probes_in_flight: 0,
            probe_successes: 0,
            published: None,
        }
    }

    /// The state in force: a forced published state; else the stricter of the published and the
    /// local one; else (nothing published) the local one.
    pub fn state(&self) -> State {
        match self.published {
            Some(Published { state, forced: true }) => state,
            Some(Published { state: State::Open, .. }) => State::Open,
            Some(Published { state: State::HalfOpen, .. }) if self.state == State::Closed => State::HalfOpen,
            _ => self.state,
        }
    }

    fn recovery_ms(&self) -> i64 {
        self.config.recovery_timeout_seconds.saturating_mul(1000)
    }

    fn enter(&mut self, state: State, now: i64) {
        self.state = state;
        self.since_ms = now;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        if state == State::Closed {
            self.consecutive_failures = 0;
            self.window.clear();
        }
    }

    /// Milliseconds until an open breaker lets a probe through (at least one second otherwise,
    /// a sensible Retry-After for a failure the breaker has not yet acted on).
    pub fn retry_after_ms(&self, now: i64) -> i64 {
        let local_open = self.state == State::Open && !matches!(self.published, Some(Published { forced: true, .. }));
        if local_open {
            (self.since_ms + self.recovery_ms() - now).max(1000)
        } else {
            1000
        }
    }

    /// Whether a call at `now` would be refused because the breaker is open, without asking
    /// (a caller that polls for work uses it to wait instead of taking work it cannot do).
    pub fn rejects(&self, now: i64) -> bool {
        match self.published {
            Some(Published { state, forced: true }) => state == State::Open,
            Some(Published { state: State::Open, .. }) => true,
            _ => self.state == State::Open && now - self.since_ms < self.recovery_ms(),
        }
    }

    fn admit_probe(&mut self) -> Admission {
        if self.probes_in_flight < self.config.half_open_max_calls {
            self.probes_in_flight += 1;
            Admission::Allowed
        } else {
            Admission::Rejected { retry_after_ms: 1000 }
        }
    }

    /// Asks whether a call may go out at `now`; an open breaker whose recovery timeout elapsed
    /// turns half-open here and admits up to `half_open_max_calls` probes.
    pub fn admit(&mut self, now: i64) -> Admission {
        match self.published {
            Some(Published { state: State::Closed | State::Disabled, forced: true }) => return Admission::Allowed,
            Some(Published { state: State::Open, .. }) => return Admission::Rejected { retry_after_ms: 1000 },
            Some(Published { state: State::HalfOpen, forced }) if forced || self.state == State::Closed => {
                return self.admit_probe()
            }
            _ => {}
        }
        match self.state {
            State::Closed | State::Disabled => Admission::Allowed,
            State::Open if now - self.since_ms >= self.recovery_ms() => {
                self.enter(State::HalfOpen, now);
                self.admit_probe()
            }
            State::Open => Admission::Rejected { retry_after_ms: self.retry_after_ms(now) },
            State::HalfOpen => self.admit_probe(),
        }
    }

    /// Records the outcome of an admitted call. Returns the new local state on a transition.
    pub fn record(&mut self, success: bool, now: i64) -> Option<State> {
        let before = self.state;
        match self.state {
            State::Closed => {
                self.consecutive_failures = if success { 0 } else { self.consecutive_failures + 1 };
                self.window.push_back((now, !success));
                let oldest = now - self.config.window_seconds.saturating_mul(1000);
                while self.window.front().is_some_and(|(t, _)| *t <= oldest) {
                    self.window.pop_front();
                }
                let calls = self.window.len();
                let failures = self.window.iter().filter(|(_, failed)| *failed).count();
                let rate_tripped = calls >= self.config.minimum_calls as usize
                    && calls > 0
                    && failures as f64 / calls as f64 > self.config.failure_rate;
                if self.consecutive_failures >= self.config.failure_threshold || rate_tripped {
                    self.enter(State::Open, now);
                }
            }
            State::HalfOpen if !success => self.enter(State::Open, now),
            State::HalfOpen => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                self.probe_successes += 1;
                if self.probe_successes >= self.config.half_open_max_calls {
                    self.enter(State::Closed, now);
                }
            }
            // Late results of calls admitted before the breaker opened change nothing.
            State::Open | State::Disabled => {}
        }
        (self.state != before).then_some(self.state)
    }

    /// Follows the platform-wide state the operator published, or (None) this process's own
    /// judgement when that state is not published or cannot be read. The local breaker keeps
    /// counting meanwhile, so falling back needs no warm-up.
    pub fn follow(&mut self, published: Option<Published>, now: i64) {
        let was = self.published.map(|p| p.state);
        let is = published.map(|p| p.state);
        if is == Some(State::HalfOpen) && was != Some(State::HalfOpen) {
            self.probes_in_flight = 0;
        }
        // Handed back from a platform-wide Open because it became unreadable (not because the
        // operator moved on): recover like a local open breaker rather than close at once.
        if is.is_none() && was == Some(State::Open) && self.state == State::Closed {
            self.enter(State::Open, now);
        }
        self.published = published;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented defaults: 5 failures, 10 % over 60 s with at least 20 calls, 60 s to
    /// half-open, 3 probes; the expectations below are worked out from them.
    fn config() -> BreakerConfig {
        BreakerConfig::default()
    }

    /// Feeds `outcomes` (true = success), one call per 100 ms from `start`.
    fn feed(b: &mut LocalBreaker, start: i64, outcomes: &[bool]) -> i64 {
        let mut now = start;
        for &ok in outcomes {
            if b.admit(now) == Admission::Allowed {
                b.record(ok, now);
            }
            now += 100;
        }
        now
    }

    #[test]
    fn consecutive_failures_open_it_at_the_threshold_and_not_before() {
        let cases: [(&[bool], State); 4] = [
            (&[false; 4], State::Closed),
            (&[false; 5], State::Open),
            (&[false, false, false, false, true, false], State::Closed),
            (&[true, false, false, false, false, false], State::Open),
        ];
        for (outcomes, want) in cases {
            let mut b = LocalBreaker::new(config());
            feed(&mut b, 0, outcomes);
            assert_eq!(b.state(), want, "{outcomes:?}");
        }
    }

    #[test]
    fn a_failure_rate_above_the_threshold_opens_it_once_enough_calls_were_seen() {
        // 3 failures in 20 calls (15 %), never 5 in a row.
        let mut calls = vec![true; 17];
        for i in [3, 9, 15] {
            calls.insert(i, false);
        }
        let mut b = LocalBreaker::new(config());
        feed(&mut b, 0, &calls[..19]);
        assert_eq!(b.state(), State::Closed, "19 calls are below the minimum");
        feed(&mut b, 1900, &calls[19..]);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn a_quiet_service_does_not_trip_on_one_error() {
        let mut b = LocalBreaker::new(config());
        feed(&mut b, 0, &[true, true, false]);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn failures_older_than_the_window_no_longer_count() {
        let mut b = LocalBreaker::new(config());
        feed(&mut b, 0, &[false, false, false, true]);
        // 60 s later, 20 healthy calls and 2 failures: 9 % inside the window.
        let mut calls = vec![true; 20];
        calls.extend([false, false]);
        feed(&mut b, 61_000, &calls);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn an_open_breaker_fails_fast_until_the_recovery_timeout() {
        let mut b = LocalBreaker::new(config());
        let opened = feed(&mut b, 0, &[false; 5]) - 100;
        assert_eq!(b.admit(opened + 1_000), Admission::Rejected { retry_after_ms: 59_000 });
        assert_eq!(b.admit(opened + 59_999), Admission::Rejected { retry_after_ms: 1_000 });
        assert!(b.rejects(opened + 59_999) && !b.rejects(opened + 60_000));
        assert_eq!(b.admit(opened + 60_000), Admission::Allowed);
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[test]
    fn half_open_lets_only_the_probe_calls_through_and_closes_when_they_succeed() {
        let mut b = LocalBreaker::new(config());
        let opened = feed(&mut b, 0, &[false; 5]) - 100;
        let t = opened + 60_000;
        assert_eq!([b.admit(t), b.admit(t), b.admit(t)], [Admission::Allowed; 3]);
        assert_eq!(b.admit(t), Admission::Rejected { retry_after_ms: 1000 });
        assert_eq!(b.record(true, t + 1), None);
        assert_eq!(b.record(true, t + 2), None);
        assert_eq!(b.record(true, t + 3), Some(State::Closed));
        assert_eq!(b.admit(t + 4), Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_reopens_it_and_restarts_the_recovery_timer() {
        let mut b = LocalBreaker::new(config());
        let opened = feed(&mut b, 0, &[false; 5]) - 100;
        let t = opened + 60_000;
        assert_eq!(b.admit(t), Admission::Allowed);
        assert_eq!(b.record(false, t + 10), Some(State::Open));
        assert_eq!(b.admit(t + 30_000), Admission::Rejected { retry_after_ms: 30_010 });
        assert_eq!(b.admit(t + 60_010), Admission::Allowed);
    }

    fn published(state: State, forced: bool) -> Option<Published> {
        Some(Published { state, forced })
    }

    #[test]
    fn a_forced_published_state_wins_over_the_local_judgement() {
        let cases = [
            (State::Closed, false, Admission::Allowed),
            (State::Disabled, false, Admission::Allowed),
            (State::Open, true, Admission::Rejected { retry_after_ms: 1000 }),
        ];
        for (state, healthy_locally, want) in cases {
            let mut b = LocalBreaker::new(config());
            if !healthy_locally {
                feed(&mut b, 0, &[false; 5]);
            }
            b.follow(published(state, true), 1000);
            assert_eq!(b.admit(2000), want, "{state:?}");
            assert_eq!(b.state(), state);
        }
    }

    #[test]
    fn a_computed_published_state_is_a_floor_for_every_pod() {
        // (published, this pod's own breaker open?, admission, state in force)
        let cases = [
            (State::Open, false, Admission::Rejected { retry_after_ms: 1000 }, State::Open),
            (State::Closed, false, Admission::Allowed, State::Closed),
            (State::Closed, true, Admission::Rejected { retry_after_ms: 58_400 }, State::Open),
            (State::HalfOpen, false, Admission::Allowed, State::HalfOpen),
        ];
        for (state, open_locally, want, in_force) in cases {
            let mut b = LocalBreaker::new(config());
            if open_locally {
                feed(&mut b, 0, &[false; 5]);
            }
            b.follow(published(state, false), 1000);
            assert_eq!(b.admit(2000), want, "{state:?}, open locally: {open_locally}");
            assert_eq!(b.state(), in_force, "{state:?}, open locally: {open_locally}");
        }
    }

    #[test]
    fn an_unreadable_published_state_falls_back_to_the_local_breaker() {
        let mut b = LocalBreaker::new(config());
        b.follow(published(State::Closed, true), 0);
        feed(&mut b, 0, &[false; 5]);
        assert_eq!(b.admit(1000), Admission::Allowed, "forced closed wins");
        b.follow(None, 1000);
        assert_eq!(b.state(), State::Open, "the local breaker counted the failures meanwhile");
        assert!(matches!(b.admit(1100), Admission::Rejected { .. }));
    }

    #[test]
    fn leaving_a_published_open_state_recovers_through_half_open() {
        let mut b = LocalBreaker::new(config());
        b.follow(published(State::Open, false), 0);
        b.follow(None, 1000);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admit(61_000), Admission::Allowed);
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[test]
    fn a_platform_that_moved_on_from_open_leaves_a_healthy_pod_closed() {
        for forced in [false, true] {
            let mut b = LocalBreaker::new(config());
            b.follow(published(State::Open, false), 0);
            b.follow(published(State::Closed, forced), 1000);
            b.follow(None, 2000);
            assert_eq!(b.state(), State::Closed, "forced: {forced}");
            assert_eq!(b.admit(2100), Admission::Allowed);
        }
    }
}
