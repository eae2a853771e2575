//! The scheduler: binds each pod without `spec.nodeName` to a node through `pods/binding`.
//! An API client on kube-rs reflectors (nodes, pods), never a storage reader.
//!
//! Each pass takes the node usage (requests, pod count, host ports) once from the pod cache,
//! then places the pending pods in priority order, charging each placement to its node, so a
//! pass costs O(pods + pending × nodes) rather than a rescan per pod. A pass runs whenever a
//! pod or node changes, so unschedulable pods are retried when the cluster changes.
//!
//! `filters` decide feasibility with upstream's reasons; `scores` rank feasible nodes.

pub mod filters;
pub mod resources;
pub mod scores;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use controllers::events::{EventRecorder, EventType};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::filters::NodeUsage;

/// The user the scheduler acts as.
pub const USER: &str = "system:kube-scheduler";
/// Its lease in `kube-system`.
pub const LEASE: &str = "kube-scheduler";
/// The scheduler name pods ask for by default.
pub const NAME: &str = "default-scheduler";

/// Where one pod goes, or why it cannot.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    Node(String),
    /// `0/N nodes are available: …` with upstream's reasons.
    Unschedulable(String),
}

/// Places one pod given the nodes and their usage.
pub fn place(pod: &Pod, nodes: &[Arc<Node>], usage: &BTreeMap<String, NodeUsage>) -> Placement {
    let empty = NodeUsage::default();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(i64, String)> = None;
    for node in nodes {
        let name = node.name_any();
        let used = usage.get(&name).unwrap_or(&empty);
        match filters::check(pod, node, used) {
            Err(why) => {
                for reason in why {
                    *reasons.entry(reason).or_default() += 1;
                }
            }
            Ok(()) => {
                let score = scores::score(pod, node, used);
                if best
                    .as_ref()
                    .is_none_or(|(s, n)| score > *s || (score == *s && name < *n))
                {
                    best = Some((score, name));
                }
            }
        }
    }
    match best {
        Some((_, node)) => Placement::Node(node),
        None => {
            let listed: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            let detail = if listed.is_empty() {
                String::new()
            } else {
                format!(" {}", listed.join(", "))
            };
            Placement::Unschedulable(format!("0/{} nodes are available:{detail}.", nodes.len()))
        }
    }
}

fn is_pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && spec
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == NAME)
        && spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_none_or(Vec::is_empty)
        && !has_finished(pod)
}

/// Succeeded or Failed: the pod neither needs a node nor uses one any more.
fn has_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The usage of every node by the pods bound to it.
pub fn usage_of(pods: &[Arc<Pod>]) -> BTreeMap<String, NodeUsage> {
    let mut usage: BTreeMap<String, NodeUsage> = BTreeMap::new();
    for pod in pods {
        let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        if !has_finished(pod) {
            usage.entry(node).or_default().add(pod);
        }
    }
    usage
}

struct Scheduler {
    client: kube::Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    recorder: EventRecorder,
    /// Pods bound in this process but maybe not yet seen through the watch.
    assumed: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Scheduler {
    async fn pass(&self) {
        let pods = self.pods.state();
        let mut nodes = self.nodes.state();
        nodes.sort_by_key(|n| n.name_any());
        let mut usage = usage_of(&pods);
        let mut pending: Vec<Arc<Pod>> = pods.iter().filter(|p| is_pending(p)).cloned().collect();
        {
            let mut assumed = self.assumed.lock().expect("assumed lock");
            assumed.retain(|uid, _| {
                pending
                    .iter()
                    .any(|p| p.uid().as_deref() == Some(uid.as_str()))
            });
            pending.retain(|p| match p.uid().and_then(|u| assumed.get(&u).cloned()) {
                Some(node) => {
                    usage.entry(node).or_default().add(p);
                    false
                }
                None => true,
            });
        }
        pending.sort_by_key(|p| {
            (
                -p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        for pod in pending {
            match place(&pod, &nodes, &usage) {
                Placement::Node(node) => {
                    if self.bind(&pod, &node).await {
                        usage.entry(node.clone()).or_default().add(&pod);
                        if let Some(uid) = pod.uid() {
                            self.assumed.lock().expect("assumed lock").insert(uid, node);
                        }
                    }
                }
                Placement::Unschedulable(message) => {
                    self.report_unschedulable(&pod, &message).await
                }
            }
        }
    }

    async fn bind(&self, pod: &Pod, node: &str) -> bool {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: pod.uid(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.to_owned()),
                api_version: Some("v1".into()),
                ..ObjectReference::default()
            },
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let created = api
            .create_subresource::<Binding, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await;
        match created {
            Ok(_) => {
                info!(pod = %format!("{namespace}/{name}"), node, "bound pod");
                self.event(
                    pod,
                    EventType::Normal,
                    "Scheduled",
                    format!("Successfully assigned {namespace}/{name} to {node}"),
                )
                .await;
                true
            }
            Err(e) => {
                warn!(pod = %name, node, error = %e, "binding failed");
                false
            }
        }
    }

    async fn report_unschedulable(&self, pod: &Pod, message: &str) {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message)) {
            return;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let condition = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": Timestamp::now().to_string()});
        let patch = json!({"status": {"conditions": [condition]}});
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            warn!(pod = %pod.name_any(), error = %e, "could not record why a pod is unschedulable");
        }
        self.event(
            pod,
            EventType::Warning,
            "FailedScheduling",
            message.to_owned(),
        )
        .await;
    }

    async fn event(&self, pod: &Pod, type_: EventType, reason: &str, note: String) {
        self.recorder
            .record(&pod.object_ref(&()), type_, reason, "Scheduling", note)
            .await;
    }
}

/// Runs the scheduler until its watches end.
pub async fn run(client: kube::Client, identity: String) -> anyhow::Result<()> {
    let wake = Arc::new(Notify::new());
    let (nodes, node_writer) = reflector::store();
    let (pods, pod_writer) = reflector::store();
    let node_wake = wake.clone();
    let node_watch = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer)
        .for_each(move |_| {
            node_wake.notify_one();
            futures::future::ready(())
        });
    let pod_wake = wake.clone();
    let pod_watch = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .for_each(move |_| {
            pod_wake.notify_one();
            futures::future::ready(())
        });
    let recorder = EventRecorder::new(client.clone(), NAME, &identity);
    let scheduler = Scheduler {
        client,
        nodes,
        pods,
        recorder,
        assumed: Default::default(),
    };
    let passes = async {
        scheduler.nodes.wait_until_ready().await.ok();
        scheduler.pods.wait_until_ready().await.ok();
        loop {
            scheduler.pass().await;
            // Changes arriving during a pass wake the next one; otherwise look again now
            // and then, for pods whose binding failed.
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    };
    tokio::select! {
        _ = node_watch => anyhow::bail!("node watch ended"),
        _ = pod_watch => anyhow::bail!("pod watch ended"),
        never = passes => never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::tests::{node, pod};

    #[test]
    fn a_thousand_pods_fit_onto_a_hundred_nodes_without_overcommitting() {
        let nodes: Vec<Arc<Node>> = (0..100)
            .map(|i| Arc::new(node(&format!("n{i:03}"), "4", "16Gi", "110")))
            .collect();
        let mut usage: BTreeMap<String, NodeUsage> = BTreeMap::new();
        for _ in 0..1000 {
            let p = pod("350m");
            match place(&p, &nodes, &usage) {
                Placement::Node(n) => usage.entry(n).or_default().add(&p),
                Placement::Unschedulable(m) => panic!("{m}"),
            }
        }
        for (name, u) in &usage {
            assert!(u.requested["cpu"] <= 4000, "{name} is overcommitted: {u:?}");
        }
        assert_eq!(usage.values().map(|u| u.pods).sum::<i64>(), 1000);
        // Spread: least-allocated scoring fills every node.
        assert_eq!(usage.len(), 100);
        // The 1,001st..1,100th pods fit (11 × 350m ≤ 4), the next ones do not.
        let p = pod("1");
        let Placement::Unschedulable(message) = place(&p, &nodes, &usage) else {
            panic!("a 1-CPU pod should not fit");
        };
        assert_eq!(message, "0/100 nodes are available: 100 Insufficient cpu.");
    }
}
