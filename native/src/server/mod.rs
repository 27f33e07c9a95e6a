//! The embedded tracker and page server behind `webtorrent serve`: one port for
//!
//! * an HTTP tracker (`/announce`, `/scrape`; compact IPv4/IPv6 and dictionary peer lists;
//!   CORS headers so pages can read the replies),
//! * a WebSocket tracker for WebRTC peers (any path, `/` included: offers forwarded to other
//!   peers, answers back by `to_peer_id`, scrape; a closed socket counts as `stopped`),
//! * a UDP tracker (BEP 15) on the same port number,
//! * `/stats` (HTML) and `/stats.json` with bittorrent-tracker's figures and field names,
//! * the browser page (`www/` and its wasm package) at `/`,
//! * the files of the torrents it holds, at `/stream/<info-hash>/<file-index>` with Range
//!   requests, while they download ([`stream`]; [`Server::set_torrents`]).
//!
//! It answers as bittorrent-tracker 11.2.3 does, so that its clients (npm `webtorrent` in Node
//! and in browsers) and ours work against it; [`swarm`] has the details and the few places
//! where it bounds what bittorrent-tracker does not.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use webtorrent::server::{Server, ServerConfig};
//! let server = Server::bind(ServerConfig::default()).await?; // 127.0.0.1:8000
//! println!("open {}", server.page_url());
//! println!("trackers: {} {}", server.http_announce_url(), server.ws_url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admission;
mod http;
mod lru;
pub mod peerid;
pub mod stats;
pub mod stream;
pub mod swarm;
mod udp;
mod ws;
pub mod www;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use webtorrent_core::{InfoHash, PeerId, Time};

pub use admission::{InfoHashFilter, RateLimit};
pub use stats::{BridgeStats, Stats};
pub use swarm::{ConnId, SwarmSides, Tracker, TrackerConfig};
pub use www::Www;

/// Default port: 8000, as bittorrent-tracker's CLI.
pub const DEFAULT_PORT: u16 = 8000;

/// Settings of a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (TCP for HTTP and WebSocket, UDP on the same port number). Default
    /// `127.0.0.1:8000`; port 0 picks a port free for both.
    pub listen: SocketAddr,
    /// The page served at `/`; `None` serves a small page naming the trackers instead.
    /// Default: [`Www::embedded`], the page built into the binary.
    pub www: Option<Www>,
    /// Run the UDP tracker. Default true.
    pub udp: bool,
    /// Swarm settings and bounds.
    pub tracker: TrackerConfig,
    /// Most HTTP connections open at once (WebSocket connections count only while
    /// upgrading). Further connections wait in the listen backlog. Default 1024.
    pub max_connections: usize,
    /// Most WebSocket connections open at once; more are refused with 503. Default 1024.
    pub max_ws_connections: usize,
    /// A WebSocket that sends nothing (not even a pong) for this long is closed. Default
    /// 5 min; clients announce every 2 min and the server pings every minute.
    pub ws_idle_timeout: Duration,
    /// Bytes of forwarded messages that may wait for one slow WebSocket; more are dropped.
    /// Default 1 MiB.
    pub ws_queue_bytes: usize,
    /// The address others reach this server at, `http://` or `https://` (behind a TLS proxy),
    /// e.g. `https://tracker.example.org`. The URLs this server gives out (page, trackers)
    /// are built from it. Default `None`: the listening address, with loopback for a
    /// wildcard address.
    pub public_url: Option<String>,
    /// Which torrents are tracked (default: all). Announces for others get a failure reply.
    pub allow: InfoHashFilter,
    /// Announces one address may make (default: 20 a second after a burst of 500).
    pub announce_rate: RateLimit,
    /// STUN and TURN servers the page's WebRTC connections use, given to it in
    /// `/bridge.json` as `iceServers` (TURN credentials included: the page needs them).
    /// Default: none.
    pub ice_servers: Vec<crate::rtc::IceServer>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            www: Some(Www::embedded()),
            udp: true,
            tracker: TrackerConfig::default(),
            max_connections: 1024,
            max_ws_connections: 1024,
            ws_idle_timeout: Duration::from_secs(300),
            ws_queue_bytes: 1024 * 1024,
            public_url: None,
            allow: InfoHashFilter::Any,
            announce_rate: RateLimit::default(),
            ice_servers: Vec::new(),
        }
    }
}

/// The repository's `www/` folder, found from where this crate was compiled (the source of
/// [`Www::embedded`]; only useful where that checkout is).
pub fn default_www_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../www"))
}

/// Errors from starting a [`Server`].
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `TCP` or `UDP`.
        proto: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Another socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// [`ServerConfig::public_url`] is not an `http://` or `https://` URL with a host.
    #[error("public URL {0:?} is not http://HOST[:PORT][/PATH] or https://...")]
    PublicUrl(String),
}

/// A parsed [`ServerConfig::public_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct PublicUrl {
    /// `https` rather than `http`.
    secure: bool,
    /// `host[:port]` as given.
    authority: String,
    /// The host alone (brackets kept for IPv6).
    host: String,
    /// The path, without a trailing slash (empty for the root).
    path: String,
}

impl PublicUrl {
    fn parse(url: &str) -> Result<PublicUrl, ServerError> {
        let bad = || ServerError::PublicUrl(url.to_string());
        let (secure, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
            Some(_) => return Err(bad()),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) || authority.contains('@') {
            return Err(bad());
        }
        let host = if authority.starts_with('[') {
            let end = authority.find(']').ok_or_else(bad)?;
            &authority[..=end]
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        let port_ok = match authority[host.len()..].strip_prefix(':') {
            Some(p) => p.parse::<u16>().is_ok(),
            None => authority.len() == host.len(),
        };
        if host.is_empty() || host == "[]" || !port_ok || authority.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(PublicUrl {
            secure,
            authority: authority.to_string(),
            host: host.to_string(),
            path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// What the server asks of a bridge running beside it: the page's `/bridge.json` and
/// `/bridge/...` endpoints and the bridge's part of `/stats`. The bridge
/// ([`crate::bridge::Bridge`]) implements it; [`Server::set_bridge`] plugs it in.
pub trait BridgeHooks: Send + Sync + std::fmt::Debug {
    /// The bridge's settings for `/bridge.json` (quota, whether pages may ask to keep).
    fn describe(&self) -> serde_json::Value;
    /// What the bridge holds of a torrent, for `/bridge/torrents/<info-hash>`.
    fn status(&self, info_hash: InfoHash) -> serde_json::Value;
    /// A page asks the bridge to keep seeding a torrent (`POST /bridge/keep/<info-hash>`); the
    /// bridge joins it soon after. An error says why not (bridge full, torrent refused).
    fn keep(&self, info_hash: InfoHash) -> Result<serde_json::Value, String>;
    /// The bridge's figures for `/stats`.
    fn stats(&self) -> BridgeStats;
}

/// The URLs the server gives out.
#[derive(Debug, Clone)]
struct Urls {
    page: String,
    http: String,
    ws: String,
    udp: Option<String>,
}

/// A WebSocket connection's outbox, as other connections see it.
#[derive(Debug)]
struct WsOutbox {
    tx: tokio::sync::mpsc::Sender<String>,
    queued: Arc<AtomicU64>,
}

/// State shared by the listener tasks.
#[derive(Debug)]
struct Shared {
    tracker: Mutex<Tracker>,
    admission: Mutex<admission::Admission>,
    outboxes: Mutex<HashMap<ConnId, WsOutbox>>,
    next_conn: AtomicU64,
    start: Instant,
    www: Option<Www>,
    config: ServerConfig,
    local_addr: SocketAddr,
    udp_ids: udp::ConnectionIds,
    ws_slots: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    /// The last `/stats` figures, kept for a while when they were expensive to compute.
    stats_cache: tokio::sync::Mutex<Option<CachedStats>>,
    urls: Urls,
    bridge: OnceLock<Arc<dyn BridgeHooks>>,
    /// The torrents served at `/stream/...`.
    torrents: OnceLock<Torrents>,
}

/// The lookup behind `/stream/...`.
struct Torrents(stream::Lookup);

impl std::fmt::Debug for Torrents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Torrents")
    }
}

#[derive(Debug)]
struct CachedStats {
    at: Instant,
    ttl: Duration,
    stats: Arc<Stats>,
}

impl Shared {
    /// Whether an announce from `ip` for `info_hash` is taken (`Err`: the reason to reply).
    fn admit(
        &self,
        ip: std::net::IpAddr,
        info_hash: &webtorrent_core::InfoHash,
    ) -> Result<(), String> {
        let now = self.now();
        self.admission
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(now, ip, info_hash)
    }

    fn now(&self) -> Time {
        Time::from_duration(self.start.elapsed())
    }

    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn outboxes(&self) -> MutexGuard<'_, HashMap<ConnId, WsOutbox>> {
        self.outboxes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running tracker and page server. Dropping it stops it (as [`Server::shutdown`] does,
/// without waiting).
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    public: Option<PublicUrl>,
    udp_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the TCP and UDP sockets and starts serving in the background.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let public = config
            .public_url
            .as_deref()
            .map(PublicUrl::parse)
            .transpose()?;
        let (tcp, udp) = bind_both(config.listen, config.udp).await?;
        let local_addr = tcp.local_addr()?;
        let udp_addr = udp.as_ref().map(UdpSocket::local_addr).transpose()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let urls = make_urls(public.as_ref(), local_addr, udp_addr);
        let www = config.www.clone();
        let shared = Arc::new(Shared {
            tracker: Mutex::new(Tracker::new(config.tracker.clone(), rand::random())),
            admission: Mutex::new(admission::Admission::new(
                config.allow.clone(),
                config.announce_rate,
            )),
            outboxes: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            start: Instant::now(),
            www,
            ws_slots: Arc::new(Semaphore::new(config.max_ws_connections.max(1))),
            config,
            local_addr,
            udp_ids: udp::ConnectionIds::new(),
            shutdown: shutdown_rx,
            stats_cache: tokio::sync::Mutex::new(None),
            urls,
            bridge: OnceLock::new(),
            torrents: OnceLock::new(),
        });
        let mut tasks = vec![tokio::spawn(http::accept_loop(tcp, shared.clone()))];
        if let Some(udp) = udp {
            tasks.push(tokio::spawn(udp::run(udp, shared.clone())));
        }
        tasks.push(tokio::spawn(expire_loop(shared.clone())));
        Ok(Server {
            shared,
            public,
            udp_addr,
            shutdown: shutdown_tx,
            tasks,
        })
    }

    /// The TCP address bound (HTTP and WebSocket).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The UDP address bound, when the UDP tracker runs.
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The page: `http://HOST:PORT/` (or the public URL).
    pub fn page_url(&self) -> String {
        self.shared.urls.page.clone()
    }

    /// The HTTP tracker: `http://HOST:PORT/announce`.
    pub fn http_announce_url(&self) -> String {
        self.shared.urls.http.clone()
    }

    /// The WebSocket tracker: `ws://HOST:PORT` (`wss://` behind an `https://` public URL).
    pub fn ws_url(&self) -> String {
        self.shared.urls.ws.clone()
    }

    /// The UDP tracker, `udp://HOST:PORT`, when it runs (the public URL's host with the UDP
    /// port bound).
    pub fn udp_announce_url(&self) -> Option<String> {
        self.shared.urls.udp.clone()
    }

    /// A handle on the tracker's swarms for a bridge in the same process.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Plugs in the bridge that answers `/bridge.json`, `/bridge/...` and the bridge part of
    /// `/stats`. Only the first call counts.
    pub fn set_bridge(&self, bridge: Arc<dyn BridgeHooks>) {
        let _ = self.shared.bridge.set(bridge);
    }

    /// Serves the torrents `lookup` finds (e.g. a client's: `move |ih| client.get(ih)`) at
    /// `/stream/<info-hash>/<file-index>`, with Range requests, while they download. Only the
    /// first call counts.
    pub fn set_torrents(&self, lookup: stream::Lookup) {
        let _ = self.shared.torrents.set(Torrents(lookup));
    }

    /// The URL of file `index` of a torrent served through [`set_torrents`](Self::set_torrents).
    pub fn stream_url(&self, info_hash: InfoHash, index: usize) -> String {
        let page = self.shared.urls.page.trim_end_matches('/');
        format!("{page}{}", stream::path(info_hash, index))
    }

    /// Whether URLs given out point at loopback only because the server listens on every
    /// interface and no public URL was set: other machines cannot use them.
    pub fn urls_are_loopback_only(&self) -> bool {
        self.public.is_none() && self.shared.local_addr.ip().is_unspecified()
    }

    /// The current `/stats` figures.
    pub fn stats(&self) -> Stats {
        let mut s = self.shared.tracker().stats();
        s.bridge = self.shared.bridge.get().map(|b| b.stats());
        s
    }

    /// Stops listening and closes every connection (WebSockets get a close frame).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        // Let WebSocket tasks send their close frames.
        for _ in 0..50 {
            if self.shared.outboxes().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A cheap handle on a running [`Server`]'s tracker, for a bridge in the same process.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// The swarms announced in (or left) since the last call.
    pub fn take_changed(&self) -> Vec<InfoHash> {
        self.shared.tracker().take_changed()
    }

    /// Each side's seeders and leechers of a swarm, leaving out the peer `exclude`.
    pub fn sides(&self, info_hash: &InfoHash, exclude: PeerId) -> Option<SwarmSides> {
        self.shared.tracker().sides(info_hash, exclude)
    }

    /// The HTTP tracker URL the server gives out.
    pub fn http_announce_url(&self) -> String {
        self.shared.urls.http.clone()
    }

    /// The WebSocket tracker URL the server gives out.
    pub fn ws_url(&self) -> String {
        self.shared.urls.ws.clone()
    }
}

fn make_urls(public: Option<&PublicUrl>, local: SocketAddr, udp: Option<SocketAddr>) -> Urls {
    let (secure, auth, path) = match public {
        Some(p) => (p.secure, p.authority.clone(), p.path.clone()),
        None => (false, authority(local), String::new()),
    };
    let (http, ws) = if secure {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    Urls {
        page: format!("{http}://{auth}{path}/"),
        http: format!("{http}://{auth}{path}/announce"),
        ws: format!("{ws}://{auth}{path}"),
        udp: udp.map(|a| match public {
            Some(p) => format!("udp://{}:{}", p.host, a.port()),
            None => format!("udp://{}", authority(a)),
        }),
    }
}

fn authority(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (bittorrent-tracker strips
/// `::ffff:` the same way).
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// Binds TCP and (optionally) UDP on one port number; with port 0, retries until a port is
/// free for both.
async fn bind_both(
    listen: SocketAddr,
    with_udp: bool,
) -> Result<(TcpListener, Option<UdpSocket>), ServerError> {
    let attempts = if listen.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let tcp = TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen,
                proto: "TCP",
                source,
            })?;
        if !with_udp {
            return Ok((tcp, None));
        }
        let addr = SocketAddr::new(listen.ip(), tcp.local_addr()?.port());
        match UdpSocket::bind(addr).await {
            Ok(udp) => return Ok((tcp, Some(udp))),
            Err(source) => {
                last_err = Some(ServerError::Bind {
                    addr,
                    proto: "UDP",
                    source,
                })
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        ServerError::Io(std::io::Error::other("no port free for both TCP and UDP"))
    }))
}

/// Drops expired peers every half minute.
async fn expire_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let period =
        (shared.config.tracker.peer_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = shared.now();
                let n = shared.tracker().expire(now);
                if n > 0 {
                    debug!("expired {n} peers");
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Shared by the drivers: logs a dropped message to a slow WebSocket once in a while.
fn warn_dropped(conn: ConnId) {
    warn!(
        "dropping a message to WebSocket connection {}: its queue is full",
        conn.0
    );
}

impl Shared {
    /// A fresh connection id.
    fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_parse() {
        let p = PublicUrl::parse("https://tracker.example.org").unwrap();
        assert!(p.secure);
        assert_eq!(p.authority, "tracker.example.org");
        assert_eq!(p.host, "tracker.example.org");
        assert_eq!(p.path, "");
        let p = PublicUrl::parse("http://[2001:db8::1]:8080/wt/").unwrap();
        assert!(!p.secure);
        assert_eq!(p.authority, "[2001:db8::1]:8080");
        assert_eq!(p.host, "[2001:db8::1]");
        assert_eq!(p.path, "/wt");
        let p = PublicUrl::parse("http://10.0.0.5:8000/").unwrap();
        assert_eq!((p.host.as_str(), p.path.as_str()), ("10.0.0.5", ""));
    }

    #[test]
    fn bad_public_urls_are_refused() {
        for bad in [
            "tracker.example.org",
            "ws://host",
            "http://",
            "http://:80",
            "http://host:port",
            "http://host:99999",
            "http://[::1",
            "http://host?x=1",
            "http://user@host",
            "http://a b",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn urls_follow_the_public_url() {
        let srv = Server::bind(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            www: None,
            public_url: Some("https://wt.example.org/base".into()),
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let udp = srv.udp_local_addr().unwrap().port();
        assert_eq!(srv.page_url(), "https://wt.example.org/base/");
        assert_eq!(
            srv.http_announce_url(),
            "https://wt.example.org/base/announce"
        );
        assert_eq!(srv.ws_url(), "wss://wt.example.org/base");
        assert_eq!(
            srv.udp_announce_url().unwrap(),
            format!("udp://wt.example.org:{udp}")
        );
        assert!(!srv.urls_are_loopback_only());
        srv.shutdown().await;
    }
}
