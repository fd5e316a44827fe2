//! The local cluster's real kubelet end to end (not the kwok-like stand-in): Deployments of
//! `lc-echo` scale, spread and roll out; containers are restarted, OOM-killed, confined to a
//! read-only root, given Secret files as fsGroup allows, killed after their grace period, and
//! an unknown image is reported. Each test asserts what the kubelet observed and wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use riskplatform_tests::cluster::{eventually, namespace};
use riskplatform_tests::localcluster::LocalCluster;
use serde_json::{json, Value};

const ECHO: &str = "localcluster.test/echo";
/// Long enough for a pod to be scheduled, started and probed on a loaded 2-core machine.
const POD_TIMEOUT: Duration = Duration::from_secs(60);
/// The readiness probe every echo container gets: the shortest period, so tests wait little.
fn readiness() -> Value {
    json!({ "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1 })
}

type LocalClusterRef = std::sync::Arc<LocalCluster>;

/// Runs `scenario` in a fresh namespace of a new local cluster. A failure panics while the
/// cluster is still up, so that its drop prints every component and container log.
async fn on_local_cluster<F, Fut>(prefix: &str, scenario: F) -> Result<()>
where
    F: FnOnce(LocalClusterRef, Client, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    if std::env::var_os("KUBECONFIG").is_some() {
        eprintln!("skipped: checks the local cluster's own kubelet, not a KUBECONFIG cluster");
        return Ok(());
    }
    let cluster = std::sync::Arc::new(LocalCluster::start()?);
    let client = cluster.client().await?;
    let ns = namespace(&client, prefix).await?;
    if let Err(e) = scenario(cluster.clone(), client, ns).await {
        panic!("{e:?}");
    }
    Ok(())
}

fn pod(name: &str, spec: Value) -> Result<Pod> {
    Ok(serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec }),
    )?)
}

/// An echo container named `echo` with the readiness probe, plus the fields of `extra`.
fn echo_container(extra: Value) -> Value {
    let mut c = json!({ "name": "echo", "image": ECHO, "ports": [{ "name": "http", "containerPort": 8080 }],
        "readinessProbe": readiness() });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

fn status(p: &Pod) -> Result<&ContainerStatus> {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).context("no container status")
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until `check` accepts the Pod, reporting its last status when it never does.
async fn wait_pod<T>(pods: &Api<Pod>, name: &str, check: impl Fn(&Pod) -> Result<T>) -> Result<T> {
    eventually(POD_TIMEOUT, || async {
        let p = pods.get(name).await?;
        check(&p).with_context(|| format!("pod {name}: {}", serde_json::to_string(&p.status).unwrap_or_default()))
    })
    .await
}

async fn ready_ip(pods: &Api<Pod>, name: &str) -> Result<String> {
    wait_pod(pods, name, |p| {
        ensure!(is_ready(p), "not Ready");
        p.status.as_ref().and_then(|s| s.pod_ip.clone()).context("no pod IP")
    })
    .await
}

/// GET on a fresh connection (the proxy balances connections, not requests).
async fn get(address: &str, path: &str) -> Result<(u16, String)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build()?;
    let response =
        client.get(format!("http://{address}{path}")).send().await.with_context(|| format!("GET {address}{path}"))?;
    Ok((response.status().as_u16(), response.text().await?))
}

fn echo_deployment(name: &str, replicas: i32, strategy: Value, version: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas, "strategy": strategy,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "terminationGracePeriodSeconds": 2,
                    "containers": [echo_container(json!({ "env": [{ "name": "VERSION", "value": version }] }))] },
            },
        },
    }))?)
}

/// Waits until the Deployment's status reports `replicas` updated, ready and available pods
/// for its current generation.
async fn wait_rolled_out(deployments: &Api<Deployment>, name: &str, replicas: i32) -> Result<()> {
    eventually(POD_TIMEOUT, || async {
        let d = deployments.get(name).await?;
        let s = d.status.clone().unwrap_or_default();
        let current = s.observed_generation >= d.metadata.generation;
        let counts = (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas);
        let want = Some(replicas);
        ensure!(current && counts == (want, want, want, want), "Deployment {name} status {s:?}");
        Ok(())
    })
    .await
}

async fn pod_names(pods: &Api<Pod>, selector: &str) -> Result<BTreeSet<String>> {
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.iter().filter(|p| is_ready(p)).filter_map(|p| p.metadata.name.clone()).collect())
}

#[tokio::test]
async fn a_deployment_comes_up_ready_scales_to_three_and_its_service_spreads_requests_over_them() -> Result<()> {
    on_local_cluster("lck-scale", |cluster, client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments.create(&PostParams::default(), &echo_deployment("web", 1, json!({}), "1")?).await?;
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
        }))?;
        Api::<Service>::namespaced(client.clone(), &ns).create(&PostParams::default(), &svc).await?;
        wait_rolled_out(&deployments, "web", 1).await?;

        deployments
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 3 } })))
            .await?;
        wait_rolled_out(&deployments, "web", 3).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let names = pod_names(&pods, "app=web").await?;
        ensure!(names.len() == 3, "three Ready pods: {names:?}");

        let address = cluster.service_address(&client, &ns, "web", 80).await?.to_string();
        // Round robin over three endpoints: twelve connections reach each several times once
        // the proxy has all three; until then the batch is retried.
        let answered = eventually(Duration::from_secs(30), || async {
            let mut answered = BTreeMap::<String, usize>::new();
            for _ in 0..12 {
                let (code, body) = get(&address, "/").await?;
                ensure!(code == 200, "HTTP {code}: {body}");
                *answered.entry(body.trim().to_owned()).or_default() += 1;
            }
            let who: BTreeSet<String> = answered.keys().cloned().collect();
            ensure!(who == names, "answered by {answered:?}, the Deployment's pods are {names:?}");
            Ok(answered)
        })
        .await?;
        eprintln!("requests per pod: {answered:?}");
        Ok(())
    })
    .await
}

/// One snapshot of a Deployment's pods, counted as the Deployment controller counts them: a
/// terminating or finished pod is not active, an available pod is active and Ready (the
/// template has no minReadySeconds).
#[derive(Debug, Default)]
struct Sample {
    active: usize,
    available: usize,
    hashes: BTreeSet<String>,
}

fn sample(pods: &[Pod]) -> Sample {
    let mut s = Sample::default();
    for p in pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if p.metadata.deletion_timestamp.is_some() || phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        s.active += 1;
        s.available += usize::from(is_ready(p));
        if let Some(hash) = p.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")) {
            s.hashes.insert(hash.clone());
        }
    }
    s
}

#[tokio::test]
async fn a_template_change_rolls_out_within_max_surge_and_max_unavailable_and_ends_with_every_new_pod_ready(
) -> Result<()> {
    on_local_cluster("lck-roll", |_cluster, client, ns| async move {
        const REPLICAS: usize = 3;
        let strategy = json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } });
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &echo_deployment("roll", REPLICAS as i32, strategy.clone(), "1")?)
            .await?;
        wait_rolled_out(&deployments, "roll", REPLICAS as i32).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let selector = ListParams::default().labels("app=roll");
        let before = sample(&pods.list(&selector).await?.items);
        ensure!(before.hashes.len() == 1, "one template before the change: {before:?}");

        let changed = echo_deployment("roll", REPLICAS as i32, strategy, "2")?;
        deployments.patch("roll", &PatchParams::default(), &Patch::Merge(json!({ "spec": changed.spec }))).await?;
        let started = Instant::now();
        let (mut most_active, mut both_templates_seen) = (0, false);
        loop {
            let items = pods.list(&selector).await?.items;
            let s = sample(&items);
            let names: Vec<_> = items
                .iter()
                .map(|p| (p.metadata.name.clone(), is_ready(p), p.metadata.deletion_timestamp.is_some()))
                .collect();
            ensure!(s.active <= REPLICAS + 1, "more than replicas + maxSurge pods active: {s:?} {names:?}");
            ensure!(s.available >= REPLICAS, "fewer than replicas - maxUnavailable available: {s:?} {names:?}");
            most_active = most_active.max(s.active);
            both_templates_seen |= s.hashes.len() == 2;
            let new_only = items.len() == REPLICAS && s.available == REPLICAS && s.hashes.is_disjoint(&before.hashes);
            if new_only {
                break;
            }
            ensure!(started.elapsed() < Duration::from_secs(90), "the rollout did not finish in 90 s: {s:?} {names:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("rolled out in {:?}, at most {most_active} active pods", started.elapsed());
        ensure!(both_templates_seen && most_active == REPLICAS + 1, "the samples saw the rollout surge by one");
        wait_rolled_out(&deployments, "roll", REPLICAS as i32).await?;
        for p in pods.list(&selector).await?.items {
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).context("pod IP")?;
            let (_, env) = get(&format!("{ip}:8080"), "/env").await?;
            ensure!(env.lines().any(|l| l == "VERSION=2"), "{:?} runs the new template: {env}", p.metadata.name);
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_container_failing_its_liveness_probe_is_restarted_and_its_last_state_recorded() -> Result<()> {
    on_local_cluster("lck-live", |_cluster, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let liveness = json!({ "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1, "failureThreshold": 2 });
        let spec = json!({ "terminationGracePeriodSeconds": 5, "containers": [echo_container(json!({ "livenessProbe": liveness }))] });
        pods.create(&PostParams::default(), &pod("live", spec)?).await?;
        let ip = ready_ip(&pods, "live").await?;
        let first = status(&pods.get("live").await?)?.clone();
        ensure!(first.restart_count == 0, "no restart before the probe fails: {first:?}");

        let (code, _) = get(&format!("{ip}:8080"), "/fail").await?;
        ensure!(code == 200, "/fail answered {code}");
        let restarted = wait_pod(&pods, "live", |p| {
            let c = status(p)?;
            let terminated = c.last_state.as_ref().and_then(|s| s.terminated.clone()).context("no lastState.terminated")?;
            ensure!(c.restart_count == 1 && c.ready, "restartCount {} ready {}", c.restart_count, c.ready);
            Ok((c.clone(), terminated))
        })
        .await?;
        let (c, terminated) = restarted;
        // lc-echo exits 0 on SIGTERM: a clean exit shows the kubelet asked before it killed
        ensure!(terminated.exit_code == 0 && terminated.reason.as_deref() == Some("Completed"), "{terminated:?}");
        let running_since = c.state.as_ref().and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.clone());
        ensure!(running_since.is_some() && c.container_id != first.container_id, "a new container runs: {c:?}");
        let (code, body) = get(&format!("{ip}:8080"), "/healthz").await?;
        ensure!(code == 200, "the new container is healthy again: {code} {body}");
        let events = Api::<Event>::namespaced(client.clone(), &ns).list(&ListParams::default()).await?.items;
        let killing = events.iter().any(|e| {
            e.reason.as_deref() == Some("Killing") && e.note.as_deref().is_some_and(|n| n.contains("failed liveness probe"))
        });
        ensure!(killing, "a Killing event names the liveness probe");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_container_exceeding_its_memory_limit_is_reported_oom_killed_with_exit_code_137() -> Result<()> {
    on_local_cluster("lck-oom", |_cluster, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let hog = echo_container(json!({
            "env": [{ "name": "ALLOC_MB", "value": "256" }],
            "resources": { "limits": { "memory": "64Mi" } },
        }));
        pods.create(&PostParams::default(), &pod("hog", json!({ "containers": [hog] }))?).await?;
        let terminated = wait_pod(&pods, "hog", |p| {
            let c = status(p)?;
            ensure!(c.restart_count >= 1, "not restarted yet");
            c.last_state.as_ref().and_then(|s| s.terminated.clone()).context("no lastState.terminated")
        })
        .await?;
        ensure!(
            terminated.reason.as_deref() == Some("OOMKilled") && terminated.exit_code == 137,
            "the kernel's OOM kill is reported: {terminated:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_read_only_root_filesystem_refuses_writes_outside_the_volumes_but_not_in_an_empty_dir() -> Result<()> {
    on_local_cluster("lck-rofs", |_cluster, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mount = json!([{ "name": "scratch", "mountPath": "/scratch" }]);
        let spec = |read_only: bool| {
            json!({ "volumes": [{ "name": "scratch", "emptyDir": {} }], "containers": [echo_container(json!({
                "volumeMounts": mount, "securityContext": { "readOnlyRootFilesystem": read_only } }))] })
        };
        pods.create(&PostParams::default(), &pod("locked", spec(true))?).await?;
        pods.create(&PostParams::default(), &pod("open", spec(false))?).await?;
        let locked = format!("{}:8080", ready_ip(&pods, "locked").await?);
        let open = format!("{}:8080", ready_ip(&pods, "open").await?);

        let (code, body) = get(&locked, "/write?path=/scratch/ok").await?;
        ensure!(code == 200, "the emptyDir is writable: {code} {body}");
        let (code, body) = get(&locked, "/read?path=/scratch/ok").await?;
        ensure!(code == 200 && body == "written\n", "and reads back: {code} {body}");
        for path in ["/tmp/nope", "/nope"] {
            let (code, body) = get(&locked, &format!("/write?path={path}")).await?;
            ensure!(code == 500 && body.contains("Read-only file system"), "{path} is refused: {code} {body}");
        }
        // the same write without readOnlyRootFilesystem succeeds: the setting refused it
        let (code, body) = get(&open, "/write?path=/tmp/nope").await?;
        ensure!(code == 200, "a writable root takes /tmp/nope: {code} {body}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_secret_with_default_mode_0400_is_readable_through_fs_group_and_not_without_it() -> Result<()> {
    on_local_cluster("lck-secret", |_cluster, client, ns| async move {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "creds" }, "stringData": { "token": "s3cret" },
        }))?;
        Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let spec = |fs_group: Option<i64>| {
            let mut security = json!({ "runAsUser": 1000, "runAsGroup": 3000 });
            if let Some(g) = fs_group {
                security["fsGroup"] = json!(g);
            }
            json!({
                "securityContext": security,
                "volumes": [{ "name": "creds", "secret": { "secretName": "creds", "defaultMode": 0o400 } }],
                "containers": [echo_container(json!({ "volumeMounts": [{ "name": "creds", "mountPath": "/etc/creds", "readOnly": true }] }))],
            })
        };
        pods.create(&PostParams::default(), &pod("grouped", spec(Some(2000)))?).await?;
        pods.create(&PostParams::default(), &pod("ungrouped", spec(None))?).await?;
        let grouped = format!("{}:8080", ready_ip(&pods, "grouped").await?);
        let ungrouped = format!("{}:8080", ready_ip(&pods, "ungrouped").await?);

        // SetVolumeOwnership: root:2000 and g+r (0440); the pod's user has fsGroup as a
        // supplementary group, so it reads through the group bits
        let (_, id) = get(&grouped, "/id").await?;
        ensure!(id.lines().any(|l| l.starts_with("Groups:") && l.split_whitespace().any(|g| g == "2000")), "{id}");
        let (code, body) = get(&grouped, "/read?path=/etc/creds/token").await?;
        ensure!(code == 200 && body == "s3cret", "fsGroup makes the 0400 file readable: {code} {body}");
        // without fsGroup the file stays root:root 0400, and uid 1000 is not its owner
        let (code, body) = get(&ungrouped, "/read?path=/etc/creds/token").await?;
        ensure!(code == 500 && body.contains("Permission denied"), "0400 root-owned is unreadable: {code} {body}");
        Ok(())
    })
    .await
}

/// How long until the Pod is gone from the API server.
async fn time_to_disappear(pods: &Api<Pod>, name: &str, deleted: Instant, limit: Duration) -> Result<Duration> {
    loop {
        if pods.get_opt(name).await?.is_none() {
            return Ok(deleted.elapsed());
        }
        if deleted.elapsed() > limit {
            bail!("pod {name} still exists {limit:?} after its delete");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_container_ignoring_sigterm_is_killed_after_its_grace_period_and_its_pod_disappears() -> Result<()> {
    on_local_cluster("lck-grace", |_cluster, client, ns| async move {
        const GRACE: Duration = Duration::from_secs(4);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let spec = |ignore: &str| {
            json!({ "terminationGracePeriodSeconds": GRACE.as_secs(),
                "containers": [echo_container(json!({ "env": [{ "name": "IGNORE_SIGTERM", "value": ignore }] }))] })
        };
        pods.create(&PostParams::default(), &pod("stubborn", spec("1"))?).await?;
        pods.create(&PostParams::default(), &pod("polite", spec("0"))?).await?;
        ready_ip(&pods, "stubborn").await?;
        ready_ip(&pods, "polite").await?;

        let deleted = Instant::now();
        pods.delete("stubborn", &DeleteParams::default()).await?;
        pods.delete("polite", &DeleteParams::default()).await?;
        let limit = GRACE + Duration::from_secs(15);
        let (stubborn, polite) = tokio::try_join!(
            time_to_disappear(&pods, "stubborn", deleted, limit),
            time_to_disappear(&pods, "polite", deleted, limit)
        )?;
        eprintln!("gone after: stubborn {stubborn:?}, polite {polite:?}");
        ensure!(polite < GRACE, "a container that exits on SIGTERM ends its pod before the grace period: {polite:?}");
        ensure!(stubborn >= GRACE, "one that ignores SIGTERM keeps its pod for the grace period: {stubborn:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_unknown_image_is_reported_as_err_image_pull_then_image_pull_back_off_with_events() -> Result<()> {
    on_local_cluster("lck-image", |_cluster, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let image = "localcluster.test/no-such-image:1";
        pods.create(
            &PostParams::default(),
            &pod("nope", json!({ "containers": [{ "name": "nope", "image": image }] }))?,
        )
        .await?;
        // every waiting reason in the order seen (sampled every 100 ms; ErrImagePull lasts 1 s)
        let reasons = std::sync::Mutex::new(Vec::<String>::new());
        eventually(POD_TIMEOUT, || async {
            let p = pods.get("nope").await?;
            let waiting = status(&p)?.state.as_ref().and_then(|s| s.waiting.clone()).context("not waiting")?;
            let reason = waiting.reason.unwrap_or_default();
            let mut seen = reasons.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if seen.last() != Some(&reason) {
                seen.push(reason.clone());
            }
            ensure!(reason == "ImagePullBackOff", "waiting: {seen:?}");
            Ok(())
        })
        .await?;
        let seen = reasons.into_inner().unwrap_or_default();
        let pull = seen.iter().position(|r| r == "ErrImagePull");
        ensure!(pull.is_some_and(|i| i < seen.len() - 1), "ErrImagePull came before ImagePullBackOff: {seen:?}");
        let phase = pods.get("nope").await?.status.and_then(|s| s.phase);
        ensure!(phase.as_deref() == Some("Pending"), "a pod whose image cannot be pulled is Pending: {phase:?}");
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        eventually(Duration::from_secs(10), || async {
            let list = events.list(&ListParams::default()).await?.items;
            let about_pod: Vec<_> = list
                .iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("nope"))
                .map(|e| (e.type_.clone(), e.reason.clone(), e.note.clone()))
                .collect();
            let failed = about_pod.iter().any(|(t, r, n)| {
                t.as_deref() == Some("Warning")
                    && r.as_deref() == Some("Failed")
                    && n.as_deref().is_some_and(|n| n.contains(&format!("Failed to pull image \"{image}\"")))
            });
            ensure!(failed, "a Warning Failed event names the image: {about_pod:?}");
            Ok(())
        })
        .await
    })
    .await
}
