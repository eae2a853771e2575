//! Port-forward into a pod's network namespace, in the two shapes clients use:
//!
//! - kubectl's `portforward.k8s.io` over SPDY/3.1 (straight, or tunnelled in WebSocket
//!   binary messages): every forwarded connection is a pair of streams with the same
//!   `requestid` — an error stream (the node writes why a connection failed, then closes it)
//!   and a data stream carrying the bytes both ways.
//! - kube-rs's WebSocket channels: port `i` of `?ports=` has data channel `2i` and error
//!   channel `2i+1`, each opened by a frame holding the port number (little-endian).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::spdy::{self, Frame, FrameWriter};
use crate::runtime::{ContainerRuntime, Sandbox};

/// A WebSocket's binary messages as a byte stream (and bytes written as binary messages).
pub fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_ws, mut to_ws) = tokio::io::split(theirs);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(b) if to_ws.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_ws.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_ws.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    ours
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
}

/// Serves one SPDY port-forward session until the client ends it.
pub async fn serve_spdy<S, R>(conn: S, runtime: Arc<R>, sandbox: Sandbox)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: ContainerRuntime,
{
    let (mut frames, out, writer) = spdy::session(conn);
    let mut headers_out = FrameWriter::default();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Client bytes for each data stream's pod connection (`None`: the client finished).
    let mut to_pod: HashMap<u32, mpsc::Sender<Option<Bytes>>> = HashMap::new();
    loop {
        let frame = match frames.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                debug!(error = %e, "port-forward session broke");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let kind = spdy::header(&headers, "streamtype").unwrap_or("");
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                let request = spdy::header(&headers, "requestid").unwrap_or("").to_owned();
                if out
                    .send(headers_out.syn_reply(stream_id, &[], false))
                    .await
                    .is_err()
                {
                    break;
                }
                let pair = pairs.entry(request.clone()).or_default();
                match kind {
                    "error" => pair.error = Some(stream_id),
                    "data" => {
                        pair.data = Some(stream_id);
                        let error_stream = pair.error;
                        let (tx, rx) = mpsc::channel(64);
                        to_pod.insert(stream_id, tx);
                        tokio::spawn(forward_stream(
                            runtime.clone(),
                            sandbox.clone(),
                            port,
                            stream_id,
                            error_stream,
                            rx,
                            out.clone(),
                        ));
                        pairs.remove(&request);
                    }
                    _ => {
                        let _ = out.send(spdy::rst_stream(stream_id, 1)).await;
                    }
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = to_pod.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = tx.send(Some(data)).await;
                    }
                    if flags & spdy::FLAG_FIN != 0 {
                        let _ = tx.send(None).await;
                        to_pod.remove(&stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                to_pod.remove(&stream_id);
            }
            Frame::Ping(id) => {
                let _ = out.send(spdy::ping(id)).await;
            }
            Frame::GoAway => break,
            _ => {}
        }
    }
    drop(to_pod);
    drop(out);
    let _ = writer.await;
}

async fn forward_stream<R: ContainerRuntime>(
    runtime: Arc<R>,
    sandbox: Sandbox,
    port: Option<u16>,
    data_stream: u32,
    error_stream: Option<u32>,
    mut from_client: mpsc::Receiver<Option<Bytes>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let finish = |message: Option<String>| {
        let out = out.clone();
        async move {
            if let Some(e) = error_stream {
                if let Some(m) = message {
                    let _ = out.send(spdy::data(e, m.as_bytes(), false)).await;
                }
                let _ = out.send(spdy::data(e, &[], true)).await;
            }
        }
    };
    let Some(port) = port else {
        let _ = out.send(spdy::data(data_stream, &[], true)).await;
        finish(Some("port is not a number".into())).await;
        return;
    };
    let conn = match runtime.connect(&sandbox, port).await {
        Ok(c) => c,
        Err(e) => {
            let _ = out.send(spdy::data(data_stream, &[], true)).await;
            finish(Some(format!(
                "error forwarding port {port} to pod sandbox {}: {e:#}",
                sandbox.id
            )))
            .await;
            return;
        }
    };
    let (mut pod_read, mut pod_write) = tokio::io::split(conn);
    let upstream = async move {
        while let Some(Some(bytes)) = from_client.recv().await {
            if pod_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = pod_write.shutdown().await;
    };
    let downstream = {
        let out = out.clone();
        async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pod_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out
                            .send(spdy::data(data_stream, &buf[..n], false))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = out.send(spdy::data(data_stream, &[], true)).await;
        }
    };
    // The pod closing its side ends the forward; the client's side may stay half-open.
    tokio::select! {
        _ = async { tokio::join!(upstream, downstream) } => {}
    }
    finish(None).await;
}

/// Serves kube-rs's channel protocol for `ports` until the client closes.
pub async fn serve_channels<S, R>(
    ws: WebSocketStream<S>,
    runtime: Arc<R>,
    sandbox: Sandbox,
    ports: Vec<u16>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: ContainerRuntime,
{
    let (mut sink, mut source) = ws.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(256);
    let mut writers: HashMap<u8, mpsc::Sender<Bytes>> = HashMap::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data = (2 * i) as u8;
        let frame = |ch: u8, payload: &[u8]| {
            let mut b = vec![ch];
            b.extend_from_slice(payload);
            Message::Binary(b.into())
        };
        let _ = sink.send(frame(data, &port.to_le_bytes())).await;
        let _ = sink.send(frame(data + 1, &port.to_le_bytes())).await;
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        writers.insert(data, tx);
        let (runtime, sandbox, out) = (runtime.clone(), sandbox.clone(), out.clone());
        tokio::spawn(async move {
            let conn = match runtime.connect(&sandbox, port).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.send(frame(data + 1, format!("{e:#}").as_bytes())).await;
                    return;
                }
            };
            let (mut r, mut w) = tokio::io::split(conn);
            let up = async move {
                while let Some(b) = rx.recv().await {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = w.shutdown().await;
            };
            let down = async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 || out.send(frame(data, &buf[..n])).await.is_err() {
                        break;
                    }
                }
            };
            tokio::join!(up, down);
        });
    }
    drop(out);
    let pump_out = async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    let pump_in = async move {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(b) => {
                    if let Some((&ch, payload)) = b.split_first()
                        && let Some(tx) = writers.get(&ch)
                        && !payload.is_empty()
                    {
                        let _ = tx.send(Bytes::copy_from_slice(payload)).await;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        _ = pump_out => {}
        _ = pump_in => {}
    }
}
