//! The swarm state machine of one torrent.
//!
//! A [`Torrent`] owns a [`PeerSession`] per connection, the piece picker, piece assembly, the
//! choker, peer discovery bookkeeping (tracker and PEX candidates, bans) and metadata fetching
//! for magnet links. Drivers move bytes in and out, keep time and do storage:
//!
//! * inputs: [`Torrent::add_peer`], [`Torrent::peer_data`], [`Torrent::peer_closed`],
//!   [`Torrent::add_candidates`], [`Torrent::connect_failed`], [`Torrent::block_read`],
//!   [`Torrent::piece_checked`], [`Torrent::handle_timeout`];
//! * outputs: [`Torrent::poll_output`] (connect, disconnect, read a block, verify and store a
//!   piece, events) and [`Torrent::poll_transmit`] (bytes for a peer);
//! * [`Torrent::poll_timeout`] says when to call [`Torrent::handle_timeout`].
//!
//! The same machine drives TCP, WebRTC and simulated peers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use crate::ext::{serve_metadata_piece, MetadataAssembler, MetadataMessage, PexFlags, PexMessage};
use crate::id::{InfoHash, PeerId, PeerKey};
use crate::metainfo::Metainfo;
use crate::peer::{Direction, PeerSession, SessionConfig, SessionEvent};
use crate::picker::{PeerView, Picker, PickerConfig, PickerError};
use crate::piece::{Bitfield, Block, PieceIndex};
use crate::rng::Rng;
use crate::time::Time;
use crate::wire::BlockRequest;

/// Settings of a torrent's swarm behaviour.
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    /// Per-connection protocol settings (info hash and peer id are filled in by the torrent).
    pub session: SessionConfig,
    /// Most connected peers.
    pub max_peers: usize,
    /// Most outgoing connection attempts at once.
    pub max_connecting: usize,
    /// Most remembered candidate addresses.
    pub max_candidates: usize,
    /// Peers unchoked at once (one of them optimistic while downloading).
    pub unchoke_slots: usize,
    /// How often the choker runs.
    pub choke_interval: Duration,
    /// How often the optimistic unchoke rotates.
    pub optimistic_interval: Duration,
    /// How often PEX messages are sent.
    pub pex_interval: Duration,
    /// Bytes of block reads in flight or queued for one peer before further reads wait.
    pub max_upload_queue: usize,
    /// Bytes of whole pieces kept after [`Output::ReadPiece`] to serve further blocks from
    /// (at least two pieces are kept whatever this says).
    pub upload_cache_bytes: usize,
    /// Most [`Output::ReadPiece`] reads outstanding at once; requests for other pieces wait.
    pub max_piece_reads: usize,
    /// Hash failures a peer may contribute to before it is banned.
    pub max_strikes: u32,
    /// An outgoing connection attempt that has not resolved after this long is abandoned.
    pub connect_timeout: Duration,
    /// Close connections to other seeds once we are a seed.
    pub disconnect_seeds_when_done: bool,
    /// Piece picker tuning.
    pub picker: PickerConfig,
}

impl TorrentConfig {
    /// Defaults for our peer id.
    pub fn new(peer_id: PeerId) -> Self {
        TorrentConfig {
            session: SessionConfig::new(InfoHash::default(), peer_id),
            max_peers: 50,
            max_connecting: 8,
            max_candidates: 2000,
            unchoke_slots: 4,
            choke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            pex_interval: Duration::from_secs(60),
            max_upload_queue: 2 * 1024 * 1024,
            upload_cache_bytes: 8 * 1024 * 1024,
            max_piece_reads: 8,
            max_strikes: 8,
            connect_timeout: Duration::from_secs(30),
            disconnect_seeds_when_done: true,
            picker: PickerConfig::default(),
        }
    }
}

/// What a driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a connection to this address, then call [`Torrent::add_peer`] or
    /// [`Torrent::connect_failed`].
    Connect(SocketAddr),
    /// Close this connection; the torrent has already forgotten it.
    Disconnect(PeerKey),
    /// Read this whole piece from storage and pass it to [`Torrent::piece_read`]. The blocks
    /// peers asked for are served from it, and it is kept for their next requests (one
    /// storage read per piece, not per block).
    ReadPiece {
        /// The piece.
        piece: PieceIndex,
        /// Where it starts in the torrent's data.
        offset: u64,
        /// Its length.
        length: u32,
    },
    /// All blocks of a piece arrived: check its SHA-1 against `expected`, store it if it
    /// matches, then call [`Torrent::piece_checked`].
    VerifyPiece {
        /// The piece.
        piece: PieceIndex,
        /// Its bytes, starting at a [`PIECE_BUF_ALIGN`] boundary.
        data: Bytes,
        /// The hash from the torrent.
        expected: [u8; 20],
    },
    /// Something happened.
    Event(TorrentEvent),
}

/// Things a user interface or log wants to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentEvent {
    /// A handshake completed.
    PeerConnected {
        /// The connection.
        peer: PeerKey,
        /// The peer's id.
        peer_id: PeerId,
        /// Its transport address, if any.
        addr: Option<SocketAddr>,
    },
    /// A connection ended.
    PeerDisconnected {
        /// The connection.
        peer: PeerKey,
        /// Its transport address, if any.
        addr: Option<SocketAddr>,
        /// Why.
        reason: String,
    },
    /// A peer was banned for sending bad data.
    PeerBanned {
        /// The connection.
        peer: PeerKey,
        /// Its address, if any.
        addr: Option<SocketAddr>,
    },
    /// The info dictionary arrived from peers (magnet link) and checked out.
    MetadataReceived,
    /// A piece was verified and stored.
    PieceVerified(PieceIndex),
    /// A piece failed its hash check; it will be fetched again.
    HashFailed(PieceIndex),
    /// Every piece is verified.
    Done,
}

/// Why [`Torrent::add_peer`] refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddPeerError {
    /// The address is banned.
    #[error("peer is banned")]
    Banned,
    /// Already at the connection limit.
    #[error("too many peers")]
    Full,
    /// The key is already in use.
    #[error("duplicate peer key")]
    DuplicateKey,
}

/// Where a candidate address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSource {
    /// A tracker reply.
    Tracker,
    /// Peer exchange.
    Pex,
    /// A magnet link's `x.pe` or the user.
    Manual,
}

/// Transfer figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TorrentStats {
    /// Payload bytes received from peers (including discarded ones).
    pub downloaded: u64,
    /// Payload bytes sent to peers.
    pub uploaded: u64,
    /// Bytes still missing (`None` before the metadata is known).
    pub left: Option<u64>,
    /// Bytes verified.
    pub verified: u64,
    /// Total size (`None` before the metadata is known).
    pub total: Option<u64>,
    /// Connected peers with a completed handshake.
    pub peers: usize,
    /// Receive rate, bytes per second.
    pub download_rate: u64,
    /// Send rate, bytes per second.
    pub upload_rate: u64,
}

#[derive(Debug, Clone)]
enum Has {
    Unknown,
    /// A bitfield received before we knew the piece count.
    Raw(Bytes),
    Some(Bitfield),
    All,
}

#[derive(Debug)]
struct Peer {
    session: PeerSession,
    addr: Option<SocketAddr>,
    listen_addr: Option<SocketAddr>,
    has: Has,
    /// `have` messages received before the metadata.
    early_haves: Vec<u32>,
    allowed_fast: Vec<PieceIndex>,
    /// Pieces we told this peer it may request while choked (BEP 6).
    fast_for_peer: Vec<u32>,
    /// Accepted requests waiting for a read.
    upload_queue: VecDeque<BlockRequest>,
    /// Reads issued to the driver and not answered.
    reads_in_flight: Vec<BlockRequest>,
    metadata_pending: Vec<(u32, Time)>,
    metadata_size: Option<u32>,
    pex_sent: HashSet<SocketAddr>,
    last_unchoked: Time,
    optimistic: bool,
    connected_at: Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandidateState {
    Idle,
    Connecting(Time),
    Connected,
    RetryAt(Time),
}

#[derive(Debug, Clone)]
struct Candidate {
    state: CandidateState,
    failures: u32,
}

/// Who sent blocks of a piece: connection, address and peer id (kept after disconnects so a
/// bad piece can still be pinned on its senders).
type Contributors = Vec<(PeerKey, Option<SocketAddr>, Option<PeerId>)>;

#[derive(Debug)]
struct Assembly {
    buf: BytesMut,
    contributors: Contributors,
    /// Index into `contributors` of each block's sender.
    block_from: Vec<u16>,
}

/// A piece in verification: who sent which block, and the bytes (kept so that, if the hash
/// fails, each sender's blocks can be fingerprinted).
#[derive(Debug)]
struct Verifying {
    contributors: Contributors,
    block_from: Vec<u16>,
    data: Bytes,
}

/// Fingerprints of the blocks of a piece that failed: `(begin, sha1 of the block, sender)`.
/// When the piece later verifies, senders whose block differs from the good one lied.
type Suspects = Vec<(u32, [u8; 20], (PeerKey, Option<SocketAddr>, Option<PeerId>))>;

/// Most failed pieces remembered for smart banning.
const MAX_SUSPECT_PIECES: usize = 64;

#[derive(Debug)]
struct Content {
    meta: Arc<Metainfo>,
    picker: Picker,
    assembling: HashMap<PieceIndex, Assembly>,
    verifying: HashMap<PieceIndex, Verifying>,
    suspects: HashMap<PieceIndex, Suspects>,
}

/// The state machine of one torrent. See the module docs.
#[derive(Debug)]
pub struct Torrent {
    config: TorrentConfig,
    info_hash: InfoHash,
    content: Option<Content>,
    metadata: Option<MetadataAssembler>,
    trackers_hint: Vec<Vec<String>>,
    peers: HashMap<PeerKey, Peer>,
    candidates: HashMap<SocketAddr, Candidate>,
    candidate_queue: VecDeque<SocketAddr>,
    banned_ips: HashSet<IpAddr>,
    /// Banned exact addresses (used for loopback, where every peer shares one IP).
    banned_addrs: HashSet<SocketAddr>,
    banned_ids: HashSet<PeerId>,
    strikes: HashMap<IpAddr, u32>,
    outputs: VecDeque<Output>,
    dirty: VecDeque<PeerKey>,
    rng: Rng,
    next_tick: Time,
    next_choke: Time,
    next_optimistic: Time,
    next_pex: Time,
    stats: TorrentStats,
    download: crate::peer::RateMeter,
    upload: crate::peer::RateMeter,
    done_announced: bool,
    pick_buf: Vec<Block>,
    /// Piece buffers handed back by the driver, reused to avoid allocation churn.
    spare_bufs: Vec<BytesMut>,
    /// Whole pieces read for uploading, least recently used first.
    upload_cache: VecDeque<(PieceIndex, Bytes)>,
    /// Buffers of pieces evicted from `upload_cache`, for the driver's next reads.
    spare_reads: Vec<BytesMut>,
    /// Pieces asked for with [`Output::ReadPiece`] and not yet read.
    reading: HashSet<PieceIndex>,
    /// The latest time given to any call (for work done where no time is passed in).
    now: Time,
}

/// Most spare piece buffers kept.
const MAX_SPARE_BUFS: usize = 16;

/// Most buffers of evicted upload-cache pieces kept for the driver's reads.
const MAX_SPARE_READS: usize = 4;

/// Alignment of the piece buffers handed out with [`Output::VerifyPiece`]: a page, so that
/// drivers can write whole pieces with direct I/O (`O_DIRECT`) straight from them.
pub const PIECE_BUF_ALIGN: usize = 4096;

/// A zeroed buffer of `len` bytes starting at a [`PIECE_BUF_ALIGN`] boundary.
fn aligned_piece_buf(len: usize) -> BytesMut {
    let mut b = BytesMut::zeroed(len + PIECE_BUF_ALIGN - 1);
    let skip = b
        .as_ptr()
        .align_offset(PIECE_BUF_ALIGN)
        .min(PIECE_BUF_ALIGN - 1);
    b.advance(skip);
    b.truncate(len);
    b
}

impl Torrent {
    fn base(config: TorrentConfig, info_hash: InfoHash, seed: u64, now: Time) -> Self {
        let mut config = config;
        config.session.info_hash = info_hash;
        Torrent {
            config,
            info_hash,
            content: None,
            metadata: None,
            trackers_hint: Vec::new(),
            peers: HashMap::new(),
            candidates: HashMap::new(),
            candidate_queue: VecDeque::new(),
            banned_ips: HashSet::new(),
            banned_addrs: HashSet::new(),
            banned_ids: HashSet::new(),
            strikes: HashMap::new(),
            outputs: VecDeque::new(),
            dirty: VecDeque::new(),
            rng: Rng::new(seed),
            next_tick: now,
            next_choke: now,
            next_optimistic: now,
            next_pex: now + Duration::from_secs(5),
            stats: TorrentStats::default(),
            download: crate::peer::RateMeter::new(),
            upload: crate::peer::RateMeter::new(),
            done_announced: false,
            pick_buf: Vec::new(),
            spare_bufs: Vec::new(),
            upload_cache: VecDeque::new(),
            spare_reads: Vec::new(),
            reading: HashSet::new(),
            now,
        }
    }

    /// A torrent whose metainfo we have. `have` lists pieces already verified in storage and
    /// must cover exactly the torrent's pieces.
    pub fn new(
        config: TorrentConfig,
        meta: Arc<Metainfo>,
        have: Bitfield,
        seed: u64,
        now: Time,
    ) -> Result<Self, PickerError> {
        let mut t = Self::base(config, meta.info_hash, seed, now);
        if meta.info.private {
            t.config.session.pex = false;
        }
        t.set_content(meta, have, now)?;
        Ok(t)
    }

    /// A torrent known only by its info hash (magnet link): metadata is fetched from peers.
    pub fn from_info_hash(
        config: TorrentConfig,
        info_hash: InfoHash,
        trackers: Vec<Vec<String>>,
        seed: u64,
        now: Time,
    ) -> Self {
        let mut t = Self::base(config, info_hash, seed, now);
        t.trackers_hint = trackers;
        t
    }

    fn set_content(
        &mut self,
        meta: Arc<Metainfo>,
        have: Bitfield,
        now: Time,
    ) -> Result<(), PickerError> {
        let layout = meta.info.layout;
        let picker = Picker::new(layout, have, self.config.picker, self.rng.next_u64())?;
        self.stats.total = Some(layout.total_length());
        self.content = Some(Content {
            meta,
            picker,
            assembling: HashMap::new(),
            verifying: HashMap::new(),
            suspects: HashMap::new(),
        });
        self.update_left();
        if self.is_complete() {
            self.done_announced = true;
        }
        // Peers that told us their pieces before we knew the piece count.
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.resolve_availability(now, k);
        }
        Ok(())
    }

    fn update_left(&mut self) {
        if let Some(c) = &self.content {
            let missing = c.picker.missing_bytes();
            self.stats.left = Some(missing);
            self.stats.verified = c.meta.info.total_length() - missing;
        }
    }

    /// The info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The metainfo, once known.
    pub fn metainfo(&self) -> Option<&Arc<Metainfo>> {
        self.content.as_ref().map(|c| &c.meta)
    }

    /// Pieces we have, once the metainfo is known.
    pub fn have(&self) -> Option<&Bitfield> {
        self.content.as_ref().map(|c| c.picker.have())
    }

    /// True when every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.content
            .as_ref()
            .is_some_and(|c| c.picker.is_complete())
    }

    /// Current figures.
    pub fn stats(&mut self, now: Time) -> TorrentStats {
        let mut s = self.stats;
        s.peers = self
            .peers
            .values()
            .filter(|p| p.session.is_active())
            .count();
        s.download_rate = self.download.rate(now);
        s.upload_rate = self.upload.rate(now);
        s
    }

    /// Number of connections (including ones still handshaking).
    pub fn num_peers(&self) -> usize {
        self.peers.len()
    }

    /// Whether a connection with this peer id has completed its handshake (so a second
    /// transport, e.g. WebRTC beside TCP, need not connect to it again).
    pub fn has_peer_id(&self, peer_id: PeerId) -> bool {
        self.peers
            .values()
            .any(|p| p.session.peer_id() == Some(peer_id))
    }

    /// Keys of the live connections.
    pub fn peer_keys(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.peers.keys().copied()
    }

    /// Whether an address is banned.
    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.banned_ips.contains(&addr.ip()) || self.banned_addrs.contains(&addr)
    }

    /// Adds addresses to try (from a tracker, PEX or the user). Bounded; banned and known
    /// addresses are skipped.
    pub fn add_candidates(
        &mut self,
        now: Time,
        addrs: impl IntoIterator<Item = SocketAddr>,
        _source: PeerSource,
    ) {
        for a in addrs {
            if self.candidates.len() >= self.config.max_candidates {
                break;
            }
            if a.port() == 0 || self.is_banned(a) || self.candidates.contains_key(&a) {
                continue;
            }
            if Some(a.port()) == self.config.session.listen_port
                && (a.ip().is_loopback() || a.ip().is_unspecified())
            {
                // Our own listener, as trackers echo us back; the handshake check would
                // catch it, this saves a dial.
                continue;
            }
            self.candidates.insert(
                a,
                Candidate {
                    state: CandidateState::Idle,
                    failures: 0,
                },
            );
            self.candidate_queue.push_back(a);
        }
        self.connect_more(now);
    }

    /// An outgoing connection attempt failed.
    pub fn connect_failed(&mut self, now: Time, addr: SocketAddr) {
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.failures += 1;
            if c.failures >= 5 {
                self.candidates.remove(&addr);
            } else {
                let backoff = Duration::from_secs(15 << c.failures.min(6));
                c.state = CandidateState::RetryAt(now + backoff);
                self.candidate_queue.push_back(addr);
            }
        }
        self.connect_more(now);
    }

    fn connect_more(&mut self, now: Time) {
        let connecting = self
            .candidates
            .values()
            .filter(|c| matches!(c.state, CandidateState::Connecting(_)))
            .count();
        let mut budget = self.config.max_connecting.saturating_sub(connecting).min(
            self.config
                .max_peers
                .saturating_sub(self.peers.len() + connecting),
        );
        if self.is_complete() && self.content.is_some() {
            // Seeds wait for leechers to come to them, but still dial a few.
            budget = budget.min(2);
        }
        let mut tries = self.candidate_queue.len();
        while budget > 0 && tries > 0 {
            tries -= 1;
            let Some(a) = self.candidate_queue.pop_front() else {
                break;
            };
            let Some(c) = self.candidates.get_mut(&a) else {
                continue;
            };
            match c.state {
                CandidateState::Idle => {}
                CandidateState::RetryAt(t) if t <= now => {}
                CandidateState::RetryAt(_) => {
                    self.candidate_queue.push_back(a);
                    continue;
                }
                _ => continue,
            }
            c.state = CandidateState::Connecting(now);
            self.outputs.push_back(Output::Connect(a));
            budget -= 1;
        }
    }

    /// A connection is ready (outgoing connected, or incoming accepted). For incoming TCP
    /// connections the driver may read the first 48 bytes to pick the torrent, then pass all
    /// bytes, those included, to [`peer_data`](Self::peer_data).
    pub fn add_peer(
        &mut self,
        now: Time,
        key: PeerKey,
        addr: Option<SocketAddr>,
        direction: Direction,
    ) -> Result<(), AddPeerError> {
        if self.peers.contains_key(&key) {
            return Err(AddPeerError::DuplicateKey);
        }
        if let Some(a) = addr {
            if self.is_banned(a) {
                self.candidates.remove(&a);
                return Err(AddPeerError::Banned);
            }
            if let Some(c) = self.candidates.get_mut(&a) {
                c.state = CandidateState::Connected;
            }
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(AddPeerError::Full);
        }
        let session = PeerSession::new(self.config.session.clone(), direction, now);
        let listen_addr = match direction {
            Direction::Outgoing => addr,
            Direction::Incoming => None,
        };
        self.peers.insert(
            key,
            Peer {
                session,
                addr,
                listen_addr,
                has: Has::Unknown,
                early_haves: Vec::new(),
                allowed_fast: Vec::new(),
                fast_for_peer: Vec::new(),
                upload_queue: VecDeque::new(),
                reads_in_flight: Vec::new(),
                metadata_pending: Vec::new(),
                metadata_size: None,
                pex_sent: HashSet::new(),
                last_unchoked: Time::ZERO,
                optimistic: false,
                connected_at: now,
            },
        );
        self.mark_dirty(key);
        Ok(())
    }

    fn mark_dirty(&mut self, key: PeerKey) {
        if !self.dirty.contains(&key) {
            self.dirty.push_back(key);
        }
    }

    /// Bytes arrived from a peer.
    pub fn peer_data(&mut self, now: Time, key: PeerKey, data: &[u8]) {
        self.feed_peer(now, key, |s| s.receive(now, data));
    }

    /// Bytes arrived from a peer, owned: like [`peer_data`](Self::peer_data) without copying
    /// them into the decoder (drivers that read into a `BytesMut` and `split()` it).
    pub fn peer_data_owned(&mut self, now: Time, key: PeerKey, data: BytesMut) {
        self.feed_peer(now, key, |s| s.receive_owned(now, data));
    }

    /// Hands received bytes to the peer's session with `feed`, then acts on what it decoded.
    fn feed_peer(
        &mut self,
        now: Time,
        key: PeerKey,
        feed: impl FnOnce(&mut PeerSession) -> Result<(), crate::peer::SessionError>,
    ) {
        self.now = self.now.max(now);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if let Err(e) = feed(&mut peer.session) {
            self.drop_peer(now, key, e.to_string());
            return;
        }
        self.process_events(now, key);
        self.fill_requests(now, key);
        self.mark_dirty(key);
    }

    /// The connection closed (by the peer or the network).
    pub fn peer_closed(&mut self, now: Time, key: PeerKey) {
        if self.peers.contains_key(&key) {
            self.remove_peer(now, key, "connection closed".to_string(), false);
        }
    }

    fn drop_peer(&mut self, now: Time, key: PeerKey, reason: String) {
        self.remove_peer(now, key, reason, true);
    }

    fn remove_peer(&mut self, now: Time, key: PeerKey, reason: String, tell_driver: bool) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        peer.session.close();
        if let Some(c) = &mut self.content {
            c.picker.peer_disconnected(key);
            match &peer.has {
                Has::Some(b) => c.picker.peer_gone(b),
                Has::All => c.picker.seed_gone(),
                _ => {}
            }
        }
        if let Some(a) = peer.addr {
            if let Some(c) = self.candidates.get_mut(&a) {
                c.state = CandidateState::RetryAt(now + Duration::from_secs(60));
                self.candidate_queue.push_back(a);
            }
        }
        self.dirty.retain(|k| *k != key);
        if tell_driver {
            self.outputs.push_back(Output::Disconnect(key));
        }
        self.outputs
            .push_back(Output::Event(TorrentEvent::PeerDisconnected {
                peer: key,
                addr: peer.addr,
                reason,
            }));
        // Blocks it owed go to others.
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill_requests(now, k);
        }
        self.connect_more(now);
    }

    fn process_events(&mut self, now: Time, key: PeerKey) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(ev) = peer.session.poll_event() else {
                return;
            };
            if let Err(reason) = self.on_event(now, key, ev) {
                self.drop_peer(now, key, reason);
                return;
            }
        }
    }

    fn num_pieces(&self) -> Option<u32> {
        self.content.as_ref().map(|c| c.meta.info.num_pieces())
    }

    fn on_event(&mut self, now: Time, key: PeerKey, ev: SessionEvent) -> Result<(), String> {
        match ev {
            SessionEvent::Handshake { peer_id } => {
                if peer_id == self.config.session.peer_id {
                    if let Some(a) = self.peers.get(&key).and_then(|p| p.addr) {
                        self.candidates.remove(&a);
                    }
                    return Err("connected to ourselves".into());
                }
                if self.banned_ids.contains(&peer_id) {
                    return Err("banned peer id".into());
                }
                let dup = self
                    .peers
                    .iter()
                    .find(|(k, p)| **k != key && p.session.peer_id() == Some(peer_id))
                    .map(|(k, p)| (*k, p.session.direction()));
                if let Some((other, other_dir)) = dup {
                    // Both sides dialled each other. Keep the connection opened by the peer
                    // with the lower id; both ends reach the same verdict.
                    let ours = self.config.session.peer_id;
                    let opener = |d: Direction| {
                        if d == Direction::Outgoing {
                            ours
                        } else {
                            peer_id
                        }
                    };
                    let this_dir = self.peers.get(&key).ok_or("gone")?.session.direction();
                    if opener(this_dir) < opener(other_dir) {
                        self.drop_peer(now, other, "duplicate connection to the same peer".into());
                    } else {
                        return Err("duplicate connection to the same peer".into());
                    }
                }
                let metadata_size = self
                    .content
                    .as_ref()
                    .map(|c| c.meta.info_bytes.len() as u32);
                let have = self.content.as_ref().map(|c| c.picker.have().clone());
                let info_hash = self.info_hash;
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                let yourip = peer.addr.map(|a| a.ip());
                peer.session
                    .send_extended_handshake(now, metadata_size, yourip);
                peer.session.send_availability(now, have.as_ref());
                // BEP 6: the canonical allowed-fast set, of the pieces we have.
                let fast_ip = peer.addr.and_then(|a| crate::fast::fast_set_ip(a.ip()));
                if let (Some(ip), Some(have), true) = (fast_ip, &have, peer.session.supports_fast())
                {
                    let set = crate::fast::allowed_fast_set(
                        ip,
                        &info_hash,
                        have.len(),
                        crate::fast::ALLOWED_FAST_COUNT,
                    );
                    for i in set {
                        if have.get_raw(i) {
                            peer.session.send_allowed_fast(now, i);
                            peer.fast_for_peer.push(i);
                        }
                    }
                }
                let addr = peer.addr;
                self.outputs
                    .push_back(Output::Event(TorrentEvent::PeerConnected {
                        peer: key,
                        peer_id,
                        addr,
                    }));
            }
            SessionEvent::ExtendedHandshake(h) => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                if let (Some(p), Some(a)) = (h.p, peer.addr) {
                    if peer.session.direction() == Direction::Incoming {
                        peer.listen_addr = Some(SocketAddr::new(a.ip(), p));
                    }
                }
                peer.metadata_size = h.metadata_size;
                if self.content.is_none() {
                    self.request_metadata(now, key);
                }
            }
            SessionEvent::Bitfield(raw) => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                peer.has = Has::Raw(raw);
                self.resolve_availability(now, key);
            }
            SessionEvent::HaveAll => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                peer.has = Has::All;
                if let Some(c) = &mut self.content {
                    c.picker.seed_added();
                }
                self.peer_has_changed(now, key)?;
            }
            SessionEvent::HaveNone => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                peer.has = Has::Raw(Bytes::new());
                self.resolve_availability(now, key);
            }
            SessionEvent::Have(i) => self.on_have(now, key, i)?,
            SessionEvent::Choked { dropped } => {
                if let Some(c) = &mut self.content {
                    for r in dropped {
                        if let Ok(b) = c.meta.info.layout.check_block(r.index, r.begin, r.length) {
                            c.picker.request_failed(key, b);
                        }
                    }
                }
            }
            SessionEvent::Unchoked => {}
            SessionEvent::Interested => {
                // Fill a free slot at once rather than waiting for the next choker round.
                let unchoked = self
                    .peers
                    .values()
                    .filter(|p| !p.session.am_choking())
                    .count();
                if unchoked < self.config.unchoke_slots {
                    let peer = self.peers.get_mut(&key).ok_or("gone")?;
                    peer.session.unchoke(now);
                    peer.last_unchoked = now;
                }
            }
            SessionEvent::NotInterested => {}
            SessionEvent::Request(r) => self.on_request(now, key, r),
            SessionEvent::Cancel(r) => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                if let Some(i) = peer.upload_queue.iter().position(|x| *x == r) {
                    peer.upload_queue.remove(i);
                    peer.session.drop_peer_request();
                } else if let Some(i) = peer.reads_in_flight.iter().position(|x| *x == r) {
                    // The read is under way; its result will be dropped.
                    peer.reads_in_flight.remove(i);
                    peer.session.drop_peer_request();
                }
            }
            SessionEvent::Block {
                request,
                data,
                requested,
            } => self.on_block(now, key, request, data, requested)?,
            SessionEvent::Rejected(r) => {
                if let Some(c) = &mut self.content {
                    if let Ok(b) = c.meta.info.layout.check_block(r.index, r.begin, r.length) {
                        c.picker.request_failed(key, b);
                    }
                }
            }
            SessionEvent::TimedOut(rs) => {
                if let Some(c) = &mut self.content {
                    for r in rs {
                        if let Ok(b) = c.meta.info.layout.check_block(r.index, r.begin, r.length) {
                            c.picker.request_failed(key, b);
                        }
                    }
                }
            }
            SessionEvent::AllowedFast(i) => {
                if let Some(c) = &self.content {
                    if let Ok(p) = c.meta.info.layout.piece(i) {
                        let peer = self.peers.get_mut(&key).ok_or("gone")?;
                        if peer.allowed_fast.len() < 64 && !peer.allowed_fast.contains(&p) {
                            peer.allowed_fast.push(p);
                        }
                    }
                }
            }
            SessionEvent::Suggest(_) => {}
            SessionEvent::Metadata(m) => self.on_metadata(now, key, m)?,
            SessionEvent::Pex(m) => {
                if self.config.session.pex {
                    let addrs: Vec<SocketAddr> = m.added.iter().map(|(a, _)| *a).collect();
                    self.add_candidates(now, addrs, PeerSource::Pex);
                }
            }
        }
        Ok(())
    }

    fn resolve_availability(&mut self, now: Time, key: PeerKey) {
        let Some(n) = self.num_pieces() else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Has::Raw(raw) = &peer.has else {
            return;
        };
        let parsed = if raw.is_empty() {
            Ok(Bitfield::new(n))
        } else {
            Bitfield::from_bytes(raw, n)
        };
        let mut bits = match parsed {
            Ok(b) => b,
            Err(e) => {
                self.drop_peer(now, key, format!("bad bitfield: {e}"));
                return;
            }
        };
        let Some(c) = &mut self.content else {
            return;
        };
        for i in std::mem::take(&mut peer.early_haves) {
            if let Ok(p) = c.meta.info.layout.piece(i) {
                bits.set(p);
            }
        }
        if bits.is_full() && n > 0 {
            c.picker.seed_added();
            peer.has = Has::All;
        } else {
            c.picker.peer_bitfield(&bits);
            peer.has = Has::Some(bits);
        }
        if let Err(e) = self.peer_has_changed(now, key) {
            self.drop_peer(now, key, e);
        }
    }

    fn on_have(&mut self, now: Time, key: PeerKey, i: u32) -> Result<(), String> {
        let peer = self.peers.get_mut(&key).ok_or("gone")?;
        let Some(c) = &mut self.content else {
            if peer.early_haves.len() < 100_000 {
                peer.early_haves.push(i);
            }
            if matches!(peer.has, Has::Unknown) {
                peer.has = Has::Raw(Bytes::new());
            }
            return Ok(());
        };
        let p = c
            .meta
            .info
            .layout
            .piece(i)
            .map_err(|e| format!("bad have: {e}"))?;
        match &mut peer.has {
            Has::All => return Ok(()),
            Has::Some(b) => {
                if b.set(p) {
                    c.picker.peer_have(p);
                    if b.is_full() {
                        c.picker.peer_gone(b);
                        c.picker.seed_added();
                        peer.has = Has::All;
                    }
                }
            }
            Has::Unknown | Has::Raw(_) => {
                let mut b = Bitfield::new(c.meta.info.num_pieces());
                b.set(p);
                c.picker.peer_bitfield(&b);
                peer.has = Has::Some(b);
            }
        }
        self.peer_has_changed(now, key)
    }

    /// After the peer's pieces changed: update our interest, drop seed-to-seed links.
    fn peer_has_changed(&mut self, now: Time, key: PeerKey) -> Result<(), String> {
        let complete = self.is_complete();
        let Some(c) = &self.content else {
            return Ok(());
        };
        let peer = self.peers.get_mut(&key).ok_or("gone")?;
        if complete {
            if matches!(peer.has, Has::All) && self.config.disconnect_seeds_when_done {
                return Err("both sides are seeds".into());
            }
            peer.session.set_interested(now, false);
            return Ok(());
        }
        let interesting = match &peer.has {
            Has::All => true,
            Has::Some(b) => c.picker.interesting(&view_of(b, peer)),
            _ => false,
        };
        peer.session.set_interested(now, interesting);
        self.mark_dirty(key);
        Ok(())
    }

    fn on_request(&mut self, now: Time, key: PeerKey, r: BlockRequest) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let valid = self.content.as_ref().and_then(|c| {
            let b = c
                .meta
                .info
                .layout
                .check_request(r.index, r.begin, r.length)
                .ok()?;
            c.picker.have().get(b.piece).then_some(b)
        });
        let allowed = !peer.session.am_choking() || peer.fast_for_peer.contains(&r.index);
        match valid {
            Some(_) if allowed => {
                peer.upload_queue.push_back(r);
                self.pump_reads(key);
            }
            _ => peer.session.reject(now, r),
        }
    }

    /// Serves queued requests while the peer's send queue has room: from the upload cache,
    /// or by asking for the piece to be read.
    fn pump_reads(&mut self, key: PeerKey) {
        let now = self.now;
        let Some(c) = &self.content else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let layout = &c.meta.info.layout;
        let mut served = false;
        while let Some(r) = peer.upload_queue.front().copied() {
            let in_flight = peer.reads_in_flight.len() * crate::piece::BLOCK_SIZE as usize;
            if in_flight + peer.session.queued_bytes() >= self.config.max_upload_queue {
                break;
            }
            let Ok(block) = layout.check_request(r.index, r.begin, r.length) else {
                peer.upload_queue.pop_front();
                continue;
            };
            if let Some(i) = self
                .upload_cache
                .iter()
                .position(|(p, _)| *p == block.piece)
            {
                peer.upload_queue.pop_front();
                // Most recently used last.
                if let Some(entry) = self.upload_cache.remove(i) {
                    let data = block_of(&entry.1, r);
                    self.upload_cache.push_back(entry);
                    serve_block(peer, &mut self.stats, &mut self.upload, now, r, data);
                    served = true;
                }
                continue;
            }
            if !self.reading.contains(&block.piece) {
                if self.reading.len() >= self.config.max_piece_reads.max(1) {
                    // Waits for a read to finish (piece_read pumps every peer again).
                    break;
                }
                self.reading.insert(block.piece);
                self.outputs.push_back(Output::ReadPiece {
                    piece: block.piece,
                    offset: layout.piece_offset(block.piece),
                    length: layout.piece_len(block.piece),
                });
            }
            peer.upload_queue.pop_front();
            peer.reads_in_flight.push(r);
        }
        if served {
            self.mark_dirty(key);
        }
    }

    /// A piece asked for with [`Output::ReadPiece`] was read. `None` (or bytes of the wrong
    /// length) means storage failed: the requests waiting for it are rejected. Drivers that
    /// read ahead may also pass pieces not asked for: verified ones go into the cache.
    pub fn piece_read(&mut self, now: Time, piece: PieceIndex, data: Option<Bytes>) {
        self.now = self.now.max(now);
        let now = self.now;
        self.reading.remove(&piece);
        let Some(c) = &self.content else {
            return;
        };
        let piece_len = c.meta.info.layout.piece_len(piece) as usize;
        let data = data.filter(|d| d.len() == piece_len && c.picker.have().get(piece));
        if let Some(d) = &data {
            let budget = self
                .config
                .upload_cache_bytes
                .max(2 * c.meta.info.piece_length() as usize);
            self.upload_cache.retain(|(p, _)| *p != piece);
            let mut cached: usize = self.upload_cache.iter().map(|(_, b)| b.len()).sum();
            while cached + d.len() > budget {
                match self.upload_cache.pop_front() {
                    Some((_, old)) => {
                        cached -= old.len();
                        // Usually every block sent from it is gone by now: reuse it.
                        if self.spare_reads.len() < MAX_SPARE_READS {
                            if let Ok(b) = old.try_into_mut() {
                                self.spare_reads.push(b);
                            }
                        }
                    }
                    None => break,
                }
            }
            self.upload_cache.push_back((piece, d.clone()));
        }
        let keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.reads_in_flight.is_empty() || !p.upload_queue.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            let mut served = false;
            let mut i = 0;
            while i < peer.reads_in_flight.len() {
                let r = peer.reads_in_flight[i];
                if r.index != piece.get() {
                    i += 1;
                    continue;
                }
                peer.reads_in_flight.swap_remove(i);
                let block = data.as_ref().and_then(|d| block_of(d, r));
                serve_block(peer, &mut self.stats, &mut self.upload, now, r, block);
                served = true;
            }
            if served {
                self.mark_dirty(key);
            }
            self.pump_reads(key);
        }
    }

    fn on_block(
        &mut self,
        now: Time,
        key: PeerKey,
        r: BlockRequest,
        data: Bytes,
        _requested: bool,
    ) -> Result<(), String> {
        self.stats.downloaded += data.len() as u64;
        self.download.add(now, data.len() as u64);
        let Some(c) = &mut self.content else {
            return Err("piece data before metadata".into());
        };
        let Ok(block) = c.meta.info.layout.check_block(r.index, r.begin, r.length) else {
            return Err("block does not fit the torrent's layout".into());
        };
        let received = c.picker.block_received(key, block);
        for other in received.cancel {
            if let Some(p) = self.peers.get_mut(&other) {
                p.session.cancel(now, r);
                if !self.dirty.contains(&other) {
                    self.dirty.push_back(other);
                }
            }
        }
        if !received.new {
            return Ok(());
        }
        let (addr, pid) = self
            .peers
            .get(&key)
            .map(|p| (p.addr, p.session.peer_id()))
            .unwrap_or((None, None));
        let piece_len = c.meta.info.layout.piece_len(block.piece) as usize;
        let num_blocks = c.meta.info.layout.num_blocks(block.piece) as usize;
        let spare = &mut self.spare_bufs;
        let asm = c.assembling.entry(block.piece).or_insert_with(|| {
            let buf = match spare.pop() {
                Some(mut b) => {
                    // No need to zero it: the piece's blocks tile it completely and the
                    // piece is only verified once every block has been copied in.
                    if b.len() >= piece_len {
                        b.truncate(piece_len);
                    } else {
                        b.resize(piece_len, 0);
                    }
                    b
                }
                None => aligned_piece_buf(piece_len),
            };
            Assembly {
                buf,
                contributors: Vec::new(),
                block_from: vec![u16::MAX; num_blocks],
            }
        });
        let start = block.begin as usize;
        asm.buf[start..start + data.len()].copy_from_slice(&data);
        let idx = match asm.contributors.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                asm.contributors.push((key, addr, pid));
                asm.contributors.len() - 1
            }
        };
        if let Some(slot) = asm
            .block_from
            .get_mut((block.begin / crate::piece::BLOCK_SIZE) as usize)
        {
            *slot = u16::try_from(idx).unwrap_or(u16::MAX);
        }
        if received.piece_complete {
            if let Some(asm) = c.assembling.remove(&block.piece) {
                let expected = c.meta.info.piece_hash(block.piece);
                let data = asm.buf.freeze();
                c.verifying.insert(
                    block.piece,
                    Verifying {
                        contributors: asm.contributors,
                        block_from: asm.block_from,
                        data: data.clone(),
                    },
                );
                self.outputs.push_back(Output::VerifyPiece {
                    piece: block.piece,
                    data,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// The driver checked (and, if valid, stored) a piece.
    pub fn piece_checked(&mut self, now: Time, piece: PieceIndex, valid: bool) {
        let Some(c) = &mut self.content else {
            return;
        };
        let Some(v) = c.verifying.remove(&piece) else {
            return;
        };
        if valid {
            // Smart ban: if this piece failed before, whoever sent a block that differs from
            // the good one lied.
            if let Some(suspects) = c.suspects.remove(&piece) {
                let mut liars = Vec::new();
                for (begin, hash, who) in suspects {
                    let start = begin as usize;
                    let end = (start + crate::piece::BLOCK_SIZE as usize).min(v.data.len());
                    if start < end && crate::piece::sha1(&v.data[start..end]) != hash {
                        liars.push(who);
                    }
                }
                liars.dedup_by_key(|w| w.0);
                for (key, addr, pid) in liars {
                    self.ban(now, key, addr, pid);
                }
            }
            let Some(c) = &mut self.content else {
                return;
            };
            c.picker.piece_verified(piece);
            self.update_left();
            self.outputs
                .push_back(Output::Event(TorrentEvent::PieceVerified(piece)));
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in &keys {
                if let Some(p) = self.peers.get_mut(k) {
                    if p.session.is_active() {
                        p.session.send_have(now, piece.get());
                    }
                }
                self.mark_dirty(*k);
            }
            if self.is_complete() && !self.done_announced {
                self.done_announced = true;
                self.outputs.push_back(Output::Event(TorrentEvent::Done));
            }
            for k in keys {
                if let Err(e) = self.peer_has_changed(now, k) {
                    self.drop_peer(now, k, e);
                }
            }
            return;
        }
        c.picker.piece_failed(piece);
        self.outputs
            .push_back(Output::Event(TorrentEvent::HashFailed(piece)));
        let contributors = v.contributors;
        if contributors.len() == 1 {
            // Everything came from one peer: it sent bad data.
            if let Some((key, addr, pid)) = contributors.into_iter().next() {
                self.ban(now, key, addr, pid);
            }
        } else {
            // Several senders: remember each block's fingerprint; the good copy will tell
            // who lied. Peers in many failures are banned anyway.
            let mut suspects = Suspects::new();
            for (i, from) in v.block_from.iter().enumerate() {
                let Some(who) = contributors.get(usize::from(*from)) else {
                    continue;
                };
                let start = i * crate::piece::BLOCK_SIZE as usize;
                let end = (start + crate::piece::BLOCK_SIZE as usize).min(v.data.len());
                if start < end {
                    suspects.push((start as u32, crate::piece::sha1(&v.data[start..end]), *who));
                }
            }
            if c.suspects.len() >= MAX_SUSPECT_PIECES {
                if let Some(old) = c.suspects.keys().next().copied() {
                    c.suspects.remove(&old);
                }
            }
            c.suspects.insert(piece, suspects);
            for (key, addr, pid) in contributors {
                let strikes = match addr {
                    Some(a) => {
                        let s = self.strikes.entry(a.ip()).or_insert(0);
                        *s += 1;
                        *s
                    }
                    None => 1,
                };
                if strikes >= self.config.max_strikes {
                    self.ban(now, key, addr, pid);
                }
            }
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill_requests(now, k);
        }
    }

    fn ban(&mut self, now: Time, key: PeerKey, addr: Option<SocketAddr>, pid: Option<PeerId>) {
        let already = pid.is_some_and(|id| self.banned_ids.contains(&id))
            || addr.is_some_and(|a| self.is_banned(a));
        if already {
            if self.peers.contains_key(&key) {
                self.drop_peer(now, key, "banned".into());
            }
            return;
        }
        // Ban the IP, except on loopback where all local peers share it: there, the exact
        // address (and below, the peer id) identify the culprit.
        let listen = self.peers.get(&key).and_then(|p| p.listen_addr);
        for a in addr.iter().chain(listen.iter()) {
            if a.ip().is_loopback() {
                self.banned_addrs.insert(*a);
                self.candidates.remove(a);
            } else {
                self.banned_ips.insert(a.ip());
                let ip = a.ip();
                self.candidates.retain(|c, _| c.ip() != ip);
            }
        }
        if let Some(id) = pid {
            self.banned_ids.insert(id);
        }
        self.outputs
            .push_back(Output::Event(TorrentEvent::PeerBanned { peer: key, addr }));
        if self.peers.contains_key(&key) {
            self.drop_peer(now, key, "sent data that failed verification".into());
        }
    }

    /// Requests as many blocks from the peer as its queue depth allows.
    fn fill_requests(&mut self, now: Time, key: PeerKey) {
        let Some(c) = &mut self.content else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.session.is_active() || !peer.session.am_interested() {
            return;
        }
        let slots = peer.session.request_slots(now);
        if slots == 0 {
            return;
        }
        let choked = peer.session.peer_choking();
        if choked && (peer.allowed_fast.is_empty() || !peer.session.supports_fast()) {
            return;
        }
        let view = match &peer.has {
            Has::All => PeerView::seed(),
            Has::Some(b) => PeerView::bitfield(b),
            _ => return,
        }
        .choked(choked)
        .allowed_fast(&peer.allowed_fast);
        self.pick_buf.clear();
        c.picker.pick(key, view, slots, &mut self.pick_buf);
        for b in self.pick_buf.drain(..) {
            peer.session
                .request(now, BlockRequest::new(b.piece.get(), b.begin, b.length));
        }
        if !self.dirty.contains(&key) {
            self.dirty.push_back(key);
        }
    }

    fn request_metadata(&mut self, now: Time, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(size) = peer.metadata_size else {
            return;
        };
        if !peer.session.peer_supports(crate::ext::UT_METADATA) {
            return;
        }
        if self.metadata.is_none() {
            match MetadataAssembler::new(self.info_hash, size) {
                Ok(a) => self.metadata = Some(a),
                Err(_) => return,
            }
        }
        let Some(asm) = &self.metadata else {
            return;
        };
        if asm.size() != size {
            return;
        }
        peer.metadata_pending
            .retain(|(_, t)| now.saturating_since(*t) < Duration::from_secs(10));
        let pending_elsewhere: HashSet<u32> = HashSet::new();
        let missing: Vec<u32> = asm
            .missing_pieces()
            .filter(|p| !pending_elsewhere.contains(p))
            .collect();
        // Spread the first requests: start at a random missing piece.
        let offset = if missing.is_empty() {
            0
        } else {
            self.rng.below(missing.len() as u64) as usize
        };
        for i in 0..missing.len() {
            if peer.metadata_pending.len() >= 4 {
                break;
            }
            let p = missing[(i + offset) % missing.len()];
            if peer.metadata_pending.iter().any(|(x, _)| *x == p) {
                continue;
            }
            if peer
                .session
                .send_metadata(now, &MetadataMessage::Request { piece: p })
            {
                peer.metadata_pending.push((p, now));
            }
        }
        if !self.dirty.contains(&key) {
            self.dirty.push_back(key);
        }
    }

    fn on_metadata(&mut self, now: Time, key: PeerKey, m: MetadataMessage) -> Result<(), String> {
        match m {
            MetadataMessage::Request { piece } => {
                let reply = match &self.content {
                    Some(c) => serve_metadata_piece(&c.meta.info_bytes, piece),
                    _ => MetadataMessage::Reject { piece },
                };
                if let Some(p) = self.peers.get_mut(&key) {
                    p.session.send_metadata(now, &reply);
                }
            }
            MetadataMessage::Reject { piece } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.metadata_pending.retain(|(x, _)| *x != piece);
                    p.metadata_size = None;
                }
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.metadata_pending.retain(|(x, _)| *x != piece);
                }
                if self.content.is_some() {
                    return Ok(());
                }
                let Some(asm) = &mut self.metadata else {
                    return Ok(());
                };
                match asm.add_piece(piece, total_size, &data) {
                    Ok(Some(info)) => {
                        let trackers = std::mem::take(&mut self.trackers_hint);
                        match Metainfo::from_info_bytes(info, self.info_hash, trackers) {
                            Ok(meta) => {
                                self.metadata = None;
                                if meta.info.private {
                                    self.config.session.pex = false;
                                }
                                let n = meta.info.num_pieces();
                                self.set_content(Arc::new(meta), Bitfield::new(n), now)
                                    .map_err(|e| e.to_string())?;
                                self.outputs
                                    .push_back(Output::Event(TorrentEvent::MetadataReceived));
                                let size = self
                                    .content
                                    .as_ref()
                                    .map(|c| c.meta.info_bytes.len() as u32);
                                let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                                for k in keys {
                                    // BEP 10 lets a handshake be sent again: peers that met us
                                    // before we had the metadata learn they can fetch it from
                                    // us now (a bridge between two magnet-only swarms).
                                    if let Some(p) = self.peers.get_mut(&k) {
                                        if p.session.is_active() {
                                            let yourip = p.addr.map(|a| a.ip());
                                            p.session.send_extended_handshake(now, size, yourip);
                                        }
                                    }
                                    let _ = self.peer_has_changed(now, k);
                                    self.fill_requests(now, k);
                                }
                            }
                            Err(e) => {
                                if let Some(a) = &mut self.metadata {
                                    a.reset();
                                }
                                return Err(format!("metadata unusable: {e}"));
                            }
                        }
                    }
                    Ok(None) => self.request_metadata(now, key),
                    Err(e) => return Err(format!("bad metadata: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Runs periodic work: session timers, choking, PEX, connection attempts.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + Duration::from_secs(1);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in &keys {
            let Some(p) = self.peers.get_mut(k) else {
                continue;
            };
            if let Err(e) = p.session.handle_timeout(now) {
                self.drop_peer(now, *k, e.to_string());
                continue;
            }
            self.process_events(now, *k);
            if self.content.is_none() {
                self.request_metadata(now, *k);
            }
            self.fill_requests(now, *k);
            self.mark_dirty(*k);
        }
        // Outgoing attempts that never resolved.
        let timeout = self.config.connect_timeout;
        let stale: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter_map(|(a, c)| match c.state {
                CandidateState::Connecting(t) if now.saturating_since(t) >= timeout => Some(*a),
                _ => None,
            })
            .collect();
        for a in stale {
            self.connect_failed(now, a);
        }
        if now >= self.next_choke {
            self.next_choke = now + self.config.choke_interval;
            self.run_choker(now);
        }
        if now >= self.next_pex {
            self.next_pex = now + self.config.pex_interval;
            self.send_pex(now);
        }
        self.connect_more(now);
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Time {
        self.next_tick
    }

    fn run_choker(&mut self, now: Time) {
        let seeding = self.is_complete();
        let rotate = now >= self.next_optimistic;
        if rotate {
            self.next_optimistic = now + self.config.optimistic_interval;
        }
        let mut interested: Vec<(PeerKey, u64, Time, bool, bool)> = Vec::new();
        for (k, p) in self.peers.iter_mut() {
            if p.session.is_active() && p.session.peer_interested() {
                let rate = if seeding {
                    p.session.upload.rate(now)
                } else {
                    p.session.download.rate(now)
                };
                interested.push((
                    *k,
                    rate,
                    p.last_unchoked,
                    !p.session.am_choking(),
                    p.optimistic,
                ));
            }
        }
        interested.sort_by_key(|e| e.0);
        let slots = self.config.unchoke_slots.max(1);
        let mut chosen: Vec<PeerKey> = Vec::new();
        if seeding {
            // Round robin: a peer keeps its slot for one optimistic interval, then the
            // peers that waited longest get their turn.
            let turn = self.config.optimistic_interval;
            // Order: peers still in their turn, then choked peers by how long they have
            // waited, then peers whose turn is over.
            interested.sort_by_key(|(_, rate, last, unchoked, _)| {
                let keeps = *unchoked && now.saturating_since(*last) < turn;
                (!keeps, *unchoked, *last, u64::MAX - rate)
            });
            chosen.extend(interested.iter().take(slots).map(|e| e.0));
        } else {
            // Tit-for-tat: the fastest uploaders to us, plus one optimistic unchoke.
            let mut by_rate = interested.clone();
            by_rate.sort_by_key(|e| std::cmp::Reverse(e.1));
            chosen.extend(by_rate.iter().take(slots - 1).map(|e| e.0));
            let current_opt = interested.iter().find(|e| e.4).map(|e| e.0);
            let opt = match current_opt {
                Some(k) if !rotate && !chosen.contains(&k) => Some(k),
                _ => {
                    // Newly connected peers get the optimistic slot first: they have nothing
                    // to trade yet and this is how they get started.
                    let mut rest: Vec<PeerKey> = interested
                        .iter()
                        .map(|e| e.0)
                        .filter(|k| !chosen.contains(k))
                        .collect();
                    let fresh: Vec<PeerKey> = rest
                        .iter()
                        .copied()
                        .filter(|k| {
                            self.peers.get(k).is_some_and(|p| {
                                now.saturating_since(p.connected_at) < Duration::from_secs(60)
                            })
                        })
                        .collect();
                    if !fresh.is_empty() {
                        rest = fresh;
                    }
                    if rest.is_empty() {
                        None
                    } else {
                        Some(rest[self.rng.below(rest.len() as u64) as usize])
                    }
                }
            };
            for p in self.peers.values_mut() {
                p.optimistic = false;
            }
            if let Some(k) = opt {
                chosen.push(k);
                if let Some(p) = self.peers.get_mut(&k) {
                    p.optimistic = true;
                }
            }
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let Some(p) = self.peers.get_mut(&k) else {
                continue;
            };
            if chosen.contains(&k) {
                if p.session.am_choking() {
                    p.last_unchoked = now;
                }
                p.session.unchoke(now);
            } else if !p.session.am_choking() {
                p.session.choke(now);
                // Pending requests die with the choke (rejected explicitly under BEP 6), but
                // for pieces in the peer's allowed-fast set.
                let fast = &p.fast_for_peer;
                let (keep, drop): (VecDeque<BlockRequest>, VecDeque<BlockRequest>) = p
                    .upload_queue
                    .drain(..)
                    .partition(|r| fast.contains(&r.index));
                p.upload_queue = keep;
                for r in drop {
                    p.session.reject(now, r);
                }
            }
            self.mark_dirty(k);
        }
    }

    fn send_pex(&mut self, now: Time) {
        if !self.config.session.pex {
            return;
        }
        let connected: Vec<(PeerKey, SocketAddr, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.is_active())
            .filter_map(|(k, p)| p.listen_addr.map(|a| (*k, a, matches!(p.has, Has::All))))
            .collect();
        let now_set: HashSet<SocketAddr> = connected.iter().map(|c| c.1).collect();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let Some(p) = self.peers.get_mut(&k) else {
                continue;
            };
            if !p.session.is_active() || !p.session.peer_supports(crate::ext::UT_PEX) {
                continue;
            }
            let mut msg = PexMessage::default();
            for (other, addr, seed) in &connected {
                if *other == k || p.pex_sent.contains(addr) || msg.added.len() >= 50 {
                    continue;
                }
                let flags = if *seed {
                    PexFlags::SEED
                } else {
                    PexFlags::empty()
                };
                msg.added.push((*addr, flags));
            }
            let dropped: Vec<SocketAddr> = p
                .pex_sent
                .iter()
                .filter(|a| !now_set.contains(a))
                .take(50)
                .copied()
                .collect();
            msg.dropped = dropped;
            if msg.added.is_empty() && msg.dropped.is_empty() {
                continue;
            }
            if p.session.send_pex(now, &msg) {
                for (a, _) in &msg.added {
                    p.pex_sent.insert(*a);
                }
                for a in &msg.dropped {
                    p.pex_sent.remove(a);
                }
                self.mark_dirty(k);
            }
        }
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next bytes to send, to any peer: `(peer, bytes)`. Block payloads come as their own
    /// chunks, not copied.
    pub fn poll_transmit(&mut self, now: Time) -> Option<(PeerKey, Bytes)> {
        self.now = self.now.max(now);
        while let Some(k) = self.dirty.front().copied() {
            let Some(p) = self.peers.get_mut(&k) else {
                self.dirty.pop_front();
                continue;
            };
            if let Some(b) = p.session.poll_chunk() {
                return Some((k, b));
            }
            self.dirty.pop_front();
            // Room in the send queue: serve more of its requests.
            self.pump_reads(k);
            let _ = now;
        }
        None
    }

    /// The next bytes to send to one peer (for drivers that write per connection and apply
    /// back-pressure per connection). Use with [`pending_transmits`](Self::pending_transmits).
    pub fn poll_transmit_to(&mut self, key: PeerKey) -> Option<Bytes> {
        let chunk = match self.peers.get_mut(&key)?.session.poll_chunk() {
            Some(b) => Some(b),
            None => {
                self.pump_reads(key);
                self.peers.get_mut(&key)?.session.poll_chunk()
            }
        };
        if chunk.is_none() {
            self.dirty.retain(|k| *k != key);
        }
        chunk
    }

    /// Peers that may have bytes to send.
    pub fn pending_transmits(&self) -> Vec<PeerKey> {
        self.dirty.iter().copied().collect()
    }

    /// A buffer that held a piece evicted from the upload cache, for reading the next
    /// [`Output::ReadPiece`] into (optional; saves an allocation and page faults per read).
    pub fn take_read_buffer(&mut self) -> Option<BytesMut> {
        self.spare_reads.pop()
    }

    /// Hands back the bytes of a [`Output::VerifyPiece`] once the driver is done with them, so
    /// the buffer can be reused for the next piece (optional; saves an allocation per piece).
    pub fn recycle(&mut self, data: Bytes) {
        if self.spare_bufs.len() >= MAX_SPARE_BUFS {
            return;
        }
        let Some(c) = &self.content else {
            return;
        };
        if let Ok(b) = data.try_into_mut() {
            if b.capacity() >= c.meta.info.piece_length() as usize
                && b.as_ptr().align_offset(PIECE_BUF_ALIGN) == 0
            {
                self.spare_bufs.push(b);
            }
        }
    }

    /// Storing a verified piece failed: fetch it again later, without blaming any peer.
    pub fn piece_store_failed(&mut self, now: Time, piece: PieceIndex) {
        let Some(c) = &mut self.content else {
            return;
        };
        if c.verifying.remove(&piece).is_some() {
            c.picker.piece_failed(piece);
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                self.fill_requests(now, k);
            }
        }
    }

    /// Closes every connection (e.g. when the torrent is removed).
    pub fn shutdown(&mut self, now: Time) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.drop_peer(now, k, "torrent stopped".into());
        }
        self.candidate_queue.clear();
        self.candidates.clear();
    }
}

fn view_of<'a>(b: &'a Bitfield, p: &'a Peer) -> PeerView<'a> {
    PeerView::bitfield(b)
        .choked(p.session.peer_choking())
        .allowed_fast(&p.allowed_fast)
}

/// The bytes of request `r` within its piece's data, if they are there.
fn block_of(piece: &Bytes, r: BlockRequest) -> Option<Bytes> {
    let start = r.begin as usize;
    let end = start.checked_add(r.length as usize)?;
    (end <= piece.len()).then(|| piece.slice(start..end))
}

/// Sends a block read for `peer`, or rejects the request if it could not be read or the peer
/// was choked meanwhile.
fn serve_block(
    peer: &mut Peer,
    stats: &mut TorrentStats,
    upload: &mut crate::peer::RateMeter,
    now: Time,
    r: BlockRequest,
    data: Option<Bytes>,
) {
    let allowed = !peer.session.am_choking() || peer.fast_for_peer.contains(&r.index);
    match data {
        Some(d) if d.len() == r.length as usize && allowed => {
            let n = d.len() as u64;
            peer.session.send_block(now, r, d);
            stats.uploaded += n;
            upload.add(now, n);
        }
        _ => peer.session.reject(now, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::creator::TorrentCreator;
    use crate::id::Id20;
    use crate::wire::Message;

    fn meta(len: usize) -> (Arc<Metainfo>, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let t = TorrentCreator::new()
            .with_piece_length(16384)
            .create_single_from_reader("t", len as u64, &data[..])
            .unwrap();
        (Arc::new(t.metainfo), data)
    }

    /// A remote peer speaking through its own session.
    struct Remote {
        key: PeerKey,
        s: PeerSession,
    }

    fn connect(t: &mut Torrent, now: Time, n: u8, meta: &Metainfo) -> Remote {
        let key = PeerKey(u64::from(n));
        let addr = SocketAddr::from(([10, 0, 0, n], 6881));
        t.add_peer(now, key, Some(addr), Direction::Incoming)
            .unwrap();
        let s = PeerSession::new(
            SessionConfig::new(meta.info_hash, Id20([n; 20])),
            Direction::Outgoing,
            now,
        );
        let mut r = Remote { key, s };
        exchange(t, now, &mut r);
        r
    }

    /// Moves bytes both ways until quiet.
    fn exchange(t: &mut Torrent, now: Time, r: &mut Remote) {
        for _ in 0..20 {
            let mut moved = false;
            while let Some(b) = r.s.poll_chunk() {
                t.peer_data(now, r.key, &b);
                moved = true;
            }
            while let Some(b) = t.poll_transmit_to(r.key) {
                r.s.receive(now, &b).unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn unchoked(t: &Torrent) -> Vec<u64> {
        let mut v: Vec<u64> = t
            .peers
            .iter()
            .filter(|(_, p)| !p.session.am_choking())
            .map(|(k, _)| k.0)
            .collect();
        v.sort_unstable();
        v
    }

    fn reads(t: &mut Torrent) -> Vec<(u32, u64, u32)> {
        let mut v = Vec::new();
        while let Some(o) = t.poll_output() {
            if let Output::ReadPiece {
                piece,
                offset,
                length,
            } = o
            {
                v.push((piece.get(), offset, length));
            }
        }
        v
    }

    fn blocks(r: &mut Remote) -> Vec<(BlockRequest, Bytes)> {
        std::iter::from_fn(|| r.s.poll_event())
            .filter_map(|e| match e {
                SessionEvent::Block { request, data, .. } => Some((request, data)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn uploads_read_each_piece_once_and_serve_blocks_from_it() {
        // 64 KiB pieces, four blocks each.
        let data: Vec<u8> = (0..6 * 65536).map(|i| (i * 13 % 251) as u8).collect();
        let made = TorrentCreator::new()
            .with_piece_length(65536)
            .create_single_from_reader("t", data.len() as u64, &data[..])
            .unwrap();
        let m = Arc::new(made.metainfo);
        let mut cfg = TorrentConfig::new(Id20([1; 20]));
        cfg.max_piece_reads = 2;
        cfg.upload_cache_bytes = 0; // still two pieces
        let mut t = Torrent::new(cfg, m.clone(), Bitfield::full(6), 7, Time::ZERO).unwrap();
        let now = Time::ZERO;
        let mut a = connect(&mut t, now, 2, &m);
        let mut b = connect(&mut t, now, 3, &m);
        for r in [&mut a, &mut b] {
            r.s.set_interested(now, true);
            exchange(&mut t, now, r);
        }
        // Four blocks of piece 1 from A: one read.
        for i in 0..4 {
            a.s.request(now, BlockRequest::new(1, i * 16384, 16384));
        }
        exchange(&mut t, now, &mut a);
        assert_eq!(reads(&mut t), [(1, 65536, 65536)]);
        t.piece_read(
            now,
            m.info.layout.piece(1).unwrap(),
            Some(Bytes::copy_from_slice(&data[65536..131072])),
        );
        exchange(&mut t, now, &mut a);
        let got = blocks(&mut a);
        assert_eq!(got.len(), 4);
        for (r, d) in &got {
            let off = r.index as usize * 65536 + r.begin as usize;
            assert_eq!(&d[..], &data[off..off + 16384]);
        }
        // B asks for piece 1 too: served from the cache, no new read.
        b.s.request(now, BlockRequest::new(1, 32768, 16384));
        exchange(&mut t, now, &mut b);
        assert_eq!(reads(&mut t), []);
        assert_eq!(blocks(&mut b).len(), 1);
        // Three other pieces at once: two reads (the limit), the third waits for one of them.
        for p in [2, 3, 4] {
            b.s.request(now, BlockRequest::new(p, 0, 16384));
        }
        exchange(&mut t, now, &mut b);
        assert_eq!(reads(&mut t), [(2, 131072, 65536), (3, 196608, 65536)]);
        // Storage failed for piece 2: rejected (fast extension); piece 4's read goes out.
        t.piece_read(now, m.info.layout.piece(2).unwrap(), None);
        exchange(&mut t, now, &mut b);
        assert_eq!(reads(&mut t), [(4, 262144, 65536)]);
        let evs: Vec<SessionEvent> = std::iter::from_fn(|| b.s.poll_event()).collect();
        assert!(
            evs.contains(&SessionEvent::Rejected(BlockRequest::new(2, 0, 16384))),
            "{evs:?}"
        );
        // Bytes of the wrong length count as a failed read.
        t.piece_read(
            now,
            m.info.layout.piece(3).unwrap(),
            Some(Bytes::from_static(b"short")),
        );
        t.piece_read(
            now,
            m.info.layout.piece(4).unwrap(),
            Some(Bytes::copy_from_slice(&data[262144..327680])),
        );
        exchange(&mut t, now, &mut b);
        let got = blocks(&mut b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, BlockRequest::new(4, 0, 16384));
        // The cache holds two pieces (1 and 4); reading 5 evicts the least recently used, 1,
        // which is then read again.
        b.s.request(now, BlockRequest::new(5, 0, 16384));
        exchange(&mut t, now, &mut b);
        assert_eq!(reads(&mut t), [(5, 327680, 65536)]);
        t.piece_read(
            now,
            m.info.layout.piece(5).unwrap(),
            Some(Bytes::copy_from_slice(&data[327680..])),
        );
        exchange(&mut t, now, &mut b);
        assert_eq!(blocks(&mut b).len(), 1);
        a.s.request(now, BlockRequest::new(4, 0, 16384));
        a.s.request(now, BlockRequest::new(1, 0, 16384));
        exchange(&mut t, now, &mut a);
        assert_eq!(reads(&mut t), [(1, 65536, 65536)]);
        assert_eq!(blocks(&mut a).len(), 1, "piece 4 from the cache");
    }

    #[test]
    fn piece_buffers_are_aligned_and_stay_so_when_recycled() {
        for len in [1, 16384, 262_144, 100_003] {
            let b = aligned_piece_buf(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr().align_offset(PIECE_BUF_ALIGN), 0);
            assert!(b.iter().all(|x| *x == 0));
            let again = b.freeze().try_into_mut().unwrap();
            assert_eq!(again.len(), len);
            assert_eq!(again.as_ptr().align_offset(PIECE_BUF_ALIGN), 0);
        }
    }

    #[test]
    fn seeding_choker_rotates_round_robin() {
        let (m, _) = meta(20 * 16384);
        let n = m.info.num_pieces();
        let mut t = Torrent::new(
            TorrentConfig::new(Id20([1; 20])),
            m.clone(),
            Bitfield::full(n),
            7,
            Time::ZERO,
        )
        .unwrap();
        let mut now = Time::ZERO;
        let mut remotes: Vec<Remote> = (2..8).map(|i| connect(&mut t, now, i, &m)).collect();
        for r in &mut remotes {
            r.s.set_interested(now, true);
            exchange(&mut t, now, r);
        }
        // Free slots are filled at once, in arrival order.
        assert_eq!(unchoked(&t), [2, 3, 4, 5]);
        let first = unchoked(&t);
        for _ in 0..4 {
            now += Duration::from_secs(10);
            t.handle_timeout(now);
        }
        let later = unchoked(&t);
        assert_eq!(later.len(), 4);
        assert!(later.contains(&6) && later.contains(&7), "{later:?}");
        assert_ne!(first, later);
    }

    #[test]
    fn leeching_choker_prefers_fast_uploaders() {
        let (m, data) = meta(40 * 16384);
        let n = m.info.num_pieces();
        let mut t = Torrent::new(
            TorrentConfig::new(Id20([1; 20])),
            m.clone(),
            Bitfield::new(n),
            7,
            Time::ZERO,
        )
        .unwrap();
        let mut now = Time::ZERO;
        let mut remotes: Vec<Remote> = (2..8).map(|i| connect(&mut t, now, i, &m)).collect();
        // Each remote is interested in us and sends us (unrequested) blocks: remote i sends
        // i - 1 blocks per second, so 7, 6 and 5 are the fastest.
        for _ in 0..3 {
            now += Duration::from_secs(1);
            for r in remotes.iter_mut() {
                r.s.set_interested(now, true);
                let per_sec = r.key.0 as usize - 1;
                for b in 0..per_sec {
                    let piece = (r.key.0 as usize * 5 + b) % n as usize;
                    let off = piece * 16384;
                    let mut buf = BytesMut::new();
                    Message::Piece {
                        index: piece as u32,
                        begin: 0,
                        data: Bytes::copy_from_slice(&data[off..off + 16384]),
                    }
                    .encode(&mut buf);
                    t.peer_data(now, r.key, &buf);
                }
                exchange(&mut t, now, r);
            }
        }
        now += Duration::from_secs(1);
        t.handle_timeout(now);
        let u = unchoked(&t);
        assert_eq!(u.len(), 4, "{u:?}");
        for fast in [5, 6, 7] {
            assert!(u.contains(&fast), "{u:?}");
        }
        // Exactly one optimistic unchoke among the slow ones.
        assert_eq!(t.peers.values().filter(|p| p.optimistic).count(), 1);
    }

    #[test]
    fn connection_limits_and_bans() {
        let (m, _) = meta(4 * 16384);
        let mut cfg = TorrentConfig::new(Id20([1; 20]));
        cfg.max_peers = 2;
        cfg.max_connecting = 1;
        let mut t = Torrent::new(cfg, m.clone(), Bitfield::new(4), 1, Time::ZERO).unwrap();
        let addrs: Vec<SocketAddr> = (2..6)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 6881)))
            .collect();
        t.add_candidates(Time::ZERO, addrs.clone(), PeerSource::Tracker);
        let connects: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
        assert_eq!(connects, [Output::Connect(addrs[0])], "one dial at a time");
        t.connect_failed(Time::ZERO, addrs[0]);
        assert_eq!(t.poll_output(), Some(Output::Connect(addrs[1])));
        let _a = connect(&mut t, Time::ZERO, 3, &m);
        let _b = connect(&mut t, Time::ZERO, 4, &m);
        assert_eq!(
            t.add_peer(Time::ZERO, PeerKey(99), Some(addrs[3]), Direction::Incoming),
            Err(AddPeerError::Full)
        );
        t.banned_ips.insert(addrs[2].ip());
        t.peer_closed(Time::ZERO, PeerKey(4));
        assert_eq!(
            t.add_peer(Time::ZERO, PeerKey(98), Some(addrs[2]), Direction::Incoming),
            Err(AddPeerError::Banned)
        );
    }

    #[test]
    fn bad_bitfield_and_out_of_range_have_drop_the_peer() {
        let (m, _) = meta(10 * 16384);
        let mut t = Torrent::new(
            TorrentConfig::new(Id20([1; 20])),
            m.clone(),
            Bitfield::new(10),
            1,
            Time::ZERO,
        )
        .unwrap();
        let r = connect(&mut t, Time::ZERO, 2, &m);
        let mut buf = BytesMut::new();
        Message::Have { piece: 10 }.encode(&mut buf);
        t.peer_data(Time::ZERO, r.key, &buf);
        assert_eq!(t.num_peers(), 0);
        let outs: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
        assert!(outs.contains(&Output::Disconnect(r.key)));
        let r = connect(&mut t, Time::ZERO, 3, &m);
        let mut buf = BytesMut::new();
        Message::Bitfield(Bytes::from_static(&[0xff, 0xff])).encode(&mut buf);
        t.peer_data(Time::ZERO, r.key, &buf);
        assert_eq!(t.num_peers(), 0, "spare bits set: dropped");
    }

    #[test]
    fn serves_requests_only_when_unchoked_and_valid() {
        let (m, data) = meta(40 * 16384);
        let mut t = Torrent::new(
            TorrentConfig::new(Id20([1; 20])),
            m.clone(),
            Bitfield::full(40),
            1,
            Time::ZERO,
        )
        .unwrap();
        let now = Time::ZERO;
        let mut r = connect(&mut t, now, 2, &m);
        // The peer (10.0.0.2) got BEP 6's allowed-fast set.
        let fast = crate::fast::allowed_fast_set(
            std::net::Ipv4Addr::new(10, 0, 0, 2),
            &m.info_hash,
            40,
            crate::fast::ALLOWED_FAST_COUNT,
        );
        assert_eq!(fast.len(), 10);
        let evs: Vec<SessionEvent> = std::iter::from_fn(|| r.s.poll_event()).collect();
        let told: Vec<u32> = evs
            .iter()
            .filter_map(|e| match e {
                SessionEvent::AllowedFast(i) => Some(*i),
                _ => None,
            })
            .collect();
        assert_eq!(told, fast);
        // Requests while choked are rejected (fast extension)...
        let other = (0..40).find(|i| !fast.contains(i)).unwrap();
        r.s.request(now, BlockRequest::new(other, 0, 16384));
        exchange(&mut t, now, &mut r);
        let evs: Vec<SessionEvent> = std::iter::from_fn(|| r.s.poll_event()).collect();
        assert!(
            evs.contains(&SessionEvent::Rejected(BlockRequest::new(other, 0, 16384))),
            "{evs:?}"
        );
        // ...but for the allowed-fast pieces, served while choked.
        let f = fast[0];
        r.s.request(now, BlockRequest::new(f, 0, 16384));
        exchange(&mut t, now, &mut r);
        let o = f as usize * 16384;
        assert_eq!(reads(&mut t), [(f, o as u64, 16384)]);
        let piece = m.info.layout.piece(f).unwrap();
        t.piece_read(
            now,
            piece,
            Some(Bytes::copy_from_slice(&data[o..o + 16384])),
        );
        exchange(&mut t, now, &mut r);
        assert!(r.s.peer_choking());
        let got = std::iter::from_fn(|| r.s.poll_event()).find_map(|e| match e {
            SessionEvent::Block { data, .. } => Some(data),
            _ => None,
        });
        assert_eq!(got.as_deref(), Some(&data[o..o + 16384]));
        r.s.set_interested(now, true);
        exchange(&mut t, now, &mut r);
        assert!(!r.s.peer_choking());
        r.s.request(now, BlockRequest::new(1, 16000, 384));
        exchange(&mut t, now, &mut r);
        assert_eq!(reads(&mut t), [(1, 16384, 16384)]);
        let piece = m.info.layout.piece(1).unwrap();
        let off = 16384 + 16000;
        t.piece_read(
            now,
            piece,
            Some(Bytes::copy_from_slice(&data[16384..2 * 16384])),
        );
        exchange(&mut t, now, &mut r);
        let got = std::iter::from_fn(|| r.s.poll_event()).find_map(|e| match e {
            SessionEvent::Block { data, .. } => Some(data),
            _ => None,
        });
        assert_eq!(got.as_deref(), Some(&data[off..off + 384]));
        // A request past the end of the torrent is rejected.
        r.s.request(now, BlockRequest::new(40, 0, 1));
        exchange(&mut t, now, &mut r);
        let evs: Vec<SessionEvent> = std::iter::from_fn(|| r.s.poll_event()).collect();
        assert!(
            evs.iter().any(|e| matches!(e, SessionEvent::Rejected(_))),
            "{evs:?}"
        );
    }
}
