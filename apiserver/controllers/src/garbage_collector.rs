//! The garbage collector: deletes objects whose owners are all gone, and carries out the
//! Orphan and Foreground deletion policies the API server records as the `orphan` and
//! `foregroundDeletion` finalizers.
//!
//! It watches the metadata of every listable, deletable resource the server's discovery
//! offers and keeps a graph of owner references (uid → object, owner uid → dependents). Work
//! is queued by uid when an object with owners appears, when an owner is deleted, or when an
//! owner is marked for deletion with one of the two finalizers. An owner missing from the
//! graph is looked up through the API before anything is deleted for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ControllerContext;
use crate::api_errors::{is_status, not_found};

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// Where an object lives, enough to read, patch or delete it.
#[derive(Debug, Clone)]
struct Location {
    resource: Arc<ApiResource>,
    namespaced: bool,
    namespace: Option<String>,
    name: String,
}

#[derive(Debug, Clone)]
struct Node {
    at: Location,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

/// The owner-reference graph.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Records an object; returns the uids whose handling may have changed.
    fn upsert(&mut self, uid: String, node: Node) -> Vec<String> {
        let mut touched = Vec::new();
        if let Some(old) = self.nodes.get(&uid) {
            for r in &old.owners {
                if let Some(set) = self.dependents.get_mut(&r.uid) {
                    set.remove(&uid);
                }
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        let needs_work = !node.owners.is_empty()
            || (node.deleting
                && node
                    .finalizers
                    .iter()
                    .any(|f| f == ORPHAN || f == FOREGROUND));
        if needs_work {
            touched.push(uid.clone());
        }
        self.nodes.insert(uid, node);
        touched
    }

    /// The uids of the objects that name `uid` as an owner.
    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets an object; returns its dependents and owners, which need another look.
    fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched = self.dependents_of(uid);
        if let Some(old) = self.nodes.remove(uid) {
            for r in &old.owners {
                if let Some(set) = self.dependents.get_mut(&r.uid) {
                    set.remove(uid);
                }
                touched.push(r.uid.clone());
            }
        }
        touched
    }
}

/// What to do with a dependent given the state of its owners.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some owner is alive and not waiting on its dependents: keep it, dropping references
    /// to owners that are gone.
    Keep { drop_refs: Vec<String> },
    /// Every remaining owner is being deleted in the foreground and this object blocks it.
    DeleteForeground,
    /// Every owner is gone.
    DeleteBackground,
}

/// An owner's state as the collector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    Absent,
    Alive,
    /// Being deleted with `foregroundDeletion`.
    WaitingForDependents,
}

pub fn verdict(owners: &[(OwnerReference, OwnerState)]) -> Verdict {
    let absent: Vec<String> = owners
        .iter()
        .filter(|(_, s)| *s == OwnerState::Absent)
        .map(|(r, _)| r.uid.clone())
        .collect();
    if owners.iter().any(|(_, s)| *s == OwnerState::Alive) {
        return Verdict::Keep { drop_refs: absent };
    }
    if owners.iter().any(|(r, s)| {
        *s == OwnerState::WaitingForDependents && r.block_owner_deletion == Some(true)
    }) {
        return Verdict::DeleteForeground;
    }
    if owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents)
    {
        // Not blocking: the owner goes first, then this is collected as an orphan.
        return Verdict::Keep { drop_refs: absent };
    }
    Verdict::DeleteBackground
}

type MetaEvent = (
    Arc<ApiResource>,
    bool,
    watcher::Event<PartialObjectMeta<DynamicObject>>,
);

/// Runs the collector until its watches end.
pub async fn run(ctx: ControllerContext) -> anyhow::Result<()> {
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let (tx, mut rx) = mpsc::channel::<MetaEvent>(1024);
    // Owner references may name any served version, so every version resolves.
    let mut kinds: HashMap<(String, String), (Arc<ApiResource>, bool)> = HashMap::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (ar, caps) in group.versioned_resources(version) {
                let namespaced = caps.scope == Scope::Namespaced;
                kinds.insert(
                    (ar.api_version.clone(), ar.kind.clone()),
                    (Arc::new(ar), namespaced),
                );
            }
        }
    }
    // Each resource is watched once, in its preferred version.
    let mut watches = tokio::task::JoinSet::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::WATCH)
                || !caps.supports_operation(verbs::DELETE)
                || ar.plural == "events"
            {
                continue;
            }
            let namespaced = caps.scope == Scope::Namespaced;
            let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(ctx.client.clone(), &ar);
            let ar = Arc::new(ar);
            let tx = tx.clone();
            watches.spawn(async move {
                let mut stream = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(e) => {
                            if tx.send((ar.clone(), namespaced, e)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => debug!(resource = %ar.plural, error = %e, "gc watch error"),
                    }
                }
            });
        }
    }
    drop(tx);
    let mut collector = Collector {
        ctx,
        kinds,
        graph: Graph::default(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        listing: HashMap::new(),
    };
    info!(resources = watches.len(), "garbage collector watching");
    loop {
        // Take every event that is ready before doing work, so the graph is current.
        tokio::select! {
            biased;
            event = rx.recv() => match event {
                Some(e) => collector.observe(e),
                None => anyhow::bail!("garbage collector watches ended"),
            },
            _ = futures::future::ready(()), if !collector.queue.is_empty() => {
                let uid = collector.queue.pop_front().expect("queue is not empty");
                collector.queued.remove(&uid);
                if let Err(e) = collector.process(&uid).await {
                    warn!(uid, error = %e, "garbage collection step failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    // Retried after the events that are already waiting.
                    collector.enqueue(vec![uid]);
                }
            }
        }
    }
}

struct Collector {
    ctx: ControllerContext,
    kinds: HashMap<(String, String), (Arc<ApiResource>, bool)>,
    graph: Graph,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// uids seen during a (re)list of a resource (by group and plural), to forget the ones
    /// that vanished.
    listing: HashMap<(String, String), HashSet<String>>,
}

impl Collector {
    fn enqueue(&mut self, uids: Vec<String>) {
        for uid in uids {
            if self.queued.insert(uid.clone()) {
                self.queue.push_back(uid);
            }
        }
    }

    fn observe(&mut self, (ar, namespaced, event): MetaEvent) {
        let node_of = |obj: &PartialObjectMeta<DynamicObject>| {
            let m = &obj.metadata;
            (
                m.uid.clone().unwrap_or_default(),
                Node {
                    at: Location {
                        resource: ar.clone(),
                        namespaced,
                        namespace: m.namespace.clone(),
                        name: m.name.clone().unwrap_or_default(),
                    },
                    owners: m.owner_references.clone().unwrap_or_default(),
                    deleting: m.deletion_timestamp.is_some(),
                    finalizers: m.finalizers.clone().unwrap_or_default(),
                },
            )
        };
        let resource_key = (ar.group.clone(), ar.plural.clone());
        match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                let (uid, node) = node_of(&obj);
                if let Some(seen) = self.listing.get_mut(&resource_key) {
                    seen.insert(uid.clone());
                }
                let touched = self.graph.upsert(uid, node);
                self.enqueue(touched);
            }
            watcher::Event::Delete(obj) => {
                let uid = obj.metadata.uid.unwrap_or_default();
                let touched = self.graph.remove(&uid);
                self.enqueue(touched);
            }
            watcher::Event::Init => {
                self.listing.insert(resource_key, HashSet::new());
            }
            watcher::Event::InitDone => {
                let seen = self.listing.remove(&resource_key).unwrap_or_default();
                let vanished: Vec<String> = self
                    .graph
                    .nodes
                    .iter()
                    .filter(|(_, n)| {
                        n.at.resource.plural == ar.plural && n.at.resource.group == ar.group
                    })
                    .filter(|(uid, _)| !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in vanished {
                    let touched = self.graph.remove(&uid);
                    self.enqueue(touched);
                }
            }
        }
    }

    fn api_at(&self, at: &Location) -> Api<DynamicObject> {
        match (&at.namespace, at.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.ctx.client.clone(), ns, &*at.resource),
            _ => Api::all_with(self.ctx.client.clone(), &*at.resource),
        }
    }

    /// The state of one owner of `dependent`.
    async fn owner_state(
        &self,
        dependent: &Location,
        r: &OwnerReference,
    ) -> Result<OwnerState, kube::Error> {
        let from_node = |n: &Node| {
            if n.deleting && n.finalizers.iter().any(|f| f == FOREGROUND) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Alive
            }
        };
        if let Some(n) = self.graph.nodes.get(&r.uid) {
            return Ok(from_node(n));
        }
        // Not seen (yet): ask the server.
        let Some((resource, namespaced)) = self.kinds.get(&(r.api_version.clone(), r.kind.clone()))
        else {
            // An unknown kind is treated as present, as upstream does for unresolvable owners.
            return Ok(OwnerState::Alive);
        };
        let at = Location {
            resource: resource.clone(),
            namespaced: *namespaced,
            namespace: if *namespaced {
                dependent.namespace.clone()
            } else {
                None
            },
            name: r.name.clone(),
        };
        match self.api_at(&at).get_metadata_opt(&r.name).await? {
            Some(owner) if owner.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let deleting = owner.metadata.deletion_timestamp.is_some();
                let foreground = owner
                    .metadata
                    .finalizers
                    .unwrap_or_default()
                    .iter()
                    .any(|f| f == FOREGROUND);
                Ok(if deleting && foreground {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Alive
                })
            }
            _ => Ok(OwnerState::Absent),
        }
    }

    async fn process(&mut self, uid: &str) -> Result<(), kube::Error> {
        let Some(node) = self.graph.nodes.get(uid).cloned() else {
            return Ok(());
        };
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            self.orphan_dependents(uid).await?;
            self.remove_finalizer(&node.at, uid, ORPHAN).await?;
            return Ok(());
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            let mut blocking = 0;
            for dep_uid in self.graph.dependents_of(uid) {
                let Some(dep) = self.graph.nodes.get(&dep_uid).cloned() else {
                    continue;
                };
                let blocks = dep
                    .owners
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
                if blocks {
                    blocking += 1;
                }
                if !dep.deleting {
                    let propagation = if blocks { "Foreground" } else { "Background" };
                    self.delete(&dep.at, &dep_uid, propagation).await?;
                }
            }
            if blocking == 0 {
                self.remove_finalizer(&node.at, uid, FOREGROUND).await?;
            }
            return Ok(());
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(());
        }
        let mut states = Vec::new();
        for r in &node.owners {
            states.push((r.clone(), self.owner_state(&node.at, r).await?));
        }
        match verdict(&states) {
            Verdict::Keep { drop_refs } if drop_refs.is_empty() => Ok(()),
            Verdict::Keep { drop_refs } => self.drop_owner_refs(&node.at, uid, &drop_refs).await,
            Verdict::DeleteForeground => self.delete(&node.at, uid, "Foreground").await,
            Verdict::DeleteBackground => self.delete(&node.at, uid, "Background").await,
        }
    }

    async fn delete(&self, at: &Location, uid: &str, propagation: &str) -> Result<(), kube::Error> {
        info!(resource = %at.resource.plural, namespace = at.namespace.as_deref().unwrap_or(""), name = %at.name, propagation, "garbage collecting");
        let params = DeleteParams {
            propagation_policy: Some(match propagation {
                "Foreground" => kube::api::PropagationPolicy::Foreground,
                _ => kube::api::PropagationPolicy::Background,
            }),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api_at(at).delete(&at.name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn orphan_dependents(&self, owner_uid: &str) -> Result<(), kube::Error> {
        for dep_uid in self.graph.dependents_of(owner_uid) {
            if let Some(dep) = self.graph.nodes.get(&dep_uid) {
                self.drop_owner_refs(&dep.at, &dep_uid, &[owner_uid.to_owned()])
                    .await?;
            }
        }
        Ok(())
    }

    async fn drop_owner_refs(
        &self,
        at: &Location,
        uid: &str,
        owners: &[String],
    ) -> Result<(), kube::Error> {
        self.edit_live_metadata(at, uid, |meta| {
            let refs = meta.owner_references.as_deref().unwrap_or_default();
            let kept: Vec<&OwnerReference> =
                refs.iter().filter(|r| !owners.contains(&r.uid)).collect();
            (kept.len() != refs.len()).then(|| json!({ "ownerReferences": kept }))
        })
        .await
    }

    async fn remove_finalizer(
        &self,
        at: &Location,
        uid: &str,
        finalizer: &str,
    ) -> Result<(), kube::Error> {
        self.edit_live_metadata(at, uid, |meta| {
            let finalizers = meta.finalizers.as_deref().unwrap_or_default();
            let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            (kept.len() != finalizers.len()).then(|| json!({ "finalizers": kept }))
        })
        .await
    }

    /// Changes the live object's metadata by the merge patch `edit` computes from it (`None`:
    /// nothing to change). The patch carries the resourceVersion it was computed from, so a
    /// concurrent write makes it conflict and it is computed again; an object that is gone or
    /// replaced (another uid) is left alone.
    async fn edit_live_metadata(
        &self,
        at: &Location,
        uid: &str,
        edit: impl Fn(&ObjectMeta) -> Option<serde_json::Value>,
    ) -> Result<(), kube::Error> {
        let api = self.api_at(at);
        for _ in 0..5 {
            let Some(live) = api.get_metadata_opt(&at.name).await? else {
                return Ok(());
            };
            if live.metadata.uid.as_deref() != Some(uid) {
                return Ok(());
            }
            let Some(mut metadata) = edit(&live.metadata) else {
                return Ok(());
            };
            metadata["resourceVersion"] = json!(live.metadata.resource_version);
            let patch = json!({ "metadata": metadata });
            match api
                .patch(&at.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            uid: uid.into(),
            block_owner_deletion: Some(block),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn an_object_whose_owners_are_all_gone_is_collected() {
        assert_eq!(
            verdict(&[(owner("a", true), OwnerState::Absent)]),
            Verdict::DeleteBackground
        );
    }

    #[test]
    fn one_live_owner_keeps_an_object_and_dangling_references_are_dropped() {
        let v = verdict(&[
            (owner("a", true), OwnerState::Absent),
            (owner("b", false), OwnerState::Alive),
        ]);
        assert_eq!(
            v,
            Verdict::Keep {
                drop_refs: vec!["a".into()]
            }
        );
    }

    #[test]
    fn blocking_dependents_of_a_foreground_deletion_go_in_the_foreground() {
        assert_eq!(
            verdict(&[(owner("a", true), OwnerState::WaitingForDependents)]),
            Verdict::DeleteForeground
        );
        assert_eq!(
            verdict(&[(owner("a", false), OwnerState::WaitingForDependents)]),
            Verdict::Keep { drop_refs: vec![] }
        );
    }

    #[test]
    fn removing_an_owner_queues_its_dependents() {
        let resource = Arc::new(ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()));
        let at = Location {
            resource,
            namespaced: true,
            namespace: Some("default".into()),
            name: "p".into(),
        };
        let mut g = Graph::default();
        let touched = g.upsert(
            "pod".into(),
            Node {
                at,
                owners: vec![owner("rs", true)],
                deleting: false,
                finalizers: vec![],
            },
        );
        assert_eq!(touched, ["pod"]);
        assert_eq!(g.remove("rs"), ["pod"]);
    }
}
