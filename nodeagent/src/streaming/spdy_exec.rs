//! Exec and attach over SPDY/3.1 (`v4.channel.k8s.io`), as kubectl before 1.30 speaks them:
//! the client opens one stream per channel, named by its `streamtype` header (`error`,
//! `stdin`, `stdout`, `stderr`, `resize`); once every stream the request asked for is open
//! the command runs, its output goes out as data frames, stdin comes in until the client
//! half-closes it, terminal sizes arrive as JSON on `resize`, and the ending Status is
//! written to `error` before every stream is closed.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::spdy::{self, Frame, FrameWriter};
use crate::runtime::ContainerRuntime;

/// How long the client has to open the streams it asked for.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The streams an exec request asked for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wanted {
    fn names(&self) -> Vec<&'static str> {
        let mut names = vec!["error"];
        if self.stdin {
            names.push("stdin");
        }
        if self.stdout {
            names.push("stdout");
        }
        if self.stderr && !self.tty {
            names.push("stderr");
        }
        if self.tty {
            names.push("resize");
        }
        names
    }
}

/// Serves one exec (or attach, with an empty `command`) on an upgraded connection.
pub async fn serve<S, R>(conn: S, runtime: &R, id: &str, command: &[String], wanted: Wanted)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: ContainerRuntime,
{
    let (mut frames, out, writer) = spdy::session(conn);
    let mut headers_out = FrameWriter::default();
    let mut streams: HashMap<String, u32> = HashMap::new();
    let needed = wanted.names();

    // Every stream the request asked for, each answered as it opens.
    let opened = tokio::time::timeout(STREAM_WAIT, async {
        while !needed.iter().all(|n| streams.contains_key(*n)) {
            match frames.next().await {
                Ok(Some(Frame::SynStream {
                    stream_id, headers, ..
                })) => {
                    let kind = spdy::header(&headers, "streamtype")
                        .unwrap_or("")
                        .to_owned();
                    let _ = out.send(headers_out.syn_reply(stream_id, &[], false)).await;
                    streams.insert(kind, stream_id);
                }
                Ok(Some(Frame::Ping(p))) => {
                    let _ = out.send(spdy::ping(p)).await;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
        true
    })
    .await;
    if opened != Ok(true) {
        debug!("the exec client did not open its streams");
        drop(out);
        let _ = writer.await;
        return;
    }
    let stream = |name: &str| streams.get(name).copied();

    let session = match runtime.exec(id, command, wanted.tty, wanted.stdin).await {
        Ok(s) => s,
        Err(e) => {
            let status = serde_json::json!({"metadata": {}, "status": "Failure",
                "reason": "InternalError", "message": format!("{e:#}")});
            if let Some(err) = stream("error") {
                let _ = out
                    .send(spdy::data(err, status.to_string().as_bytes(), true))
                    .await;
            }
            drop(out);
            let _ = writer.await;
            return;
        }
    };

    let pump = |source: Option<crate::runtime::ByteStream>, target: Option<u32>| {
        let out = out.clone();
        async move {
            if let Some(mut source) = source {
                while let Some(Ok(chunk)) = source.next().await {
                    if let Some(t) = target
                        && out.send(spdy::data(t, &chunk, false)).await.is_err()
                    {
                        break;
                    }
                }
            }
            if let Some(t) = target {
                let _ = out.send(spdy::data(t, &[], true)).await;
            }
        }
    };
    let output = pump(Some(session.stdout), stream("stdout"));
    let errors = pump(session.stderr, stream("stderr"));

    // Input: stdin data until its FIN, and terminal sizes.
    let (stdin_id, resize_id) = (stream("stdin"), stream("resize"));
    let mut stdin = session.stdin;
    let resize = session.resize;
    let ping_out = out.clone();
    let input = async move {
        let mut sizes = BytesMut::new();
        while let Ok(Some(frame)) = frames.next().await {
            match frame {
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    if Some(stream_id) == stdin_id {
                        if let Some(w) = stdin.as_mut()
                            && !data.is_empty()
                            && w.write_all(&data).await.is_err()
                        {
                            stdin = None;
                        }
                        if flags & spdy::FLAG_FIN != 0
                            && let Some(mut w) = stdin.take()
                        {
                            let _ = w.shutdown().await;
                        }
                    } else if Some(stream_id) == resize_id {
                        sizes.extend_from_slice(&data);
                        apply_sizes(&mut sizes, resize.as_ref()).await;
                    }
                }
                Frame::Ping(p) => {
                    let _ = ping_out.send(spdy::ping(p)).await;
                }
                Frame::GoAway => break,
                _ => {}
            }
        }
        if let Some(mut w) = stdin.take() {
            let _ = w.shutdown().await;
        }
    };
    let input = tokio::spawn(input);
    tokio::join!(output, errors);
    let code = session.exit.await.unwrap_or(None);
    let status = super::exit_status(command, code);
    if let Some(err) = stream("error") {
        let _ = out
            .send(spdy::data(err, status.to_string().as_bytes(), true))
            .await;
    }
    for name in ["stdin", "resize"] {
        if let Some(s) = stream(name) {
            let _ = out.send(spdy::data(s, &[], true)).await;
        }
    }
    let _ = out.send(spdy::go_away(0)).await;
    input.abort();
    drop(out);
    let _ = writer.await;
}

/// Applies every complete `{"Width":…,"Height":…}` object in `buf`, keeping a partial one.
async fn apply_sizes(buf: &mut BytesMut, resize: Option<&crate::runtime::Resize>) {
    let text = buf.clone().freeze();
    let mut de = serde_json::Deserializer::from_slice(&text).into_iter::<serde_json::Value>();
    let mut consumed = 0;
    while let Some(Ok(size)) = de.next() {
        consumed = de.byte_offset();
        if let Some(resize) = resize {
            let w = size["Width"].as_u64().unwrap_or(80) as u16;
            let h = size["Height"].as_u64().unwrap_or(24) as u16;
            resize(w, h).await;
        }
    }
    let rest = Bytes::copy_from_slice(&text[consumed..]);
    buf.clear();
    buf.extend_from_slice(&rest);
}
