//! The [`Torrent`] handle users hold, and its events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::InfoHash;

use crate::storage::Storage;
use crate::task::TaskMsg;
use crate::{Error, Result};
use webtorrent_core::session::Input;

/// Something that happened to a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The info dictionary arrived (magnet links).
    Metadata,
    /// A piece was verified and stored.
    PieceVerified(u32),
    /// Every piece is verified; seeding from now on.
    Done,
    /// A peer completed the handshake.
    PeerConnected {
        /// Its address.
        addr: Option<SocketAddr>,
        /// Its peer id.
        peer_id: [u8; 20],
    },
    /// A peer connection ended.
    PeerDisconnected {
        /// Its address.
        addr: Option<SocketAddr>,
        /// Why.
        reason: String,
    },
    /// A peer was banned for sending data that failed verification.
    PeerBanned {
        /// Its address.
        addr: Option<SocketAddr>,
    },
    /// A tracker answered an announce.
    TrackerReply {
        /// The tracker.
        url: String,
        /// The event announced (`started`, `completed`, `stopped` or empty).
        event: String,
        /// When it wants the next announce.
        interval: Duration,
        /// Seeders it reported.
        seeders: Option<u32>,
        /// Leechers it reported.
        leechers: Option<u32>,
        /// Peers it returned.
        peers: usize,
    },
    /// An announce failed.
    TrackerError {
        /// The tracker.
        url: String,
        /// What went wrong.
        error: String,
    },
    /// Something worth telling the user.
    Warning(String),
    /// The torrent's metadata was not admitted ([`AddOptions::admit`](crate::AddOptions)):
    /// nothing is stored, peers are dropped, `stopped` is announced.
    Refused(String),
}

/// A torrent's event channel, made when someone first subscribes: a torrent nobody listens
/// to holds no event buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Option<broadcast::Sender<Event>>>>);

impl Events {
    /// Events buffered per subscriber before the slowest one starts missing some.
    const CAPACITY: usize = 1024;

    /// Sends to the subscribers, if any.
    pub fn send(&self, e: Event) {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = g.as_ref() {
            let _ = tx.send(e);
        }
    }

    /// A new subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert_with(|| broadcast::channel(Self::CAPACITY).0)
            .subscribe()
    }
}

/// Figures shared between the torrent task and its handles.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub meta: Option<Arc<Metainfo>>,
    pub storage: Option<Arc<dyn Storage>>,
    pub downloaded: u64,
    pub uploaded: u64,
    pub verified: u64,
    pub total: Option<u64>,
    pub download_speed: u64,
    pub upload_speed: u64,
    pub peers: usize,
    pub done: bool,
    pub paused: bool,
    pub sent_webrtc: u64,
    pub sent_tcp: u64,
    pub refused: Option<String>,
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    /// Path inside the torrent, joined with `/`.
    pub path: String,
    /// Length in bytes.
    pub length: u64,
    /// Offset in the torrent's byte stream.
    pub offset: u64,
}

/// A torrent in a [`WebTorrent`](crate::WebTorrent) client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Torrent {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub info_hash: InfoHash,
    pub fallback_name: String,
    pub trackers: Vec<Vec<String>>,
    pub tx: mpsc::Sender<TaskMsg>,
    pub status: Arc<Mutex<Status>>,
    pub events: Events,
    pub done: watch::Receiver<bool>,
    pub download_dir: Option<PathBuf>,
    pub task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Torrent {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.inner.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The torrent's name (the info hash in hex until a magnet link's metadata arrives).
    pub fn name(&self) -> String {
        self.status()
            .meta
            .as_ref()
            .map(|m| m.info.name.clone())
            .unwrap_or_else(|| self.inner.fallback_name.clone())
    }

    /// The info hash (20 bytes; `hex::encode` it for display).
    pub fn info_hash(&self) -> InfoHash {
        self.inner.info_hash
    }

    /// The parsed torrent, once known.
    pub fn metainfo(&self) -> Option<Arc<Metainfo>> {
        self.status().meta.clone()
    }

    /// The `.torrent` file, once the metadata is known.
    pub fn torrent_file(&self) -> Option<Bytes> {
        self.metainfo().map(|m| Bytes::from(m.to_bytes()))
    }

    /// A magnet link for the torrent, with its trackers.
    pub fn magnet_uri(&self) -> String {
        let mut m = Magnet::new(self.inner.info_hash);
        let meta = self.metainfo();
        m.name = Some(self.name());
        m.length = meta.as_ref().map(|m| m.info.total_length());
        let trackers = meta
            .map(|m| m.trackers())
            .unwrap_or_else(|| self.inner.trackers.clone());
        m.trackers = trackers.into_iter().flatten().collect();
        m.to_uri()
    }

    /// Total size in bytes (0 until the metadata is known).
    pub fn length(&self) -> u64 {
        self.status().total.unwrap_or(0)
    }

    /// The files, in torrent order (empty until the metadata is known).
    pub fn files(&self) -> Vec<TorrentFile> {
        self.metainfo()
            .map(|m| {
                m.info
                    .files
                    .iter()
                    .filter(|f| !f.padding)
                    .map(|f| TorrentFile {
                        path: f.path_string(),
                        length: f.length,
                        offset: f.offset,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fraction verified, 0.0–1.0.
    pub fn progress(&self) -> f64 {
        let s = self.status();
        match s.total {
            Some(0) => 1.0,
            Some(t) => s.verified as f64 / t as f64,
            None => 0.0,
        }
    }

    /// Payload bytes received.
    pub fn downloaded(&self) -> u64 {
        self.status().downloaded
    }

    /// Payload bytes sent.
    pub fn uploaded(&self) -> u64 {
        self.status().uploaded
    }

    /// Bytes sent to peers over WebRTC data channels (browsers), messages included.
    pub fn uploaded_webrtc(&self) -> u64 {
        self.status().sent_webrtc
    }

    /// Bytes sent to peers over TCP (desktop clients), messages included.
    pub fn uploaded_tcp(&self) -> u64 {
        self.status().sent_tcp
    }

    /// Why the torrent was refused ([`AddOptions::admit`](crate::AddOptions)), if it was.
    pub fn refused(&self) -> Option<String> {
        self.status().refused.clone()
    }

    /// Receive rate in bytes per second.
    pub fn download_speed(&self) -> u64 {
        self.status().download_speed
    }

    /// Send rate in bytes per second.
    pub fn upload_speed(&self) -> u64 {
        self.status().upload_speed
    }

    /// Connected peers.
    pub fn num_peers(&self) -> usize {
        self.status().peers
    }

    /// Whether every piece is verified.
    pub fn is_done(&self) -> bool {
        *self.inner.done.borrow()
    }

    /// Where the files are stored (`None`: in memory).
    pub fn download_dir(&self) -> Option<PathBuf> {
        self.inner.download_dir.clone()
    }

    /// Subscribes to the torrent's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Waits until every piece is verified.
    pub async fn wait_done(&self) -> Result<()> {
        let mut rx = self.inner.done.clone();
        rx.wait_for(|d| *d).await.map_err(|_| Error::Shutdown)?;
        Ok(())
    }

    /// Waits until the metadata is known (at once for `.torrent` inputs) and returns it.
    pub async fn wait_metadata(&self) -> Result<Arc<Metainfo>> {
        let mut events = self.subscribe();
        loop {
            if let Some(m) = self.metainfo() {
                return Ok(m);
            }
            if let Some(why) = self.refused() {
                return Err(Error::Options(format!("the torrent was refused: {why}")));
            }
            // The status is set before `Metadata` goes out; the timeout only covers a
            // subscriber that lagged behind.
            if let Ok(Err(broadcast::error::RecvError::Closed)) =
                tokio::time::timeout(Duration::from_millis(500), events.recv()).await
            {
                return Err(Error::Shutdown);
            }
        }
    }

    /// A reader of file `index` of [`files`](Self::files) (`AsyncRead + AsyncSeek`) that
    /// waits for the pieces it reads and has them fetched first, while the torrent
    /// downloads. Selects the file if it was deselected. Fails before the metadata is known
    /// (see [`wait_metadata`](Self::wait_metadata)) or for an index out of range.
    pub fn file_reader(&self, index: usize) -> Result<crate::stream::FileReader> {
        crate::stream::FileReader::new(self.clone(), index)
    }

    /// Reads `len` bytes at `offset` of the torrent's content (verified pieces only are
    /// guaranteed to be correct).
    pub async fn read(&self, offset: u64, len: usize) -> Result<Bytes> {
        let storage = self.status().storage.clone().ok_or(Error::Shutdown)?;
        tokio::task::spawn_blocking(move || storage.read(offset, len))
            .await
            .map_err(|e| Error::Storage(e.to_string()))?
            .map_err(Error::Io)
    }

    /// The whole content (for in-memory torrents and tests; reads every byte).
    pub async fn bytes(&self) -> Result<Bytes> {
        self.read(0, self.length() as usize).await
    }

    /// Adds peer addresses to connect to.
    pub async fn add_peers(&self, peers: Vec<SocketAddr>) -> Result<()> {
        self.inner
            .tx
            .send(TaskMsg::input(Input::AddPeers(peers)))
            .await
            .map_err(|_| Error::Shutdown)
    }

    /// Chooses which files to download: `wanted[i]` for file `i` of
    /// [`files`](Self::files), in that order. Pieces
    /// shared with a wanted file are still fetched; [`wait_done`](Self::wait_done) then
    /// resolves once the wanted files are complete. Fails before the metadata is known.
    pub async fn select_files(&self, wanted: Vec<bool>) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(TaskMsg::SelectFiles { wanted, reply })
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await
            .map_err(|_| Error::Shutdown)?
            .map_err(Error::Options)
    }

    /// Piece ranges (end exclusive) fetched whatever [`select_files`](Self::select_files)
    /// chose, as webtorrent's `torrent.select(start, end)`; an empty list leaves only the
    /// file selection. Fails before the metadata is known or for pieces the torrent lacks.
    pub async fn select_pieces(&self, ranges: Vec<std::ops::Range<u32>>) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(TaskMsg::PieceRanges { ranges, reply })
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await
            .map_err(|_| Error::Shutdown)?
            .map_err(Error::Options)
    }

    /// Fetches the pieces covering `range` (bytes of the torrent's content) before any
    /// other; `None` goes back to rarest-first everywhere.
    pub async fn prioritize(&self, range: Option<std::ops::Range<u64>>) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(TaskMsg::Prioritize { range, reply })
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await
            .map_err(|_| Error::Shutdown)?
            .map_err(Error::Options)
    }

    /// Uses a web seed (BEP 19: an `http://` or `https://` URL serving the torrent's files)
    /// besides the torrent's own `url-list`. `false` when it is known already or the torrent
    /// has as many as it takes.
    pub async fn add_web_seed(&self, url: &str) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(TaskMsg::AddWebSeed {
                url: url.to_string(),
                reply,
            })
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// Disconnects every peer and announces `stopped`, keeping the torrent.
    pub async fn pause(&self) -> Result<()> {
        self.inner
            .tx
            .send(TaskMsg::input(Input::Pause))
            .await
            .map_err(|_| Error::Shutdown)
    }

    /// Undoes [`pause`](Self::pause): announces `started` again.
    pub async fn resume(&self) -> Result<()> {
        self.inner
            .tx
            .send(TaskMsg::input(Input::Resume))
            .await
            .map_err(|_| Error::Shutdown)
    }

    /// Stops the torrent task: announces `stopped` (bounded wait), closes connections.
    pub(crate) async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(TaskMsg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}
