//! The bridge as a service: joins the torrents whose swarm is split between browsers (WebRTC,
//! via WebSocket trackers) and desktop clients (TCP, via HTTP/UDP trackers) and moves pieces
//! between the two sides, with no command per torrent.
//!
//! A [`Bridge`] watches a tracker ([`BridgeSource`]):
//!
//! * the tracker of a `webtorrent serve` in the same process, which knows each side of every
//!   swarm exactly: a torrent is joined as soon as one side has a seeder while the other side
//!   has a leecher;
//! * or trackers run elsewhere (`webtorrent bridge --tracker URL`): the HTTP tracker is scraped
//!   for every torrent it lists, and a torrent with a seeder and a leecher is joined (a scrape
//!   does not tell the sides apart, so a swarm split on one side only is joined as well).
//!
//! A torrent pages want that no peer of the tracker has is looked up in the DHT, when the
//! client runs one (at most [`MAX_PROBES`] lookups at once, each torrent at most once per
//! [`PROBE_AGAIN`]); if the DHT knows peers, the torrent is joined with them: browsers get
//! what only trackerless desktop swarms have.
//!
//! Pages can also ask to keep a torrent ([`BridgeHooks::keep`]). A joined torrent is fetched
//! by magnet (`ut_metadata` from either side), stored under the data folder and served to both
//! sides as pieces verify. Bounds: at most [`BridgeConfig::max_torrents`] torrents and
//! [`BridgeConfig::max_bytes`] of disk, checked when a torrent's metadata arrives and before
//! anything is written (torrents nobody wants any more are evicted first, least recently
//! wanted first; a torrent that still does not fit is refused); a torrent nobody has wanted
//! for [`BridgeConfig::idle`] is dropped with its data. Torrents and their data survive a
//! restart: the data folder keeps each admitted torrent's metadata, and a restarted bridge
//! verifies what is on disk and fetches only what is missing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::InfoHash;

use crate::server::{BridgeHooks, BridgeStats, ServerHandle};
use crate::{AddOptions, Admit, Torrent, TorrentSource, WebTorrent};

/// Settings of a [`Bridge`].
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Where bridged torrents live: `<info-hash>/` holds a torrent's files, `<info-hash>.torrent`
    /// its metadata, `<info-hash>.json` whether a page asked to keep it. Default:
    /// [`default_data_dir`].
    pub data_dir: PathBuf,
    /// Most torrents bridged at once. Default 100.
    pub max_torrents: usize,
    /// Most bytes of all bridged torrents together. Default 10 GiB.
    pub max_bytes: u64,
    /// A torrent nobody has wanted for this long is dropped (unless kept). Default 10 min.
    pub idle: Duration,
    /// How often trackers run elsewhere are scraped ([`BridgeSource::Remote`]). Default 10 s.
    pub scan_interval: Duration,
    /// Whether pages may ask to keep torrents. Default true.
    pub allow_keep: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            data_dir: default_data_dir(),
            max_torrents: 100,
            max_bytes: 10 << 30,
            idle: Duration::from_secs(600),
            scan_interval: Duration::from_secs(10),
            allow_keep: true,
        }
    }
}

/// `$XDG_CACHE_HOME/webtorrent/bridge`, else `~/.cache/webtorrent/bridge`, else a folder in the
/// system's temporary folder.
pub fn default_data_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    match cache {
        Some(c) => c.join("webtorrent").join("bridge"),
        None => std::env::temp_dir().join("webtorrent-bridge"),
    }
}

/// Where a [`Bridge`] learns which torrents need it.
#[derive(Debug, Clone)]
pub enum BridgeSource {
    /// The tracker of a [`Server`](crate::server::Server) in this process.
    Local(ServerHandle),
    /// Trackers run elsewhere: `scrape` lists HTTP(S) announce URLs scraped for every
    /// torrent; `announce` every tracker (HTTP and WebSocket) the bridge announces to.
    Remote {
        /// Every tracker the bridge announces its torrents to.
        announce: Vec<String>,
        /// The HTTP(S) trackers scraped for the torrents they know.
        scrape: Vec<String>,
    },
}

impl BridgeSource {
    /// Trackers run elsewhere, from the URLs a user gives: `http(s)://` announce URLs and
    /// `ws(s)://` WebSocket trackers. A server that has only one of the two given gets the
    /// other derived from it, as a `bittorrent-tracker` server serves HTTP and WebSocket on
    /// one port (`ws://host:port` ⇄ `http://host:port/announce`).
    pub fn remote(urls: &[String]) -> Result<BridgeSource, BridgeError> {
        let mut http = Vec::new();
        let mut ws = Vec::new();
        for u in urls {
            let u = u.trim();
            let lower = u.to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                http.push(u.to_string());
            } else if lower.starts_with("ws://") || lower.starts_with("wss://") {
                ws.push(u.to_string());
            } else {
                return Err(BridgeError::BadTracker(u.to_string()));
            }
        }
        if http.is_empty() && ws.is_empty() {
            return Err(BridgeError::NoTracker);
        }
        if http.is_empty() {
            http = ws.iter().map(|w| ws_to_http(w)).collect();
        }
        if ws.is_empty() {
            ws = http.iter().filter_map(|h| http_to_ws(h)).collect();
        }
        let mut announce = http.clone();
        announce.extend(ws);
        Ok(BridgeSource::Remote {
            announce,
            scrape: http,
        })
    }
}

/// `ws://host:port/path` → `http://host:port/path/announce` (path `/` or empty → `/announce`).
fn ws_to_http(ws: &str) -> String {
    let (scheme, rest) = match ws.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("wss") => ("https", r),
        Some((_, r)) => ("http", r),
        None => ("http", ws),
    };
    format!("{scheme}://{}/announce", rest.trim_end_matches('/'))
}

/// `http://host:port/path/announce` → `ws://host:port/path`; `None` when the path does not
/// end in `/announce` (nothing to derive from).
fn http_to_ws(http: &str) -> Option<String> {
    let (scheme, rest) = http.split_once("://")?;
    let ws = if scheme.eq_ignore_ascii_case("https") {
        "wss"
    } else {
        "ws"
    };
    let base = rest.strip_suffix("/announce")?;
    Some(format!("{ws}://{base}"))
}

/// Errors from starting a [`Bridge`].
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The data folder cannot be created or read.
    #[error("the bridge's data folder {path}: {source}; pass another folder with --data DIR")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No tracker URL was given.
    #[error(
        "no tracker to bridge: pass --tracker http://HOST:PORT/announce (and/or ws://HOST:PORT)"
    )]
    NoTracker,
    /// A tracker URL is neither HTTP(S) nor WebSocket.
    #[error("tracker URL {0:?} is not http(s):// or ws(s)://; the bridge joins HTTP and WebSocket trackers")]
    BadTracker(String),
}

/// Why a bridged torrent is being dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Evicted,
    Idle,
    Refused,
}

#[derive(Debug)]
struct Entry {
    torrent: Torrent,
    kept: bool,
    last_wanted: Instant,
    /// Somebody wanted it at the last look.
    wanted_now: bool,
    removing: Option<Removal>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<InfoHash, Entry>,
    /// Bytes reserved per admitted torrent (also before its entry exists).
    reserved: HashMap<InfoHash, u64>,
    /// Torrents pages asked to keep, not joined yet.
    keep_requests: VecDeque<InfoHash>,
    /// Torrents refused lately, and why: not joined again before `idle` has passed.
    refused: HashMap<InfoHash, (Instant, String)>,
    /// Counters; the byte counters hold only torrents already removed.
    counters: BridgeStats,
    /// The last scrape of trackers run elsewhere: `(complete, incomplete)` per torrent.
    scraped: HashMap<InfoHash, (u32, u32)>,
    /// When each torrent was last looked up in the DHT.
    probed: HashMap<InfoHash, Instant>,
    /// DHT lookups running.
    probing: usize,
    /// Torrents the DHT found peers of, to join at the next tick.
    dht_found: Vec<(InfoHash, Vec<SocketAddr>)>,
}

impl Entry {
    /// Whether it may be dropped to make room: nobody wants it, no page asked to keep it, and
    /// it is not leaving already.
    fn evictable(&self) -> bool {
        !self.wanted_now && !self.kept && self.removing.is_none()
    }
}

impl State {
    fn reserved_total(&self) -> u64 {
        self.reserved.values().sum()
    }

    /// Marks the least recently wanted evictable torrent other than `except` for removal and
    /// gives back its reservation; with `reserved_only`, only a torrent holding a reservation
    /// (one that frees disk). Returns whether one was found.
    fn evict_least_wanted(&mut self, except: InfoHash, reserved_only: bool) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(h, e)| {
                **h != except && e.evictable() && (!reserved_only || self.reserved.contains_key(*h))
            })
            .min_by_key(|(_, e)| e.last_wanted)
            .map(|(h, _)| *h);
        let Some(v) = victim else {
            return false;
        };
        info!(info_hash = %v, "bridge evicts a torrent nobody wants to make room");
        if let Some(e) = self.entries.get_mut(&v) {
            e.removing = Some(Removal::Evicted);
        }
        self.reserved.remove(&v);
        self.counters.evicted += 1;
        true
    }

    /// Counts a refusal and remembers why, so the torrent is not joined again soon.
    fn refuse(&mut self, info_hash: InfoHash, why: String) {
        self.counters.refused += 1;
        if self.refused.len() >= MAX_REMEMBERED {
            if let Some(oldest) = self
                .refused
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(h, _)| *h)
            {
                self.refused.remove(&oldest);
            }
        }
        self.refused.insert(info_hash, (Instant::now(), why));
    }
}

/// Most torrents remembered as refused, and most keep requests queued.
const MAX_REMEMBERED: usize = 4096;
/// Most DHT lookups the bridge runs at once for torrents only the DHT may know.
pub const MAX_PROBES: usize = 8;
/// A torrent looked up in the DHT in vain is not looked up again before this.
pub const PROBE_AGAIN: Duration = Duration::from_secs(300);
/// How long one DHT lookup of the bridge may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Inner {
    client: WebTorrent,
    config: BridgeConfig,
    source: BridgeSource,
    state: Mutex<State>,
}

/// The bridge: see the [module docs](self).
#[derive(Debug)]
pub struct Bridge {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Bridge {
    /// Starts bridging with `client` (which should have WebRTC and trackers on). Torrents
    /// left in the data folder by an earlier run are resumed in the background.
    pub fn start(
        client: WebTorrent,
        source: BridgeSource,
        config: BridgeConfig,
    ) -> Result<Bridge, BridgeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BridgeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        std::fs::read_dir(&config.data_dir).map_err(|source| BridgeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let inner = Arc::new(Inner {
            client,
            config,
            source,
            state: Mutex::new(State::default()),
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(run(inner.clone(), rx));
        Ok(Bridge {
            inner,
            shutdown,
            task: Mutex::new(Some(task)),
        })
    }

    /// The bridge as the server's `/bridge` endpoints and `/stats` see it.
    pub fn hooks(&self) -> Arc<dyn BridgeHooks> {
        self.inner.clone()
    }

    /// The figures of `/stats`.
    pub fn stats(&self) -> BridgeStats {
        self.inner.stats()
    }

    /// The torrents bridged now.
    pub fn torrents(&self) -> Vec<Torrent> {
        self.inner
            .state()
            .entries
            .values()
            .map(|e| e.torrent.clone())
            .collect()
    }

    /// Stops watching the tracker. The torrents stay in the client (destroy it to stop them)
    /// and their data stays in the data folder for the next start.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn data_path(&self, info_hash: &InfoHash, ext: &str) -> PathBuf {
        let hex = info_hash.to_hex().to_ascii_lowercase();
        if ext.is_empty() {
            self.config.data_dir.join(hex)
        } else {
            self.config.data_dir.join(format!("{hex}.{ext}"))
        }
    }

    /// The trackers a bridged torrent announces to.
    fn trackers(&self) -> Vec<String> {
        match &self.source {
            BridgeSource::Local(h) => vec![h.http_announce_url(), h.ws_url()],
            BridgeSource::Remote { announce, .. } => announce.clone(),
        }
    }

    /// The admission check of a torrent whose metadata arrived: reserves its size under the
    /// quota, evicting torrents nobody wants (least recently wanted first; kept ones never),
    /// and records its metadata for restarts.
    fn admit(&self, meta: &Metainfo) -> Result<(), String> {
        let ih = meta.info_hash;
        let size = meta.info.total_length();
        let max = self.config.max_bytes;
        let mut st = self.state();
        if st.reserved.contains_key(&ih) {
            return Ok(());
        }
        let refuse = |st: &mut State, why: String| {
            warn!(info_hash = %ih, "bridge refuses {}: {why}", meta.info.name);
            st.refuse(ih, why.clone());
            Err(why)
        };
        if size > max {
            return refuse(
                &mut st,
                format!("{size} bytes is more than the bridge's whole disk quota ({max} bytes)"),
            );
        }
        while st.reserved_total() + size > max {
            if !st.evict_least_wanted(ih, true) {
                let left = max.saturating_sub(st.reserved_total());
                return refuse(
                    &mut st,
                    format!("{size} bytes do not fit in what is left of the bridge's disk quota ({left} of {max} bytes)"),
                );
            }
        }
        st.reserved.insert(ih, size);
        drop(st);
        // The metadata alone (no trackers: a restarted bridge announces to its own).
        let mut bare = meta.clone();
        bare.announce = None;
        bare.announce_list = Vec::new();
        if let Err(e) = write_atomic(&self.data_path(&ih, "torrent"), &bare.to_bytes()) {
            warn!(info_hash = %ih, "cannot save the torrent for restarts: {e}");
        }
        info!(info_hash = %ih, name = %meta.info.name, size, "bridge admitted a torrent");
        Ok(())
    }

    /// Joins a torrent (by info hash, connecting to `peers` too), within the torrent limit.
    async fn join(self: &Arc<Self>, info_hash: InfoHash, kept: bool, peers: Vec<SocketAddr>) {
        {
            let mut st = self.state();
            if st.entries.contains_key(&info_hash) {
                return;
            }
            if st.entries.len() >= self.config.max_torrents.max(1)
                && !st.evict_least_wanted(info_hash, false)
            {
                let why = format!(
                    "the bridge holds its most torrents ({})",
                    self.config.max_torrents
                );
                warn!(%info_hash, "bridge refuses a torrent: {why}");
                st.refuse(info_hash, why);
                return;
            }
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        let admit = Admit::new(move |meta| match weak.upgrade() {
            Some(inner) => inner.admit(meta),
            None => Err("the bridge stopped".into()),
        });
        let from_dht = !peers.is_empty();
        let opts = AddOptions {
            download_dir: Some(self.data_path(&info_hash, "")),
            admit: Some(admit),
            peers,
            ..AddOptions::default()
        };
        // Every tracker a tier of its own, so that each is announced to (a tier is a list of
        // alternatives).
        let mut magnet = webtorrent_core::magnet::Magnet::new(info_hash);
        magnet.trackers = self.trackers();
        let source = TorrentSource::Magnet(magnet.to_uri());
        match self.client.add_with(source, opts).await {
            Ok(torrent) => {
                info!(%info_hash, kept, from_dht, "bridge joins a torrent");
                let mut st = self.state();
                st.counters.bridged += 1;
                st.counters.dht_joined += u64::from(from_dht);
                st.entries.insert(
                    info_hash,
                    Entry {
                        torrent,
                        kept,
                        last_wanted: Instant::now(),
                        wanted_now: true,
                        removing: None,
                    },
                );
            }
            Err(e) => debug!(%info_hash, "bridge cannot join: {e}"),
        }
    }

    /// Resumes the torrents an earlier run left in the data folder.
    async fn restore(self: &Arc<Self>) {
        let dir = self.config.data_dir.clone();
        let found = tokio::task::spawn_blocking(move || saved_torrents(&dir))
            .await
            .unwrap_or_default();
        for (info_hash, bytes, kept) in found {
            let meta = match Metainfo::from_bytes(&bytes) {
                Ok(m) if m.info_hash == info_hash => m,
                _ => {
                    warn!(%info_hash, "bridge: unreadable saved torrent, dropping it");
                    self.delete_data(info_hash).await;
                    continue;
                }
            };
            let size = meta.info.total_length();
            let fits = {
                let mut st = self.state();
                let fits = st.reserved_total() + size <= self.config.max_bytes
                    && st.entries.len() < self.config.max_torrents.max(1);
                if fits {
                    st.reserved.insert(info_hash, size);
                }
                fits
            };
            if !fits {
                warn!(%info_hash, "bridge: a saved torrent no longer fits the bounds, dropping it");
                self.delete_data(info_hash).await;
                continue;
            }
            let opts = AddOptions {
                download_dir: Some(self.data_path(&info_hash, "")),
                ..AddOptions::default()
            };
            // Today's trackers, each a tier of its own.
            let mut with_trackers = meta.clone();
            with_trackers.announce_list = self.trackers().into_iter().map(|t| vec![t]).collect();
            with_trackers.announce = with_trackers
                .announce_list
                .first()
                .and_then(|t| t.first())
                .cloned();
            let file = bytes::Bytes::from(with_trackers.to_bytes());
            match self.client.add_with(file, opts).await {
                Ok(torrent) => {
                    info!(%info_hash, name = %meta.info.name, progress = torrent.progress(), "bridge resumes a torrent");
                    self.state().entries.insert(
                        info_hash,
                        Entry {
                            torrent,
                            kept,
                            last_wanted: Instant::now(),
                            wanted_now: kept,
                            removing: None,
                        },
                    );
                }
                Err(e) => {
                    warn!(%info_hash, "bridge cannot resume a saved torrent: {e}");
                    self.state().reserved.remove(&info_hash);
                }
            }
        }
    }

    async fn delete_data(&self, info_hash: InfoHash) {
        let dir = self.data_path(&info_hash, "");
        let files = [
            self.data_path(&info_hash, "torrent"),
            self.data_path(&info_hash, "json"),
        ];
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&dir);
            for f in files {
                let _ = std::fs::remove_file(f);
            }
        })
        .await;
    }

    /// Removes the torrents marked for removal, with their data.
    async fn reap(&self) {
        let doomed: Vec<(InfoHash, Entry)> = {
            let mut st = self.state();
            let hashes: Vec<InfoHash> = st
                .entries
                .iter()
                .filter(|(_, e)| e.removing.is_some())
                .map(|(h, _)| *h)
                .collect();
            hashes
                .into_iter()
                .filter_map(|h| st.entries.remove(&h).map(|e| (h, e)))
                .collect()
        };
        for (h, e) in doomed {
            debug!(info_hash = %h, why = ?e.removing, "bridge drops a torrent");
            let _ = self.client.remove(h).await;
            {
                let mut st = self.state();
                st.counters.bytes_browser_to_desktop += e.torrent.uploaded_tcp();
                st.counters.bytes_desktop_to_browser += e.torrent.uploaded_webrtc();
                st.reserved.remove(&h);
            }
            self.delete_data(h).await;
        }
    }

    /// One look at the tracker: joins the torrents that need the bridge, notes which bridged
    /// ones are still wanted, marks idle and refused ones for removal.
    async fn tick(self: &Arc<Self>, scrape_due: bool) {
        let peer_id = self.client.peer_id();
        let mut to_join: Vec<(InfoHash, bool, Vec<SocketAddr>)> = Vec::new();
        let mut to_probe: Vec<InfoHash> = Vec::new();
        let has_dht = self.client.dht_addr().is_some();
        let mut newly_kept: Vec<InfoHash> = Vec::new();
        if scrape_due {
            if let BridgeSource::Remote { scrape, .. } = &self.source {
                let mut all = HashMap::new();
                for url in scrape {
                    match self.client.scrape_all(url).await {
                        Ok(list) => {
                            for (h, s) in list {
                                all.insert(h, (s.complete, s.incomplete));
                            }
                        }
                        Err(e) => debug!(%url, "bridge: scrape failed: {e}"),
                    }
                }
                self.state().scraped = all;
            }
        }
        let now = Instant::now();
        let idle = self.config.idle;
        {
            let mut guard = self.state();
            let st = &mut *guard;
            st.refused
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < idle);
            while let Some(h) = st.keep_requests.pop_front() {
                newly_kept.push(h);
                match st.entries.get_mut(&h) {
                    Some(e) => e.kept = true,
                    None => to_join.push((h, true, Vec::new())),
                }
            }
            for (h, peers) in std::mem::take(&mut st.dht_found) {
                if !st.entries.contains_key(&h)
                    && !st.refused.contains_key(&h)
                    && !to_join.iter().any(|(j, ..)| *j == h)
                {
                    to_join.push((h, false, peers));
                }
            }
            let candidates: Vec<InfoHash> = match &self.source {
                BridgeSource::Local(server) => server.take_changed(),
                BridgeSource::Remote { .. } if scrape_due => st
                    .scraped
                    .iter()
                    .filter(|(_, (_, i))| *i > 0)
                    .map(|(h, _)| *h)
                    .collect(),
                BridgeSource::Remote { .. } => Vec::new(),
            };
            st.probed
                .retain(|_, at| now.saturating_duration_since(*at) < PROBE_AGAIN);
            for h in candidates {
                if st.entries.contains_key(&h) || st.refused.contains_key(&h) {
                    continue;
                }
                // Whether a tracker peer can feed the other side, or else nobody on the
                // tracker has the torrent while somebody wants it (the DHT may).
                let (needed, orphan) = match &self.source {
                    BridgeSource::Local(server) => match server.sides(&h, peer_id) {
                        Some(s) => (
                            s.one_sided(),
                            s.wanted() && s.ws_seeders == 0 && s.net_seeders == 0,
                        ),
                        None => (false, false),
                    },
                    BridgeSource::Remote { .. } => {
                        let c = st.scraped.get(&h).map_or(0, |(c, _)| *c);
                        (c > 0, c == 0)
                    }
                };
                if needed && !to_join.iter().any(|(j, ..)| *j == h) {
                    to_join.push((h, false, Vec::new()));
                } else if orphan
                    && has_dht
                    && st.probing + to_probe.len() < MAX_PROBES
                    && st.probed.len() < MAX_REMEMBERED
                    && !st.probed.contains_key(&h)
                {
                    st.probed.insert(h, now);
                    to_probe.push(h);
                }
            }
            st.probing += to_probe.len();
            let scraped = std::mem::take(&mut st.scraped);
            for (h, e) in st.entries.iter_mut() {
                if e.removing.is_some() {
                    continue;
                }
                if e.torrent.refused().is_some() {
                    e.removing = Some(Removal::Refused);
                    continue;
                }
                let wanted = match &self.source {
                    BridgeSource::Local(server) => {
                        server.sides(h, peer_id).is_some_and(|s| s.wanted())
                    }
                    BridgeSource::Remote { .. } => match scraped.get(h) {
                        // The bridge counts itself as a leecher until it has everything.
                        Some((_, i)) => *i > u32::from(!e.torrent.is_done()),
                        None => e.wanted_now && !scrape_due,
                    },
                };
                e.wanted_now = wanted;
                if wanted {
                    e.last_wanted = now;
                } else if !e.kept && now.saturating_duration_since(e.last_wanted) >= idle {
                    info!(info_hash = %h, "bridge drops a torrent nobody wanted for {} s", idle.as_secs());
                    e.removing = Some(Removal::Idle);
                    st.counters.idle_dropped += 1;
                }
            }
            st.scraped = scraped;
        }
        for h in to_probe {
            let inner = self.clone();
            tokio::spawn(async move {
                let peers = inner
                    .client
                    .dht_get_peers(h, PROBE_TIMEOUT)
                    .await
                    .unwrap_or_default();
                debug!(info_hash = %h, peers = peers.len(), "bridge: DHT lookup for a torrent pages want");
                let mut st = inner.state();
                st.probing = st.probing.saturating_sub(1);
                if !peers.is_empty() {
                    st.dht_found.push((h, peers));
                }
            });
        }
        for (h, kept, peers) in to_join {
            self.join(h, kept, peers).await;
        }
        for h in newly_kept {
            self.save_kept(h).await;
        }
        self.reap().await;
    }

    async fn save_kept(&self, info_hash: InfoHash) {
        let kept = self.state().entries.get(&info_hash).is_some_and(|e| e.kept);
        if !kept {
            return;
        }
        let path = self.data_path(&info_hash, "json");
        let body = json!({ "kept": true }).to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = write_atomic(&path, body.as_bytes()) {
                warn!("cannot save {}: {e}", path.display());
            }
        })
        .await;
    }

    fn entry_status(&self, info_hash: InfoHash, st: &State) -> serde_json::Value {
        let hex = info_hash.to_hex().to_ascii_lowercase();
        if let Some(e) = st.entries.get(&info_hash) {
            let t = &e.torrent;
            let verified = (t.progress() * t.length() as f64) as u64;
            let state = if e.removing.is_some() {
                "leaving"
            } else if t.refused().is_some() {
                "refused"
            } else if t.metainfo().is_none() {
                "joining"
            } else if t.is_done() {
                "seeding"
            } else {
                "downloading"
            };
            return json!({
                "infoHash": hex,
                "state": state,
                "kept": e.kept,
                "length": t.length(),
                "verifiedBytes": verified,
                "progress": t.progress(),
                "peers": t.num_peers(),
                "desktopReachable": verified > 0 && e.removing.is_none(),
                "reason": t.refused(),
            });
        }
        if let Some((_, why)) = st.refused.get(&info_hash) {
            return json!({ "infoHash": hex, "state": "refused", "kept": false, "desktopReachable": false, "reason": why });
        }
        let queued = st.keep_requests.contains(&info_hash);
        json!({
            "infoHash": hex,
            "state": if queued { "queued" } else { "absent" },
            "kept": queued,
            "desktopReachable": false,
        })
    }
}

impl BridgeHooks for Inner {
    fn describe(&self) -> serde_json::Value {
        json!({
            "keep": self.config.allow_keep,
            "maxBytes": self.config.max_bytes,
            "maxTorrents": self.config.max_torrents,
            "idleSecs": self.config.idle.as_secs(),
        })
    }

    fn status(&self, info_hash: InfoHash) -> serde_json::Value {
        let st = self.state();
        self.entry_status(info_hash, &st)
    }

    fn keep(&self, info_hash: InfoHash) -> Result<serde_json::Value, String> {
        if !self.config.allow_keep {
            return Err("this server does not keep torrents for pages".into());
        }
        let mut st = self.state();
        if let Some((_, why)) = st.refused.get(&info_hash) {
            return Err(format!("the bridge refused this torrent: {why}"));
        }
        if !st.entries.contains_key(&info_hash) && !st.keep_requests.contains(&info_hash) {
            let evictable = st.entries.values().any(Entry::evictable);
            if st.entries.len() >= self.config.max_torrents.max(1) && !evictable {
                return Err(format!(
                    "the bridge is full ({} torrents); try again later",
                    self.config.max_torrents
                ));
            }
            if st.keep_requests.len() >= MAX_REMEMBERED {
                return Err("too many requests waiting; try again later".into());
            }
        }
        st.keep_requests.push_back(info_hash);
        Ok(self.entry_status(info_hash, &st))
    }

    fn stats(&self) -> BridgeStats {
        let st = self.state();
        let mut s = st.counters.clone();
        s.torrents = st.entries.len() as u64;
        s.kept = st.entries.values().filter(|e| e.kept).count() as u64;
        s.bytes_reserved = st.reserved_total();
        s.max_bytes = self.config.max_bytes;
        for e in st.entries.values() {
            s.bytes_browser_to_desktop += e.torrent.uploaded_tcp();
            s.bytes_desktop_to_browser += e.torrent.uploaded_webrtc();
        }
        s
    }
}

/// How often the bridge looks at a tracker in this process.
const TICK: Duration = Duration::from_millis(250);

async fn run(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    inner.restore().await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_scrape: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let scrape_due = matches!(inner.source, BridgeSource::Remote { .. })
            && last_scrape.is_none_or(|t| t.elapsed() >= inner.config.scan_interval);
        if scrape_due {
            last_scrape = Some(Instant::now());
        }
        tokio::select! {
            _ = inner.tick(scrape_due) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// `(info hash, .torrent bytes, kept)` of every torrent saved in `dir`; folders of torrents
/// whose metadata never arrived are removed.
fn saved_torrents(dir: &Path) -> Vec<(InfoHash, Vec<u8>, bool)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut folders = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
        let Ok(h) = InfoHash::from_hex(stem) else {
            continue;
        };
        match ext {
            "torrent" => {
                // Metadata is bounded by the parser; a file larger than that is not ours.
                let ok = e.metadata().is_ok_and(|m| m.len() <= 64 << 20);
                if let (true, Ok(bytes)) = (ok, std::fs::read(e.path())) {
                    let kept = std::fs::read(dir.join(format!("{stem}.json")))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v.get("kept").and_then(|k| k.as_bool()))
                        .unwrap_or(false);
                    out.push((h, bytes, kept));
                }
            }
            "" if e.path().is_dir() => folders.push((h, e.path())),
            _ => {}
        }
    }
    for (h, path) in folders {
        if !out.iter().any(|(o, _, _)| *o == h) {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    // Kept torrents first: they are what pages asked for.
    out.sort_by_key(|(_, _, kept)| !*kept);
    out
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a crash leaves
/// either the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_trackers_derive_the_missing_kind() {
        let s = BridgeSource::remote(&["ws://127.0.0.1:8000".into()]).unwrap();
        let BridgeSource::Remote { announce, scrape } = s else {
            panic!("not remote")
        };
        assert_eq!(scrape, vec!["http://127.0.0.1:8000/announce".to_string()]);
        assert_eq!(
            announce,
            vec!["http://127.0.0.1:8000/announce", "ws://127.0.0.1:8000"]
        );
        let s = BridgeSource::remote(&["https://t.example/x/announce".into()]).unwrap();
        let BridgeSource::Remote { announce, .. } = s else {
            panic!("not remote")
        };
        assert_eq!(
            announce,
            vec!["https://t.example/x/announce", "wss://t.example/x"]
        );
        assert!(matches!(
            BridgeSource::remote(&[]),
            Err(BridgeError::NoTracker)
        ));
        assert!(matches!(
            BridgeSource::remote(&["udp://h:1".into()]),
            Err(BridgeError::BadTracker(_))
        ));
    }

    #[test]
    fn saved_torrents_are_found_and_strays_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (file, ih) = webtorrent_core::creator::TorrentCreator::new()
            .create_from_data("a.bin", &[7u8; 1000][..])
            .unwrap();
        let hex = ih.to_hex().to_ascii_lowercase();
        std::fs::write(dir.path().join(format!("{hex}.torrent")), &file).unwrap();
        std::fs::write(dir.path().join(format!("{hex}.json")), br#"{"kept":true}"#).unwrap();
        std::fs::create_dir(dir.path().join(&hex)).unwrap();
        let stray = "ab".repeat(20);
        std::fs::create_dir(dir.path().join(&stray)).unwrap();
        std::fs::create_dir(dir.path().join("not-ours")).unwrap();
        let found = saved_torrents(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, ih);
        assert!(found[0].2, "kept flag lost");
        assert!(dir.path().join(&hex).is_dir());
        assert!(!dir.path().join(&stray).exists(), "stray folder kept");
        assert!(
            dir.path().join("not-ours").is_dir(),
            "removed a folder not ours"
        );
    }
}
