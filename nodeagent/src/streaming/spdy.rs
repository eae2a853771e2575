//! SPDY/3.1 framing, as far as the kubelet's streaming protocols use it (client-go speaks
//! it through moby/spdystream): control frames (SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and data frames, with name/value header
//! blocks compressed by zlib over the spec's shared dictionary.
//!
//! Header blocks from the peer are inflated with one decompressor per session, seeded with
//! the dictionary. Header blocks we send are one zlib stream of *stored* deflate blocks, each
//! block ending in a sync flush as a compressor's would: valid zlib that any inflater reads,
//! with no dictionary needed (the zlib header does not ask for one), so no compressor is
//! required. Flow-control windows are not enforced
//! (spdystream sends no WINDOW_UPDATE either).

use std::io;

use bytes::{Buf, BytesMut};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const FLAG_FIN: u8 = 0x01;

/// The largest frame accepted from a peer.
const MAX_FRAME: usize = 16 << 20;

/// The zlib dictionary of SPDY/3 header blocks: header names and common values, each with a
/// 4-byte big-endian length, then a run of common status lines, dates and media types.
fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut out = Vec::with_capacity(1423);
    for w in WORDS {
        out.extend_from_slice(&(w.len() as u32).to_be_bytes());
        out.extend_from_slice(w.as_bytes());
    }
    out.extend_from_slice(TAIL.as_bytes());
    out
}

pub type Headers = Vec<(String, String)>;

/// A frame as read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway,
    Headers {
        stream_id: u32,
        flags: u8,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: bytes::Bytes,
    },
    /// SETTINGS, WINDOW_UPDATE and unknown types: nothing to act on.
    Other,
}

/// The session's header decompressor: everything inflated so far, after the dictionary.
struct Inflater {
    state: Box<DecompressorOxide>,
    history: Vec<u8>,
    /// How many bytes of the zlib header are still to be skipped (2, plus 4 for a DICTID).
    header: Vec<u8>,
    header_done: bool,
}

impl Inflater {
    fn new() -> Inflater {
        Inflater {
            state: Box::default(),
            history: dictionary(),
            header: Vec::new(),
            header_done: false,
        }
    }

    fn inflate(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        if !self.header_done {
            // CMF, FLG, and a DICTID when FLG has FDICT set.
            while self.header.len() < 2 && !input.is_empty() {
                self.header.push(input[0]);
                input = &input[1..];
            }
            if self.header.len() >= 2 {
                let want = if self.header[1] & 0x20 != 0 { 6 } else { 2 };
                while self.header.len() < want && !input.is_empty() {
                    self.header.push(input[0]);
                    input = &input[1..];
                }
                self.header_done = self.header.len() == want;
            }
        }
        let start = self.history.len();
        let mut pos = start;
        let flags = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
            | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        loop {
            if self.history.len() < pos + 4096 {
                self.history.resize(pos + 4096, 0);
            }
            let (status, used, written) =
                decompress(&mut self.state, input, &mut self.history, pos, flags);
            input = &input[used..];
            pos += written;
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if input.is_empty() => break,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done => continue,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad SPDY header block: {other:?}"),
                    ));
                }
            }
        }
        self.history.truncate(pos);
        Ok(self.history[start..pos].to_vec())
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn parse_headers(block: &[u8]) -> io::Result<Headers> {
    let mut b = block;
    let count = read_u32(&mut b)? as usize;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = read_string(&mut b)?;
        let value = read_string(&mut b)?;
        // Several values of one name are NUL-separated.
        for v in value.split('\0') {
            out.push((name.to_ascii_lowercase(), v.to_owned()));
        }
    }
    Ok(out)
}

fn read_u32(b: &mut &[u8]) -> io::Result<u32> {
    if b.len() < 4 {
        return Err(bad("short SPDY header block"));
    }
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    *b = &b[4..];
    Ok(v)
}

fn read_string(b: &mut &[u8]) -> io::Result<String> {
    let n = read_u32(b)? as usize;
    if b.len() < n {
        return Err(bad("short SPDY header block"));
    }
    let s = String::from_utf8_lossy(&b[..n]).into_owned();
    *b = &b[n..];
    Ok(s)
}

/// Reads frames from the peer.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    inflater: Inflater,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(16 * 1024),
            inflater: Inflater::new(),
        }
    }

    async fn fill(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() < n {
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "SPDY session ended inside a frame",
                ));
            }
        }
        Ok(true)
    }

    /// The next frame, or `None` at the end of the session.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        if !self.fill(8).await? {
            return Ok(None);
        }
        let head: [u8; 8] = self.buf[..8].try_into().expect("8 bytes");
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if length > MAX_FRAME {
            return Err(bad("SPDY frame too large"));
        }
        if !self.fill(8 + length).await? {
            return Ok(None);
        }
        self.buf.advance(8);
        let body = self.buf.split_to(length).freeze();
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: body,
            }));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let id = |b: &[u8]| -> io::Result<u32> {
            if b.len() < 4 {
                return Err(bad("short SPDY control frame"));
            }
            Ok(u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
        };
        Ok(Some(match kind {
            1 => {
                if body.len() < 10 {
                    return Err(bad("short SYN_STREAM"));
                }
                let stream_id = id(&body)?;
                let block = self.inflater.inflate(&body[10..])?;
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers: parse_headers(&block)?,
                }
            }
            2 => {
                let stream_id = id(&body)?;
                self.inflater.inflate(&body[4..])?;
                Frame::SynReply { stream_id, flags }
            }
            3 => {
                let stream_id = id(&body)?;
                let status = body
                    .get(4..8)
                    .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
                Frame::RstStream { stream_id, status }
            }
            6 => Frame::Ping(id(&body)?),
            7 => Frame::GoAway,
            8 => {
                let stream_id = id(&body)?;
                self.inflater.inflate(&body[4..])?;
                Frame::Headers { stream_id, flags }
            }
            _ => Frame::Other,
        }))
    }
}

/// Makes frames for the peer. Header blocks share one zlib stream per session.
#[derive(Default)]
pub struct FrameWriter {
    zlib_started: bool,
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&[0x80, 0x03]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

impl FrameWriter {
    /// A header block: the name/value pairs as one stored deflate block of the session's
    /// zlib stream (the stream's header first, the first time).
    fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 16);
        if !self.zlib_started {
            // Deflate, 32 KiB window, no dictionary, check bits making 0x7801 divisible by 31.
            out.extend_from_slice(&[0x78, 0x01]);
            self.zlib_started = true;
        }
        for chunk in raw.chunks(u16::MAX as usize) {
            let len = chunk.len() as u16;
            out.push(0x00); // not final, stored
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // A sync flush (an empty stored block): inflaters hand out what they have on
        // reaching it, instead of reading on into the next frame.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }

    pub fn syn_reply(&mut self, stream_id: u32, headers: &[(&str, &str)], fin: bool) -> Vec<u8> {
        let mut body = stream_id.to_be_bytes().to_vec();
        body.extend_from_slice(&self.header_block(headers));
        control(2, if fin { FLAG_FIN } else { 0 }, &body)
    }

    pub fn syn_stream(&mut self, stream_id: u32, headers: &[(&str, &str)], fin: bool) -> Vec<u8> {
        let mut body = stream_id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&self.header_block(headers));
        control(1, if fin { FLAG_FIN } else { 0 }, &body)
    }
}

pub fn data(stream_id: u32, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

pub fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(3, 0, &body)
}

pub fn ping(id: u32) -> Vec<u8> {
    control(6, 0, &id.to_be_bytes())
}

pub fn go_away(last_stream: u32) -> Vec<u8> {
    let mut body = last_stream.to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    control(7, 0, &body)
}

/// A server's side of a SPDY session on `conn`: the peer's frames, and a sender whose
/// byte chunks (whole frames) a writer task puts on the wire in order. The writer ends, and
/// shuts the connection's write side, once every sender is dropped.
pub fn session<S>(
    conn: S,
) -> (
    FrameReader<tokio::io::ReadHalf<S>>,
    tokio::sync::mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<()>,
)
where
    S: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let (read_half, mut write_half) = tokio::io::split(conn);
    let (out, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if write_half.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write_half.shutdown().await;
    });
    (FrameReader::new(read_half), out, writer)
}

/// The value of a header.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_specs() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // Its Adler-32, which a peer's FDICT header names.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &d {
            a = (a + *byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[tokio::test]
    async fn frames_we_write_read_back() {
        let mut w = FrameWriter::default();
        let mut bytes = w.syn_stream(1, &[("streamtype", "data"), ("port", "80")], false);
        bytes.extend(w.syn_stream(3, &[("streamtype", "error"), ("port", "80")], true));
        bytes.extend(data(1, b"hello", true));
        bytes.extend(ping(7));
        let mut r = FrameReader::new(&bytes[..]);
        match r.next().await.unwrap().unwrap() {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                assert_eq!(stream_id, 1);
                assert_eq!(header(&headers, "port"), Some("80"));
            }
            other => panic!("{other:?}"),
        }
        match r.next().await.unwrap().unwrap() {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
            } => {
                assert_eq!((stream_id, flags), (3, FLAG_FIN));
                assert_eq!(header(&headers, "streamtype"), Some("error"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.next().await.unwrap().unwrap(),
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: bytes::Bytes::from_static(b"hello")
            }
        );
        assert_eq!(r.next().await.unwrap().unwrap(), Frame::Ping(7));
        assert_eq!(r.next().await.unwrap(), None);
    }
}
