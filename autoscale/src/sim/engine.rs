//! Replays a load curve through one scaler on 15 s ticks and measures the outcome.

use serde::Serialize;

use super::model;
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
    #[serde(skip)]
    pub replicas_per_minute: Vec<i32>,
}

/// Replays `rps` (one value per minute) through `scaler`, starting at `min` replicas, all ready.
pub fn simulate(scaler: &mut dyn Scaler, rps: &[f64], min: i32, mut progress: impl FnMut(usize)) -> Outcome {
    // Start times of the pods that exist; a pod serves STARTUP_SECONDS after it started.
    let mut pods: Vec<i64> = vec![-model::STARTUP_SECONDS; usize::try_from(min.max(0)).unwrap_or(0)];
    let mut overloaded_ticks = 0u64;
    let mut pod_seconds = 0i64;
    let mut events: Vec<(i64, i32)> = Vec::new();
    let mut replicas_per_minute = Vec::with_capacity(rps.len());
    let ticks_per_minute = 60 / TICK_SECONDS;
    let mut next_sync = 0;
    for (minute, this_minute) in rps.iter().enumerate() {
        progress(minute);
        let next_minute = rps.get(minute + 1).unwrap_or(this_minute);
        for k in 0..ticks_per_minute {
            let now = minute as i64 * 60 + k * TICK_SECONDS;
            // Load moves linearly from one minute's rate to the next, as real traffic ramps.
            let fraction = (k * TICK_SECONDS) as f64 / 60.0;
            let load = &(this_minute + (next_minute - this_minute) * fraction);
            let ready = pods.iter().filter(|start| now - **start >= model::STARTUP_SECONDS).count() as i32;
            let cpu = model::cpu_percent(*load, ready);
            if now >= next_sync {
                next_sync = now + scaler.period();
                let current = pods.len() as i32;
                let obs =
                    Observation { now, current, ready, cpu, memory: model::memory_percent(cpu), request_rate: *load };
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
            if model::overloaded(*load, ready) {
                overloaded_ticks += 1;
            }
            pod_seconds += pods.len() as i64 * TICK_SECONDS;
        }
        replicas_per_minute.push(pods.len() as i32);
    }
    let flaps = events.windows(2).filter(|w| w[0].1 != w[1].1 && w[1].0 - w[0].0 < FLAP_SECONDS).count() as u32;
    Outcome {
        policy: scaler.name(),
        overload_minutes: overloaded_ticks as f64 * TICK_SECONDS as f64 / 60.0,
        replica_hours: pod_seconds as f64 / 3600.0,
        scale_events: events.len() as u32,
        flaps,
        replicas_per_minute,
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
        let out = simulate(&mut Fixed(2), &rps, 2, |_| {});
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
        let out = simulate(&mut UpDown(0), &[100.0; 6], 2, |_| {});
        assert_eq!(out.scale_events, 5);
        assert_eq!(out.flaps, 4);
    }

    #[test]
    fn the_same_input_gives_the_same_outcome() {
        let rps: Vec<f64> = (0..500).map(|m| 200.0 + 150.0 * ((m as f64) / 40.0).sin().abs() * 10.0).collect();
        let run = || simulate(&mut super::super::scalers::HpaScaler::hpa(0.7, 2, 20), &rps, 2, |_| {});
        assert_eq!(run(), run());
    }
}
