//! The DaemonSet controller: one pod on every eligible node (not being deleted, matching the
//! template's nodeSelector and required node affinity, every NoSchedule/NoExecute taint
//! tolerated once the DaemonSet tolerations are added), created unbound with node affinity
//! to its node for the scheduler to bind. ControllerRevisions keep the template history that
//! `kubectl rollout history|undo daemonset` read; templates are rolled out by RollingUpdate
//! (maxUnavailable, maxSurge) or OnDelete; status carries the counts `kubectl get ds` and
//! `kubectl rollout status` read.
//!
//! The decisions (`node_fit`, `manage`, `rolling_update`, `count`, `surplus_history`) are
//! pure; `reconcile` carries them out through the API. The revisions themselves (data,
//! numbering, collisions) are `history`'s, shared with the StatefulSet controller; what is
//! the DaemonSet's own is folding duplicate revisions and moving their pods' hash labels.
//! Pods and revisions are read from their informers' namespace indexes, nodes from the whole
//! node store; claiming and slow-start creation are `pods`'s. Creations and deletions in
//! flight are remembered (`Expectations`) so a reconcile that runs before the pod watch has
//! caught up does not create or delete twice; failed daemon pods are replaced with a per-node
//! backoff (its own: unlike the Job's, which counts failures since the last success from pod
//! finish times, it is per node and grows with each replacement).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, Pod, PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::labels::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api_errors::{namespace_terminating, not_found, settle_status_write};
use crate::events::{EventRecorder, EventType};
use crate::expectations::Expectations;
use crate::history::{self, RevisionOwner};
use crate::informers::{Indexes, Informer};
use crate::node_fit::{NODE_NAME_FIELD, spec_affinity_matches, untolerated_taint};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

/// The label naming the ControllerRevision a pod (and the revision itself) belongs to.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// The label carrying the template generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Where the API server keeps a DaemonSet's template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// At most this many pods are created or deleted in one reconcile (upstream's burst).
const BURST: usize = 250;
const DEFAULT_HISTORY_LIMIT: i32 = 10;
const MANAGER: &str = "daemonset-controller";

/// The tolerations every daemon pod gets (key, effect): it must survive node problems and
/// run on cordoned nodes.
const DEFAULT_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
/// Added for hostNetwork pods, which do not need the node's pod network.
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds `toleration` to `list`, replacing one with the same key, operator, value and effect.
fn add_or_update_toleration(list: &mut Vec<Toleration>, toleration: Toleration) {
    let norm = |s: &Option<String>| s.clone().unwrap_or_default();
    let same = |t: &Toleration| {
        norm(&t.key) == norm(&toleration.key)
            && norm(&t.operator) == norm(&toleration.operator)
            && norm(&t.value) == norm(&toleration.value)
            && norm(&t.effect) == norm(&toleration.effect)
    };
    match list.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => list.push(toleration),
    }
}

/// Adds the DaemonSet tolerations to a pod spec.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    let network = host_network.then_some((NETWORK_UNAVAILABLE, "NoSchedule"));
    for (key, effect) in DEFAULT_TOLERATIONS.into_iter().chain(network) {
        add_or_update_toleration(
            list,
            Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Toleration::default()
            },
        );
    }
}

/// What a node is to a DaemonSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFit {
    /// A daemon pod should be started there.
    pub should_run: bool,
    /// A daemon pod already there may stay (it tolerates the NoExecute taints).
    pub should_continue_running: bool,
}

/// Whether the daemon pod spec (with the DaemonSet tolerations) belongs on `node`.
pub fn node_fit(pod_spec: &PodSpec, node: &Node) -> NodeFit {
    let nowhere = NodeFit {
        should_run: false,
        should_continue_running: false,
    };
    if node.metadata.deletion_timestamp.is_some() {
        return nowhere;
    }
    let name = node.name_any();
    if pod_spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return nowhere;
    }
    if !spec_affinity_matches(pod_spec, node) {
        return nowhere;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod_spec.tolerations.as_deref().unwrap_or_default();
    let blocking = untolerated_taint(taints, tolerations, |t| {
        t.effect == "NoSchedule" || t.effect == "NoExecute"
    });
    if blocking.is_some() {
        let evicting = untolerated_taint(taints, tolerations, |t| t.effect == "NoExecute");
        return NodeFit {
            should_run: false,
            should_continue_running: evicting.is_none(),
        };
    }
    NodeFit {
        should_run: true,
        should_continue_running: true,
    }
}

/// How template changes reach existing pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    RollingUpdate {
        max_unavailable: Option<IntOrString>,
        max_surge: Option<IntOrString>,
    },
    /// Pods are replaced only when someone deletes them.
    OnDelete,
}

/// What the controller needs of a DaemonSet.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub meta: ObjectMeta,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
    /// The template's pod spec with the DaemonSet tolerations: what node eligibility is
    /// judged by.
    pub pod_spec: PodSpec,
    pub min_ready_seconds: i32,
    pub strategy: Strategy,
    pub history_limit: i32,
    pub collision_count: Option<i32>,
    /// What status says now.
    pub reported: DaemonCounts,
    pub observed_generation: i64,
}

impl Daemon {
    pub fn new(ds: &DaemonSet) -> Self {
        let spec = ds.spec.clone().unwrap_or_default();
        let status = ds.status.clone().unwrap_or_default();
        let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
        add_daemon_tolerations(&mut pod_spec);
        let update = spec.update_strategy.unwrap_or_default();
        let strategy = if update.type_.as_deref() == Some("OnDelete") {
            Strategy::OnDelete
        } else {
            let ru = update.rolling_update.unwrap_or_default();
            Strategy::RollingUpdate {
                max_unavailable: ru.max_unavailable,
                max_surge: ru.max_surge,
            }
        };
        Daemon {
            meta: ds.metadata.clone(),
            selector: spec.selector,
            template: spec.template,
            pod_spec,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            strategy,
            history_limit: spec.revision_history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT),
            collision_count: status.collision_count,
            reported: DaemonCounts::reported(&status),
            observed_generation: status.observed_generation.unwrap_or(0),
        }
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("")
    }

    /// The DaemonSet as the owner of its template history.
    pub fn revision_owner(&self) -> RevisionOwner<'_> {
        RevisionOwner {
            kind: "DaemonSet",
            meta: &self.meta,
            template: &self.template,
            hash_label: HASH_LABEL,
            collision_count: self.collision_count,
        }
    }

    /// The template generation pods are labelled with: the API server's annotation, or the
    /// object's generation where that is missing.
    fn template_generation(&self) -> Option<i64> {
        self.meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
            .and_then(|g| g.parse().ok())
            .or(self.meta.generation)
    }
}

/// An int-or-percent scaled against `total`, percentages rounded up; malformed values are 0.
fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| {
                let scaled =
                    (p.saturating_mul(i64::from(total)).saturating_add(99)).div_euclid(100);
                scaled.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
            })
            .unwrap_or(0),
    }
}

/// Whether a node may briefly run an old and a new pod side by side.
fn allows_surge(d: &Daemon) -> bool {
    match &d.strategy {
        Strategy::RollingUpdate { max_surge, .. } => scaled(max_surge.as_ref(), 1, 0) > 0,
        Strategy::OnDelete => false,
    }
}

/// (maxSurge, maxUnavailable) against the number of nodes that should run a pod; never both
/// zero when there is any.
pub fn update_budget(d: &Daemon, desired: i32) -> (i32, i32) {
    let Strategy::RollingUpdate {
        max_unavailable,
        max_surge,
    } = &d.strategy
    else {
        return (0, 0);
    };
    let surge = scaled(max_surge.as_ref(), desired, 0).max(0);
    let mut unavailable = scaled(max_unavailable.as_ref(), desired, 1).max(0);
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// The pod template daemon pods are made from: the DaemonSet tolerations added, labelled
/// with the template generation and the current revision's hash.
pub fn daemon_pod_template(d: &Daemon, hash: &str) -> PodTemplateSpec {
    let mut template = d.template.clone();
    add_daemon_tolerations(template.spec.get_or_insert_with(PodSpec::default));
    let labels = template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(generation) = d.template_generation() {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    if !hash.is_empty() {
        labels.insert(HASH_LABEL.into(), hash.into());
    }
    template
}

/// The affinity of a daemon pod for `node`: its required node affinity becomes the single
/// term `metadata.name In [node]` (eligibility was already judged), the rest is kept.
pub fn node_affinity_for(affinity: Option<Affinity>, node: &str) -> Affinity {
    let required = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(required);
    affinity
}

/// The daemon pod to create for `node` from `template` (see `daemon_pod_template`), owned by
/// the DaemonSet and named `<daemonset>-<random>` by the server.
pub fn pod_for_node(d: &Daemon, template: &PodTemplateSpec, node: &str) -> Pod {
    let mut template = template.clone();
    let spec = template.spec.get_or_insert_with(PodSpec::default);
    spec.affinity = Some(node_affinity_for(spec.affinity.take(), node));
    let owner = pods::controller_ref("apps/v1", "DaemonSet", &d.meta);
    pods::pod_from_template(&template, d.namespace(), &format!("{}-", d.name()), owner)
}

/// The node a daemon pod is for: where it is bound, or else the node its required affinity
/// names.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([only]) => Some(only.clone()),
            _ => None,
        })
}

/// The DaemonSet's pods grouped by the node they are for.
pub fn pods_by_node<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeMap<String, Vec<&'a Pod>> {
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    by_node
}

/// Bound pods first, then the oldest, then by name: the first is the one a node keeps.
fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b)
        .cmp(&bound(a))
        .then(created(a).cmp(&created(b)))
        .then(a.metadata.name.cmp(&b.metadata.name))
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .map(String::as_str)
}

fn is_updated(pod: &Pod, hash: &str) -> bool {
    !hash.is_empty() && hash_of(pod) == Some(hash)
}

/// What `manage` decides: pods for nodes that lack one, and pods to go.
#[derive(Debug, Default)]
pub struct NodeSync {
    /// Nodes to create a daemon pod for.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Pod>,
    /// Failed pods among `delete`, with their node: reported and backed off.
    pub failed: Vec<(String, Pod)>,
    /// Succeeded pods among `delete`, with their node.
    pub succeeded: Vec<(String, Pod)>,
    /// When a failed pod held back by its node's backoff may be replaced.
    pub retry_after: Option<Duration>,
}

impl NodeSync {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

/// One daemon pod on every node that should run one: creates where missing, deletes extra
/// pods (all but the oldest; with surge, all but the oldest old and oldest new), pods on
/// nodes that no longer fit, finished pods (failed ones unless their node is backing off,
/// which `backoff` answers with the time left), and unbound pods for nodes that are gone.
pub fn manage(
    d: &Daemon,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
    backoff: &dyn Fn(&str) -> Option<Duration>,
) -> NodeSync {
    let surge = allows_surge(d);
    let mut sync = NodeSync::default();
    for node in nodes {
        let name = node.name_any();
        let fit = node_fit(&d.pod_spec, node);
        let Some(on_node) = by_node.get(&name) else {
            if fit.should_run {
                sync.create.push(name);
            }
            continue;
        };
        let alive = on_node
            .iter()
            .copied()
            .filter(|p| p.metadata.deletion_timestamp.is_none());
        if !fit.should_continue_running {
            sync.delete.extend(alive.cloned());
            continue;
        }
        let mut running: Vec<&Pod> = Vec::new();
        for pod in alive {
            match phase(pod) {
                Some("Failed") => {
                    if let Some(wait) = backoff(&name) {
                        sync.retry_after = Some(sync.retry_after.map_or(wait, |r| r.min(wait)));
                        continue;
                    }
                    sync.failed.push((name.clone(), pod.clone()));
                    sync.delete.push(pod.clone());
                }
                Some("Succeeded") => {
                    sync.succeeded.push((name.clone(), pod.clone()));
                    sync.delete.push(pod.clone());
                }
                _ => running.push(pod),
            }
        }
        running.sort_by(|a, b| oldest_first(a, b));
        if !surge {
            sync.delete
                .extend(running.iter().skip(1).map(|p| (*p).clone()));
            continue;
        }
        if running.is_empty() {
            if fit.should_run {
                sync.create.push(name);
            }
            continue;
        }
        // With surge a node may hold the oldest new pod and the oldest old one; the old one
        // goes once it is not ready or the new one is available.
        let mut oldest_new: Option<&Pod> = None;
        let mut oldest_old: Option<&Pod> = None;
        for pod in running {
            let slot = if is_updated(pod, hash) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(pod);
            } else {
                sync.delete.push(pod.clone());
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old)
            && (!pods::is_ready(old) || pods::is_available(new, d.min_ready_seconds, now))
        {
            sync.delete.push(old.clone());
        }
    }
    let known: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    for (node, on_node) in by_node {
        if known.contains(node) {
            continue;
        }
        sync.delete.extend(
            on_node
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_none_or(str::is_empty)
                })
                .map(|p| (*p).clone()),
        );
    }
    sync
}

/// The new-revision and old-revision pod on a node (deleting ones ignored), or `None` when
/// there are several of either (the manage step sorts that out first).
fn updated_and_old<'a>(
    on_node: &[&'a Pod],
    hash: &str,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let mut new = None;
    let mut old = None;
    for pod in on_node
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// One RollingUpdate step. Without surge: delete old pods (unavailable ones always, available
/// ones while fewer than maxUnavailable nodes are unavailable); the manage step then creates
/// their replacements. With surge: create new pods beside old ones on up to maxSurge nodes
/// (beside unavailable old ones always), and delete each old pod once the new one beside it
/// is available.
pub fn rolling_update(
    d: &Daemon,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
) -> NodeSync {
    let mut all: BTreeMap<String, Vec<&Pod>> = by_node.clone();
    let mut desired = 0;
    for node in nodes {
        if node_fit(&d.pod_spec, node).should_run {
            desired += 1;
            all.entry(node.name_any()).or_default();
        }
    }
    let (max_surge, max_unavailable) = update_budget(d, desired);
    let available = |p: &Pod| pods::is_available(p, d.min_ready_seconds, now);
    let mut sync = NodeSync::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace: Vec<Pod> = Vec::new();
        let mut candidates: Vec<Pod> = Vec::new();
        for on_node in all.values() {
            match updated_and_old(on_node, hash) {
                None | Some((None, None) | (Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(old) {
                        replace.push(old.clone());
                    } else if unavailable < max_unavailable {
                        candidates.push(old.clone());
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        sync.delete = replace;
        sync.delete.extend(candidates.into_iter().take(room));
        return sync;
    }
    let mut surging = 0;
    let mut replace: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    for (node, on_node) in &all {
        match updated_and_old(on_node, hash) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !available(old) {
                    replace.push(node.clone());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            Some((Some(new), Some(old))) => {
                if available(new) {
                    sync.delete.push(old.clone());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    sync.create = replace;
    sync.create.extend(candidates.into_iter().take(room));
    sync
}

/// The counts reported in status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonCounts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    pub unavailable: i32,
}

impl DaemonCounts {
    fn reported(s: &DaemonSetStatus) -> Self {
        DaemonCounts {
            desired: s.desired_number_scheduled,
            current: s.current_number_scheduled,
            misscheduled: s.number_misscheduled,
            ready: s.number_ready,
            updated: s.updated_number_scheduled.unwrap_or(0),
            available: s.number_available.unwrap_or(0),
            unavailable: s.number_unavailable.unwrap_or(0),
        }
    }
}

/// Status counts, judging each node that should run a pod by its oldest pod; pods on nodes
/// that should not run one are misscheduled. Also when a ready pod becomes available.
pub fn count(
    d: &Daemon,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
) -> (DaemonCounts, Option<Duration>) {
    let mut c = DaemonCounts::default();
    let mut recheck: Option<Timestamp> = None;
    for node in nodes {
        let fit = node_fit(&d.pod_spec, node);
        let on_node = by_node.get(&node.name_any()).filter(|p| !p.is_empty());
        if !fit.should_run {
            if on_node.is_some() {
                c.misscheduled += 1;
            }
            continue;
        }
        c.desired += 1;
        let Some(pod) = on_node.and_then(|p| p.iter().copied().min_by(|a, b| oldest_first(a, b)))
        else {
            continue;
        };
        c.current += 1;
        if let Some(since) = pods::ready_since(pod) {
            c.ready += 1;
            if pods::is_available(pod, d.min_ready_seconds, now) {
                c.available += 1;
            } else {
                let at = since + jiff::SignedDuration::from_secs(i64::from(d.min_ready_seconds));
                recheck = Some(recheck.map_or(at, |r| r.min(at)));
            }
        }
        if is_updated(pod, hash) {
            c.updated += 1;
        }
    }
    c.unavailable = c.desired - c.available;
    let after = recheck.and_then(|at| Duration::try_from(now.duration_until(at)).ok());
    (c, after)
}

fn revision_hash(r: &ControllerRevision) -> Option<&str> {
    history::revision_hash(r, HASH_LABEL)
}

/// Old revisions to delete: beyond `limit` old ones (in use or not, as upstream counts
/// them), the lowest-numbered ones no pod uses.
pub fn surplus_history(
    old: &[ControllerRevision],
    limit: i32,
    live_hashes: &HashSet<&str>,
) -> Vec<String> {
    let mut sorted = old.to_vec();
    history::sort_revisions(&mut sorted);
    let counted: Vec<&ControllerRevision> = sorted.iter().collect();
    history::history_to_delete(&counted, limit, |r| {
        revision_hash(r).is_some_and(|h| live_hashes.contains(h))
    })
}

/// How long replacing a failed daemon pod on a node waits: 1s, doubling to 15 minutes, reset
/// after a quiet spell of twice that.
#[derive(Default)]
pub struct FailedPodBackoff {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(900);

impl FailedPodBackoff {
    /// The time left if `key` is still backing off at `now`.
    pub fn holding(&self, key: &str, now: Instant) -> Option<Duration> {
        let entries = locked(&self.entries);
        let (delay, last) = entries.get(key)?;
        delay
            .checked_sub(now.saturating_duration_since(*last))
            .filter(|left| !left.is_zero())
    }

    /// Records a replacement for `key` at `now`, lengthening its next wait.
    pub fn next(&self, key: &str, now: Instant) {
        let mut entries = locked(&self.entries);
        entries.retain(|_, (_, last)| now.saturating_duration_since(*last) <= 2 * BACKOFF_MAX);
        let delay = match entries.get(key) {
            Some((delay, _)) => (*delay * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        entries.insert(key.to_owned(), (delay, now));
    }
}

/// The state shared by DaemonSet reconciles.
pub struct DaemonContext {
    pub ctx: ControllerContext,
    /// The pods by namespace (what a DaemonSet may own or adopt).
    pub pods: Indexes<Pod>,
    /// Every node: a DaemonSet is about all of them.
    pub nodes: Store<Node>,
    /// The ControllerRevisions by namespace (what a DaemonSet may own or adopt).
    pub revisions: Indexes<ControllerRevision>,
    pub expectations: Expectations,
    pub backoff: FailedPodBackoff,
    pub recorder: EventRecorder,
}

/// What of a node decides where daemon pods go: labels, spec (taints, unschedulable),
/// deletion, and which conditions are true.
fn node_fingerprint(node: &Node) -> String {
    let mut conditions: Vec<&str> = node
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| c.status == "True")
        .map(|c| c.type_.as_str())
        .collect();
    conditions.sort_unstable();
    json!({
        "labels": node.metadata.labels,
        "spec": node.spec,
        "deleting": node.metadata.deletion_timestamp.is_some(),
        "conditions": conditions,
    })
    .to_string()
}

/// Maps a node change to every DaemonSet; changes that cannot matter (heartbeats) are
/// dropped, as upstream drops node updates that only touch condition timestamps.
fn node_mapper(
    daemon_sets: Store<DaemonSet>,
    nodes: Store<Node>,
) -> impl Fn(Arc<Node>) -> Vec<ObjectRef<DaemonSet>> + Send + Sync + 'static {
    let seen: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    move |node: Arc<Node>| {
        let name = node.name_any();
        let present = nodes.get(&ObjectRef::from_obj(node.as_ref())).is_some();
        let changed = {
            let mut seen = locked(&seen);
            if present {
                let print = node_fingerprint(&node);
                seen.insert(name, print.clone()).as_ref() != Some(&print)
            } else {
                seen.remove(&name);
                true
            }
        };
        if !changed {
            return Vec::new();
        }
        daemon_sets
            .state()
            .iter()
            .map(|ds| ObjectRef::from_obj(ds.as_ref()))
            .collect()
    }
}

/// Runs the DaemonSet controller until the stream ends.
pub fn run(
    ctx: ControllerContext,
    daemon_sets: &mut Informer<DaemonSet>,
    pods: &mut Informer<Pod>,
    nodes: &mut Informer<Node>,
    revisions: &mut Informer<ControllerRevision>,
) -> impl std::future::Future<Output = ()> + use<> {
    let recorder = ctx.recorder(MANAGER);
    let state = Arc::new(DaemonContext {
        ctx,
        pods: pods.indexes(),
        nodes: nodes.store(),
        revisions: revisions.indexes(),
        expectations: Expectations::default(),
        backoff: FailedPodBackoff::default(),
        recorder,
    });
    let mapper = node_mapper(daemon_sets.store(), nodes.store());
    let controller = Controller::for_shared_stream(daemon_sets.subscribe(), daemon_sets.store())
        .owns_shared_stream(pods.subscribe())
        .owns_shared_stream(revisions.subscribe())
        .watches_shared_stream(nodes.subscribe(), mapper);
    async move {
        controller
            .run(reconcile, error_policy, state)
            .for_each(|_| futures::future::ready(()))
            .await
    }
}

fn error_policy(_ds: Arc<DaemonSet>, err: &ReconcileError, _ctx: Arc<DaemonContext>) -> Action {
    crate::retry_after_failure("daemon set reconcile failed", err)
}

async fn reconcile(
    ds: Arc<DaemonSet>,
    state: Arc<DaemonContext>,
) -> Result<Action, ReconcileError> {
    let d = Daemon::new(&ds);
    // What a DaemonSet being deleted owns may already be gone; its status is not worth
    // writing.
    if d.meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = d.namespace().to_owned();
    let uid = d.meta.uid.clone().unwrap_or_default();
    // In-memory state (expectations, backoff) is keyed by uid, so a same-named successor
    // starts afresh.
    let key = uid.clone();
    let reference = ds.object_ref(&());
    let client = state.ctx.client.clone();
    let Some(selector) = pods::controller_selector(&d.selector) else {
        state
            .recorder
            .record(
                &reference,
                EventType::Warning,
                "SelectingAll",
                "Sync",
                "This daemon set is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
        return Ok(Action::await_change());
    };
    let owner = pods::controller_ref("apps/v1", "DaemonSet", &d.meta);

    // The pods this DaemonSet controls, adopting matching orphans.
    let ns_pods: Vec<Arc<Pod>> = state.pods.in_namespace(&namespace);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let claimed = pods::claim::<Pod, _>(&d.meta, Some(&selector), &ns_pods, |_| true);
    let adopt: Vec<&Pod> = claimed.adopt.iter().map(|p| p.as_ref()).collect();
    let release: Vec<&Pod> = claimed.release.iter().map(|p| p.as_ref()).collect();
    let (adopted, failure) =
        pods::adopt_and_release(&pod_api, &owner, adopt, release, |_, _| {}).await;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut owned: Vec<Arc<Pod>> = claimed.owned.into_iter().cloned().collect();
    owned.extend(adopted.into_iter().map(Arc::new));

    let (current, old, collision_count) = construct_history(&state, &d, &selector, &owned).await?;
    let hash = revision_hash(&current).unwrap_or("").to_owned();
    let nodes = state.nodes.state();
    let now = Timestamp::now();

    let by_node = pods_by_node(owned.iter().map(AsRef::as_ref));
    if !state.expectations.satisfied(&key, &ns_pods) {
        let (counts, _) = count(&d, &nodes, &by_node, &hash, now);
        write_status(&client, &d, &counts, false, collision_count).await?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let template = daemon_pod_template(&d, &hash);
    let backoff_key = |node: &str| format!("{uid}/{}/{node}", d.observed_generation);
    let clock = Instant::now();
    let plan = manage(&d, &nodes, &by_node, &hash, now, &|node| {
        state.backoff.holding(&backoff_key(node), clock)
    });
    for (node, pod) in &plan.failed {
        state.backoff.next(&backoff_key(node), clock);
        let note = format!(
            "Found failed daemon pod {namespace}/{} on node {node}, will try to kill it",
            pod.name_any()
        );
        state
            .recorder
            .record(
                &reference,
                EventType::Warning,
                "FailedDaemonPod",
                "Delete",
                note,
            )
            .await;
    }
    for (node, pod) in &plan.succeeded {
        let note = format!(
            "Found succeeded daemon pod {namespace}/{} on node {node}, will try to delete it",
            pod.name_any()
        );
        state
            .recorder
            .record(
                &reference,
                EventType::Normal,
                "SucceededDaemonPod",
                "Delete",
                note,
            )
            .await;
    }
    let mut failure = sync_nodes(&state, &d, &reference, &key, &template, &plan).await;
    if failure.is_none() && plan.is_empty() && matches!(d.strategy, Strategy::RollingUpdate { .. })
    {
        let step = rolling_update(&d, &nodes, &by_node, &hash, now);
        failure = sync_nodes(&state, &d, &reference, &key, &template, &step).await;
    }

    let live: HashSet<&str> = owned.iter().filter_map(|p| hash_of(p)).collect();
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    for name in surplus_history(&old, d.history_limit, &live) {
        match rev_api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }

    let (counts, available_in) = count(&d, &nodes, &by_node, &hash, now);
    write_status(&client, &d, &counts, true, collision_count).await?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let terminating = owned
        .iter()
        .any(|p| p.metadata.deletion_timestamp.is_some());
    let next = [
        plan.retry_after,
        available_in,
        terminating.then_some(Duration::from_secs(2)),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(Duration::from_secs(300));
    Ok(Action::requeue(next))
}

/// Creates pods for `sync.create` (slow start: 1, 2, 4, … at a time, stopping at the first
/// failure) and deletes `sync.delete`, at most `BURST` of each; returns the first failure.
async fn sync_nodes(
    state: &DaemonContext,
    d: &Daemon,
    reference: &ObjectReference,
    key: &str,
    template: &PodTemplateSpec,
    sync: &NodeSync,
) -> Option<kube::Error> {
    let pod_api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), d.namespace());
    let to_create: Vec<Pod> = sync
        .create
        .iter()
        .take(BURST)
        .map(|node| pod_for_node(d, template, node))
        .collect();
    // Nothing more can be made in a namespace going away.
    let made = pods::create_slow_start(
        &pod_api,
        to_create,
        &state.recorder,
        reference,
        namespace_terminating,
    )
    .await;
    let created: Vec<String> = made
        .pods
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    let mut failure = made.error;

    let doomed: Vec<&Pod> = sync.delete.iter().take(BURST).collect();
    let deleted = pods::delete_recorded(&pod_api, &doomed, &state.recorder, reference).await;
    if let Some(e) = deleted.error {
        failure.get_or_insert(e);
    }
    state.expectations.expect(key, created, deleted.uids);
    failure
}

/// The DaemonSet's revisions: the one holding its current template (made, or renumbered to
/// the newest, as needed; duplicates folded into it), the old ones, and the collision count
/// its name took.
async fn construct_history(
    state: &DaemonContext,
    d: &Daemon,
    selector: &Selector,
    owned_pods: &[Arc<Pod>],
) -> Result<(ControllerRevision, Vec<ControllerRevision>, Option<i32>), ReconcileError> {
    let namespace = d.namespace();
    let client = state.ctx.client.clone();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let candidates: Vec<Arc<ControllerRevision>> = state.revisions.in_namespace(namespace);
    let claimed =
        pods::claim::<ControllerRevision, _>(&d.meta, Some(selector), &candidates, |_| true);
    let owner = pods::controller_ref("apps/v1", "DaemonSet", &d.meta);
    let adopt: Vec<&ControllerRevision> = claimed.adopt.iter().map(|r| r.as_ref()).collect();
    let release: Vec<&ControllerRevision> = claimed.release.iter().map(|r| r.as_ref()).collect();
    let (adopted, failure) = pods::adopt_and_release(&api, &owner, adopt, release, |_, _| {}).await;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut revisions: Vec<ControllerRevision> =
        claimed.owned.into_iter().map(|r| (**r).clone()).collect();
    revisions.extend(adopted);
    // Revisions without the hash label get their name as the hash.
    for r in revisions.iter_mut().filter(|r| revision_hash(r).is_none()) {
        let patch = json!({"metadata": {"labels": {HASH_LABEL: r.name_any()}}});
        *r = api
            .patch(
                &r.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    history::sort_revisions(&mut revisions);
    let settled = history::settle_update_revision(&api, &d.revision_owner(), &revisions).await?;
    let keep = settled.revision;
    let keep_hash = revision_hash(&keep).unwrap_or("").to_owned();
    // Other revisions of the current template are duplicates: their pods move to the one
    // kept and they go.
    let (duplicates, old): (Vec<ControllerRevision>, Vec<ControllerRevision>) = revisions
        .into_iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != settled.index)
        .map(|(_, r)| r)
        .partition(|r| history::revision_matches(&d.template, r));
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for dup in &duplicates {
        let Some(dup_hash) = revision_hash(dup) else {
            continue;
        };
        for pod in owned_pods.iter().filter(|p| hash_of(p) == Some(dup_hash)) {
            let patch = json!({"metadata": {"labels": {HASH_LABEL: keep_hash}}});
            match pod_api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match api.delete(&dup.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((keep, old, settled.collision_count))
}

/// Writes the counts (and, after a full sync, observedGeneration; after a hash collision,
/// the new collisionCount) to status when they changed.
async fn write_status(
    client: &kube::Client,
    d: &Daemon,
    counts: &DaemonCounts,
    observe: bool,
    collision_count: Option<i32>,
) -> Result<(), ReconcileError> {
    let generation = d.meta.generation.unwrap_or(0);
    let collided = collision_count != d.collision_count;
    if d.reported == *counts && d.observed_generation >= generation && !collided {
        return Ok(());
    }
    let mut status = json!({
        "desiredNumberScheduled": counts.desired,
        "currentNumberScheduled": counts.current,
        "numberMisscheduled": counts.misscheduled,
        "numberReady": counts.ready,
        "updatedNumberScheduled": counts.updated,
        "numberAvailable": counts.available,
        "numberUnavailable": counts.unavailable,
    });
    if observe {
        status["observedGeneration"] = json!(generation);
    }
    if collided {
        status["collisionCount"] = json!(collision_count);
    }
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), d.namespace());
    let written = api
        .patch_status(
            d.name(),
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "metadata": {"resourceVersion": d.meta.resource_version},
                "status": status,
            })),
        )
        .await;
    Ok(settle_status_write(written)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::template_hash;
    use crate::pods::fixtures::{owned_by, pod, ready};
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{Container, NodeSpec, PreferredSchedulingTerm, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const HASH: &str = "new-hash";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn daemon_set() -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("default".into()),
                uid: Some("ds-uid".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "agent")])),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "agent")])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "agent".into(),
                            image: Some("agent:1".into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    fn rolling(max_unavailable: IntOrString, max_surge: IntOrString) -> Daemon {
        let mut ds = daemon_set();
        if let Some(spec) = ds.spec.as_mut() {
            spec.update_strategy = Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(max_unavailable),
                    max_surge: Some(max_surge),
                }),
            });
        }
        Daemon::new(&ds)
    }

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: None,
        }
    }

    fn tainted(mut n: Node, key: &str, effect: &str) -> Node {
        n.spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.into(),
                effect: effect.into(),
                ..Taint::default()
            });
        n
    }

    fn nodes(names: &[&str]) -> Vec<Arc<Node>> {
        names.iter().map(|n| Arc::new(node(n))).collect()
    }

    /// A daemon pod of `d` bound to `node`, of revision `hash`, created at `created`.
    fn daemon_pod(d: &Daemon, name: &str, node: &str, hash: &str, created: i64) -> Pod {
        let owner = pods::controller_ref("apps/v1", "DaemonSet", &d.meta);
        let mut p = owned_by(pod(name, &[("app", "agent"), (HASH_LABEL, hash)]), &owner);
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p.spec.get_or_insert_with(PodSpec::default).node_name = Some(node.into());
        p
    }

    fn up(p: Pod) -> Pod {
        ready(p, Timestamp::UNIX_EPOCH)
    }

    fn no_backoff(_: &str) -> Option<Duration> {
        None
    }

    fn names(pods: &[Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_taints_with_the_daemon_tolerations() {
        let d = Daemon::new(&daemon_set());
        assert!(node_fit(&d.pod_spec, &node("n1")).should_run);

        // Cordoned and not-ready nodes still get daemon pods: the tolerations cover them.
        let mut cordoned = tainted(node("n2"), "node.kubernetes.io/unschedulable", "NoSchedule");
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        assert!(node_fit(&d.pod_spec, &cordoned).should_run);
        let not_ready = tainted(node("n3"), "node.kubernetes.io/not-ready", "NoExecute");
        assert!(node_fit(&d.pod_spec, &not_ready).should_run);

        // Network-unavailable is tolerated only by hostNetwork pods.
        let no_network = tainted(node("n4"), NETWORK_UNAVAILABLE, "NoSchedule");
        assert!(!node_fit(&d.pod_spec, &no_network).should_run);
        let mut host = daemon_set();
        host.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .host_network = Some(true);
        assert!(node_fit(&Daemon::new(&host).pod_spec, &no_network).should_run);

        // A NoSchedule taint keeps new pods away but lets running ones stay; NoExecute
        // evicts them.
        let dedicated = tainted(node("n5"), "dedicated", "NoSchedule");
        assert_eq!(
            node_fit(&d.pod_spec, &dedicated),
            NodeFit {
                should_run: false,
                should_continue_running: true
            }
        );
        let evicting = tainted(node("n6"), "dedicated", "NoExecute");
        assert_eq!(
            node_fit(&d.pod_spec, &evicting),
            NodeFit {
                should_run: false,
                should_continue_running: false
            }
        );

        // nodeSelector must match the node's labels.
        let mut picky = daemon_set();
        picky
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector = Some(labels(&[("role", "edge")]));
        let picky = Daemon::new(&picky);
        assert!(!node_fit(&picky.pod_spec, &node("n1")).should_run);
        let mut edge = node("n7");
        edge.metadata.labels = Some(labels(&[("role", "edge")]));
        assert!(node_fit(&picky.pod_spec, &edge).should_run);

        // Nodes being deleted get nothing.
        let mut going = node("n8");
        going.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!node_fit(&d.pod_spec, &going).should_continue_running);
    }

    #[test]
    fn daemon_pods_are_pinned_to_their_node_and_carry_tolerations_and_labels() {
        let mut ds = daemon_set();
        let spec = ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.tolerations = Some(vec![Toleration {
            key: Some("node.kubernetes.io/not-ready".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            ..Toleration::default()
        }]);
        let zone_term = NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "zone".into(),
                operator: "In".into(),
                values: Some(vec!["a".into()]),
            }]),
            match_fields: None,
        };
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![zone_term.clone()],
                }),
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 1,
                        preference: zone_term,
                    },
                ]),
            }),
            ..Affinity::default()
        });
        let d = Daemon::new(&ds);
        let template = daemon_pod_template(&d, "abc");
        let p = pod_for_node(&d, &template, "n1");

        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("DaemonSet", "ds-uid", Some(true))
        );
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l.get(HASH_LABEL).map(String::as_str), Some("abc"));
        assert_eq!(
            l.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
            Some("2")
        );
        assert_eq!(l.get("app").map(String::as_str), Some("agent"));

        let spec = p.spec.as_ref().unwrap();
        assert!(spec.node_name.is_none(), "the scheduler binds daemon pods");
        let na = spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap();
        let required = na
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap();
        assert_eq!(required.node_selector_terms.len(), 1);
        let term = &required.node_selector_terms[0];
        assert!(term.match_expressions.is_none());
        let field = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (field.key.as_str(), field.operator.as_str()),
            ("metadata.name", "In")
        );
        assert_eq!(field.values.as_deref(), Some(&["n1".to_owned()][..]));
        assert!(
            na.preferred_during_scheduling_ignored_during_execution
                .is_some()
        );
        assert_eq!(target_node(&p).as_deref(), Some("n1"));

        let tolerations = spec.tolerations.as_ref().unwrap();
        assert_eq!(tolerations.len(), 6);
        let not_ready: Vec<_> = tolerations
            .iter()
            .filter(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready"))
            .collect();
        // The user's bounded toleration is replaced by the unbounded one.
        assert_eq!(not_ready.len(), 1);
        assert_eq!(not_ready[0].toleration_seconds, None);
        for (key, effect) in DEFAULT_TOLERATIONS {
            assert!(
                tolerations.iter().any(|t| t.key.as_deref() == Some(key)
                    && t.effect.as_deref() == Some(effect)
                    && t.operator.as_deref() == Some("Exists")),
                "{key}"
            );
        }
    }

    #[test]
    fn each_eligible_node_gets_one_pod_and_the_rest_go() {
        let d = Daemon::new(&daemon_set());
        let mut all = nodes(&["n1", "n2", "n3"]);
        all.push(Arc::new(tainted(node("n4"), "dedicated", "NoExecute")));
        let extra_old = daemon_pod(&d, "n2-old", "n2", HASH, 1);
        let extra_new = daemon_pod(&d, "n2-new", "n2", HASH, 5);
        let evicted = daemon_pod(&d, "n4-pod", "n4", HASH, 1);
        let mut orphaned = daemon_pod(&d, "gone-pod", "gone", HASH, 1);
        orphaned.spec.as_mut().unwrap().node_name = None;
        orphaned.spec.as_mut().unwrap().affinity = Some(node_affinity_for(None, "gone"));
        let bound_gone = daemon_pod(&d, "gone-bound", "gone2", HASH, 1);
        let on_n3 = daemon_pod(&d, "n3-pod", "n3", HASH, 1);
        let by_node = pods_by_node([
            &extra_old,
            &extra_new,
            &evicted,
            &orphaned,
            &bound_gone,
            &on_n3,
        ]);
        let sync = manage(&d, &all, &by_node, HASH, Timestamp::now(), &no_backoff);
        assert_eq!(sync.create, ["n1"]);
        let mut doomed = names(&sync.delete);
        doomed.sort();
        // The newer of two pods on n2, the pod on the evicting node, and the unbound pod for
        // a node that is gone; a bound pod on a vanished node is the pod GC's.
        assert_eq!(doomed, ["gone-pod", "n2-new", "n4-pod"]);
    }

    #[test]
    fn failed_pods_are_replaced_unless_their_node_is_backing_off() {
        let d = Daemon::new(&daemon_set());
        let mut failed = daemon_pod(&d, "crashed", "n1", HASH, 1);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let by_node = pods_by_node([&failed]);
        let all = nodes(&["n1"]);
        let sync = manage(&d, &all, &by_node, HASH, Timestamp::now(), &no_backoff);
        assert_eq!(names(&sync.delete), ["crashed"]);
        assert_eq!(sync.failed.len(), 1);
        assert!(
            sync.create.is_empty(),
            "the replacement waits for the deletion"
        );

        let held = |_: &str| Some(Duration::from_secs(4));
        let sync = manage(&d, &all, &by_node, HASH, Timestamp::now(), &held);
        assert!(sync.delete.is_empty() && sync.create.is_empty());
        assert_eq!(sync.retry_after, Some(Duration::from_secs(4)));
    }

    #[test]
    fn backoff_doubles_and_expires() {
        let b = FailedPodBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.holding("k", t0), None);
        b.next("k", t0);
        assert_eq!(b.holding("k", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.holding("k", t0 + Duration::from_secs(1)), None);
        b.next("k", t0 + Duration::from_secs(1));
        assert_eq!(
            b.holding("k", t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(1))
        );
        // After a long quiet spell it starts over.
        let later = t0 + Duration::from_secs(3600);
        b.next("k", later);
        assert_eq!(b.holding("k", later), Some(Duration::from_secs(1)));
    }

    #[test]
    fn rolling_update_replaces_at_most_max_unavailable_old_pods() {
        let d = rolling(IntOrString::Int(1), IntOrString::Int(0));
        let all = nodes(&["n1", "n2", "n3"]);
        let old: Vec<Pod> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| up(daemon_pod(&d, &format!("{n}-old"), n, "old-hash", 1)))
            .collect();
        let by_node = pods_by_node(&old);
        let now = Timestamp::now();
        let step = rolling_update(&d, &all, &by_node, HASH, now);
        assert_eq!(names(&step.delete), ["n1-old"]);
        assert!(step.create.is_empty());

        // While n1's new pod is not available, nothing else goes.
        let new = daemon_pod(&d, "n1-new", "n1", HASH, 2);
        let by_node = pods_by_node([&new, &old[1], &old[2]]);
        assert!(
            rolling_update(&d, &all, &by_node, HASH, now)
                .delete
                .is_empty()
        );
        // Once it is, the next old pod goes.
        let new = up(new);
        let by_node = pods_by_node([&new, &old[1], &old[2]]);
        assert_eq!(
            names(&rolling_update(&d, &all, &by_node, HASH, now).delete),
            ["n2-old"]
        );

        // Unavailable old pods are replaced regardless of the budget.
        let sick = daemon_pod(&d, "n3-sick", "n3", "old-hash", 1);
        let by_node = pods_by_node([&new, &old[1], &sick]);
        let mut doomed = names(&rolling_update(&d, &all, &by_node, HASH, now).delete);
        doomed.sort();
        assert_eq!(doomed, ["n2-old", "n3-sick"]);
    }

    #[test]
    fn percentages_scale_against_desired_nodes_rounding_up() {
        let d = rolling(IntOrString::String("30%".into()), IntOrString::Int(0));
        assert_eq!(update_budget(&d, 5), (0, 2));
        let d = rolling(IntOrString::Int(0), IntOrString::Int(0));
        assert_eq!(update_budget(&d, 5), (0, 1));
        let d = rolling(IntOrString::Int(0), IntOrString::String("50%".into()));
        assert_eq!(update_budget(&d, 3), (2, 0));
    }

    #[test]
    fn surge_starts_new_pods_beside_old_ones_and_removes_the_old_once_available() {
        let d = rolling(IntOrString::Int(0), IntOrString::Int(1));
        let all = nodes(&["n1", "n2"]);
        let now = Timestamp::now();
        let old1 = up(daemon_pod(&d, "n1-old", "n1", "old-hash", 1));
        let old2 = up(daemon_pod(&d, "n2-old", "n2", "old-hash", 1));
        let step = rolling_update(&d, &all, &pods_by_node([&old1, &old2]), HASH, now);
        assert_eq!(step.create, ["n1"]);
        assert!(step.delete.is_empty());

        // The new pod on n1 is starting: no more surge, the old pod stays.
        let new1 = daemon_pod(&d, "n1-new", "n1", HASH, 2);
        let by_node = pods_by_node([&old1, &new1, &old2]);
        let step = rolling_update(&d, &all, &by_node, HASH, now);
        assert!(step.create.is_empty() && step.delete.is_empty());
        let sync = manage(&d, &all, &by_node, HASH, now, &no_backoff);
        assert!(sync.delete.is_empty(), "both pods may share n1 for now");

        // Available: the old one goes.
        let new1 = up(new1);
        let by_node = pods_by_node([&old1, &new1, &old2]);
        let step = rolling_update(&d, &all, &by_node, HASH, now);
        // …and n1 no longer counts against the surge, so n2 may start its new pod.
        assert_eq!(names(&step.delete), ["n1-old"]);
        assert_eq!(step.create, ["n2"]);
    }

    #[test]
    fn status_counts_judge_the_oldest_pod_per_node() {
        let d = Daemon::new(&daemon_set());
        let mut all = nodes(&["n1", "n2", "n3"]);
        all.push(Arc::new(tainted(node("n4"), "dedicated", "NoSchedule")));
        let now = Timestamp::now();
        let a = up(daemon_pod(&d, "a", "n1", HASH, 1));
        let b = daemon_pod(&d, "b", "n2", "old-hash", 1);
        let stray = up(daemon_pod(&d, "stray", "n4", HASH, 1));
        let (c, _) = count(&d, &all, &pods_by_node([&a, &b, &stray]), HASH, now);
        assert_eq!(
            c,
            DaemonCounts {
                desired: 3,
                current: 2,
                misscheduled: 1,
                ready: 1,
                updated: 1,
                available: 1,
                unavailable: 2,
            }
        );
    }

    #[test]
    fn revision_data_is_a_replace_patch_of_the_template_in_gos_shape() {
        let d = Daemon::new(&daemon_set());
        let r = history::new_revision(&d.revision_owner(), 3);
        let hash = template_hash(&d.template, None);
        assert_eq!(r.metadata.name, Some(format!("agent-{hash}")));
        assert_eq!(r.revision, 3);
        assert_eq!(
            r.metadata.labels,
            Some(labels(&[("app", "agent"), (HASH_LABEL, &hash)]))
        );
        assert_eq!(
            pods::controller_of(&r.metadata).map(|o| (o.kind.as_str(), o.uid.as_str())),
            Some(("DaemonSet", "ds-uid"))
        );
        let data = &r.data.as_ref().unwrap().0;
        assert_eq!(
            data,
            &json!({"spec": {"template": {
                "$patch": "replace",
                "metadata": {"creationTimestamp": null, "labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1", "resources": {}}]},
            }}})
        );
        assert!(history::revision_matches(&d.template, &r));
        let mut changed = d.template.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("agent:2".into());
        assert!(!history::revision_matches(&changed, &r));
        // The revision name follows the template hash, which the collision count changes.
        assert_ne!(
            template_hash(&d.template, None),
            template_hash(&d.template, Some(1))
        );
    }

    /// A revision of the DaemonSet's template named and labelled with `hash`.
    fn revision_with_hash(d: &Daemon, hash: &str, number: i64) -> ControllerRevision {
        let mut r = history::new_revision(&d.revision_owner(), number);
        r.metadata.name = Some(format!("{}-{hash}", d.name()));
        if let Some(labels) = r.metadata.labels.as_mut() {
            labels.insert(HASH_LABEL.into(), hash.into());
        }
        r
    }

    #[test]
    fn history_beyond_the_limit_goes_oldest_first_unless_pods_use_it() {
        let d = Daemon::new(&daemon_set());
        let old: Vec<ControllerRevision> = (1..=4)
            .map(|n| revision_with_hash(&d, &format!("h{n}"), n))
            .collect();
        let live: HashSet<&str> = ["h1"].into();
        assert_eq!(surplus_history(&old, 2, &live), ["agent-h2", "agent-h3"]);
        assert!(surplus_history(&old, 10, &live).is_empty());
        assert_eq!(surplus_history(&old, 0, &HashSet::new()).len(), 4);
    }

    #[test]
    fn heartbeats_do_not_wake_daemon_sets_but_label_changes_do() {
        let mut n = node("n1");
        let before = node_fingerprint(&n);
        n.metadata.resource_version = Some("7".into());
        assert_eq!(node_fingerprint(&n), before);
        n.metadata.labels = Some(labels(&[("role", "edge")]));
        assert_ne!(node_fingerprint(&n), before);
    }
}
