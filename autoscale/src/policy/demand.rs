//! Demand-based sizing of the API: replicas from the request rate and a pod's measured capacity.
//!
//! CPU tops out at 100 %, so a CPU-driven rule cannot see how far demand exceeds a saturated
//! fleet and reaches the right size only in several steps. The request rate keeps growing with
//! demand. A pod's capacity (requests per second at 100 % CPU) is measured from the rate per ready
//! pod and their CPU while they are not saturated, and remembered for when they are.
//!
//! - Scale up to `ceil(rate / (capacity * scale_up_utilisation))` as soon as that exceeds the
//!   current replicas, with `rate` the lowest of the scale-up window. Pods still starting count,
//!   so the next evaluation does not ask for them again.
//! - Scale down to `ceil(peak / (capacity * scale_down_utilisation))`, with `peak` the highest rate
//!   of the stabilisation window: load must stay low that long before capacity goes, and the lower
//!   utilisation leaves headroom, so returning load does not scale straight back up (a flap).
//! - Capacity is measured only while every pod is Ready: a cluster's CPU signal divides by the
//!   requests of every pod, so pods still starting would make a ready pod look faster than it is.
//! - Before any capacity is measured (a fleet that met its load already saturated), CPU at the
//!   saturation level for the whole scale-up window scales up in proportion to it, as an HPA
//!   would, once every pod asked for earlier is Ready.

use crate::config::DemandSizing;
use crate::signal::{window, Reading};

use super::Want;

/// Below this CPU percent the rate per pod is mostly noise and idle overhead, not capacity.
const MIN_MEASURING_CPU_PERCENT: f64 = 5.0;

/// Requests per second one ready pod serves at 100 % CPU, from the newest CPU percent and request
/// rate, when every pod is ready and the pods are neither saturated nor idle.
pub fn measured_capacity(
    sizing: &DemandSizing,
    cpu: Option<f64>,
    rate: Option<f64>,
    ready: i32,
    current: i32,
) -> Option<f64> {
    let (cpu, rate) = (cpu?, rate?);
    let measurable =
        ready > 0 && ready == current && (MIN_MEASURING_CPU_PERCENT..sizing.saturated_cpu_percent).contains(&cpu);
    let capacity = rate / f64::from(ready) / (cpu / 100.0);
    (measurable && capacity.is_finite() && capacity > 0.0).then_some(capacity)
}

/// Replicas that serve `rate` with each pod at `utilisation` of `capacity`.
pub(super) fn pods_for(rate: f64, capacity: f64, utilisation: f64) -> i32 {
    let pods = (rate / (capacity * utilisation)).ceil();
    if pods.is_finite() {
        pods.clamp(0.0, f64::from(i32::MAX)) as i32
    } else {
        i32::MAX
    }
}

/// The samples of the scale-up window and the lowest of them: what has lasted the whole window.
fn scale_up_window(reading: &Reading, sizing: &DemandSizing, now: i64, staleness: i64) -> Option<(Vec<f64>, f64)> {
    let recent = window(reading, now, sizing.scale_up_window_seconds, staleness).ok()?;
    let lowest = recent.iter().copied().fold(f64::INFINITY, f64::min);
    Some((recent, lowest))
}

/// A scale-up for pods saturated before their capacity was ever measured, or None: CPU at
/// `saturated_cpu_percent` or more for the whole scale-up window, every pod Ready.
pub(super) fn saturated_rule(
    sizing: &DemandSizing,
    cpu: &Reading,
    current: i32,
    ready: i32,
    now: i64,
    staleness: i64,
) -> Option<Want> {
    let (_, lowest) = scale_up_window(cpu, sizing, now, staleness)?;
    if ready < current || lowest < sizing.saturated_cpu_percent {
        return None;
    }
    // Each pod's CPU as load of a pod-sized capacity.
    let up = pods_for(f64::from(current) * lowest / 100.0, 1.0, sizing.target_utilisation).max(current + 1);
    Some(Want::Up(format!("cpu {lowest:.0} % with no pod capacity measured yet needs {up} pods"), up))
}

/// The demand rule's verdict, or None when the request rate is unusable and the seed's rule
/// must decide instead.
pub(super) fn rule(
    sizing: &DemandSizing,
    rate: &Reading,
    capacity: f64,
    current: i32,
    now: i64,
    staleness: i64,
) -> Option<Want> {
    let (recent, sustained) = scale_up_window(rate, sizing, now, staleness)?;
    let slope = match (recent.first(), recent.last()) {
        (Some(first), Some(last)) if recent.len() > 1 => (last - first) / sizing.scale_up_window_seconds as f64,
        _ => 0.0,
    };
    let projected = sustained + slope.max(0.0) * sizing.lookahead_seconds as f64;
    if pods_for(projected, capacity, sizing.scale_up_utilisation) > current {
        let up = pods_for(projected, capacity, sizing.target_utilisation).max(current + 1);
        return Some(Want::Up(format!("request rate {projected:.0}/s needs {up} pods of {capacity:.0}/s"), up));
    }
    let Ok(stable) = window(rate, now, sizing.stabilisation_window_seconds, staleness) else {
        return Some(Want::Hold(format!(
            "request rate within capacity; a scale-down needs {} s of samples",
            sizing.stabilisation_window_seconds
        )));
    };
    let peak = stable.iter().copied().fold(0.0_f64, f64::max);
    let down = pods_for(peak, capacity, sizing.scale_down_utilisation);
    let window_s = sizing.stabilisation_window_seconds;
    Some(if down < current {
        Want::Down(format!("peak request rate {peak:.0}/s of the last {window_s} s needs {down} pods"), down)
    } else {
        Want::Hold(format!("request rate {sustained:.0}/s within the capacity of {current} pods"))
    })
}

#[cfg(test)]
mod tests;
