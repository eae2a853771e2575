//! Shared informers: one watch per resource kind, reflected into a store that every
//! controller reads, with each controller subscribing to the same stream of changed objects.
//!
//! An informer is made, subscribed to by the controllers that need it, then started; starting
//! spawns the watch that feeds the store and the subscribers.
//!
//! Subscribers see every object that was added, changed or deleted, as client-go's informers
//! report them: a deleted object arrives in its last known state, and one that vanished while
//! the watch was being re-established (found missing by the relist) arrives as it was last
//! seen. kube-rs's own shared reflector stream reports only additions and changes, so a
//! controller would not hear that a pod it owns was deleted.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

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

pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
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
            writer: Some(writer),
            subscribers: Vec::new(),
        }
    }

    /// The store this informer fills.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of the objects as they change, deletions included. Must be taken before
    /// `start`.
    pub fn subscribe(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static {
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
                        store.get(&ObjectRef::from_obj(&obj)).into_iter().collect()
                    }
                    watcher::Event::Delete(obj) => vec![Arc::new(obj)],
                    watcher::Event::InitDone => {
                        let now = store.state();
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
