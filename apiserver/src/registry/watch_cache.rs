//! The watch cache: per resource, one storage watch feeding the decoded current state and a
//! window of recent events, fanned out to every client watch through one broadcast channel.
//! Lists without a continue token are served from it once it has caught up with storage
//! (consistent reads); client watches replay from its window or get an in-stream 410.
//!
//! A client that falls behind the broadcast is closed with 410 (it relists), never skipped.
//! When the storage watch itself fails, the cache rebuilds from a fresh list and closes every
//! client watch the same way. It must not be used for paged reads at an older revision; those
//! go to storage.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apiserver_storage::{EventKind, ListRequest, Revision, Storage};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

use crate::endpoints::status_error::ApiError;
use crate::registry::generic_store::{WatchItem, decode_stored};

/// Events kept per resource for watches that resume from a recent revision.
const WINDOW: usize = 4096;
/// Events a client watch may lag behind before it is closed.
const FANOUT_BACKLOG: usize = 8192;
/// How long a consistent list waits for the cache to catch up before reading storage.
const CATCH_UP: Duration = Duration::from_secs(3);

/// One change, decoded once for every watcher.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: Revision,
    pub key: String,
    pub kind: EventKind,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    window: VecDeque<Arc<CachedEvent>>,
    /// The window holds every event after this revision.
    oldest: Revision,
    revision: Revision,
    events: broadcast::Sender<Arc<CachedEvent>>,
}

/// The cache of one resource (one key prefix).
pub struct ResourceCache {
    state: RwLock<State>,
}

/// A consistent snapshot for a list.
pub struct Snapshot {
    pub items: Vec<(String, Arc<Value>)>,
    pub revision: Revision,
}

/// Every resource's cache, fed by one storage watch over all of them.
pub struct WatchCache {
    caches: RwLock<HashMap<String, Arc<ResourceCache>>>,
    /// The revision of the last storage event applied (to any resource).
    applied: watch::Sender<Revision>,
    storage: Arc<dyn Storage>,
}

/// The key prefix every resource lives under.
const ROOT: &str = "/registry/";

/// `/registry/<group>/<resource>/` of a key.
fn resource_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(ROOT)?;
    let group_end = rest.find('/')?;
    let resource_end = rest[group_end + 1..].find('/')?;
    Some(&key[..ROOT.len() + group_end + 1 + resource_end + 1])
}

impl WatchCache {
    /// Loads every resource under `prefixes` at one revision and starts following storage.
    pub async fn start(
        storage: Arc<dyn Storage>,
        prefixes: &[String],
    ) -> Result<Arc<WatchCache>, ApiError> {
        let (by_prefix, revision) = load(&storage, prefixes).await?;
        let caches = by_prefix
            .into_iter()
            .map(|(prefix, objects)| {
                let (events, _) = broadcast::channel(FANOUT_BACKLOG);
                let state = State {
                    objects,
                    window: VecDeque::new(),
                    oldest: revision,
                    revision,
                    events,
                };
                (
                    prefix,
                    Arc::new(ResourceCache {
                        state: RwLock::new(state),
                    }),
                )
            })
            .collect();
        let (applied, _) = watch::channel(revision);
        let cache = Arc::new(WatchCache {
            caches: RwLock::new(caches),
            applied,
            storage: storage.clone(),
        });
        tokio::spawn(follow(cache.clone(), revision));
        Ok(cache)
    }

    /// The cache of one resource prefix, if it is cached.
    pub fn resource(&self, prefix: &str) -> Option<Arc<ResourceCache>> {
        self.caches
            .read()
            .expect("cache map lock")
            .get(prefix)
            .cloned()
    }

    /// How many objects each resource prefix holds.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let caches = self.caches.read().expect("cache map lock");
        caches
            .iter()
            .map(|(prefix, cache)| {
                (
                    prefix.clone(),
                    cache.state.read().expect("cache lock").objects.len(),
                )
            })
            .collect()
    }

    /// The last applied revision.
    pub fn applied(&self) -> Revision {
        *self.applied.borrow()
    }

    /// Waits until every write up to `revision` has been applied.
    pub async fn wait_for(&self, revision: Revision) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

type Loaded = HashMap<String, BTreeMap<String, Arc<Value>>>;

async fn load(
    storage: &Arc<dyn Storage>,
    prefixes: &[String],
) -> Result<(Loaded, Revision), ApiError> {
    let page = storage
        .list(ListRequest {
            prefix: ROOT.to_owned(),
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::from_storage(e, "", "", ""))?;
    let mut out: Loaded = prefixes
        .iter()
        .map(|p| (p.clone(), BTreeMap::new()))
        .collect();
    for kv in &page.items {
        if let Some(objects) = resource_prefix(&kv.key).and_then(|p| out.get_mut(p)) {
            objects.insert(kv.key.clone(), Arc::new(decode_stored(kv)?));
        }
    }
    Ok((out, page.revision))
}

/// Applies storage events to the caches for as long as the process runs.
async fn follow(cache: Arc<WatchCache>, mut from: Revision) {
    loop {
        let mut stream = match cache.storage.watch(ROOT, from).await {
            Ok(stream) => stream,
            Err(err) => {
                warn!(error = %err, "watch cache cannot follow storage; rebuilding");
                from = rebuild(&cache).await;
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    let revision = event.revision();
                    if let Some(resource) =
                        resource_prefix(&event.kv.key).and_then(|p| cache.resource(p))
                    {
                        resource.apply(&event);
                    }
                    cache.applied.send_replace(revision);
                }
                Err(err) => {
                    warn!(error = %err, "watch cache lost its storage watch; rebuilding");
                    break;
                }
            }
        }
        from = rebuild(&cache).await;
    }
}

/// Reloads every cache from a fresh list; every client watch is closed (clients relist).
async fn rebuild(cache: &WatchCache) -> Revision {
    let prefixes: Vec<String> = cache
        .caches
        .read()
        .expect("cache map lock")
        .keys()
        .cloned()
        .collect();
    loop {
        match load(&cache.storage, &prefixes).await {
            Ok((mut loaded, revision)) => {
                for (prefix, resource) in cache.caches.read().expect("cache map lock").iter() {
                    let objects = loaded.remove(prefix).unwrap_or_default();
                    let (events, _) = broadcast::channel(FANOUT_BACKLOG);
                    // Replacing the sender ends every client watch of the old state with 410.
                    *resource.state.write().expect("cache lock") = State {
                        objects,
                        window: VecDeque::new(),
                        oldest: revision,
                        revision,
                        events,
                    };
                }
                cache.applied.send_replace(revision);
                return revision;
            }
            Err(err) => {
                warn!(error = %err.message, "watch cache reload failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl ResourceCache {
    fn apply(&self, event: &apiserver_storage::Event) {
        let object = match decode_stored(&event.kv) {
            Ok(o) => Arc::new(o),
            Err(err) => {
                warn!(key = %event.kv.key, error = %err.message, "undecodable stored object");
                return;
            }
        };
        let mut state = self.state.write().expect("cache lock");
        let prev = match event.kind {
            EventKind::Put => state.objects.insert(event.kv.key.clone(), object.clone()),
            EventKind::Delete => state.objects.remove(&event.kv.key),
        };
        let cached = Arc::new(CachedEvent {
            revision: event.revision(),
            key: event.kv.key.clone(),
            kind: event.kind,
            object,
            prev,
        });
        state.revision = cached.revision;
        state.window.push_back(cached.clone());
        if state.window.len() > WINDOW
            && let Some(dropped) = state.window.pop_front()
        {
            state.oldest = dropped.revision;
        }
        // No receivers is fine.
        let _ = state.events.send(cached);
    }

    /// The objects under `prefix` (a namespace, or the whole resource), as of a revision at
    /// least `applied` (the cache-wide applied revision read before this call).
    pub fn snapshot(&self, prefix: &str, applied: Revision) -> Snapshot {
        let state = self.state.read().expect("cache lock");
        let items = state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Snapshot {
            items,
            revision: state.revision.max(applied),
        }
    }

    /// A client watch under `prefix`: the current state first when `from` is `None`, else
    /// every event after `from`, then live events. `matches` filters objects (selectors).
    ///
    /// `None` when `from` is older than the window or below `compacted` (the window is bounded
    /// by compaction, as the real cache is bounded by time): the caller asks storage, which
    /// answers with history or 410.
    pub fn watch(
        &self,
        prefix: String,
        from: Option<Revision>,
        applied: Revision,
        compacted: Revision,
        matches: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Option<BoxStream<'static, WatchItem>> {
        let matches: Arc<dyn Fn(&Value) -> bool + Send + Sync> = Arc::new(matches);
        let state = self.state.read().expect("cache lock");
        let live = state.events.subscribe();
        let mut replay: Vec<WatchItem> = Vec::new();
        let start = match from {
            None => {
                for (key, obj) in state.objects.range(prefix.clone()..) {
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    if matches(obj) {
                        replay.push(WatchItem::Added(obj.as_ref().clone()));
                    }
                }
                let revision = state.revision.max(applied);
                replay.push(WatchItem::InitialEnd(revision));
                revision
            }
            Some(from) if from < state.oldest || from < compacted => return None,
            Some(from) => {
                for event in state
                    .window
                    .iter()
                    .filter(|e| e.revision > from && e.key.starts_with(&prefix))
                {
                    if let Some(item) = convert(event, matches.as_ref()) {
                        replay.push(item);
                    }
                }
                from.max(state.revision)
            }
        };
        drop(state);
        // Pulled by the consumer; a lagging or reset channel ends the watch with 410.
        let live = futures::stream::unfold((live, false), move |(mut rx, done)| {
            let prefix = prefix.clone();
            let matches = matches.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let error = match rx.recv().await {
                        Ok(event) => {
                            if event.revision <= start || !event.key.starts_with(&prefix) {
                                continue;
                            }
                            match convert(&event, matches.as_ref()) {
                                Some(item) => return Some((item, (rx, false))),
                                None => continue,
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            debug!(%prefix, missed, "closing a watch that fell behind");
                            "the watch fell behind and was closed; list again"
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            "the watch cache was reset; list again"
                        }
                    };
                    return Some((WatchItem::Error(ApiError::expired(error)), (rx, true)));
                }
            }
        });
        Some(futures::stream::iter(replay).chain(live).boxed())
    }
}

fn convert(event: &CachedEvent, matches: &dyn Fn(&Value) -> bool) -> Option<WatchItem> {
    let prev_matched = event.prev.as_deref().is_some_and(matches);
    let obj = || event.object.as_ref().clone();
    match event.kind {
        EventKind::Delete => prev_matched.then(|| WatchItem::Deleted(obj())),
        EventKind::Put => match (prev_matched, matches(&event.object)) {
            (false, true) => Some(WatchItem::Added(obj())),
            (true, true) => Some(WatchItem::Modified(obj())),
            (true, false) => Some(WatchItem::Deleted(obj())),
            (false, false) => None,
        },
    }
}
