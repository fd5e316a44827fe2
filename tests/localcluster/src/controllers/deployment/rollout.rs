//! The pure arithmetic of a Deployment rollout (upstream's rolling.go, recreate.go and
//! deployment_util.go): given the replica sets' counts, which one to scale to what.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the rollout needs to know of one ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsCounts {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

/// The resolved update strategy of a Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    RollingUpdate { max_surge: i32, max_unavailable: i32 },
}

/// The 25 % upstream defaults both rolling-update parameters to.
const DEFAULT_ROLLING_PARAMETER: &str = "25%";

/// Upstream's GetScaledValueFromIntOrPercent: a count, or a percentage of `total` rounded up
/// (maxSurge) or down (maxUnavailable).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value {s:?}: must be an integer or a percentage"))?;
            let scaled = percent * i64::from(total);
            let value = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            i32::try_from(value).map_err(|_| format!("{s:?} of {total} is out of range"))
        }
    }
}

/// Upstream's ResolveFenceposts: both zero would never progress, so unavailable becomes 1.
pub fn resolve_fenceposts(surge: &IntOrString, unavailable: &IntOrString, desired: i32) -> Result<(i32, i32), String> {
    let surge = scaled_value(surge, desired, true)?;
    let unavailable = scaled_value(unavailable, desired, false)?;
    Ok(if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) })
}

/// The Deployment's strategy with upstream's defaults (RollingUpdate, 25 %/25 %) for what is unset.
pub fn strategy(deployment: &Deployment) -> Result<Strategy, String> {
    let spec = deployment.spec.as_ref().ok_or("spec is required")?;
    let strategy = spec.strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
        "Recreate" => Ok(Strategy::Recreate),
        "RollingUpdate" => {
            let params = strategy.rolling_update.unwrap_or_default();
            let default = || IntOrString::String(DEFAULT_ROLLING_PARAMETER.to_owned());
            let surge = params.max_surge.unwrap_or_else(default);
            let unavailable = params.max_unavailable.unwrap_or_else(default);
            let (max_surge, max_unavailable) = resolve_fenceposts(&surge, &unavailable, desired(deployment))
                .map_err(|e| format!("spec.strategy.rollingUpdate: {e}"))?;
            Ok(Strategy::RollingUpdate { max_surge, max_unavailable })
        }
        other => Err(format!("spec.strategy.type: unsupported value {other:?}")),
    }
}

pub fn desired(deployment: &Deployment) -> i32 {
    deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Upstream's MaxUnavailable: 0 for Recreate or no replicas, never more than the replicas.
pub fn max_unavailable(strategy: Strategy, desired: i32) -> i32 {
    match strategy {
        Strategy::RollingUpdate { max_unavailable, .. } if desired > 0 => max_unavailable.min(desired),
        _ => 0,
    }
}

fn total(sets: &[&RsCounts]) -> i32 {
    sets.iter().map(|rs| rs.replicas).sum()
}

/// Upstream's NewRSNewReplicas for a rolling update: grow the new set as far as maxSurge allows.
pub fn new_rs_replicas(desired: i32, max_surge: i32, new: &RsCounts, old: &[RsCounts]) -> i32 {
    let all: Vec<&RsCounts> = old.iter().chain(std::iter::once(new)).collect();
    let max_total = desired + max_surge;
    let current = total(&all);
    if current >= max_total {
        return new.replicas;
    }
    new.replicas + (max_total - current).min(desired - new.replicas).max(0)
}

/// One step of a rolling update (upstream's rolloutRolling): scale the new set toward the
/// desired count within maxSurge; if it cannot grow, scale old sets down within maxUnavailable,
/// unhealthy replicas first. Returns the (set, replicas) changes, empty when nothing can move.
pub fn rolling_step(desired: i32, strategy: Strategy, new: &RsCounts, old: &[RsCounts]) -> Vec<(String, i32)> {
    let Strategy::RollingUpdate { max_surge, .. } = strategy else { return Vec::new() };
    if new.replicas > desired {
        return vec![(new.name.clone(), desired)];
    }
    if new.replicas < desired {
        let grown = new_rs_replicas(desired, max_surge, new, old);
        if grown != new.replicas {
            return vec![(new.name.clone(), grown)];
        }
    }
    scale_down_old(desired, strategy, new, old)
}

/// Upstream's reconcileOldReplicaSets: cleanupUnhealthyReplicas, then
/// scaleDownOldReplicaSetsForRollingUpdate, both bounded so availability never drops below
/// `desired - maxUnavailable`. `old` is ordered oldest first.
fn scale_down_old(desired: i32, strategy: Strategy, new: &RsCounts, old: &[RsCounts]) -> Vec<(String, i32)> {
    let mut old: Vec<RsCounts> = old.to_vec();
    if old.iter().map(|rs| rs.replicas).sum::<i32>() == 0 {
        return Vec::new();
    }
    let min_available = desired - max_unavailable(strategy, desired);
    let all_pods: i32 = old.iter().map(|rs| rs.replicas).sum::<i32>() + new.replicas;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut changes = Vec::new();
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_scaled_down || rs.replicas == 0 || rs.replicas == rs.available {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(rs.replicas - rs.available);
        rs.replicas -= down;
        cleaned += down;
        changes.push((rs.name.clone(), rs.replicas));
    }
    let available: i32 = old.iter().map(|rs| rs.available.min(rs.replicas)).sum::<i32>() + new.available;
    if available > min_available {
        let mut budget = available - min_available;
        for rs in old.iter_mut().filter(|rs| rs.replicas > 0) {
            if budget <= 0 {
                break;
            }
            let down = rs.replicas.min(budget);
            rs.replicas -= down;
            budget -= down;
            changes.retain(|(name, _)| name != &rs.name);
            changes.push((rs.name.clone(), rs.replicas));
        }
    }
    changes
}

/// One step of a Recreate rollout (upstream's rolloutRecreate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecreateStep {
    /// Scale these old sets to zero.
    ScaleDownOld(Vec<String>),
    /// Old pods still exist (running or terminating): wait for them to go.
    WaitForOldPods,
    /// Create the new set with the desired replicas.
    CreateNew,
    /// Scale the new set to the desired replicas.
    ScaleNew(i32),
    Done,
}

pub fn recreate_step(desired: i32, new: Option<&RsCounts>, old: &[RsCounts], old_pods_remain: bool) -> RecreateStep {
    let active: Vec<String> = old.iter().filter(|rs| rs.replicas > 0).map(|rs| rs.name.clone()).collect();
    if !active.is_empty() {
        return RecreateStep::ScaleDownOld(active);
    }
    if old_pods_remain {
        return RecreateStep::WaitForOldPods;
    }
    match new {
        None => RecreateStep::CreateNew,
        Some(rs) if rs.replicas != desired => RecreateStep::ScaleNew(desired),
        Some(_) => RecreateStep::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, available: i32) -> RsCounts {
        RsCounts { name: name.into(), replicas, available }
    }

    fn rolling(max_surge: i32, max_unavailable: i32) -> Strategy {
        Strategy::RollingUpdate { max_surge, max_unavailable }
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 10), Ok((3, 2)));
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 1), Ok((1, 0)));
        assert_eq!(resolve_fenceposts(&IntOrString::Int(0), &pct("10%"), 5), Ok((0, 1)));
        assert!(resolve_fenceposts(&pct("x%"), &pct("25%"), 4).is_err());
    }

    #[test]
    fn a_rolling_update_first_surges_the_new_set() {
        let step = rolling_step(4, rolling(1, 0), &rs("new", 0, 0), &[rs("old", 4, 4)]);
        assert_eq!(step, vec![("new".to_string(), 1)]);
    }

    #[test]
    fn a_rolling_update_with_no_unavailable_budget_waits_for_the_new_pod_to_be_available() {
        assert!(rolling_step(4, rolling(1, 0), &rs("new", 1, 0), &[rs("old", 4, 4)]).is_empty());
    }

    #[test]
    fn a_rolling_update_scales_the_old_set_down_once_new_pods_are_available() {
        let step = rolling_step(4, rolling(1, 0), &rs("new", 1, 1), &[rs("old", 4, 4)]);
        assert_eq!(step, vec![("old".to_string(), 3)]);
    }

    #[test]
    fn a_rolling_update_removes_unhealthy_old_replicas_first_within_the_budget() {
        let step = rolling_step(4, rolling(0, 1), &rs("new", 0, 0), &[rs("old", 4, 2)]);
        assert_eq!(step, vec![("old".to_string(), 3)]);
    }

    #[test]
    fn a_new_set_above_the_desired_count_is_scaled_down_to_it() {
        assert_eq!(rolling_step(2, rolling(1, 1), &rs("new", 5, 5), &[]), vec![("new".to_string(), 2)]);
    }

    #[test]
    fn recreate_scales_old_sets_down_then_waits_then_creates() {
        assert_eq!(recreate_step(3, None, &[rs("old", 3, 3)], true), RecreateStep::ScaleDownOld(vec!["old".into()]));
        assert_eq!(recreate_step(3, None, &[rs("old", 0, 0)], true), RecreateStep::WaitForOldPods);
        assert_eq!(recreate_step(3, None, &[rs("old", 0, 0)], false), RecreateStep::CreateNew);
        assert_eq!(recreate_step(3, Some(&rs("new", 0, 0)), &[], false), RecreateStep::ScaleNew(3));
        assert_eq!(recreate_step(3, Some(&rs("new", 3, 0)), &[], false), RecreateStep::Done);
    }
}
