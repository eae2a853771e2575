//! The node's streaming server (the kubelet API on port 10250): HTTPS with client
//! certificates, open only to the apiserver's kubelet-client identity (or `system:masters`).
//!
//! - `GET /containerLogs/<ns>/<pod>/<container>`: a container's log (`follow`, `previous`,
//!   `timestamps`, `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes`).
//! - `/exec/<ns>/<pod>/<container>?command=…` and `/attach/…`: WebSocket, `v5.channel.k8s.io`
//!   or `v4.channel.k8s.io` (channel 0 stdin, 1 stdout, 2 stderr, 3 the ending Status,
//!   4 terminal resize; v5's 255 closes a stream), or SPDY/3.1 `v4.channel.k8s.io` as
//!   kubectl before 1.30 speaks it ([`spdy_exec`]).
//! - `/portForward/<ns>/<pod>`: kube-rs's WebSocket channels (`?ports=`), and kubectl's SPDY
//!   (`portforward.k8s.io` streams), straight or tunnelled in WebSocket
//!   (`SPDY/3.1+portforward.k8s.io`); see [`port_forward`].
//! - `/stats/summary`: the Summary API ([`crate::stats`]).
//! - `/healthz`.

pub mod port_forward;
pub mod spdy;
pub mod spdy_exec;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tracing::{debug, info};

use crate::pod_actions::latest;
use crate::runtime::{ContainerInstance, ContainerRuntime, InstanceState, LogOptions};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Who may use the streaming server.
#[derive(Debug, Clone)]
pub struct Access {
    /// Client certificate common names allowed in (the apiserver's kubelet client).
    pub users: Vec<String>,
    /// Client certificate organizations (groups) allowed in.
    pub groups: Vec<String>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            users: vec!["kube-apiserver-kubelet-client".into()],
            groups: vec!["system:masters".into()],
        }
    }
}

/// The TLS files of the streaming server.
pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: &'a Path,
}

struct Server<R> {
    runtime: Arc<R>,
    client: kube::Client,
    node: String,
    cpu: crate::stats::NodeCpu,
}

fn tls_config(files: &TlsFiles<'_>) -> Result<rustls::ServerConfig> {
    let cert_pem =
        std::fs::read(files.cert).with_context(|| format!("reading {}", files.cert.display()))?;
    let key_pem =
        std::fs::read(files.key).with_context(|| format!("reading {}", files.key.display()))?;
    let ca_pem = std::fs::read(files.client_ca)
        .with_context(|| format!("reading {}", files.client_ca.display()))?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(ca?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_client_cert_verifier(verifier)
    .with_single_cert(certs, key)?;
    // Upgrades (exec, attach, port-forward) are HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether the client's certificate names someone `access` lets in.
fn allowed(cert: &CertificateDer<'_>, access: &Access) -> bool {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return false;
    };
    let subject = parsed.subject();
    let cn_ok = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .any(|cn| access.users.iter().any(|u| u == cn));
    let group_ok = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .any(|o| access.groups.iter().any(|g| g == o));
    cn_ok || group_ok
}

/// Serves until the listener fails.
pub async fn serve<R: ContainerRuntime>(
    addr: SocketAddr,
    files: TlsFiles<'_>,
    access: Access,
    runtime: Arc<R>,
    client: kube::Client,
    node: String,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&files)?));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (the streaming server)"))?;
    info!(%addr, "streaming server listening");
    let server = Arc::new(Server {
        runtime,
        client,
        node,
        cpu: crate::stats::NodeCpu::default(),
    });
    let access = Arc::new(access);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, server, access) = (acceptor.clone(), server.clone(), access.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let permitted = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .is_some_and(|c| allowed(c, &access));
            let service = service_fn(move |req| {
                let server = server.clone();
                async move {
                    if !permitted {
                        return Ok::<_, Infallible>(status(
                            403,
                            "Forbidden",
                            "this node's streaming server serves the apiserver only".into(),
                        ));
                    }
                    Ok(server.handle(req).await)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                debug!(%peer, error = %e, "streaming connection ended");
            }
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A request refused, answered as a Kubernetes Status.
#[derive(Debug)]
struct Refusal {
    code: u16,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: u16, reason: &'static str, message: String) -> Refusal {
        Refusal {
            code,
            reason,
            message,
        }
    }
}

/// A Kubernetes Status answer.
fn status(code: u16, reason: &str, message: String) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))
        .expect("a valid response")
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn flag(q: &[(String, String)], keys: &[&str]) -> bool {
    q.iter()
        .any(|(k, v)| keys.contains(&k.as_str()) && matches!(v.as_str(), "1" | "true"))
}

fn value<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

impl<R: ContainerRuntime> Server<R> {
    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let q = query_pairs(req.uri().query());
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match parts.as_slice() {
            ["healthz"] => Ok(Response::new(full("ok"))),
            ["stats", "summary"] => {
                match crate::stats::summary(
                    self.runtime.as_ref(),
                    &self.client,
                    &self.node,
                    &self.cpu,
                )
                .await
                {
                    Ok(summary) => Ok(Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(full(serde_json::to_vec(&summary).unwrap_or_default()))
                        .expect("a valid response")),
                    Err(e) => Err(Refusal::new(500, "InternalError", format!("{e:#}"))),
                }
            }
            ["containerLogs", ns, pod, container] => self.logs(ns, pod, container, &q).await,
            ["exec", ns, pod, container] => {
                self.exec(&mut req, ns, pod, container, &q, false).await
            }
            ["attach", ns, pod, container] => {
                self.exec(&mut req, ns, pod, container, &q, true).await
            }
            ["portForward", ns, pod] => self.port_forward(&mut req, ns, pod, &q).await,
            _ => Err(Refusal::new(
                404,
                "NotFound",
                format!("no handler for {path}"),
            )),
        };
        result.unwrap_or_else(|r| status(r.code, r.reason, r.message))
    }

    async fn pod(&self, ns: &str, name: &str) -> Result<Pod, Refusal> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(Refusal::new(
                404,
                "NotFound",
                format!("pods \"{name}\" not found"),
            )),
            Err(e) => Err(Refusal::new(
                500,
                "InternalError",
                format!("reading pod {name}: {e}"),
            )),
        }
    }

    async fn instance(
        &self,
        ns: &str,
        pod_name: &str,
        container: &str,
        previous: bool,
    ) -> Result<ContainerInstance, Refusal> {
        let pod = self.pod(ns, pod_name).await?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let instances = self
            .runtime
            .containers(&uid)
            .await
            .map_err(|e| Refusal::new(500, "InternalError", format!("{e:#}")))?;
        let (newest, before) = latest(&instances, container);
        if previous {
            return before.cloned().ok_or_else(|| {
                Refusal::new(
                    400,
                    "BadRequest",
                    format!(
                        "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
                    ),
                )
            });
        }
        newest.cloned().ok_or_else(|| {
            let reason = pod
                .status
                .iter()
                .flat_map(|s| {
                    s.container_statuses
                        .iter()
                        .flatten()
                        .chain(s.init_container_statuses.iter().flatten())
                })
                .find(|s| s.name == container)
                .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .unwrap_or_else(|| "ContainerCreating".into());
            Refusal::new(
                400,
                "BadRequest",
                format!(
                    "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}"
                ),
            )
        })
    }

    async fn logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        q: &[(String, String)],
    ) -> Result<Response<Body>, Refusal> {
        let instance = self
            .instance(ns, pod, container, flag(q, &["previous"]))
            .await?;
        let since = value(q, "sinceTime")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .or_else(|| {
                value(q, "sinceSeconds")
                    .and_then(|s| s.parse::<i64>().ok())
                    .map(|s| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s))
            });
        let options = LogOptions {
            follow: flag(q, &["follow"]),
            timestamps: flag(q, &["timestamps"]),
            tail_lines: value(q, "tailLines").and_then(|n| n.parse().ok()),
            since,
            limit_bytes: value(q, "limitBytes").and_then(|n| n.parse().ok()),
        };
        let stream = self
            .runtime
            .logs(&instance.id, &options)
            .await
            .map_err(|e| Refusal::new(500, "InternalError", format!("reading the log: {e:#}")))?;
        let stream = match options.limit_bytes {
            Some(limit) => limit_stream(stream, limit),
            None => stream,
        };
        let body = StreamBody::new(stream.map(|chunk| chunk.map(Frame::data)));
        Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(BodyExt::boxed_unsync(body))
            .expect("a valid response"))
    }

    async fn exec(
        &self,
        req: &mut Request<Incoming>,
        ns: &str,
        pod: &str,
        container: &str,
        q: &[(String, String)],
        attach: bool,
    ) -> Result<Response<Body>, Refusal> {
        let instance = self.instance(ns, pod, container, false).await?;
        if !matches!(instance.state, InstanceState::Running { .. }) {
            return Err(Refusal::new(
                400,
                "BadRequest",
                format!("container {container} is not running"),
            ));
        }
        let command: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        if !attach && command.is_empty() {
            return Err(Refusal::new(
                400,
                "BadRequest",
                "you must specify at least one command for the container".into(),
            ));
        }
        let streams = Streams {
            stdin: flag(q, &["input", "stdin"]),
            stdout: flag(q, &["output", "stdout"]),
            stderr: flag(q, &["error", "stderr"]),
            tty: flag(q, &["tty"]),
        };
        if is_spdy(req) {
            let offered = stream_protocols(req);
            if !offered.iter().any(|p| p == "v4.channel.k8s.io") {
                return Err(Refusal::new(
                    403,
                    "Forbidden",
                    format!(
                        "unable to upgrade: no supported protocol in {offered:?}; this node speaks v4.channel.k8s.io"
                    ),
                ));
            }
            let on_upgrade = hyper::upgrade::on(req);
            let runtime = self.runtime.clone();
            let id = instance.id.clone();
            let command = if attach { Vec::new() } else { command };
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let wanted = spdy_exec::Wanted {
                        stdin: streams.stdin,
                        stdout: streams.stdout,
                        stderr: streams.stderr,
                        tty: streams.tty,
                    };
                    spdy_exec::serve(
                        TokioIo::new(upgraded),
                        runtime.as_ref(),
                        &id,
                        &command,
                        wanted,
                    )
                    .await;
                }
            });
            return Ok(spdy_switch("v4.channel.k8s.io"));
        }
        let (response, protocol) =
            websocket_upgrade(req, &["v5.channel.k8s.io", "v4.channel.k8s.io"])?;
        let on_upgrade = hyper::upgrade::on(req);
        let runtime = self.runtime.clone();
        let id = instance.id.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let command = if attach { Vec::new() } else { command };
            if let Err(e) = run_exec(
                ws,
                runtime.as_ref(),
                &id,
                &command,
                streams,
                protocol.starts_with("v5"),
            )
            .await
            {
                debug!(error = %e, "exec stream ended with an error");
            }
        });
        Ok(response)
    }

    async fn port_forward(
        &self,
        req: &mut Request<Incoming>,
        ns: &str,
        pod_name: &str,
        q: &[(String, String)],
    ) -> Result<Response<Body>, Refusal> {
        let pod = self.pod(ns, pod_name).await?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let sandbox = match self.runtime.sandbox(&uid).await {
            Ok(Some(s)) if s.running => s,
            _ => {
                return Err(Refusal::new(
                    400,
                    "BadRequest",
                    format!("pod {pod_name} has no running sandbox"),
                ));
            }
        };
        let ports: Vec<u16> = q
            .iter()
            .filter(|(k, _)| k == "port" || k == "ports")
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        let runtime = self.runtime.clone();
        if is_spdy(req) {
            let offered = stream_protocols(req);
            if !offered.iter().any(|p| p == "portforward.k8s.io") {
                return Err(Refusal::new(
                    403,
                    "Forbidden",
                    format!("no supported port-forward protocol in {offered:?}"),
                ));
            }
            let on_upgrade = hyper::upgrade::on(req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    port_forward::serve_spdy(TokioIo::new(upgraded), runtime, sandbox).await;
                }
            });
            return Ok(spdy_switch("portforward.k8s.io"));
        }
        let (response, protocol) = websocket_upgrade(
            req,
            &[
                "SPDY/3.1+portforward.k8s.io",
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
            ],
        )?;
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            if protocol.starts_with("SPDY") {
                port_forward::serve_spdy(port_forward::tunnel(ws), runtime, sandbox).await;
            } else {
                port_forward::serve_channels(ws, runtime, sandbox, ports).await;
            }
        });
        Ok(response)
    }
}

fn is_spdy(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
}

/// The stream protocols a SPDY upgrade offers (`X-Stream-Protocol-Version`).
fn stream_protocols(req: &Request<Incoming>) -> Vec<String> {
    req.headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect()
}

/// The answer that switches a connection to SPDY/3.1 with `protocol`.
fn spdy_switch(protocol: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(full(Bytes::new()))
        .expect("a valid response")
}

/// Ends a stream after `limit` bytes.
fn limit_stream(stream: crate::runtime::ByteStream, limit: u64) -> crate::runtime::ByteStream {
    Box::pin(
        stream
            .scan(limit, |left, chunk| {
                if *left == 0 {
                    return futures::future::ready(None);
                }
                let out = chunk.map(|mut b| {
                    if b.len() as u64 > *left {
                        b.truncate(*left as usize);
                    }
                    *left -= b.len() as u64;
                    b
                });
                futures::future::ready(Some(out))
            })
            .fuse(),
    )
}

/// Accepts a WebSocket upgrade with one of `protocols` (in our order of preference).
fn websocket_upgrade(
    req: &Request<Incoming>,
    protocols: &[&'static str],
) -> Result<(Response<Body>, &'static str), Refusal> {
    let headers = req.headers();
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| websocket) else {
        return Err(Refusal::new(
            400,
            "BadRequest",
            "Upgrade request required (WebSocket)".into(),
        ));
    };
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let Some(protocol) = protocols
        .iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
    else {
        return Err(Refusal::new(
            400,
            "BadRequest",
            format!("no supported subprotocol in {offered:?}; this node speaks {protocols:?}"),
        ));
    };
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(full(Bytes::new()))
        .expect("a valid response");
    Ok((response, protocol))
}

#[derive(Debug, Clone, Copy)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// The Status that ends an exec, as the kubelet reports exit codes.
fn exit_status(command: &[String], code: Option<i32>) -> serde_json::Value {
    match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        Some(n) => json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}: exit status {n}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": n.to_string()}]}}),
        None => json!({"metadata": {}, "status": "Failure",
            "message": "the command's exit code is unknown", "reason": "InternalError"}),
    }
}

async fn run_exec<R: ContainerRuntime>(
    ws: Ws,
    runtime: &R,
    id: &str,
    command: &[String],
    streams: Streams,
    v5: bool,
) -> Result<()> {
    let session = match runtime.exec(id, command, streams.tty, streams.stdin).await {
        Ok(s) => s,
        Err(e) => {
            let (mut sink, _) = ws.split();
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("{e:#}")});
            sink.send(frame(3, status.to_string().as_bytes())).await?;
            let _ = sink.close().await;
            return Ok(());
        }
    };
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    // Output: stdout on 1, stderr on 2, each only if asked for.
    let stdout_task = {
        let tx = out_tx.clone();
        let mut out = session.stdout;
        let wanted = streams.stdout;
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = out.next().await {
                if wanted && tx.send(frame(1, &chunk)).await.is_err() {
                    break;
                }
            }
        })
    };
    let stderr_task = session.stderr.map(|mut err| {
        let tx = out_tx.clone();
        let wanted = streams.stderr;
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = err.next().await {
                if wanted && tx.send(frame(2, &chunk)).await.is_err() {
                    break;
                }
            }
        })
    });
    drop(out_tx);
    // Input: stdin on 0, resize on 4, v5 stream close on 255.
    let mut stdin = session.stdin;
    let resize = session.resize;
    let input_task = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let Message::Binary(data) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match channel {
                0 => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(payload).await.is_err()
                    {
                        stdin = None;
                    }
                }
                4 => {
                    if let Some(resize) = &resize
                        && let Ok(size) = serde_json::from_slice::<serde_json::Value>(payload)
                    {
                        let w = size["Width"].as_u64().unwrap_or(80) as u16;
                        let h = size["Height"].as_u64().unwrap_or(24) as u16;
                        resize(w, h).await;
                    }
                }
                255 if v5 && payload.first() == Some(&0) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
        if let Some(mut w) = stdin.take() {
            let _ = w.shutdown().await;
        }
    });
    while let Some(message) = out_rx.recv().await {
        if sink.send(message).await.is_err() {
            break;
        }
    }
    let _ = stdout_task.await;
    if let Some(t) = stderr_task {
        let _ = t.await;
    }
    let code = session.exit.await.unwrap_or(None);
    let status = exit_status(command, code);
    sink.send(frame(3, status.to_string().as_bytes())).await?;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    input_task.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q = query_pairs(Some("command=sh&command=-c&command=echo%20hi&output=1"));
        assert_eq!(q[2], ("command".into(), "echo hi".into()));
        assert!(flag(&q, &["output", "stdout"]));
        assert!(!flag(&q, &["error"]));
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
    }

    #[test]
    fn exit_codes_become_statuses() {
        assert_eq!(exit_status(&[], Some(0))["status"], "Success");
        let failed = exit_status(&["false".into()], Some(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }
}
