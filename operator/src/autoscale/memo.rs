//! The autoscaler's state between status writes. A platform's autoscaling status is written when
//! something a user or a restarted operator acts on changed, or when it is [`REFRESH_SECONDS`]
//! old; in between, the state each tick computed is kept here so the next tick continues from it
//! (exact failure counts, signal values) instead of from the older status.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use riskplatform_autoscale::ComponentState;
use riskplatform_crd::AutoscalingStatus;

/// Longest time a platform's autoscaling status goes unwritten: its `lastDecision` (time, signal
/// values, failure count) is at most this old.
pub const REFRESH_SECONDS: i64 = 300;

type Key = (String, String);

/// Latest state per platform, with the uid it belongs to and the status it continues from.
#[derive(Default)]
pub struct Memo {
    by_platform: Mutex<HashMap<Key, Entry>>,
}

struct Entry {
    uid: String,
    written: Option<AutoscalingStatus>,
    current: AutoscalingStatus,
}

impl Memo {
    /// The state to continue from: the one computed last tick while the status still holds what
    /// that tick started from (nobody else wrote it, the platform was not recreated), else the
    /// status.
    pub fn previous(&self, key: &Key, uid: &str, stored: Option<&AutoscalingStatus>) -> AutoscalingStatus {
        match self.lock().get(key) {
            Some(e) if e.uid == uid && e.written.as_ref() == stored => e.current.clone(),
            _ => stored.cloned().unwrap_or_default(),
        }
    }

    /// Records the state a tick computed; `written` is what the status holds now.
    pub fn remember(&self, key: Key, uid: String, written: Option<AutoscalingStatus>, current: AutoscalingStatus) {
        self.lock().insert(key, Entry { uid, written, current });
    }

    /// Forgets platforms that are gone.
    pub fn retain(&self, present: &HashSet<Key>) {
        self.lock().retain(|k, _| present.contains(k));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.by_platform.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `next` must be written over `stored`: it differs in more than what changes every tick
/// without changing a decision (the last decision's time and signal values, the measured pod
/// capacity, the selection's costs, a failure count past what the component's fallback waits for: `counted`, API then
/// workers, 0 without a fallback), or the stored one is due for a refresh.
pub fn worth_writing(
    stored: Option<&AutoscalingStatus>,
    next: &AutoscalingStatus,
    counted: [u32; 2],
    now: i64,
) -> bool {
    let Some(stored) = stored else { return true };
    let oldest = [&stored.api, &stored.workers].iter().filter_map(|c| c.last_decision.as_ref().map(|d| d.at)).min();
    if oldest.is_none_or(|at| now - at >= REFRESH_SECONDS) {
        return true;
    }
    let essence = |s: &AutoscalingStatus| [essence(&s.api, counted[0]), essence(&s.workers, counted[1])];
    essence(stored) != essence(next)
}

fn essence(c: &ComponentState, counted: u32) -> ComponentState {
    let mut c = c.clone();
    c.consecutive_metric_failures = c.consecutive_metric_failures.min(counted);
    c.pod_capacity_rps = None;
    // The shadow fleets' costs move every tick; their pods, cooldowns and the choice do not.
    if let Some(sel) = c.selection.as_mut() {
        sel.at = 0;
        sel.forecast.cost = 0.0;
        sel.steady.cost = 0.0;
    }
    if let Some(d) = c.last_decision.as_mut() {
        d.at = 0;
        d.inputs.iter_mut().for_each(|i| i.value = None);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskplatform_autoscale::{Action, Decision};

    fn status(at: i64, failures: u32, reason: &str, value: f64) -> AutoscalingStatus {
        let decision = Decision {
            at,
            action: Action::Hold,
            current_replicas: 2,
            ready_replicas: 2,
            desired_replicas: 2,
            reason: reason.to_owned(),
            inputs: vec![riskplatform_autoscale::SignalInput {
                signal: riskplatform_autoscale::Signal::Cpu,
                value: Some(value),
                scale_up_above: 70.0,
                scale_down_below: 30.0,
                window_seconds: 300,
                state: riskplatform_autoscale::SignalState::Normal,
                note: None,
            }],
            forecast: None,
        };
        let component = ComponentState {
            consecutive_metric_failures: failures,
            last_decision: Some(decision),
            ..Default::default()
        };
        AutoscalingStatus { api: component.clone(), workers: component }
    }

    #[test]
    fn only_a_change_that_matters_or_a_due_refresh_is_written() {
        let stored = status(1000, 0, "held: cpu within its band", 50.0);
        let cases = [
            ("a new time and value alone", status(1015, 0, "held: cpu within its band", 52.0), 3, 1015, false),
            ("a new reason", status(1015, 0, "held: scale-up cooldown", 50.0), 3, 1015, true),
            (
                "a failure counted below the fallback threshold",
                status(1015, 1, "held: cpu within its band", 50.0),
                3,
                1015,
                true,
            ),
            ("the refresh is due", status(1300, 0, "held: cpu within its band", 50.0), 3, 1300, true),
        ];
        for (case, next, counted, now, expected) in cases {
            assert_eq!(worth_writing(Some(&stored), &next, [counted; 2], now), expected, "{case}");
        }
        let failing = status(1000, 3, "held: metrics unavailable", 50.0);
        let more = status(1015, 4, "held: metrics unavailable", 50.0);
        assert!(!worth_writing(Some(&failing), &more, [3; 2], 1015), "a count past the threshold changes no decision");
        let counted = status(1015, 1, "held: cpu within its band", 50.0);
        assert!(!worth_writing(Some(&stored), &counted, [0; 2], 1015), "without a fallback the count decides nothing");
        assert!(worth_writing(None, &more, [3; 2], 1015), "a first status is written");
    }

    #[test]
    fn the_next_tick_continues_from_memory_only_while_the_status_is_what_it_started_from() {
        let memo = Memo::default();
        let key = ("ns".to_owned(), "risk".to_owned());
        let stored = status(1000, 3, "held", 0.0);
        let computed = status(1015, 4, "held", 0.0);
        memo.remember(key.clone(), "u1".to_owned(), Some(stored.clone()), computed.clone());
        assert_eq!(memo.previous(&key, "u1", Some(&stored)), computed);
        let edited = status(1000, 0, "held", 0.0);
        assert_eq!(memo.previous(&key, "u1", Some(&edited)), edited, "someone else wrote the status");
        assert_eq!(memo.previous(&key, "u2", Some(&stored)), stored, "the platform was recreated");
        memo.retain(&HashSet::new());
        assert_eq!(memo.previous(&key, "u1", Some(&stored)), stored);
    }
}
