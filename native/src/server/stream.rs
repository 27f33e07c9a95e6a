//! Files of torrents over HTTP while they download: `GET /stream/<info-hash>/<file-index>`
//! answers Range requests (`206 Partial Content`, `Accept-Ranges: bytes`, the file's
//! `Content-Type`), so a media player or a `<video>` element can open and seek in a file
//! whose pieces are still arriving; each response reads through a [`FileReader`], which
//! waits for the pieces it needs and has them fetched first.
//!
//! [`StreamServer`] serves only these URLs (`webtorrent stream`); the tracker [`Server`]
//! serves them too once given the client's torrents ([`Server::set_torrents`]).
//!
//! [`Server`]: super::Server
//! [`Server::set_torrents`]: super::Server::set_torrents

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;
use webtorrent_core::{Id20, InfoHash};

use super::http::HEADER_TIMEOUT;
use super::stats::escape;
use super::www::content_type;
use super::ServerError;
use crate::{FileReader, Torrent};

/// The path prefix of stream URLs.
pub const PREFIX: &str = "/stream/";

/// Most bytes sent in one body frame.
const FRAME_BYTES: usize = 256 * 1024;

/// Most connections served at once by a [`StreamServer`].
const MAX_CONNECTIONS: usize = 256;

/// Finds the torrent for an info hash (a client's torrents: `client.get(ih)`).
pub type Lookup = Arc<dyn Fn(InfoHash) -> Option<Torrent> + Send + Sync>;

/// Lists the torrents a [`StreamServer`] shows at `/` (a client's: `client.torrents()`).
pub type Index = Arc<dyn Fn() -> Vec<Torrent> + Send + Sync>;

/// A response body: a small buffer, or a file read while it downloads.
pub type Body = Either<Full<Bytes>, FileBody>;

/// A file's bytes as an HTTP body, read through a [`FileReader`] that waits for pieces.
pub struct FileBody {
    reader: FileReader,
    remaining: u64,
}

impl FileBody {
    /// `len` bytes from the reader's position.
    pub fn new(reader: FileReader, len: u64) -> FileBody {
        FileBody {
            reader,
            remaining: len,
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let max = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(FRAME_BYTES);
        match this.reader.poll_chunk(cx, max) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(b)) if b.is_empty() => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended early",
            )))),
            Poll::Ready(Ok(b)) => {
                this.remaining -= b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// What a `Range` header asks of a file of `len` bytes (RFC 9110, section 14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: the whole file, `200 OK`. Also for forms we do not serve as one part
    /// (several ranges, other units), which the RFC lets a server ignore.
    Whole,
    /// These bytes, `206 Partial Content`.
    Part(Range<u64>),
    /// A byte range that starts at or after the end: `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// Parses a `Range` header value for a file of `len` bytes: `bytes=A-B`, `bytes=A-` or
/// `bytes=-N` (the last N bytes).
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if a.is_empty() {
        // The last N bytes.
        if !digits(b) {
            return RangeRequest::Whole;
        }
        let n: u64 = b.parse().unwrap_or(u64::MAX);
        if n == 0 || len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Part(len.saturating_sub(n)..len);
    }
    if !digits(a) || !(b.is_empty() || digits(b)) {
        return RangeRequest::Whole;
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeRequest::Unsatisfiable;
    };
    let end = if b.is_empty() {
        len
    } else {
        match b.parse::<u64>() {
            Ok(last) if last < start => return RangeRequest::Whole,
            Ok(last) => last.saturating_add(1).min(len),
            Err(_) => len,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part(start..end)
}

fn plain(status: StatusCode, msg: String) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", msg)
}

/// A small response of this type, readable from any origin.
fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// The URL path of file `index` of a torrent.
pub fn path(info_hash: InfoHash, index: usize) -> String {
    format!("{PREFIX}{}/{index}", info_hash.to_hex())
}

/// Answers a request whose path starts with [`PREFIX`]: `/stream/<info-hash>` lists the
/// torrent's files (HTML), `/stream/<info-hash>/<index>[/<any name>]` serves one. GET and
/// HEAD only.
pub async fn respond(
    lookup: &Lookup,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "stream URLs answer GET and HEAD\n".into(),
        );
    }
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let mut parts = rest.splitn(3, '/');
    let hash = parts.next().unwrap_or("");
    let Ok(info_hash) = Id20::from_hex_or_base32(hash) else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("{hash:?} is not an info hash: use /stream/<40 hex digits>/<file index>\n"),
        );
    };
    let Some(torrent) = lookup(info_hash) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!(
                "no torrent {} here: add it first (webtorrent stream <magnet or .torrent>)\n",
                info_hash.to_hex()
            ),
        );
    };
    let Some(meta) = torrent.metainfo() else {
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the torrent's metadata has not arrived from peers yet; try again shortly\n".into(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        return r;
    };
    let index = match parts.next() {
        None | Some("") => return listing(&torrent),
        Some(i) => i,
    };
    let files = torrent.files();
    let file = match index
        .parse::<usize>()
        .ok()
        .and_then(|i| Some((i, files.get(i)?)))
    {
        Some((i, f)) => (i, f),
        None => {
            return plain(
                StatusCode::NOT_FOUND,
                format!(
                "no file {index:?} in {}: it has {} file(s), numbered from 0 (see /stream/{})\n",
                meta.info.name,
                files.len(),
                info_hash.to_hex()
            ),
            )
        }
    };
    let (index, file) = file;
    let len = file.length;
    let mut range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeRequest::Whole, |v| parse_range(v, len));
    let etag = format!("\"{}-{index}\"", info_hash.to_hex());
    // If-Range with another validator: the whole file, as the RFC asks.
    if let Some(v) = headers.get(header::IF_RANGE) {
        if v.as_bytes() != etag.as_bytes() {
            range = RangeRequest::Whole;
        }
    }
    let (status, span) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0..len),
        RangeRequest::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeRequest::Unsatisfiable => {
            let mut r = plain(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {len} bytes\n"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = if method == Method::HEAD || span.is_empty() {
        Either::Left(Full::new(Bytes::new()))
    } else {
        let mut reader = match torrent.file_reader(index) {
            Ok(r) => r,
            Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        };
        if let Err(e) =
            tokio::io::AsyncSeekExt::seek(&mut reader, io::SeekFrom::Start(span.start)).await
        {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
        }
        Either::Right(FileBody::new(reader, span.end - span.start))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(Path::new(name))),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{len}",
            span.start,
            span.end.saturating_sub(1)
        )) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename*=UTF-8''{}",
        percent_encode(name)
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Accept-Ranges, Content-Range, Content-Length"),
    );
    r
}

/// RFC 8187 encoding of a file name for `Content-Disposition`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An HTML list of a torrent's files with their stream links.
fn listing(torrent: &Torrent) -> Response<Body> {
    let mut html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>{0}</title>\n<h1>{0}</h1>\n<ul>\n",
        escape(&torrent.name())
    );
    for (i, f) in torrent.files().iter().enumerate() {
        let _ = writeln!(
            html,
            "<li><a href=\"{}\">{}</a> ({} bytes)</li>",
            path(torrent.info_hash(), i),
            escape(&f.path),
            f.length
        );
    }
    html.push_str("</ul>\n");
    reply(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// An HTTP server for stream URLs only: `/stream/...` for the torrents `lookup` finds,
/// and `/` listing them. Stops when dropped or shut down.
pub struct StreamServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl StreamServer {
    /// Listens on `addr` (port 0 picks one). `index` lists the torrents at `/`.
    pub async fn bind(
        addr: SocketAddr,
        lookup: Lookup,
        index: Index,
    ) -> Result<StreamServer, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr,
                proto: "tcp",
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr,
            proto: "tcp",
            source,
        })?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, lookup, index, rx));
        Ok(StreamServer {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of file `index` of a torrent.
    pub fn url(&self, info_hash: InfoHash, index: usize) -> String {
        format!("http://{}{}", self.addr, path(info_hash, index))
    }

    /// Stops accepting and closes the open connections.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    lookup: Lookup,
    index: Index,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                debug!("stream server accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if conns.len() >= MAX_CONNECTIONS {
            debug!("stream server: too many connections, closing {remote}");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (lookup, index) = (lookup.clone(), index.clone());
        conns.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (lookup, index) = (lookup.clone(), index.clone());
                async move {
                    let path = req.uri().path();
                    let r = if path.starts_with(PREFIX) {
                        respond(&lookup, req.method(), path, req.headers()).await
                    } else if path == "/" {
                        home(&index())
                    } else {
                        plain(
                            StatusCode::NOT_FOUND,
                            "not found: stream URLs are /stream/<info hash>/<file index>\n".into(),
                        )
                    };
                    Ok::<_, Infallible>(r)
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true);
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                debug!("stream connection from {remote}: {e}");
            }
        });
    }
}

/// `/`: the torrents and their files.
fn home(torrents: &[Torrent]) -> Response<Body> {
    let mut html = String::from(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>webtorrent stream</title>\n<ul>\n",
    );
    for t in torrents {
        let _ = writeln!(
            html,
            "<li><a href=\"{PREFIX}{}\">{}</a></li>",
            t.info_hash().to_hex(),
            escape(&t.name())
        );
    }
    html.push_str("</ul>\n");
    reply(StatusCode::OK, "text/html; charset=utf-8", html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part(0..100));
        assert_eq!(parse_range("bytes=500-", 1000), Part(500..1000));
        assert_eq!(parse_range("bytes=-100", 1000), Part(900..1000));
        assert_eq!(parse_range("bytes=-5000", 1000), Part(0..1000));
        assert_eq!(parse_range("bytes=990-2000", 1000), Part(990..1000));
        assert_eq!(parse_range(" bytes = 1-1", 1000), Whole);
        assert_eq!(parse_range("bytes= 1-1", 1000), Part(1..2));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-3", 1000), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse_range("items=0-1", 1000), Whole);
        assert_eq!(parse_range("bytes=a-b", 1000), Whole);
        assert_eq!(parse_range("bytes=--1", 1000), Whole);
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 1000),
            Part(0..1000)
        );
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 1000),
            Unsatisfiable
        );
    }

    #[test]
    fn names_are_encoded() {
        assert_eq!(percent_encode("a b/é.mp4"), "a%20b%2F%C3%A9.mp4");
    }
}
