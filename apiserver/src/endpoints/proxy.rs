//! `pods/proxy`, `services/proxy` and `nodes/proxy`: HTTP requests relayed to a pod's IP, to
//! an endpoint of a Service's port, or to a node's streaming server (over its mutual TLS).
//! The name may carry a scheme and port, `[http:]name[:port]`, as in the real API; the rest
//! of the path after `/proxy` and the query go to the target unchanged.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::status_error::ApiError;
use super::{ApiServer, Body};
use crate::kubelet_client::NodeAddress;
use crate::registry::resource_table;

/// Request headers not passed on: hop-by-hop ones and the caller's credentials.
const DROPPED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "authorization",
    "host",
];

/// `[scheme:]name[:port]`.
fn split_name(raw: &str) -> Result<(Option<&str>, &str, Option<&str>), ApiError> {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [name] => Ok((None, name, None)),
        [scheme @ ("http" | "https"), name] => Ok((Some(scheme), name, None)),
        [name, port] => Ok((None, name, Some(port))),
        [scheme, name, port] => Ok((Some(scheme), name, Some(port))),
        _ => Err(ApiError::bad_request(format!(
            "invalid proxy target {raw:?}"
        ))),
    }
}

fn unreachable(what: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        format!("error trying to reach {what}: {why}"),
    )
}

/// Relays one request. `kind` is `pods`, `services` or `nodes`; `raw_name` the URL's name
/// segment; `path` the request path (its part after `/proxy` is forwarded).
#[allow(clippy::too_many_arguments)] // reason: the parts of one proxied request, named
pub async fn serve(
    server: &ApiServer,
    kind: &str,
    namespace: Option<&str>,
    raw_name: &str,
    method: Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let (scheme, name, port) = split_name(raw_name)?;
    let marker = format!("/{raw_name}/proxy");
    let rest = path
        .find(&marker)
        .map(|i| &path[i + marker.len()..])
        .unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    let target = match query {
        Some(q) if !q.is_empty() => format!("{rest}?{q}"),
        _ => rest.to_owned(),
    };
    let lookup =
        |plural| resource_table::lookup("", "v1", plural).expect("core resources are served");
    let (host, port, via_kubelet) = match kind {
        "pods" => {
            let pod = server.store.get(lookup("pods"), namespace, name).await?;
            let ip = pod["status"]["podIP"]
                .as_str()
                .filter(|ip| !ip.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("pod {name} has no IP address yet"))
                })?;
            (ip.to_owned(), parse_port(port, 80)?, false)
        }
        "services" => {
            let service = server
                .store
                .get(lookup("services"), namespace, name)
                .await?;
            let endpoints = server
                .store
                .get(lookup("endpoints"), namespace, name)
                .await
                .ok();
            let (ip, target_port) = service_endpoint(&service, endpoints.as_ref(), port)
                .ok_or_else(|| unreachable(&format!("service {name}"), "no endpoints available"))?;
            (ip, target_port, false)
        }
        "nodes" => {
            let node = server.store.get(lookup("nodes"), None, name).await?;
            let address = NodeAddress::of(&node)
                .ok_or_else(|| unreachable(&format!("node {name}"), "it reports no address"))?;
            let port = parse_port(port, address.port)?;
            (address.host, port, true)
        }
        _ => return Err(ApiError::path_not_found()),
    };
    if scheme == Some("https") && !via_kubelet {
        return Err(ApiError::bad_request(
            "proxying to https pod and service ports is not supported",
        ));
    }
    let mut request = Request::builder()
        .method(method)
        .uri(&target)
        .header(header::HOST, format!("{host}:{port}"));
    for (name, value) in headers {
        if !DROPPED.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| ApiError::bad_request(format!("invalid proxied request: {e}")))?;
    let what = format!("{kind} {name}");
    let response = if via_kubelet {
        let tls = server
            .kubelet
            .connect(&NodeAddress { host, port })
            .await
            .map_err(|e| unreachable(&what, e))?;
        send(TokioIo::new(tls), request, &what).await?
    } else {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| unreachable(&what, e))?;
        send(TokioIo::new(tcp), request, &what).await?
    };
    let (parts, incoming) = response.into_parts();
    let mut out = Response::builder().status(parts.status);
    for (name, value) in &parts.headers {
        if !DROPPED.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let stream = futures::StreamExt::filter_map(incoming.into_data_stream(), |chunk| async {
        chunk
            .ok()
            .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)))
    });
    Ok(out
        .body(BodyExt::boxed(http_body_util::StreamBody::new(stream)))
        .expect("a valid proxied response"))
}

async fn send<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
    what: &str,
) -> Result<Response<hyper::body::Incoming>, ApiError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| unreachable(what, e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(what, e))
}

fn parse_port(port: Option<&str>, default: u16) -> Result<u16, ApiError> {
    match port {
        None | Some("") => Ok(default),
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid port {p:?}"))),
    }
}

/// An endpoint address and target port for a Service port given by name or number (the
/// first port when none is given).
fn service_endpoint(
    service: &Value,
    endpoints: Option<&Value>,
    port: Option<&str>,
) -> Option<(String, u16)> {
    let ports = service["spec"]["ports"].as_array()?;
    let wanted = match port {
        None | Some("") => ports.first()?,
        Some(p) => ports.iter().find(|sp| {
            sp["name"].as_str() == Some(p)
                || sp["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(p)
        })?,
    };
    let port_name = wanted["name"].as_str().unwrap_or("");
    for subset in endpoints?["subsets"].as_array()? {
        let port = subset["ports"].as_array().and_then(|ps| {
            ps.iter()
                .find(|ep| ep["name"].as_str().unwrap_or("") == port_name)
                .and_then(|ep| ep["port"].as_u64())
        });
        let address = subset["addresses"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a["ip"].as_str());
        if let (Some(port), Some(address)) = (port, address) {
            return Some((address.to_owned(), u16::try_from(port).ok()?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_carry_scheme_and_port() {
        assert_eq!(split_name("web").unwrap(), (None, "web", None));
        assert_eq!(split_name("web:8080").unwrap(), (None, "web", Some("8080")));
        assert_eq!(
            split_name("https:web:443").unwrap(),
            (Some("https"), "web", Some("443"))
        );
        assert_eq!(split_name("http:web").unwrap(), (Some("http"), "web", None));
        assert!(split_name("a:b:c:d").is_err());
    }

    #[test]
    fn service_ports_resolve_to_an_endpoint() {
        let service = json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]}});
        let endpoints = json!({"subsets": [{"addresses": [{"ip": "10.0.0.7"}],
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]}]});
        assert_eq!(
            service_endpoint(&service, Some(&endpoints), None),
            Some(("10.0.0.7".into(), 8080))
        );
        assert_eq!(
            service_endpoint(&service, Some(&endpoints), Some("metrics")),
            Some(("10.0.0.7".into(), 9100))
        );
        assert_eq!(
            service_endpoint(&service, Some(&endpoints), Some("9090")),
            Some(("10.0.0.7".into(), 9100))
        );
        assert_eq!(service_endpoint(&service, None, None), None);
    }
}
