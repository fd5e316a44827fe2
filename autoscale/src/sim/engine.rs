//! Replays a load curve through one scaler on 15 s ticks and measures the outcome, and computes
//! the clairvoyant fleet (the oracle) every outcome is compared with.

use std::collections::VecDeque;

use serde::Serialize;

use super::model::{self, Model};
use super::scalers::{Observation, Scaler};

/// Simulation resolution and the policies' sync period.
pub const TICK_SECONDS: i64 = 15;
/// Two scale events in opposite directions closer than this are a flap.
pub const FLAP_SECONDS: i64 = 300;

/// One policy's result, as printed in the JSON report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub overload_minutes: f64,
    pub replica_hours: f64,
    pub scale_events: u32,
    pub flaps: u32,
    /// Replica-hours above the oracle's, in percent of the oracle's.
    pub excess_replica_hours_percent: f64,
    /// Overload minutes above the oracle's (the minutes no fleet within the bounds avoids).
    pub excess_overload_minutes: f64,
    /// Replicas at the end of each trace row.
    #[serde(skip)]
    pub replicas_per_row: Vec<i32>,
}

/// The load at tick `k` of `row` (of `ticks_per_row`): it moves linearly from one row's rate to
/// the next, as real traffic ramps. The live autoscaling run replays exactly this curve.
pub fn load_at(rps: &[f64], row: usize, k: i64, ticks_per_row: i64) -> f64 {
    let this_row = rps[row];
    let next_row = rps.get(row + 1).copied().unwrap_or(this_row);
    this_row + (next_row - this_row) * k as f64 / ticks_per_row as f64
}

/// Opposite scale events closer than the flap interval.
fn count_flaps(events: &[(i64, i32)]) -> u32 {
    events.windows(2).filter(|w| w[0].1 != w[1].1 && w[1].0 - w[0].0 < FLAP_SECONDS).count() as u32
}

/// The clairvoyant fleet: at every tick exactly `ceil(load / SLO capacity)` pods within the
/// bounds, each serving the moment it is needed. Nothing has fewer overload minutes (only load
/// beyond `max_replicas` overloads it), and nothing serves its load with fewer replica-hours.
pub fn oracle(rps: &[f64], model: &Model) -> Outcome {
    let (mut overloaded_ticks, mut pod_seconds) = (0u64, 0i64);
    let mut events = Vec::new();
    let mut replicas_per_row = Vec::with_capacity(rps.len());
    let mut current = model.min_replicas;
    for row in 0..rps.len() {
        for k in 0..model.ticks_per_row() {
            let load = load_at(rps, row, k, model.ticks_per_row());
            let pods = model.oracle_replicas(load);
            if pods != current {
                events.push((row as i64 * model.row_seconds + k * TICK_SECONDS, (pods - current).signum()));
                current = pods;
            }
            overloaded_ticks += u64::from(model.overloaded(load, pods));
            pod_seconds += i64::from(pods) * TICK_SECONDS;
        }
        replicas_per_row.push(current);
    }
    Outcome {
        policy: "oracle".to_owned(),
        overload_minutes: overloaded_ticks as f64 * TICK_SECONDS as f64 / 60.0,
        replica_hours: pod_seconds as f64 / 3600.0,
        scale_events: events.len() as u32,
        flaps: count_flaps(&events),
        excess_replica_hours_percent: 0.0,
        excess_overload_minutes: 0.0,
        replicas_per_row,
    }
}

/// Fills in how far `outcome` is above `oracle`.
pub fn compare_with_oracle(outcome: &mut Outcome, oracle: &Outcome) {
    outcome.excess_replica_hours_percent =
        (outcome.replica_hours - oracle.replica_hours) / oracle.replica_hours.max(f64::EPSILON) * 100.0;
    outcome.excess_overload_minutes = outcome.overload_minutes - oracle.overload_minutes;
}

/// Replays `rps` (one value per trace row of `model.row_seconds`) through `scaler` under `model`, starting at the model's
/// `min_replicas`, all ready.
pub fn simulate(scaler: &mut dyn Scaler, rps: &[f64], model: &Model, mut progress: impl FnMut(usize)) -> Outcome {
    // Start times of the pods that exist; a pod serves `startup_seconds` after it started.
    let min = model.min_replicas;
    let mut pods: Vec<i64> = vec![-model.startup_seconds; usize::try_from(min.max(0)).unwrap_or(0)];
    let mut overloaded_ticks = 0u64;
    let mut pod_seconds = 0i64;
    let mut events: Vec<(i64, i32)> = Vec::new();
    let mut replicas_per_row = Vec::with_capacity(rps.len());
    // (tick, load, cpu) of the longest signal window, for the means the policies see.
    let mut seen: VecDeque<(i64, f64, f64)> = VecDeque::new();
    let keep = model.rate_window_seconds.max(model.cpu_window_seconds).max(TICK_SECONDS);
    let mut next_sync = 0;
    for row in 0..rps.len() {
        progress(row);
        for k in 0..model.ticks_per_row() {
            let now = row as i64 * model.row_seconds + k * TICK_SECONDS;
            let load = load_at(rps, row, k, model.ticks_per_row());
            let ready = pods.iter().filter(|start| now - **start >= model.startup_seconds).count() as i32;
            let cpu = model.cpu_percent(load, ready);
            seen.push_back((now, load, cpu));
            while seen.front().is_some_and(|(t, ..)| *t <= now - keep) {
                seen.pop_front();
            }
            if now >= next_sync {
                next_sync = now + scaler.period();
                let current = pods.len() as i32;
                let (request_rate, cpu) = (
                    mean(&seen, now, model.rate_window_seconds, |s| s.1),
                    mean(&seen, now, model.cpu_window_seconds, |s| s.2),
                );
                let obs = Observation { now, current, ready, cpu, memory: model::memory_percent(cpu), request_rate };
                let desired = scaler.desired(&obs).max(0);
                if desired != current {
                    events.push((now, (desired - current).signum()));
                    if desired > current {
                        pods.extend(std::iter::repeat_n(now, (desired - current) as usize));
                    } else {
                        // Newest first: pods still starting are the cheapest to give up.
                        pods.sort_unstable();
                        pods.truncate(desired as usize);
                    }
                }
            }
            if model.overloaded(load, ready) {
                overloaded_ticks += 1;
            }
            pod_seconds += pods.len() as i64 * TICK_SECONDS;
        }
        replicas_per_row.push(pods.len() as i32);
    }
    Outcome {
        policy: scaler.name(),
        overload_minutes: overloaded_ticks as f64 * TICK_SECONDS as f64 / 60.0,
        replica_hours: pod_seconds as f64 / 3600.0,
        scale_events: events.len() as u32,
        flaps: count_flaps(&events),
        excess_replica_hours_percent: 0.0,
        excess_overload_minutes: 0.0,
        replicas_per_row,
    }
}

/// The mean of `f` over the ticks of the last `window` seconds (at least the current tick).
fn mean(seen: &VecDeque<(i64, f64, f64)>, now: i64, window: i64, f: fn(&(i64, f64, f64)) -> f64) -> f64 {
    let from = now - window.max(TICK_SECONDS);
    let (sum, n) = seen.iter().filter(|s| s.0 > from).fold((0.0, 0u32), |(sum, n), s| (sum + f(s), n + 1));
    if n == 0 {
        0.0
    } else {
        sum / f64::from(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(i32);
    impl Scaler for Fixed {
        fn name(&self) -> String {
            "fixed".to_owned()
        }
        fn period(&self) -> i64 {
            15
        }
        fn desired(&mut self, _: &Observation) -> i32 {
            self.0
        }
    }

    #[test]
    fn a_fixed_fleet_counts_replica_hours_and_overload() {
        // Two pods serve 480 req/s within the SLO: 60 minutes at 400 fine, 30 at 600 overloaded,
        // plus the second half of the minute ramping from 400 to 600 (500 and 550 req/s).
        let rps: Vec<f64> = std::iter::repeat_n(400.0, 60).chain(std::iter::repeat_n(600.0, 30)).collect();
        let out = simulate(&mut Fixed(2), &rps, &Model::default(), |_| {});
        assert_eq!(out.overload_minutes, 30.5);
        assert_eq!(out.replica_hours, 3.0);
        assert_eq!((out.scale_events, out.flaps), (0, 0));
    }

    #[test]
    fn new_pods_serve_only_after_start_up_and_opposite_events_close_together_are_flaps() {
        struct UpDown(u32);
        impl Scaler for UpDown {
            fn name(&self) -> String {
                "updown".to_owned()
            }
            fn period(&self) -> i64 {
                60
            }
            fn desired(&mut self, _: &Observation) -> i32 {
                self.0 += 1;
                if self.0.is_multiple_of(2) {
                    4
                } else {
                    2
                }
            }
        }
        let out = simulate(&mut UpDown(0), &[100.0; 6], &Model::default(), |_| {});
        assert_eq!(out.scale_events, 5);
        assert_eq!(out.flaps, 4);
    }

    #[test]
    fn the_same_input_gives_the_same_outcome() {
        let rps: Vec<f64> = (0..500).map(|m| 200.0 + 150.0 * ((m as f64) / 40.0).sin().abs() * 10.0).collect();
        let run = || simulate(&mut super::super::scalers::HpaScaler::hpa(0.7, 2, 20), &rps, &Model::default(), |_| {});
        assert_eq!(run(), run());
    }

    #[test]
    fn the_oracle_is_just_enough_at_every_tick_and_overloads_only_beyond_max_replicas() {
        // 960 req/s is exactly four pods within the SLO; 6,000 req/s needs 25 of the 20 allowed.
        let rps = [960.0, 960.0, 6000.0, 6000.0];
        let out = oracle(&rps, &Model::default());
        // Ticks: 4 + 4 at 960 with the ramp to 6,000 inside minute 1 (2220, 3480, 4740 req/s:
        // 10, 15, 20 pods), then 8 ticks at 20 pods, overloaded at 6,000.
        let pod_ticks = 4 * 4 + 4 + 10 + 15 + 20 + 8 * 20;
        assert_eq!(out.replica_hours, f64::from(pod_ticks) * 15.0 / 3600.0);
        assert_eq!(out.overload_minutes, 2.0);
        assert_eq!(out.replicas_per_row, [4, 20, 20, 20]);
    }

    #[test]
    fn a_compressed_replay_spends_the_same_trace_in_a_quarter_of_the_time() {
        let rps: Vec<f64> = std::iter::repeat_n(400.0, 60).chain(std::iter::repeat_n(600.0, 30)).collect();
        let compressed = Model { row_seconds: 15, ..Model::default() };
        let out = simulate(&mut Fixed(2), &rps, &compressed, |_| {});
        // One tick per row: no ramp inside a row, so exactly the 30 rows at 600 overload.
        assert_eq!(out.overload_minutes, 30.0 / 4.0);
        assert_eq!(out.replica_hours, 3.0 / 4.0);
        assert_eq!(out.replicas_per_row.len(), 90);
        let oracle = oracle(&rps, &compressed);
        assert_eq!(oracle.replicas_per_row[..2], [2, 2]);
        assert_eq!(oracle.replicas_per_row[60], 3, "three pods serve 600 req/s within the SLO");
    }

    #[test]
    fn a_windowed_signal_shows_the_policy_the_mean_of_its_window() {
        struct Seen(Vec<f64>);
        impl Scaler for Seen {
            fn name(&self) -> String {
                "seen".to_owned()
            }
            fn period(&self) -> i64 {
                15
            }
            fn desired(&mut self, obs: &Observation) -> i32 {
                self.0.push(obs.request_rate);
                obs.current
            }
        }
        let rps = [100.0, 100.0, 500.0, 500.0];
        let windowed = Model { rate_window_seconds: 60, row_seconds: 15, ..Model::default() };
        let mut seen = Seen(Vec::new());
        simulate(&mut seen, &rps, &windowed, |_| {});
        assert_eq!(seen.0, [100.0, 100.0, 700.0 / 3.0, 300.0]);
        let mut instant = Seen(Vec::new());
        simulate(&mut instant, &rps, &Model { row_seconds: 15, ..Model::default() }, |_| {});
        assert_eq!(instant.0, rps);
    }

    #[test]
    fn the_excess_is_measured_against_the_oracle() {
        let rps: Vec<f64> = std::iter::repeat_n(400.0, 60).chain(std::iter::repeat_n(600.0, 30)).collect();
        let model = Model::default();
        let base = oracle(&rps, &model);
        let mut fixed = simulate(&mut Fixed(2), &rps, &model, |_| {});
        compare_with_oracle(&mut fixed, &base);
        assert_eq!(fixed.excess_overload_minutes, 30.5, "the oracle adds a third pod and never overloads");
        assert!(fixed.excess_replica_hours_percent < 0.0, "two pods spend less than the oracle's three");
    }
}
