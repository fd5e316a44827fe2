//! Restart back-off as the kubelet's `flowcontrol.Backoff`: 10 s doubling to 5 min per
//! container, forgotten after twice the maximum (10 min) without a new failure.

use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entry: Option<(Duration, Instant)>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX)
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, entry: None }
    }

    fn expired(&self, event: Instant, last_update: Instant) -> bool {
        event.saturating_duration_since(last_update) > self.max * 2
    }

    /// How long to wait after a failure at `event` before the next start, seen at `now`:
    /// `None` when the container may start now (as `IsInBackOffSince`).
    pub fn remaining(&self, event: Instant, now: Instant) -> Option<Duration> {
        let (backoff, last_update) = self.entry?;
        if self.expired(event, last_update) {
            return None;
        }
        backoff.checked_sub(now.saturating_duration_since(event)).filter(|d| !d.is_zero())
    }

    /// Records a restart after a failure at `event` (as `Next`): the first one since the
    /// entry expired starts at the initial delay, each following doubles up to the maximum.
    pub fn next(&mut self, event: Instant) {
        self.entry = Some(match self.entry {
            Some((backoff, last)) if !self.expired(event, last) => ((backoff * 2).min(self.max), event),
            _ => (self.initial, event),
        });
    }

    /// The current delay, for the `back-off 20s restarting failed container` message.
    pub fn current(&self) -> Duration {
        self.entry.map(|(d, _)| d).unwrap_or(self.initial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_first_crash_restarts_at_once_then_the_delay_doubles_to_five_minutes() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.remaining(t0, t0), None, "no back-off before the first restart");
        b.next(t0);
        let mut crash = t0 + s(1);
        for expected in [10, 20, 40, 80, 160, 300, 300] {
            assert_eq!(b.remaining(crash, crash), Some(s(expected)));
            assert_eq!(b.remaining(crash, crash + s(expected - 1)), Some(s(1)));
            assert_eq!(b.remaining(crash, crash + s(expected)), None, "may start once the delay has passed");
            b.next(crash);
            crash += s(expected + 1);
        }
    }

    #[test]
    fn ten_minutes_without_a_failure_forget_the_back_off() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        b.next(t0);
        b.next(t0 + s(1));
        assert_eq!(b.current(), s(20));
        let later = t0 + s(1) + s(601);
        assert_eq!(b.remaining(later, later), None);
        b.next(later);
        assert_eq!(b.current(), s(10));
    }
}
