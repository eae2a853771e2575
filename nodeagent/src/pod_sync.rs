//! Pod sync: the agent watches the pods bound to its node, converges the runtime to each one,
//! and reports what runs through `pods/status` with the kubelet's phase, conditions, addresses
//! and container statuses. A deleted pod's containers are killed, and after a relist the
//! runtime's pods that the API no longer has are killed too (no orphans).
//!
//! `pod_status` is the pure report; `run` drives the watch.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState as ApiContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tracing::warn;

use crate::runtime::{ContainerPhase, ContainerRuntime, PodRuntimeStatus};

fn since(pod: &Pod, type_: &str, status: &str, now: Timestamp) -> Time {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now))
}

/// The status the kubelet reports for `pod` running as `running` on a node at `host_ip`.
pub fn pod_status(
    pod: &Pod,
    running: &PodRuntimeStatus,
    host_ip: IpAddr,
    now: Timestamp,
) -> PodStatus {
    let statuses: Vec<ContainerStatus> = running
        .containers
        .iter()
        .map(|c| {
            let (state, ready, started) = match &c.phase {
                ContainerPhase::Running { started_at } => (
                    ApiContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(*started_at)),
                        }),
                        ..ApiContainerState::default()
                    },
                    true,
                    true,
                ),
                ContainerPhase::Exited {
                    exit_code,
                    reason,
                    started_at,
                    finished_at,
                } => (
                    ApiContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: *exit_code,
                            reason: Some(reason.clone()),
                            started_at: Some(Time(*started_at)),
                            finished_at: Some(Time(*finished_at)),
                            container_id: Some(c.container_id.clone()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ApiContainerState::default()
                    },
                    false,
                    false,
                ),
            };
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone(),
                image_id: c.image_id.clone(),
                container_id: Some(c.container_id.clone()),
                ready,
                started: Some(started),
                restart_count: c.restart_count,
                state: Some(state),
                ..ContainerStatus::default()
            }
        })
        .collect();
    let all_running = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let all_exited = !statuses.is_empty()
        && statuses
            .iter()
            .all(|s| s.state.as_ref().is_some_and(|st| st.terminated.is_some()));
    let phase = if all_exited {
        let failed = statuses.iter().any(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
        });
        if failed { "Failed" } else { "Succeeded" }
    } else {
        "Running"
    };
    let ready = if all_running { "True" } else { "False" };
    let condition = |type_: &str, status: &str| PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(since(pod, type_, status, now)),
        ..PodCondition::default()
    };
    PodStatus {
        phase: Some(phase.into()),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: Some(running.ip.clone()),
        pod_ips: Some(vec![PodIP {
            ip: running.ip.clone(),
        }]),
        start_time: Some(Time(running.started_at)),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", "True"),
            condition("Initialized", "True"),
            condition("Ready", ready),
            condition("ContainersReady", ready),
            condition("PodScheduled", "True"),
        ]),
        container_statuses: Some(statuses),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        ..PodStatus::default()
    }
}

/// What a status says, as far as the agent reports it (so fields others add to the stored
/// status never make it write again).
fn reported(status: &PodStatus) -> serde_json::Value {
    let conditions: Vec<(String, String)> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    let containers: Vec<serde_json::Value> = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| {
            json!([
                c.name,
                c.ready,
                c.restart_count,
                c.container_id,
                c.state.as_ref().map(|s| (
                    s.running.is_some(),
                    s.terminated.as_ref().map(|t| t.exit_code)
                ))
            ])
        })
        .collect();
    json!([
        status.phase,
        status.pod_ip,
        status.host_ip,
        conditions,
        containers
    ])
}

/// Whether the pod's reported status differs from `wanted`.
fn differs(pod: &Pod, wanted: &PodStatus) -> bool {
    pod.status.as_ref().map(reported) != Some(reported(wanted))
}

/// Syncs the pods bound to `node` until the watch ends.
pub async fn run<R: ContainerRuntime>(
    client: kube::Client,
    runtime: Arc<R>,
    node: String,
    host_ip: IpAddr,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                if let Some(uid) = pod.uid() {
                    listed.insert(uid);
                }
                sync_one(&client, runtime.as_ref(), &pod, host_ip).await;
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.uid() {
                    listed.remove(&uid);
                    if let Err(e) = runtime.kill_pod(&uid).await {
                        warn!(pod = %pod.name_any(), error = %e, "killing a deleted pod failed");
                    }
                }
            }
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitDone => {
                // What the runtime holds that the API no longer has goes.
                for uid in runtime.pod_uids().await.unwrap_or_default() {
                    if !listed.contains(&uid)
                        && let Err(e) = runtime.kill_pod(&uid).await
                    {
                        warn!(uid, error = %e, "killing an orphaned pod failed");
                    }
                }
            }
        }
    }
    anyhow::bail!("pod watch ended")
}

async fn sync_one<R: ContainerRuntime>(
    client: &kube::Client,
    runtime: &R,
    pod: &Pod,
    host_ip: IpAddr,
) {
    let Some(uid) = pod.uid() else {
        return;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        if let Err(e) = runtime.kill_pod(&uid).await {
            warn!(pod = %pod.name_any(), error = %e, "stopping a deleted pod failed");
        }
        return;
    }
    let running = match runtime.sync_pod(pod).await {
        Ok(r) => r,
        Err(e) => {
            warn!(pod = %pod.name_any(), error = %e, "syncing a pod failed");
            return;
        }
    };
    let wanted = pod_status(pod, &running, host_ip, Timestamp::now());
    if !differs(pod, &wanted) {
        return;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"status": wanted});
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        warn!(pod = %pod.name_any(), error = %e, "reporting pod status failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerState;

    fn running(now: Timestamp) -> PodRuntimeStatus {
        PodRuntimeStatus {
            ip: "10.88.0.2".into(),
            started_at: now,
            containers: vec![ContainerState {
                name: "app".into(),
                image: "busybox".into(),
                image_id: "simulated://busybox".into(),
                container_id: "simulated://x-0".into(),
                restart_count: 0,
                phase: ContainerPhase::Running { started_at: now },
            }],
        }
    }

    #[test]
    fn a_running_pod_is_ready_with_its_addresses() {
        let now = Timestamp::from_second(1_000).unwrap();
        let s = pod_status(
            &Pod::default(),
            &running(now),
            "127.0.0.1".parse().unwrap(),
            now,
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.2"));
        assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready);
        assert!(c.state.as_ref().unwrap().running.is_some());
        // Reported again later, nothing changes: no write.
        let reported = Pod {
            status: Some(s.clone()),
            ..Pod::default()
        };
        let later = Timestamp::from_second(2_000).unwrap();
        let again = pod_status(
            &reported,
            &running(now),
            "127.0.0.1".parse().unwrap(),
            later,
        );
        assert!(!differs(&reported, &again));
    }

    #[test]
    fn exited_containers_end_the_pod_by_their_exit_codes() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut r = running(now);
        r.containers[0].phase = ContainerPhase::Exited {
            exit_code: 1,
            reason: "Error".into(),
            started_at: now,
            finished_at: now,
        };
        let s = pod_status(&Pod::default(), &r, "127.0.0.1".parse().unwrap(), now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        r.containers[0].phase = ContainerPhase::Exited {
            exit_code: 0,
            reason: "Completed".into(),
            started_at: now,
            finished_at: now,
        };
        let s = pod_status(&Pod::default(), &r, "127.0.0.1".parse().unwrap(), now);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    }
}
