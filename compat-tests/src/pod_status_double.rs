//! A test double of the kubelet's status reporting, until the node agent exists: every pod
//! newly bound to a node is started, as a kubelet would report it, through `pods/status`.
//!
//! - It gets its own pod IP (10.244.x.y, one per pod) and turns Running and Ready.
//! - A pod that would end on its own (restartPolicy Never or OnFailure) whose first
//!   container's command line ends in `exit N` finishes instead: Succeeded with exit code 0,
//!   Failed otherwise (OnFailure pods with a failing command are left Running, as a kubelet
//!   would keep restarting them).
//!
//! Each pod is started once, so what the control plane later writes (a node controller
//! marking it not Ready) stays. A bound pod marked for graceful deletion is deleted for good
//! at once, as a kubelet does once its containers have stopped. Runs until dropped.

use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

/// Marks bound pods Ready (or finished) while alive.
pub struct PodStatusDouble {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodStatusDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The exit code a pod's first container would end with, if it ends on its own.
fn exit_code(pod: &Pod) -> Option<i32> {
    let spec = pod.spec.as_ref()?;
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if policy == "Always" {
        return None;
    }
    let container = spec.containers.first()?;
    let line = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let code: i32 = line.trim().strip_prefix("exit ").map_or_else(
        || {
            line.rsplit_once(" exit ")
                .and_then(|(_, n)| n.trim().parse().ok())
        },
        |n| n.trim().parse().ok(),
    )?;
    (code == 0 || policy == "Never").then_some(code)
}

fn started(pod: &Pod, ip: &str, now: &str) -> Value {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.as_str())
        .collect();
    if let Some(code) = exit_code(pod) {
        let (phase, reason) = if code == 0 {
            ("Succeeded", "Completed")
        } else {
            ("Failed", "Error")
        };
        let statuses: Vec<Value> = names
            .iter()
            .map(|n| {
                json!({"name": n, "image": "", "imageID": "", "ready": false,
                            "restartCount": 0, "started": false,
                            "state": {"terminated": {"exitCode": code, "reason": reason,
                                                     "startedAt": now, "finishedAt": now}}})
            })
            .collect();
        let condition_reason = if code == 0 {
            "PodCompleted"
        } else {
            "PodFailed"
        };
        return json!({"status": {
            "phase": phase,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "containerStatuses": statuses,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "reason": condition_reason,
                 "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "reason": condition_reason,
                 "lastTransitionTime": now},
            ],
        }});
    }
    json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ],
    }})
}

impl PodStatusDouble {
    pub fn start(client: kube::Client) -> PodStatusDouble {
        let pods: Api<Pod> = Api::all(client.clone());
        let next_ip = AtomicU32::new(10);
        let task = tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(pod)) = stream.next().await {
                let bound = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                let pending = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_none_or(|p| p == "Pending");
                if bound && pod.metadata.deletion_timestamp.is_some() {
                    let api: Api<Pod> =
                        Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                    let params = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: pod.uid(),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    let _ = api.delete(&pod.name_any(), &params).await;
                    continue;
                }
                if !bound || !pending {
                    continue;
                }
                let n = next_ip.fetch_add(1, Ordering::Relaxed);
                let ip = format!("10.244.{}.{}", n / 250, n % 250);
                let now = jiff::Timestamp::now().to_string();
                let api: Api<Pod> =
                    Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                let _ = api
                    .patch_status(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&started(&pod, &ip, &now)),
                    )
                    .await;
            }
        });
        PodStatusDouble { task }
    }
}
