//! The status the agent reports for a pod, from what the runtime holds and what the plan
//! says containers wait for: the kubelet's phase rules, its conditions (with reasons and
//! messages), container statuses with state and lastState, and the pod's addresses.
//! `differs` tells whether a report would change what is stored, so unchanged pods cost no
//! write.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::pod_actions::{Waiting, latest};
use crate::runtime::{ContainerInstance, InstanceState, Sandbox};

/// What the agent knows of a pod besides its spec.
pub struct Observed<'a> {
    pub sandbox: Option<&'a Sandbox>,
    pub instances: &'a [ContainerInstance],
    pub waiting: &'a HashMap<String, Waiting>,
    /// Readiness by instance id, for containers with a readiness probe (absent: not yet known).
    pub readiness: &'a HashMap<String, bool>,
    pub host_ip: IpAddr,
    pub now: Timestamp,
}

fn terminated(i: &ContainerInstance) -> Option<ContainerStateTerminated> {
    match &i.state {
        InstanceState::Exited {
            exit_code,
            reason,
            message,
            started_at,
            finished_at,
        } => Some(ContainerStateTerminated {
            exit_code: *exit_code,
            reason: Some(reason.clone()),
            message: message.clone(),
            started_at: Some(Time(*started_at)),
            finished_at: Some(Time(*finished_at)),
            container_id: Some(i.id.clone()),
            ..ContainerStateTerminated::default()
        }),
        _ => None,
    }
}

fn waiting_state(w: &Waiting) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.reason.clone()),
            message: w.message.clone(),
        }),
        ..ContainerState::default()
    }
}

fn container_status(c: &Container, seen: &Observed<'_>, init: bool) -> ContainerStatus {
    let (newest, previous) = latest(seen.instances, &c.name);
    let image = c.image.clone().unwrap_or_default();
    let mut status = ContainerStatus {
        name: c.name.clone(),
        image: image.clone(),
        image_id: String::new(),
        ready: false,
        started: Some(false),
        restart_count: newest.map_or(0, |i| i.attempt as i32),
        ..ContainerStatus::default()
    };
    let Some(i) = newest else {
        let w = seen
            .waiting
            .get(&c.name)
            .cloned()
            .unwrap_or_else(|| Waiting::new("ContainerCreating", None));
        status.state = Some(waiting_state(&w));
        return status;
    };
    status.image_id = i.image_id.clone();
    status.container_id = Some(i.id.clone());
    match &i.state {
        InstanceState::Running { started_at } => {
            status.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..ContainerState::default()
            });
            status.started = Some(true);
            status.ready = if init && !crate::pod_actions::is_sidecar(c) {
                false
            } else if c.readiness_probe.is_some() {
                seen.readiness.get(&i.id).copied().unwrap_or(false)
            } else {
                true
            };
            status.last_state = previous.and_then(terminated).map(|t| ContainerState {
                terminated: Some(t),
                ..ContainerState::default()
            });
        }
        InstanceState::Exited { .. } => {
            let t = terminated(i).expect("exited");
            if let Some(w) = seen.waiting.get(&c.name) {
                // Waiting to restart: the exit is the last state.
                status.state = Some(waiting_state(w));
                status.last_state = Some(ContainerState {
                    terminated: Some(t),
                    ..ContainerState::default()
                });
            } else {
                // An init container that completed counts as ready, as upstream reports it.
                status.ready = init && t.exit_code == 0;
                status.state = Some(ContainerState {
                    terminated: Some(t),
                    ..ContainerState::default()
                });
                status.last_state = previous.and_then(terminated).map(|t| ContainerState {
                    terminated: Some(t),
                    ..ContainerState::default()
                });
            }
        }
        InstanceState::Created => {
            status.state = Some(waiting_state(
                seen.waiting
                    .get(&c.name)
                    .unwrap_or(&Waiting::new("ContainerCreating", None)),
            ));
        }
    }
    if status.last_state.is_none() {
        status.last_state = Some(ContainerState::default());
    }
    status
}

/// The kubelet's phase from container statuses (`getPhase`).
fn phase(pod: &Pod, init: &[ContainerStatus], app: &[ContainerStatus]) -> &'static str {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let term = |s: &ContainerStatus| s.state.as_ref().and_then(|st| st.terminated.clone());
    let last_term = |s: &ContainerStatus| {
        s.last_state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some()
    };
    // Init containers: any not yet successful keeps the pod pending (or fails it); a
    // sidecar counts once it runs, and its ending fails nothing.
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| crate::pod_actions::is_sidecar(c))
        .map(|c| c.name.as_str())
        .collect();
    for s in init {
        if sidecars.contains(&s.name.as_str()) {
            if s.started == Some(true)
                || s.last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .is_some()
                || term(s).is_some()
            {
                continue;
            }
            return "Pending";
        }
        match term(s) {
            Some(t) if t.exit_code == 0 => {}
            Some(_) if policy == "Never" => return "Failed",
            _ => return "Pending",
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in app {
        let st = s.state.as_ref();
        if st.and_then(|x| x.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = term(s) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if last_term(s) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    why: Option<(&str, String)>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // The transition time stays while the status does.
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let (reason, message) = match why {
        Some((r, m)) if !ok => (Some(r.to_owned()), Some(m)),
        _ => (None, None),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(since),
        reason,
        message,
        ..PodCondition::default()
    }
}

/// The status the agent reports for `pod`.
pub fn pod_status(pod: &Pod, seen: &Observed<'_>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, seen, true))
        .collect();
    let app: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, seen, false))
        .collect();
    let ephemeral: Vec<ContainerStatus> = crate::pod_actions::ephemeral_containers(pod)
        .iter()
        .map(|(c, _)| {
            let mut status = container_status(c, seen, false);
            // Ephemeral containers are never ready (they take no part in serving).
            status.ready = false;
            status
        })
        .collect();
    let phase = phase(pod, &init, &app);
    let names = |list: &[ContainerStatus], pick: &dyn Fn(&ContainerStatus) -> bool| {
        list.iter()
            .filter(|s| pick(s))
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    let sidecar = |name: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name && crate::pod_actions::is_sidecar(c))
    };
    let uninitialized = names(&init, &|s| {
        if sidecar(&s.name) {
            return s.started != Some(true);
        }
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_none_or(|t| t.exit_code != 0)
    });
    // Sidecars count for readiness beside the app containers.
    let mut unready = names(&init, &|s| sidecar(&s.name) && !s.ready);
    unready.extend(names(&app, &|s| !s.ready));
    let terminal = phase == "Succeeded" || phase == "Failed";
    let sandbox_ready = seen.sandbox.is_some_and(|s| s.running) && !terminal;
    let initialized = uninitialized.is_empty();
    let containers_ready = unready.is_empty() && !terminal;
    let ready_why = if terminal {
        Some(("PodCompleted", String::new()))
    } else {
        Some((
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        ))
    };
    let init_why = if terminal && initialized {
        None
    } else {
        Some((
            "ContainersNotInitialized",
            format!(
                "containers with incomplete status: [{}]",
                uninitialized.join(" ")
            ),
        ))
    };
    let now = seen.now;
    let mut conditions = vec![
        condition(pod, "PodReadyToStartContainers", sandbox_ready, None, now),
        condition(pod, "Initialized", initialized, init_why, now),
        condition(pod, "Ready", containers_ready, ready_why.clone(), now),
        condition(pod, "ContainersReady", containers_ready, ready_why, now),
    ];
    // Conditions others own (PodScheduled, DisruptionTarget, readiness gates) stay as they are.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ];
    let mut others: Vec<PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !ours.contains(&c.type_.as_str()))
        .collect();
    if !others.iter().any(|c| c.type_ == "PodScheduled") {
        others.push(condition(pod, "PodScheduled", true, None, now));
    }
    conditions.extend(others);
    let pod_ip = seen
        .sandbox
        .map(|s| {
            if s.ip.is_empty() {
                seen.host_ip.to_string()
            } else {
                s.ip.clone()
            }
        })
        .filter(|_| !terminal || seen.sandbox.is_some());
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or(Time(seen.sandbox.map_or(now, |s| s.created_at)));
    PodStatus {
        phase: Some(phase.into()),
        host_ip: Some(seen.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: seen.host_ip.to_string(),
        }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(start_time),
        conditions: Some(conditions),
        init_container_statuses: (!init.is_empty()).then_some(init),
        ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
        container_statuses: Some(app),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        nominated_node_name: pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone()),
        ..PodStatus::default()
    }
}

/// What a status says, as far as the agent reports it (fields others add never make it
/// write again, and transition times alone do not either).
fn reported(status: &PodStatus) -> serde_json::Value {
    let conditions: Vec<(String, String, Option<String>)> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone(), c.message.clone()))
        .collect();
    let containers = |list: &Option<Vec<ContainerStatus>>| -> Vec<serde_json::Value> {
        list.iter()
            .flatten()
            .map(|c| {
                json!([
                    c.name,
                    c.ready,
                    c.started,
                    c.restart_count,
                    c.container_id,
                    c.image_id,
                    c.state,
                    c.last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref().map(|t| &t.container_id)),
                ])
            })
            .collect()
    };
    json!([
        status.phase,
        status.pod_ip,
        status.host_ip,
        conditions,
        containers(&status.init_container_statuses),
        containers(&status.container_statuses),
        containers(&status.ephemeral_container_statuses),
    ])
}

/// Whether the pod's stored status differs from `wanted`.
pub fn differs(pod: &Pod, wanted: &PodStatus) -> bool {
    pod.status.as_ref().map(reported) != Some(reported(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "app", "image": "busybox"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap()
    }

    fn sandbox() -> Sandbox {
        Sandbox {
            id: "sb".into(),
            ip: "172.17.0.2".into(),
            created_at: Timestamp::from_second(900).unwrap(),
            running: true,
            attempt: 0,
        }
    }

    fn instance(attempt: u32, state: InstanceState) -> ContainerInstance {
        ContainerInstance {
            id: format!("docker://c{attempt}"),
            name: "app".into(),
            attempt,
            sandbox_attempt: 0,
            image: "busybox".into(),
            image_id: "docker://sha256:1".into(),
            spec_hash: String::new(),
            state,
        }
    }

    fn exited(code: i32) -> InstanceState {
        InstanceState::Exited {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Timestamp::from_second(1_000).unwrap(),
            finished_at: Timestamp::from_second(1_001).unwrap(),
        }
    }

    fn status(
        p: &Pod,
        instances: &[ContainerInstance],
        waiting: HashMap<String, Waiting>,
    ) -> PodStatus {
        let sb = sandbox();
        pod_status(
            p,
            &Observed {
                sandbox: Some(&sb),
                instances,
                waiting: &waiting,
                readiness: &HashMap::new(),
                host_ip: "127.0.0.1".parse().unwrap(),
                now: Timestamp::from_second(2_000).unwrap(),
            },
        )
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn a_running_pod_is_ready_with_its_addresses_and_unchanged_reports_write_nothing() {
        let p = pod("Always");
        let s = status(
            &p,
            &[instance(
                0,
                InstanceState::Running {
                    started_at: Timestamp::from_second(1_000).unwrap(),
                },
            )],
            HashMap::new(),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("172.17.0.2"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.container_id.as_deref(), Some("docker://c0"));
        let stored = Pod {
            status: Some(s.clone()),
            ..p
        };
        let again = status(
            &stored,
            &[instance(
                0,
                InstanceState::Running {
                    started_at: Timestamp::from_second(1_000).unwrap(),
                },
            )],
            HashMap::new(),
        );
        assert!(!differs(&stored, &again));
    }

    #[test]
    fn a_crash_looping_container_waits_with_its_last_exit() {
        let p = pod("Always");
        let waiting = HashMap::from([(
            "app".to_string(),
            Waiting::new("CrashLoopBackOff", Some("back-off 10s".into())),
        )]);
        let s = status(
            &p,
            &[instance(0, exited(1)), instance(1, exited(1))],
            waiting,
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 1);
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
        let ready = cond(&s, "Ready");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [app]")
        );
    }

    #[test]
    fn phases_follow_exits_and_the_restart_policy() {
        assert_eq!(
            status(&pod("Never"), &[instance(0, exited(1))], HashMap::new())
                .phase
                .as_deref(),
            Some("Failed")
        );
        assert_eq!(
            status(&pod("Never"), &[instance(0, exited(0))], HashMap::new())
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            status(&pod("OnFailure"), &[instance(0, exited(0))], HashMap::new())
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        let creating = status(&pod("Always"), &[], HashMap::new());
        assert_eq!(creating.phase.as_deref(), Some("Pending"));
        let c = &creating.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
    }
}
