//! Pure construction of every child object from a RiskPlatform and what was read for it.
//!
//! No client and no clock: the same inputs always give the same objects, so `build` is tested
//! from YAML fixtures and the apply step only sends what this module returns.

mod common;
mod pgbouncer;
mod rbac;
mod redis;
mod workloads;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use riskplatform_crd::names::{
    API_SUFFIX, BREAKER_READER_SUFFIX, PGBOUNCER_AUTH_SUFFIX, PGBOUNCER_SUFFIX, REDIS_SUFFIX, WORKER_SUFFIX,
};
use riskplatform_crd::{RedisMode, RiskPlatform};

pub use common::{component_labels, config_hash as config_hash_of, selector_labels, Component, CONFIG_HASH_ANNOTATION};

use crate::controller::validate::Validated;
use crate::error::{Error, Result};

/// Everything the operator creates for one RiskPlatform.
#[derive(Clone, Debug)]
pub struct Children {
    pub service_account: ServiceAccount,
    /// Lets the ServiceAccount read the published circuit-breaker ConfigMap, and nothing else.
    pub breaker_reader_role: Role,
    pub breaker_reader_binding: RoleBinding,
    pub api_deployment: Deployment,
    pub api_service: Service,
    pub api_pdb: PodDisruptionBudget,
    pub worker_deployment: Deployment,
    pub worker_service: Service,
    pub pgbouncer_config: ConfigMap,
    pub pgbouncer_auth: Secret,
    pub pgbouncer_deployment: Deployment,
    pub pgbouncer_service: Service,
    /// Absent when Redis is external.
    pub redis: Option<RedisChildren>,
}

/// The managed Redis.
#[derive(Clone, Debug)]
pub struct RedisChildren {
    pub config: ConfigMap,
    pub service: Service,
    pub statefulset: StatefulSet,
}

/// Names of the children, derived from the platform's name so they are stable across reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub platform: String,
    pub api: String,
    pub workers: String,
    pub redis: String,
    pub pgbouncer: String,
    pub pgbouncer_auth: String,
    /// The ConfigMap the operator publishes breaker state in and the API pods follow.
    pub breaker_configmap: String,
    /// The Role and RoleBinding granting read access to `breaker_configmap`.
    pub breaker_reader: String,
}

impl Names {
    pub fn new(platform: &str) -> Self {
        Self {
            platform: platform.to_owned(),
            api: format!("{platform}{API_SUFFIX}"),
            workers: format!("{platform}{WORKER_SUFFIX}"),
            redis: format!("{platform}{REDIS_SUFFIX}"),
            pgbouncer: format!("{platform}{PGBOUNCER_SUFFIX}"),
            pgbouncer_auth: format!("{platform}{PGBOUNCER_AUTH_SUFFIX}"),
            breaker_configmap: crate::circuit::configmap_name(platform),
            breaker_reader: format!("{platform}{BREAKER_READER_SUFFIX}"),
        }
    }
}

/// Builds every child of `rp`. `validated` carries what was read from the cluster (the
/// credentials) so this stays pure.
pub fn build(rp: &RiskPlatform, validated: &Validated) -> Result<Children> {
    let ctx = common::BuildContext::new(rp)?;
    let names = &ctx.names;
    let pgbouncer = pgbouncer::build(&ctx, validated);
    let redis = match rp.spec.redis.mode {
        RedisMode::Managed => Some(redis::build(&ctx)),
        RedisMode::External => None,
    };
    let redis_url = match (&rp.spec.redis.mode, &rp.spec.redis.external_url) {
        (RedisMode::External, Some(url)) => url.clone(),
        (RedisMode::External, None) => {
            return Err(Error::InvalidSpec("redis.externalUrl is required when redis.mode is External".into()))
        }
        (RedisMode::Managed, _) => format!("redis://{}:{}", names.redis, redis::PORT),
    };
    let workloads = workloads::build(&ctx, validated, &redis_url);
    let breaker_reader = rbac::build(&ctx);
    Ok(Children {
        service_account: common::service_account(&ctx),
        breaker_reader_role: breaker_reader.role,
        breaker_reader_binding: breaker_reader.binding,
        api_deployment: workloads.api_deployment,
        api_service: workloads.api_service,
        api_pdb: workloads.api_pdb,
        worker_deployment: workloads.worker_deployment,
        worker_service: workloads.worker_service,
        pgbouncer_config: pgbouncer.config,
        pgbouncer_auth: pgbouncer.auth,
        pgbouncer_deployment: pgbouncer.deployment,
        pgbouncer_service: pgbouncer.service,
        redis,
    })
}

/// The name every child is derived from.
pub fn names(rp: &RiskPlatform) -> Names {
    Names::new(&rp.name_any())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_pgbouncer;
