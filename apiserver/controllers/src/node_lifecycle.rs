//! The node lifecycle controller: judges node health from heartbeats, taints nodes by their
//! conditions, and evicts pods from nodes tainted `NoExecute` once their tolerations run out.
//!
//! - Health: a node's heartbeats are its Lease in `kube-node-lease` and its Ready condition's
//!   `lastHeartbeatTime`. When neither has changed for the grace period (as this controller
//!   observed them, so clocks need not agree), the node's Ready, MemoryPressure, DiskPressure
//!   and PIDPressure conditions turn Unknown and its pods are marked not Ready.
//! - Taints: `node.kubernetes.io/not-ready` (Ready False) and `unreachable` (Ready Unknown)
//!   as NoSchedule and NoExecute, and the NoSchedule taints for memory, disk and PID pressure,
//!   network unavailability and `spec.unschedulable`. Other taints are left as they are.
//! - Eviction: a pod bound to a node with NoExecute taints is deleted at once if it does not
//!   tolerate one of them, or when its shortest matching `tolerationSeconds` has passed since
//!   the taint was added; a toleration without seconds keeps it forever.
//! - Disruption: when every node of a zone is not Ready (and so in every zone), the fault is
//!   more likely the control plane's view than the nodes: NoExecute taints are withheld and
//!   removed, and nothing is evicted. Zones with most nodes down (over 55%, more than two)
//!   get no new NoExecute taints in small clusters; otherwise one node per zone is tainted
//!   per ten seconds (upstream's eviction rate of 0.1 per second).
//!
//! The decisions (`judge`, `condition_taints`, `merged_taints`, `eviction_due`,
//! `zone_state`) are pure; `run` ticks every monitor period and applies them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::ControllerContext;
use crate::api_errors::is_status;
use crate::events::{EventRecorder, EventType};
use crate::informers::{Informer, synced};
use crate::node_fit::tolerates;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Upstream's `--unhealthy-zone-threshold` and `--large-cluster-size-threshold`.
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
const LARGE_CLUSTER: usize = 50;
/// Upstream's `--node-eviction-rate`: one node per zone per ten seconds.
const TAINT_INTERVAL: Duration = Duration::from_secs(10);

/// The condition-driven taints this controller owns, by condition type and status.
const CONDITION_TAINTS: [(&str, &str, &str); 5] = [
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("Ready", "False", NOT_READY),
];

/// The conditions turned Unknown when a node stops reporting.
const REPORTED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// How node health is judged.
#[derive(Debug, Clone)]
pub struct NodeMonitor {
    /// How long a node may go without a heartbeat (`--node-monitor-grace-period`).
    pub grace_period: Duration,
    /// How long a new node has to post its first status (`--node-startup-grace-period`).
    pub startup_grace_period: Duration,
    /// How often nodes are looked at (`--node-monitor-period`).
    pub period: Duration,
}

impl Default for NodeMonitor {
    fn default() -> Self {
        NodeMonitor {
            grace_period: Duration::from_secs(50),
            startup_grace_period: Duration::from_secs(60),
            period: Duration::from_secs(5),
        }
    }
}

/// A heartbeat as last observed: the values, and when this controller saw them change.
#[derive(Debug, Clone)]
pub struct Observed {
    beats: (Option<Timestamp>, Option<Timestamp>),
    changed_at: Instant,
    posted: bool,
}

/// What the health check concludes.
#[derive(Debug, PartialEq, Eq)]
pub enum Health {
    Reporting,
    /// Silent for longer than the grace period; `never_posted` if it never reported status.
    Silent {
        never_posted: bool,
    },
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Updates what was observed of a node's heartbeats and judges its health.
pub fn judge(
    node: &Node,
    lease: Option<&Lease>,
    previous: Option<Observed>,
    now: Instant,
    monitor: &NodeMonitor,
) -> (Health, Observed) {
    let ready = condition(node, "Ready");
    let beats = (
        ready
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0),
        lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0),
    );
    let posted = ready.is_some();
    let observed = match previous {
        Some(p) if p.beats == beats => p,
        _ => Observed {
            beats,
            changed_at: now,
            posted,
        },
    };
    let grace = if observed.posted {
        monitor.grace_period
    } else {
        monitor.startup_grace_period
    };
    let health = if now.duration_since(observed.changed_at) > grace {
        Health::Silent {
            never_posted: !observed.posted,
        }
    } else {
        Health::Reporting
    };
    (health, observed)
}

/// The node's conditions once it is judged silent: the reported ones turned Unknown (added
/// if missing), or `None` if they already are.
pub fn silenced_conditions(
    node: &Node,
    never_posted: bool,
    now: Timestamp,
) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let (reason, message) = if never_posted {
        (
            "NodeStatusNeverUpdated",
            "Kubelet never posted node status.",
        )
    } else {
        ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    };
    let mut changed = false;
    for type_ in REPORTED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(reason.into());
                c.message = Some(message.into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Taint::default()
    }
}

/// Whether this controller owns a taint (it adds and removes it).
fn is_managed(t: &Taint) -> bool {
    t.key == UNREACHABLE
        || t.key == UNSCHEDULABLE
        || CONDITION_TAINTS.iter().any(|(_, _, key)| *key == t.key)
}

/// The taints a node's conditions call for. `no_execute` says whether NoExecute taints may be
/// added (disruption handling withholds them).
pub fn condition_taints(node: &Node, no_execute: bool) -> Vec<Taint> {
    let mut out = Vec::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == status) {
            out.push(taint(key, "NoSchedule"));
        }
    }
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("Unknown") => {
            out.push(taint(UNREACHABLE, "NoSchedule"));
            if no_execute {
                out.push(taint(UNREACHABLE, "NoExecute"));
            }
        }
        Some("False") if no_execute => out.push(taint(NOT_READY, "NoExecute")),
        _ => {}
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        out.push(taint(UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

/// The node's taints with the managed ones made to match `wanted` (kept ones keep the time
/// they were added, new ones are stamped `now`), or `None` when nothing changes.
pub fn merged_taints(current: &[Taint], wanted: &[Taint], now: Timestamp) -> Option<Vec<Taint>> {
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed(t) || wanted.iter().any(|w| same(w, t)))
        .cloned()
        .collect();
    for w in wanted {
        if !out.iter().any(|t| same(t, w)) {
            out.push(Taint {
                time_added: Some(Time(now)),
                ..w.clone()
            });
        }
    }
    (out.len() != current.len() || out.iter().zip(current).any(|(a, b)| a != b)).then_some(out)
}

/// When a pod on a node with these taints must be evicted: `Some(now)`-or-earlier if a
/// NoExecute taint is not tolerated, the earliest taint time plus tolerated seconds
/// otherwise, `None` if it may stay.
pub fn eviction_due(pod: &Pod, taints: &[Taint], now: Timestamp) -> Option<Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut due: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let at = if matching.is_empty() {
            now
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        } else {
            let seconds = matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .unwrap_or(0)
                .max(0);
            let added = taint.time_added.as_ref().map_or(now, |t| t.0);
            // Tolerated beyond the representable future: as good as forever.
            match added.checked_add(jiff::SignedDuration::from_secs(seconds)) {
                Ok(at) => at,
                Err(_) => continue,
            }
        };
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

/// A zone's health, by how many of its nodes are Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

pub fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

fn zone_of(node: &Node) -> String {
    node.labels().get(ZONE_LABEL).cloned().unwrap_or_default()
}

fn is_node_ready(node: &Node) -> bool {
    condition(node, "Ready").is_some_and(|c| c.status == "True")
}

struct Lifecycle {
    ctx: ControllerContext,
    monitor: NodeMonitor,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    recorder: EventRecorder,
    observed: HashMap<String, Observed>,
    /// When each zone last had a node newly tainted NoExecute.
    last_taint: HashMap<String, Instant>,
}

pub fn run(
    ctx: ControllerContext,
    monitor: NodeMonitor,
    nodes: &mut Informer<Node>,
    leases: &mut Informer<Lease>,
    pods: &mut Informer<Pod>,
) -> impl std::future::Future<Output = ()> + use<> {
    let mut lifecycle = Lifecycle {
        recorder: ctx.recorder("node-controller"),
        ctx,
        monitor,
        nodes: nodes.store(),
        leases: leases.store(),
        pods: pods.store(),
        observed: HashMap::new(),
        last_taint: HashMap::new(),
    };
    async move {
        let ready = (
            synced("nodes", &lifecycle.nodes).await,
            synced("leases", &lifecycle.leases).await,
            synced("pods", &lifecycle.pods).await,
        );
        if ready.0.is_err() || ready.1.is_err() || ready.2.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(lifecycle.monitor.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            lifecycle.pass().await;
        }
    }
}

impl Lifecycle {
    async fn pass(&mut self) {
        let nodes = self.nodes.state();
        let now = Instant::now();
        let stamp = Timestamp::now();
        let names: std::collections::HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.observed.retain(|n, _| names.contains(n));
        let leases: HashMap<String, Arc<Lease>> = self
            .leases
            .state()
            .into_iter()
            .map(|l| (l.name_any(), l))
            .collect();

        // Health: silent nodes turn Unknown.
        let mut current: Vec<Arc<Node>> = Vec::with_capacity(nodes.len());
        for node in nodes {
            let name = node.name_any();
            let (health, observed) = judge(
                &node,
                leases.get(&name).map(Arc::as_ref),
                self.observed.remove(&name),
                now,
                &self.monitor,
            );
            self.observed.insert(name.clone(), observed);
            let Health::Silent { never_posted } = health else {
                current.push(node);
                continue;
            };
            match silenced_conditions(&node, never_posted, stamp) {
                Some(conditions) => match self.write_conditions(&node, conditions).await {
                    Some(updated) => {
                        info!(node = %name, "node stopped reporting; marked Unknown");
                        self.node_event(
                            &updated,
                            "NodeNotReady",
                            format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await;
                        self.mark_pods_not_ready(&name).await;
                        current.push(Arc::new(updated));
                    }
                    None => current.push(node),
                },
                None => current.push(node),
            }
        }

        // Disruption: per zone, how many nodes are Ready.
        let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for node in &current {
            let entry = zones.entry(zone_of(node)).or_default();
            if is_node_ready(node) {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        let states: BTreeMap<String, ZoneState> = zones
            .iter()
            .map(|(z, (ready, not_ready))| (z.clone(), zone_state(*ready, *not_ready)))
            .collect();
        let all_down =
            !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
        let large = current.len() > LARGE_CLUSTER;

        // Taints.
        let mut tainted: Vec<Arc<Node>> = Vec::new();
        for node in current {
            let zone = zone_of(&node);
            let state = states.get(&zone).copied().unwrap_or(ZoneState::Normal);
            let existing = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let had_no_execute = existing
                .iter()
                .any(|t| is_managed(t) && t.effect == "NoExecute");
            let may_taint = !all_down
                && (had_no_execute
                    || match state {
                        ZoneState::PartialDisruption => large,
                        _ => true,
                    });
            let mut wanted = condition_taints(&node, may_taint);
            let adds_no_execute = !had_no_execute && wanted.iter().any(|t| t.effect == "NoExecute");
            if adds_no_execute
                && self
                    .last_taint
                    .get(&zone)
                    .is_some_and(|at| now.duration_since(*at) < TAINT_INTERVAL)
            {
                // Over this zone's rate: the NoExecute taint waits for a later pass.
                wanted.retain(|t| t.effect != "NoExecute");
            } else if adds_no_execute {
                self.last_taint.insert(zone, now);
            }
            let node = match merged_taints(&existing, &wanted, stamp) {
                Some(taints) => match self.write_taints(&node, taints).await {
                    Some(updated) => Arc::new(updated),
                    None => node,
                },
                None => node,
            };
            if node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.effect == "NoExecute"))
            {
                tainted.push(node);
            }
        }

        // Eviction from NoExecute-tainted nodes.
        if tainted.is_empty() || all_down {
            return;
        }
        let mut by_node: HashMap<&str, Vec<Arc<Pod>>> = HashMap::new();
        let pods = self.pods.state();
        for pod in &pods {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
                && pod.metadata.deletion_timestamp.is_none()
            {
                by_node.entry(node).or_default().push(pod.clone());
            }
        }
        for node in &tainted {
            let name = node.name_any();
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            for pod in by_node.get(name.as_str()).into_iter().flatten() {
                if eviction_due(pod, &taints, stamp).is_some_and(|at| at <= stamp) {
                    self.evict(pod).await;
                }
            }
        }
    }

    async fn write_conditions(&self, node: &Node, conditions: Vec<NodeCondition>) -> Option<Node> {
        self.write_node(
            node,
            json!({"status": {"conditions": conditions}}),
            "conditions",
        )
        .await
    }

    async fn write_taints(&self, node: &Node, taints: Vec<Taint>) -> Option<Node> {
        self.write_node(node, json!({"spec": {"taints": taints}}), "taints")
            .await
    }

    /// Merge-patches `change` (a `status` or `spec` part) onto the node as it was read; a
    /// newer node meanwhile makes the write fail, and the next pass judges that one.
    async fn write_node(&self, node: &Node, mut change: Value, what: &str) -> Option<Node> {
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let name = node.name_any();
        let to_status = change.get("status").is_some();
        change["metadata"] = json!({"resourceVersion": node.resource_version()});
        let params = PatchParams::default();
        let patch = Patch::Merge(&change);
        let written = if to_status {
            api.patch_status(&name, &params, &patch).await
        } else {
            api.patch(&name, &params, &patch).await
        };
        match written {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(node = %name, error = %e, "updating node {what} failed");
                None
            }
        }
    }

    async fn node_event(&self, node: &Node, reason: &str, note: String) {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Node".into()),
            api_version: Some("v1".into()),
            name: node.metadata.name.clone(),
            uid: node.metadata.name.clone(),
            ..Default::default()
        };
        self.recorder
            .record(&reference, EventType::Normal, reason, reason, note)
            .await;
    }

    /// Marks the pods of a silent node not Ready, as its kubelet can no longer say.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Timestamp::now();
        for pod in self.pods.state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone())
            else {
                continue;
            };
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            ready.status = "False".into();
            ready.last_transition_time = Some(Time(now));
            let api: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                &pod.namespace().unwrap_or_default(),
            );
            let patch = json!({
                "metadata": {"resourceVersion": pod.resource_version()},
                "status": {"conditions": conditions},
            });
            match api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    self.recorder
                        .record(
                            &pod_reference(&pod),
                            EventType::Warning,
                            "NodeNotReady",
                            "NodeNotReady",
                            "Node is not ready".into(),
                        )
                        .await;
                }
                Err(e) => warn!(pod = %pod.name_any(), error = %e, "marking pod not ready failed"),
            }
        }
    }

    async fn evict(&self, pod: &Pod) {
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        self.recorder
            .record(
                &pod_reference(pod),
                EventType::Normal,
                "TaintManagerEviction",
                "Delete",
                format!("Marking for deletion Pod {namespace}/{}", pod.name_any()),
            )
            .await;
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => info!(pod = %pod.name_any(), "evicted from a NoExecute-tainted node"),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => warn!(pod = %pod.name_any(), error = %e, "eviction failed"),
        }
    }
}

fn pod_reference(pod: &Pod) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Pod".into()),
        api_version: Some("v1".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn node(ready: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: ready.map(|status| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        last_heartbeat_time: Some(Time(Timestamp::UNIX_EPOCH)),
                        ..NodeCondition::default()
                    }]
                }),
                ..NodeStatus::default()
            }),
        }
    }

    fn lease(renewed: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    fn monitor() -> NodeMonitor {
        NodeMonitor {
            grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            period: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_renewing_lease_keeps_a_node_reporting_and_silence_makes_it_unknown() {
        let start = Instant::now();
        let n = node(Some("True"));
        let first = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(100);
        let (h, seen) = judge(&n, Some(&lease(first)), None, start, &monitor());
        assert_eq!(h, Health::Reporting);
        // 30 s later the lease was renewed: the clock restarts.
        let renewed = first + jiff::SignedDuration::from_secs(30);
        let later = start + Duration::from_secs(30);
        let (h, seen) = judge(&n, Some(&lease(renewed)), Some(seen), later, &monitor());
        assert_eq!(h, Health::Reporting);
        // 41 s after that renewal with no new one: silent.
        let (h, _) = judge(
            &n,
            Some(&lease(renewed)),
            Some(seen),
            later + Duration::from_secs(41),
            &monitor(),
        );
        assert_eq!(
            h,
            Health::Silent {
                never_posted: false
            }
        );
    }

    #[test]
    fn a_node_that_never_posted_gets_the_startup_grace() {
        let start = Instant::now();
        let n = node(None);
        let (_, seen) = judge(&n, None, None, start, &monitor());
        let (h, seen) = judge(
            &n,
            None,
            Some(seen),
            start + Duration::from_secs(45),
            &monitor(),
        );
        assert_eq!(h, Health::Reporting);
        let (h, _) = judge(
            &n,
            None,
            Some(seen),
            start + Duration::from_secs(61),
            &monitor(),
        );
        assert_eq!(h, Health::Silent { never_posted: true });
        let conditions = silenced_conditions(&n, true, Timestamp::now()).unwrap();
        assert_eq!(conditions.len(), 4);
        assert!(conditions.iter().all(
            |c| c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusNeverUpdated")
        ));
    }

    #[test]
    fn silenced_conditions_are_written_once() {
        let n = node(Some("True"));
        let conditions = silenced_conditions(&n, false, Timestamp::now()).unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let mut again = n.clone();
        again.status.as_mut().unwrap().conditions = Some(conditions);
        assert!(silenced_conditions(&again, false, Timestamp::now()).is_none());
    }

    #[test]
    fn conditions_map_to_taints() {
        let keys = |ts: Vec<Taint>| -> Vec<String> {
            ts.into_iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect()
        };
        assert_eq!(
            keys(condition_taints(&node(Some("Unknown")), true)),
            [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(
            keys(condition_taints(&node(Some("False")), true)),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        assert_eq!(
            keys(condition_taints(&node(Some("False")), false)),
            ["node.kubernetes.io/not-ready:NoSchedule"]
        );
        let mut cordoned = node(Some("True"));
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        assert_eq!(
            keys(condition_taints(&cordoned, true)),
            ["node.kubernetes.io/unschedulable:NoSchedule"]
        );
    }

    #[test]
    fn merging_keeps_foreign_taints_and_the_time_of_kept_ones() {
        let earlier = Timestamp::UNIX_EPOCH;
        let now = Timestamp::now();
        let foreign = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let kept = Taint {
            time_added: Some(Time(earlier)),
            ..taint(UNREACHABLE, "NoExecute")
        };
        let stale = taint(NOT_READY, "NoSchedule");
        let current = vec![foreign.clone(), kept.clone(), stale];
        let wanted = vec![
            taint(UNREACHABLE, "NoExecute"),
            taint(UNREACHABLE, "NoSchedule"),
        ];
        let merged = merged_taints(&current, &wanted, now).unwrap();
        assert_eq!(merged[0], foreign);
        assert_eq!(merged[1], kept);
        assert_eq!(merged[2].key, UNREACHABLE);
        assert_eq!(merged[2].time_added, Some(Time(now)));
        assert_eq!(merged.len(), 3);
        assert!(merged_taints(&merged, &wanted, now).is_none());
    }

    fn pod_with(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            ..Toleration::default()
        }
    }

    #[test]
    fn eviction_waits_for_the_shortest_matching_toleration() {
        let added = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(1000);
        let now = added + jiff::SignedDuration::from_secs(10);
        let taints = vec![Taint {
            time_added: Some(Time(added)),
            ..taint(UNREACHABLE, "NoExecute")
        }];
        let untolerating = pod_with(vec![]);
        assert_eq!(eviction_due(&untolerating, &taints, now), Some(now));
        let patient = pod_with(vec![
            toleration(UNREACHABLE, Some(300)),
            toleration(UNREACHABLE, Some(60)),
        ]);
        assert_eq!(
            eviction_due(&patient, &taints, now),
            Some(added + jiff::SignedDuration::from_secs(60))
        );
        let forever = pod_with(vec![toleration(UNREACHABLE, None)]);
        assert_eq!(eviction_due(&forever, &taints, now), None);
        // Seconds beyond the representable future tolerate forever (and do not panic).
        let endless = pod_with(vec![toleration(UNREACHABLE, Some(i64::MAX))]);
        assert_eq!(eviction_due(&endless, &taints, now), None);
        let no_schedule_only = vec![taint(UNREACHABLE, "NoSchedule")];
        assert_eq!(eviction_due(&untolerating, &no_schedule_only, now), None);
    }

    #[test]
    fn zone_states_follow_the_share_of_unready_nodes() {
        assert_eq!(zone_state(3, 0), ZoneState::Normal);
        assert_eq!(zone_state(1, 1), ZoneState::Normal);
        assert_eq!(zone_state(0, 2), ZoneState::FullDisruption);
        assert_eq!(zone_state(2, 3), ZoneState::PartialDisruption);
        assert_eq!(zone_state(8, 2), ZoneState::Normal);
    }
}
