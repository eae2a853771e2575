//! A test double of the kubelet's status reporting, until the node agent exists: every pod
//! bound to a node is marked Running and Ready through `pods/status`, as a kubelet would once
//! its containers start. Runs until dropped.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// Marks bound pods Ready while alive.
pub struct PodStatusDouble {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodStatusDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodStatusDouble {
    pub fn start(client: kube::Client) -> PodStatusDouble {
        let pods: Api<Pod> = Api::all(client.clone());
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
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if !bound || ready || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let now = jiff::Timestamp::now().to_string();
                let patch = json!({"status": {
                    "phase": "Running",
                    "podIP": "10.244.0.10",
                    "startTime": now,
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    ],
                }});
                let api: Api<Pod> =
                    Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                let _ = api
                    .patch_status(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
            }
        });
        PodStatusDouble { task }
    }
}
