//! Pod sync: the agent watches the pods bound to its node and gives each one a worker that
//! converges the runtime to it — sandbox, volumes, init containers, app containers under the
//! restart policy — and reports what runs through `pods/status`. A worker syncs when its pod
//! changes, when the runtime says a container of it exited, when a back-off ends, and every
//! [`RESYNC`] (which also refreshes ConfigMap and Secret volumes).
//!
//! Static pods (from `static_pods`) run the same way; their mirror pods in the API are
//! skipped. A pod marked for deletion has its containers stopped within its grace period and
//! is then deleted for good; a pod that vanished has its containers stopped the same way. After every
//! relist, whatever the runtime holds for pods the API no longer has is removed (no orphans).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use controllers::events::{EventRecorder, EventType};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::lifecycle::{self, Hook};
use crate::pod_actions::{self, Plan, Waiting, spec_hash};
use crate::pod_env::{self, Sources, expand};
use crate::pod_status::{Observed, differs, pod_status};
use crate::probes::Prober;
use crate::runtime::{ContainerRuntime, ImageError, Launch, RegistryAuth};
use crate::static_pods::{self, StaticEvent};
use crate::volumes;

/// How often a worker looks at its pod when nothing happens.
pub const RESYNC: Duration = Duration::from_secs(10);
/// The first image-pull back-off, doubled per failure up to five minutes.
const PULL_BACKOFF: Duration = Duration::from_secs(10);

/// What a pod worker needs of the node.
pub struct Node<R> {
    pub client: kube::Client,
    pub runtime: Arc<R>,
    pub name: String,
    pub host_ip: IpAddr,
    /// Where pod volumes live (`<root>/pods/<uid>`).
    pub root: PathBuf,
    pub events: EventRecorder,
    pub prober: Prober,
}

#[derive(Clone)]
enum Update {
    Present(Box<Pod>),
    Gone(Box<Pod>),
}

struct Worker {
    updates: watch::Sender<Update>,
    poke: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Syncs the pods bound to the node, and the static pods `statics` reports, until the watch
/// ends.
pub async fn run<R: ContainerRuntime>(
    node: Arc<Node<R>>,
    mut statics: tokio::sync::mpsc::Receiver<StaticEvent>,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut changes = node.runtime.changes();
    let probe_results = node.prober.subscribe();
    let mut probe_results = probe_results;
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut static_uids: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            Some(event) = statics.recv() => {
                workers.retain(|_, w| !w.task.is_finished());
                let (pod, update) = match event {
                    StaticEvent::Present(pod) => (pod.clone(), Update::Present(pod)),
                    StaticEvent::Gone(pod) => (pod.clone(), Update::Gone(pod)),
                };
                let Some(uid) = pod.uid() else { continue };
                if matches!(update, Update::Present(_)) {
                    static_uids.insert(uid.clone());
                } else {
                    static_uids.remove(&uid);
                }
                match workers.get(&uid) {
                    Some(w) => {
                        let _ = w.updates.send(update);
                    }
                    None => {
                        workers.insert(uid.clone(), spawn_worker(node.clone(), uid, update));
                    }
                }
            }
            event = events.next() => {
                let Some(event) = event else { break };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(error = %e, "pod watch failed; retrying");
                        continue;
                    }
                };
                workers.retain(|_, w| !w.task.is_finished());
                match event {
                    // Mirror pods only show static pods; those run from their manifests.
                    watcher::Event::Apply(pod)
                    | watcher::Event::InitApply(pod)
                    | watcher::Event::Delete(pod)
                        if static_pods::is_mirror(&pod) => {}
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                        let Some(uid) = pod.uid() else { continue };
                        listed.insert(uid.clone());
                        let update = Update::Present(Box::new(pod));
                        match workers.get(&uid) {
                            Some(w) => {
                                let _ = w.updates.send(update);
                            }
                            None => {
                                workers.insert(uid.clone(), spawn_worker(node.clone(), uid, update));
                            }
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        let Some(uid) = pod.uid() else { continue };
                        listed.remove(&uid);
                        let update = Update::Gone(Box::new(pod));
                        match workers.get(&uid) {
                            Some(w) => {
                                let _ = w.updates.send(update);
                            }
                            None => {
                                workers.insert(uid.clone(), spawn_worker(node.clone(), uid, update));
                            }
                        }
                    }
                    watcher::Event::Init => listed.clear(),
                    watcher::Event::InitDone => {
                        // Pods the API no longer has: gone while the watch was down.
                        for (uid, w) in &workers {
                            if !listed.contains(uid) && !static_uids.contains(uid) {
                                let current = w.updates.borrow().clone();
                                if let Update::Present(pod) = current {
                                    let _ = w.updates.send(Update::Gone(pod));
                                }
                            }
                        }
                        sweep_orphans(&node, &listed, &workers).await;
                    }
                }
            }
            Ok(uid) = changes.recv() => {
                if let Some(w) = workers.get(&uid) {
                    w.poke.notify_one();
                }
            }
            Ok(uid) = probe_results.recv() => {
                if let Some(w) = workers.get(&uid) {
                    w.poke.notify_one();
                }
            }
        }
    }
    anyhow::bail!("pod watch ended")
}

async fn sweep_orphans<R: ContainerRuntime>(
    node: &Node<R>,
    listed: &HashSet<String>,
    workers: &HashMap<String, Worker>,
) {
    for uid in node.runtime.pod_uids().await.unwrap_or_default() {
        if listed.contains(&uid) || workers.contains_key(&uid) {
            continue;
        }
        info!(
            uid,
            "removing the containers of a pod the API no longer has"
        );
        if let Err(e) = node.runtime.kill_pod(&uid, Duration::ZERO).await {
            warn!(uid, error = %e, "removing an orphaned pod failed");
        }
        volumes::clean_up(&node.root, &uid);
    }
}

fn spawn_worker<R: ContainerRuntime>(node: Arc<Node<R>>, uid: String, first: Update) -> Worker {
    let (updates, rx) = watch::channel(first);
    let poke = Arc::new(Notify::new());
    let task = tokio::spawn(work(node, uid, rx, poke.clone()));
    Worker {
        updates,
        poke,
        task,
    }
}

/// A worker's memory between syncs.
#[derive(Default)]
struct WorkerState {
    /// Image → (failures, retry not before, message).
    pull_failures: HashMap<String, (u32, Timestamp, String)>,
    /// Waiting reasons the plan cannot know (image and configuration errors), by container.
    blocked: HashMap<String, Waiting>,
    /// Instances already reported as backing off (one BackOff event per instance).
    backoff_reported: HashSet<String>,
}

fn grace_of(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

async fn work<R: ContainerRuntime>(
    node: Arc<Node<R>>,
    _uid: String,
    mut updates: watch::Receiver<Update>,
    poke: Arc<Notify>,
) {
    let mut state = WorkerState::default();
    loop {
        let update = updates.borrow_and_update().clone();
        let pod = match update {
            Update::Gone(pod) => {
                stop_pod(&node, &pod, grace_of(&pod)).await;
                return;
            }
            Update::Present(pod) => pod,
        };
        if pod.metadata.deletion_timestamp.is_some() {
            stop_pod(&node, &pod, grace_of(&pod)).await;
            if finish_deletion(&node, &pod).await {
                return;
            }
            tokio::select! {
                r = updates.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let wake = match sync(&node, &pod, &mut state).await {
            Ok(wake) => wake,
            Err(e) => {
                warn!(pod = %pod.name_any(), error = %e, "syncing a pod failed");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            r = updates.changed() => if r.is_err() { return },
            _ = poke.notified() => {}
            _ = tokio::time::sleep(wake) => {}
        }
    }
}

async fn stop_pod<R: ContainerRuntime>(node: &Node<R>, pod: &Pod, grace: Duration) {
    let uid = pod.uid().unwrap_or_default();
    node.prober.forget_pod(&uid);
    let running: Vec<(String, String)> = node
        .runtime
        .containers(&uid)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| matches!(i.state, crate::runtime::InstanceState::Running { .. }))
        .map(|i| (i.name, i.id))
        .collect();
    // preStop hooks run together, within the grace period.
    let sandbox = node.runtime.sandbox(&uid).await.ok().flatten();
    let started = std::time::Instant::now();
    let hooks = running
        .iter()
        .map(|(name, id)| run_pre_stop(node, pod, sandbox.as_ref(), name, id, grace));
    futures::future::join_all(hooks).await;
    let grace = grace.saturating_sub(started.elapsed());
    for (name, _) in running {
        node.events
            .record(
                &reference(pod, Some(&name)),
                EventType::Normal,
                "Killing",
                "Kill",
                format!("Stopping container {name}"),
            )
            .await;
    }
    if let Err(e) = node.runtime.kill_pod(&uid, grace).await {
        warn!(pod = %pod.name_any(), error = %e, "stopping a pod failed");
        return;
    }
    volumes::clean_up(&node.root, &uid);
}

/// Runs a container's preStop hook, if it has one, within `grace`.
async fn run_pre_stop<R: ContainerRuntime>(
    node: &Node<R>,
    pod: &Pod,
    sandbox: Option<&crate::runtime::Sandbox>,
    name: &str,
    id: &str,
    grace: Duration,
) {
    let (Some(c), Some(sandbox)) = (container_of(pod, name), sandbox) else {
        return;
    };
    let Some(hook) = lifecycle::handler(&c, Hook::PreStop) else {
        return;
    };
    if !lifecycle::run(node.runtime.as_ref(), id, sandbox, &c, hook, grace).await {
        node.events
            .record(
                &reference(pod, Some(name)),
                EventType::Warning,
                "FailedPreStopHook",
                "PreStop",
                format!("PreStopHook failed for container {name}"),
            )
            .await;
    }
}

/// Deletes a pod whose containers are gone. True once it is deleted (or already was).
async fn finish_deletion<R: ContainerRuntime>(node: &Node<R>, pod: &Pod) -> bool {
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
        Err(e) => {
            debug!(pod = %pod.name_any(), error = %e, "deleting a stopped pod failed; retrying");
            false
        }
    }
}

/// An event reference to the pod, or to one of its containers.
fn reference(pod: &Pod, container: Option<&str>) -> ObjectReference {
    let spec = pod.spec.clone().unwrap_or_default();
    let field_path = container.map(|name| {
        if spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        {
            format!("spec.initContainers{{{name}}}")
        } else {
            format!("spec.containers{{{name}}}")
        }
    });
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

/// The spec of the pod's container `name`: an init, app or ephemeral container.
fn container_of(pod: &Pod, name: &str) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == name)
        .cloned()
        .or_else(|| {
            pod_actions::ephemeral_containers(pod)
                .into_iter()
                .find(|(c, _)| c.name == name)
                .map(|(c, _)| c)
        })
}

fn pull_policy(c: &Container) -> String {
    c.image_pull_policy
        .clone()
        .unwrap_or_else(|| default_pull_policy(c.image.as_deref().unwrap_or("")).into())
}

/// The API's default `imagePullPolicy` for an image: `Always` when untagged or `:latest`,
/// `IfNotPresent` when tagged or pinned by digest.
pub fn default_pull_policy(image: &str) -> &'static str {
    let tagged = image.contains('@')
        || image
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
    if !tagged || image.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// Registry credentials from the pod's `imagePullSecrets` (`kubernetes.io/dockerconfigjson`).
async fn pull_credentials(client: &kube::Client, pod: &Pod) -> Vec<RegistryAuth> {
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut out = Vec::new();
    for r in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
    {
        let Ok(Some(secret)) = api.get_opt(&r.name).await else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let Some(config) = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
        else {
            continue;
        };
        let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&config.0) else {
            continue;
        };
        let auths = parsed.get("auths").unwrap_or(&parsed);
        for (server, entry) in auths.as_object().into_iter().flatten() {
            let (mut username, mut password) = (
                entry["username"].as_str().unwrap_or("").to_owned(),
                entry["password"].as_str().unwrap_or("").to_owned(),
            );
            if let Some(auth) = entry["auth"].as_str() {
                use base64::Engine;
                if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth)
                    && let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':')
                {
                    username = u.to_owned();
                    password = p.to_owned();
                }
            }
            out.push(RegistryAuth {
                username,
                password,
                server: server.clone(),
            });
        }
    }
    out
}

/// One sync of a live pod; returns how long until the next one at the latest.
async fn sync<R: ContainerRuntime>(
    node: &Node<R>,
    pod: &Pod,
    state: &mut WorkerState,
) -> anyhow::Result<Duration> {
    let uid = pod.uid().unwrap_or_default();
    let runtime = node.runtime.as_ref();
    let sandbox = runtime.sandbox(&uid).await?;
    let instances = runtime.containers(&uid).await?;
    let unhealthy = node.prober.unhealthy(&uid);
    let plan = pod_actions::plan(
        pod,
        sandbox.as_ref(),
        &instances,
        &unhealthy,
        Timestamp::now(),
    );
    let grace = grace_of(pod);
    for id in &plan.stop {
        if let Some(i) = instances.iter().find(|i| &i.id == id) {
            let why = if unhealthy.contains(id) {
                format!(
                    "Container {} failed liveness probe, will be restarted",
                    i.name
                )
            } else {
                format!("Stopping container {}", i.name)
            };
            node.events
                .record(
                    &reference(pod, Some(&i.name)),
                    EventType::Normal,
                    "Killing",
                    "Kill",
                    why,
                )
                .await;
        }
        if let Some(i) = instances.iter().find(|i| &i.id == id) {
            run_pre_stop(node, pod, sandbox.as_ref(), &i.name, id, grace).await;
        }
        runtime.stop_container(id, grace).await?;
        node.prober.forget(id);
    }
    for id in &plan.remove {
        runtime.remove_container(id).await?;
    }
    if let Some(attempt) = plan.create_sandbox {
        if let Some(old) = &sandbox {
            runtime.remove_container(&old.id).await?;
        }
        runtime.create_sandbox(pod, attempt).await?;
        // Plan again with the sandbox in place.
        return Ok(Duration::ZERO);
    }
    let Some(sandbox) = sandbox else {
        return Ok(RESYNC);
    };
    state.blocked.clear();
    if !plan.start.is_empty() {
        start_containers(node, pod, &sandbox, &plan, &instances, state).await;
    }
    // Report what is there now.
    let instances = runtime.containers(&uid).await?;
    let now = Timestamp::now();
    let after = pod_actions::plan(pod, Some(&sandbox), &instances, &unhealthy, now);
    let mut waiting = after.waiting.clone();
    for (name, w) in &state.blocked {
        waiting.insert(name.clone(), w.clone());
    }
    for (name, w) in &after.waiting {
        if w.reason == "CrashLoopBackOff"
            && let Some(i) = pod_actions::latest(&instances, name).0
            && state.backoff_reported.insert(i.id.clone())
        {
            node.events
                .record(
                    &reference(pod, Some(name)),
                    EventType::Warning,
                    "BackOff",
                    "Restart",
                    format!(
                        "Back-off restarting failed container {name} in pod {}",
                        pod_label(pod)
                    ),
                )
                .await;
        }
    }
    node.prober.track(node, pod, &sandbox, &instances);
    let readiness = node.prober.readiness(&uid);
    let wanted = pod_status(
        pod,
        &Observed {
            sandbox: Some(&sandbox),
            instances: &instances,
            waiting: &waiting,
            readiness: &readiness,
            host_ip: node.host_ip,
            now,
        },
    );
    if differs(pod, &wanted) {
        let api: Api<Pod> =
            Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
        // The API may be away (a static pod runs regardless); the next sync reports again.
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": wanted})),
            )
            .await
        {
            debug!(pod = %pod.name_any(), error = %e, "reporting pod status failed");
        }
    }
    let mut wake = RESYNC;
    let mut until = |at: Timestamp| {
        let d = Duration::try_from(at.duration_since(now)).unwrap_or_default();
        wake = wake.min(d.max(Duration::from_millis(100)));
    };
    if let Some(at) = after.wake_at {
        until(at);
    }
    for (_, retry, _) in state.pull_failures.values() {
        if *retry > now {
            until(*retry);
        }
    }
    Ok(wake)
}

fn pod_label(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.name_any(),
        pod.namespace().unwrap_or_default(),
        pod.uid().unwrap_or_default()
    )
}

async fn start_containers<R: ContainerRuntime>(
    node: &Node<R>,
    pod: &Pod,
    sandbox: &crate::runtime::Sandbox,
    plan: &Plan,
    plan_instances: &[crate::runtime::ContainerInstance],
    state: &mut WorkerState,
) {
    let runtime = node.runtime.as_ref();
    let pod_ip = if sandbox.ip.is_empty() {
        node.host_ip.to_string()
    } else {
        sandbox.ip.clone()
    };
    let uid = pod.uid().unwrap_or_default();
    let mut memory = HashMap::new();
    for (name, limit) in volumes::memory_volumes(pod) {
        match runtime.memory_volume(&uid, &name, limit).await {
            Ok(source) => {
                memory.insert(name, source);
            }
            Err(e) => warn!(pod = %pod.name_any(), error = %e, "making a memory volume failed"),
        }
    }
    let prepared = volumes::prepare(
        pod,
        &volumes::VolumeContext {
            client: &node.client,
            root: &node.root,
            pod_ip: &pod_ip,
            host_ip: node.host_ip,
            memory: &memory,
        },
    )
    .await;
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            node.events
                .record(
                    &reference(pod, None),
                    EventType::Warning,
                    "FailedMount",
                    "Mount",
                    e.0.clone(),
                )
                .await;
            for s in &plan.start {
                state
                    .blocked
                    .insert(s.name.clone(), Waiting::new("ContainerCreating", None));
            }
            return;
        }
    };
    let credentials = pull_credentials(&node.client, pod).await;
    let service_vars = pod_env::service_env(&node.client, pod).await;
    let mut sources = Sources::new(node.client.clone(), &pod.namespace().unwrap_or_default());
    let now = Timestamp::now();
    for start in &plan.start {
        let Some(c) = container_of(pod, &start.name) else {
            continue;
        };
        let c = &c;
        // An ephemeral container may share the process namespace of its target.
        let pid_target = pod_actions::ephemeral_containers(pod)
            .into_iter()
            .find(|(e, _)| e.name == c.name)
            .and_then(|(_, target)| target)
            .and_then(|target| {
                plan_instances
                    .iter()
                    .rev()
                    .find(|i| i.name == target)
                    .map(|i| i.id.clone())
            });
        let r = reference(pod, Some(&c.name));
        let image = c.image.clone().unwrap_or_default();
        if let Some((_, retry, _)) = state.pull_failures.get(&image)
            && *retry > now
        {
            state.blocked.insert(
                c.name.clone(),
                Waiting::new(
                    "ImagePullBackOff",
                    Some(format!("Back-off pulling image \"{image}\"")),
                ),
            );
            node.events
                .record(
                    &r,
                    EventType::Normal,
                    "BackOff",
                    "Pull",
                    format!("Back-off pulling image \"{image}\""),
                )
                .await;
            continue;
        }
        let policy = pull_policy(c);
        let started_pull = std::time::Instant::now();
        let image_ref = match runtime.ensure_image(&image, &policy, &credentials).await {
            Ok(found) => {
                state.pull_failures.remove(&image);
                if found.pulled {
                    node.events
                        .record(
                            &r,
                            EventType::Normal,
                            "Pulling",
                            "Pull",
                            format!("Pulling image \"{image}\""),
                        )
                        .await;
                    node.events
                        .record(
                            &r,
                            EventType::Normal,
                            "Pulled",
                            "Pull",
                            format!(
                                "Successfully pulled image \"{image}\" in {:.3}s",
                                started_pull.elapsed().as_secs_f64()
                            ),
                        )
                        .await;
                } else {
                    node.events
                        .record(
                            &r,
                            EventType::Normal,
                            "Pulled",
                            "Pull",
                            format!("Container image \"{image}\" already present on machine"),
                        )
                        .await;
                }
                found
            }
            Err(e) => {
                let (reason, message) = match &e {
                    ImageError::NeverPull(_) => ("ErrImageNeverPull", e.to_string()),
                    ImageError::Pull(_) => ("ErrImagePull", e.to_string()),
                };
                if matches!(e, ImageError::Pull(_)) {
                    node.events
                        .record(
                            &r,
                            EventType::Normal,
                            "Pulling",
                            "Pull",
                            format!("Pulling image \"{image}\""),
                        )
                        .await;
                    let failures = state.pull_failures.get(&image).map_or(0, |f| f.0) + 1;
                    let delay = (PULL_BACKOFF * 2u32.pow((failures - 1).min(5)))
                        .min(pod_actions::MAX_BACKOFF);
                    let retry = now + jiff::SignedDuration::try_from(delay).unwrap_or_default();
                    state
                        .pull_failures
                        .insert(image.clone(), (failures, retry, message.clone()));
                }
                node.events
                    .record(&r, EventType::Warning, "Failed", "Pull", message.clone())
                    .await;
                node.events
                    .record(
                        &r,
                        EventType::Warning,
                        "Failed",
                        "Pull",
                        format!("Error: {reason}"),
                    )
                    .await;
                state
                    .blocked
                    .insert(c.name.clone(), Waiting::new(reason, Some(message)));
                continue;
            }
        };
        let env = match pod_env::container_env(
            &mut sources,
            pod,
            c,
            &pod_ip,
            node.host_ip,
            &service_vars,
        )
        .await
        {
            Ok(env) => env,
            Err(e) => {
                config_error(node, state, &r, &c.name, e.0).await;
                continue;
            }
        };
        let mounts = match volumes::mounts(c, &prepared) {
            Ok(m) => m,
            Err(e) => {
                config_error(node, state, &r, &c.name, e.0).await;
                continue;
            }
        };
        let values: HashMap<String, String> = env.iter().cloned().collect();
        let expand_all = |list: &Option<Vec<String>>| {
            list.as_ref()
                .map(|l| l.iter().map(|s| expand(s, &values)).collect::<Vec<_>>())
        };
        let launch = Launch {
            pod,
            container: c,
            attempt: start.attempt,
            spec_hash: spec_hash(c),
            command: expand_all(&c.command),
            args: expand_all(&c.args),
            env,
            mounts,
            image_ref: image_ref.reference.clone(),
            pid_target,
        };
        match runtime.start_container(sandbox, launch).await {
            Ok(id) => {
                node.events
                    .record(
                        &r,
                        EventType::Normal,
                        "Created",
                        "Create",
                        format!("Created container: {}", c.name),
                    )
                    .await;
                node.events
                    .record(
                        &r,
                        EventType::Normal,
                        "Started",
                        "Start",
                        format!("Started container {}", c.name),
                    )
                    .await;
                if let Some(hook) = lifecycle::handler(c, Hook::PostStart)
                    && !lifecycle::run(runtime, &id, sandbox, c, hook, grace_of(pod)).await
                {
                    node.events
                        .record(
                            &r,
                            EventType::Warning,
                            "FailedPostStartHook",
                            "PostStart",
                            format!("PostStartHook failed for container {}", c.name),
                        )
                        .await;
                    let _ = runtime.stop_container(&id, grace_of(pod)).await;
                }
            }
            Err(e) => {
                node.events
                    .record(
                        &r,
                        EventType::Warning,
                        "Failed",
                        "Create",
                        format!("Error: {e:#}"),
                    )
                    .await;
                state.blocked.insert(
                    c.name.clone(),
                    Waiting::new("CreateContainerError", Some(format!("{e:#}"))),
                );
            }
        }
    }
}

async fn config_error<R: ContainerRuntime>(
    node: &Node<R>,
    state: &mut WorkerState,
    r: &ObjectReference,
    name: &str,
    message: String,
) {
    node.events
        .record(
            r,
            EventType::Warning,
            "Failed",
            "Create",
            format!("Error: {message}"),
        )
        .await;
    state.blocked.insert(
        name.to_owned(),
        Waiting::new("CreateContainerConfigError", Some(message)),
    );
}
