//! The per-torrent actor: owns the core [`Torrent`](CoreTorrent) and [`Announcer`] state
//! machines and carries out what they ask — connections, storage, tracker requests.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};
use webtorrent_core::announce::{
    AnnounceConfig, Announcer, AnnouncerEvent, JobId, Scheme, SchemeSet, TrackerFailure,
    TrackerReply,
};
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::peer::Direction;
use webtorrent_core::piece::{sha1, Bitfield, PieceIndex};
use webtorrent_core::signal::{AnnounceParams as SignalAnnounce, OfferId};
use webtorrent_core::torrent::{
    Output, PeerSource, Torrent as CoreTorrent, TorrentConfig, TorrentEvent,
};
use webtorrent_core::{InfoHash, PeerId, PeerKey, Time};

use crate::client::{Admit, Shared};
use crate::conn::Conn;
use crate::disk::DiskThread;
use crate::rtc;
use crate::signal::{Cmd, SignalEvent};
use crate::storage::{FileStorage, MemoryStorage, Storage};
use crate::torrent::{Event, Status};
use crate::tracker::{AnnounceParams, TrackerError};

/// Messages into a torrent task.
#[derive(Debug)]
pub(crate) enum TaskMsg {
    Incoming {
        stream: TcpStream,
        addr: SocketAddr,
        prefix: Bytes,
    },
    Connected {
        addr: SocketAddr,
        stream: TcpStream,
    },
    ConnectFailed {
        addr: SocketAddr,
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
    PieceLoaded {
        piece: PieceIndex,
        data: Option<Bytes>,
    },
    PieceChecked {
        piece: PieceIndex,
        outcome: PieceOutcome,
        data: Bytes,
    },
    Announced {
        job: JobId,
        url: String,
        result: Result<(TrackerReply, Vec<SocketAddr>), TrackerFailure>,
    },
    AddPeers(Vec<SocketAddr>),
    /// A WebSocket tracker's request or reply.
    Signal {
        url: Arc<str>,
        event: SignalEvent,
    },
    /// One of our WebRTC offers is ready (kept until its answer comes).
    OfferReady {
        url: Arc<str>,
        offer_id: OfferId,
        pending: rtc::PendingOffer,
        sdp: String,
    },
    /// A WebRTC data channel opened.
    RtcConnected {
        peer_id: PeerId,
        stream: rtc::DataChannelStream,
    },
    /// A WebRTC connection attempt failed.
    RtcFailed {
        peer_id: PeerId,
    },
    Pause,
    Resume,
    Stop(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceOutcome {
    Stored,
    HashMismatch,
    StoreFailed,
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
    pub events: broadcast::Sender<Event>,
    pub done: watch::Sender<bool>,
    /// Where a magnet's files go once its metadata arrives (`None`: memory).
    pub folder: Option<PathBuf>,
    /// Asked before a magnet's storage is set up.
    pub admit: Option<Admit>,
}

pub(crate) struct Task {
    shared: Arc<Shared>,
    info_hash: InfoHash,
    core: CoreTorrent,
    announcer: Announcer,
    storage: Option<Arc<dyn Storage>>,
    conns: HashMap<PeerKey, Conn>,
    rx: mpsc::Receiver<TaskMsg>,
    tx: mpsc::Sender<TaskMsg>,
    status: Arc<Mutex<Status>>,
    events: broadcast::Sender<Event>,
    done: watch::Sender<bool>,
    started_complete: bool,
    paused: bool,
    jobs: HashMap<JobId, String>,
    last_status: Instant,
    verify_in_flight: Arc<AtomicUsize>,
    /// Where disk work runs (threads started on first use).
    disk: Option<DiskThread>,
    /// WebSocket trackers this torrent is registered with.
    ws_trackers: HashMap<Arc<str>, mpsc::UnboundedSender<Cmd>>,
    /// Our WebRTC offers waiting for answers.
    offers: HashMap<OfferId, rtc::PendingOffer>,
    /// WebRTC connections being set up, by remote peer id, with the task doing it.
    rtc_connecting: HashMap<PeerId, tokio::task::JoinHandle<()>>,
    /// HTTP and UDP announces in flight.
    announcing: tokio::task::JoinSet<()>,
    folder: Option<PathBuf>,
    admit: Option<Admit>,
    /// Connections that are WebRTC data channels (the rest are TCP).
    rtc_keys: HashSet<PeerKey>,
    /// Bytes sent over WebRTC and over TCP.
    sent_rtc: u64,
    sent_tcp: u64,
    /// Why the torrent was refused, if it was.
    refused: Option<String>,
}

/// Pieces queued for hashing at once; beyond that the task hashes inline.
const MAX_VERIFY_IN_FLIGHT: usize = 16;

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
        let mut cfg = TorrentConfig::new(shared.peer_id);
        cfg.session.listen_port = Some(shared.port);
        cfg.session.pex = shared.opts.pex;
        cfg.max_peers = shared.opts.max_connections;
        if let Some(b) = shared.opts.upload_cache_bytes {
            cfg.upload_cache_bytes = b;
        }
        let seed = shared.next_seed();
        let core = match (&init.meta, init.have) {
            (Some(m), Some(have)) => CoreTorrent::new(cfg, m.clone(), have, seed, now)
                .map_err(|e| crate::Error::Storage(e.to_string()))?,
            _ => CoreTorrent::from_info_hash(cfg, init.info_hash, init.trackers.clone(), seed, now),
        };
        let mut schemes = SchemeSet::NONE
            .with(Scheme::Http)
            .with(Scheme::Https)
            .with(Scheme::Udp);
        if shared.opts.webrtc {
            schemes = schemes.with(Scheme::Ws).with(Scheme::Wss);
        }
        let trackers = if shared.opts.trackers {
            init.trackers.clone()
        } else {
            Vec::new()
        };
        let announcer = Announcer::new(
            trackers,
            AnnounceConfig {
                schemes,
                stop_timeout: shared.opts.stop_timeout,
                ..AnnounceConfig::default()
            },
            shared.next_seed(),
            now,
        );
        let started_complete = core.is_complete();
        let mut task = Task {
            shared,
            info_hash: init.info_hash,
            core,
            announcer,
            storage: init.storage,
            conns: HashMap::new(),
            rx,
            tx,
            status: init.status,
            events: init.events,
            done: init.done,
            started_complete,
            paused: false,
            jobs: HashMap::new(),
            last_status: Instant::now(),
            verify_in_flight: Arc::new(AtomicUsize::new(0)),
            disk: None,
            ws_trackers: HashMap::new(),
            offers: HashMap::new(),
            rtc_connecting: HashMap::new(),
            announcing: tokio::task::JoinSet::new(),
            folder: init.folder,
            admit: init.admit,
            rtc_keys: HashSet::new(),
            sent_rtc: 0,
            sent_tcp: 0,
            refused: None,
        };
        for url in task.announcer.unsupported_trackers() {
            debug!(%url, "tracker scheme not supported by the native client yet");
        }
        task.core
            .add_candidates(now, init.peers, PeerSource::Manual);
        let left = task.core.stats(now).left;
        task.announcer.start(now, left);
        if started_complete {
            let _ = task.done.send(true);
        }
        task.update_status(true);
        Ok(task)
    }

    fn now(&self) -> Time {
        self.shared.now()
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        let mut stop_reply: Option<oneshot::Sender<()>> = None;
        loop {
            self.drive();
            if let Some(reply) = stop_reply.take() {
                // Stopping: wait for the `stopped` announces (bounded by the announcer).
                let deadline = tokio::time::Instant::now() + self.shared.opts.stop_timeout;
                while !self.jobs.is_empty() && tokio::time::Instant::now() < deadline {
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(TaskMsg::Announced { job, url, result })) => {
                            // A reply to an announce that was in flight when we stopped
                            // (e.g. `completed`) lets the announcer send its `stopped` now.
                            self.on_announced(job, url, result);
                            self.drive();
                        }
                        Ok(Some(TaskMsg::Signal {
                            url,
                            event: event @ SignalEvent::Announced { .. },
                        })) => {
                            // The same for WebSocket trackers.
                            self.on_signal(url, event);
                            self.drive();
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                let _ = reply.send(());
                break;
            }
            let deadline = self.next_deadline();
            let msg = tokio::select! {
                m = self.rx.recv() => m,
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                    self.announcer.handle_timeout(now);
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            if let TaskMsg::Stop(reply) = msg {
                self.begin_stop();
                stop_reply = Some(reply);
                continue;
            }
            self.handle(msg);
            // Batch whatever else is already queued before driving outputs.
            for _ in 0..64 {
                match self.rx.try_recv() {
                    Ok(TaskMsg::Stop(reply)) => {
                        self.begin_stop();
                        stop_reply = Some(reply);
                        break;
                    }
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
        }
        for (_, c) in self.conns.drain() {
            c.close();
        }
        for (_, tx) in self.ws_trackers.drain() {
            let _ = tx.send(Cmd::Unregister {
                info_hash: self.info_hash,
            });
        }
        self.offers.clear();
        for (_, h) in self.rtc_connecting.drain() {
            h.abort();
        }
        // Announces still in flight (regular ones overtaken by `stopped`, or `stopped` past
        // the bounded wait) are abandoned.
        self.announcing.abort_all();
        self.update_status(true);
        debug!(info_hash = %self.info_hash, "torrent task ended");
    }

    fn next_deadline(&self) -> tokio::time::Instant {
        let now = self.now();
        let mut next = self.core.poll_timeout();
        if let Some(t) = self.announcer.poll_timeout() {
            next = next.min(t);
        }
        let wait = next.saturating_since(now).min(Duration::from_secs(1));
        tokio::time::Instant::now() + wait
    }

    fn begin_stop(&mut self) {
        let now = self.now();
        let stats = self.core.stats(now);
        self.announcer
            .update_stats(stats.uploaded, stats.downloaded, stats.left);
        self.announcer.stop(now);
        self.core.shutdown(now);
        self.drive();
    }

    fn handle(&mut self, msg: TaskMsg) {
        let now = self.now();
        match msg {
            TaskMsg::Incoming {
                stream,
                addr,
                prefix,
            } => {
                if self.paused {
                    return;
                }
                let key = self.shared.next_key();
                match self
                    .core
                    .add_peer(now, key, Some(addr), Direction::Incoming)
                {
                    Ok(()) => {
                        let _ = stream.set_nodelay(true);
                        self.spawn_conn(key, stream);
                        self.core.peer_data(now, key, &prefix);
                    }
                    Err(e) => debug!(%addr, "refused incoming peer: {e}"),
                }
            }
            TaskMsg::Connected { addr, stream } => {
                if self.paused {
                    return;
                }
                let key = self.shared.next_key();
                match self
                    .core
                    .add_peer(now, key, Some(addr), Direction::Outgoing)
                {
                    Ok(()) => {
                        let _ = stream.set_nodelay(true);
                        self.spawn_conn(key, stream)
                    }
                    Err(e) => debug!(%addr, "dropped outgoing peer: {e}"),
                }
            }
            TaskMsg::ConnectFailed { addr } => {
                debug!(%addr, "connection attempt failed");
                self.core.connect_failed(now, addr)
            }
            TaskMsg::PeerData { key, data } => {
                if let Some(c) = self.conns.get(&key) {
                    c.consumed(data.len());
                }
                self.core.peer_data_owned(now, key, data)
            }
            TaskMsg::PeerClosed { key } => {
                self.rtc_keys.remove(&key);
                if let Some(c) = self.conns.remove(&key) {
                    c.close();
                }
                self.core.peer_closed(now, key);
            }
            TaskMsg::Writable { key } => self.flush_peer(key),
            TaskMsg::PieceLoaded { piece, data } => {
                let now = self.now();
                self.core.piece_read(now, piece, data);
            }
            TaskMsg::PieceChecked {
                piece,
                outcome,
                data,
            } => {
                match outcome {
                    PieceOutcome::Stored => self.core.piece_checked(now, piece, true),
                    PieceOutcome::HashMismatch => self.core.piece_checked(now, piece, false),
                    PieceOutcome::StoreFailed => self.core.piece_store_failed(now, piece),
                }
                self.core.recycle(data);
            }
            TaskMsg::Announced { job, url, result } => self.on_announced(job, url, result),
            TaskMsg::AddPeers(peers) => self.core.add_candidates(now, peers, PeerSource::Manual),
            TaskMsg::Signal { url, event } => self.on_signal(url, event),
            TaskMsg::OfferReady {
                url,
                offer_id,
                pending,
                sdp,
            } => {
                if let Some(tx) = self.ws_trackers.get(&url) {
                    self.offers.insert(offer_id, pending);
                    let _ = tx.send(Cmd::OfferCreated { offer_id, sdp });
                }
            }
            TaskMsg::RtcConnected { peer_id, stream } => {
                self.rtc_connecting.remove(&peer_id);
                if self.paused {
                    return;
                }
                let key = self.shared.next_key();
                let addr = stream.remote_addr();
                match self.core.add_peer(now, key, None, Direction::Outgoing) {
                    Ok(()) => {
                        debug!(?addr, %peer_id, "WebRTC peer connected");
                        self.rtc_keys.insert(key);
                        self.spawn_conn(key, stream);
                    }
                    Err(e) => debug!(%peer_id, "dropped WebRTC peer: {e}"),
                }
            }
            TaskMsg::RtcFailed { peer_id } => {
                self.rtc_connecting.remove(&peer_id);
            }
            TaskMsg::Pause => {
                if !self.paused {
                    self.paused = true;
                    self.announcer.pause(now);
                    self.core.shutdown(now);
                }
            }
            TaskMsg::Resume => {
                if self.paused && self.refused.is_none() {
                    self.paused = false;
                    self.announcer.resume(now);
                }
            }
            TaskMsg::Stop(_) => {}
        }
    }

    fn on_announced(
        &mut self,
        job: JobId,
        url: String,
        result: Result<(TrackerReply, Vec<SocketAddr>), TrackerFailure>,
    ) {
        let now = self.now();
        self.jobs.remove(&job);
        let result = match result {
            Ok((reply, peers)) => {
                if !self.paused && !peers.is_empty() {
                    self.core.add_candidates(now, peers, PeerSource::Tracker);
                }
                Ok(reply)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            debug!(%url, "announce failed: {e}");
        }
        self.announcer.handle_reply(now, job, result);
    }

    fn spawn_conn<S>(&mut self, key: PeerKey, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let conn = Conn::spawn(
            stream,
            key,
            self.tx.clone(),
            self.shared.down_limit.clone(),
            self.shared.up_limit.clone(),
        );
        self.conns.insert(key, conn);
    }

    fn flush_peer(&mut self, key: PeerKey) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let rtc = self.rtc_keys.contains(&key);
        while conn.has_room() {
            match self.core.poll_transmit_to(key) {
                Some(b) => {
                    if rtc {
                        self.sent_rtc += b.len() as u64;
                    } else {
                        self.sent_tcp += b.len() as u64;
                    }
                    conn.send(b)
                }
                None => break,
            }
        }
    }

    /// Carries out everything the state machines ask for.
    fn drive(&mut self) {
        let now = self.now();
        for _ in 0..16 {
            let mut progressed = false;
            while let Some(out) = self.core.poll_output() {
                progressed = true;
                self.on_output(out);
            }
            for key in self.core.pending_transmits() {
                self.flush_peer(key);
            }
            let stats = self.core.stats(now);
            self.announcer
                .update_stats(stats.uploaded, stats.downloaded, stats.left);
            while let Some(job) = self.announcer.poll_job(now) {
                progressed = true;
                self.spawn_announce(job);
            }
            while let Some(ev) = self.announcer.poll_event() {
                self.on_announcer_event(ev);
            }
            if !progressed {
                break;
            }
        }
        self.update_status(false);
    }

    fn on_announcer_event(&mut self, ev: AnnouncerEvent) {
        match ev {
            AnnouncerEvent::Reply {
                tracker,
                event,
                interval,
                seeders,
                leechers,
                peers,
                ..
            } => {
                let url = self
                    .announcer
                    .tracker(tracker)
                    .map(|t| t.url.to_string())
                    .unwrap_or_default();
                info!(%url, ?event, ?interval, ?seeders, ?leechers, peers, "tracker replied");
                let _ = self.events.send(Event::TrackerReply {
                    url,
                    event: event.as_str().to_string(),
                    interval,
                    seeders,
                    leechers,
                    peers,
                });
            }
            AnnouncerEvent::Warning { tracker, message } => {
                let url = self
                    .announcer
                    .tracker(tracker)
                    .map(|t| t.url.to_string())
                    .unwrap_or_default();
                warn!(%url, "tracker warning: {message}");
                let _ = self
                    .events
                    .send(Event::Warning(format!("{url}: {message}")));
            }
            AnnouncerEvent::Failed { tracker, error, .. } => {
                let url = self
                    .announcer
                    .tracker(tracker)
                    .map(|t| t.url.to_string())
                    .unwrap_or_default();
                warn!(%url, "announce failed: {error}");
                let _ = self.events.send(Event::TrackerError {
                    url,
                    error: error.to_string(),
                });
            }
            _ => {}
        }
    }

    fn spawn_announce(&mut self, job: webtorrent_core::announce::AnnounceJob) {
        if matches!(Scheme::of(&job.url), Some(Scheme::Ws | Scheme::Wss)) {
            self.ws_announce(job);
            return;
        }
        let Some(client) = self.shared.trackers.clone() else {
            return;
        };
        let params =
            AnnounceParams::from_job(&job, self.info_hash, self.shared.peer_id, self.shared.port);
        let tx = self.tx.clone();
        let url = job.url.clone();
        let id = job.id;
        self.jobs.insert(id, url.clone());
        debug!(%url, event = job.event.as_str(), "announcing");
        // Reap finished announces; the rest are aborted when the task ends.
        while self.announcing.try_join_next().is_some() {}
        self.announcing.spawn(async move {
            let result = client
                .announce(&url, &params)
                .await
                .map(|o| {
                    let reply = TrackerReply {
                        interval: Some(o.interval),
                        min_interval: o.min_interval,
                        complete: o.complete,
                        incomplete: o.incomplete,
                        peers_count: o.peers.len(),
                        tracker_id: o.tracker_id.clone(),
                        warning: o.warning.clone(),
                    };
                    (reply, o.peers)
                })
                .map_err(tracker_failure);
            let _ = tx
                .send(TaskMsg::Announced {
                    job: id,
                    url,
                    result,
                })
                .await;
        });
    }

    /// Announces to a WebSocket tracker (registering with it first).
    fn ws_announce(&mut self, job: webtorrent_core::announce::AnnounceJob) {
        let Some(pool) = self.shared.signals.as_ref() else {
            return;
        };
        let url: Arc<str> = Arc::from(job.url.as_str());
        let tx = match self.ws_trackers.get(&url) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let tx = pool.tracker(&job.url);
                let _ = tx.send(Cmd::Register {
                    info_hash: self.info_hash,
                    tx: self.tx.clone(),
                });
                self.ws_trackers.insert(url.clone(), tx.clone());
                tx
            }
        };
        self.jobs.insert(job.id, job.url.clone());
        debug!(url = %job.url, event = job.event.as_str(), "announcing (WebSocket)");
        let _ = tx.send(Cmd::Announce(SignalAnnounce::from_job(
            self.info_hash,
            &job,
        )));
    }

    /// Whether a WebRTC connection to `peer_id` is wanted now. A connection still being set up
    /// with that peer does not count against it: when both sides' offers cross, each keeps a
    /// different one of the two connections (webtorrent keeps the first it registered), so
    /// both go ahead and the core drops the duplicate once both handshakes are done.
    fn wants_rtc_peer(&self, peer_id: PeerId) -> bool {
        !self.paused
            && peer_id != self.shared.peer_id
            && self.core.num_peers() + self.rtc_connecting.len() < self.shared.opts.max_connections
            && !self.core.has_peer_id(peer_id)
    }

    fn on_signal(&mut self, url: Arc<str>, event: SignalEvent) {
        let Some(tracker) = self.ws_trackers.get(&url).cloned() else {
            return;
        };
        let rtc_cfg = self.shared.rtc.clone();
        match event {
            SignalEvent::CreateOffer { offer_id } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    match rtc::create_offer(&rtc_cfg).await {
                        Ok((pending, sdp)) => {
                            let msg = TaskMsg::OfferReady {
                                url,
                                offer_id,
                                pending,
                                sdp,
                            };
                            if tx.send(msg).await.is_err() {
                                let _ = tracker.send(Cmd::OfferFailed { offer_id });
                            }
                        }
                        Err(e) => {
                            debug!("creating a WebRTC offer failed: {e}");
                            let _ = tracker.send(Cmd::OfferFailed { offer_id });
                        }
                    }
                });
            }
            SignalEvent::DropOffer { offer_id } => {
                self.offers.remove(&offer_id);
            }
            SignalEvent::ApplyAnswer {
                peer_id,
                offer_id,
                sdp,
            } => {
                let Some(pending) = self.offers.remove(&offer_id) else {
                    return;
                };
                if !self.wants_rtc_peer(peer_id) {
                    return;
                }
                let tx = self.tx.clone();
                let h = tokio::spawn(async move {
                    let msg = match pending.accept_answer(&sdp).await {
                        Ok(stream) => TaskMsg::RtcConnected { peer_id, stream },
                        Err(e) => {
                            debug!(%peer_id, "WebRTC connection failed: {e}");
                            TaskMsg::RtcFailed { peer_id }
                        }
                    };
                    let _ = tx.send(msg).await;
                });
                self.rtc_connecting.insert(peer_id, h);
            }
            SignalEvent::AcceptOffer {
                peer_id,
                offer_id,
                sdp,
            } => {
                let info_hash = self.info_hash;
                if !self.wants_rtc_peer(peer_id) {
                    let _ = tracker.send(Cmd::AnswerFailed {
                        info_hash,
                        peer_id,
                        offer_id,
                    });
                    return;
                }
                let tx = self.tx.clone();
                let h = tokio::spawn(async move {
                    let pending = match rtc::answer_offer(&rtc_cfg, &sdp).await {
                        Ok((pending, answer)) => {
                            let _ = tracker.send(Cmd::AnswerCreated {
                                info_hash,
                                peer_id,
                                offer_id,
                                sdp: answer,
                            });
                            pending
                        }
                        Err(e) => {
                            debug!(%peer_id, "answering a WebRTC offer failed: {e}");
                            let _ = tracker.send(Cmd::AnswerFailed {
                                info_hash,
                                peer_id,
                                offer_id,
                            });
                            let _ = tx.send(TaskMsg::RtcFailed { peer_id }).await;
                            return;
                        }
                    };
                    let msg = match pending.wait_open().await {
                        Ok(stream) => TaskMsg::RtcConnected { peer_id, stream },
                        Err(e) => {
                            debug!(%peer_id, "WebRTC connection failed: {e}");
                            TaskMsg::RtcFailed { peer_id }
                        }
                    };
                    let _ = tx.send(msg).await;
                });
                self.rtc_connecting.insert(peer_id, h);
            }
            SignalEvent::DropAnswer { peer_id, offer_id } => {
                debug!(%peer_id, offer = %offer_id.to_hex(), "tracker dropped our answer");
                if let Some(h) = self.rtc_connecting.remove(&peer_id) {
                    h.abort();
                }
            }
            SignalEvent::Announced { job, result } => {
                let now = self.now();
                self.jobs.remove(&job);
                if let Err(e) = &result {
                    debug!(%url, "announce failed: {e}");
                }
                self.announcer.handle_reply(now, job, result);
            }
        }
    }

    fn on_output(&mut self, out: Output) {
        match out {
            Output::Connect(addr) => {
                debug!(%addr, "connecting");
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let msg = match tokio::time::timeout(
                        Duration::from_secs(10),
                        TcpStream::connect(addr),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => TaskMsg::Connected { addr, stream },
                        _ => TaskMsg::ConnectFailed { addr },
                    };
                    let _ = tx.send(msg).await;
                });
            }
            Output::Disconnect(key) => {
                self.rtc_keys.remove(&key);
                if let Some(c) = self.conns.remove(&key) {
                    tokio::spawn(c.close_gracefully());
                }
            }
            Output::ReadPiece {
                piece,
                offset,
                length,
            } => self.read_piece(piece, offset, length),
            Output::VerifyPiece {
                piece,
                data,
                expected,
            } => self.verify_piece(piece, data, expected),
            Output::Event(e) => self.on_core_event(e),
        }
    }

    /// Reads a whole piece for uploading on the disk threads (the core serves its blocks and
    /// keeps it for further requests), into a buffer the core's cache let go of if it has one.
    fn read_piece(&mut self, piece: PieceIndex, offset: u64, length: u32) {
        let Some(storage) = self.storage.clone() else {
            let now = self.now();
            self.core.piece_read(now, piece, None);
            return;
        };
        let tx = self.tx.clone();
        let spare = self.core.take_read_buffer();
        self.run_on_disk(move || {
            let data = match storage.read_reusing(offset, length as usize, spare) {
                Ok(d) => Some(d),
                Err(e) => {
                    warn!("reading piece {piece} for upload: {e}");
                    None
                }
            };
            let _ = tx.blocking_send(TaskMsg::PieceLoaded { piece, data });
        });
    }

    /// Runs `job` on the disk threads (or, if they cannot start, on the blocking pool).
    fn run_on_disk<F: FnOnce() + Send + 'static>(&mut self, job: F) {
        if self.disk.is_none() {
            match DiskThread::spawn() {
                Ok(d) => self.disk = Some(d),
                Err(e) => warn!("cannot start the disk thread: {e}"),
            }
        }
        let job = match &self.disk {
            Some(d) => match d.run(job) {
                Ok(()) => return,
                Err(job) => {
                    self.disk = None;
                    job
                }
            },
            None => Box::new(job),
        };
        tokio::task::spawn_blocking(job);
    }

    /// Hashes and stores a completed piece on the disk threads. When several pieces are
    /// already being checked, the work runs right here instead: the task then stops reading
    /// its channel, the connection readers block on it, and peers are slowed down rather than
    /// piling up pieces in memory.
    fn verify_piece(&mut self, piece: PieceIndex, data: Bytes, expected: [u8; 20]) {
        let (Some(storage), Some(meta)) = (self.storage.clone(), self.core.metainfo()) else {
            return;
        };
        let offset = meta.info.layout.piece_offset(piece);
        let work = move |data: &Bytes| {
            if sha1(data) != expected {
                PieceOutcome::HashMismatch
            } else if let Err(e) = storage.write(offset, data) {
                warn!("storing piece {piece} failed: {e}");
                PieceOutcome::StoreFailed
            } else {
                PieceOutcome::Stored
            }
        };
        if self.verify_in_flight.load(Ordering::Acquire) >= MAX_VERIFY_IN_FLIGHT {
            let multi = tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread;
            let outcome = if multi {
                tokio::task::block_in_place(|| work(&data))
            } else {
                work(&data)
            };
            self.handle(TaskMsg::PieceChecked {
                piece,
                outcome,
                data,
            });
            return;
        }
        let tx = self.tx.clone();
        let in_flight = self.verify_in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        self.run_on_disk(move || {
            let outcome = work(&data);
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.blocking_send(TaskMsg::PieceChecked {
                piece,
                outcome,
                data,
            });
        });
    }

    fn on_core_event(&mut self, e: TorrentEvent) {
        let now = self.now();
        match e {
            TorrentEvent::PeerConnected {
                peer,
                peer_id,
                addr,
            } => {
                debug!(?addr, %peer_id, "peer connected");
                let _ = self.events.send(Event::PeerConnected {
                    addr,
                    peer_id: peer_id.0,
                });
                let _ = peer;
            }
            TorrentEvent::PeerDisconnected { addr, reason, .. } => {
                debug!(?addr, "peer dropped: {reason}");
                let _ = self.events.send(Event::PeerDisconnected { addr, reason });
            }
            TorrentEvent::PeerBanned { addr, .. } => {
                warn!(?addr, "banned peer for sending corrupt data");
                let _ = self.events.send(Event::PeerBanned { addr });
            }
            TorrentEvent::MetadataReceived => {
                if let Some(meta) = self.core.metainfo().cloned() {
                    info!(name = %meta.info.name, "metadata received");
                    if let Some(admit) = &self.admit {
                        if let Err(reason) = admit.check(&meta) {
                            self.refuse(now, reason);
                            return;
                        }
                    }
                    let storage: Arc<dyn Storage> = match &self.folder {
                        Some(dir) => {
                            let fs = FileStorage::new(dir, Arc::new(meta.info.clone()));
                            if let Err(e) = fs.prepare() {
                                warn!("cannot prepare files: {e}");
                            }
                            Arc::new(fs)
                        }
                        None => Arc::new(MemoryStorage::new(meta.info.total_length() as usize)),
                    };
                    self.storage = Some(storage);
                    let _ = self.events.send(Event::Metadata);
                }
                self.update_status(true);
            }
            TorrentEvent::PieceVerified(p) => {
                let _ = self.events.send(Event::PieceVerified(p.get()));
            }
            TorrentEvent::HashFailed(p) => {
                warn!("piece {p} failed verification");
                let _ = self.events.send(Event::Warning(format!(
                    "piece {p} failed verification; fetching it again"
                )));
            }
            TorrentEvent::Done => {
                if let Some(s) = &self.storage {
                    if let Err(e) = s.flush() {
                        warn!("flushing storage: {e}");
                    }
                }
                info!(info_hash = %self.info_hash, "download complete, seeding");
                if !self.started_complete {
                    let stats = self.core.stats(now);
                    self.announcer
                        .update_stats(stats.uploaded, stats.downloaded, stats.left);
                    self.announcer.completed(now);
                }
                let _ = self.done.send(true);
                let _ = self.events.send(Event::Done);
                self.update_status(true);
            }
        }
    }

    /// Refuses the torrent (its metadata was not admitted): no storage is set up, every peer
    /// is dropped and `stopped` announced; the torrent stays until removed.
    fn refuse(&mut self, now: Time, reason: String) {
        info!(info_hash = %self.info_hash, "torrent refused: {reason}");
        self.refused = Some(reason.clone());
        if !self.paused {
            self.paused = true;
            self.announcer.pause(now);
            self.core.shutdown(now);
        }
        let _ = self.events.send(Event::Refused(reason));
        self.update_status(true);
    }

    fn update_status(&mut self, force: bool) {
        if !force && self.last_status.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_status = Instant::now();
        let now = self.now();
        let stats = self.core.stats(now);
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.downloaded = stats.downloaded;
        s.uploaded = stats.uploaded;
        s.verified = stats.verified;
        s.total = stats.total;
        s.download_speed = stats.download_rate;
        s.upload_speed = stats.upload_rate;
        s.peers = stats.peers;
        s.done = self.core.is_complete();
        s.paused = self.paused;
        s.sent_webrtc = self.sent_rtc;
        s.sent_tcp = self.sent_tcp;
        if s.refused.is_none() {
            s.refused = self.refused.clone();
        }
        if s.meta.is_none() {
            s.meta = self.core.metainfo().cloned();
        }
        s.storage = self.storage.clone();
    }
}
