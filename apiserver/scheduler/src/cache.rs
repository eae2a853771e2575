//! What the scheduler knows of the cluster, kept up to date from the node and pod watches
//! one event at a time rather than rebuilt per pod: every node with the pods bound (or
//! assumed bound) to it and what they use. A pod is charged to its node when it is bound and
//! discharged when it finishes or is gone; pods bound to a node the cache has not seen yet
//! wait for it.
//!
//! Each change reports whether it may let unschedulable pods in (upstream's queueing
//! hints): a new node, a node whose labels, taints, allocatable or schedulability changed, a
//! pod that left a node.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use crate::filters::NodeUsage;
use crate::inter_pod_affinity::has_pod_affinity;

/// One node as the scheduler sees it: the node, the pods bound (or assumed bound) to it that
/// have not finished, and what they use.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<Arc<Pod>>,
    pub usage: NodeUsage,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        NodeInfo {
            node,
            pods: Vec::new(),
            usage: NodeUsage::default(),
        }
    }

    /// Charges a pod to this node.
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        self.usage.add(&pod);
        self.pods.push(pod);
    }

    /// Discharges the pod with `uid`, if it is here.
    fn remove_pod(&mut self, uid: &str) -> Option<Arc<Pod>> {
        let i = self
            .pods
            .iter()
            .position(|p| p.metadata.uid.as_deref() == Some(uid))?;
        let pod = self.pods.swap_remove(i);
        self.usage.remove(&pod);
        Some(pod)
    }

    pub fn name(&self) -> String {
        self.node.name_any()
    }
}

/// The node a pod is bound to, if it is bound and still uses it (not finished).
pub fn bound_node(pod: &Pod) -> Option<&str> {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    if finished {
        return None;
    }
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Nodes in name order with their pods.
#[derive(Default)]
pub struct ClusterCache {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    /// Pods bound to nodes not (yet) known, by node name.
    waiting: HashMap<String, Vec<Arc<Pod>>>,
    /// Where each charged pod is: uid → node name.
    charged: HashMap<String, String>,
    /// How many charged pods carry pod affinity or anti-affinity terms (when none does, a
    /// pod without its own terms needs no inter-pod affinity check).
    with_pod_affinity: usize,
    /// Pending pods nominated to a node by preemption, by node name.
    nominated: HashMap<String, Vec<Arc<Pod>>>,
    /// uid → the node it is nominated to.
    nominated_to: HashMap<String, String>,
}

/// The node a pending pod was nominated to, if any.
fn nominated_node(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl ClusterCache {
    /// The nodes in name order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|i| &self.nodes[*i])
    }

    fn reindex(&mut self) {
        self.by_name = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name(), i))
            .collect();
    }

    /// Adds or updates a node; true if pods that did not fit before might fit now.
    pub fn apply_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.name_any();
        if let Some(i) = self.by_name.get(&name).copied() {
            let relevant = scheduling_view(&self.nodes[i].node) != scheduling_view(&node);
            self.nodes[i].node = node;
            return relevant;
        }
        let mut info = NodeInfo::new(node);
        for pod in self.waiting.remove(&name).unwrap_or_default() {
            info.add_pod(pod);
        }
        let at = self.nodes.partition_point(|n| n.name() < name);
        self.nodes.insert(at, info);
        self.reindex();
        true
    }

    /// Forgets a node; its pods wait for a node of that name to come back.
    pub fn delete_node(&mut self, name: &str) {
        let Some(i) = self.by_name.get(name).copied() else {
            return;
        };
        let info = self.nodes.remove(i);
        self.waiting.insert(name.to_owned(), info.pods);
        self.reindex();
    }

    /// Discharges the pod with `uid` from wherever it is charged; true if it was.
    fn discharge(&mut self, uid: &str) -> bool {
        let Some(node) = self.charged.remove(uid) else {
            return false;
        };
        let removed = match self.by_name.get(&node).copied() {
            Some(i) => self.nodes[i].remove_pod(uid),
            None => {
                let list = self.waiting.entry(node.clone()).or_default();
                let pod = list
                    .iter()
                    .position(|p| p.metadata.uid.as_deref() == Some(uid))
                    .map(|i| list.swap_remove(i));
                if list.is_empty() {
                    self.waiting.remove(&node);
                }
                pod
            }
        };
        if removed.is_some_and(|p| has_pod_affinity(&p)) {
            self.with_pod_affinity = self.with_pod_affinity.saturating_sub(1);
        }
        true
    }

    /// Whether any charged pod has pod affinity or anti-affinity terms.
    pub fn pod_affinity_in_use(&self) -> bool {
        self.with_pod_affinity > 0
    }

    fn charge(&mut self, uid: String, node: &str, pod: Arc<Pod>) {
        if has_pod_affinity(&pod) {
            self.with_pod_affinity += 1;
        }
        match self.by_name.get(node).copied() {
            Some(i) => self.nodes[i].add_pod(pod),
            None => self.waiting.entry(node.to_owned()).or_default().push(pod),
        }
        self.charged.insert(uid, node.to_owned());
    }

    /// Pending pods nominated to `node` (preemptors waiting for their victims to go).
    pub fn nominated_on(&self, node: &str) -> &[Arc<Pod>] {
        self.nominated
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn unnominate(&mut self, uid: &str) {
        if let Some(node) = self.nominated_to.remove(uid)
            && let Some(list) = self.nominated.get_mut(&node)
        {
            list.retain(|p| p.metadata.uid.as_deref() != Some(uid));
            if list.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }

    /// Records a pod as it now is; true if it left a node (room or a spread changed).
    pub fn apply_pod(&mut self, pod: Arc<Pod>) -> bool {
        let Some(uid) = pod.metadata.uid.clone() else {
            return false;
        };
        self.unnominate(&uid);
        if bound_node(&pod).is_none()
            && pod.metadata.deletion_timestamp.is_none()
            && let Some(node) = nominated_node(&pod)
        {
            self.nominated_to.insert(uid.clone(), node.to_owned());
            self.nominated
                .entry(node.to_owned())
                .or_default()
                .push(pod.clone());
        }
        let was = self.discharge(&uid);
        match bound_node(&pod).map(str::to_owned) {
            Some(node) => {
                self.charge(uid, &node, pod);
                false
            }
            None => was,
        }
    }

    /// Forgets a deleted pod; true if it held a node.
    pub fn delete_pod(&mut self, pod: &Pod) -> bool {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return false;
        };
        self.unnominate(uid);
        self.discharge(uid)
    }

    /// Charges a pod to `node` as soon as it is bound, before the watch shows it, so the
    /// next placements see the room it takes.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut bound = pod.clone();
        bound.spec.get_or_insert_default().node_name = Some(node.to_owned());
        self.unnominate(&uid);
        self.discharge(&uid);
        self.charge(uid, node, Arc::new(bound));
    }

    /// Undoes `assume` for a binding that failed.
    pub fn forget(&mut self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            self.discharge(uid);
        }
    }

    /// Starts over, for a relist.
    pub fn clear_pods(&mut self) {
        for n in &mut self.nodes {
            n.pods.clear();
            n.usage = NodeUsage::default();
        }
        self.waiting.clear();
        self.charged.clear();
        self.with_pod_affinity = 0;
        self.nominated.clear();
        self.nominated_to.clear();
    }
}

/// The parts of a node that decide where pods fit (not its heartbeats).
fn scheduling_view(node: &Node) -> impl PartialEq + '_ {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    (
        node.metadata.labels.as_ref(),
        spec.and_then(|s| s.taints.as_ref()),
        spec.and_then(|s| s.unschedulable),
        status.and_then(|s| s.allocatable.as_ref()),
        status.and_then(|s| s.capacity.as_ref()),
        status.and_then(|s| s.images.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::tests::{node, pod};

    fn named(mut p: Pod, name: &str, node: Option<&str>) -> Arc<Pod> {
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.spec.get_or_insert_default().node_name = node.map(Into::into);
        Arc::new(p)
    }

    #[test]
    fn pods_are_charged_to_their_node_and_discharged_when_they_leave() {
        let mut cache = ClusterCache::default();
        assert!(cache.apply_node(Arc::new(node("b", "4", "8Gi", "110"))));
        assert!(cache.apply_node(Arc::new(node("a", "4", "8Gi", "110"))));
        let names: Vec<String> = cache.nodes().iter().map(NodeInfo::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(!cache.apply_pod(named(pod("1"), "p", Some("a"))));
        assert_eq!(cache.node("a").unwrap().usage.requested["cpu"], 1000);
        // Finished: it no longer takes room.
        let mut done = (*named(pod("1"), "p", Some("a"))).clone();
        done.status.get_or_insert_default().phase = Some("Succeeded".into());
        assert!(cache.apply_pod(Arc::new(done)));
        assert_eq!(cache.node("a").unwrap().usage.requested["cpu"], 0);
        assert!(cache.node("a").unwrap().pods.is_empty());
    }

    #[test]
    fn assumed_pods_count_until_the_watch_confirms_or_the_binding_fails() {
        let mut cache = ClusterCache::default();
        cache.apply_node(Arc::new(node("a", "4", "8Gi", "110")));
        let p = named(pod("2"), "p", None);
        cache.assume(&p, "a");
        assert_eq!(cache.node("a").unwrap().usage.pods, 1);
        // The watch shows it bound: still charged once.
        cache.apply_pod(named(pod("2"), "p", Some("a")));
        assert_eq!(cache.node("a").unwrap().usage.pods, 1);
        cache.forget(&p);
        assert_eq!(cache.node("a").unwrap().usage.pods, 0);
    }

    #[test]
    fn pods_on_an_unknown_node_wait_for_it() {
        let mut cache = ClusterCache::default();
        cache.apply_pod(named(pod("1"), "p", Some("late")));
        cache.apply_node(Arc::new(node("late", "4", "8Gi", "110")));
        assert_eq!(cache.node("late").unwrap().usage.pods, 1);
        cache.delete_node("late");
        assert!(cache.node("late").is_none());
        cache.apply_node(Arc::new(node("late", "4", "8Gi", "110")));
        assert_eq!(cache.node("late").unwrap().usage.pods, 1);
    }

    #[test]
    fn nominated_pods_are_listed_on_their_node_until_bound_or_gone() {
        let mut cache = ClusterCache::default();
        cache.apply_node(Arc::new(node("a", "4", "8Gi", "110")));
        let mut waiting = (*named(pod("3"), "p", None)).clone();
        waiting.status.get_or_insert_default().nominated_node_name = Some("a".into());
        cache.apply_pod(Arc::new(waiting.clone()));
        assert_eq!(cache.nominated_on("a").len(), 1);
        // Nominated pods take no room until bound.
        assert_eq!(cache.node("a").unwrap().usage.pods, 0);
        cache.assume(&waiting, "a");
        assert!(cache.nominated_on("a").is_empty());
        cache.apply_pod(Arc::new(waiting.clone()));
        assert_eq!(cache.nominated_on("a").len(), 1);
        cache.delete_pod(&waiting);
        assert!(cache.nominated_on("a").is_empty());
    }

    #[test]
    fn heartbeats_do_not_count_as_scheduling_changes() {
        let mut cache = ClusterCache::default();
        let n = node("a", "4", "8Gi", "110");
        cache.apply_node(Arc::new(n.clone()));
        let mut beat = n.clone();
        beat.metadata.resource_version = Some("2".into());
        assert!(!cache.apply_node(Arc::new(beat.clone())));
        beat.spec.get_or_insert_default().unschedulable = Some(true);
        assert!(cache.apply_node(Arc::new(beat)));
    }
}
