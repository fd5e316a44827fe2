//! An experiment, not yet the product: choose between sizing rules by their measured cost.
//!
//! Every rule runs on a fleet of its own (virtual: its pods start, serve after the start-up and
//! are removed newest first, exactly as the engine's), fed the load the real fleet sees. Each
//! rule's cost is its replica-hours plus `price` replica-hours per minute its own fleet was
//! overloaded, decayed over `window_seconds`; the real fleet follows the cheapest rule's fleet,
//! switching only when another is cheaper by `margin`. No rule sees anything the others do not,
//! and nothing after the current tick: the costs are of fleets already run.
//!
//! docs/autoscaling.md measures it over the `riskplatform` preset and `quantile@0.93`; the
//! operator does not run it yet (its virtual fleets would have to live in the status).

use super::model::{self, Model};
use super::scalers::{Observation, Scaler};

/// A rule with the fleet it would have had and what that fleet cost.
struct Candidate {
    rule: Box<dyn Scaler>,
    /// Start times of its pods.
    pods: Vec<i64>,
    cost: f64,
}

pub struct Select {
    candidates: Vec<Candidate>,
    model: Model,
    /// Replica-hours one overloaded minute costs.
    price: f64,
    window_seconds: f64,
    margin: f64,
    active: usize,
    last: Option<i64>,
}

impl Select {
    /// Selects among `rules` (the first starts active), every fleet starting at `min_replicas`.
    pub fn new(rules: Vec<Box<dyn Scaler>>, model: Model, price: f64, window_seconds: f64, margin: f64) -> Self {
        let start = vec![-model.startup_seconds; usize::try_from(model.min_replicas.max(0)).unwrap_or(0)];
        let candidates = rules.into_iter().map(|rule| Candidate { rule, pods: start.clone(), cost: 0.0 }).collect();
        Self { candidates, model, price, window_seconds, margin, active: 0, last: None }
    }

    /// The name of the rule the fleet follows now.
    pub fn active(&self) -> String {
        self.candidates.get(self.active).map(|c| c.rule.name()).unwrap_or_default()
    }
}

impl Scaler for Select {
    fn name(&self) -> String {
        "select".to_owned()
    }

    fn period(&self) -> i64 {
        15
    }

    fn desired(&mut self, obs: &Observation) -> i32 {
        let m = self.model;
        let load = obs.request_rate;
        let elapsed = self.last.map_or(0, |t| obs.now - t).max(0) as f64;
        self.last = Some(obs.now);
        let decay = (-elapsed / self.window_seconds.max(1.0)).exp();
        for c in &mut self.candidates {
            let ready = c.pods.iter().filter(|start| obs.now - **start >= m.startup_seconds).count() as i32;
            let current = c.pods.len() as i32;
            let cpu = m.cpu_percent(load, ready);
            let seen = Observation {
                now: obs.now,
                current,
                ready,
                cpu,
                memory: model::memory_percent(cpu),
                request_rate: load,
            };
            let overloaded = if m.overloaded(load, ready) { 1.0 } else { 0.0 };
            c.cost = c.cost * decay + elapsed * (f64::from(current) / 3600.0 + self.price * overloaded / 60.0);
            let wanted = c.rule.desired(&seen).max(0);
            if wanted > current {
                c.pods.extend(std::iter::repeat_n(obs.now, (wanted - current) as usize));
            } else if wanted < current {
                c.pods.sort_unstable();
                c.pods.truncate(wanted as usize);
            }
        }
        let cost = |i: usize| self.candidates[i].cost;
        let cheapest = (0..self.candidates.len()).min_by(|a, b| cost(*a).total_cmp(&cost(*b))).unwrap_or(0);
        if cost(cheapest) < cost(self.active) * (1.0 - self.margin) {
            self.active = cheapest;
        }
        self.candidates.get(self.active).map_or(obs.current, |c| c.pods.len() as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Always wants the same fleet.
    struct Fixed(&'static str, i32);
    impl Scaler for Fixed {
        fn name(&self) -> String {
            self.0.to_owned()
        }
        fn period(&self) -> i64 {
            15
        }
        fn desired(&mut self, _: &Observation) -> i32 {
            self.1
        }
    }

    fn replay(select: &mut Select, load: f64, ticks: i64) -> Vec<i32> {
        let mut current = 2;
        (0..ticks)
            .map(|i| {
                let obs =
                    Observation { now: i * 15, current, ready: current, cpu: 50.0, memory: 50.0, request_rate: load };
                current = select.desired(&obs);
                current
            })
            .collect()
    }

    fn select(price: f64) -> Select {
        let rules: Vec<Box<dyn Scaler>> = vec![Box::new(Fixed("lean", 2)), Box::new(Fixed("fat", 6))];
        Select::new(rules, Model::default(), price, 3600.0, 0.05)
    }

    #[test]
    fn the_fleet_follows_the_rule_whose_own_fleet_cost_least() {
        // 1,000 req/s overloads two pods (480 within the SLO) and not six (1,440).
        let cases = [
            (1.0, "fat", 6, "an overloaded minute at a replica-hour costs more than four pods"),
            (0.01, "lean", 2, "an overloaded minute at 0.01 replica-hours costs less than four pods"),
        ];
        for (price, rule, pods, why) in cases {
            let mut s = select(price);
            let fleet = replay(&mut s, 1000.0, 240);
            assert_eq!((s.active().as_str(), fleet.last().copied()), (rule, Some(pods)), "{why}");
        }
    }

    #[test]
    fn a_rule_only_a_little_cheaper_does_not_take_over() {
        // Without overload the lean rule is cheaper by 4 of 6 pods, far beyond the 5 % margin.
        let mut s = select(1.0);
        replay(&mut s, 100.0, 240);
        assert_eq!(s.active(), "lean");
        // Two rules equal in cost: the first one stays.
        let twins: Vec<Box<dyn Scaler>> = vec![Box::new(Fixed("first", 3)), Box::new(Fixed("second", 3))];
        let mut s = Select::new(twins, Model::default(), 1.0, 3600.0, 0.05);
        replay(&mut s, 100.0, 240);
        assert_eq!(s.active(), "first");
    }
}
