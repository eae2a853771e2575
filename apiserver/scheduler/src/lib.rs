//! The scheduler: binds each pod without `spec.nodeName` to a node through `pods/binding`.
//! An API client on the node and pod watches, never a storage reader.
//!
//! One task owns the state: `cache` (every node with the pods bound to it, updated event by
//! event) and `queue` (pending pods by priority, unschedulable ones set aside until a change
//! might let them in, with backoff). It applies watch events as they come and, between them,
//! places one pod at a time: `place` filters nodes, starting where the last pod stopped and
//! stopping once enough feasible nodes are found in a large cluster (upstream's
//! percentageOfNodesToScore), then scores those. A bound pod is charged to its node at once
//! (assumed), so the next pod sees the room it took before the watch confirms it.
//!
//! `filters` decide feasibility with upstream's reasons; `scores` rank feasible nodes.

pub mod cache;
pub mod default_spread;
pub mod filters;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scores;
pub mod topology_spread;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controllers::events::{EventRecorder, EventType};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::cache::{ClusterCache, NodeInfo};
use crate::image_locality::ImageSpread;
use crate::inter_pod_affinity::{AffinityState, NamespaceLabels};
use crate::queue::SchedulingQueue;
use crate::topology_spread::SpreadState;

/// The user the scheduler acts as.
pub const USER: &str = "system:kube-scheduler";
/// Its lease in `kube-system`.
pub const LEASE: &str = "kube-scheduler";
/// The scheduler name pods ask for by default.
pub const NAME: &str = "default-scheduler";
/// Below this many nodes every node is considered (upstream's minFeasibleNodesToFind).
const MIN_FEASIBLE_NODES: usize = 100;

/// Where one pod goes, or why it cannot.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    Node(String),
    /// `0/N nodes are available: …` with upstream's reasons.
    Unschedulable(String),
}

/// How many feasible nodes are enough to choose from among `total` (upstream's adaptive
/// percentage: 50% less one point per 125 nodes, at least 5%, at least 100 nodes).
pub fn feasible_nodes_to_find(total: usize) -> usize {
    if total < MIN_FEASIBLE_NODES {
        return total;
    }
    let percent = 50usize.saturating_sub(total / 125).max(5);
    (total * percent / 100).max(MIN_FEASIBLE_NODES)
}

/// What placing a pod needs to know besides the nodes.
pub struct ClusterView<'a> {
    /// Namespace name → labels, for namespace selectors of pod affinity terms.
    pub namespace_labels: &'a NamespaceLabels,
    /// How many nodes hold each image.
    pub images: &'a ImageSpread,
    /// Whether any bound pod has pod affinity or anti-affinity terms.
    pub pod_affinity_in_use: bool,
    /// Pending pods nominated to each node by an earlier preemption.
    pub nominated: &'a (dyn Fn(&str) -> Vec<Arc<Pod>> + Sync),
    /// The Services and controllers that define a pod's peers for default spreading.
    pub peers: Option<default_spread::Peers<'a>>,
}

/// Whether `pod` fits `info`, holding the room of pods nominated there that outrank (or
/// equal) it: upstream runs the filters both with those pods added and without them, and
/// the pod must pass both.
fn fits_with_nominated(
    checks: &PodChecks,
    pod: &Pod,
    info: &NodeInfo,
    view: &ClusterView<'_>,
) -> Result<(), Vec<String>> {
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let holding: Vec<Arc<Pod>> = (view.nominated)(info.node.metadata.name.as_deref().unwrap_or(""))
        .into_iter()
        .filter(|p| p.metadata.uid != pod.metadata.uid)
        .filter(|p| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) >= priority)
        .collect();
    if holding.is_empty() {
        return checks.feasible(pod, info);
    }
    let mut with = info.clone();
    for p in holding {
        with.add_pod(p);
    }
    checks.feasible(pod, &with)?;
    checks.feasible(pod, info)
}

/// The per-pod state of the filters that look across nodes, computed once per pod.
pub struct PodChecks {
    spread: Option<SpreadState>,
    affinity: Option<AffinityState>,
}

impl PodChecks {
    pub fn new(pod: &Pod, nodes: &[NodeInfo], view: &ClusterView<'_>) -> PodChecks {
        let spec = pod.spec.as_ref();
        let spreads = spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let defaults = view
            .peers
            .as_ref()
            .and_then(|peers| default_spread::default_constraints(pod, peers, nodes));
        let spread = match defaults {
            _ if spreads => Some(topology_spread::prepare(pod, nodes)),
            Some(constraints) => {
                let mut defaulted = pod.clone();
                defaulted
                    .spec
                    .get_or_insert_default()
                    .topology_spread_constraints = Some(constraints);
                Some(topology_spread::prepare(&defaulted, nodes))
            }
            None => None,
        };
        let affinity = view.pod_affinity_in_use || inter_pod_affinity::has_pod_affinity(pod);
        PodChecks {
            spread,
            affinity: affinity
                .then(|| inter_pod_affinity::prepare(pod, nodes, view.namespace_labels)),
        }
    }

    /// Every filter, in upstream's order; Ok or the reasons the node does not fit.
    pub fn feasible(&self, pod: &Pod, info: &NodeInfo) -> Result<(), Vec<String>> {
        filters::check(pod, &info.node, &info.usage)?;
        if let Some(spread) = &self.spread {
            topology_spread::filter(spread, pod, info).map_err(|r| vec![r])?;
        }
        if let Some(affinity) = &self.affinity {
            inter_pod_affinity::filter(affinity, pod, info).map_err(|r| vec![r])?;
        }
        Ok(())
    }

    /// The weighted sum of every score for each feasible node.
    fn scores(&self, pod: &Pod, feasible: &[&NodeInfo], view: &ClusterView<'_>) -> Vec<i64> {
        let nodes: Vec<&Node> = feasible.iter().map(|i| i.node.as_ref()).collect();
        let mut total: Vec<i64> = feasible
            .iter()
            .map(|i| {
                scores::score(pod, &i.node, &i.usage)
                    + image_locality::WEIGHT * image_locality::score(pod, i, view.images)
            })
            .collect();
        let mut add = |weight: i64, part: Vec<i64>| {
            for (t, p) in total.iter_mut().zip(part) {
                *t += weight * p;
            }
        };
        add(
            scores::TAINT_TOLERATION_WEIGHT,
            scores::taint_toleration(pod, &nodes),
        );
        add(
            scores::NODE_AFFINITY_WEIGHT,
            scores::node_affinity(pod, &nodes),
        );
        if let Some(spread) = &self.spread {
            add(
                topology_spread::WEIGHT,
                topology_spread::scores(spread, pod, feasible),
            );
        }
        if let Some(affinity) = &self.affinity {
            add(
                inter_pod_affinity::WEIGHT,
                inter_pod_affinity::scores(affinity, pod, feasible),
            );
        }
        total
    }
}

/// Places one pod. Nodes are looked at from `*start` on (wrapping), and `*start` moves past
/// the ones looked at, so successive pods spread the search over the whole cluster.
pub fn place(
    pod: &Pod,
    nodes: &[NodeInfo],
    view: &ClusterView<'_>,
    start: &mut usize,
) -> Placement {
    let checks = PodChecks::new(pod, nodes, view);
    let total = nodes.len();
    let enough = feasible_nodes_to_find(total);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut looked = 0;
    for i in 0..total {
        if feasible.len() >= enough {
            break;
        }
        let info = &nodes[(*start + i) % total];
        looked += 1;
        match fits_with_nominated(&checks, pod, info, view) {
            Ok(()) => feasible.push(info),
            Err(why) => {
                for reason in why {
                    *reasons.entry(reason).or_default() += 1;
                }
            }
        }
    }
    if total > 0 {
        *start = (*start + looked) % total;
    }
    let scores = checks.scores(pod, &feasible, view);
    let best = feasible
        .iter()
        .zip(scores)
        .map(|(info, score)| (score, info.name()))
        .max_by(|(a, an), (b, bn)| a.cmp(b).then(bn.cmp(an)));
    match best {
        Some((_, node)) => Placement::Node(node),
        None => {
            let listed: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            let detail = if listed.is_empty() {
                String::new()
            } else {
                format!(" {}", listed.join(", "))
            };
            Placement::Unschedulable(format!("0/{total} nodes are available:{detail}."))
        }
    }
}

/// Whether this scheduler should place the pod.
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
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

struct Scheduler {
    client: kube::Client,
    recorder: EventRecorder,
    cache: ClusterCache,
    queue: SchedulingQueue,
    /// Pods bound by this process that the watch has not shown bound yet: uid → node.
    assumed: HashMap<String, String>,
    /// Where the next node search starts.
    next_start: usize,
    /// Objects of an ongoing relist, applied together once it is complete.
    pod_relist: Option<Vec<Pod>>,
    node_relist: Option<Vec<Node>>,
    pods_listed: bool,
    nodes_listed: bool,
    namespaces: Store<Namespace>,
    budgets: Store<PodDisruptionBudget>,
    services: Store<Service>,
    controllers: Store<ReplicationController>,
    replica_sets: Store<ReplicaSet>,
    stateful_sets: Store<StatefulSet>,
    /// How many nodes hold each image; rebuilt after node changes.
    images: Option<ImageSpread>,
}

impl Scheduler {
    fn on_pod(&mut self, pod: Pod) {
        let Some(uid) = pod.uid() else {
            return;
        };
        let bound = cache::bound_node(&pod).is_some();
        if self.assumed.contains_key(&uid) {
            if !bound && is_pending(&pod) {
                // An older copy than our binding: the assumption stands.
                return;
            }
            self.assumed.remove(&uid);
        }
        let pending = is_pending(&pod);
        let pod = Arc::new(pod);
        let moved = self.cache.apply_pod(pod.clone());
        if pending {
            self.queue.upsert(pod);
        } else {
            self.queue.remove(&uid);
        }
        if moved || bound {
            self.queue.cluster_changed(Instant::now());
        }
    }

    fn on_pod_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Apply(pod) => self.on_pod(pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.uid() {
                    self.assumed.remove(&uid);
                    self.queue.remove(&uid);
                }
                if self.cache.delete_pod(&pod) {
                    self.queue.cluster_changed(Instant::now());
                }
            }
            watcher::Event::Init => self.pod_relist = Some(Vec::new()),
            watcher::Event::InitApply(pod) => self.pod_relist.get_or_insert_default().push(pod),
            watcher::Event::InitDone => {
                self.cache.clear_pods();
                self.queue.clear();
                self.assumed.clear();
                for pod in self.pod_relist.take().unwrap_or_default() {
                    self.on_pod(pod);
                }
                self.pods_listed = true;
            }
        }
    }

    fn on_node_event(&mut self, event: watcher::Event<Node>) {
        self.images = None;
        let changed = match event {
            watcher::Event::Apply(node) => self.cache.apply_node(Arc::new(node)),
            watcher::Event::Delete(node) => {
                self.cache.delete_node(&node.name_any());
                false
            }
            watcher::Event::Init => {
                self.node_relist = Some(Vec::new());
                false
            }
            watcher::Event::InitApply(node) => {
                self.node_relist.get_or_insert_default().push(node);
                false
            }
            watcher::Event::InitDone => {
                let listed = self.node_relist.take().unwrap_or_default();
                let names: std::collections::HashSet<String> =
                    listed.iter().map(ResourceExt::name_any).collect();
                let gone: Vec<String> = self
                    .cache
                    .nodes()
                    .iter()
                    .map(NodeInfo::name)
                    .filter(|n| !names.contains(n))
                    .collect();
                for name in gone {
                    self.cache.delete_node(&name);
                }
                for node in listed {
                    self.cache.apply_node(Arc::new(node));
                }
                self.nodes_listed = true;
                true
            }
        };
        if changed {
            self.queue.cluster_changed(Instant::now());
        }
    }

    /// Places the next ready pod, if any.
    async fn schedule_one(&mut self) {
        let now = Instant::now();
        let Some(pod) = self.queue.pop(now) else {
            return;
        };
        let Some(uid) = pod.uid() else {
            return;
        };
        let namespace_labels: NamespaceLabels = self
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let images = self
            .images
            .get_or_insert_with(|| ImageSpread::from_nodes(self.cache.nodes()));
        let cache = &self.cache;
        let nominated = |node: &str| cache.nominated_on(node).to_vec();
        let (services, controllers, replica_sets, stateful_sets) = (
            self.services.state(),
            self.controllers.state(),
            self.replica_sets.state(),
            self.stateful_sets.state(),
        );
        let view = ClusterView {
            namespace_labels: &namespace_labels,
            images,
            pod_affinity_in_use: cache.pod_affinity_in_use(),
            nominated: &nominated,
            peers: Some(default_spread::Peers {
                services: &services,
                controllers: &controllers,
                replica_sets: &replica_sets,
                stateful_sets: &stateful_sets,
            }),
        };
        match place(&pod, self.cache.nodes(), &view, &mut self.next_start) {
            Placement::Node(node) => {
                self.cache.assume(&pod, &node);
                self.assumed.insert(uid.clone(), node.clone());
                if self.bind(&pod, &node).await {
                    self.queue.remove(&uid);
                } else {
                    self.cache.forget(&pod);
                    self.assumed.remove(&uid);
                    self.queue.retry(&uid, Instant::now());
                }
            }
            Placement::Unschedulable(message) => {
                self.queue.unschedulable(&uid, now);
                let checks = PodChecks::new(&pod, self.cache.nodes(), &view);
                let message = self.preempt_for(&pod, &checks, &message).await;
                self.report_unschedulable(&pod, &message).await;
            }
        }
    }

    /// Tries to make room for a pod that fits nowhere by evicting lower-priority pods
    /// (upstream's DefaultPreemption). On success the victims are marked and deleted and the
    /// pod is nominated to their node; it is placed once they are gone. Returns the
    /// FailedScheduling message.
    ///
    /// Every filter judges whether the pod fits once victims are gone, but topology spread
    /// and inter-pod affinity count the victims as still there (so pods are never evicted
    /// for a spread or affinity they would not fix, nor evicted to fix one); and pods
    /// nominated to a node do not hold its room against others.
    async fn preempt_for(&self, pod: &Pod, checks: &PodChecks, message: &str) -> String {
        let budgets: Vec<PodDisruptionBudget> =
            self.budgets.state().iter().map(|b| (**b).clone()).collect();
        let fits = |p: &Pod, info: &NodeInfo| checks.feasible(p, info);
        let can_help = |info: &NodeInfo| preemption::removal_can_help(pod, &info.node);
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        match preemption::select_victims(pod, self.cache.nodes(), &budgets, &fits, &can_help) {
            Ok(chosen) => {
                for victim in &chosen.victims {
                    self.evict(pod, victim, &chosen.node).await;
                }
                let patch = json!({"status": {"nominatedNodeName": chosen.node}});
                if let Err(e) = api
                    .patch_status(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    warn!(pod = %pod.name_any(), error = %e, "nominating a node failed");
                }
                message.to_owned()
            }
            Err(why) => {
                let nominated = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if why.clear_nominated_node && nominated {
                    let patch = json!({"status": {"nominatedNodeName": null}});
                    let _ = api
                        .patch_status(
                            &pod.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await;
                }
                preemption::failed_scheduling_message(message, &why)
            }
        }
    }

    /// Marks a victim as disrupted, records why, and deletes it.
    async fn evict(&self, preemptor: &Pod, victim: &Pod, node: &str) {
        let namespace = victim.namespace().unwrap_or_default();
        let name = victim.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut condition = preemption::victim_condition(preemptor);
        condition.last_transition_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        let patch = json!({"status": {"conditions": [condition]}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            warn!(pod = %name, error = %e, "marking a preemption victim failed");
        }
        self.recorder
            .record(
                &victim.object_ref(&()),
                EventType::Normal,
                "Preempted",
                "Preempting",
                preemption::preempted_note(preemptor, node),
            )
            .await;
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: victim.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => info!(pod = %name, node, "preempted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(pod = %name, error = %e, "deleting a preemption victim failed"),
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

/// A store of every `K`, and the watch that fills it.
fn reflected<K>(client: &kube::Client) -> (Store<K>, impl std::future::Future<Output = ()> + use<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::Scope: Send,
{
    let (store, writer) = reflector::store();
    let watch = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
    (store, watch)
}

/// Runs the scheduler until its watches end.
pub async fn run(client: kube::Client, identity: String) -> anyhow::Result<()> {
    let mut pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let (namespaces, namespace_watch) = reflected::<Namespace>(&client);
    let (budgets, budget_watch) = reflected::<PodDisruptionBudget>(&client);
    let (services, service_watch) = reflected::<Service>(&client);
    let (controllers, controller_watch) = reflected::<ReplicationController>(&client);
    let (replica_sets, replica_set_watch) = reflected::<ReplicaSet>(&client);
    let (stateful_sets, stateful_set_watch) = reflected::<StatefulSet>(&client);
    let mut side_watches = Box::pin(futures::future::join3(
        futures::future::join(namespace_watch, budget_watch),
        futures::future::join(service_watch, controller_watch),
        futures::future::join(replica_set_watch, stateful_set_watch),
    ));
    let recorder = EventRecorder::new(client.clone(), NAME, &identity);
    let mut scheduler = Scheduler {
        client,
        recorder,
        cache: ClusterCache::default(),
        queue: SchedulingQueue::default(),
        assumed: HashMap::new(),
        next_start: 0,
        pod_relist: None,
        node_relist: None,
        pods_listed: false,
        nodes_listed: false,
        namespaces,
        budgets,
        services,
        controllers,
        replica_sets,
        stateful_sets,
        images: None,
    };
    loop {
        let listed = scheduler.pods_listed && scheduler.nodes_listed;
        // Events first; a pod is placed only when none is waiting.
        let pause = if listed && scheduler.queue.has_active() {
            Duration::ZERO
        } else {
            scheduler
                .queue
                .next_ready_in(Instant::now())
                .unwrap_or(Duration::from_secs(60))
        };
        tokio::select! {
            biased;
            event = pod_events.next() => match event {
                Some(Ok(e)) => scheduler.on_pod_event(e),
                // The backoff retries; the stream goes on.
                Some(Err(_)) => {}
                None => anyhow::bail!("pod watch ended"),
            },
            event = node_events.next() => match event {
                Some(Ok(e)) => scheduler.on_node_event(e),
                Some(Err(_)) => {}
                None => anyhow::bail!("node watch ended"),
            },
            _ = &mut side_watches => anyhow::bail!("a namespace, budget, service or controller watch ended"),
            _ = tokio::time::sleep(pause) => {
                if listed {
                    scheduler.schedule_one().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::tests::{node, pod};

    fn view() -> ClusterView<'static> {
        static NO_LABELS: std::sync::LazyLock<NamespaceLabels> =
            std::sync::LazyLock::new(NamespaceLabels::new);
        static NO_IMAGES: std::sync::LazyLock<ImageSpread> =
            std::sync::LazyLock::new(|| ImageSpread::from_nodes(&[]));
        ClusterView {
            namespace_labels: &NO_LABELS,
            images: &NO_IMAGES,
            pod_affinity_in_use: false,
            nominated: &|_| Vec::new(),
            peers: None,
        }
    }

    #[test]
    fn a_nominated_preemptor_holds_its_room_against_lower_priority_pods() {
        let mut cache = ClusterCache::default();
        cache.apply_node(Arc::new(node("a", "4", "16Gi", "110")));
        let with_priority = |cpu: &str, priority: i32, uid: &str| {
            let mut p = pod(cpu);
            p.metadata.uid = Some(uid.into());
            p.spec.get_or_insert_default().priority = Some(priority);
            p
        };
        let preemptor = Arc::new(with_priority("3", 10, "preemptor"));
        let nominated = |node: &str| {
            if node == "a" {
                vec![preemptor.clone()]
            } else {
                Vec::new()
            }
        };
        let labels = NamespaceLabels::new();
        let images = ImageSpread::from_nodes(&[]);
        let view = ClusterView {
            namespace_labels: &labels,
            images: &images,
            pod_affinity_in_use: false,
            nominated: &nominated,
            peers: None,
        };
        let mut start = 0;
        let low = with_priority("2", 0, "low");
        assert_eq!(
            place(&low, cache.nodes(), &view, &mut start),
            Placement::Unschedulable("0/1 nodes are available: 1 Insufficient cpu.".into())
        );
        let high = with_priority("2", 20, "high");
        assert_eq!(
            place(&high, cache.nodes(), &view, &mut start),
            Placement::Node("a".into())
        );
        // The preemptor itself is not held back by its own nomination.
        assert_eq!(
            place(&preemptor, cache.nodes(), &view, &mut start),
            Placement::Node("a".into())
        );
    }

    #[test]
    fn large_clusters_stop_after_enough_feasible_nodes() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(150), 100);
    }

    #[test]
    fn successive_searches_start_where_the_last_one_stopped() {
        let mut cache = ClusterCache::default();
        for i in 0..1000 {
            cache.apply_node(Arc::new(node(&format!("n{i:04}"), "4", "16Gi", "110")));
        }
        let mut start = 0;
        let p = pod("100m");
        assert!(matches!(
            place(&p, cache.nodes(), &view(), &mut start),
            Placement::Node(_)
        ));
        assert_eq!(start, 420);
        assert!(matches!(
            place(&p, cache.nodes(), &view(), &mut start),
            Placement::Node(_)
        ));
        assert_eq!(start, 840);
    }

    #[test]
    fn a_thousand_pods_fit_onto_a_hundred_nodes_without_overcommitting() {
        let mut cache = ClusterCache::default();
        for i in 0..100 {
            cache.apply_node(Arc::new(node(&format!("n{i:03}"), "4", "16Gi", "110")));
        }
        let mut start = 0;
        for i in 0..1000 {
            let mut p = pod("350m");
            p.metadata.uid = Some(format!("uid-{i}"));
            match place(&p, cache.nodes(), &view(), &mut start) {
                Placement::Node(n) => cache.assume(&p, &n),
                Placement::Unschedulable(m) => panic!("{m}"),
            }
        }
        for info in cache.nodes() {
            let u = &info.usage;
            assert!(
                u.requested["cpu"] <= 4000,
                "{} is overcommitted: {u:?}",
                info.name()
            );
            // Spread: least-allocated scoring fills every node evenly.
            assert_eq!(u.pods, 10, "{} holds {} pods", info.name(), u.pods);
        }
        // 11 × 350m fit in 4 CPUs, so room remains for 350m pods, but not for 1 CPU.
        let p = pod("1");
        let Placement::Unschedulable(message) = place(&p, cache.nodes(), &view(), &mut start)
        else {
            panic!("a 1-CPU pod should not fit");
        };
        assert_eq!(message, "0/100 nodes are available: 100 Insufficient cpu.");
    }
}
