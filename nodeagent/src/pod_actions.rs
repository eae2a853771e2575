//! What a pod needs next, decided from its spec and what the runtime holds (the kubelet's
//! `computePodActions`): a sandbox, the next init container, the app containers to (re)start
//! under the restart policy with crash-loop back-off, the instances to stop because their
//! spec changed or they failed their liveness probe, and the old instances to remove.
//! It is pure: the pod worker carries the plan out and asks again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use sha2::{Digest, Sha256};

use crate::runtime::{ContainerInstance, InstanceState, Sandbox};

/// The first crash-loop back-off, doubled per restart up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before it exited restarts without back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// Why a container is not running, as its status's `waiting` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
}

impl Waiting {
    pub fn new(reason: &str, message: Option<String>) -> Waiting {
        Waiting {
            reason: reason.into(),
            message,
        }
    }
}

/// A container instance to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub name: String,
    pub init: bool,
    pub attempt: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Create a sandbox with this attempt (after stopping whatever still runs).
    pub create_sandbox: Option<u32>,
    pub start: Vec<Start>,
    /// Instances to stop (with the pod's grace period).
    pub stop: Vec<String>,
    /// Exited instances no longer needed (all but the newest two of each container).
    pub remove: Vec<String>,
    /// Why containers wait, by name.
    pub waiting: HashMap<String, Waiting>,
    /// When to look again for a back-off to end.
    pub wake_at: Option<Timestamp>,
}

/// The hash of the parts of a container's spec that a running instance cannot change.
pub fn spec_hash(container: &Container) -> String {
    let mut c = container.clone();
    // Probes and resources can change without a restart (as the kubelet's hash ignores them).
    c.liveness_probe = None;
    c.readiness_probe = None;
    c.startup_probe = None;
    c.resources = None;
    c.resize_policy = None;
    let bytes = serde_json::to_vec(&c).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The back-off before restarting an instance that exited after attempt `attempt`.
pub fn restart_delay(attempt: u32, ran_for: Duration) -> Duration {
    if attempt == 0 || ran_for >= BACKOFF_RESET {
        return Duration::ZERO;
    }
    let doublings = (attempt - 1).min(16);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The newest instance of each container, and the one before it.
pub fn latest<'a>(
    instances: &'a [ContainerInstance],
    name: &str,
) -> (Option<&'a ContainerInstance>, Option<&'a ContainerInstance>) {
    let mut of: Vec<&ContainerInstance> = instances.iter().filter(|i| i.name == name).collect();
    of.sort_by_key(|i| i.attempt);
    let newest = of.pop();
    (newest, of.pop())
}

fn exit_of(i: &ContainerInstance) -> Option<(i32, Timestamp, Timestamp)> {
    match &i.state {
        InstanceState::Exited {
            exit_code,
            started_at,
            finished_at,
            ..
        } => Some((*exit_code, *started_at, *finished_at)),
        _ => None,
    }
}

/// The pod's ephemeral containers (`kubectl debug`) as containers, each with the container
/// whose process namespace it targets.
pub fn ephemeral_containers(pod: &Pod) -> Vec<(Container, Option<String>)> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .filter_map(|e| {
            let mut value = serde_json::to_value(e).ok()?;
            let target = value
                .as_object_mut()?
                .remove("targetContainerName")
                .and_then(|t| t.as_str().map(str::to_owned));
            Some((serde_json::from_value(value).ok()?, target))
        })
        .collect()
}

/// Whether every container of a pod is done for good under its restart policy.
pub fn is_terminal(pod: &Pod, instances: &[ContainerInstance]) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if policy == "Always" || spec.containers.is_empty() {
        return false;
    }
    spec.containers
        .iter()
        .all(|c| match latest(instances, &c.name).0.and_then(exit_of) {
            Some((code, _, _)) => policy == "Never" || code == 0,
            None => false,
        })
        || init_failed_for_good(pod, instances)
}

/// Whether an init container is a sidecar (`restartPolicy: Always`): it keeps running beside
/// the app containers instead of running to completion.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn init_failed_for_good(pod: &Pod, instances: &[ContainerInstance]) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.restart_policy.as_deref() == Some("Never")
        && spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| !is_sidecar(c))
            .any(|c| {
                latest(instances, &c.name)
                    .0
                    .and_then(exit_of)
                    .is_some_and(|(code, _, _)| code != 0)
            })
}

/// Decides the next steps for `pod`. `unhealthy` holds the instances whose liveness probe
/// failed.
pub fn plan(
    pod: &Pod,
    sandbox: Option<&Sandbox>,
    instances: &[ContainerInstance],
    unhealthy: &HashSet<String>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let terminal = is_terminal(pod, instances);

    let sandbox = match sandbox {
        Some(s) if s.running => s,
        other => {
            if terminal {
                return plan;
            }
            // No sandbox yet, or it died: a new one, and everything starts again in it.
            plan.create_sandbox = Some(other.map_or(0, |s| s.attempt + 1));
            plan.stop = instances
                .iter()
                .filter(|i| matches!(i.state, InstanceState::Running { .. }))
                .map(|i| i.id.clone())
                .collect();
            for c in spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
            {
                plan.waiting
                    .insert(c.name.clone(), Waiting::new("ContainerCreating", None));
            }
            return plan;
        }
    };
    let current = |i: &ContainerInstance| i.sandbox_attempt == sandbox.attempt;

    // Old instances: keep the newest two of each container (the status's state and lastState).
    let mut by_name: HashMap<&str, Vec<&ContainerInstance>> = HashMap::new();
    for i in instances {
        by_name.entry(i.name.as_str()).or_default().push(i);
    }
    for list in by_name.values_mut() {
        list.sort_by_key(|i| std::cmp::Reverse(i.attempt));
        plan.remove.extend(
            list.iter()
                .skip(2)
                .filter(|i| !matches!(i.state, InstanceState::Running { .. }))
                .map(|i| i.id.clone()),
        );
    }

    // A pod that is done for good stops what still runs (its sidecars).
    if terminal {
        plan.stop = instances
            .iter()
            .filter(|i| matches!(i.state, InstanceState::Running { .. }))
            .map(|i| i.id.clone())
            .collect();
        return plan;
    }
    // Once app containers ran in this sandbox, the pod is initialized: sidecars that end are
    // restarted without holding anything up.
    let initialized = spec.containers.iter().any(|c| {
        latest(instances, &c.name)
            .0
            .is_some_and(|i| i.sandbox_attempt == sandbox.attempt)
    });

    // Init containers, one at a time, each to success (sidecars: to running), in the current
    // sandbox.
    for c in spec.init_containers.iter().flatten() {
        let newest = latest(instances, &c.name).0;
        if is_sidecar(c) {
            match newest {
                Some(i) if current(i) => match &i.state {
                    InstanceState::Running { .. } => {
                        if i.spec_hash != spec_hash(c) || unhealthy.contains(&i.id) {
                            plan.stop.push(i.id.clone());
                        }
                        continue;
                    }
                    InstanceState::Created => {
                        plan.remove.push(i.id.clone());
                        plan.start.push(Start {
                            name: c.name.clone(),
                            init: true,
                            attempt: i.attempt + 1,
                        });
                    }
                    InstanceState::Exited { .. } => {
                        let (_, started, finished) = exit_of(i).expect("exited");
                        restart_after_backoff(pod, c, i, started, finished, now, &mut plan, true);
                    }
                },
                other => {
                    plan.start.push(Start {
                        name: c.name.clone(),
                        init: true,
                        attempt: other.map_or(0, |i| i.attempt + 1),
                    });
                    plan.waiting
                        .insert(c.name.clone(), Waiting::new("PodInitializing", None));
                }
            }
            if initialized {
                continue;
            }
            waiting_for_init(&spec.containers, &mut plan);
            return plan;
        }
        match newest {
            Some(i) if current(i) => match &i.state {
                InstanceState::Running { .. } | InstanceState::Created => {
                    waiting_for_init(&spec.containers, &mut plan);
                    return plan;
                }
                InstanceState::Exited { exit_code: 0, .. } => continue,
                InstanceState::Exited { .. } => {
                    if policy == "Never" {
                        return plan;
                    }
                    let (_, started, finished) = exit_of(i).expect("exited");
                    restart_after_backoff(pod, c, i, started, finished, now, &mut plan, true);
                    waiting_for_init(&spec.containers, &mut plan);
                    return plan;
                }
            },
            other => {
                plan.start.push(Start {
                    name: c.name.clone(),
                    init: true,
                    attempt: other.map_or(0, |i| i.attempt + 1),
                });
                plan.waiting
                    .insert(c.name.clone(), Waiting::new("PodInitializing", None));
                waiting_for_init(&spec.containers, &mut plan);
                return plan;
            }
        }
    }

    // Ephemeral containers start once, when the pod runs, and are never restarted.
    for (c, _) in ephemeral_containers(pod) {
        if latest(instances, &c.name).0.is_none() {
            plan.start.push(Start {
                name: c.name.clone(),
                init: false,
                attempt: 0,
            });
            plan.waiting
                .insert(c.name.clone(), Waiting::new("ContainerCreating", None));
        }
    }

    for c in &spec.containers {
        let Some(i) = latest(instances, &c.name).0 else {
            plan.start.push(Start {
                name: c.name.clone(),
                init: false,
                attempt: 0,
            });
            plan.waiting
                .insert(c.name.clone(), Waiting::new("ContainerCreating", None));
            continue;
        };
        let stale = !current(i);
        match &i.state {
            InstanceState::Running { .. } => {
                if stale || i.spec_hash != spec_hash(c) || unhealthy.contains(&i.id) {
                    // Stopped now; its exit restarts it as the policy says.
                    plan.stop.push(i.id.clone());
                }
            }
            InstanceState::Created => {
                plan.remove.push(i.id.clone());
                plan.start.push(Start {
                    name: c.name.clone(),
                    init: false,
                    attempt: i.attempt + 1,
                });
            }
            InstanceState::Exited { exit_code, .. } => {
                let restart = match policy {
                    "Never" => false,
                    "OnFailure" => *exit_code != 0,
                    _ => true,
                };
                if stale && (policy != "Never") {
                    // A new sandbox: start again at once.
                    plan.start.push(Start {
                        name: c.name.clone(),
                        init: false,
                        attempt: i.attempt + 1,
                    });
                } else if restart {
                    let (_, started, finished) = exit_of(i).expect("exited");
                    restart_after_backoff(pod, c, i, started, finished, now, &mut plan, false);
                }
            }
        }
    }
    plan
}

fn waiting_for_init(containers: &[Container], plan: &mut Plan) {
    for c in containers {
        plan.waiting
            .entry(c.name.clone())
            .or_insert_with(|| Waiting::new("PodInitializing", None));
    }
}

#[allow(clippy::too_many_arguments)]
fn restart_after_backoff(
    pod: &Pod,
    c: &Container,
    i: &ContainerInstance,
    started: Timestamp,
    finished: Timestamp,
    now: Timestamp,
    plan: &mut Plan,
    init: bool,
) {
    let ran_for = Duration::try_from(finished.duration_since(started)).unwrap_or_default();
    let delay = restart_delay(i.attempt, ran_for);
    let until = finished + jiff::SignedDuration::try_from(delay).unwrap_or_default();
    if now >= until {
        plan.start.push(Start {
            name: c.name.clone(),
            init,
            attempt: i.attempt + 1,
        });
    } else {
        plan.waiting.insert(
            c.name.clone(),
            Waiting::new(
                "CrashLoopBackOff",
                Some(format!(
                    "back-off {}s restarting failed container={} pod={}",
                    delay.as_secs(),
                    c.name,
                    pod_ref(pod)
                )),
            ),
        );
        plan.wake_at = Some(plan.wake_at.map_or(until, |w| w.min(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: &str, init: bool) -> Pod {
        let mut spec = json!({"restartPolicy": policy,
            "containers": [{"name": "app", "image": "busybox"}]});
        if init {
            spec["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
        }
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec}),
        )
        .unwrap()
    }

    fn sandbox(attempt: u32) -> Sandbox {
        Sandbox {
            id: "sb".into(),
            ip: "172.17.0.2".into(),
            created_at: Timestamp::from_second(1_000).unwrap(),
            running: true,
            attempt,
        }
    }

    fn instance(p: &Pod, name: &str, attempt: u32, state: InstanceState) -> ContainerInstance {
        let spec = p.spec.as_ref().unwrap();
        let c = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .unwrap();
        ContainerInstance {
            id: format!("{name}-{attempt}"),
            name: name.into(),
            attempt,
            sandbox_attempt: 0,
            image: "busybox".into(),
            image_id: "sha256:1".into(),
            spec_hash: spec_hash(c),
            state,
        }
    }

    fn exited(code: i32, at: i64) -> InstanceState {
        InstanceState::Exited {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Timestamp::from_second(at - 1).unwrap(),
            finished_at: Timestamp::from_second(at).unwrap(),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_then_its_containers() {
        let p = pod("Always", false);
        let first = plan(&p, None, &[], &HashSet::new(), at(1_000));
        assert_eq!(first.create_sandbox, Some(0));
        assert!(first.start.is_empty());
        let second = plan(&p, Some(&sandbox(0)), &[], &HashSet::new(), at(1_000));
        assert_eq!(
            second.start,
            vec![Start {
                name: "app".into(),
                init: false,
                attempt: 0
            }]
        );
    }

    #[test]
    fn crashing_containers_restart_with_doubling_back_off() {
        let p = pod("Always", false);
        let sb = sandbox(0);
        // The first crash restarts at once.
        let i0 = instance(&p, "app", 0, exited(1, 2_000));
        let now = plan(
            &p,
            Some(&sb),
            std::slice::from_ref(&i0),
            &HashSet::new(),
            at(2_000),
        );
        assert_eq!(now.start[0].attempt, 1);
        // The second waits 10 s, the third 20 s.
        let i1 = instance(&p, "app", 1, exited(1, 2_001));
        let waiting = plan(
            &p,
            Some(&sb),
            &[i0.clone(), i1.clone()],
            &HashSet::new(),
            at(2_005),
        );
        assert!(waiting.start.is_empty());
        assert_eq!(waiting.waiting["app"].reason, "CrashLoopBackOff");
        assert!(
            waiting.waiting["app"]
                .message
                .as_ref()
                .unwrap()
                .starts_with("back-off 10s restarting failed container=app pod=p_ns(u1)")
        );
        assert_eq!(waiting.wake_at, Some(at(2_011)));
        let later = plan(
            &p,
            Some(&sb),
            &[i0.clone(), i1.clone()],
            &HashSet::new(),
            at(2_011),
        );
        assert_eq!(later.start[0].attempt, 2);
        assert_eq!(restart_delay(2, Duration::ZERO), Duration::from_secs(20));
        assert_eq!(restart_delay(9, Duration::ZERO), MAX_BACKOFF);
        // Old instances go: only the newest two stay.
        let i2 = instance(&p, "app", 2, exited(1, 2_030));
        let p3 = plan(&p, Some(&sb), &[i0, i1, i2], &HashSet::new(), at(2_031));
        assert_eq!(p3.remove, vec!["app-0".to_string()]);
    }

    #[test]
    fn restart_policies_decide_what_exits_restart() {
        let sb = sandbox(0);
        let never = pod("Never", false);
        let failed = instance(&never, "app", 0, exited(1, 2_000));
        let p = plan(
            &never,
            Some(&sb),
            std::slice::from_ref(&failed),
            &HashSet::new(),
            at(3_000),
        );
        assert!(p.start.is_empty());
        assert!(is_terminal(&never, &[failed]));
        let on_failure = pod("OnFailure", false);
        let ok = instance(&on_failure, "app", 0, exited(0, 2_000));
        assert!(
            plan(
                &on_failure,
                Some(&sb),
                std::slice::from_ref(&ok),
                &HashSet::new(),
                at(3_000)
            )
            .start
            .is_empty()
        );
        assert!(is_terminal(&on_failure, &[ok]));
        let bad = instance(&on_failure, "app", 0, exited(2, 2_000));
        assert_eq!(
            plan(&on_failure, Some(&sb), &[bad], &HashSet::new(), at(3_000))
                .start
                .len(),
            1
        );
        let always = pod("Always", false);
        let done = instance(&always, "app", 0, exited(0, 2_000));
        assert_eq!(
            plan(&always, Some(&sb), &[done], &HashSet::new(), at(3_000))
                .start
                .len(),
            1
        );
    }

    #[test]
    fn init_containers_run_to_success_before_the_app() {
        let p = pod("Always", true);
        let sb = sandbox(0);
        let first = plan(&p, Some(&sb), &[], &HashSet::new(), at(1_000));
        assert_eq!(
            first.start,
            vec![Start {
                name: "setup".into(),
                init: true,
                attempt: 0
            }]
        );
        assert_eq!(first.waiting["app"].reason, "PodInitializing");
        let running = instance(
            &p,
            "setup",
            0,
            InstanceState::Running {
                started_at: at(1_000),
            },
        );
        assert!(
            plan(&p, Some(&sb), &[running], &HashSet::new(), at(1_001))
                .start
                .is_empty()
        );
        let done = instance(&p, "setup", 0, exited(0, 1_002));
        let next = plan(&p, Some(&sb), &[done], &HashSet::new(), at(1_003));
        assert_eq!(
            next.start,
            vec![Start {
                name: "app".into(),
                init: false,
                attempt: 0
            }]
        );
        let never = pod("Never", true);
        let failed = instance(&never, "setup", 0, exited(1, 1_002));
        assert!(
            plan(
                &never,
                Some(&sb),
                std::slice::from_ref(&failed),
                &HashSet::new(),
                at(1_003)
            )
            .start
            .is_empty()
        );
        assert!(is_terminal(&never, &[failed]));
    }

    #[test]
    fn sidecars_start_before_the_app_keep_running_and_restart() {
        let mut p = pod("Never", true);
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].restart_policy =
            Some("Always".into());
        let sb = sandbox(0);
        // The sidecar starts first; the app waits for it to run, not to finish.
        let first = plan(&p, Some(&sb), &[], &HashSet::new(), at(1_000));
        assert_eq!(
            first.start,
            vec![Start {
                name: "setup".into(),
                init: true,
                attempt: 0
            }]
        );
        let side = instance(
            &p,
            "setup",
            0,
            InstanceState::Running {
                started_at: at(1_000),
            },
        );
        let next = plan(
            &p,
            Some(&sb),
            std::slice::from_ref(&side),
            &HashSet::new(),
            at(1_001),
        );
        assert_eq!(
            next.start,
            vec![Start {
                name: "app".into(),
                init: false,
                attempt: 0
            }]
        );
        // A sidecar that ends is restarted even under restartPolicy Never.
        let app = instance(
            &p,
            "app",
            0,
            InstanceState::Running {
                started_at: at(1_001),
            },
        );
        let ended = instance(&p, "setup", 0, exited(1, 1_002));
        let again = plan(&p, Some(&sb), &[ended, app], &HashSet::new(), at(1_003));
        assert_eq!(
            again.start,
            vec![Start {
                name: "setup".into(),
                init: true,
                attempt: 1
            }]
        );
        // When the app is done for good, the sidecar is stopped.
        let done = instance(&p, "app", 0, exited(0, 1_010));
        let finish = plan(
            &p,
            Some(&sb),
            &[side.clone(), done.clone()],
            &HashSet::new(),
            at(1_011),
        );
        assert_eq!(finish.stop, vec![side.id.clone()]);
        assert!(is_terminal(&p, &[side, done]));
    }

    #[test]
    fn ephemeral_containers_start_once_and_are_never_restarted() {
        let mut p = pod("Always", false);
        p.spec.as_mut().unwrap().ephemeral_containers = Some(vec![
            serde_json::from_value(
                json!({"name": "debugger", "image": "busybox", "targetContainerName": "app"}),
            )
            .unwrap(),
        ]);
        let sb = sandbox(0);
        let app = instance(
            &p,
            "app",
            0,
            InstanceState::Running {
                started_at: at(1_000),
            },
        );
        let first = plan(
            &p,
            Some(&sb),
            std::slice::from_ref(&app),
            &HashSet::new(),
            at(1_001),
        );
        assert_eq!(
            first.start,
            vec![Start {
                name: "debugger".into(),
                init: false,
                attempt: 0
            }]
        );
        assert_eq!(ephemeral_containers(&p)[0].1.as_deref(), Some("app"));
        let done = ContainerInstance {
            id: "debugger-0".into(),
            name: "debugger".into(),
            attempt: 0,
            sandbox_attempt: 0,
            image: "busybox".into(),
            image_id: String::new(),
            spec_hash: String::new(),
            state: exited(1, 1_002),
        };
        assert!(
            plan(&p, Some(&sb), &[app, done], &HashSet::new(), at(1_100))
                .start
                .is_empty()
        );
    }

    #[test]
    fn changed_specs_failed_liveness_and_dead_sandboxes_restart_containers() {
        let p = pod("Always", false);
        let sb = sandbox(0);
        let mut running = instance(
            &p,
            "app",
            0,
            InstanceState::Running {
                started_at: at(1_000),
            },
        );
        let unhealthy = HashSet::from(["app-0".to_string()]);
        assert_eq!(
            plan(&p, Some(&sb), &[running.clone()], &unhealthy, at(1_001)).stop,
            vec!["app-0".to_string()]
        );
        assert!(
            plan(
                &p,
                Some(&sb),
                &[running.clone()],
                &HashSet::new(),
                at(1_001)
            )
            .stop
            .is_empty()
        );
        running.spec_hash = "other".into();
        assert_eq!(
            plan(
                &p,
                Some(&sb),
                &[running.clone()],
                &HashSet::new(),
                at(1_001)
            )
            .stop
            .len(),
            1
        );
        let dead = Sandbox {
            running: false,
            ..sandbox(0)
        };
        let again = plan(
            &p,
            Some(&dead),
            &[running.clone()],
            &HashSet::new(),
            at(1_001),
        );
        assert_eq!(again.create_sandbox, Some(1));
        assert_eq!(again.stop, vec!["app-0".to_string()]);
        // In the new sandbox the old instance's exit restarts it at once.
        let stopped = instance(&p, "app", 0, exited(137, 1_001));
        let restart = plan(
            &p,
            Some(&sandbox(1)),
            &[stopped],
            &HashSet::new(),
            at(1_002),
        );
        assert_eq!(restart.start[0].attempt, 1);
    }
}
