//! Pods on the local cluster's real kubelet (not the kwok-like stand-in): a failing liveness
//! probe restarts the container, a memory limit OOM-kills it, readOnlyRootFilesystem and
//! Secret modes confine it as in a cluster, deletion waits out the grace period, and an
//! unknown image is reported. Each test asserts what the pod sees or the kubelet reports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt as _};
use riskplatform_tests::cluster::eventually;
use riskplatform_tests::echo::{
    echo_container, get, on_local_cluster, pod, ready_address, status, wait_pod, POD_TIMEOUT,
};
use serde_json::json;

fn terminated(c: &ContainerStatus) -> Result<ContainerStateTerminated> {
    c.last_state.as_ref().and_then(|s| s.terminated.clone()).context("no lastState.terminated")
}

async fn events_about(client: &Client, ns: &str, pod: &str) -> Result<Vec<Event>> {
    let list = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    Ok(list.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)).collect())
}

fn has_event(events: &[Event], type_: &str, reason: &str, note: &str) -> bool {
    events.iter().any(|e| {
        e.type_.as_deref() == Some(type_)
            && e.reason.as_deref() == Some(reason)
            && e.note.as_deref().is_some_and(|n| n.contains(note))
    })
}

#[tokio::test]
async fn a_container_failing_its_liveness_probe_is_restarted_then_backed_off_and_its_last_state_recorded() -> Result<()>
{
    on_local_cluster("lck-live", |_cluster, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let liveness = json!({ "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1, "failureThreshold": 2 });
        let spec = json!({ "terminationGracePeriodSeconds": 5, "containers": [echo_container(json!({ "livenessProbe": liveness }))] });
        pods.create(&PostParams::default(), &pod("live", spec)?).await?;
        let address = ready_address(&pods, "live").await?;
        let first = status(&pods.get("live").await?)?.clone();
        ensure!(first.restart_count == 0, "no restart before the probe fails: {first:?}");

        let (code, _) = get(&address, "/fail").await?;
        ensure!(code == 200, "/fail answered {code}");
        let second = wait_pod(&pods, "live", |p| {
            let c = status(p)?;
            ensure!(c.restart_count == 1 && c.ready, "restartCount {} ready {}", c.restart_count, c.ready);
            Ok(c.clone())
        })
        .await?;
        let killed = terminated(&second)?;
        // lc-echo exits 0 on SIGTERM: a clean exit shows the kubelet asked before it killed
        ensure!(killed.exit_code == 0 && killed.reason.as_deref() == Some("Completed"), "{killed:?}");
        ensure!(second.container_id != first.container_id, "a new container runs: {second:?}");
        ensure!(killed.container_id == first.container_id, "lastState names the killed container: {killed:?}");
        let (code, body) = get(&address, "/healthz").await?;
        ensure!(code == 200, "the new container is healthy again: {code} {body}");

        // a second failure within 10 min of the first waits out the back-off (10 s) first
        get(&address, "/fail").await?;
        let backed_off = wait_pod(&pods, "live", |p| {
            let c = status(p)?;
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone());
            ensure!(waiting.as_deref() == Some("CrashLoopBackOff"), "not in back-off: {:?}", c.state);
            Ok(c.clone())
        })
        .await?;
        let again = terminated(&backed_off)?;
        ensure!(again.finished_at > killed.finished_at, "lastState is the second termination: {again:?}");
        ensure!(backed_off.restart_count == 1 && !backed_off.ready, "{backed_off:?}");
        let backed_off_at = Instant::now();
        wait_pod(&pods, "live", |p| {
            let c = status(p)?;
            ensure!(c.restart_count == 2 && c.ready, "restartCount {} ready {}", c.restart_count, c.ready);
            Ok(())
        })
        .await?;
        eprintln!("restarted {:?} after the back-off was reported", backed_off_at.elapsed());
        let events = events_about(&client, &ns, "live").await?;
        ensure!(has_event(&events, "Normal", "Killing", "failed liveness probe"), "a Killing event: {events:?}");
        ensure!(has_event(&events, "Warning", "BackOff", "Back-off restarting failed container"), "{events:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_container_exceeding_its_memory_limit_is_reported_oom_killed_with_exit_code_137() -> Result<()> {
    on_local_cluster("lck-oom", |_cluster, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let limits = json!({ "limits": { "memory": "64Mi" } });
        // one allocates past its limit as it starts and is restarted; the other when asked
        let at_start = echo_container(json!({ "env": [{ "name": "ALLOC_MB", "value": "256" }], "resources": limits }));
        pods.create(&PostParams::default(), &pod("hog", json!({ "containers": [at_start] }))?).await?;
        let spec = json!({ "restartPolicy": "Never", "containers": [echo_container(json!({ "resources": limits }))] });
        pods.create(&PostParams::default(), &pod("hog-later", spec)?).await?;

        let address = ready_address(&pods, "hog-later").await?;
        let answer = get(&address, "/alloc?mb=256").await;
        ensure!(answer.is_err(), "the allocating process does not live to answer: {answer:?}");
        let later = wait_pod(&pods, "hog-later", |p| {
            let c = status(p)?;
            let t = c.state.as_ref().and_then(|s| s.terminated.clone()).context("not terminated")?;
            let phase = p.status.as_ref().and_then(|s| s.phase.clone());
            ensure!(phase.as_deref() == Some("Failed"), "phase {phase:?}");
            Ok(t)
        })
        .await?;
        ensure!(later.reason.as_deref() == Some("OOMKilled") && later.exit_code == 137, "{later:?}");

        let restarted = wait_pod(&pods, "hog", |p| {
            let c = status(p)?;
            ensure!(c.restart_count >= 1, "not restarted yet");
            terminated(c)
        })
        .await?;
        ensure!(restarted.reason.as_deref() == Some("OOMKilled") && restarted.exit_code == 137, "{restarted:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_read_only_root_filesystem_refuses_writes_outside_the_volumes_but_not_in_an_empty_dir() -> Result<()> {
    on_local_cluster("lck-rofs", |_cluster, client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        // the same emptyDir twice: writable at /scratch, read-only at /ro
        let mount = json!([{ "name": "scratch", "mountPath": "/scratch" },
            { "name": "scratch", "mountPath": "/ro", "readOnly": true }]);
        let spec = |read_only: bool| {
            json!({ "volumes": [{ "name": "scratch", "emptyDir": {} }], "containers": [echo_container(json!({
                "volumeMounts": mount, "securityContext": { "readOnlyRootFilesystem": read_only } }))] })
        };
        pods.create(&PostParams::default(), &pod("locked", spec(true))?).await?;
        pods.create(&PostParams::default(), &pod("open", spec(false))?).await?;
        let locked = ready_address(&pods, "locked").await?;
        let open = ready_address(&pods, "open").await?;

        let (code, body) = get(&locked, "/write?path=/scratch/ok").await?;
        ensure!(code == 200, "the emptyDir is writable: {code} {body}");
        let (code, body) = get(&locked, "/read?path=/scratch/ok").await?;
        ensure!(code == 200 && body == "written\n", "and reads back: {code} {body}");
        let (code, body) = get(&locked, "/read?path=/ro/ok").await?;
        ensure!(code == 200 && body == "written\n", "the read-only mount shows the same directory: {code} {body}");
        for path in ["/tmp/nope", "/nope", "/ro/nope"] {
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
        let grouped = ready_address(&pods, "grouped").await?;
        let ungrouped = ready_address(&pods, "ungrouped").await?;

        // SetVolumeOwnership: root:2000 and g+r (0440); the pod's user has fsGroup as a
        // supplementary group, so it reads through the group bits
        let (_, id) = get(&grouped, "/id").await?;
        ensure!(id.lines().any(|l| l.starts_with("Groups:") && l.split_whitespace().any(|g| g == "2000")), "{id}");
        let (_, stat) = get(&grouped, "/stat?path=/etc/creds/token").await?;
        ensure!(stat == "mode=0440 uid=0 gid=2000", "fsGroup: root:2000 and g+r: {stat}");
        let (_, stat) = get(&ungrouped, "/stat?path=/etc/creds/token").await?;
        ensure!(stat == "mode=0400 uid=0 gid=0", "no fsGroup: root:root and defaultMode as given: {stat}");
        let (code, body) = get(&grouped, "/read?path=/etc/creds/token").await?;
        ensure!(code == 200 && body == "s3cret", "fsGroup makes the 0400 file readable: {code} {body}");
        // without fsGroup the file stays root:root 0400, and uid 1000 is not its owner
        let (code, body) = get(&ungrouped, "/read?path=/etc/creds/token").await?;
        ensure!(code == 500 && body.contains("Permission denied"), "0400 root-owned is unreadable: {code} {body}");
        Ok(())
    })
    .await
}

/// Watches the namespace's pods until `names` are all deleted: for each, when it went and the
/// last state it had (the deleted object carries the kubelet's final status). `listed` is
/// signalled once the watch has listed, so that no deletion can be missed.
async fn deletions(
    pods: Api<Pod>,
    names: &[&str],
    listed: tokio::sync::oneshot::Sender<()>,
    limit: Duration,
) -> Result<BTreeMap<String, (Instant, Pod)>> {
    let mut stream = std::pin::pin!(watcher(pods, watcher::Config::default()));
    let mut listed = Some(listed);
    let mut gone = BTreeMap::new();
    while gone.len() < names.len() {
        let event = tokio::time::timeout(limit, stream.try_next()).await.context("no deletion in time")??;
        match event.context("the watch ended")? {
            watcher::Event::InitDone => {
                if let Some(l) = listed.take() {
                    let _ = l.send(());
                }
            }
            watcher::Event::Delete(p) if names.contains(&p.name_any().as_str()) => {
                gone.insert(p.name_any(), (Instant::now(), p));
            }
            _ => {}
        }
    }
    Ok(gone)
}

fn final_state(p: &Pod) -> Result<(String, ContainerStateTerminated)> {
    let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let t = status(p)?.state.as_ref().and_then(|s| s.terminated.clone()).context("not terminated")?;
    Ok((phase, t))
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
        ready_address(&pods, "stubborn").await?;
        ready_address(&pods, "polite").await?;

        let (listed, watching) = tokio::sync::oneshot::channel();
        let watch = tokio::spawn(deletions(pods.clone(), &["stubborn", "polite"], listed, GRACE * 5));
        watching.await.context("the watch did not list")?;
        let deleted = Instant::now();
        pods.delete("stubborn", &DeleteParams::default()).await?;
        pods.delete("polite", &DeleteParams::default()).await?;
        let gone = watch.await??;
        let (stubborn_at, stubborn_pod) = gone.get("stubborn").context("stubborn not deleted")?;
        let (polite_at, polite_pod) = gone.get("polite").context("polite not deleted")?;
        let (stubborn, polite) = (*stubborn_at - deleted, *polite_at - deleted);
        eprintln!("gone after: stubborn {stubborn:?}, polite {polite:?}");
        ensure!(polite < GRACE, "a container that exits on SIGTERM ends its pod before the grace period: {polite:?}");
        ensure!(stubborn >= GRACE, "one that ignores SIGTERM keeps its pod for the grace period: {stubborn:?}");

        // the final status as getPhase gives it for a terminal pod, whatever the restartPolicy
        let (phase, t) = final_state(stubborn_pod)?;
        ensure!(phase == "Failed" && t.exit_code == 137 && t.reason.as_deref() == Some("Error"), "{phase} {t:?}");
        let (phase, t) = final_state(polite_pod)?;
        ensure!(phase == "Succeeded" && t.exit_code == 0 && t.reason.as_deref() == Some("Completed"), "{phase} {t:?}");
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
        // every waiting reason in the order seen, until ImagePullBackOff follows ErrImagePull
        // (sampled every 100 ms; ErrImagePull lasts 1 s and comes back after each back-off, so
        // a sample missed under load is made up by the next pull)
        let reasons = std::sync::Mutex::new(Vec::<String>::new());
        eventually(POD_TIMEOUT, || async {
            let p = pods.get("nope").await?;
            let waiting = status(&p)?.state.as_ref().and_then(|s| s.waiting.clone()).context("not waiting")?;
            let reason = waiting.reason.unwrap_or_default();
            let mut seen = reasons.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if seen.last() != Some(&reason) {
                seen.push(reason.clone());
            }
            let pulled = seen.iter().position(|r| r == "ErrImagePull");
            let backed_off = pulled.is_some_and(|i| seen[i..].iter().any(|r| r == "ImagePullBackOff"));
            ensure!(backed_off && reason == "ImagePullBackOff", "waiting reasons so far: {seen:?}");
            ensure!(
                seen.iter().all(|r| ["ContainerCreating", "ErrImagePull", "ImagePullBackOff"].contains(&r.as_str())),
                "only pull reasons: {seen:?}"
            );
            Ok(())
        })
        .await?;
        let phase = pods.get("nope").await?.status.and_then(|s| s.phase);
        ensure!(phase.as_deref() == Some("Pending"), "a pod whose image cannot be pulled is Pending: {phase:?}");
        let pulled = format!("Failed to pull image \"{image}\"");
        eventually(Duration::from_secs(10), || async {
            let events = events_about(&client, &ns, "nope").await?;
            ensure!(
                has_event(&events, "Warning", "Failed", &pulled),
                "a Warning Failed event names the image: {events:?}"
            );
            ensure!(has_event(&events, "Warning", "Failed", "Error: ErrImagePull"), "{events:?}");
            ensure!(has_event(&events, "Normal", "BackOff", "Back-off pulling image"), "{events:?}");
            Ok(())
        })
        .await
    })
    .await
}
