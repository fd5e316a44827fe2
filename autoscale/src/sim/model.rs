//! The capacity and latency model the simulator replays traffic through.
//!
//! - A pod serves up to `pod_capacity_rps` requests per second at 100 % CPU; CPU is proportional
//!   to the load each ready pod carries (requests 100m, so 100 % of requests is one pod's worth).
//! - Latency rises with utilisation like a single-server queue: `p95 = 3 * BASE_MS / (1 - u)`.
//!   With a 20 ms base the default SLO p95 < 300 ms holds up to u = 0.8, so pods serve at most
//!   `0.8 * pod_capacity_rps` within the SLO; a tick whose load exceeds what ready pods serve
//!   within the SLO counts as overloaded.
//! - Memory is 30 % of requests at rest plus 0.3 % per CPU percent (caches and in-flight requests).
//! - A new pod serves `startup_seconds` after it is asked for (scheduling, image, readiness probe).

/// Latency of an idle pod.
pub const BASE_MS: f64 = 20.0;

/// The model's numbers; the defaults are the ones every earlier result in docs/autoscaling.md
/// was measured with, and each is a `simulate` flag so a live run can be replayed with its own.
#[derive(Clone, Copy, Debug, PartialEq, clap::Args)]
pub struct Model {
    /// Requests per second one pod serves at 100 % CPU.
    #[arg(long, default_value_t = 300.0)]
    pub pod_capacity_rps: f64,
    /// Seconds from asking for a pod to it serving.
    #[arg(long, default_value_t = 60)]
    pub startup_seconds: i64,
    /// Fewest API replicas, for every policy.
    #[arg(long, default_value_t = 2)]
    pub min_replicas: i32,
    /// Most API replicas, for every policy.
    #[arg(long, default_value_t = 20)]
    pub max_replicas: i32,
    /// The API's p95 latency SLO in milliseconds (more than three idle-pod latencies of 20 ms).
    #[arg(long, default_value_t = 300.0)]
    pub slo_p95_ms: f64,
    /// Seconds each trace row lasts in the replay, a multiple of the 15 s tick: 60 replays the
    /// trace in real time, 15 replays a minute of it every 15 s (four times compressed, as the
    /// live autoscaling run of the end-to-end tests does).
    #[arg(long, default_value_t = 60)]
    pub row_seconds: i64,
    /// The request-rate signal the policies see is the mean load of this many seconds, as a
    /// Prometheus `rate(...[1m])` is (60); 0 shows each tick's own load.
    #[arg(long, default_value_t = 0)]
    pub rate_window_seconds: i64,
    /// The CPU signal is the mean of this many seconds (the operator's default query: 120); 0
    /// shows each tick's own CPU.
    #[arg(long, default_value_t = 0)]
    pub cpu_window_seconds: i64,
    /// CPU percent of a ready pod without load (probes, scrapes, background tasks); the rest of
    /// its CPU grows with its load, so a pod at half its capacity shows more than half its CPU.
    #[arg(long, default_value_t = 0.0)]
    pub idle_cpu_percent: f64,
    /// The share of a pod's capacity it serves within the SLO, as measured on a live run; absent,
    /// it follows from `--slo-p95-ms` and the latency curve above (0.8 at 300 ms).
    #[arg(long)]
    pub slo_utilisation: Option<f64>,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            pod_capacity_rps: 300.0,
            startup_seconds: 60,
            min_replicas: 2,
            max_replicas: 20,
            slo_p95_ms: 300.0,
            row_seconds: 60,
            rate_window_seconds: 0,
            cpu_window_seconds: 0,
            idle_cpu_percent: 0.0,
            slo_utilisation: None,
        }
    }
}

impl Model {
    /// Why the numbers cannot describe a service, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.pod_capacity_rps.is_finite() && self.pod_capacity_rps > 0.0) {
            return Err(format!("--pod-capacity-rps must be a positive number, got {}", self.pod_capacity_rps));
        }
        if self.startup_seconds < 0 {
            return Err(format!("--startup-seconds must not be negative, got {}", self.startup_seconds));
        }
        if self.min_replicas < 1 || self.max_replicas < self.min_replicas {
            return Err(format!(
                "--min-replicas ({}) must be at least 1 and at most --max-replicas ({})",
                self.min_replicas, self.max_replicas
            ));
        }
        if !(self.slo_p95_ms.is_finite() && self.slo_p95_ms > 3.0 * BASE_MS) {
            return Err(format!("--slo-p95-ms must exceed {} ms, got {}", 3.0 * BASE_MS, self.slo_p95_ms));
        }
        if self.row_seconds < super::engine::TICK_SECONDS || self.row_seconds % super::engine::TICK_SECONDS != 0 {
            return Err(format!(
                "--row-seconds must be a positive multiple of the {} s tick, got {}",
                super::engine::TICK_SECONDS,
                self.row_seconds
            ));
        }
        if let Some(u) = self.slo_utilisation.filter(|u| !(u.is_finite() && *u > 0.0 && *u <= 1.0)) {
            return Err(format!("--slo-utilisation must lie in (0, 1], got {u}"));
        }
        if !(0.0..100.0).contains(&self.idle_cpu_percent) {
            return Err(format!("--idle-cpu-percent must lie in [0, 100), got {}", self.idle_cpu_percent));
        }
        if self.rate_window_seconds < 0 || self.cpu_window_seconds < 0 {
            return Err(format!(
                "--rate-window-seconds and --cpu-window-seconds must not be negative, got {} and {}",
                self.rate_window_seconds, self.cpu_window_seconds
            ));
        }
        Ok(())
    }

    /// Ticks of the simulation per trace row.
    pub fn ticks_per_row(&self) -> i64 {
        self.row_seconds / super::engine::TICK_SECONDS
    }

    /// Highest utilisation at which p95 stays within the SLO.
    pub fn slo_utilisation(&self) -> f64 {
        self.slo_utilisation.unwrap_or(1.0 - 3.0 * BASE_MS / self.slo_p95_ms)
    }

    /// Requests per second one ready pod serves within the SLO.
    pub fn slo_capacity_rps(&self) -> f64 {
        self.pod_capacity_rps * self.slo_utilisation()
    }

    /// CPU percent of each ready pod for `load` req/s; 100 when no pod is ready.
    pub fn cpu_percent(&self, load: f64, ready: i32) -> f64 {
        if ready <= 0 {
            return 100.0;
        }
        let busy = (load / (f64::from(ready) * self.pod_capacity_rps)).min(1.0);
        self.idle_cpu_percent + (100.0 - self.idle_cpu_percent) * busy
    }

    /// Whether `ready` pods cannot serve `load` within the SLO.
    pub fn overloaded(&self, load: f64, ready: i32) -> bool {
        load > f64::from(ready.max(0)) * self.slo_capacity_rps()
    }

    /// The clairvoyant fleet for `load`: just enough pods within the SLO, inside the bounds.
    pub fn oracle_replicas(&self, load: f64) -> i32 {
        let pods = (load / self.slo_capacity_rps()).ceil();
        let pods = if pods.is_finite() { pods.clamp(0.0, f64::from(i32::MAX)) as i32 } else { self.max_replicas };
        pods.clamp(self.min_replicas, self.max_replicas)
    }
}

pub fn memory_percent(cpu: f64) -> f64 {
    (30.0 + 0.3 * cpu).min(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slo_holds_up_to_eighty_percent() {
        let m = Model::default();
        assert!((m.slo_utilisation() - 0.8).abs() < 1e-9);
        assert!(!m.overloaded(480.0, 2));
        assert!(m.overloaded(481.0, 2));
        assert!(m.overloaded(1.0, 0));
    }

    #[test]
    fn cpu_follows_load_per_ready_pod_and_saturates() {
        let m = Model::default();
        assert_eq!(m.cpu_percent(300.0, 2), 50.0);
        assert_eq!(m.cpu_percent(3000.0, 2), 100.0);
        let busy_when_idle = Model { idle_cpu_percent: 20.0, ..m };
        assert_eq!(busy_when_idle.cpu_percent(0.0, 2), 20.0);
        assert_eq!(busy_when_idle.cpu_percent(300.0, 2), 60.0, "half the capacity: idle plus half the rest");
        assert_eq!(busy_when_idle.cpu_percent(3000.0, 2), 100.0);
    }

    #[test]
    fn the_oracle_fleet_is_just_enough_within_the_bounds() {
        let m = Model::default();
        assert_eq!(m.oracle_replicas(0.0), 2, "never below minReplicas");
        assert_eq!(m.oracle_replicas(960.0), 4, "exactly four pods' SLO capacity");
        assert_eq!(m.oracle_replicas(961.0), 5);
        assert_eq!(m.oracle_replicas(1e9), 20, "never above maxReplicas");
        let slower = Model { pod_capacity_rps: 100.0, slo_p95_ms: 600.0, ..m };
        assert_eq!(slower.oracle_replicas(900.0), 10, "90 req/s per pod within a 600 ms SLO");
        let measured = Model { slo_utilisation: Some(0.96), ..m };
        assert_eq!(measured.oracle_replicas(960.0), 4, "four pods at 80 % of 300 req/s are within 96 %");
        assert_eq!(measured.oracle_replicas(1153.0), 5);
    }

    #[test]
    fn numbers_that_cannot_describe_a_service_are_rejected_by_flag_name() {
        let m = Model::default();
        let cases = [
            (Model { pod_capacity_rps: 0.0, ..m }, "--pod-capacity-rps"),
            (Model { startup_seconds: -1, ..m }, "--startup-seconds"),
            (Model { min_replicas: 5, max_replicas: 4, ..m }, "--min-replicas"),
            (Model { slo_p95_ms: 60.0, ..m }, "--slo-p95-ms"),
            (Model { row_seconds: 20, ..m }, "--row-seconds"),
            (Model { row_seconds: 0, ..m }, "--row-seconds"),
            (Model { rate_window_seconds: -1, ..m }, "--rate-window-seconds"),
            (Model { idle_cpu_percent: 100.0, ..m }, "--idle-cpu-percent"),
            (Model { slo_utilisation: Some(1.5), ..m }, "--slo-utilisation"),
        ];
        for (model, flag) in cases {
            assert!(model.validate().is_err_and(|e| e.starts_with(flag)), "{flag}");
        }
        assert_eq!(m.validate(), Ok(()));
    }
}
