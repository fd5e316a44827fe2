//! What the REST API sends and accepts, built purely from stored RiskPlatforms, and the parsing of
//! path segments and bodies into the few values an action may write.

use kube::api::DynamicObject;
use riskplatform_crd::{condition, BreakerMode, RiskPlatformSpec, RiskPlatformStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::ToSchema;

use super::error::ApiError;

/// A platform as stored: the spec typed (this operator's own), the status kept as JSON so parts
/// written by other components are served exactly as they are.
pub struct Platform {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub spec: RiskPlatformSpec,
    pub status: Option<Value>,
}

impl TryFrom<DynamicObject> for Platform {
    type Error = ApiError;

    fn try_from(obj: DynamicObject) -> Result<Self, ApiError> {
        let name = obj.metadata.name.ok_or_else(|| ApiError::Unreadable("object without a name".to_owned()))?;
        let namespace =
            obj.metadata.namespace.ok_or_else(|| ApiError::Unreadable(format!("{name} without a namespace")))?;
        let mut data = obj.data;
        let spec = serde_json::from_value(data.get_mut("spec").map(Value::take).unwrap_or_default())
            .map_err(|e| ApiError::Unreadable(format!("spec of {namespace}/{name}: {e}")))?;
        let status = data.get_mut("status").map(Value::take).filter(|s| !s.is_null());
        Ok(Self { namespace, name, generation: obj.metadata.generation, spec, status })
    }
}

impl Platform {
    /// The status fields this operator defines, for summaries; other fields are ignored here.
    fn typed_status(&self) -> Result<RiskPlatformStatus, ApiError> {
        match &self.status {
            Some(s) => RiskPlatformStatus::deserialize(s)
                .map_err(|e| ApiError::Unreadable(format!("status of {}/{}: {e}", self.namespace, self.name))),
            None => Ok(RiskPlatformStatus::default()),
        }
    }

    fn status_field(&self, key: &str) -> Option<Value> {
        self.status.as_ref().and_then(|s| s.get(key)).filter(|v| !v.is_null()).cloned()
    }

    fn overrides(&self) -> BreakerOverridesView {
        let o = &self.spec.circuit_breaker.overrides;
        BreakerOverridesView { database: o.database, redis: o.redis }
    }

    fn paused(&self) -> PausedView {
        let a = &self.spec.autoscaling;
        PausedView { api: a.api.paused, workers: a.workers.paused }
    }

    pub fn summary(&self) -> Result<PlatformSummary, ApiError> {
        let status = self.typed_status()?;
        Ok(PlatformSummary {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ready: status.condition(condition::READY).map_or_else(|| "Unknown".to_owned(), |c| c.status.clone()),
            api: status.api.map(|c| c.ready),
            workers: status.workers.map(|c| c.ready),
            breakers: status.breaker_summary,
            paused: self.paused(),
            generation: self.generation,
            observed_generation: status.observed_generation,
        })
    }

    pub fn detail(self) -> PlatformDetail {
        let a = &self.spec.autoscaling;
        let spec = SpecSummary {
            api_image: self.spec.api.image.clone(),
            workers_image: self.spec.workers.image.clone().unwrap_or_else(|| self.spec.api.image.clone()),
            autoscaling: ScalingSummary {
                api: ComponentScaling {
                    min_replicas: a.api.min_replicas,
                    max_replicas: a.api.max_replicas,
                    paused: a.api.paused,
                },
                workers: ComponentScaling {
                    min_replicas: a.workers.min_replicas,
                    max_replicas: a.workers.max_replicas,
                    paused: a.workers.paused,
                },
            },
            breaker_overrides: self.overrides(),
            prometheus_url: self.spec.prometheus.url.clone(),
        };
        PlatformDetail {
            namespace: self.namespace,
            name: self.name,
            generation: self.generation,
            spec,
            status: self.status,
        }
    }

    pub fn decisions(&self) -> DecisionsView {
        DecisionsView {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            autoscaling: self.status_field("autoscaling"),
        }
    }

    pub fn breakers(&self) -> BreakersView {
        BreakersView {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            overrides: self.overrides(),
            summary: self.status_field("breakerSummary").and_then(|v| v.as_str().map(str::to_owned)),
            circuit_breakers: self.status_field("circuitBreakers"),
        }
    }

    pub fn pause_state(&self, component: Component) -> PauseView {
        let paused = self.paused();
        PauseView {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            component: component.as_str(),
            paused: match component {
                Component::Api => paused.api,
                Component::Workers => paused.workers,
            },
            generation: self.generation,
        }
    }
}

/// One line of the platform list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSummary {
    pub namespace: String,
    pub name: String,
    /// Status of the Ready condition: True, False or Unknown (also when not reconciled yet).
    #[schema(example = "True")]
    pub ready: String,
    /// Ready/desired API replicas.
    #[schema(example = "2/2")]
    pub api: Option<String>,
    /// Ready/desired worker replicas.
    #[schema(example = "3/3")]
    pub workers: Option<String>,
    /// Breaker state per dependency.
    #[schema(example = "database=Auto redis=Auto")]
    pub breakers: Option<String>,
    pub paused: PausedView,
    pub generation: Option<i64>,
    /// The generation the status describes; behind `generation` while a change is reconciled.
    pub observed_generation: Option<i64>,
}

/// Whether autoscaling of each component is paused (spec.autoscaling.<component>.paused).
#[derive(Serialize, ToSchema)]
pub struct PausedView {
    pub api: bool,
    pub workers: bool,
}

/// One platform: a summary of its spec and its whole status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformDetail {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub spec: SpecSummary,
    /// The status exactly as stored (conditions, replicas, autoscaling, circuit breakers, ...);
    /// null before the first reconcile.
    #[schema(value_type = Option<Object>)]
    pub status: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpecSummary {
    pub api_image: String,
    pub workers_image: String,
    pub autoscaling: ScalingSummary,
    pub breaker_overrides: BreakerOverridesView,
    pub prometheus_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct ScalingSummary {
    pub api: ComponentScaling,
    pub workers: ComponentScaling,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentScaling {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub paused: bool,
}

/// The autoscaler's record of a platform.
#[derive(Serialize, ToSchema)]
pub struct DecisionsView {
    pub namespace: String,
    pub name: String,
    /// status.autoscaling exactly as the operator stored it: per component the last decision with
    /// its inputs and reason, the recent history and the last scale times; null until the first
    /// decision is recorded.
    #[schema(value_type = Option<Object>)]
    pub autoscaling: Option<Value>,
}

/// Circuit breakers of a platform: the declared overrides and the observed states.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakersView {
    pub namespace: String,
    pub name: String,
    /// spec.circuitBreaker.overrides: the intent, which PUT .../breakers/{dependency} changes.
    pub overrides: BreakerOverridesView,
    /// status.breakerSummary.
    #[schema(example = "database=Auto redis=Auto")]
    pub summary: Option<String>,
    /// status.circuitBreakers exactly as stored (per dependency state, since, reason); null until
    /// recorded.
    #[schema(value_type = Option<Object>)]
    pub circuit_breakers: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BreakerOverridesView {
    #[schema(schema_with = breaker_mode_schema)]
    pub database: BreakerMode,
    #[schema(schema_with = breaker_mode_schema)]
    pub redis: BreakerMode,
}

/// The answer of pause and resume: the state now stored in the spec.
#[derive(Serialize, ToSchema)]
pub struct PauseView {
    pub namespace: String,
    pub name: String,
    #[schema(example = "api")]
    pub component: &'static str,
    pub paused: bool,
    /// The platform's generation after the write.
    pub generation: Option<i64>,
}

/// Body of PUT .../breakers/{dependency}.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerModeRequest {
    #[schema(schema_with = breaker_mode_schema)]
    pub mode: String,
}

/// A scaled component, as named in paths and in spec.autoscaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Api,
    Workers,
}

/// A dependency with a breaker, as named in paths and in spec.circuitBreaker.overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Redis,
}

const COMPONENTS: [(&str, Component); 2] = [("api", Component::Api), ("workers", Component::Workers)];
const DEPENDENCIES: [(&str, Dependency); 2] = [("database", Dependency::Database), ("redis", Dependency::Redis)];
/// The names match BreakerMode's serde names, which are what the CRD stores.
const MODES: [(&str, BreakerMode); 4] = [
    ("Auto", BreakerMode::Auto),
    ("ForceOpen", BreakerMode::ForceOpen),
    ("ForceClosed", BreakerMode::ForceClosed),
    ("Disabled", BreakerMode::Disabled),
];

/// Finds `value` among `choices` or says which values `field` accepts.
fn choose<T: Copy>(field: &str, value: &str, choices: &[(&'static str, T)]) -> Result<T, ApiError> {
    choices.iter().find(|(n, _)| *n == value).map(|(_, v)| *v).ok_or_else(|| {
        let allowed: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        ApiError::BadRequest(format!("{field} must be one of {}; got {value:?}", allowed.join(", ")))
    })
}

fn name_of<T: Copy + PartialEq>(value: T, choices: &[(&'static str, T)]) -> &'static str {
    choices.iter().find(|(_, v)| *v == value).map_or("", |(n, _)| n)
}

impl Component {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        choose("component", value, &COMPONENTS)
    }

    pub fn as_str(self) -> &'static str {
        name_of(self, &COMPONENTS)
    }
}

impl Dependency {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        choose("dependency", value, &DEPENDENCIES)
    }

    pub fn as_str(self) -> &'static str {
        name_of(self, &DEPENDENCIES)
    }
}

/// Parses the body of PUT .../breakers/{dependency}; the message shows the expected shape.
pub fn parse_breaker_mode(body: &[u8]) -> Result<BreakerMode, ApiError> {
    let request: BreakerModeRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!(r#"the body must be JSON like {{"mode": "ForceOpen"}}: {e}"#)))?;
    choose("mode", &request.mode, &MODES)
}

/// Checks a namespace or name before it goes into a Kubernetes API path: anything but a DNS-1123
/// subdomain (lowercase alphanumerics, '-' and '.') could address another resource, e.g. "..".
pub fn check_object_name(field: &str, value: &str) -> Result<(), ApiError> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            label.starts_with(alnum) && label.ends_with(alnum) && label.chars().all(|c| alnum(c) || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{field} {value:?} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit, at most 253 characters)"
        )))
    }
}

/// The OpenAPI schema of a breaker mode: a string with the four allowed values.
fn breaker_mode_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(MODES.iter().map(|(n, _)| *n)))
        .description(Some("Auto (computed from failures), ForceOpen, ForceClosed or Disabled"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_segment_names_the_field_and_the_allowed_values() {
        let msg = Component::parse("db").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, r#"component must be one of api, workers; got "db""#);
        let msg = Dependency::parse("kafka").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, r#"dependency must be one of database, redis; got "kafka""#);
        assert_eq!(Component::parse("workers").ok(), Some(Component::Workers));
        assert_eq!(Dependency::Redis.as_str(), "redis");
    }

    #[test]
    fn a_breaker_body_must_be_one_known_mode() {
        assert_eq!(parse_breaker_mode(br#"{"mode":"ForceOpen"}"#).ok(), Some(BreakerMode::ForceOpen));
        let msg = |body: &[u8]| parse_breaker_mode(body).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg(br#"{"mode":"open"}"#).contains("mode must be one of Auto, ForceOpen, ForceClosed, Disabled"));
        assert!(msg(b"{").contains(r#"the body must be JSON like {"mode": "ForceOpen"}"#));
        assert!(msg(br#"{"mode":"Auto","extra":1}"#).contains("unknown field"));
    }

    #[test]
    fn only_dns_names_reach_the_kubernetes_api() {
        for ok in ["risk", "prod-1", "a.b", "x"] {
            assert!(check_object_name("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "a/b", "Risk", "-a", "a-", "a..b", &"a".repeat(254)] {
            assert!(check_object_name("name", bad).is_err(), "{bad}");
        }
    }
}
