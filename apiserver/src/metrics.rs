//! The apiserver's Prometheus metrics (prometheus-client), served at `/metrics`: requests by
//! verb, resource and code, their latency, requests in flight, open watches per resource,
//! storage operation latencies (through [`MeteredStorage`], a decorator over any backend) and
//! watch cache sizes.

use std::sync::Arc;
use std::time::Instant;

use apiserver_storage::{
    KeyValue, ListRequest, ListResponse, Revision, Storage, StorageResult, WatchStream,
};
use async_trait::async_trait;
use bytes::Bytes;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

type StorageLatencyFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn storage_histogram() -> Histogram {
    // 0.1 ms .. ~1.6 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

type LatencyFamily = Family<VerbLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    inflight: Gauge,
    watches: Family<ResourceLabels, Gauge>,
    storage_latency: StorageLatencyFamily,
    cache_objects: Family<ResourceLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~40 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let inflight = Gauge::default();
        let watches = Family::<ResourceLabels, Gauge>::default();
        let storage_latency: StorageLatencyFamily = Family::new_with_constructor(storage_histogram);
        let cache_objects = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "apiserver_request",
            "Requests by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Time to answer a request (to the start of the body for watches)",
            latency.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Requests being served",
            inflight.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Open watches by resource",
            watches.clone(),
        );
        registry.register(
            "apiserver_storage_operation_duration_seconds",
            "Storage operation latency by operation",
            storage_latency.clone(),
        );
        registry.register(
            "apiserver_watch_cache_objects",
            "Objects held by the watch cache per resource",
            cache_objects.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            inflight,
            watches,
            storage_latency,
            cache_objects,
        }
    }
}

/// Tracks one request from start to answer.
pub struct RequestTimer<'a> {
    metrics: &'a Metrics,
    verb: String,
    resource: String,
    start: Instant,
}

impl Metrics {
    pub fn start(&self, verb: &str, resource: &str) -> RequestTimer<'_> {
        self.inflight.inc();
        RequestTimer {
            metrics: self,
            verb: verb.to_owned(),
            resource: resource.to_owned(),
            start: Instant::now(),
        }
    }

    /// Counts an open watch until the guard drops.
    pub fn watch_opened(&self, resource: &str) -> WatchGuard {
        let gauge = self
            .watches
            .get_or_create(&ResourceLabels {
                resource: resource.to_owned(),
            })
            .clone();
        gauge.inc();
        WatchGuard(gauge)
    }

    fn observe_storage(&self, operation: &str, start: Instant) {
        let labels = OperationLabels {
            operation: operation.to_owned(),
        };
        self.storage_latency
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
    }

    /// Records how many objects the watch cache holds for a resource.
    pub fn set_cache_objects(&self, resource: &str, objects: usize) {
        let labels = ResourceLabels {
            resource: resource.to_owned(),
        };
        self.cache_objects
            .get_or_create(&labels)
            .set(objects as i64);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl RequestTimer<'_> {
    /// Records the answer; returns how long the request took.
    pub fn finish(self, code: u16) -> std::time::Duration {
        let RequestTimer {
            metrics,
            verb,
            resource,
            start,
        } = self;
        let elapsed = start.elapsed();
        metrics.inflight.dec();
        let latency = VerbLabels {
            verb: verb.clone(),
            resource: resource.clone(),
        };
        metrics
            .latency
            .get_or_create(&latency)
            .observe(elapsed.as_secs_f64());
        let code = code.to_string();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                verb,
                resource,
                code,
            })
            .inc();
        elapsed
    }
}

/// A storage backend whose operations are timed into [`Metrics`].
pub struct MeteredStorage {
    inner: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
}

impl MeteredStorage {
    pub fn new(inner: Arc<dyn Storage>, metrics: Arc<Metrics>) -> Self {
        MeteredStorage { inner, metrics }
    }

    async fn timed<T>(&self, operation: &str, call: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let out = call.await;
        self.metrics.observe_storage(operation, start);
        out
    }
}

#[async_trait]
impl Storage for MeteredStorage {
    async fn create(&self, key: &str, value: Bytes) -> StorageResult<KeyValue> {
        self.timed("create", self.inner.create(key, value)).await
    }
    async fn get(&self, key: &str) -> StorageResult<Option<KeyValue>> {
        self.timed("get", self.inner.get(key)).await
    }
    async fn list(&self, request: ListRequest) -> StorageResult<ListResponse> {
        self.timed("list", self.inner.list(request)).await
    }
    async fn update(&self, key: &str, expected: Revision, value: Bytes) -> StorageResult<KeyValue> {
        self.timed("update", self.inner.update(key, expected, value))
            .await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> StorageResult<KeyValue> {
        self.timed("delete", self.inner.delete(key, expected)).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> StorageResult<WatchStream> {
        self.inner.watch(prefix, after).await
    }
    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }
    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }
    async fn compact(&self, revision: Revision) -> StorageResult<()> {
        self.timed("compact", self.inner.compact(revision)).await
    }
}

pub struct WatchGuard(Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_watches_show_up_in_the_exposition() {
        let m = Metrics::default();
        m.start("list", "pods").finish(200);
        m.start("get", "pods").finish(404);
        let guard = m.watch_opened("configmaps");
        let text = m.encode();
        assert!(
            text.contains(r#"apiserver_request_total{verb="list",resource="pods",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"apiserver_request_total{verb="get",resource="pods",code="404"} 1"#)
        );
        assert!(text.contains(r#"apiserver_registered_watchers{resource="configmaps"} 1"#));
        assert!(text.contains("apiserver_current_inflight_requests 0"));
        drop(guard);
        assert!(
            m.encode()
                .contains(r#"apiserver_registered_watchers{resource="configmaps"} 0"#)
        );
    }
}
