//! A test double of a node's streaming server (the kubelet API the apiserver proxies to), so
//! the apiserver's logs, exec, attach and port-forward endpoints can be tested before the
//! node agent exists. It serves mutual TLS with a certificate from the cluster CA and speaks
//! WebSocket only (`v5.channel.k8s.io`, `v4.channel.k8s.io`); SPDY upgrades get a 400.
//!
//! Its "containers" are scripted: logs are five numbered lines; exec runs `echo ARGS`, `cat`
//! (stdin back on stdout, until the client closes stdin), `false` and `sh -c "exit N"`;
//! attach greets. With stdin attached, every script but `cat` first waits for stdin to
//! close. Port-forward echoes every byte back on the port it came in on; `/healthz` answers
//! `ok` (for `nodes/proxy`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// A running double; it stops when dropped.
pub struct NodeDouble {
    pub addr: SocketAddr,
    /// Every request's path and query, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeDouble {
    /// Starts on a free loopback port with a serving certificate from the CA in `pki_dir`,
    /// accepting only clients whose certificates that CA signed.
    pub async fn start(pki_dir: &Path) -> Result<NodeDouble> {
        let pki = certs::Pki::load_or_create(pki_dir)?;
        let serving = pki.issue_serving("node-double", &["127.0.0.1".to_owned()])?;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
                .collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(pki.ca_cert_pem().as_bytes()) {
            roots.add(ca?)?;
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| handle(req, seen.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(NodeDouble {
            addr,
            requests,
            task,
        })
    }

    /// The Node object that points at this double, as JSON for `kubectl create -f`.
    pub fn node_manifest(&self, name: &str) -> String {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {
                "addresses": [{"type": "InternalIP", "address": self.addr.ip().to_string()}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.addr.port()}}
            }
        })
        .to_string()
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(body.into()))
        .unwrap()
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    seen.lock().unwrap().push(format!("{path}?{query}"));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", _ns, _pod, container] => Ok(logs(container, &query)),
        [kind @ ("exec" | "attach"), _ns, _pod, container] => {
            let script = Script::Exec {
                attach: *kind == "attach",
                container: (*container).to_owned(),
                command: query_values(&query, "command"),
                stdin: query_values(&query, "input").iter().any(|v| v == "1"),
            };
            Ok(upgrade(&mut req, script))
        }
        ["portForward", _ns, _pod] => {
            let ports = query_values(&query, "ports")
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect();
            Ok(upgrade(&mut req, Script::PortForward { ports }))
        }
        ["healthz"] => Ok(text(StatusCode::OK, "ok")),
        _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
    }
}

fn logs(container: &str, query: &str) -> Response<Full<Bytes>> {
    let timestamps = query_values(query, "timestamps")
        .first()
        .map(String::as_str)
        == Some("true");
    let mut lines: Vec<String> = (1..=5)
        .map(|i| {
            let line = format!("{container} line {i}\n");
            if timestamps {
                format!("2026-01-01T00:00:0{i}.000000000Z {line}")
            } else {
                line
            }
        })
        .collect();
    if let Some(tail) = query_values(query, "tailLines")
        .first()
        .and_then(|t| t.parse::<usize>().ok())
    {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    text(StatusCode::OK, lines.concat())
}

enum Script {
    Exec {
        attach: bool,
        container: String,
        command: Vec<String>,
        stdin: bool,
    },
    PortForward {
        ports: Vec<u16>,
    },
}

fn upgrade(req: &mut Request<Incoming>, script: Script) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| websocket) else {
        return text(
            StatusCode::BAD_REQUEST,
            "this node double speaks WebSocket only",
        );
    };
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let Some(protocol) = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("no supported subprotocol in {offered:?}"),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    let v5 = protocol.starts_with("v5");
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let _ = match script {
            Script::Exec {
                attach,
                container,
                command,
                stdin,
            } => run_exec(ws, attach, &container, &command, stdin, v5).await,
            Script::PortForward { ports } => run_port_forward(ws, &ports).await,
        };
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

async fn run_exec(
    mut ws: Ws,
    attach: bool,
    container: &str,
    command: &[String],
    stdin: bool,
    v5: bool,
) -> Result<()> {
    let is_cat = !attach && command.first().is_some_and(|c| c == "cat");
    if stdin && !is_cat {
        // client-go registers its streams only after the upgrade, while it already reads the
        // connection, and drops frames for streams it has not registered yet. A real command
        // takes long enough to start that this never shows; a scripted one does not, so when
        // stdin is attached the double waits for it to close (its streams exist by then).
        wait_for_stdin_close(&mut ws, v5).await?;
    }
    let exit_code = if attach {
        ws.send(frame(1, format!("attached to {container}\n").as_bytes()))
            .await?;
        0
    } else {
        match command.first().map(String::as_str) {
            Some("echo") => {
                ws.send(frame(1, format!("{}\n", command[1..].join(" ")).as_bytes()))
                    .await?;
                0
            }
            Some("cat") => {
                while let Some(message) = ws.next().await {
                    let Message::Binary(data) = message? else {
                        continue;
                    };
                    match data.first() {
                        Some(0) => ws.send(frame(1, &data[1..])).await?,
                        // v5: the client closed a stream; stdin's close ends `cat`.
                        Some(255) if v5 && data.get(1) == Some(&0) => break,
                        _ => {}
                    }
                }
                0
            }
            Some("false") => 1,
            Some("sh") => command
                .last()
                .and_then(|c| c.strip_prefix("exit "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0),
            _ => {
                ws.send(frame(2, b"command not found\n")).await?;
                127
            }
        }
    };
    let status = if exit_code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {exit_code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]}})
    };
    ws.send(frame(3, status.to_string().as_bytes())).await?;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .context("closing")?;
    Ok(())
}

async fn wait_for_stdin_close(ws: &mut Ws, v5: bool) -> Result<()> {
    while let Some(message) = ws.next().await {
        if let Message::Binary(data) = message?
            && v5
            && data.first() == Some(&255)
            && data.get(1) == Some(&0)
        {
            break;
        }
    }
    Ok(())
}

async fn run_port_forward(mut ws: Ws, ports: &[u16]) -> Result<()> {
    for (i, port) in ports.iter().enumerate() {
        let data_channel = (2 * i) as u8;
        ws.send(frame(data_channel, &port.to_le_bytes())).await?;
        ws.send(frame(data_channel + 1, &port.to_le_bytes()))
            .await?;
    }
    while let Some(message) = ws.next().await {
        match message? {
            Message::Binary(data) => {
                if let Some((&channel, payload)) = data.split_first()
                    && channel % 2 == 0
                    && !payload.is_empty()
                {
                    ws.send(frame(channel, payload)).await?;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(())
}
