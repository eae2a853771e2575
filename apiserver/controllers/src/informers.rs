//! Shared informers: one watch per resource kind, reflected into a store that every
//! controller reads, with each controller subscribing to the same stream of changed objects.
//!
//! An informer is made, subscribed to by the controllers that need it, then started; starting
//! spawns the watch that feeds the store and the subscribers.
//!
//! Besides the store, an informer keeps two indexes, by namespace and by controller owner uid,
//! so a reconcile reads the few objects it concerns instead of scanning every object of the
//! kind (upstream's namespace-indexed listers).
//!
//! Subscribers see every object that was added, changed or deleted, as client-go's informers
//! report them: a deleted object arrives in its last known state, and one that vanished while
//! the watch was being re-established (found missing by the relist) arrives as it was last
//! seen. kube-rs's own shared reflector stream reports only additions and changes, so a
//! controller would not hear that a pod it owns was deleted.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

/// How many changes a slow subscriber may lag behind before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 1024;

/// The objects of one kind by namespace and by controller owner uid, kept in step with the
/// informer's store.
pub struct Indexes<K> {
    inner: Arc<RwLock<IndexMaps<K>>>,
    /// Turns true once the indexes hold the first complete list.
    ready: tokio::sync::watch::Sender<bool>,
}

impl<K> Clone for Indexes<K> {
    fn clone(&self) -> Self {
        Indexes {
            inner: self.inner.clone(),
            ready: self.ready.clone(),
        }
    }
}

struct IndexMaps<K> {
    /// namespace → name → object.
    by_namespace: HashMap<String, HashMap<String, Arc<K>>>,
    /// controller owner uid → (namespace, name) of the objects it controls.
    by_owner: HashMap<String, HashSet<(String, String)>>,
}

fn key_of<K: Resource>(obj: &K) -> (String, String) {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn controller_uid<K: Resource>(obj: &K) -> Option<String> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

impl<K: Resource> IndexMaps<K> {
    fn remove(&mut self, key: &(String, String)) {
        let Some(ns) = self.by_namespace.get_mut(&key.0) else {
            return;
        };
        if let Some(old) = ns.remove(&key.1) {
            if ns.is_empty() {
                self.by_namespace.remove(&key.0);
            }
            if let Some(uid) = controller_uid(old.as_ref())
                && let Some(set) = self.by_owner.get_mut(&uid)
            {
                set.remove(key);
                if set.is_empty() {
                    self.by_owner.remove(&uid);
                }
            }
        }
    }

    fn insert(&mut self, obj: Arc<K>) {
        let key = key_of(obj.as_ref());
        self.remove(&key);
        if let Some(uid) = controller_uid(obj.as_ref()) {
            self.by_owner.entry(uid).or_default().insert(key.clone());
        }
        self.by_namespace
            .entry(key.0)
            .or_default()
            .insert(key.1, obj);
    }
}

/// Waits for a store's first complete list.
///
/// kube-runtime's `Store::wait_until_ready` keeps one waker for all its waiters (a shared
/// oneshot receiver), so when several controllers wait on one store together all but the
/// last can sleep forever (seen: the node lifecycle controller never starting, its nodes'
/// not-ready taints never lifted). Waiting in short rounds registers this waiter again each
/// round; a store that is ready answers at once.
pub async fn synced<K>(
    what: &str,
    store: &Store<K>,
) -> Result<(), kube::runtime::reflector::store::WriterDropped>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        match tokio::time::timeout(SYNC_ROUND, store.wait_until_ready()).await {
            Ok(result) => return result,
            Err(_) if !warned && started.elapsed() > SLOW_SYNC => {
                warned = true;
                tracing::warn!(
                    informer = what,
                    "still waiting for an informer's first list"
                );
            }
            Err(_) => {}
        }
    }
}

/// How long one round of [`synced`] waits, and when it says the wait is long.
const SYNC_ROUND: std::time::Duration = std::time::Duration::from_millis(200);
const SLOW_SYNC: std::time::Duration = std::time::Duration::from_secs(30);

impl<K: Resource> Indexes<K> {
    fn new() -> Self {
        Indexes {
            inner: Arc::new(RwLock::new(IndexMaps {
                by_namespace: HashMap::new(),
                by_owner: HashMap::new(),
            })),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Waits until the indexes hold the first complete list (they are rebuilt just after the
    /// store takes it, so a store being ready does not yet mean its indexes are).
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = ready.wait_for(|r| *r).await;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexMaps<K>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexMaps<K>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every object in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read()
            .by_namespace
            .get(namespace)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The objects whose controller owner reference names `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        let maps = self.read();
        let Some(keys) = maps.by_owner.get(uid) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|(ns, name)| maps.by_namespace.get(ns)?.get(name).cloned())
            .collect()
    }

    fn rebuild(&self, objects: &[Arc<K>]) {
        let mut maps = self.write();
        maps.by_namespace.clear();
        maps.by_owner.clear();
        for obj in objects {
            maps.insert(obj.clone());
        }
        drop(maps);
        self.ready.send_replace(true);
    }
}

pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    indexes: Indexes<K>,
    writer: Option<Writer<K>>,
    subscribers: Vec<mpsc::Sender<Arc<K>>>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let writer = Writer::new(());
        Informer {
            api,
            config,
            store: writer.as_reader(),
            indexes: Indexes::new(),
            writer: Some(writer),
            subscribers: Vec::new(),
        }
    }

    /// The store this informer fills.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The store's objects by namespace and by controller owner.
    pub fn indexes(&self) -> Indexes<K> {
        self.indexes.clone()
    }

    /// A stream of the objects as they change, deletions included. Must be taken before
    /// `start`.
    pub fn subscribe(&mut self) -> impl Stream<Item = Arc<K>> + Send + use<K> {
        assert!(
            self.writer.is_some(),
            "subscribe to an informer before starting it"
        );
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        self.subscribers.push(tx);
        ReceiverStream::new(rx)
    }

    /// Spawns the watch into `tasks`.
    pub fn start(&mut self, tasks: &mut JoinSet<()>) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let subscribers = std::mem::take(&mut self.subscribers);
        let store = self.store.clone();
        let indexes = self.indexes.clone();
        let mut events = watcher(self.api.clone(), self.config.clone())
            .default_backoff()
            .boxed();
        tasks.spawn(async move {
            // What the store held when a relist began, to find what vanished meanwhile.
            let mut before_relist: Vec<Arc<K>> = Vec::new();
            while let Some(event) = events.next().await {
                // Errors are retried by the backoff; the stream goes on.
                let Ok(event) = event else { continue };
                if matches!(event, watcher::Event::Init) {
                    before_relist = store.state();
                }
                writer.apply_watcher_event(&event);
                let changed: Vec<Arc<K>> = match event {
                    watcher::Event::Apply(obj) => {
                        let stored = store.get(&ObjectRef::from_obj(&obj));
                        if let Some(o) = &stored {
                            indexes.write().insert(o.clone());
                        }
                        stored.into_iter().collect()
                    }
                    watcher::Event::Delete(obj) => {
                        indexes.write().remove(&key_of(&obj));
                        vec![Arc::new(obj)]
                    }
                    watcher::Event::InitDone => {
                        let now = store.state();
                        indexes.rebuild(&now);
                        let present: HashSet<ObjectRef<K>> = now
                            .iter()
                            .map(|o| ObjectRef::from_obj(o.as_ref()))
                            .collect();
                        let vanished = std::mem::take(&mut before_relist)
                            .into_iter()
                            .filter(|o| !present.contains(&ObjectRef::from_obj(o.as_ref())));
                        now.into_iter().chain(vanished).collect()
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
                };
                for obj in changed {
                    for subscriber in &subscribers {
                        // A subscriber that is gone has stopped; the others go on.
                        let _ = subscriber.send(obj.clone()).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::{owned_by, pod};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn indexes_follow_inserts_moves_and_removals() {
        let indexes: Indexes<Pod> = Indexes::new();
        let owner = OwnerReference {
            uid: "rs-1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let mut other_ns = pod("b", &[]);
        other_ns.metadata.namespace = Some("kube-system".into());
        indexes.rebuild(&[
            Arc::new(owned_by(pod("a", &[]), &owner)),
            Arc::new(other_ns),
        ]);
        assert_eq!(indexes.in_namespace("default").len(), 1);
        assert_eq!(indexes.controlled_by("rs-1").len(), 1);
        // Released: the owner index forgets it, the namespace index keeps it.
        indexes.write().insert(Arc::new(pod("a", &[])));
        assert!(indexes.controlled_by("rs-1").is_empty());
        assert_eq!(indexes.in_namespace("default").len(), 1);
        indexes.write().remove(&("default".into(), "a".into()));
        assert!(indexes.in_namespace("default").is_empty());
        assert_eq!(indexes.in_namespace("kube-system").len(), 1);
    }
}
