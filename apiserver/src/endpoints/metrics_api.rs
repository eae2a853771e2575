//! `metrics.k8s.io/v1beta1` (`kubectl top`): node and pod resource usage, read on each
//! request from the Summary API of the nodes involved (as metrics-server scrapes it) and
//! never stored. Nodes that cannot be reached, and pods without running containers, are
//! left out, as metrics-server leaves them out.

use std::collections::HashMap;
use std::time::Duration;

use http::{Response, StatusCode};
use jiff::Timestamp;
use k8s_metrics::v1beta1::{Container, NodeMetrics, PodMetrics, Usage};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{Value, json};

use super::status_error::ApiError;
use super::{ApiServer, Body};
use crate::kubelet_client::NodeAddress;
use crate::registry::generic_store::ListOptions;
use crate::registry::resource_table::{self, MetricsKind, ResourceDef};
use crate::registry::selectors::LabelSelector;
use crate::request_info::{Query, RequestInfo};

/// The window usage is averaged over (the runtime's CPU rate spans about a second).
const WINDOW: Duration = Duration::from_secs(1);

fn usage(cpu_nano_cores: u64, memory_bytes: u64) -> Usage {
    Usage {
        cpu: Quantity(format!("{cpu_nano_cores}n")),
        memory: Quantity(format!("{}Ki", memory_bytes / 1024)),
    }
}

fn meta_of(obj: &Value, now: Timestamp) -> ObjectMeta {
    ObjectMeta {
        name: obj["metadata"]["name"].as_str().map(str::to_owned),
        namespace: obj["metadata"]["namespace"].as_str().map(str::to_owned),
        labels: serde_json::from_value(obj["metadata"]["labels"].clone()).ok(),
        creation_timestamp: Some(Time(now)),
        ..ObjectMeta::default()
    }
}

fn time_of(stats: &Value, now: Timestamp) -> Time {
    Time(
        stats["time"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(now),
    )
}

/// The Summary of every node named, fetched together; unreachable nodes are missing.
async fn summaries(server: &ApiServer, nodes: &[Value]) -> HashMap<String, Value> {
    let fetches = nodes.iter().filter_map(|node| {
        let name = node["metadata"]["name"].as_str()?.to_owned();
        let address = NodeAddress::of(node)?;
        Some(async move {
            match server.kubelet.get(&address, "/stats/summary").await {
                Ok(body) => serde_json::from_slice::<Value>(&body)
                    .ok()
                    .map(|v| (name, v)),
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "no summary from the node");
                    None
                }
            }
        })
    });
    futures::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn list_of(
    server: &ApiServer,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    labels: &LabelSelector,
) -> Result<Vec<Value>, ApiError> {
    let r = resource_table::lookup(group, "v1", plural).expect("a served resource");
    let page = server
        .store
        .list(
            r,
            namespace,
            &ListOptions {
                labels: labels.clone(),
                ..ListOptions::default()
            },
        )
        .await?;
    Ok(page.items)
}

fn typed(r: &ResourceDef, mut v: Value) -> Value {
    v["apiVersion"] = json!(r.api_version());
    v["kind"] = json!(r.kind);
    v
}

/// Serves `get` and `list` of node or pod metrics.
pub async fn serve(
    server: &ApiServer,
    r: &'static ResourceDef,
    kind: MetricsKind,
    info: &RequestInfo,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    if info.verb != "get" && info.verb != "list" {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({}.{})",
            r.plural, r.group
        )));
    }
    let labels = LabelSelector::parse(query.non_empty("labelSelector").unwrap_or(""))?;
    let now = Timestamp::now();
    let window = WINDOW;
    let mut items: Vec<Value> = Vec::new();
    match kind {
        MetricsKind::Nodes => {
            let mut nodes = list_of(server, "", "nodes", None, &labels).await?;
            if let Some(name) = &info.name {
                nodes.retain(|n| n["metadata"]["name"] == name.as_str());
            }
            let stats = summaries(server, &nodes).await;
            for node in &nodes {
                let name = node["metadata"]["name"].as_str().unwrap_or("");
                let Some(summary) = stats.get(name) else {
                    continue;
                };
                let n = &summary["node"];
                let metrics = NodeMetrics {
                    metadata: meta_of(node, now),
                    timestamp: time_of(&n["cpu"], now),
                    window,
                    usage: usage(
                        n["cpu"]["usageNanoCores"].as_u64().unwrap_or(0),
                        n["memory"]["workingSetBytes"].as_u64().unwrap_or(0),
                    ),
                };
                items.push(typed(r, serde_json::to_value(&metrics).expect("JSON")));
            }
        }
        MetricsKind::Pods => {
            let namespace = info.namespace.as_deref();
            let mut pods = list_of(server, "", "pods", namespace, &labels).await?;
            if let Some(name) = &info.name {
                pods.retain(|p| p["metadata"]["name"] == name.as_str());
            }
            let wanted: Vec<&str> = pods
                .iter()
                .filter_map(|p| p["spec"]["nodeName"].as_str())
                .collect();
            let mut nodes = list_of(server, "", "nodes", None, &LabelSelector::default()).await?;
            nodes.retain(|n| {
                n["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| wanted.contains(&name))
            });
            let stats = summaries(server, &nodes).await;
            let by_uid: HashMap<&str, &Value> = stats
                .values()
                .flat_map(|s| s["pods"].as_array().into_iter().flatten())
                .filter_map(|p| Some((p["podRef"]["uid"].as_str()?, p)))
                .collect();
            for pod in &pods {
                let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
                let Some(found) = by_uid.get(uid) else {
                    continue;
                };
                let containers: Vec<Container> = found["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| Container {
                        name: c["name"].as_str().unwrap_or("").to_owned(),
                        usage: usage(
                            c["cpu"]["usageNanoCores"].as_u64().unwrap_or(0),
                            c["memory"]["workingSetBytes"].as_u64().unwrap_or(0),
                        ),
                    })
                    .collect();
                if containers.is_empty() {
                    continue;
                }
                let metrics = PodMetrics {
                    metadata: meta_of(pod, now),
                    containers,
                    timestamp: time_of(&found["cpu"], now),
                    window,
                };
                items.push(typed(r, serde_json::to_value(&metrics).expect("JSON")));
            }
        }
    }
    if let Some(name) = &info.name {
        let item = items
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(r.singular, r.group, name))?;
        return Ok(super::json_value(StatusCode::OK, &item));
    }
    let list = json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(),
                      "metadata": {}, "items": items});
    Ok(super::json_value(StatusCode::OK, &list))
}
