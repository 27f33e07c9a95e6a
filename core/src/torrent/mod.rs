//! The swarm state machine of one torrent.
//!
//! A [`Torrent`] owns a [`PeerSession`] per connection, the piece picker, piece assembly, the
//! choker, peer discovery bookkeeping (tracker and PEX candidates, bans) and metadata fetching
//! for magnet links. Drivers move bytes in and out, keep time and do storage:
//!
//! * inputs: [`Torrent::add_peer`], [`Torrent::peer_data`], [`Torrent::peer_closed`],
//!   [`Torrent::add_candidates`], [`Torrent::connect_failed`], [`Torrent::piece_read`],
//!   [`Torrent::piece_checked`], [`Torrent::handle_timeout`];
//! * what to fetch: [`Torrent::set_files_wanted`], [`Torrent::set_priority_range`],
//!   [`Torrent::pieces_on_disk`], [`Torrent::hold_requests`];
//! * outputs: [`Torrent::poll_output`] (connect, disconnect, read a block, verify and store a
//!   piece, events) and [`Torrent::poll_transmit`] (bytes for a peer);
//! * [`Torrent::poll_timeout`] says when to call [`Torrent::handle_timeout`].
//!
//! The same machine drives TCP, WebRTC and simulated peers.
//!
//! The work is split by concern: `candidates` (addresses and connecting),
//! `dispatch` (peer input and interest), `upload` (serving requests), `assembly` (blocks,
//! verification, smart ban), `requests` (asking peers for blocks, holding requests back),
//! `selection` (which files and byte ranges are wanted, pieces found on disk), `metadata`
//! (`ut_metadata`), `choker` and `pex`; this file holds the types, construction, accessors
//! and the timer and output plumbing.

mod assembly;
mod candidates;
mod choker;
mod dispatch;
mod metadata;
pub use metadata::{METADATA_REQUEST_TIMEOUT, METADATA_RETRY_AFTER};
mod pex;
pub use pex::{PEX_MAX_ADDED, PEX_MAX_PER_PEER, PEX_MIN_INTERVAL};
mod requests;
mod selection;
#[cfg(test)]
mod tests;
mod upload;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::id::{InfoHash, PeerId, PeerKey};
use crate::metainfo::Metainfo;
use crate::peer::{PeerSession, SessionConfig};
use crate::picker::{Picker, PickerConfig, PickerError};
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
    /// An outgoing connection attempt that has not resolved after this long is abandoned
    /// (default 10 s). Drivers bound their dials by it: it is the one owner of that timeout.
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
            connect_timeout: Duration::from_secs(10),
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
    /// The metadata assembled from peers did not match the info hash; it is fetched again
    /// (a lone sender is banned, several are asked one at a time).
    MetadataFailed {
        /// How many peers sent pieces of it.
        sources: usize,
    },
    /// A piece was verified and stored.
    PieceVerified(PieceIndex),
    /// A peer runs a DHT node at this address (BEP 5 `PORT`): worth a ping.
    DhtNode(SocketAddr),
    /// A piece failed its hash check; it will be fetched again.
    HashFailed(PieceIndex),
    /// Every wanted piece is verified: the whole torrent, or the pieces of the files selected
    /// with [`Torrent::set_files_wanted`] (check [`Torrent::is_complete`] to tell them
    /// apart). Fires again if the selection is widened later and that finishes too.
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

/// Why a selection ([`Torrent::set_files_wanted`], [`Torrent::set_priority_range`],
/// [`Torrent::pieces_on_disk`]) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// The metadata (info dictionary) is not known yet.
    #[error("the torrent's metadata is not known yet")]
    NoMetadata,
    /// The list or bitfield does not have one entry per file or piece.
    #[error("expected {expected} entries, got {got}")]
    WrongLength {
        /// Entries the torrent has (files or pieces).
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// The byte range is reversed or ends past the torrent's end.
    #[error("byte range outside the torrent")]
    OutOfRange,
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
    /// Bytes of the whole torrent still missing, whatever the file selection (`None` before
    /// the metadata is known).
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
    /// When it last rejected a metadata request or left one unanswered: not asked for
    /// metadata for a while after, whatever it announces meanwhile.
    metadata_given_up: Option<Time>,
    pex_sent: HashSet<SocketAddr>,
    /// When this peer's last PEX message was taken.
    pex_last: Option<Time>,
    /// Addresses taken from this peer's PEX messages.
    pex_accepted: usize,
    last_unchoked: Time,
    optimistic: bool,
    connected_at: Time,
}

/// Who a strike (a share in a piece that failed its hash check) counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Striker {
    Ip(IpAddr),
    /// A peer with no address (a WebRTC peer in a browser).
    Id(PeerId),
}

/// Most strikers remembered per torrent.
const MAX_STRIKERS: usize = 4096;

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
    source: PeerSource,
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

#[derive(Debug)]
struct Content {
    meta: Arc<Metainfo>,
    picker: Picker,
    assembling: HashMap<PieceIndex, Assembly>,
    verifying: HashMap<PieceIndex, Verifying>,
    suspects: assembly::SuspectLog,
    /// Which files are wanted (one entry per file of the info dictionary, padding included).
    files_wanted: Vec<bool>,
    /// Piece ranges wanted whatever the files (webtorrent's `torrent.select(start, end)`).
    pieces_wanted: Vec<std::ops::Range<u32>>,
}

/// The state machine of one torrent. See the module docs.
#[derive(Debug)]
pub struct Torrent {
    config: TorrentConfig,
    info_hash: InfoHash,
    content: Option<Content>,
    metadata: metadata::MetadataFetch,
    trackers_hint: Vec<Vec<String>>,
    peers: HashMap<PeerKey, Peer>,
    candidates: HashMap<SocketAddr, Candidate>,
    candidate_queue: VecDeque<SocketAddr>,
    banned_ips: HashSet<IpAddr>,
    /// Banned exact addresses (used for loopback, where every peer shares one IP).
    banned_addrs: HashSet<SocketAddr>,
    banned_ids: HashSet<PeerId>,
    strikes: HashMap<Striker, u32>,
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
    /// [`TorrentEvent::Done`] was given for the current selection (or there was nothing to
    /// fetch to begin with).
    done_announced: bool,
    /// No new block requests while set ([`Torrent::hold_requests`]).
    requests_held: bool,
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

/// Alignment of the piece buffers handed out with [`Output::VerifyPiece`]: a page, so that
/// drivers can write whole pieces with direct I/O (`O_DIRECT`) straight from them.
pub const PIECE_BUF_ALIGN: usize = 4096;

impl Torrent {
    fn base(config: TorrentConfig, info_hash: InfoHash, seed: u64, now: Time) -> Self {
        let mut config = config;
        config.session.info_hash = info_hash;
        Torrent {
            config,
            info_hash,
            content: None,
            metadata: metadata::MetadataFetch::default(),
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
            requests_held: false,
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
            t.config.session.dht_port = None;
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
        let files_wanted = vec![true; meta.info.files.len()];
        self.content = Some(Content {
            meta,
            picker,
            assembling: HashMap::new(),
            verifying: HashMap::new(),
            suspects: assembly::SuspectLog::default(),
            files_wanted,
            pieces_wanted: Vec::new(),
        });
        self.update_left();
        if self.is_finished() {
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

    /// The settings it was made with.
    pub fn config(&self) -> &TorrentConfig {
        &self.config
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

    /// Whether every wanted piece is verified (equals [`is_complete`](Self::is_complete)
    /// when everything is wanted, the default). False before the metadata.
    pub fn is_finished(&self) -> bool {
        self.content
            .as_ref()
            .is_some_and(|c| c.picker.is_finished())
    }

    /// Gives [`TorrentEvent::Done`] once every wanted piece is verified, and re-arms it when
    /// the selection grows past what we have.
    fn update_done(&mut self) {
        let finished = self.is_finished();
        if finished && !self.done_announced {
            self.done_announced = true;
            self.outputs.push_back(Output::Event(TorrentEvent::Done));
        } else if !finished {
            self.done_announced = false;
        }
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

    fn mark_dirty(&mut self, key: PeerKey) {
        if !self.dirty.contains(&key) {
            self.dirty.push_back(key);
        }
    }

    fn num_pieces(&self) -> Option<u32> {
        self.content.as_ref().map(|c| c.meta.info.num_pieces())
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
