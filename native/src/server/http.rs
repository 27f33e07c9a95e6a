//! HTTP/1.1 on the server's TCP port: tracker announce and scrape, `/stats`, WebSocket
//! upgrades (any path) and the page's static files.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::debug;
use webtorrent_core::tracker::http::encode_failure;
use webtorrent_core::tracker::{
    AnnounceRequest, AnnounceResponse, HttpError, PeerEncoding, ScrapeRequest, ScrapeResponse,
};

use super::stats::{escape, Stats};
use super::swarm::{http_numwant, PeerAnnounce};
use super::www::WwwReply;
use super::{canonical, ws, CachedStats, Shared};

/// Response body type: a buffer, or a file streamed out of a torrent.
pub(super) type Body = super::stream::Body;

/// A response body from bytes.
pub(super) fn full(b: impl Into<Bytes>) -> Body {
    Body::Left(Full::new(b.into()))
}

/// Largest request head (request line, query and headers) read, in bytes.
const MAX_HEAD: usize = 64 * 1024;

/// How long a connection may take to send a request head, and stay idle between requests.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until shutdown; dropping the `JoinSet` then aborts the open ones.
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let mut conns = JoinSet::new();
    let mut shutdown = shared.shutdown.clone();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    debug!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        conns.spawn(async move {
            serve_connection(stream, remote, shared).await;
            drop(permit);
        });
    }
}

async fn serve_connection(stream: TcpStream, remote: SocketAddr, shared: Arc<Shared>) {
    let remote = canonical(remote);
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, remote, shared).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!("HTTP connection from {remote}: {e}");
    }
}

async fn handle(req: Request<Incoming>, remote: SocketAddr, shared: Arc<Shared>) -> Response<Body> {
    if ws::is_upgrade(&req) {
        return ws::upgrade(req, remote, shared);
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let method = req.method();
    let readable = method == Method::GET || method == Method::HEAD;
    if method == Method::OPTIONS {
        return preflight();
    }
    match path {
        // bittorrent-tracker answers these whatever the method.
        "/announce" => announce(&shared, remote, query),
        "/scrape" => scrape(&shared, query),
        "/stats" | "/stats.json" if readable => {
            let wants_json = path == "/stats.json"
                || req
                    .headers()
                    .get(header::ACCEPT)
                    .is_some_and(|a| a.as_bytes() == b"application/json");
            stats(&shared, wants_json).await
        }
        "/bridge.json" if readable => bridge_info(&shared),
        _ if path.starts_with("/bridge/") => bridge_endpoint(&shared, method, path),
        _ if path.starts_with(super::stream::PREFIX) => match shared.torrents.get() {
            Some(t) => super::stream::respond(&t.0, method, path, req.headers()).await,
            None => text(
                StatusCode::NOT_FOUND,
                "this server holds no torrents to stream: seed some with `webtorrent serve FILE`\n",
            ),
        },
        _ if readable => static_file(&shared, path).await,
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// A response with CORS and content-type headers.
fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

fn bencoded(body: Vec<u8>) -> Response<Body> {
    response(StatusCode::OK, "text/plain", body)
}

fn preflight() -> Response<Body> {
    let mut r = response(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// The `failure reason` for a query bittorrent-tracker would refuse, in its words where it
/// has them.
fn failure_text(e: &HttpError) -> String {
    match e {
        HttpError::MissingParam(p) | HttpError::InvalidParam(p) | HttpError::DuplicateParam(p)
            if matches!(*p, "info_hash" | "peer_id" | "port") =>
        {
            format!("invalid {p}")
        }
        other => other.to_string(),
    }
}

fn announce(shared: &Shared, remote: SocketAddr, query: &str) -> Response<Body> {
    let req = match AnnounceRequest::from_query(query) {
        Ok(r) => r,
        Err(e) => return bencoded(encode_failure(&failure_text(&e))),
    };
    if req.port == 0 {
        return bencoded(encode_failure("invalid port"));
    }
    if let Err(reason) = shared.admit(remote.ip(), &req.info_hash) {
        return bencoded(encode_failure(&reason));
    }
    let announce = PeerAnnounce {
        info_hash: req.info_hash,
        peer_id: req.peer_id,
        addr: SocketAddr::new(remote.ip(), req.port),
        left: Some(req.left),
        event: req.event,
        numwant: http_numwant(req.numwant),
    };
    let now = shared.now();
    let result = shared.tracker().announce(now, &announce);
    let mut peers = result.peers;
    if req.no_peer_id {
        for p in &mut peers {
            p.peer_id = None;
        }
    }
    let reply = AnnounceResponse {
        interval: Some(shared.config.tracker.interval_secs()),
        complete: Some(result.complete),
        incomplete: Some(result.incomplete),
        peers,
        ..AnnounceResponse::default()
    };
    let encoding = if req.compact {
        PeerEncoding::Compact
    } else {
        PeerEncoding::Dictionary
    };
    bencoded(reply.encode(encoding))
}

fn scrape(shared: &Shared, query: &str) -> Response<Body> {
    let req = match ScrapeRequest::from_query(query) {
        Ok(r) => r,
        Err(e) => return bencoded(encode_failure(&failure_text(&e))),
    };
    let files = shared.tracker().scrape(&req.info_hashes);
    let reply = ScrapeResponse {
        files: files.into_iter().collect(),
        min_request_interval: Some(shared.config.tracker.interval_secs()),
    };
    bencoded(reply.encode())
}

/// Figures that took at least this long to compute are reused for a while (ten times as
/// long, 1–30 s), so that asking for `/stats` over and over cannot keep a core busy.
const STATS_CACHE_FROM: Duration = Duration::from_millis(20);

/// The `/stats` figures: the tracker is held only while the peer entries are copied; merging
/// and naming the clients runs on a blocking thread. Concurrent requests share one computation.
async fn current_stats(shared: &Shared) -> Arc<Stats> {
    let mut cache = shared.stats_cache.lock().await;
    if let Some(c) = cache.as_ref().filter(|c| c.at.elapsed() < c.ttl) {
        return c.stats.clone();
    }
    let started = Instant::now();
    let snapshot = shared.tracker().stats_snapshot();
    let stats = Arc::new(
        tokio::task::spawn_blocking(move || snapshot.finish())
            .await
            .unwrap_or_default(),
    );
    let cost = started.elapsed();
    *cache = (cost >= STATS_CACHE_FROM).then(|| CachedStats {
        at: Instant::now(),
        ttl: (cost * 10).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        stats: stats.clone(),
    });
    stats
}

async fn stats(shared: &Shared, json: bool) -> Response<Body> {
    let mut stats = current_stats(shared).await;
    if let Some(b) = shared.bridge.get() {
        Arc::make_mut(&mut stats).bridge = Some(b.stats());
    }
    if json {
        response(StatusCode::OK, "application/json", stats.to_json())
    } else {
        response(StatusCode::OK, "text/html; charset=utf-8", stats.to_html())
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = response(status, "application/json", v.to_string());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/bridge.json`: the trackers this server gives out, what its bridge offers pages, and the
/// STUN/TURN servers pages should use (`iceServers`, as `RTCPeerConnection` takes them).
fn bridge_info(shared: &Shared) -> Response<Body> {
    let urls = &shared.urls;
    let bridge = shared.bridge.get().map(|b| b.describe());
    let ice: Vec<serde_json::Value> = shared
        .config
        .ice_servers
        .iter()
        .map(|s| {
            let mut v = serde_json::json!({ "urls": s.urls });
            if !s.username.is_empty() || !s.credential.is_empty() {
                v["username"] = s.username.clone().into();
                v["credential"] = s.credential.clone().into();
            }
            v
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "bridge": bridge.is_some(),
            "announce": { "http": urls.http, "ws": urls.ws, "udp": urls.udp },
            "settings": bridge,
            "iceServers": ice,
        }),
    )
}

/// `GET /bridge/torrents/<info-hash>` (what the bridge holds of a torrent) and
/// `POST /bridge/keep/<info-hash>` (keep seeding it on the server).
fn bridge_endpoint(shared: &Shared, method: &Method, path: &str) -> Response<Body> {
    let err = |status, msg: &str| json(status, &serde_json::json!({ "error": msg }));
    let Some(bridge) = shared.bridge.get() else {
        return err(StatusCode::NOT_FOUND, "this server runs no bridge");
    };
    let (what, hex) = match path
        .strip_prefix("/bridge/")
        .and_then(|r| r.split_once('/'))
    {
        Some(x) => x,
        None => return err(StatusCode::NOT_FOUND, "unknown bridge endpoint"),
    };
    if !matches!(what, "torrents" | "keep") {
        return err(StatusCode::NOT_FOUND, "unknown bridge endpoint");
    }
    let Ok(info_hash) = webtorrent_core::Id20::from_hex_or_base32(hex) else {
        return err(
            StatusCode::BAD_REQUEST,
            "not an info hash (40 hex digits or 32 base32 characters)",
        );
    };
    match (what, method) {
        ("torrents", &Method::GET | &Method::HEAD) => {
            json(StatusCode::OK, &bridge.status(info_hash))
        }
        ("keep", &Method::POST) => match bridge.keep(info_hash) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => err(StatusCode::INSUFFICIENT_STORAGE, &e),
        },
        // `what` is one of the two (checked above): the method is wrong.
        _ => err(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

async fn static_file(shared: &Shared, path: &str) -> Response<Body> {
    let reply = match &shared.www {
        Some(www) => www.get(path).await,
        None => WwwReply::NotFound,
    };
    match reply {
        WwwReply::File { body, content_type } => {
            let mut r = response(StatusCode::OK, content_type, body);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        WwwReply::Redirect(to) => {
            let mut r = text(StatusCode::MOVED_PERMANENTLY, "moved\n");
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        WwwReply::NotFound if path == "/" || path == "/index.html" => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            fallback_page(shared),
        ),
        WwwReply::NotFound => text(StatusCode::NOT_FOUND, "404 Not Found\n"),
        WwwReply::TooLarge => text(StatusCode::FORBIDDEN, "file too large to serve\n"),
    }
}

/// The page at `/` when there is no `www/` folder (or no `index.html` in it).
fn fallback_page(shared: &Shared) -> String {
    let host = super::authority(shared.local_addr);
    let folder = shared
        .www
        .as_ref()
        .map(|w| match w.root() {
            Some(root) => format!(
                "<p>No page found in <code>{}</code>.</p>",
                escape(&root.display().to_string())
            ),
            None => "<p>No page was built into this binary.</p>".to_string(),
        })
        .unwrap_or_default();
    let udp = if shared.config.udp {
        format!("<li>UDP tracker: <code>udp://{host}</code></li>\n")
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>webtorrent tracker</title>\n\
         <h1>webtorrent tracker</h1>\n{folder}\n<ul>\n\
         <li>HTTP tracker: <code>http://{host}/announce</code></li>\n\
         <li>WebSocket tracker: <code>ws://{host}</code></li>\n{udp}\
         <li><a href=\"/stats\">stats</a> (<a href=\"/stats.json\">JSON</a>)</li>\n</ul>\n"
    )
}
