//! The [`WebTorrent`] client: a TCP listener, a tracker client and one task per torrent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::piece::Bitfield;
use webtorrent_core::wire::{HandshakeHeader, HANDSHAKE_HEADER_LEN};
use webtorrent_core::{Id20, InfoHash, PeerId, Time};

use crate::accept::{Gate, Ticket, HANDSHAKE_TIMEOUT};
use crate::creator::TorrentCreator;
use crate::limit::RateLimiter;
use crate::options::WebTorrentOptions;
use crate::storage::{verify_existing, FileStorage, MemoryStorage, Storage};
use crate::task::{Task, TaskInit, TaskMsg};
use crate::torrent::{Events, Inner, Status, Torrent};
use crate::tracker::{TrackerClient, TrackerClientConfig};
use crate::{Error, Result};

/// What [`WebTorrent::add`] accepts.
#[derive(Debug, Clone)]
pub enum TorrentSource {
    /// The bytes of a `.torrent` file.
    TorrentFile(Bytes),
    /// A path to a `.torrent` file.
    Path(PathBuf),
    /// A magnet link.
    Magnet(String),
    /// A bare info hash.
    InfoHash(InfoHash),
}

impl From<Bytes> for TorrentSource {
    fn from(b: Bytes) -> Self {
        TorrentSource::TorrentFile(b)
    }
}

impl From<Vec<u8>> for TorrentSource {
    fn from(b: Vec<u8>) -> Self {
        TorrentSource::TorrentFile(Bytes::from(b))
    }
}

impl From<&[u8]> for TorrentSource {
    fn from(b: &[u8]) -> Self {
        TorrentSource::TorrentFile(Bytes::copy_from_slice(b))
    }
}

impl From<PathBuf> for TorrentSource {
    fn from(p: PathBuf) -> Self {
        TorrentSource::Path(p)
    }
}

impl From<&Path> for TorrentSource {
    fn from(p: &Path) -> Self {
        TorrentSource::Path(p.to_path_buf())
    }
}

impl From<InfoHash> for TorrentSource {
    fn from(h: InfoHash) -> Self {
        TorrentSource::InfoHash(h)
    }
}

impl From<&str> for TorrentSource {
    /// A magnet link, a 40-hex or 32-base32 info hash, or else a path.
    fn from(s: &str) -> Self {
        let t = s.trim();
        if t.len() >= 7 && t[..7].eq_ignore_ascii_case("magnet:") {
            TorrentSource::Magnet(t.to_string())
        } else if let Ok(h) = Id20::from_hex_or_base32(t) {
            TorrentSource::InfoHash(h)
        } else {
            TorrentSource::Path(PathBuf::from(s))
        }
    }
}

impl From<String> for TorrentSource {
    fn from(s: String) -> Self {
        TorrentSource::from(s.as_str())
    }
}

/// Per-torrent settings for [`WebTorrent::add_with`].
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// Extra trackers, added as one more tier.
    pub announce: Vec<String>,
    /// Folder for this torrent (default: the client's `download_dir`).
    pub download_dir: Option<PathBuf>,
    /// Peers to connect to directly.
    pub peers: Vec<SocketAddr>,
    /// For magnet links and info hashes: asked when the metadata arrives, before anything is
    /// stored. A refusal stops the torrent ([`Event::Refused`](crate::Event)).
    pub admit: Option<Admit>,
    /// Download only these files (indexes into [`Torrent::files`](crate::Torrent::files));
    /// `None` downloads all. Applied as soon as the metadata is known, before any piece is
    /// requested; pieces shared with a selected file are still fetched. An index out of range
    /// refuses the torrent. Change it later with
    /// [`Torrent::select_files`](crate::Torrent::select_files).
    pub select: Option<Vec<usize>>,
}

type AdmitFn = dyn Fn(&Metainfo) -> std::result::Result<(), String> + Send + Sync;

/// A check on a torrent's metadata before its storage is set up ([`AddOptions::admit`]): a
/// disk quota, say. `Err` gives the reason for refusing.
#[derive(Clone)]
pub struct Admit(Arc<AdmitFn>);

impl Admit {
    /// Wraps the check.
    pub fn new(
        f: impl Fn(&Metainfo) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Admit(Arc::new(f))
    }

    /// Runs the check.
    pub fn check(&self, meta: &Metainfo) -> std::result::Result<(), String> {
        (self.0)(meta)
    }
}

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admit(..)")
    }
}

/// Client-wide state shared with torrent tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub opts: WebTorrentOptions,
    pub peer_id: PeerId,
    pub port: u16,
    start: Instant,
    next_key: AtomicU64,
    seeds: Mutex<u64>,
    pub trackers: Option<TrackerClient>,
    pub torrents: Mutex<HashMap<InfoHash, Torrent>>,
    /// `SHA1("req2", info hash)` of every torrent, which an incoming encrypted handshake
    /// names its torrent by.
    pub req2: Mutex<HashMap<[u8; 20], InfoHash>>,
    pub up_limit: Option<Arc<RateLimiter>>,
    pub down_limit: Option<Arc<RateLimiter>>,
    /// WebSocket trackers (`None` when WebRTC or trackers are off).
    #[cfg(feature = "webrtc")]
    pub signals: Option<crate::signal::SignalPool>,
    /// WebRTC settings.
    #[cfg(feature = "webrtc")]
    pub rtc: crate::rtc::RtcConfig,
    /// Disk threads shared by every torrent.
    pub disk: crate::disk::DiskPool,
    /// The DHT node, when [`WebTorrentOptions::dht`] asks for one, and its task.
    pub dht: Option<(Arc<crate::dht::DhtHandle>, tokio::task::AbortHandle)>,
    /// uTP on the UDP port (`None` with [`WebTorrentOptions::utp`] off).
    pub utp: Option<Arc<crate::utp::Utp>>,
    /// The UDP port's reader.
    udp_task: Option<tokio::task::AbortHandle>,
    /// Peers dialled plain because they refused our encrypted handshake.
    pub plain_peers: crate::crypt::PlainPeers,
    /// The TCP port announced to trackers and the DHT: the router's external port once
    /// port mapping made one, else `port`.
    pub announce_port: Arc<AtomicU16>,
    /// Port mapping on the router, when on and there is a router.
    portmap: Option<crate::portmap::Mapper>,
    /// Fast-resume files ([`WebTorrentOptions::resume_dir`]).
    pub resume: Option<crate::resume::ResumeStore>,
}

impl Shared {
    pub fn now(&self) -> Time {
        Time::from_duration(self.start.elapsed())
    }

    pub fn next_key(&self) -> webtorrent_core::PeerKey {
        webtorrent_core::PeerKey(self.next_key.fetch_add(1, Ordering::Relaxed))
    }

    pub fn next_seed(&self) -> u64 {
        let mut s = self.seeds.lock().unwrap_or_else(|e| e.into_inner());
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *s
    }
}

/// A WebTorrent client.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use webtorrent::{WebTorrent, WebTorrentOptions};
/// let client = WebTorrent::new(WebTorrentOptions::default()).await?;
/// let torrent = client
///     .seed("hello.txt".to_string(), bytes::Bytes::from("Hello"), Some(vec![
///         "http://127.0.0.1:8000/announce".to_string(),
///     ]))
///     .await?;
/// println!("{} {}", torrent.name(), hex::encode(torrent.info_hash()));
/// client.destroy().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WebTorrent {
    shared: Arc<Shared>,
    listener: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn random_peer_id() -> PeerId {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-WR0001-");
    for b in &mut id[8..] {
        // Printable characters, as most clients use.
        *b = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            [rand::random_range(0..62)];
    }
    Id20(id)
}

async fn bind(opts: &WebTorrentOptions) -> Result<TcpListener> {
    let ip = opts.listen_address;
    match opts.port {
        Some(p) => Ok(TcpListener::bind(SocketAddr::new(ip, p)).await?),
        None => {
            for p in 6881..=6889 {
                if let Ok(l) = TcpListener::bind(SocketAddr::new(ip, p)).await {
                    return Ok(l);
                }
            }
            Ok(TcpListener::bind(SocketAddr::new(ip, 0)).await?)
        }
    }
}

impl WebTorrent {
    /// Starts a client: binds the listen port and prepares the tracker client.
    ///
    /// Fails with [`Error::Options`] when `opts.webrtc` is set in a build without the
    /// `webrtc` feature.
    pub async fn new(opts: WebTorrentOptions) -> Result<WebTorrent> {
        #[cfg(not(feature = "webrtc"))]
        if opts.webrtc {
            return Err(Error::Options(
                "WebTorrentOptions::webrtc needs the `webrtc` cargo feature of the webtorrent \
                 crate, which this build lacks: enable it, or set webrtc to false"
                    .into(),
            ));
        }
        let listener = bind(&opts).await?;
        let port = listener.local_addr()?.port();
        let trackers = if opts.trackers {
            let mut cfg = TrackerClientConfig::default();
            if let Some(b) = opts.udp_bind {
                if b.is_ipv4() {
                    cfg.bind_v4 = Some(b);
                } else {
                    cfg.bind_v6 = Some(b);
                }
            }
            Some(TrackerClient::new(cfg).map_err(|e| Error::Options(e.to_string()))?)
        } else {
            None
        };
        let peer_id = opts.peer_id.unwrap_or_else(random_peer_id);
        let seed = opts.rng_seed.unwrap_or_else(rand::random);
        let start = Instant::now();
        #[cfg(feature = "webrtc")]
        let signals = (opts.webrtc && opts.trackers).then(|| {
            let cfg = opts.signal.clone().unwrap_or_default();
            crate::signal::SignalPool::new(peer_id, start, seed ^ 0x5157_4e41_4c21, cfg)
        });
        #[cfg(feature = "webrtc")]
        let rtc = opts.rtc_config();
        // The UDP port (uTP and the DHT share it), on the TCP port's number.
        let udp_at = SocketAddr::new(opts.listen_address, port);
        let udp = if opts.utp || opts.dht.is_some() {
            Some(crate::udp::UdpPort::bind(udp_at).await.map_err(|e| {
                Error::Options(format!(
                    "cannot listen on UDP {udp_at} for uTP and the DHT: {e} (pick another --port, or run with --no-utp --no-dht)"
                ))
            })?)
        } else {
            None
        };
        let (utp, utp_accepted) = match (&udp, opts.utp) {
            (Some(p), true) => {
                let (u, rx) = crate::utp::Utp::new(p.clone(), seed ^ 0x5554_5021);
                (Some(u), Some(rx))
            }
            _ => (None, None),
        };
        let (dht, dht_rx) = match (&opts.dht, &udp) {
            (Some(d), Some(p)) => {
                let (tx, rx) = tokio::sync::mpsc::channel(1024);
                let (handle, task) =
                    crate::dht::DhtHandle::start(p.clone(), rx, d, seed ^ 0x4448_5421).await?;
                (Some((Arc::new(handle), task.abort_handle())), Some(tx))
            }
            _ => (None, None),
        };
        let udp_task = udp.map(|p| tokio::spawn(p.run(utp.clone(), dht_rx)).abort_handle());
        let announce_port = Arc::new(AtomicU16::new(port));
        let (port_changed, mut port_change) = tokio::sync::watch::channel(port);
        let portmap = match (&opts.port_mapping, opts.incoming) {
            (Some(pm), true) => {
                crate::portmap::Mapper::start(
                    pm,
                    opts.listen_address,
                    port,
                    announce_port.clone(),
                    port_changed,
                    seed ^ 0x504d_4150,
                )
                .await
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            dht,
            utp,
            udp_task,
            plain_peers: Default::default(),
            announce_port,
            portmap,
            resume: opts.resume_dir.clone().map(crate::resume::ResumeStore::new),
            #[cfg(feature = "webrtc")]
            signals,
            #[cfg(feature = "webrtc")]
            rtc,
            disk: crate::disk::DiskPool::default(),
            up_limit: opts.upload_limit.map(|r| Arc::new(RateLimiter::new(r))),
            down_limit: opts.download_limit.map(|r| Arc::new(RateLimiter::new(r))),
            opts,
            peer_id,
            port,
            start,
            next_key: AtomicU64::new(1),
            seeds: Mutex::new(seed),
            trackers,
            torrents: Mutex::new(HashMap::new()),
            req2: Mutex::new(HashMap::new()),
        });
        info!(port, peer_id = %String::from_utf8_lossy(&peer_id.0), "client listening");
        if shared.portmap.is_some() {
            // The router mapped us to another port: every torrent tells its trackers now.
            let weak = Arc::downgrade(&shared);
            tokio::spawn(async move {
                while port_change.changed().await.is_ok() {
                    let Some(shared) = weak.upgrade() else { return };
                    let tasks: Vec<_> = shared
                        .torrents
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .values()
                        .map(|t| t.inner.tx.clone())
                        .collect();
                    drop(shared);
                    for tx in tasks {
                        let _ = tx
                            .send(TaskMsg::input(webtorrent_core::session::Input::Reannounce))
                            .await;
                    }
                }
            });
        }
        let handle = if shared.opts.incoming {
            if let Some(rx) = utp_accepted {
                tokio::spawn(utp_accept_loop(rx, Arc::downgrade(&shared)));
            }
            Some(tokio::spawn(accept_loop(listener, shared.clone())))
        } else {
            None
        };
        Ok(WebTorrent {
            shared,
            listener: Arc::new(Mutex::new(handle)),
        })
    }

    /// The TCP port actually bound (the one announced to trackers).
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// The TCP port announced to trackers and the DHT: the router's external port when
    /// [`WebTorrentOptions::port_mapping`] mapped one, else [`port`](Self::port).
    pub fn announced_port(&self) -> u16 {
        self.shared.announce_port.load(Ordering::Relaxed)
    }

    /// The port mappings the router holds for this client (empty without port mapping).
    pub fn port_mappings(&self) -> Vec<crate::PortMapping> {
        self.shared
            .portmap
            .as_ref()
            .map(|m| m.mappings())
            .unwrap_or_default()
    }

    /// Nodes in the DHT's IPv4 and IPv6 routing tables; `None` without a DHT.
    pub async fn dht_nodes(&self) -> Option<(usize, usize)> {
        let (dht, _) = self.shared.dht.as_ref()?;
        dht.num_nodes().await
    }

    /// Asks the DHT for peers of `info_hash` (announcing nothing) and returns those found
    /// when the lookup ends or after `timeout`; `None` without a DHT.
    pub async fn dht_get_peers(
        &self,
        info_hash: InfoHash,
        timeout: std::time::Duration,
    ) -> Option<Vec<SocketAddr>> {
        let (dht, _) = self.shared.dht.as_ref()?;
        let mut rx = dht.get_peers(info_hash).await?;
        let mut found: Vec<SocketAddr> = Vec::new();
        let _ = tokio::time::timeout(timeout, async {
            while let Some(peers) = rx.recv().await {
                for p in peers {
                    if found.len() < 1000 && !found.contains(&p) {
                        found.push(p);
                    }
                }
            }
        })
        .await;
        Some(found)
    }

    /// The UDP address of the DHT node, if one runs.
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.shared.dht.as_ref().map(|(d, _)| d.local_addr())
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The torrents in the client.
    pub fn torrents(&self) -> Vec<Torrent> {
        self.lock_torrents().values().cloned().collect()
    }

    /// The torrent with this info hash, if added.
    pub fn get(&self, info_hash: InfoHash) -> Option<Torrent> {
        self.lock_torrents().get(&info_hash).cloned()
    }

    fn lock_req2(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 20], InfoHash>> {
        self.shared.req2.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_torrents(&self) -> std::sync::MutexGuard<'_, HashMap<InfoHash, Torrent>> {
        self.shared
            .torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Seeds `data` as a single file called `name`, announcing to `announce` (or to no
    /// tracker). Returns once the torrent is ready and `started` has been sent.
    pub async fn seed(
        &self,
        name: String,
        data: Bytes,
        announce: Option<Vec<String>>,
    ) -> Result<Torrent> {
        let creator = TorrentCreator::new().with_announce(announce.unwrap_or_default());
        let created = creator.create(&name, data.clone()).await?;
        let meta = Arc::new(created.metainfo);
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::from_bytes(data));
        let have = Bitfield::full(meta.info.num_pieces());
        self.start(meta, Some(storage), Some(have), Vec::new(), None, None)
    }

    /// Seeds a file or a folder from disk, reading it piece by piece.
    pub async fn seed_path(
        &self,
        path: impl AsRef<Path>,
        creator: TorrentCreator,
    ) -> Result<Torrent> {
        let path = path.as_ref().to_path_buf();
        let cache = self
            .shared
            .opts
            .resume_dir
            .as_ref()
            .map(|d| d.join("hashes"));
        let created = creator.create_from_path_cached(&path, cache).await?;
        let meta = Arc::new(created.metainfo);
        let folder = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let storage: Arc<dyn Storage> =
            Arc::new(FileStorage::read_only(&folder, Arc::new(meta.info.clone())));
        let have = Bitfield::full(meta.info.num_pieces());
        self.start(
            meta,
            Some(storage),
            Some(have),
            Vec::new(),
            Some(folder),
            None,
        )
    }

    /// Starts again every torrent the fast-resume folder
    /// ([`WebTorrentOptions::resume_dir`]) holds whose data is still where it was: complete
    /// ones are seeded read-only, others go on downloading, in both cases without hashing
    /// files unchanged since. Skipped: torrents already running, those whose data lies under
    /// `skip_under` (a folder something else manages, e.g. the bridge's), and those whose data
    /// is gone (logged). Returns the torrents started.
    pub async fn restore(&self, skip_under: Option<&Path>) -> Vec<Torrent> {
        let Some(dir) = self.shared.opts.resume_dir.clone() else {
            return Vec::new();
        };
        let saved = tokio::task::spawn_blocking(move || crate::resume::saved_torrents(&dir))
            .await
            .unwrap_or_default();
        let skip = skip_under.and_then(|p| std::path::absolute(p).ok());
        let mut started = Vec::new();
        for t in saved {
            if self.get(t.info_hash).is_some() {
                continue;
            }
            let Some(folder) = t.save_path.clone() else {
                debug!(name = %t.name, "no data folder recorded: not started again");
                continue;
            };
            if skip.as_ref().is_some_and(|s| folder.starts_with(s)) {
                continue;
            }
            if !folder.join(&t.name).exists() {
                warn!(name = %t.name, folder = %folder.display(), info_hash = %t.info_hash.to_hex(),
                    "not started again: its data is gone (`webtorrent remove` forgets it)");
                continue;
            }
            let r = if t.complete() {
                self.seed_existing(t.torrent.clone(), &folder, AddOptions::default())
                    .await
            } else {
                self.add_with_data(t.torrent.clone(), folder.clone()).await
            };
            match r {
                Ok(torrent) => {
                    info!(name = %t.name, info_hash = %t.info_hash.to_hex(), "started again from the state folder");
                    started.push(torrent);
                }
                Err(e) => {
                    warn!(name = %t.name, info_hash = %t.info_hash.to_hex(), error = %e, "not started again")
                }
            }
        }
        started
    }

    /// Seeds (or resumes) a torrent whose data is already in `folder`: existing pieces are
    /// verified, missing ones downloaded.
    pub async fn add_with_data(
        &self,
        source: impl Into<TorrentSource>,
        folder: PathBuf,
    ) -> Result<Torrent> {
        self.add_with(
            source,
            AddOptions {
                download_dir: Some(folder),
                ..AddOptions::default()
            },
        )
        .await
    }

    /// Seeds a torrent from data already on disk, opened read-only: nothing is created,
    /// written or truncated. `data` is the folder that holds the torrent's content
    /// (`data/NAME`), or for a single-file torrent the file itself, whatever its name.
    /// `source` must carry the metadata (a `.torrent`, not a magnet link). Every piece is
    /// verified first; fails with [`Error::Data`] when `data` is missing, is a file for a
    /// multi-file torrent, or does not hold the whole torrent.
    pub async fn seed_existing(
        &self,
        source: impl Into<TorrentSource>,
        data: &Path,
        opts: AddOptions,
    ) -> Result<Torrent> {
        let mut meta = match source.into() {
            TorrentSource::TorrentFile(b) => Metainfo::from_bytes(&b)?,
            TorrentSource::Path(p) => read_torrent_file(&p).await?,
            TorrentSource::Magnet(_) | TorrentSource::InfoHash(_) => {
                return Err(Error::Options(
                    "seeding needs the torrent's metadata: a .torrent, not a magnet link".into(),
                ))
            }
        };
        let name = meta.info.name.clone();
        let kind = tokio::fs::metadata(data).await.map_err(|e| {
            Error::Data(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} does not exist: give the folder that contains {name}{}",
                    data.display(),
                    if meta.info.single_file {
                        " (or that file itself, under any name)"
                    } else {
                        "/"
                    }
                )
            } else {
                format!("{}: {e}", data.display())
            })
        })?;
        let info = Arc::new(meta.info.clone());
        let (storage, folder) = if kind.is_dir() {
            (
                FileStorage::read_only(data, info.clone()),
                data.to_path_buf(),
            )
        } else if !meta.info.single_file {
            return Err(Error::Data(format!(
                "{} is a file, but {name} is a multi-file torrent: give the folder that \
                 contains its top folder {name}/",
                data.display()
            )));
        } else {
            let folder = data
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            (FileStorage::read_only_file(data, info.clone())?, folder)
        };
        let resume = self.shared.resume.clone();
        let info_hash = meta.info_hash;
        let (storage, have) = tokio::task::spawn_blocking(move || {
            let have = resume
                .and_then(|r| crate::resume::resume_have(&r, info_hash, &info, &storage))
                .unwrap_or_else(|| verify_existing(&info, &storage));
            (storage, have)
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
        let pieces = meta.info.num_pieces();
        if have.count() < pieces {
            return Err(Error::Data(format!(
                "the data in {} does not match {name}: {} of {pieces} pieces verified",
                data.display(),
                have.count()
            )));
        }
        if !opts.announce.is_empty() {
            let mut tiers = meta.trackers();
            tiers.push(opts.announce);
            meta.announce_list = tiers;
        }
        let storage: Arc<dyn Storage> = Arc::new(storage);
        self.start(
            Arc::new(meta),
            Some(storage),
            Some(have),
            opts.peers,
            Some(folder),
            None,
        )
    }

    /// Adds a torrent: a `.torrent` file (bytes or path), a magnet link or an info hash.
    /// Downloads go to the client's `download_dir`, or to memory.
    pub async fn add(&self, source: impl Into<TorrentSource>) -> Result<Torrent> {
        self.add_with(source, AddOptions::default()).await
    }

    /// [`add`](Self::add) with per-torrent options.
    pub async fn add_with(
        &self,
        source: impl Into<TorrentSource>,
        opts: AddOptions,
    ) -> Result<Torrent> {
        let extra_tier = |mut tiers: Vec<Vec<String>>| {
            if !opts.announce.is_empty() {
                tiers.push(opts.announce.clone());
            }
            tiers
        };
        let folder = opts
            .download_dir
            .clone()
            .or_else(|| self.shared.opts.download_dir.clone());
        let source = source.into();
        let meta = match source {
            TorrentSource::TorrentFile(b) => Metainfo::from_bytes(&b)?,
            TorrentSource::Path(p) => read_torrent_file(&p).await?,
            TorrentSource::Magnet(uri) => {
                let m = Magnet::parse(&uri)?;
                let tiers = extra_tier(m.trackers.iter().map(|t| vec![t.clone()]).collect());
                return self.start_magnet(m, tiers, folder, &opts);
            }
            TorrentSource::InfoHash(h) => {
                let tiers = extra_tier(Vec::new());
                return self.start_magnet(Magnet::new(h), tiers, folder, &opts);
            }
        };
        if let Some(sel) = &opts.select {
            crate::task::check_selection(sel, &meta).map_err(Error::Options)?;
        }
        let mut meta = meta;
        meta.announce_list = extra_tier(meta.trackers());
        let meta = Arc::new(meta);
        let (storage, have): (Arc<dyn Storage>, Bitfield) = match &folder {
            Some(dir) => {
                let fs = FileStorage::new(dir, Arc::new(meta.info.clone()));
                let m = meta.clone();
                let resume = self.shared.resume.clone();
                let (fs, have) = tokio::task::spawn_blocking(move || {
                    let have = resume
                        .and_then(|r| crate::resume::resume_have(&r, m.info_hash, &m.info, &fs))
                        .unwrap_or_else(|| verify_existing(&m.info, &fs));
                    (fs, have)
                })
                .await
                .map_err(|e| Error::Storage(e.to_string()))?;
                fs.prepare()?;
                if have.count() > 0 {
                    info!(pieces = have.count(), "resuming: pieces already on disk");
                }
                (Arc::new(fs), have)
            }
            None => {
                let len = meta.info.total_length();
                let memory = MemoryStorage::for_download(len, self.shared.opts.memory_limit)
                    .map_err(Error::Storage)?;
                (Arc::new(memory), Bitfield::new(meta.info.num_pieces()))
            }
        };
        self.start(
            meta,
            Some(storage),
            Some(have),
            opts.peers,
            folder,
            opts.select,
        )
    }

    /// Starts a magnet link (or a bare info hash): its peers join `opts.peers`, its web
    /// seeds are used once the metadata arrives.
    fn start_magnet(
        &self,
        m: Magnet,
        trackers: Vec<Vec<String>>,
        folder: Option<PathBuf>,
        opts: &AddOptions,
    ) -> Result<Torrent> {
        let info_hash = m.info_hash;
        let mut peers = opts.peers.clone();
        peers.extend(m.peers.iter().filter_map(|p| p.parse::<SocketAddr>().ok()));
        let status = Arc::new(Mutex::new(Status::default()));
        self.spawn(
            TaskInit {
                info_hash,
                meta: None,
                storage: None,
                have: None,
                trackers,
                peers,
                status,
                events: Events::default(),
                done: watch::channel(false).0,
                folder: folder.clone(),
                admit: opts.admit.clone(),
                select: opts.select.clone(),
                web_seeds: m.web_seeds,
            },
            m.name.unwrap_or_else(|| info_hash.to_hex()),
            folder,
        )
    }

    fn start(
        &self,
        meta: Arc<Metainfo>,
        storage: Option<Arc<dyn Storage>>,
        have: Option<Bitfield>,
        peers: Vec<SocketAddr>,
        folder: Option<PathBuf>,
        select: Option<Vec<usize>>,
    ) -> Result<Torrent> {
        let status = Arc::new(Mutex::new(Status {
            meta: Some(meta.clone()),
            total: Some(meta.info.total_length()),
            ..Status::default()
        }));
        let name = meta.info.name.clone();
        self.spawn(
            TaskInit {
                info_hash: meta.info_hash,
                trackers: meta.trackers(),
                meta: Some(meta),
                storage,
                have,
                peers,
                status,
                events: Events::default(),
                done: watch::channel(false).0,
                folder: folder.clone(),
                admit: None,
                select,
                web_seeds: Vec::new(),
            },
            name,
            folder,
        )
    }

    fn spawn(&self, init: TaskInit, name: String, folder: Option<PathBuf>) -> Result<Torrent> {
        let info_hash = init.info_hash;
        let mut torrents = self.lock_torrents();
        if torrents.contains_key(&info_hash) {
            return Err(Error::Duplicate(info_hash.to_hex()));
        }
        // Bounded: connection readers wait when the task falls behind (64 × 64 KiB reads).
        let (tx, rx) = mpsc::channel(64);
        let done_rx = init.done.subscribe();
        let inner = Arc::new(Inner {
            info_hash,
            fallback_name: name,
            trackers: init.trackers.clone(),
            tx: tx.clone(),
            status: init.status.clone(),
            events: init.events.clone(),
            done: done_rx,
            download_dir: folder,
            task: Mutex::new(None),
        });
        let task = Task::new(self.shared.clone(), init, tx, rx)?;
        let handle = tokio::spawn(task.run());
        *inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        let t = Torrent { inner };
        let private = t.metainfo().is_some_and(|m| m.info.private);
        if let (Some((dht, _)), false) = (&self.shared.dht, private) {
            tokio::spawn(crate::dht::announce_loop(
                dht.clone(),
                Arc::downgrade(&t.inner),
                self.shared.announce_port.clone(),
            ));
        }
        torrents.insert(info_hash, t.clone());
        self.lock_req2()
            .insert(webtorrent_core::mse::req2_hash(&info_hash), info_hash);
        info!(info_hash = %info_hash, "torrent added");
        Ok(t)
    }

    fn tracker_client(&self) -> Result<&TrackerClient> {
        self.shared
            .trackers
            .as_ref()
            .ok_or_else(|| Error::Options("trackers are disabled".into()))
    }

    /// Asks a tracker (HTTP(S) with BEP 48 scrape, or UDP) for swarm sizes of torrents.
    pub async fn scrape(
        &self,
        tracker_url: &str,
        info_hashes: &[InfoHash],
    ) -> Result<Vec<(InfoHash, crate::tracker::ScrapeStats)>> {
        self.tracker_client()?
            .scrape(tracker_url, info_hashes)
            .await
            .map_err(|e| Error::Tracker(e.to_string()))
    }

    /// Asks an HTTP(S) tracker for every torrent it lists (a scrape without `info_hash`).
    pub async fn scrape_all(
        &self,
        tracker_url: &str,
    ) -> Result<Vec<(InfoHash, crate::tracker::ScrapeStats)>> {
        self.tracker_client()?
            .scrape_all(tracker_url)
            .await
            .map_err(|e| Error::Tracker(e.to_string()))
    }

    /// Removes a torrent: announces `stopped` (bounded wait) and closes its connections.
    /// Downloaded files stay on disk.
    pub async fn remove(&self, info_hash: InfoHash) -> Result<()> {
        let t = self.lock_torrents().remove(&info_hash);
        self.lock_req2()
            .remove(&webtorrent_core::mse::req2_hash(&info_hash));
        match t {
            Some(t) => {
                t.stop().await;
                Ok(())
            }
            None => Err(Error::UnknownSource(info_hash.to_hex())),
        }
    }

    /// Stops everything: every torrent announces `stopped` (bounded wait), connections and
    /// the listener close, and no task or socket is left behind.
    pub async fn destroy(&self) -> Result<()> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = listener {
            h.abort();
            let _ = h.await;
        }
        let all: Vec<Torrent> = self.lock_torrents().drain().map(|(_, t)| t).collect();
        self.lock_req2().clear();
        futures::future::join_all(all.iter().map(|t| t.stop())).await;
        #[cfg(feature = "webrtc")]
        if let Some(s) = &self.shared.signals {
            s.shutdown();
        }
        if let Some(t) = &self.shared.trackers {
            t.close().await;
        }
        if let Some((dht, task)) = &self.shared.dht {
            dht.shutdown().await;
            task.abort();
        }
        if let Some(t) = &self.shared.udp_task {
            t.abort();
        }
        if let Some(m) = &self.shared.portmap {
            m.shutdown().await;
        }
        Ok(())
    }
}

/// Hands incoming uTP connections to [`route_incoming`] (the endpoint bounds how many wait).
async fn utp_accept_loop(
    mut rx: tokio::sync::mpsc::Receiver<crate::utp::UtpStream>,
    shared: std::sync::Weak<Shared>,
) {
    while let Some(s) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let addr = s.peer_addr();
        debug!(%addr, "incoming uTP connection");
        tokio::spawn(async move {
            let stream = crate::crypt::Transport::Utp(s);
            let got = ([0u8; HANDSHAKE_HEADER_LEN], 0);
            if let Err(e) = route_incoming(stream, addr, shared, got, None).await {
                debug!(%addr, "incoming uTP connection dropped: {e}");
            }
        });
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let gate = Gate::default();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // An honest peer sends its handshake as soon as it connects: usually the bytes are
        // here already, and such a connection needs no place among those still waiting.
        let mut prefix = [0u8; HANDSHAKE_HEADER_LEN];
        let have = match stream.try_read(&mut prefix) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => continue,
        };
        // An encrypted handshake keeps its place until it is done: it costs a
        // Diffie-Hellman exchange and round trips.
        let encrypted = have > 0 && crate::crypt::looks_encrypted(&prefix[..have]);
        let ticket = if have < HANDSHAKE_HEADER_LEN || encrypted {
            let Some(ticket) = gate.admit(addr.ip()) else {
                debug!(%addr, "closed: too many connections from this address waiting for a handshake");
                continue;
            };
            Some(ticket)
        } else {
            None
        };
        let id = ticket.as_ref().map(Ticket::id);
        let shared = shared.clone();
        let task = tokio::spawn(async move {
            let stream = crate::crypt::Transport::Tcp(stream);
            if let Err(e) = route_incoming(stream, addr, shared, (prefix, have), ticket).await {
                debug!(%addr, "incoming connection dropped: {e}");
            }
        });
        if let Some(id) = id {
            gate.set_task(id, task.abort_handle());
        }
    }
}

/// Reads enough of an incoming connection to tell a plain handshake from an encrypted one
/// (MSE/PE, answered when the policy allows it), then the first 48 bytes of the BitTorrent
/// handshake to find the torrent, and hands the connection (and those bytes) to its task.
/// `got` holds the bytes read so far; `ticket` holds the connection's place among those
/// waiting for a handshake until the bytes are there.
async fn route_incoming(
    mut stream: crate::crypt::Transport,
    addr: SocketAddr,
    shared: Arc<Shared>,
    got: ([u8; HANDSHAKE_HEADER_LEN], usize),
    ticket: Option<Ticket>,
) -> Result<()> {
    let timed_out = || Error::Io(std::io::ErrorKind::TimedOut.into());
    let invalid = |e: String| Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    let (mut prefix, mut have) = got;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let policy = shared.opts.encryption;
    // The first 20 bytes of a plain handshake are fixed: fewer tell an encrypted one apart
    // as soon as one differs.
    while have < 20 && !crate::crypt::looks_encrypted(&prefix[..have]) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut prefix[have..]))
            .await
            .map_err(|_| timed_out())??;
        if n == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        have += n;
    }
    let (stream, prefix) = if crate::crypt::looks_encrypted(&prefix[..have]) {
        if !policy.allows_encrypted() {
            return Err(invalid(
                "an encrypted handshake, and encryption is disabled".into(),
            ));
        }
        let lookup = |req2: &[u8; 20]| {
            shared
                .req2
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(req2)
                .copied()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let (mut s, info_hash) =
            crate::crypt::accept(stream, &prefix[..have], policy, left, &lookup).await?;
        // The BitTorrent handshake follows inside the encrypted stream.
        let mut inner = [0u8; HANDSHAKE_HEADER_LEN];
        tokio::time::timeout_at(deadline, s.read_exact(&mut inner))
            .await
            .map_err(|_| timed_out())??;
        let header = HandshakeHeader::decode(&inner).map_err(|e| invalid(e.to_string()))?;
        if header.info_hash != info_hash {
            return Err(invalid(format!(
                "the handshake inside the encryption names {}, the encryption {}",
                header.info_hash.to_hex(),
                info_hash.to_hex()
            )));
        }
        (s, inner)
    } else {
        if !policy.allows_plain() {
            return Err(invalid(
                "a plain handshake, and encryption is required".into(),
            ));
        }
        if have < HANDSHAKE_HEADER_LEN {
            tokio::time::timeout_at(deadline, stream.read_exact(&mut prefix[have..]))
                .await
                .map_err(|_| timed_out())??;
        }
        (crate::crypt::PeerStream::plain(stream), prefix)
    };
    drop(ticket);
    let header = HandshakeHeader::decode(&prefix).map_err(|e| invalid(e.to_string()))?;
    let tx = shared
        .torrents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&header.info_hash)
        .map(|t| t.inner.tx.clone());
    match tx {
        Some(tx) => {
            stream.transport().set_nodelay();
            let _ = tx
                .send(TaskMsg::Incoming(Box::new((
                    stream,
                    addr,
                    Bytes::copy_from_slice(&prefix),
                ))))
                .await;
            Ok(())
        }
        None => Err(Error::UnknownSource(header.info_hash.to_hex())),
    }
}

/// Reads and parses the `.torrent` file at `p`.
async fn read_torrent_file(p: &Path) -> Result<Metainfo> {
    let bytes = tokio::fs::read(p).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::UnknownSource(p.display().to_string())
        } else {
            Error::Io(e)
        }
    })?;
    Ok(Metainfo::from_bytes(&bytes)?)
}
