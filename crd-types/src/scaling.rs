//! Autoscaling settings: per-signal thresholds and evaluation periods, per-component bounds and cooldowns.
//!
//! Each signal and component has its own type because Kubernetes applies schema defaults per
//! type: one shared type could not default CPU to 70/30 and memory to 80/40.

use kube::KubeSchema;
use riskplatform_autoscale::{Bounds, DemandSizing, Thresholds};

use crate::forecast::ForecastSpec;
use serde::{Deserialize, Serialize};

/// Scaling settings of the whole platform (documented defaults from the design notes).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.fallbackAfterFailures > 0").message("autoscaling.fallbackAfterFailures must be positive"),
    validation = Rule::new("!has(self.forecast) || has(self.demand)").message("autoscaling.forecast needs autoscaling.demand (its measured pod capacity and reactive rule)")
)]
pub struct AutoscalingSpec {
    /// Bounds and cooldowns of the API servers.
    #[serde(default)]
    pub api: ApiScalingSpec,
    /// Bounds and cooldowns of the workers.
    #[serde(default)]
    pub workers: WorkerScalingSpec,
    /// CPU utilisation thresholds.
    #[serde(default)]
    pub cpu: CpuSignal,
    /// Memory utilisation thresholds.
    #[serde(default)]
    pub memory: MemorySignal,
    /// Request-rate thresholds (API).
    #[serde(default)]
    pub request_rate: RequestRateSignal,
    /// Queue-length thresholds (workers).
    #[serde(default)]
    pub queue_length: QueueLengthSignal,
    /// Consecutive evaluations without metrics after which a component's fallbackReplicas applies.
    #[serde(default = "default_fallback_after_failures")]
    pub fallback_after_failures: i32,
    /// Size the API from its request rate instead of the two-signal rule (docs/autoscaling.md);
    /// absent: the seed's rule alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demand: Option<DemandSpec>,
    /// Size the API for a forecast of its request rate a start-up ahead, with headroom from the
    /// forecast's measured error (docs/autoscaling.md); needs `demand`. Absent: demand sizing alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastSpec>,
}

fn default_fallback_after_failures() -> i32 {
    5
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            api: ApiScalingSpec::default(),
            workers: WorkerScalingSpec::default(),
            cpu: CpuSignal::default(),
            memory: MemorySignal::default(),
            request_rate: RequestRateSignal::default(),
            queue_length: QueueLengthSignal::default(),
            fallback_after_failures: default_fallback_after_failures(),
            demand: None,
            forecast: None,
        }
    }
}

/// Thresholds for CPU utilisation (percent of the pods' CPU requests).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scaleDownBelow < self.scaleUpAbove").message("autoscaling.cpu: scaleDownBelow must be below scaleUpAbove"),
    validation = Rule::new("self.scaleUpAbove <= 100.0 && self.scaleDownBelow >= 0.0").message("autoscaling.cpu: thresholds are percentages and must be between 0 and 100"),
    validation = Rule::new("self.evaluationPeriodSeconds > 0").message("autoscaling.cpu: evaluationPeriodSeconds must be positive")
)]
pub struct CpuSignal {
    /// Scale up when the signal stays above this for the whole evaluation period.
    #[serde(default = "cpu_up")]
    pub scale_up_above: f64,
    /// Scale down when the signal stays below this for the whole evaluation period.
    #[serde(default = "cpu_down")]
    pub scale_down_below: f64,
    /// How long a breach must be sustained, in seconds.
    #[serde(default = "cpu_period")]
    pub evaluation_period_seconds: i64,
    /// PromQL replacing the default query; `$namespace` and `$name` are substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Default for CpuSignal {
    fn default() -> Self {
        Self {
            scale_up_above: cpu_up(),
            scale_down_below: cpu_down(),
            evaluation_period_seconds: cpu_period(),
            query: None,
        }
    }
}

impl CpuSignal {
    /// The band in the shape the policy takes.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            scale_up_above: self.scale_up_above,
            scale_down_below: self.scale_down_below,
            evaluation_period_seconds: self.evaluation_period_seconds,
        }
    }
}

fn cpu_up() -> f64 {
    70.0
}
fn cpu_down() -> f64 {
    30.0
}
fn cpu_period() -> i64 {
    300
}

/// Thresholds for memory utilisation (percent of the pods' memory requests).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scaleDownBelow < self.scaleUpAbove").message("autoscaling.memory: scaleDownBelow must be below scaleUpAbove"),
    validation = Rule::new("self.scaleUpAbove <= 100.0 && self.scaleDownBelow >= 0.0").message("autoscaling.memory: thresholds are percentages and must be between 0 and 100"),
    validation = Rule::new("self.evaluationPeriodSeconds > 0").message("autoscaling.memory: evaluationPeriodSeconds must be positive")
)]
pub struct MemorySignal {
    /// Scale up when the signal stays above this for the whole evaluation period.
    #[serde(default = "memory_up")]
    pub scale_up_above: f64,
    /// Scale down when the signal stays below this for the whole evaluation period.
    #[serde(default = "memory_down")]
    pub scale_down_below: f64,
    /// How long a breach must be sustained, in seconds.
    #[serde(default = "memory_period")]
    pub evaluation_period_seconds: i64,
    /// PromQL replacing the default query; `$namespace` and `$name` are substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Default for MemorySignal {
    fn default() -> Self {
        Self {
            scale_up_above: memory_up(),
            scale_down_below: memory_down(),
            evaluation_period_seconds: memory_period(),
            query: None,
        }
    }
}

impl MemorySignal {
    /// The band in the shape the policy takes.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            scale_up_above: self.scale_up_above,
            scale_down_below: self.scale_down_below,
            evaluation_period_seconds: self.evaluation_period_seconds,
        }
    }
}

fn memory_up() -> f64 {
    80.0
}
fn memory_down() -> f64 {
    40.0
}
fn memory_period() -> i64 {
    300
}

/// Thresholds for the API's request rate (requests per second, all pods together).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scaleDownBelow < self.scaleUpAbove").message("autoscaling.requestRate: scaleDownBelow must be below scaleUpAbove"),
    validation = Rule::new("self.scaleDownBelow >= 0.0").message("autoscaling.requestRate: thresholds must not be negative"),
    validation = Rule::new("self.evaluationPeriodSeconds > 0").message("autoscaling.requestRate: evaluationPeriodSeconds must be positive")
)]
pub struct RequestRateSignal {
    /// Scale up when the signal stays above this for the whole evaluation period.
    #[serde(default = "requestrate_up")]
    pub scale_up_above: f64,
    /// Scale down when the signal stays below this for the whole evaluation period.
    #[serde(default = "requestrate_down")]
    pub scale_down_below: f64,
    /// How long a breach must be sustained, in seconds.
    #[serde(default = "requestrate_period")]
    pub evaluation_period_seconds: i64,
    /// PromQL replacing the default query; `$namespace` and `$name` are substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Default for RequestRateSignal {
    fn default() -> Self {
        Self {
            scale_up_above: requestrate_up(),
            scale_down_below: requestrate_down(),
            evaluation_period_seconds: requestrate_period(),
            query: None,
        }
    }
}

impl RequestRateSignal {
    /// The band in the shape the policy takes.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            scale_up_above: self.scale_up_above,
            scale_down_below: self.scale_down_below,
            evaluation_period_seconds: self.evaluation_period_seconds,
        }
    }
}

fn requestrate_up() -> f64 {
    1500.0
}
fn requestrate_down() -> f64 {
    500.0
}
fn requestrate_period() -> i64 {
    180
}

/// Thresholds for the job queue length (tasks waiting, all queues together).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scaleDownBelow < self.scaleUpAbove").message("autoscaling.queueLength: scaleDownBelow must be below scaleUpAbove"),
    validation = Rule::new("self.scaleDownBelow >= 0.0").message("autoscaling.queueLength: thresholds must not be negative"),
    validation = Rule::new("self.evaluationPeriodSeconds > 0").message("autoscaling.queueLength: evaluationPeriodSeconds must be positive")
)]
pub struct QueueLengthSignal {
    /// Scale up when the signal stays above this for the whole evaluation period.
    #[serde(default = "queuelength_up")]
    pub scale_up_above: f64,
    /// Scale down when the signal stays below this for the whole evaluation period.
    #[serde(default = "queuelength_down")]
    pub scale_down_below: f64,
    /// How long a breach must be sustained, in seconds.
    #[serde(default = "queuelength_period")]
    pub evaluation_period_seconds: i64,
    /// PromQL replacing the default query; `$namespace` and `$name` are substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Default for QueueLengthSignal {
    fn default() -> Self {
        Self {
            scale_up_above: queuelength_up(),
            scale_down_below: queuelength_down(),
            evaluation_period_seconds: queuelength_period(),
            query: None,
        }
    }
}

impl QueueLengthSignal {
    /// The band in the shape the policy takes.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            scale_up_above: self.scale_up_above,
            scale_down_below: self.scale_down_below,
            evaluation_period_seconds: self.evaluation_period_seconds,
        }
    }
}

fn queuelength_up() -> f64 {
    1000.0
}
fn queuelength_down() -> f64 {
    100.0
}
fn queuelength_period() -> i64 {
    120
}

/// Replica bounds, cooldowns and pause switch of the API servers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.api: minReplicas must not exceed maxReplicas"),
    validation = Rule::new("self.minReplicas >= 0 && self.maxReplicas > 0").message("autoscaling.api: replica bounds must be positive"),
    validation = Rule::new("self.scaleUpCooldownSeconds > 0 && self.scaleDownCooldownSeconds > 0").message("autoscaling.api: cooldowns must be positive"),
    validation = Rule::new("!has(self.fallbackReplicas) || (self.fallbackReplicas >= self.minReplicas && self.fallbackReplicas <= self.maxReplicas)").message("autoscaling.api: fallbackReplicas must lie between minReplicas and maxReplicas")
)]
pub struct ApiScalingSpec {
    /// Fewest replicas the autoscaler keeps.
    #[serde(default = "api_min")]
    pub min_replicas: i32,
    /// Most replicas the autoscaler allows.
    #[serde(default = "api_max")]
    pub max_replicas: i32,
    /// Seconds after a scale event before the next scale-up.
    #[serde(default = "api_up_cooldown")]
    pub scale_up_cooldown_seconds: i64,
    /// Seconds after a scale event before the next scale-down.
    #[serde(default = "api_down_cooldown")]
    pub scale_down_cooldown_seconds: i64,
    /// When true the autoscaler holds the current replica count.
    #[serde(default)]
    pub paused: bool,
    /// Replicas to run when metrics stay unavailable for fallbackAfterFailures evaluations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_replicas: Option<i32>,
}

impl Default for ApiScalingSpec {
    fn default() -> Self {
        Self {
            min_replicas: api_min(),
            max_replicas: api_max(),
            scale_up_cooldown_seconds: api_up_cooldown(),
            scale_down_cooldown_seconds: api_down_cooldown(),
            paused: false,
            fallback_replicas: None,
        }
    }
}

impl ApiScalingSpec {
    /// The bounds in the shape the policy takes.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            scale_up_cooldown_seconds: self.scale_up_cooldown_seconds,
            scale_down_cooldown_seconds: self.scale_down_cooldown_seconds,
            paused: self.paused,
            fallback_replicas: self.fallback_replicas,
        }
    }
}

fn api_min() -> i32 {
    2
}
fn api_max() -> i32 {
    20
}
fn api_up_cooldown() -> i64 {
    300
}
fn api_down_cooldown() -> i64 {
    900
}

/// Replica bounds, cooldowns and pause switch of the workers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.workers: minReplicas must not exceed maxReplicas"),
    validation = Rule::new("self.minReplicas >= 0 && self.maxReplicas > 0").message("autoscaling.workers: replica bounds must be positive"),
    validation = Rule::new("self.scaleUpCooldownSeconds > 0 && self.scaleDownCooldownSeconds > 0").message("autoscaling.workers: cooldowns must be positive"),
    validation = Rule::new("!has(self.fallbackReplicas) || (self.fallbackReplicas >= self.minReplicas && self.fallbackReplicas <= self.maxReplicas)").message("autoscaling.workers: fallbackReplicas must lie between minReplicas and maxReplicas")
)]
pub struct WorkerScalingSpec {
    /// Fewest replicas the autoscaler keeps.
    #[serde(default = "workers_min")]
    pub min_replicas: i32,
    /// Most replicas the autoscaler allows.
    #[serde(default = "workers_max")]
    pub max_replicas: i32,
    /// Seconds after a scale event before the next scale-up.
    #[serde(default = "workers_up_cooldown")]
    pub scale_up_cooldown_seconds: i64,
    /// Seconds after a scale event before the next scale-down.
    #[serde(default = "workers_down_cooldown")]
    pub scale_down_cooldown_seconds: i64,
    /// When true the autoscaler holds the current replica count.
    #[serde(default)]
    pub paused: bool,
    /// Replicas to run when metrics stay unavailable for fallbackAfterFailures evaluations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_replicas: Option<i32>,
}

impl Default for WorkerScalingSpec {
    fn default() -> Self {
        Self {
            min_replicas: workers_min(),
            max_replicas: workers_max(),
            scale_up_cooldown_seconds: workers_up_cooldown(),
            scale_down_cooldown_seconds: workers_down_cooldown(),
            paused: false,
            fallback_replicas: None,
        }
    }
}

impl WorkerScalingSpec {
    /// The bounds in the shape the policy takes.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            scale_up_cooldown_seconds: self.scale_up_cooldown_seconds,
            scale_down_cooldown_seconds: self.scale_down_cooldown_seconds,
            paused: self.paused,
            fallback_replicas: self.fallback_replicas,
        }
    }
}

fn workers_min() -> i32 {
    3
}
fn workers_max() -> i32 {
    50
}
fn workers_up_cooldown() -> i64 {
    180
}
fn workers_down_cooldown() -> i64 {
    600
}

/// Demand-based sizing of the API; every field defaults to the riskplatform preset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("0.0 < self.scaleDownUtilisation && self.scaleDownUtilisation <= self.scaleUpUtilisation && self.scaleUpUtilisation <= 1.0 && 0.0 < self.targetUtilisation && self.targetUtilisation <= 1.0").message("autoscaling.demand: utilisations must lie in (0, 1] with scaleDownUtilisation <= scaleUpUtilisation"),
    validation = Rule::new("self.scaleUpWindowSeconds >= 0 && self.lookaheadSeconds >= 0 && self.stabilisationWindowSeconds > 0").message("autoscaling.demand: windows must not be negative and the stabilisation window must be positive"),
    validation = Rule::new("0.0 < self.saturatedCpuPercent && self.saturatedCpuPercent <= 100.0").message("autoscaling.demand: saturatedCpuPercent must lie in (0, 100]")
)]
pub struct DemandSpec {
    /// Scale up once the request rate needs more pods than run at this share of their capacity.
    #[serde(default = "demand_up")]
    pub scale_up_utilisation: f64,
    /// Share of capacity a scale-up sizes the fleet for.
    #[serde(default = "demand_target")]
    pub target_utilisation: f64,
    /// Share of capacity a scale-down sizes the fleet for (headroom against flaps).
    #[serde(default = "demand_down")]
    pub scale_down_utilisation: f64,
    /// A scale-up sizes for the lowest request rate of this many seconds.
    #[serde(default = "demand_up_window")]
    pub scale_up_window_seconds: i64,
    /// Seconds a scale-up projects a rising request rate ahead (pod start-up time).
    #[serde(default = "demand_lookahead")]
    pub lookahead_seconds: i64,
    /// A scale-down sizes for the highest request rate of this many seconds.
    #[serde(default = "demand_stabilisation")]
    pub stabilisation_window_seconds: i64,
    /// CPU percent from which pods count as saturated and their capacity is not measured.
    #[serde(default = "demand_saturated")]
    pub saturated_cpu_percent: f64,
}

impl DemandSpec {
    /// The sizing in the shape the policy takes.
    pub fn sizing(&self) -> DemandSizing {
        DemandSizing {
            scale_up_utilisation: self.scale_up_utilisation,
            target_utilisation: self.target_utilisation,
            scale_down_utilisation: self.scale_down_utilisation,
            scale_up_window_seconds: self.scale_up_window_seconds,
            lookahead_seconds: self.lookahead_seconds,
            stabilisation_window_seconds: self.stabilisation_window_seconds,
            saturated_cpu_percent: self.saturated_cpu_percent,
        }
    }
}

fn demand_up() -> f64 {
    DemandSizing::PRESET.scale_up_utilisation
}
fn demand_target() -> f64 {
    DemandSizing::PRESET.target_utilisation
}
fn demand_down() -> f64 {
    DemandSizing::PRESET.scale_down_utilisation
}
fn demand_up_window() -> i64 {
    DemandSizing::PRESET.scale_up_window_seconds
}
fn demand_lookahead() -> i64 {
    DemandSizing::PRESET.lookahead_seconds
}
fn demand_stabilisation() -> i64 {
    DemandSizing::PRESET.stabilisation_window_seconds
}
fn demand_saturated() -> f64 {
    DemandSizing::PRESET.saturated_cpu_percent
}
