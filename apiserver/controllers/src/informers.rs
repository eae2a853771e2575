//! Shared informers: one watch per resource kind, reflected into a store that every
//! controller reads, with each controller subscribing to the same event stream.
//!
//! An informer is made, subscribed to by the controllers that need it, then started; starting
//! spawns the watch that feeds the store and the subscribers.

use std::fmt::Debug;
use std::hash::Hash;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

/// How many events a slow subscriber may lag behind before the watch waits for it.
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
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let writer = Writer::new_shared(SUBSCRIBER_BUFFER, ());
        Informer {
            api,
            config,
            store: writer.as_reader(),
            writer: Some(writer),
        }
    }

    /// The store this informer fills.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of the objects as they change. Must be taken before `start`.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        self.writer
            .as_ref()
            .and_then(Writer::subscribe)
            .expect("subscribe to an informer before starting it")
    }

    /// Spawns the watch into `tasks`.
    pub fn start(&mut self, tasks: &mut JoinSet<()>) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let stream = watcher(self.api.clone(), self.config.clone())
            .default_backoff()
            .reflect_shared(writer);
        tasks.spawn(async move {
            stream.for_each(|_| futures::future::ready(())).await;
        });
    }
}
