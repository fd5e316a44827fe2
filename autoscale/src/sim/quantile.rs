//! A reference scaler that sizes a steady fleet from the distribution of the last hour's request
//! rate instead of following its level: steady sizing alone, which beats `hpa@0.7` on both counts
//! on a noisy trace (NASA) and loses a ramping one (WorldCup). The `riskplatform` policy runs the
//! same rule (`policy/steady.rs`) only when its measured cost says so; this one runs it always,
//! from the first sample, and is told the pod's capacity.
//!
//! - The fleet serves the `share` quantile of the rates of the last hour (a steady fleet for that
//!   share of its seconds), and never less than the lowest rate of the last start-up (load that
//!   lasted long enough for a pod asked for at its start to serve it).
//! - Up at once; down to the highest recommendation of the last 300 s, and not within 300 s of the
//!   last scale event (the preset's API scale-down cooldown).
//! - It is told a pod's SLO capacity, as the oracle is; the preset measures it.
//!
//! A minute-long spike moves neither the hour's quantile nor the lasting rate, so the fleet does
//! not chase noise; a ramp, though, is followed only as fast as the quantile and the lasting rate
//! climb, which is what it loses on WorldCup.

use std::collections::VecDeque;

use super::scalers::{Observation, Scaler};

/// Seconds of rates the quantile is taken over.
const WINDOW_SECONDS: i64 = 3600;
/// Load that lasted this long is served whatever the quantile says: a start-up.
const LASTING_SECONDS: i64 = 60;
/// The scale-down takes the highest recommendation of this many seconds and waits as long after
/// the last scale event.
const STABILISATION_SECONDS: i64 = 300;

pub struct QuantileScaler {
    share: f64,
    slo_capacity: f64,
    min: i32,
    max: i32,
    /// (time, rate) of the last hour, oldest first, and the same rates sorted.
    window: VecDeque<(i64, f64)>,
    sorted: Vec<f64>,
    recommendations: VecDeque<(i64, i32)>,
    last_event: Option<i64>,
}

impl QuantileScaler {
    /// Sizes for the `share` quantile of the hour with pods serving `slo_capacity` req/s each.
    pub fn new(share: f64, slo_capacity: f64, min: i32, max: i32) -> Self {
        Self {
            share,
            slo_capacity,
            min,
            max,
            window: VecDeque::new(),
            sorted: Vec::new(),
            recommendations: VecDeque::new(),
            last_event: None,
        }
    }

    fn remember(&mut self, now: i64, rate: f64) {
        self.window.push_back((now, rate));
        let at = self.sorted.partition_point(|v| v.total_cmp(&rate).is_lt());
        self.sorted.insert(at, rate);
        while let Some((_, old)) = self.window.front().copied().filter(|(t, _)| *t <= now - WINDOW_SECONDS) {
            self.window.pop_front();
            let at = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
            self.sorted.remove(at);
        }
    }

    fn pods_for(&self, rate: f64) -> i32 {
        let pods = (rate / self.slo_capacity).ceil();
        let pods = if pods.is_finite() { pods.clamp(0.0, f64::from(self.max)) as i32 } else { self.max };
        pods.clamp(self.min, self.max)
    }
}

impl Scaler for QuantileScaler {
    fn name(&self) -> String {
        format!("quantile@{}", self.share)
    }

    fn period(&self) -> i64 {
        15
    }

    fn desired(&mut self, obs: &Observation) -> i32 {
        if !obs.request_rate.is_finite() {
            return obs.current;
        }
        self.remember(obs.now, obs.request_rate);
        let n = self.sorted.len();
        let rank = ((self.share * n as f64).ceil() as usize).clamp(1, n) - 1;
        let lasting = self
            .window
            .iter()
            .rev()
            .take_while(|(t, _)| *t > obs.now - LASTING_SECONDS)
            .map(|(_, v)| *v)
            .fold(f64::INFINITY, f64::min);
        let pods = self.pods_for(self.sorted[rank]).max(self.pods_for(lasting));
        self.recommendations.push_back((obs.now, pods));
        while self.recommendations.front().is_some_and(|(t, _)| *t <= obs.now - STABILISATION_SECONDS) {
            self.recommendations.pop_front();
        }
        let cooled = self.last_event.is_none_or(|at| obs.now - at >= STABILISATION_SECONDS);
        let stabilised = self.recommendations.iter().map(|(_, r)| *r).max().unwrap_or(pods);
        let desired = if pods > obs.current {
            pods
        } else if stabilised < obs.current && cooled {
            stabilised
        } else {
            obs.current
        };
        if desired != obs.current {
            self.last_event = Some(obs.now);
        }
        desired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: i64, current: i32, request_rate: f64) -> Observation {
        Observation { now, current, ready: current, cpu: 50.0, memory: 50.0, request_rate }
    }

    /// Replays `rates` at 15 s steps from `current` pods, returning the fleet after each.
    fn replay(scaler: &mut QuantileScaler, rates: &[f64], mut current: i32) -> Vec<i32> {
        rates
            .iter()
            .enumerate()
            .map(|(i, rate)| {
                current = scaler.desired(&at(i as i64 * 15, current, *rate));
                current
            })
            .collect()
    }

    #[test]
    fn spikes_shorter_than_a_start_up_move_neither_the_quantile_nor_the_lasting_rate() {
        // An hour at 400 req/s with one 15 s spike to 1,000 in every 20 (5 % of the seconds).
        let rates: Vec<f64> = (0..240).map(|i| if i % 20 == 19 { 1000.0 } else { 400.0 }).collect();
        let fleet = replay(&mut QuantileScaler::new(0.93, 240.0, 2, 20), &rates, 2);
        assert!(fleet.iter().all(|pods| *pods == 2), "two pods serve 480 req/s: {fleet:?}");
    }

    #[test]
    fn load_that_lasts_a_start_up_is_served_at_once() {
        let rates: Vec<f64> = std::iter::repeat_n(400.0, 240).chain(std::iter::repeat_n(1000.0, 4)).collect();
        let fleet = replay(&mut QuantileScaler::new(0.93, 240.0, 2, 20), &rates, 2);
        assert_eq!(fleet[242], 2, "three samples of a minute have not lasted a start-up");
        assert_eq!(fleet[243], 5, "1,000 req/s for a minute needs five pods of 240");
    }

    #[test]
    fn the_fleet_serves_the_share_of_the_hour_it_is_asked_for() {
        // A quarter of the hour at 1,000 req/s, spread out: the 0.93 quantile is 1,000.
        let rates: Vec<f64> = (0..240).map(|i| if i % 4 == 0 { 1000.0 } else { 300.0 }).collect();
        let fleet = replay(&mut QuantileScaler::new(0.93, 240.0, 2, 20), &rates, 2);
        assert_eq!(fleet.last(), Some(&5));
        let lean = replay(&mut QuantileScaler::new(0.7, 240.0, 2, 20), &rates, 2);
        assert_eq!(lean.last(), Some(&2), "at 0.7 the quarter at 1,000 is left out");
    }

    #[test]
    fn a_scale_down_waits_for_the_stabilisation_window_and_the_cooldown() {
        let mut s = QuantileScaler::new(0.5, 240.0, 2, 20);
        assert_eq!(s.desired(&at(0, 2, 1000.0)), 5, "up at once");
        assert_eq!(s.desired(&at(15, 5, 100.0)), 5);
        // Every recommendation after the spike is the minimum; the five of 0 s hold the fleet until
        // they leave the stabilisation window at 300 s, when the cooldown ends as well.
        let mut current = 5;
        let mut downs = Vec::new();
        for i in 2..=40 {
            let now = i * 15;
            let next = s.desired(&at(now, current, 100.0));
            if next < current {
                downs.push((now, next));
            }
            current = next;
        }
        assert_eq!(downs, [(300, 2)], "the first scale-down comes 300 s after the scale-up, to the minimum");
    }

    #[test]
    fn a_rate_that_is_not_a_number_holds() {
        let mut s = QuantileScaler::new(0.93, 240.0, 2, 20);
        assert_eq!(s.desired(&at(0, 3, f64::NAN)), 3);
        assert_eq!(s.desired(&at(15, 3, 100.0)), 2, "the NaN was not kept");
    }
}
