//! One torrent's session: the [`Torrent`] state machine, its [`Announcer`] and its WebRTC
//! signaling routes behind one input type and one output type.
//!
//! A driver owns one [`TorrentSession`] per torrent and only moves things in and out:
//!
//! * bytes, connections and closures from peers, storage results, tracker replies and
//!   signaling messages go in with [`TorrentSession::handle_input`];
//! * what to do comes out of [`TorrentSession::poll_output`] (connect, read or verify a piece,
//!   open storage, announce, make a WebRTC offer, report an event);
//! * wire bytes for a peer come out of [`TorrentSession::poll_transmit_to`] whenever the
//!   connection has room ([`TorrentSession::pending_transmits`] lists who has some);
//! * [`TorrentSession::poll_timeout`] says when to feed [`Input::Timeout`].
//!
//! The session decides the rest once for every driver: pause and resume, `completed` when a
//! download finishes (not for a torrent that started complete), `stopped` on removal and how
//! long to wait for it, back-pressure while pieces wait to be hashed, what happens when a
//! magnet's metadata arrives (storage is opened, what is already there is counted), which
//! WebRTC offers to answer and which answers to apply.

mod endpoint;
mod io;
mod rtc;
mod webseeds;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::announce::{AnnounceJob, Announcer, AnnouncerEvent, JobId, Scheme};
use crate::id::{InfoHash, PeerKey};
use crate::metainfo::Metainfo;
use crate::peer::Direction;
use crate::piece::{Bitfield, PieceIndex};
use crate::signal::AnnounceParams;
use crate::time::Time;
use crate::torrent::{
    Output as TorrentOutput, PeerSource, SelectionError, Torrent, TorrentEvent, TorrentStats,
};

pub use endpoint::{Endpoint, Routed};
pub use rtc::{RtcAction, TorrentSignal};
use webseeds::WebSeeds;
pub use webseeds::{MAX_WEBSEEDS, WEBSEED_KEY_BASE};

pub use io::*;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Paused,
    Stopping { deadline: Time },
    Stopped,
}

/// One torrent's session. See the module docs.
#[derive(Debug)]
pub struct TorrentSession {
    settings: SessionSettings,
    info_hash: InfoHash,
    torrent: Torrent,
    announcer: Announcer,
    rtc: rtc::Routes,
    phase: Phase,
    refused: Option<String>,
    started_complete: bool,
    storage_ready: bool,
    storage_asked: bool,
    /// Announce jobs in flight.
    jobs: HashSet<JobId>,
    verifying: usize,
    verify_queue: VecDeque<(PieceIndex, u64, Bytes, [u8; 20])>,
    /// Pieces that failed to store since the last one that was stored.
    store_failures_in_row: u32,
    transports: HashMap<PeerKey, Transport>,
    webseeds: webseeds::WebSeeds,
    /// Stream readers' windows by reader id, and the user's priority range.
    readers: std::collections::BTreeMap<u64, Range<u64>>,
    user_priority: Option<Range<u64>>,
    sent_webrtc: u64,
    sent_tcp: u64,
    outputs: VecDeque<Output>,
    now: Time,
}

impl TorrentSession {
    /// A session for a torrent listed on `trackers` (tiers of URLs). `seed` feeds the random
    /// choices (peer picking, announce keys).
    pub fn new(
        settings: SessionSettings,
        start: Start,
        trackers: Vec<Vec<String>>,
        seed: u64,
        now: Time,
    ) -> Result<Self, SessionError> {
        let mut rng = crate::rng::Rng::new(seed);
        let (torrent, storage_ready) = match start {
            Start::Metainfo {
                meta,
                have,
                storage_ready,
            } => (
                Torrent::new(settings.torrent.clone(), meta, have, rng.next_u64(), now)
                    .map_err(|e| SessionError::Metainfo(e.to_string()))?,
                storage_ready,
            ),
            Start::InfoHash(ih) => (
                Torrent::from_info_hash(
                    settings.torrent.clone(),
                    ih,
                    trackers.clone(),
                    rng.next_u64(),
                    now,
                ),
                false,
            ),
        };
        let announce_to = if settings.trackers {
            trackers
        } else {
            Vec::new()
        };
        let announcer = Announcer::new(announce_to, settings.announce.clone(), rng.next_u64(), now);
        let started_complete = torrent.is_complete() && storage_ready;
        let mut routes = rtc::Routes::new(settings.torrent.session.peer_id);
        routes.set_timeout(settings.rtc_connect_timeout);
        let mut s = TorrentSession {
            info_hash: torrent.info_hash(),
            rtc: routes,
            settings,
            torrent,
            announcer,
            phase: Phase::Running,
            refused: None,
            started_complete,
            storage_ready,
            storage_asked: false,
            jobs: HashSet::new(),
            verifying: 0,
            verify_queue: VecDeque::new(),
            store_failures_in_row: 0,
            transports: HashMap::new(),
            webseeds: WebSeeds::default(),
            readers: Default::default(),
            user_priority: None,
            sent_webrtc: 0,
            sent_tcp: 0,
            outputs: VecDeque::new(),
            now,
        };
        let left = s.torrent.stats(now).left;
        s.announcer.start(now, left);
        if let Some(meta) = s.torrent.metainfo().cloned() {
            if storage_ready {
                s.outputs.push_back(Output::Event(Event::Ready));
                if s.torrent.is_finished() {
                    let complete = s.torrent.is_complete();
                    s.outputs.push_back(Output::Event(Event::Done { complete }));
                }
            } else {
                s.storage_asked = true;
                s.outputs.push_back(Output::OpenStorage(meta));
            }
        }
        s.update_hold(now);
        s.pump(now);
        Ok(s)
    }

    /// The info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The metainfo, once known.
    pub fn metainfo(&self) -> Option<&Arc<Metainfo>> {
        self.torrent.metainfo()
    }

    /// Verified pieces (once the metadata is known).
    pub fn have(&self) -> Option<&Bitfield> {
        self.torrent.have()
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.torrent.is_complete()
    }

    /// Whether every wanted piece is verified.
    pub fn is_finished(&self) -> bool {
        self.torrent.is_finished()
    }

    /// Whether storage is open (always true for a torrent started with its data).
    pub fn is_ready(&self) -> bool {
        self.storage_ready
    }

    /// Whether the session is paused (or refused).
    pub fn is_paused(&self) -> bool {
        self.phase == Phase::Paused
    }

    /// Whether [`Input::Stop`] was given.
    pub fn is_stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped)
    }

    /// Why the torrent was refused, if it was.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Transfer figures.
    pub fn stats(&mut self, now: Time) -> TorrentStats {
        self.torrent.stats(now)
    }

    /// Wire bytes handed out for WebRTC peers and for TCP peers.
    pub fn sent_by_transport(&self) -> (u64, u64) {
        (self.sent_webrtc, self.sent_tcp)
    }

    /// Peers with a completed handshake.
    pub fn num_peers(&self) -> usize {
        self.torrent.num_peers()
    }

    /// The announcer (tracker states, for display).
    pub fn announcer(&self) -> &Announcer {
        &self.announcer
    }

    /// Tracker URLs whose scheme the driver cannot reach (skipped).
    pub fn unsupported_trackers(&self) -> Vec<String> {
        self.announcer
            .unsupported_trackers()
            .map(str::to_string)
            .collect()
    }

    /// Which files are downloaded: one entry per file as users see them (padding files
    /// left out, in the metainfo's order).
    pub fn set_files_wanted(&mut self, now: Time, wanted: &[bool]) -> Result<(), SelectionError> {
        self.now = now;
        let meta = self.torrent.metainfo().ok_or(SelectionError::NoMetadata)?;
        let files = &meta.info.files;
        let visible = files.iter().filter(|f| !f.padding).count();
        if wanted.len() != visible {
            return Err(SelectionError::WrongLength {
                expected: visible,
                got: wanted.len(),
            });
        }
        let mut it = wanted.iter();
        let all: Vec<bool> = files
            .iter()
            .map(|f| !f.padding && it.next().copied().unwrap_or(false))
            .collect();
        self.torrent.set_files_wanted(now, &all)?;
        self.pump(now);
        Ok(())
    }

    /// Piece ranges fetched whatever the file selection (end exclusive; webtorrent's
    /// `torrent.select(start, end)`); an empty list leaves only the file selection.
    pub fn set_piece_ranges_wanted(
        &mut self,
        now: Time,
        ranges: &[Range<u32>],
    ) -> Result<(), SelectionError> {
        self.now = now;
        self.torrent.set_piece_ranges_wanted(now, ranges)?;
        self.pump(now);
        Ok(())
    }

    /// The current file selection, one entry per file users see (`None` before the
    /// metadata).
    pub fn files_wanted(&self) -> Option<Vec<bool>> {
        let meta = self.torrent.metainfo()?;
        let all = self.torrent.files_wanted()?;
        Some(
            meta.info
                .files
                .iter()
                .zip(all)
                .filter(|(f, _)| !f.padding)
                .map(|(_, w)| w)
                .collect(),
        )
    }

    /// Fetches the pieces covering this byte range first (after stream readers' windows);
    /// `None` clears it.
    pub fn set_priority_range(
        &mut self,
        now: Time,
        range: Option<Range<u64>>,
    ) -> Result<(), SelectionError> {
        self.now = now;
        self.check_range(range.as_ref())?;
        let previous = std::mem::replace(&mut self.user_priority, range);
        let res = self.apply_priorities(now);
        if res.is_err() {
            self.user_priority = previous;
        }
        res
    }

    /// Moves stream reader `reader`'s window (bytes of the torrent it reads next; `None`
    /// when the reader is gone). Readers' pieces come before everything else: first the next
    /// two pieces of every reader (so that each keeps playing), then their whole windows,
    /// then [`set_priority_range`](Self::set_priority_range)'s range. A window in a
    /// deselected file selects that file. A reader that jumps to pieces nobody fetches has
    /// the requests for other pieces withdrawn, so its first bytes do not wait behind them.
    pub fn set_reader_window(
        &mut self,
        now: Time,
        reader: u64,
        window: Option<Range<u64>>,
    ) -> Result<(), SelectionError> {
        self.now = now;
        self.check_range(window.as_ref())?;
        match window {
            Some(w) => {
                self.select_file_at(now, w.start);
                self.readers.insert(reader, w);
            }
            None => {
                self.readers.remove(&reader);
            }
        }
        self.apply_priorities(now)
    }

    /// Stream readers with a window.
    pub fn num_readers(&self) -> usize {
        self.readers.len()
    }

    fn check_range(&self, range: Option<&Range<u64>>) -> Result<(), SelectionError> {
        let meta = self.torrent.metainfo().ok_or(SelectionError::NoMetadata)?;
        match range {
            Some(r) if r.start > r.end || r.end > meta.info.total_length() => {
                Err(SelectionError::OutOfRange)
            }
            _ => Ok(()),
        }
    }

    /// Selects the file holding byte `offset` if it is deselected.
    fn select_file_at(&mut self, now: Time, offset: u64) {
        let (Some(meta), Some(mut wanted)) = (self.torrent.metainfo(), self.files_wanted()) else {
            return;
        };
        let visible = meta
            .info
            .files
            .iter()
            .filter(|f| !f.padding)
            .position(|f| f.offset <= offset && offset < f.offset + f.length);
        if let Some(i) = visible {
            if wanted.get(i) == Some(&false) {
                wanted[i] = true;
                let _ = self.set_files_wanted(now, &wanted);
            }
        }
    }

    /// The picker's priority ranges from the readers' windows and the user's range.
    fn apply_priorities(&mut self, now: Time) -> Result<(), SelectionError> {
        let piece = self
            .torrent
            .metainfo()
            .map_or(0, |m| u64::from(m.info.layout.piece_length()));
        let mut ranges: Vec<Range<u64>> = self
            .readers
            .values()
            .map(|w| w.start..w.end.min(w.start.saturating_add(2 * piece)))
            .collect();
        ranges.extend(self.readers.values().cloned());
        ranges.extend(self.user_priority.clone());
        self.torrent.set_priority_ranges(now, &ranges)?;
        self.pump(now);
        Ok(())
    }

    /// Whether piece `index` is verified and stored (`false` before the metadata or out of
    /// range).
    pub fn has_piece(&self, index: u32) -> bool {
        self.torrent.have().is_some_and(|b| b.get_raw(index))
    }

    /// When to feed [`Input::Timeout`] next.
    pub fn poll_timeout(&self) -> Time {
        let mut next = self.torrent.poll_timeout();
        if let Some(t) = self.announcer.poll_timeout() {
            next = next.min(t);
        }
        if let Some(t) = self.rtc.poll_timeout() {
            next = next.min(t);
        }
        if let Phase::Stopping { deadline } = self.phase {
            next = next.min(deadline);
        }
        if self.webseeds_wanted() {
            if let Some(t) = self.webseeds.next_timeout() {
                next = next.min(t);
            }
        }
        next
    }

    /// A download with no peer at all (none connected, none being set up) asks its trackers
    /// again as soon as their `min interval` allows instead of waiting out the whole interval:
    /// over WebSocket trackers an announce is the only way to send new offers, so one failed
    /// first connection would otherwise leave a page alone for the tracker's interval
    /// (10 minutes on a default bittorrent-tracker).
    fn want_peers_when_alone(&mut self, now: Time) {
        if self.phase == Phase::Running
            && !self.torrent.is_finished()
            && self.torrent.num_peers() == 0
            && self.rtc.num_connecting() == 0
        {
            self.announcer.want_peers(now);
        }
    }

    /// Whether web seeds should be connected: running, storage open, pieces missing.
    fn webseeds_wanted(&self) -> bool {
        self.phase == Phase::Running && self.storage_ready && !self.torrent.is_finished()
    }

    /// Adds a web seed (BEP 19 `http://` or `https://` URL), used once the metadata is known
    /// while pieces are missing. False when it is known already or [`MAX_WEBSEEDS`] are.
    pub fn add_web_seed(&mut self, now: Time, url: &str) -> bool {
        self.now = now;
        let added = self.webseeds.add(url, now);
        self.pump(now);
        added
    }

    /// Web seeds in use, waiting for a retry, and given up.
    pub fn webseed_counts(&self) -> (usize, usize, usize) {
        self.webseeds.counts()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            let now = self.now;
            self.pump(now);
        }
        self.outputs.pop_front()
    }

    /// Peers with wire bytes waiting.
    pub fn pending_transmits(&self) -> Vec<PeerKey> {
        let mut keys = self.torrent.pending_transmits();
        keys.retain(|k| !WebSeeds::is_webseed(*k));
        keys
    }

    /// The next chunk of wire bytes for one peer (call while its connection has room).
    pub fn poll_transmit_to(&mut self, key: PeerKey) -> Option<Bytes> {
        if WebSeeds::is_webseed(key) {
            // The session's own: its adapter reads them.
            return None;
        }
        let b = self.torrent.poll_transmit_to(key)?;
        match self.transports.get(&key) {
            Some(Transport::WebRtc { .. }) => self.sent_webrtc += b.len() as u64,
            _ => self.sent_tcp += b.len() as u64,
        }
        Some(b)
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Time, input: Input) {
        self.now = now;
        if self.phase == Phase::Stopped {
            return;
        }
        match input {
            Input::Timeout => {
                self.torrent.handle_timeout(now);
                for action in self.rtc.handle_timeout(now) {
                    self.outputs.push_back(Output::Rtc(action));
                }
                self.want_peers_when_alone(now);
                self.announcer.handle_timeout(now);
                if let Phase::Stopping { deadline } = self.phase {
                    if now >= deadline {
                        self.finish_stop();
                    }
                }
            }
            Input::PeerConnected {
                key,
                addr,
                direction,
                transport,
            } => self.peer_connected(now, key, addr, direction, transport),
            Input::PeerData { key, data } => self.torrent.peer_data_owned(now, key, data),
            Input::PeerClosed { key } => {
                self.transports.remove(&key);
                self.torrent.peer_closed(now, key);
            }
            Input::ConnectFailed { addr } => self.torrent.connect_failed(now, addr),
            Input::Fetched { key, id, result } => {
                if let Some(f) = self.webseeds.fetched(now, key, id, result) {
                    self.torrent.peer_closed(now, key);
                    self.push_webseed_failure(f);
                }
            }
            Input::PieceRead { piece, data } => self.torrent.piece_read(now, piece, data),
            Input::PieceChecked {
                piece,
                outcome,
                data,
            } => {
                self.verifying = self.verifying.saturating_sub(1);
                match outcome {
                    CheckOutcome::Stored => {
                        self.store_failures_in_row = 0;
                        self.torrent.piece_checked(now, piece, true)
                    }
                    CheckOutcome::HashMismatch => self.torrent.piece_checked(now, piece, false),
                    CheckOutcome::StoreFailed => {
                        self.torrent.piece_store_failed(now, piece);
                        // After a refusal, pieces still being stored fail quietly.
                        if self.refused.is_none() {
                            self.outputs
                                .push_back(Output::Event(Event::StoreFailed(piece)));
                            self.store_failures_in_row += 1;
                            if self.store_failures_in_row >= MAX_STORE_FAILURES_IN_ROW {
                                self.refuse(
                                    now,
                                    format!(
                                        "storing the downloaded pieces failed {} times in a row (is the disk full?); \
                                         the download stopped and keeps the pieces stored so far: free some space, then start it again",
                                        self.store_failures_in_row
                                    ),
                                );
                            }
                        }
                    }
                }
                self.torrent.recycle(data);
            }
            Input::StorageReady { have } => self.storage_ready(now, have),
            Input::Refuse(reason) => self.refuse(now, reason),
            Input::Announced { job, result, peers } => {
                self.jobs.remove(&job);
                if result.is_ok() && !peers.is_empty() && self.phase == Phase::Running {
                    self.torrent.add_candidates(now, peers, PeerSource::Tracker);
                }
                self.announcer.handle_reply(now, job, result);
            }
            Input::Signal { url, signal } => {
                let wanted = self.phase == Phase::Running;
                let room = self.rtc_room();
                let actions = self
                    .rtc
                    .handle_signal(now, url, signal, wanted, room, &self.torrent);
                self.outputs.extend(actions.into_iter().map(Output::Rtc));
            }
            Input::RtcFailed { peer_id } => self.rtc.connect_ended(peer_id),
            Input::AddPeers(addrs) => {
                if self.phase == Phase::Running {
                    self.torrent.add_candidates(now, addrs, PeerSource::Manual);
                }
            }
            Input::Reannounce => self.announcer.reannounce(now),
            Input::Pause => self.pause(now),
            Input::Resume => {
                if self.phase == Phase::Paused && self.refused.is_none() {
                    self.phase = Phase::Running;
                    self.announcer.resume(now);
                }
            }
            Input::Stop => self.stop(now),
        }
        self.pump(now);
    }

    /// How many more WebRTC connections fit under the peer limit.
    fn rtc_room(&self) -> usize {
        self.settings
            .torrent
            .max_peers
            .saturating_sub(self.torrent.num_peers())
    }

    fn peer_connected(
        &mut self,
        now: Time,
        key: PeerKey,
        addr: Option<SocketAddr>,
        direction: Direction,
        transport: Transport,
    ) {
        if let Transport::WebRtc { peer_id } = transport {
            self.rtc.connect_ended(peer_id);
        }
        if self.phase != Phase::Running {
            self.outputs.push_back(Output::Disconnect(key));
            return;
        }
        match self.torrent.add_peer(now, key, addr, direction) {
            Ok(()) => {
                self.transports.insert(key, transport);
            }
            Err(e) => {
                self.outputs.push_back(Output::Disconnect(key));
                self.outputs
                    .push_back(Output::Event(Event::PeerDisconnected {
                        key,
                        addr,
                        reason: format!("refused: {e}"),
                    }));
            }
        }
    }

    fn storage_ready(&mut self, now: Time, have: Option<Bitfield>) {
        if self.storage_ready || self.torrent.metainfo().is_none() {
            return;
        }
        self.storage_ready = true;
        if let Some(have) = have {
            // A bitfield of the wrong length is the driver's bug; the pieces are then fetched.
            let _ = self.torrent.pieces_on_disk(now, &have);
        }
        self.outputs.push_back(Output::Event(Event::Ready));
    }

    fn pause(&mut self, now: Time) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Paused;
        self.announcer.pause(now);
        self.torrent.shutdown(now);
        self.transports.clear();
        for action in self.rtc.abort_all() {
            self.outputs.push_back(Output::Rtc(action));
        }
    }

    fn refuse(&mut self, now: Time, reason: String) {
        if self.refused.is_some() {
            return;
        }
        self.refused = Some(reason.clone());
        self.pause(now);
        self.outputs
            .push_back(Output::Event(Event::Refused(reason)));
    }

    fn stop(&mut self, now: Time) {
        if self.is_stopping() {
            return;
        }
        let stats = self.torrent.stats(now);
        self.announcer
            .update_stats(stats.uploaded, stats.downloaded, stats.left);
        self.announcer.stop(now);
        self.torrent.shutdown(now);
        self.transports.clear();
        for action in self.rtc.abort_all() {
            self.outputs.push_back(Output::Rtc(action));
        }
        let deadline = now + self.settings.announce.stop_timeout;
        self.phase = Phase::Stopping { deadline };
    }

    fn finish_stop(&mut self) {
        if self.phase == Phase::Stopped {
            return;
        }
        self.phase = Phase::Stopped;
        for url in self.rtc.leave_all() {
            self.outputs
                .push_back(Output::Rtc(RtcAction::Leave { url }));
        }
        self.verify_queue.clear();
        self.outputs.push_back(Output::Stopped);
    }

    /// Holds block requests while storage is missing or too many pieces wait for hashing.
    fn update_hold(&mut self, now: Time) {
        let hold = self.torrent.metainfo().is_some()
            && (!self.storage_ready || self.verify_queue.len() >= self.settings.max_verify_backlog);
        if hold != self.torrent.requests_held() {
            self.torrent.hold_requests(now, hold);
        }
    }

    /// Moves the state machines' outputs to the session's queue.
    fn pump(&mut self, now: Time) {
        if self.phase == Phase::Stopped {
            return;
        }
        for _ in 0..16 {
            let mut progressed = false;
            while let Some(out) = self.torrent.poll_output() {
                progressed = true;
                self.on_torrent_output(now, out);
            }
            while self.storage_ready && self.verifying < self.settings.max_verifying.max(1) {
                let Some((piece, offset, data, expected)) = self.verify_queue.pop_front() else {
                    break;
                };
                self.verifying += 1;
                self.outputs.push_back(Output::VerifyPiece {
                    piece,
                    offset,
                    data,
                    expected,
                });
            }
            if let Some(meta) = self.torrent.metainfo() {
                self.webseeds.init(meta, now);
            }
            let wanted = self.webseeds_wanted();
            let meta = self.torrent.metainfo().cloned();
            let (mut fetches, mut failures) = (Vec::new(), Vec::new());
            progressed |= self.webseeds.pump(
                now,
                wanted,
                meta.as_ref(),
                &mut self.torrent,
                &mut fetches,
                &mut failures,
            );
            for (key, fetch) in fetches {
                self.outputs.push_back(Output::Fetch { key, fetch });
            }
            for f in failures {
                self.push_webseed_failure(f);
            }
            self.update_hold(now);
            let stats = self.torrent.stats(now);
            self.announcer
                .update_stats(stats.uploaded, stats.downloaded, stats.left);
            while let Some(job) = self.announcer.poll_job(now) {
                progressed = true;
                self.on_job(job);
            }
            while let Some(ev) = self.announcer.poll_event() {
                self.on_announcer_event(ev);
            }
            if !progressed {
                break;
            }
        }
        if let Phase::Stopping { .. } = self.phase {
            if self.jobs.is_empty() {
                self.finish_stop();
            }
        }
    }

    fn push_webseed_failure(&mut self, f: webseeds::Failure) {
        self.outputs.push_back(Output::Event(Event::WebSeedFailed {
            url: f.url,
            reason: f.reason,
            retry: f.retry,
        }));
    }

    fn on_job(&mut self, job: AnnounceJob) {
        self.jobs.insert(job.id);
        if matches!(Scheme::of(&job.url), Some(Scheme::Ws | Scheme::Wss)) {
            let url: Arc<str> = Arc::from(job.url.as_str());
            self.rtc.joined(url.clone());
            let params = AnnounceParams::from_job(self.info_hash, &job);
            self.outputs
                .push_back(Output::Rtc(RtcAction::Announce { url, params }));
        } else {
            self.outputs.push_back(Output::Announce(job));
        }
    }

    fn tracker_url(&self, id: crate::announce::TrackerId) -> String {
        self.announcer
            .tracker(id)
            .map(|t| t.url.to_string())
            .unwrap_or_default()
    }

    fn on_announcer_event(&mut self, ev: AnnouncerEvent) {
        let event = match ev {
            AnnouncerEvent::Reply {
                tracker,
                event,
                interval,
                seeders,
                leechers,
                peers,
                ..
            } => Event::TrackerReply {
                url: self.tracker_url(tracker),
                event,
                interval,
                seeders,
                leechers,
                peers,
            },
            AnnouncerEvent::Warning { tracker, message } => Event::TrackerWarning {
                url: self.tracker_url(tracker),
                message,
            },
            AnnouncerEvent::Failed { tracker, error, .. } => Event::TrackerError {
                url: self.tracker_url(tracker),
                error,
            },
            AnnouncerEvent::Promoted { .. } => return,
            AnnouncerEvent::StopFinished => {
                self.jobs.clear();
                return;
            }
        };
        self.outputs.push_back(Output::Event(event));
    }

    fn on_torrent_output(&mut self, now: Time, out: TorrentOutput) {
        let out = match out {
            TorrentOutput::Connect(addr) => Output::Connect(addr),
            TorrentOutput::Disconnect(key) => {
                self.transports.remove(&key);
                if WebSeeds::is_webseed(key) {
                    let failure = self.webseeds_wanted();
                    if let Some(f) = self.webseeds.disconnected(now, key, failure) {
                        self.push_webseed_failure(f);
                    }
                    return;
                }
                Output::Disconnect(key)
            }
            TorrentOutput::ReadPiece {
                piece,
                offset,
                length,
            } => Output::ReadPiece {
                piece,
                offset,
                length,
                buffer: self.torrent.take_read_buffer(),
            },
            TorrentOutput::VerifyPiece {
                piece,
                data,
                expected,
            } => {
                let offset = self
                    .torrent
                    .metainfo()
                    .map(|m| m.info.layout.piece_offset(piece))
                    .unwrap_or(0);
                self.verify_queue.push_back((piece, offset, data, expected));
                return;
            }
            TorrentOutput::Event(e) => match self.on_torrent_event(now, e) {
                Some(e) => Output::Event(e),
                None => return,
            },
        };
        self.outputs.push_back(out);
    }

    fn on_torrent_event(&mut self, now: Time, e: TorrentEvent) -> Option<Event> {
        Some(match e {
            TorrentEvent::PeerConnected {
                peer,
                peer_id,
                addr,
            } => Event::PeerConnected {
                key: peer,
                peer_id,
                addr,
                transport: if WebSeeds::is_webseed(peer) {
                    Transport::WebSeed
                } else {
                    self.transports
                        .get(&peer)
                        .copied()
                        .unwrap_or(Transport::Tcp)
                },
            },
            TorrentEvent::PeerDisconnected { peer, addr, reason } => {
                self.transports.remove(&peer);
                Event::PeerDisconnected {
                    key: peer,
                    addr,
                    reason,
                }
            }
            TorrentEvent::PeerBanned { addr, peer } => {
                self.webseeds.banned(peer);
                Event::PeerBanned { addr }
            }
            TorrentEvent::MetadataReceived => {
                if let Some(meta) = self.torrent.metainfo().cloned() {
                    if !self.storage_ready && !self.storage_asked {
                        self.storage_asked = true;
                        self.outputs.push_back(Output::Event(Event::Metadata));
                        self.outputs.push_back(Output::OpenStorage(meta));
                        self.update_hold(now);
                        return None;
                    }
                }
                Event::Metadata
            }
            TorrentEvent::MetadataFailed { sources } => Event::MetadataFailed { sources },
            TorrentEvent::PieceVerified(p) => Event::PieceVerified(p),
            TorrentEvent::HashFailed(p) => Event::HashFailed(p),
            TorrentEvent::DhtNode(a) => Event::DhtNode(a),
            TorrentEvent::Done => {
                let complete = self.torrent.is_complete();
                if complete && !self.started_complete && !self.is_stopping() {
                    let stats = self.torrent.stats(now);
                    self.announcer
                        .update_stats(stats.uploaded, stats.downloaded, stats.left);
                    self.announcer.completed(now);
                }
                Event::Done { complete }
            }
        })
    }
}

/// Why a session could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The metainfo and the `have` bitfield do not fit together.
    #[error("the torrent's pieces do not match: {0}")]
    Metainfo(String),
}
