//! Watch responses: newline-delimited JSON events over a chunked (or h2) stream, in the
//! representation the client negotiated (object, Table with headers only on the first event,
//! PartialObjectMetadata), with bookmarks, `sendInitialEvents`, `timeoutSeconds`, and in-stream
//! `ERROR` Status events (410 Expired) that make clients relist.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use super::negotiation::Output;
use super::representation::{self, IncludeObject};
use super::status_error::ApiError;
use super::{ApiServer, Body};
use crate::registry::generic_store::{ListOptions, WatchItem, parse_resource_version};
use crate::registry::resource_table::ResourceDef;
use crate::request_info::Query;

/// Events a slow client may have queued before its watch is closed.
const CLIENT_BACKLOG: usize = 1024;
/// How often a bookmark is sent when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("JSON serializes");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn bookmark(r: &ResourceDef, revision: u64, initial_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version(), "metadata": metadata}})
}

pub async fn serve_watch(
    server: &Arc<ApiServer>,
    r: &'static ResourceDef,
    namespace: Option<String>,
    query: &Query,
    opts: ListOptions,
    output: Output,
    include: IncludeObject,
) -> Result<Response<Body>, ApiError> {
    let rv = query.non_empty("resourceVersion");
    let send_initial = match query.get("sendInitialEvents") {
        Some("true") => true,
        Some("false") => false,
        _ => matches!(rv, None | Some("0")),
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    if query.get("sendInitialEvents") == Some("true") && !bookmarks {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &[super::status_error::FieldError::forbidden(
                "allowWatchBookmarks",
                "allowWatchBookmarks required when sendInitialEvents is true",
            )],
        ));
    }
    let from = match (send_initial, rv) {
        (true, _) => None,
        (false, Some(rv)) => Some(parse_resource_version(rv)?),
        (false, None) => Some(server.store.current_revision()),
    };
    let timeout = match query.non_empty("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => server.default_watch_timeout,
    };
    let mut events = server
        .store
        .watch(r, namespace.clone(), from, opts.labels, opts.fields)
        .await?;
    let initial_end_bookmark = query.get("sendInitialEvents") == Some("true");
    let start_revision = from.unwrap_or(0);

    let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_BACKLOG);
    let server = server.clone();
    tokio::spawn(async move {
        let _open = server.metrics.watch_opened(r.plural);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        let mut first = true;
        let mut last_revision = start_revision;
        loop {
            let item = tokio::select! {
                _ = &mut deadline => break,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(line(&bookmark(r, last_revision, false))).await.is_err() { return; }
                    continue;
                }
                item = events.next() => item,
            };
            let Some(item) = item else { break };
            let (kind, obj) = match item {
                WatchItem::Added(o) => ("ADDED", o),
                WatchItem::Modified(o) => ("MODIFIED", o),
                WatchItem::Deleted(o) => ("DELETED", o),
                WatchItem::Bookmark(rv) => {
                    if bookmarks && tx.send(line(&bookmark(r, rv, false))).await.is_err() {
                        return;
                    }
                    continue;
                }
                WatchItem::InitialEnd(rv) => {
                    last_revision = last_revision.max(rv);
                    if initial_end_bookmark && tx.send(line(&bookmark(r, rv, true))).await.is_err()
                    {
                        return;
                    }
                    continue;
                }
                WatchItem::Error(err) => {
                    let _ = tx
                        .send(line(
                            &json!({"type": "ERROR", "object": err.to_status_json()}),
                        ))
                        .await;
                    break;
                }
            };
            if let Some(rv) = obj["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
            {
                last_revision = last_revision.max(rv);
            }
            let object = match output {
                Output::Table(v) => {
                    let t = representation::table(r, &[obj], v, include, first, None, None);
                    first = false;
                    t
                }
                Output::Metadata(v) => representation::partial_metadata(&obj, v),
                Output::Json | Output::Yaml | Output::Protobuf => obj,
            };
            if tx
                .send(line(&json!({"type": kind, "object": object})))
                .await
                .is_err()
            {
                debug!(resource = r.plural, "watcher went away");
                return;
            }
        }
    });

    let body = BodyExt::boxed(StreamBody::new(
        ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let content_type = match output {
        // Watch events are JSON; clients that asked for protobuf decode by Content-Type.
        Output::Yaml | Output::Protobuf => "application/json".to_owned(),
        other => other.content_type(),
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).expect("valid header"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
