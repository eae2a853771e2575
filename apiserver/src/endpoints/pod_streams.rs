//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: checked here, then proxied
//! to the streaming server of the pod's node. Logs are a plain streamed GET. The other three
//! are HTTP/1.1 upgrades (WebSocket `v5.channel.k8s.io`/`v4…`, kube-rs's port-forward channels,
//! `SPDY/3.1`): the upgrade request goes to the node as the client sent it, and once both sides
//! have switched protocols the bytes are spliced, so any protocol the node speaks reaches the
//! client unchanged.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::status_error::{ApiError, FieldError};
use super::{ApiServer, Body};
use crate::kubelet_client::NodeAddress;
use crate::registry::resource_table::{self, Subresource};
use crate::request_info::Query;

/// Headers an upgrade carries to the node, and the node's answer back.
const UPGRADE_HEADERS: [&str; 7] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "x-stream-protocol-version",
];

fn invalid(kind: &str, name: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(kind, "", name, errors)
}

fn flag(query: &Query, key: &str) -> Result<bool, ApiError> {
    match query.get(key) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be true or false; got {other:?}"
        ))),
    }
}

/// The container a request is for: the one named, or the pod's only (or default) container.
fn container_of(pod: &Value, name: &str, query: &Query) -> Result<String, ApiError> {
    let names_in = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let containers = names_in("containers");
    let init = names_in("initContainers");
    let ephemeral = names_in("ephemeralContainers");
    if let Some(wanted) = query.non_empty("container") {
        if containers
            .iter()
            .chain(&init)
            .chain(&ephemeral)
            .any(|c| c == wanted)
        {
            return Ok(wanted.to_owned());
        }
        return Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {name}"
        )));
    }
    if let [only] = containers.as_slice() {
        return Ok(only.clone());
    }
    if let Some(default) =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
        && containers.iter().any(|c| c == default)
    {
        return Ok(default.to_owned());
    }
    let mut message = format!(
        "a container name must be specified for pod {name}, choose one of: [{}]",
        containers.join(" ")
    );
    if !init.is_empty() {
        message.push_str(&format!(
            " or one of the init containers: [{}]",
            init.join(" ")
        ));
    }
    Err(ApiError::bad_request(message))
}

/// The node-side path and query of a request, after checking its options.
fn node_target(
    sub: Subresource,
    pod: &Value,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Result<String, ApiError> {
    let mut params: Vec<(String, String)> = Vec::new();
    let path = match sub {
        Subresource::Log => {
            let container = container_of(pod, name, query)?;
            for key in ["follow", "previous", "timestamps"] {
                if flag(query, key)? {
                    params.push((key.into(), "true".into()));
                }
            }
            let mut errors = Vec::new();
            let number = |key: &str, min: i64, errors: &mut Vec<FieldError>| -> Option<i64> {
                let text = query.non_empty(key)?;
                match text.parse::<i64>() {
                    Ok(n) if n >= min => Some(n),
                    _ => {
                        let detail = if min == 0 {
                            "must be greater than or equal to 0"
                        } else {
                            "must be greater than 0"
                        };
                        errors.push(FieldError::invalid(key, &json!(text), detail));
                        None
                    }
                }
            };
            let tail = number("tailLines", 0, &mut errors);
            let since = number("sinceSeconds", 1, &mut errors);
            let limit = number("limitBytes", 1, &mut errors);
            let since_time = query.non_empty("sinceTime");
            if let Some(t) = since_time
                && t.parse::<jiff::Timestamp>().is_err()
            {
                errors.push(FieldError::invalid(
                    "sinceTime",
                    &json!(t),
                    "must be an RFC3339 time",
                ));
            }
            if since.is_some() && since_time.is_some() {
                errors.push(FieldError::forbidden(
                    "sinceSeconds",
                    "at most one of sinceTime or sinceSeconds may be specified",
                ));
            }
            if !errors.is_empty() {
                return Err(invalid("PodLogOptions", name, &errors));
            }
            for (key, value) in [
                ("tailLines", tail),
                ("sinceSeconds", since),
                ("limitBytes", limit),
            ] {
                if let Some(v) = value {
                    params.push((key.into(), v.to_string()));
                }
            }
            if let Some(t) = since_time {
                params.push(("sinceTime".into(), t.to_owned()));
            }
            format!("/containerLogs/{namespace}/{name}/{container}")
        }
        Subresource::Exec | Subresource::Attach => {
            let container = container_of(pod, name, query)?;
            // The kubelet's streaming server names the streams input/output/error.
            let streams = [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
                ("tty", "tty"),
            ];
            let mut any = false;
            for (key, node_key) in streams {
                if flag(query, key)? {
                    any |= key != "tty";
                    params.push((node_key.into(), "1".into()));
                }
            }
            if !any {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            if sub == Subresource::Exec {
                let command = query.all("command");
                if command.is_empty() {
                    return Err(ApiError::bad_request(
                        "you must specify at least one command for the container",
                    ));
                }
                params.extend(
                    command
                        .into_iter()
                        .map(|c| ("command".into(), c.to_owned())),
                );
                format!("/exec/{namespace}/{name}/{container}")
            } else {
                format!("/attach/{namespace}/{name}/{container}")
            }
        }
        Subresource::PortForward => {
            for port in query.all("ports") {
                for p in port.split(',') {
                    match p.trim().parse::<u16>() {
                        Ok(n) if n > 0 => params.push(("ports".into(), n.to_string())),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid port {p:?}: ports must be between 1 and 65535"
                            )));
                        }
                    }
                }
            }
            format!("/portForward/{namespace}/{name}")
        }
        _ => return Err(ApiError::path_not_found()),
    };
    if params.is_empty() {
        return Ok(path);
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    Ok(format!("{path}?{}", query.join("&")))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// A node that cannot be reached: the real server's answer, a 500 "error dialing backend".
/// (Not a 503: clients retry those, and a dead node does not come back by retrying.)
fn unreachable_node(node: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!(
            "error dialing backend: the streaming server of node {node:?} is unreachable: {why}"
        ),
    )
}

/// Serves one of the four subresources.
pub async fn serve<B>(
    server: &ApiServer,
    sub: Subresource,
    namespace: &str,
    name: &str,
    query: &Query,
    mut req: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: Send + 'static,
{
    let pods = resource_table::lookup("", "v1", "pods").expect("pods are served");
    let pod = server.store.get(pods, Some(namespace), name).await?;
    let upgrade = is_upgrade(req.headers());
    if sub != Subresource::Log && !upgrade {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let target = node_target(sub, &pod, namespace, name, query)?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes = resource_table::lookup("", "v1", "nodes").expect("nodes are served");
    let node = server
        .store
        .get(nodes, None, node_name)
        .await
        .map_err(|e| {
            if e.code == 404 {
                unreachable_node(node_name, "the node does not exist")
            } else {
                e
            }
        })?;
    let address = NodeAddress::of(&node)
        .ok_or_else(|| unreachable_node(node_name, "the node reports no address"))?;
    let tls = server
        .kubelet
        .connect(&address)
        .await
        .map_err(|e| unreachable_node(node_name, e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable_node(node_name, e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "node connection ended");
        }
    });

    let method = if upgrade {
        req.method().clone()
    } else {
        Method::GET
    };
    let mut node_req = Request::builder()
        .method(method)
        .uri(&target)
        .header(header::HOST, format!("{}:{}", address.host, address.port))
        .body(Empty::<Bytes>::new())
        .expect("a valid node request");
    if upgrade {
        copy_headers(req.headers(), node_req.headers_mut());
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut node_resp = sender
        .send_request(node_req)
        .await
        .map_err(|e| unreachable_node(node_name, e))?;
    let status = node_resp.status();

    if upgrade && status == StatusCode::SWITCHING_PROTOCOLS {
        let mut resp = Response::new(super::full(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        copy_headers(node_resp.headers(), resp.headers_mut());
        let node_upgrade = hyper::upgrade::on(&mut node_resp);
        let client_upgrade = client_upgrade.expect("an upgrade request");
        let (pod_name, kind) = (name.to_owned(), sub.name());
        tokio::spawn(async move {
            let (client, node) = match (client_upgrade.await, node_upgrade.await) {
                (Ok(c), Ok(n)) => (c, n),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, pod = %pod_name, kind, "stream upgrade failed");
                    return;
                }
            };
            let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
            match tokio::io::copy_bidirectional(&mut client, &mut node).await {
                Ok((up, down)) => {
                    tracing::debug!(pod = %pod_name, kind, up, down, "stream ended");
                }
                Err(e) => tracing::debug!(error = %e, pod = %pod_name, kind, "stream broke"),
            }
        });
        return Ok(resp);
    }

    // Logs, or a node that refused the upgrade: its answer, streamed through.
    let mut resp = Response::builder().status(status);
    if let Some(ct) = node_resp.headers().get(header::CONTENT_TYPE) {
        resp = resp.header(header::CONTENT_TYPE, ct.clone());
    }
    let body = node_resp
        .into_body()
        .map_err(|e| {
            tracing::debug!(error = %e, "node stream ended early");
        })
        .into_data_stream();
    let body =
        http_body_util::StreamBody::new(futures::StreamExt::filter_map(body, |chunk| async {
            chunk
                .ok()
                .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)))
        }));
    Ok(resp
        .body(BodyExt::boxed(body))
        .expect("a valid proxied response"))
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in UPGRADE_HEADERS {
        let name = HeaderName::from_static(name);
        for value in from.get_all(&name) {
            to.append(name.clone(), HeaderValue::from(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "annotations": {}},
               "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}})
    }

    fn query(q: &str) -> Query {
        Query::parse(Some(q))
    }

    #[test]
    fn the_container_must_be_named_when_there_are_several() {
        let err = container_of(&pod(), "p", &query("")).unwrap_err();
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"
        );
        assert_eq!(
            container_of(&pod(), "p", &query("container=init")).unwrap(),
            "init"
        );
        assert_eq!(
            container_of(&pod(), "p", &query("container=zz"))
                .unwrap_err()
                .message,
            "container zz is not valid for pod p"
        );
        let mut defaulted = pod();
        defaulted["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] =
            json!("b");
        assert_eq!(container_of(&defaulted, "p", &query("")).unwrap(), "b");
    }

    #[test]
    fn log_options_are_checked_and_forwarded() {
        let target = node_target(
            Subresource::Log,
            &pod(),
            "ns",
            "p",
            &query("container=a&tailLines=2&follow=true&timestamps=true"),
        )
        .unwrap();
        assert_eq!(
            target,
            "/containerLogs/ns/p/a?follow=true&timestamps=true&tailLines=2"
        );
        let err = node_target(
            Subresource::Log,
            &pod(),
            "ns",
            "p",
            &query("container=a&tailLines=-1"),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        let err = node_target(
            Subresource::Log,
            &pod(),
            "ns",
            "p",
            &query("container=a&sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
    }

    #[test]
    fn exec_needs_a_stream_and_a_command() {
        let target = node_target(
            Subresource::Exec,
            &pod(),
            "ns",
            "p",
            &query("container=a&command=echo&command=hi%20there&stdout=true"),
        )
        .unwrap();
        assert_eq!(
            target,
            "/exec/ns/p/a?output=1&command=echo&command=hi%20there"
        );
        assert_eq!(
            node_target(
                Subresource::Exec,
                &pod(),
                "ns",
                "p",
                &query("container=a&command=ls")
            )
            .unwrap_err()
            .code,
            400
        );
        assert_eq!(
            node_target(
                Subresource::Exec,
                &pod(),
                "ns",
                "p",
                &query("container=a&stdout=1")
            )
            .unwrap_err()
            .code,
            400
        );
        assert_eq!(
            node_target(
                Subresource::PortForward,
                &pod(),
                "ns",
                "p",
                &query("ports=80,443")
            )
            .unwrap(),
            "/portForward/ns/p?ports=80&ports=443"
        );
        assert_eq!(
            node_target(
                Subresource::PortForward,
                &pod(),
                "ns",
                "p",
                &query("ports=0")
            )
            .unwrap_err()
            .code,
            400
        );
    }
}
