//! The real operator against a real Kubernetes API server: children, drift, rollouts, status.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use riskplatform_crd::{condition, RiskPlatform};
use riskplatform_tests::cluster::{eventually, install_crd, namespace, secret, test_platform, TestCluster};
use riskplatform_tests::operator::RunningOperator;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn platform(name: &str, secret: &str) -> Result<RiskPlatform> {
    test_platform(name, secret, json!({}))
}

struct Env {
    _cluster: TestCluster,
    client: Client,
    ns: String,
    operator: RunningOperator,
}

async fn setup(prefix: &str) -> Result<Env> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    install_crd(&client).await?;
    let ns = namespace(&client, prefix).await?;
    let operator = RunningOperator::start(client.clone(), &ns);
    Ok(Env { _cluster: cluster, client, ns, operator })
}

async fn owned_by<K>(client: &Client, ns: &str, name: &str, uid: &str) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let obj = Api::<K>::namespaced(client.clone(), ns).get(name).await?;
    let owner = obj.owner_references().iter().find(|o| o.kind == "RiskPlatform").context("no RiskPlatform owner")?;
    ensure!(owner.uid == uid && owner.controller == Some(true), "{name} owned by {owner:?}, want uid {uid}");
    Ok(obj)
}

async fn condition_of(api: &Api<RiskPlatform>, name: &str, type_: &str) -> Result<(String, String, Option<i64>)> {
    let rp = api.get(name).await?;
    let c = rp.status.as_ref().and_then(|s| s.condition(type_)).cloned().context("no condition yet")?;
    Ok((c.status, c.reason, c.observed_generation))
}

/// The API server has no controllers, so tests write what the Deployment controller would.
async fn mark_ready(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = api.get(name).await?;
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        ready_replicas: Some(replicas),
        updated_replicas: Some(replicas),
        available_replicas: Some(replicas),
        ..Default::default()
    };
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_child_exists_with_an_owner_reference_and_ready_follows_the_workloads() -> Result<()> {
    let env = setup("children").await?;
    let (client, ns) = (&env.client, env.ns.as_str());
    secret(client, ns, "db", &[("username", "risk"), ("password", "pw")]).await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), ns);
    let rp = api.create(&PostParams::default(), &platform("risk", "db")?).await?;
    let uid = rp.uid().context("uid")?;

    eventually(WAIT, || async {
        owned_by::<ServiceAccount>(client, ns, "risk", &uid).await?;
        for name in ["risk-api", "risk-worker", "risk-pgbouncer"] {
            owned_by::<Deployment>(client, ns, name, &uid).await?;
        }
        for name in ["risk-api", "risk-worker", "risk-pgbouncer", "risk-redis"] {
            owned_by::<Service>(client, ns, name, &uid).await?;
        }
        for name in ["risk-pgbouncer", "risk-redis"] {
            owned_by::<ConfigMap>(client, ns, name, &uid).await?;
        }
        owned_by::<Secret>(client, ns, "risk-pgbouncer-auth", &uid).await?;
        owned_by::<StatefulSet>(client, ns, "risk-redis", &uid).await?;
        owned_by::<PodDisruptionBudget>(client, ns, "risk-api", &uid).await?;
        let role = owned_by::<Role>(client, ns, "risk-breaker-reader", &uid).await?;
        let names = role.rules.unwrap_or_default().into_iter().flat_map(|r| r.resource_names.unwrap_or_default());
        ensure!(names.eq(["risk-circuit-breakers".to_owned()]), "role not limited to the breaker ConfigMap");
        let binding = owned_by::<RoleBinding>(client, ns, "risk-breaker-reader", &uid).await?;
        let subjects = binding.subjects.unwrap_or_default();
        ensure!(subjects.iter().map(|s| s.name.as_str()).eq(["risk"]), "bound to {subjects:?}");
        Ok(())
    })
    .await?;

    // Replicas start at the documented minimums, written by the autoscaler's field manager.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, || async {
        let api_replicas = deployments.get("risk-api").await?.spec.and_then(|s| s.replicas);
        let worker_replicas = deployments.get("risk-worker").await?.spec.and_then(|s| s.replicas);
        ensure!(api_replicas == Some(2) && worker_replicas == Some(3), "replicas {api_replicas:?} {worker_replicas:?}");
        Ok(())
    })
    .await?;

    let (status, reason, _) = eventually(WAIT, || condition_of(&api, "risk", condition::READY)).await?;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ComponentsNotReady"));

    for name in ["risk-api", "risk-worker", "risk-pgbouncer"] {
        mark_ready(client, ns, name).await?;
    }
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let ready = StatefulSetStatus { replicas: 1, ready_replicas: Some(1), ..Default::default() };
    sts.patch_status("risk-redis", &PatchParams::default(), &Patch::Merge(json!({ "status": ready }))).await?;

    eventually(WAIT, || async {
        let (status, reason, generation) = condition_of(&api, "risk", condition::READY).await?;
        ensure!(status == "True" && reason == "AllComponentsReady", "Ready={status} ({reason})");
        ensure!(generation == Some(1));
        let rp = api.get("risk").await?;
        let s = rp.status.context("status")?;
        ensure!(s.api.map(|a| a.ready) == Some("2/2".to_owned()));
        ensure!(s.workers.map(|a| a.ready) == Some("3/3".to_owned()));
        let (degraded, _, _) = condition_of(&api, "risk", condition::DEGRADED).await?;
        ensure!(degraded == "False");
        Ok(())
    })
    .await?;
    env.operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_rolls_out_and_observed_generation_follows_without_touching_replicas() -> Result<()> {
    let env = setup("rollout").await?;
    let (client, ns) = (&env.client, env.ns.as_str());
    secret(client, ns, "db", &[("username", "risk"), ("password", "pw")]).await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &platform("risk", "db")?).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, || async {
        ensure!(deployments.get("risk-api").await?.spec.and_then(|s| s.replicas) == Some(2));
        Ok(())
    })
    .await?;

    // The autoscaler decided 5 replicas; a reconcile must not reset them.
    riskplatform_operator::controller::replicas::set_replicas(client, ns, "risk-api", 5).await?;
    let patch = json!({ "spec": { "api": { "image": "registry.example/riskplatform-api:2.0.0" } } });
    let changed = api.patch("risk", &PatchParams::default(), &Patch::Merge(patch)).await?;
    let generation = changed.metadata.generation;
    assert_eq!(generation, Some(2));

    eventually(WAIT, || async {
        let d = deployments.get("risk-api").await?;
        let spec = d.spec.context("spec")?;
        let image = spec.template.spec.as_ref().and_then(|p| p.containers.first()).and_then(|c| c.image.clone());
        ensure!(image.as_deref() == Some("registry.example/riskplatform-api:2.0.0"), "image {image:?}");
        ensure!(spec.replicas == Some(5), "replicas reset to {:?}", spec.replicas);
        let observed = api.get("risk").await?.status.and_then(|s| s.observed_generation);
        ensure!(observed == generation, "observedGeneration {observed:?}");
        Ok(())
    })
    .await?;
    env.operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_hand_edited_child_is_restored() -> Result<()> {
    let env = setup("drift").await?;
    let (client, ns) = (&env.client, env.ns.as_str());
    secret(client, ns, "db", &[("username", "risk"), ("password", "pw")]).await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &platform("risk", "db")?).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let original = eventually(WAIT, || async { Ok(configmaps.get("risk-pgbouncer").await?) }).await?;
    let old_uid = eventually(WAIT, || async { Ok(services.get("risk-api").await?.uid()) }).await?;

    services.delete("risk-api", &DeleteParams::default()).await?;
    eventually(WAIT, || async {
        let uid = services.get("risk-api").await?.uid();
        ensure!(uid != old_uid, "service not recreated yet");
        Ok(())
    })
    .await?;

    // The API pods' read access to the breaker ConfigMap comes back as well.
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    let old_role = eventually(WAIT, || async { Ok(roles.get("risk-breaker-reader").await?.uid()) }).await?;
    roles.delete("risk-breaker-reader", &DeleteParams::default()).await?;
    eventually(WAIT, || async {
        let uid = roles.get("risk-breaker-reader").await?.uid();
        ensure!(uid != old_role, "role not recreated yet");
        Ok(())
    })
    .await?;

    let tampered = json!({ "data": { "pgbouncer.ini": "[pgbouncer]\npool_mode = session\n" } });
    configmaps.patch("risk-pgbouncer", &PatchParams::default(), &Patch::Merge(tampered)).await?;
    eventually(WAIT, || async {
        let data = configmaps.get("risk-pgbouncer").await?.data;
        ensure!(data == original.data, "configmap still edited: {data:?}");
        Ok(())
    })
    .await?;
    env.operator.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_degrades_the_platform_until_the_secret_appears() -> Result<()> {
    let env = setup("degraded").await?;
    let (client, ns) = (&env.client, env.ns.as_str());
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &platform("risk", "not-yet")?).await?;

    let (status, reason, _) = eventually(WAIT, || async {
        let c = condition_of(&api, "risk", condition::DEGRADED).await?;
        ensure!(c.0 == "True", "not degraded yet");
        Ok(c)
    })
    .await?;
    assert_eq!((status.as_str(), reason.as_str()), ("True", "SecretMissing"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    assert!(deployments.get_opt("risk-api").await?.is_none(), "nothing is deployed without credentials");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, || async {
        let warned = events
            .list(&Default::default())
            .await?
            .items
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("SecretMissing"));
        if warned {
            Ok(())
        } else {
            bail!("no SecretMissing warning event")
        }
    })
    .await?;

    secret(client, ns, "not-yet", &[("username", "risk"), ("password", "pw")]).await?;
    eventually(WAIT, || async {
        deployments.get("risk-api").await?;
        let (degraded, _, _) = condition_of(&api, "risk", condition::DEGRADED).await?;
        ensure!(degraded == "False", "still degraded");
        Ok(())
    })
    .await?;
    env.operator.stop().await
}

/// The test platforms' PgBouncer with these read replicas.
fn replicas(read_replicas: serde_json::Value) -> serde_json::Value {
    json!({
        "database": {"host": "postgres.example", "name": "risk", "readReplicas": read_replicas},
        "credentialsSecretRef": {"name": "db"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_platforms_are_rejected_by_the_api_server_with_the_cel_message() -> Result<()> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "invalid").await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), &ns);
    let cases = [
        (
            json!({"autoscaling": {"api": {"minReplicas": 10, "maxReplicas": 3}}}),
            "autoscaling.api: minReplicas must not exceed maxReplicas",
        ),
        (json!({"api": {"env": [{"name": "PGHOST", "value": "elsewhere"}]}}), "env must not set PGHOST, PGPORT"),
        (
            json!({"workers": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}}),
            "spec.workers.env[1]: Duplicate value",
        ),
        (
            json!({"autoscaling": {"cpu": {"scaleUpAbove": 30, "scaleDownBelow": 50}}}),
            "autoscaling.cpu: scaleDownBelow must be below scaleUpAbove",
        ),
        (
            json!({"autoscaling": {"memory": {"scaleUpAbove": 120}}}),
            "autoscaling.memory: thresholds are percentages and must be between 0 and 100",
        ),
        (
            json!({"autoscaling": {"queueLength": {"evaluationPeriodSeconds": 0}}}),
            "autoscaling.queueLength: evaluationPeriodSeconds must be positive",
        ),
        (
            json!({"autoscaling": {"workers": {"scaleDownCooldownSeconds": -5}}}),
            "autoscaling.workers: cooldowns must be positive",
        ),
        (
            json!({"autoscaling": {"forecast": {}}}),
            "autoscaling.forecast needs autoscaling.demand (its measured pod capacity and reactive rule)",
        ),
        (
            json!({"autoscaling": {"demand": {}, "forecast": {"errorQuantile": 1.0}}}),
            "autoscaling.forecast: maxUtilisation must lie in (0, 1], errorQuantile and scaleDownQuantile in (0, 1)",
        ),
        (
            json!({"autoscaling": {"demand": {}, "forecast": {"overloadPrice": -1}}}),
            "autoscaling.forecast: steadyShare must lie in (0, 1], overloadPrice must not be negative and selectionWindowSeconds must be positive",
        ),
        (
            json!({"circuitBreaker": {"failureRatePercent": 101}}),
            "circuitBreaker.failureRatePercent must be between 0 and 100",
        ),
        (json!({"redis": {"mode": "External"}}), "redis.externalUrl is required when redis.mode is External"),
        (
            json!({"redis": {"persistence": {"enabled": true, "snapshots": [{"afterSeconds": 0, "changes": 1}]}}}),
            "redis.persistence.snapshots: afterSeconds and changes must be at least 1",
        ),
        (
            json!({"redis": {"mode": "External", "externalUrl": "redis://u:p@h:6379"}}),
            "redis.externalUrl must not contain credentials",
        ),
        (
            json!({"pgbouncer": replicas(json!([{"host": ""}]))}),
            "pgbouncer.database.readReplicas host must not be empty",
        ),
        (
            json!({"pgbouncer": replicas(json!([{"host": "replica", "port": 70000}]))}),
            "pgbouncer.database.readReplicas port must be between 1 and 65535",
        ),
        (json!({"pgbouncer": replicas(json!(vec![json!({"host": "replica"}); 9]))}), "must have at most 8 items"),
    ];
    for (i, (extra, message)) in cases.into_iter().enumerate() {
        let mut rp = serde_json::to_value(platform(&format!("bad-{i}"), "db")?)?;
        for (k, v) in extra.as_object().context("object")? {
            rp["spec"][k] = v.clone();
        }
        let rp: RiskPlatform = serde_json::from_value(rp)?;
        match api.create(&PostParams::default(), &rp).await {
            Ok(_) => bail!("case {i} was accepted, expected: {message}"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "case {i}");
                assert!(status.message.contains(message), "case {i}: {:?} lacks {message:?}", status.message);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_platform_removes_what_it_made() -> Result<()> {
    let env = setup("delete").await?;
    let (client, ns) = (&env.client, env.ns.as_str());
    secret(client, ns, "db", &[("username", "risk"), ("password", "pw")]).await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &platform("risk", "db")?).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, || async { Ok(deployments.get("risk-worker").await?) }).await?;
    env.operator.stop().await?;

    api.delete("risk", &DeleteParams::background()).await?;
    eventually(WAIT, || async {
        let left = deployments.list(&Default::default()).await?.items.len();
        ensure!(left == 0, "{left} deployments left");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let owned =
            cms.list(&Default::default()).await?.items.iter().filter(|c| !c.owner_references().is_empty()).count();
        ensure!(owned == 0, "{owned} owned configmaps left");
        // No access to the breaker ConfigMap outlives the platform.
        ensure!(Api::<Role>::namespaced(client.clone(), ns).get_opt("risk-breaker-reader").await?.is_none());
        ensure!(Api::<RoleBinding>::namespaced(client.clone(), ns).get_opt("risk-breaker-reader").await?.is_none());
        Ok(())
    })
    .await?;
    // The credentials Secret belongs to the user and stays.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    assert!(secrets.get_opt("db").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_on_a_managed_deployment_degrades_the_platform_instead_of_a_fight() -> Result<()> {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let env = setup("hpa").await?;
    let (client, ns) = (&env.client, env.ns.as_str());
    secret(client, ns, "db", &[("username", "risk"), ("password", "pw")]).await?;
    let api: Api<RiskPlatform> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &platform("risk", "db")?).await?;
    eventually(WAIT, || async {
        let (degraded, _, _) = condition_of(&api, "risk", condition::DEGRADED).await?;
        ensure!(degraded == "False");
        Ok(())
    })
    .await?;

    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "someone-elses" },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "risk-api" },
                  "minReplicas": 1, "maxReplicas": 4 }
    }))?;
    Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns).create(&PostParams::default(), &hpa).await?;
    eventually(WAIT, || async {
        let (degraded, reason, _) = condition_of(&api, "risk", condition::DEGRADED).await?;
        ensure!(degraded == "True" && reason == "CompetingAutoscaler", "Degraded={degraded} ({reason})");
        Ok(())
    })
    .await?;
    env.operator.stop().await
}
