//! The capacity and latency model the simulator replays traffic through.
//!
//! - A pod serves up to `POD_CAPACITY_RPS` requests per second at 100 % CPU; CPU is proportional
//!   to the load each ready pod carries (requests 100m, so 100 % of requests is one pod's worth).
//! - Latency rises with utilisation like a single-server queue: `p95 = 3 * BASE_MS / (1 - u)`.
//!   With a 20 ms base the SLO p95 < 300 ms holds up to u = 0.8, so pods serve at most
//!   `0.8 * POD_CAPACITY_RPS` within the SLO; a tick whose load exceeds what ready pods serve
//!   within the SLO counts as overloaded.
//! - Memory is 30 % of requests at rest plus 0.3 % per CPU percent (caches and in-flight requests).
//! - A new pod serves `STARTUP_SECONDS` after it is asked for (scheduling, image, readiness probe).

/// Requests per second one pod serves at 100 % CPU.
pub const POD_CAPACITY_RPS: f64 = 300.0;
/// Latency of an idle pod.
pub const BASE_MS: f64 = 20.0;
/// The API's p95 SLO.
pub const SLO_P95_MS: f64 = 300.0;
/// Seconds from asking for a pod to it being ready.
pub const STARTUP_SECONDS: i64 = 60;

/// Highest utilisation at which p95 stays within the SLO.
pub fn slo_utilisation() -> f64 {
    1.0 - 3.0 * BASE_MS / SLO_P95_MS
}

/// CPU percent of each ready pod for `load` req/s; 100 when no pod is ready.
pub fn cpu_percent(load: f64, ready: i32) -> f64 {
    if ready <= 0 {
        return 100.0;
    }
    (load / (f64::from(ready) * POD_CAPACITY_RPS) * 100.0).min(100.0)
}

pub fn memory_percent(cpu: f64) -> f64 {
    (30.0 + 0.3 * cpu).min(100.0)
}

/// Whether `ready` pods cannot serve `load` within the SLO.
pub fn overloaded(load: f64, ready: i32) -> bool {
    load > f64::from(ready.max(0)) * POD_CAPACITY_RPS * slo_utilisation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slo_holds_up_to_eighty_percent() {
        assert!((slo_utilisation() - 0.8).abs() < 1e-9);
        assert!(!overloaded(480.0, 2));
        assert!(overloaded(481.0, 2));
        assert!(overloaded(1.0, 0));
    }

    #[test]
    fn cpu_follows_load_per_ready_pod_and_saturates() {
        assert_eq!(cpu_percent(300.0, 2), 50.0);
        assert_eq!(cpu_percent(3000.0, 2), 100.0);
    }
}
