//! The per-torrent tokio task: a thin driver of the core [`TorrentSession`]. It moves bytes,
//! time, storage results and tracker replies in, and carries out the session's outputs —
//! connections, disk work on the client's [`DiskPool`](crate::disk::DiskPool), HTTP/UDP
//! announces and (in [`rtc`]) WebSocket signaling and WebRTC connections.

#[cfg(feature = "webrtc")]
mod rtc;
#[cfg(not(feature = "webrtc"))]
#[path = "no_rtc.rs"]
mod rtc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use webtorrent_core::announce::{AnnounceConfig, AnnounceJob, Scheme, SchemeSet, TrackerFailure};
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::peer::Direction;
use webtorrent_core::piece::{sha1, Bitfield, PieceIndex};
use webtorrent_core::session::{
    CheckOutcome, Event as SessionEvent, Input, Output, SessionSettings, Start, TorrentSession,
    Transport,
};
#[cfg(feature = "webrtc")]
use webtorrent_core::signal::OfferId;
#[cfg(feature = "webrtc")]
use webtorrent_core::PeerId;
use webtorrent_core::{InfoHash, PeerKey, Time};

use crate::client::{Admit, Shared};
use crate::conn::Conn;
use crate::crypt::{self, PeerStream};
use crate::storage::{verify_existing, FileStorage, MemoryStorage, Storage};
use crate::torrent::{Event, Events, Status};
use crate::tracker::{AnnounceParams, TrackerError};

/// Messages into a torrent task.
#[derive(Debug)]
pub(crate) enum TaskMsg {
    /// Straight to the session (boxed, like the other large payloads: every torrent's
    /// channel holds a block of these even when idle).
    Input(Box<Input>),
    /// An accepted connection, its address and the handshake bytes already read.
    Incoming(Box<(PeerStream, SocketAddr, Bytes)>),
    /// One of our dials succeeded (boxed: a stream carries its cipher state).
    Connected {
        addr: SocketAddr,
        stream: Box<PeerStream>,
    },
    PeerData {
        key: PeerKey,
        data: bytes::BytesMut,
    },
    PeerClosed {
        key: PeerKey,
    },
    Writable {
        key: PeerKey,
    },
    /// Storage for a magnet's metadata is open, with the pieces found already on disk.
    StorageOpened(Result<(Arc<dyn Storage>, Option<Bitfield>), String>),
    /// One of our WebRTC offers is ready (kept until its answer comes).
    #[cfg(feature = "webrtc")]
    OfferReady {
        url: Arc<str>,
        offer_id: OfferId,
        pending: Box<crate::rtc::PendingOffer>,
        sdp: String,
    },
    /// A WebRTC data channel opened.
    #[cfg(feature = "webrtc")]
    RtcConnected {
        peer_id: PeerId,
        stream: Box<crate::rtc::DataChannelStream>,
    },
    /// A WebRTC connection attempt failed.
    #[cfg(feature = "webrtc")]
    RtcFailed {
        peer_id: PeerId,
    },
    /// Which files to download.
    SelectFiles {
        wanted: Vec<bool>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A stream reader's priority window (`None`: the reader is gone); the reader's file is
    /// selected if it was not.
    Stream {
        id: u64,
        window: Option<std::ops::Range<u64>>,
    },
    /// Answer once piece `piece` is verified and stored (at once if it is).
    WaitPiece {
        piece: u32,
        reply: oneshot::Sender<()>,
    },
    /// A byte range to fetch first.
    Prioritize {
        range: Option<std::ops::Range<u64>>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Piece ranges wanted whatever the files (`Torrent::select_pieces`).
    PieceRanges {
        ranges: Vec<std::ops::Range<u32>>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A web seed to use (`Torrent::add_web_seed`).
    AddWebSeed {
        url: String,
        reply: oneshot::Sender<bool>,
    },
    Stop(oneshot::Sender<()>),
}

impl TaskMsg {
    /// A session input.
    pub fn input(input: Input) -> Self {
        TaskMsg::Input(Box::new(input))
    }
}

/// How a task is set up.
pub(crate) struct TaskInit {
    pub info_hash: InfoHash,
    pub meta: Option<Arc<Metainfo>>,
    pub storage: Option<Arc<dyn Storage>>,
    pub have: Option<Bitfield>,
    pub trackers: Vec<Vec<String>>,
    pub peers: Vec<SocketAddr>,
    pub status: Arc<Mutex<Status>>,
    pub events: Events,
    pub done: watch::Sender<bool>,
    /// Where a magnet's files go once its metadata arrives (`None`: memory).
    pub folder: Option<PathBuf>,
    /// Asked before a magnet's storage is set up.
    pub admit: Option<Admit>,
    /// Files to download (`AddOptions::select`), applied once the metadata is known.
    pub select: Option<Vec<usize>>,
    /// Web seeds besides the metainfo's `url-list` (a magnet link's `ws=`).
    pub web_seeds: Vec<String>,
}

/// Checks a file selection (`AddOptions::select`) against a torrent's files.
pub(crate) fn check_selection(select: &[usize], meta: &Metainfo) -> Result<Vec<bool>, String> {
    let n = meta.info.files.iter().filter(|f| !f.padding).count();
    let mut wanted = vec![false; n];
    for &i in select {
        match wanted.get_mut(i) {
            Some(w) => *w = true,
            None => {
                return Err(format!(
                    "no file {i} to select: the torrent has {n} file(s), numbered from 0 \
                     (`webtorrent info` lists them)"
                ))
            }
        }
    }
    Ok(wanted)
}

/// How often the fast-resume record is rewritten while pieces arrive: a crash loses at
/// most this much of verified pieces (which are then fetched again).
const RESUME_EVERY: Duration = Duration::from_secs(3);

pub(crate) struct Task {
    shared: Arc<Shared>,
    info_hash: InfoHash,
    session: TorrentSession,
    storage: Option<Arc<dyn Storage>>,
    conns: HashMap<PeerKey, Conn>,
    rx: mpsc::Receiver<TaskMsg>,
    tx: mpsc::Sender<TaskMsg>,
    status: Arc<Mutex<Status>>,
    events: Events,
    done: watch::Sender<bool>,
    last_status: Instant,
    /// WebSocket trackers and WebRTC connections.
    rtc: rtc::RtcPeers,
    /// HTTP and UDP announces in flight.
    announcing: tokio::task::JoinSet<()>,
    folder: Option<PathBuf>,
    admit: Option<Admit>,
    /// Files to download, until applied (when the metadata is known).
    select: Option<Vec<usize>>,
    /// Started from a magnet link (its storage comes when the metadata does).
    magnet: bool,
    /// How long a TCP dial may take (the session's `connect_timeout`).
    connect_timeout: Duration,
    stopped: bool,
    /// Readers waiting for a piece.
    piece_waiters: HashMap<u32, Vec<oneshot::Sender<()>>>,
    /// Verified pieces in the last fast-resume record (`None`: none written yet).
    resume_recorded: Option<u32>,
    /// When it was written.
    resume_at: Instant,
    /// The record being written.
    resume_writing: Option<tokio::task::JoinHandle<()>>,
}

fn tracker_failure(e: TrackerError) -> TrackerFailure {
    match e {
        TrackerError::Failure(m) => TrackerFailure::Failure(m),
        TrackerError::Timeout => TrackerFailure::Timeout,
        other => TrackerFailure::Network(other.to_string()),
    }
}

impl Task {
    pub fn new(
        shared: Arc<Shared>,
        init: TaskInit,
        tx: mpsc::Sender<TaskMsg>,
        rx: mpsc::Receiver<TaskMsg>,
    ) -> Result<Task, crate::Error> {
        let now = shared.now();
        let mut settings = SessionSettings::new(shared.peer_id);
        settings.torrent.session.listen_port = Some(shared.port);
        // BEP 5 `PORT` to peers that run a DHT; never for a private torrent.
        let private = init.meta.as_ref().is_some_and(|m| m.info.private);
        settings.torrent.session.dht_port = match &shared.dht {
            Some((d, _)) if !private => Some(d.local_addr().port()),
            _ => None,
        };
        if let Some(rate) = shared.opts.upload_limit {
            // Under an upload limit, about 1/8 s of blocks queued per peer (not 2 MiB): a
            // cancel or an urgent request (a stream reader's seek) then takes effect at once.
            settings.torrent.max_upload_queue = usize::try_from(rate / 8)
                .unwrap_or(usize::MAX)
                .clamp(128 * 1024, settings.torrent.max_upload_queue);
        }
        settings.torrent.session.pex = shared.opts.pex;
        settings.torrent.max_peers = shared.opts.max_connections;
        if let Some(b) = shared.opts.upload_cache_bytes {
            settings.torrent.upload_cache_bytes = b;
        }
        let mut schemes = SchemeSet::NONE
            .with(Scheme::Http)
            .with(Scheme::Https)
            .with(Scheme::Udp);
        if shared.opts.webrtc {
            schemes = schemes.with(Scheme::Ws).with(Scheme::Wss);
        }
        settings.announce = AnnounceConfig {
            schemes,
            stop_timeout: shared.opts.stop_timeout,
            ..AnnounceConfig::default()
        };
        settings.trackers = shared.opts.trackers;
        // As many pieces hashing as the disk pool can take at once, as before the session.
        settings.max_verifying = 16;
        let magnet = init.meta.is_none();
        let connect_timeout = settings.torrent.connect_timeout;
        let start = match (&init.meta, init.have) {
            (Some(m), Some(have)) => Start::Metainfo {
                meta: m.clone(),
                have,
                storage_ready: init.storage.is_some(),
            },
            _ => Start::InfoHash(init.info_hash),
        };
        let session = TorrentSession::new(
            settings,
            start,
            init.trackers.clone(),
            shared.next_seed(),
            now,
        )
        .map_err(|e| crate::Error::Storage(e.to_string()))?;
        for url in session.unsupported_trackers() {
            debug!(%url, "tracker scheme not supported by the native client yet");
        }
        let mut task = Task {
            shared,
            info_hash: init.info_hash,
            session,
            storage: init.storage,
            conns: HashMap::new(),
            rx,
            tx,
            status: init.status,
            events: init.events,
            done: init.done,
            last_status: Instant::now(),
            rtc: rtc::RtcPeers::default(),
            announcing: tokio::task::JoinSet::new(),
            folder: init.folder,
            admit: init.admit,
            select: init.select,
            magnet,
            connect_timeout,
            stopped: false,
            piece_waiters: HashMap::new(),
            resume_recorded: None,
            // The first record goes as soon as the torrent has pieces.
            resume_at: Instant::now()
                .checked_sub(RESUME_EVERY)
                .unwrap_or_else(Instant::now),
            resume_writing: None,
        };
        // A .torrent's selection, before any peer is asked for anything (a magnet's waits
        // for its metadata).
        task.apply_selection();
        for url in &init.web_seeds {
            let now = task.now();
            task.session.add_web_seed(now, url);
        }
        if !init.peers.is_empty() {
            task.input(Input::AddPeers(init.peers));
        }
        task.drive();
        task.update_status(true);
        Ok(task)
    }

    fn now(&self) -> Time {
        self.shared.now()
    }

    fn input(&mut self, input: Input) {
        let now = self.now();
        self.session.handle_input(now, input);
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        let mut stop_reply: Option<oneshot::Sender<()>> = None;
        loop {
            self.drive();
            self.record_resume(false);
            if self.stopped {
                break;
            }
            let deadline = self.next_deadline();
            let msg = tokio::select! {
                m = self.rx.recv() => m,
                _ = tokio::time::sleep_until(deadline) => {
                    self.input(Input::Timeout);
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            self.handle(msg, &mut stop_reply);
            // Batch whatever else is already queued before driving outputs.
            for _ in 0..64 {
                match self.rx.try_recv() {
                    Ok(m) => self.handle(m, &mut stop_reply),
                    Err(_) => break,
                }
            }
        }
        // The final record, once the last pieces are in.
        if let Some(h) = self.resume_writing.take() {
            let _ = h.await;
        }
        if let Some(h) = self.record_resume(true) {
            let _ = h.await;
        }
        for (_, c) in self.conns.drain() {
            c.close();
        }
        self.rtc.close(self.info_hash);
        // Announces still in flight (regular ones overtaken by `stopped`, or `stopped` past
        // the bounded wait) are abandoned.
        self.announcing.abort_all();
        self.update_status(true);
        if let Some(reply) = stop_reply.take() {
            let _ = reply.send(());
        }
        debug!(info_hash = %self.info_hash, "torrent task ended");
    }

    /// Writes the fast-resume record (off the runtime: it flushes the data first) when
    /// pieces were verified since the last one and [`RESUME_EVERY`] has passed, or now with
    /// `force`. Torrents not stored in files have none.
    fn record_resume(&mut self, force: bool) -> Option<tokio::task::JoinHandle<()>> {
        // Called on every turn of the loop: decide before cloning anything.
        self.shared.resume.as_ref()?;
        let count = self.session.have()?.count();
        if self.resume_recorded == Some(count) {
            return None;
        }
        let busy = self
            .resume_writing
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        if !force && (self.resume_at.elapsed() < RESUME_EVERY || busy) {
            return None;
        }
        let store = self.shared.resume.clone()?;
        let storage = self.storage.clone()?;
        let meta = self.session.metainfo()?.clone();
        let have = self.session.have()?.clone();
        self.resume_recorded = Some(count);
        self.resume_at = Instant::now();
        let folder = self.folder.clone();
        let h = tokio::task::spawn_blocking(move || {
            crate::resume::record(&store, &meta, folder.as_deref(), have, storage.as_ref());
        });
        if force {
            Some(h)
        } else {
            self.resume_writing = Some(h);
            None
        }
    }

    fn next_deadline(&self) -> tokio::time::Instant {
        let wait = self
            .session
            .poll_timeout()
            .saturating_since(self.now())
            .min(Duration::from_secs(1));
        tokio::time::Instant::now() + wait
    }

    fn handle(&mut self, msg: TaskMsg, stop_reply: &mut Option<oneshot::Sender<()>>) {
        match msg {
            TaskMsg::Input(input) => self.input(*input),
            TaskMsg::Incoming(incoming) => {
                let (stream, addr, prefix) = *incoming;
                stream.transport().set_nodelay();
                debug!(%addr, transport = stream.transport().kind(), encryption = ?stream.method(), "incoming peer");
                let key = self.connected(stream, Some(addr), Direction::Incoming, Transport::Tcp);
                self.input(Input::PeerData {
                    key,
                    data: bytes::BytesMut::from(&prefix[..]),
                });
            }
            TaskMsg::Connected { addr, stream } => {
                debug!(%addr, transport = stream.transport().kind(), encryption = ?stream.method(), "outgoing peer");
                self.connected(*stream, Some(addr), Direction::Outgoing, Transport::Tcp);
            }
            TaskMsg::PeerData { key, data } => {
                if let Some(c) = self.conns.get(&key) {
                    c.consumed(data.len());
                }
                self.input(Input::PeerData { key, data })
            }
            TaskMsg::PeerClosed { key } => {
                if let Some(c) = self.conns.remove(&key) {
                    c.close();
                }
                self.input(Input::PeerClosed { key });
            }
            TaskMsg::Writable { key } => self.flush_peer(key),
            TaskMsg::StorageOpened(res) => match res {
                Ok((storage, have)) => {
                    self.storage = Some(storage);
                    if let Some(h) = &have {
                        if h.count() > 0 {
                            info!(pieces = h.count(), "pieces already on disk");
                        }
                    }
                    if self.apply_selection() {
                        self.input(Input::StorageReady { have });
                    }
                }
                Err(e) => {
                    warn!(info_hash = %self.info_hash, "cannot prepare files: {e}");
                    self.input(Input::Refuse(format!("cannot prepare files: {e}")));
                }
            },
            #[cfg(feature = "webrtc")]
            TaskMsg::OfferReady {
                url,
                offer_id,
                pending,
                sdp,
            } => self.rtc.offer_ready(url, offer_id, pending, sdp),
            #[cfg(feature = "webrtc")]
            TaskMsg::RtcConnected { peer_id, stream } => {
                self.rtc.connected(peer_id);
                let addr = stream.remote_addr();
                debug!(?addr, %peer_id, "WebRTC data channel open");
                self.connected(
                    *stream,
                    addr,
                    Direction::Outgoing,
                    Transport::WebRtc { peer_id },
                );
            }
            #[cfg(feature = "webrtc")]
            TaskMsg::RtcFailed { peer_id } => {
                self.rtc.connected(peer_id);
                self.input(Input::RtcFailed { peer_id });
            }
            TaskMsg::SelectFiles { wanted, reply } => {
                let now = self.now();
                let res = self.session.set_files_wanted(now, &wanted);
                let _ = reply.send(res.map_err(|e| e.to_string()));
            }
            TaskMsg::Prioritize { range, reply } => {
                let now = self.now();
                let res = self.session.set_priority_range(now, range);
                let _ = reply.send(res.map_err(|e| e.to_string()));
            }
            TaskMsg::Stream { id, window } => {
                self.piece_waiters.retain(|_, v| {
                    v.retain(|s| !s.is_closed());
                    !v.is_empty()
                });
                let now = self.now();
                if let Err(e) = self.session.set_reader_window(now, id, window) {
                    debug!("stream window not applied: {e}");
                }
            }
            TaskMsg::WaitPiece { piece, reply } => {
                if self.session.has_piece(piece) {
                    let _ = reply.send(());
                } else {
                    self.piece_waiters.entry(piece).or_default().push(reply);
                }
            }
            TaskMsg::PieceRanges { ranges, reply } => {
                let now = self.now();
                let res = self.session.set_piece_ranges_wanted(now, &ranges);
                let _ = reply.send(res.map_err(|e| e.to_string()));
            }
            TaskMsg::AddWebSeed { url, reply } => {
                let now = self.now();
                let _ = reply.send(self.session.add_web_seed(now, &url));
            }
            TaskMsg::Stop(reply) => {
                *stop_reply = Some(reply);
                self.input(Input::Stop);
            }
        }
    }

    /// Starts the reader and writer of a new connection and tells the session.
    fn connected<S>(
        &mut self,
        stream: S,
        addr: Option<SocketAddr>,
        direction: Direction,
        transport: Transport,
    ) -> PeerKey
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let key = self.shared.next_key();
        let conn = Conn::spawn(
            stream,
            key,
            self.tx.clone(),
            self.shared.down_limit.clone(),
            self.shared.up_limit.clone(),
        );
        self.conns.insert(key, conn);
        self.input(Input::PeerConnected {
            key,
            addr,
            direction,
            transport,
        });
        key
    }

    fn flush_peer(&mut self, key: PeerKey) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        while conn.has_room() {
            match self.session.poll_transmit_to(key) {
                Some(b) => conn.send(b),
                None => break,
            }
        }
    }

    /// Carries out everything the session asks for.
    fn drive(&mut self) {
        while let Some(out) = self.session.poll_output() {
            self.on_output(out);
        }
        for key in self.session.pending_transmits() {
            self.flush_peer(key);
        }
        self.update_status(false);
    }

    fn on_output(&mut self, out: Output) {
        match out {
            Output::Connect(addr) => {
                debug!(%addr, "connecting");
                let tx = self.tx.clone();
                // The session's connect timeout (its one owner) bounds the dial, and the
                // encrypted handshake with it.
                let connect_timeout = self.connect_timeout;
                let (info_hash, policy) = (self.info_hash, self.shared.opts.encryption);
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    let msg = match crypt::connect(
                        addr,
                        info_hash,
                        policy,
                        shared.utp.as_ref(),
                        &shared.plain_peers,
                        connect_timeout,
                    )
                    .await
                    {
                        Ok(stream) => TaskMsg::Connected {
                            addr,
                            stream: Box::new(stream),
                        },
                        Err(e) => {
                            debug!(%addr, "connect failed: {e}");
                            TaskMsg::input(Input::ConnectFailed { addr })
                        }
                    };
                    let _ = tx.send(msg).await;
                });
            }
            Output::Fetch { key, fetch } => {
                debug!(requests = fetch.requests.len(), "web seed fetch");
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = crate::webseed::run(&fetch).await;
                    let input = Input::Fetched {
                        key,
                        id: fetch.id,
                        result,
                    };
                    let _ = tx.send(TaskMsg::input(input)).await;
                });
            }
            Output::Disconnect(key) => {
                if let Some(c) = self.conns.remove(&key) {
                    tokio::spawn(c.close_gracefully());
                }
            }
            Output::ReadPiece {
                piece,
                offset,
                length,
                buffer,
            } => self.read_piece(piece, offset, length, buffer),
            Output::VerifyPiece {
                piece,
                offset,
                data,
                expected,
            } => self.verify_piece(piece, offset, data, expected),
            Output::OpenStorage(meta) => self.open_storage(meta),
            Output::Announce(job) => self.announce(job),
            Output::Rtc(action) => {
                if let Some(peer_id) = self.rtc.act(&self.shared, &self.tx, self.info_hash, action)
                {
                    self.input(Input::RtcFailed { peer_id });
                }
            }
            Output::Event(e) => self.on_event(e),
            Output::Stopped => self.stopped = true,
        }
    }

    /// Reads a whole piece for uploading on the disk threads.
    fn read_piece(
        &mut self,
        piece: PieceIndex,
        offset: u64,
        length: u32,
        spare: Option<bytes::BytesMut>,
    ) {
        let Some(storage) = self.storage.clone() else {
            self.input(Input::PieceRead { piece, data: None });
            return;
        };
        let tx = self.tx.clone();
        self.shared.disk.run(move || {
            let data = match storage.read_reusing(offset, length as usize, spare) {
                Ok(d) => Some(d),
                Err(e) => {
                    warn!("reading piece {piece} for upload: {e}");
                    None
                }
            };
            let _ = tx.blocking_send(TaskMsg::input(Input::PieceRead { piece, data }));
        });
    }

    /// Hashes and stores a completed piece on the disk threads.
    fn verify_piece(&mut self, piece: PieceIndex, offset: u64, data: Bytes, expected: [u8; 20]) {
        let Some(storage) = self.storage.clone() else {
            self.input(Input::PieceChecked {
                piece,
                outcome: CheckOutcome::StoreFailed,
                data,
            });
            return;
        };
        let tx = self.tx.clone();
        self.shared.disk.run(move || {
            let outcome = if sha1(&data) != expected {
                CheckOutcome::HashMismatch
            } else if let Err(e) = storage.write(offset, &data) {
                warn!("storing piece {piece} failed: {e}");
                CheckOutcome::StoreFailed
            } else {
                CheckOutcome::Stored
            };
            let input = Input::PieceChecked {
                piece,
                outcome,
                data,
            };
            let _ = tx.blocking_send(TaskMsg::input(input));
        });
    }

    /// Applies `AddOptions::select` once the metadata is known; false when it names a file
    /// the torrent lacks (the torrent is refused then).
    fn apply_selection(&mut self) -> bool {
        let Some(select) = self.select.take() else {
            return true;
        };
        let Some(meta) = self.session.metainfo().cloned() else {
            self.select = Some(select);
            return true;
        };
        let res = check_selection(&select, &meta).and_then(|wanted| {
            let now = self.now();
            self.session
                .set_files_wanted(now, &wanted)
                .map_err(|e| e.to_string())
        });
        match res {
            Ok(()) => true,
            Err(why) => {
                warn!(info_hash = %self.info_hash, "torrent refused: {why}");
                self.input(Input::Refuse(why));
                false
            }
        }
    }

    /// The metadata arrived: admit it, then set up storage (checking what a folder already
    /// holds on the disk threads).
    fn open_storage(&mut self, meta: Arc<Metainfo>) {
        info!(name = %meta.info.name, "metadata received");
        if let Some(admit) = &self.admit {
            if let Err(reason) = admit.check(&meta) {
                info!(info_hash = %self.info_hash, "torrent refused: {reason}");
                self.input(Input::Refuse(reason));
                return;
            }
        }
        match &self.folder {
            Some(dir) => {
                let dir = dir.clone();
                let tx = self.tx.clone();
                let resume = self.shared.resume.clone();
                self.shared.disk.run(move || {
                    let fs = FileStorage::new(&dir, Arc::new(meta.info.clone()));
                    let have = resume
                        .and_then(|r| {
                            crate::resume::resume_have(&r, meta.info_hash, &meta.info, &fs)
                        })
                        .unwrap_or_else(|| verify_existing(&meta.info, &fs));
                    let res = fs
                        .prepare()
                        .map(|()| (Arc::new(fs) as Arc<dyn Storage>, Some(have)))
                        .map_err(|e| e.to_string());
                    let _ = tx.blocking_send(TaskMsg::StorageOpened(res));
                });
            }
            None => {
                let len = meta.info.total_length();
                match MemoryStorage::for_download(len, self.shared.opts.memory_limit) {
                    Ok(memory) => {
                        self.storage = Some(Arc::new(memory));
                        if self.apply_selection() {
                            self.input(Input::StorageReady { have: None });
                        }
                    }
                    Err(why) => {
                        warn!(info_hash = %self.info_hash, "torrent refused: {why}");
                        self.input(Input::Refuse(why));
                    }
                }
            }
        }
    }

    fn announce(&mut self, job: AnnounceJob) {
        let Some(client) = self.shared.trackers.clone() else {
            return;
        };
        let params = AnnounceParams::from_job(
            &job,
            self.info_hash,
            self.shared.peer_id,
            self.shared
                .announce_port
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let tx = self.tx.clone();
        let url = job.url.clone();
        let id = job.id;
        debug!(%url, event = job.event.as_str(), "announcing");
        // Reap finished announces; the rest are aborted when the task ends.
        while self.announcing.try_join_next().is_some() {}
        let timeout = job.timeout;
        self.announcing.spawn(async move {
            let reply = tokio::time::timeout(timeout, client.announce(&url, &params)).await;
            let (result, peers) = match reply {
                Ok(Ok(o)) => (Ok(o.to_reply()), o.peers),
                Ok(Err(e)) => (Err(tracker_failure(e)), Vec::new()),
                Err(_) => (Err(TrackerFailure::Timeout), Vec::new()),
            };
            let input = Input::Announced {
                job: id,
                result,
                peers,
            };
            let _ = tx.send(TaskMsg::input(input)).await;
        });
    }

    fn on_event(&mut self, e: SessionEvent) {
        if let Some(w) = e.warning() {
            warn!("{w}");
        }
        // Handles read these at once, before the event reaches them (a subscriber woken by
        // `Metadata` finds the metainfo); the rest reach them with the next (rate-limited) drive.
        let force = matches!(
            e,
            SessionEvent::Ready | SessionEvent::Done { .. } | SessionEvent::Refused(_)
        );
        if force {
            self.update_status(true);
        }
        match e {
            SessionEvent::PeerConnected {
                peer_id,
                addr,
                transport,
                ..
            } => {
                debug!(?addr, %peer_id, ?transport, "peer connected");
                self.events.send(Event::PeerConnected {
                    addr,
                    peer_id: peer_id.0,
                });
            }
            SessionEvent::PeerDisconnected { addr, reason, .. } => {
                debug!(?addr, "peer dropped: {reason}");
                self.events.send(Event::PeerDisconnected { addr, reason });
            }
            SessionEvent::PeerBanned { addr } => self.events.send(Event::PeerBanned { addr }),
            SessionEvent::DhtNode(addr) => {
                if let Some((dht, _)) = &self.shared.dht {
                    dht.add_node(addr);
                }
            }
            SessionEvent::Ready if self.magnet => self.events.send(Event::Metadata),
            SessionEvent::PieceVerified(p) => {
                let waiters = self.piece_waiters.remove(&p.get()).unwrap_or_default();
                if !waiters.is_empty() {
                    // The readers read through the handle's storage.
                    self.update_status(true);
                }
                for w in waiters {
                    let _ = w.send(());
                }
                self.events.send(Event::PieceVerified(p.get()))
            }
            SessionEvent::HashFailed(_)
            | SessionEvent::WebSeedFailed { .. }
            | SessionEvent::StoreFailed(_)
            | SessionEvent::MetadataFailed { .. } => {
                if let Some(w) = e.warning() {
                    self.events.send(Event::Warning(w));
                }
            }
            SessionEvent::Done { complete } => {
                if let Some(s) = &self.storage {
                    if let Err(e) = s.flush() {
                        warn!("flushing storage: {e}");
                    }
                }
                let what = if complete {
                    "download"
                } else {
                    "selected files"
                };
                info!(info_hash = %self.info_hash, "{what} complete, seeding");
                let _ = self.done.send(true);
                self.events.send(Event::Done);
            }
            SessionEvent::Refused(reason) => self.events.send(Event::Refused(reason)),
            SessionEvent::TrackerReply {
                url,
                event,
                interval,
                seeders,
                leechers,
                peers,
            } => {
                info!(%url, ?event, ?interval, ?seeders, ?leechers, peers, "tracker replied");
                self.events.send(Event::TrackerReply {
                    url,
                    event: event.as_str().to_string(),
                    interval,
                    seeders,
                    leechers,
                    peers,
                });
            }
            SessionEvent::TrackerWarning { url, message } => self
                .events
                .send(Event::Warning(format!("{url}: {message}"))),
            SessionEvent::TrackerError { url, error } => self.events.send(Event::TrackerError {
                url,
                error: error.to_string(),
            }),
            SessionEvent::Metadata | SessionEvent::Ready => {}
        }
    }

    fn update_status(&mut self, force: bool) {
        if !force && self.last_status.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_status = Instant::now();
        let now = self.now();
        let stats = self.session.stats(now);
        let (sent_webrtc, sent_tcp) = self.session.sent_by_transport();
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.downloaded = stats.downloaded;
        s.uploaded = stats.uploaded;
        s.verified = stats.verified;
        s.total = stats.total;
        s.download_speed = stats.download_rate;
        s.upload_speed = stats.upload_rate;
        s.peers = stats.peers;
        s.done = self.session.is_finished() && self.session.is_ready();
        s.paused = self.session.is_paused();
        s.sent_webrtc = sent_webrtc;
        s.sent_tcp = sent_tcp;
        if s.refused.is_none() {
            s.refused = self.session.refused().map(str::to_string);
        }
        if s.meta.is_none() {
            s.meta = self.session.metainfo().cloned();
        }
        s.storage = self.storage.clone();
    }
}
#[cfg(test)]
mod tests {
    /// Every torrent's channel allocates a block of 32 messages up front, idle or not: large
    /// payloads are boxed so that block stays small.
    #[test]
    fn task_messages_stay_small() {
        let size = std::mem::size_of::<super::TaskMsg>();
        assert!(
            size <= 96,
            "TaskMsg grew to {size} bytes: box the large variant"
        );
    }
}
