//! Events (events.k8s.io/v1) for what the control plane does, as `kubectl describe` and
//! `kubectl events` show them.
//!
//! An event that repeats exactly (same object, type, reason, note and reporter) within ten
//! minutes is counted into the first one's `series` instead of being written again, as
//! client-go's recorder does. An event with another note is an event of its own: kube-rs's
//! `Recorder` folds every event of one reason on one object into a single series that keeps
//! the first note, which would show "Scaled up … to 3" where a later "… to 5" happened.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;
use serde_json::json;
use tracing::debug;

use crate::api_errors::not_found;

/// How long a written event takes repeats into its series.
const SERIES_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    type_: &'static str,
    reason: String,
    note: String,
}

struct Written {
    namespace: String,
    name: String,
    count: i32,
    first: Instant,
}

/// The events written within the window, to count repeats into their series.
#[derive(Default)]
struct SeriesCache {
    written: Mutex<HashMap<Key, Written>>,
}

impl SeriesCache {
    /// Where the first occurrence of a repeated event is and the series count to write, or
    /// `None` when it is not a repeat.
    fn repeat_of(&self, key: &Key) -> Option<(String, String, i32)> {
        let mut written = self.written.lock().expect("event cache lock");
        written.retain(|_, w| w.first.elapsed() < SERIES_WINDOW);
        let w = written.get_mut(key)?;
        w.count += 1;
        Some((w.namespace.clone(), w.name.clone(), w.count))
    }

    fn remember(&self, key: Key, namespace: String, name: String) {
        self.written.lock().expect("event cache lock").insert(
            key,
            Written {
                namespace,
                name,
                count: 1,
                first: Instant::now(),
            },
        );
    }
}

/// Writes the events of one reporting controller.
pub struct EventRecorder {
    client: kube::Client,
    controller: String,
    instance: String,
    series: SeriesCache,
}

fn type_name(t: EventType) -> &'static str {
    match t {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

impl EventRecorder {
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        EventRecorder {
            client,
            controller: controller.into(),
            instance: instance.into(),
            series: SeriesCache::default(),
        }
    }

    /// Records an event about `regarding`. Events are best effort: a failure to record one
    /// never fails the work that caused it.
    pub async fn record(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        if let Err(e) = self.write(regarding, type_, reason, action, note).await {
            debug!(reason, error = %e, "could not record an event");
        }
    }

    async fn write(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = Key {
            regarding: (
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
                regarding.kind.clone(),
            ),
            type_: type_name(type_),
            reason: reason.into(),
            note: note.clone(),
        };
        let now = Timestamp::now();
        if let Some((namespace, name, count)) = self.series.repeat_of(&key) {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Gone (its namespace was deleted, or it expired): write it anew.
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(key.type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let created = api.create(&PostParams::default(), &event).await?;
        self.series
            .remember(key, namespace, created.metadata.name.unwrap_or_default());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(note: &str) -> Key {
        Key {
            regarding: (
                None,
                Some("web".into()),
                Some("u".into()),
                Some("Deployment".into()),
            ),
            type_: "Normal",
            reason: "ScalingReplicaSet".into(),
            note: note.into(),
        }
    }

    #[test]
    fn only_identical_events_join_a_series() {
        let series = SeriesCache::default();
        series.remember(
            key("Scaled up replica set web-a from 0 to 3"),
            "default".into(),
            "web.1".into(),
        );
        assert_eq!(
            series.repeat_of(&key("Scaled up replica set web-a from 0 to 3")),
            Some(("default".into(), "web.1".into(), 2))
        );
        assert_eq!(
            series.repeat_of(&key("Scaled up replica set web-b from 0 to 1")),
            None
        );
    }
}
