//! What goes into and comes out of a [`TorrentSession`](super::TorrentSession): its settings,
//! inputs, outputs and events.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::announce::{
    AnnounceConfig, AnnounceEvent, AnnounceJob, JobId, TrackerFailure, TrackerReply,
};
use crate::id::{InfoHash, PeerId, PeerKey};
use crate::metainfo::Metainfo;
use crate::peer::Direction;
use crate::piece::{Bitfield, PieceIndex};
use crate::torrent::TorrentConfig;

use super::rtc::{RtcAction, TorrentSignal};
#[allow(unused_imports)] // for doc links
use super::TorrentSession;

/// Verified pieces that failed to store, one after another, before the session gives up
/// ([`Event::Refused`]): storage that keeps failing (a full disk, a browser's quota) would
/// otherwise have every piece fetched again forever.
pub const MAX_STORE_FAILURES_IN_ROW: u32 = 12;

/// Settings of a [`TorrentSession`].
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The torrent state machine's settings.
    pub torrent: TorrentConfig,
    /// The announcer's settings (which tracker schemes the driver can reach, timeouts).
    pub announce: AnnounceConfig,
    /// Pieces handed out for hashing and storing at once.
    pub max_verifying: usize,
    /// Pieces waiting for a hashing slot before new block requests are held back.
    pub max_verify_backlog: usize,
    /// Announce to trackers at all.
    pub trackers: bool,
    /// How long a WebRTC connection being set up may take before the session gives it up
    /// (`RtcAction::Abort`). Counted from the offer or answer being accepted; the default is
    /// the longest a driver itself waits, 35 s: the sum of
    /// [`ICE_GATHER_TIMEOUT`](crate::signal::ICE_GATHER_TIMEOUT) and
    /// [`CHANNEL_OPEN_TIMEOUT`](crate::signal::CHANNEL_OPEN_TIMEOUT). So it only ends attempts
    /// a driver lost track of.
    pub rtc_connect_timeout: Duration,
}

impl SessionSettings {
    /// Defaults for our peer id.
    pub fn new(peer_id: PeerId) -> Self {
        SessionSettings {
            torrent: TorrentConfig::new(peer_id),
            announce: AnnounceConfig::default(),
            max_verifying: 8,
            max_verify_backlog: 16,
            trackers: true,
            rtc_connect_timeout: crate::signal::ICE_GATHER_TIMEOUT
                + crate::signal::CHANNEL_OPEN_TIMEOUT,
        }
    }
}

/// Bytes ahead of a stream reader's position fetched first (at least [`READAHEAD_PIECES`]
/// pieces).
pub const READAHEAD_BYTES: u64 = 8 << 20;
/// Pieces ahead of a stream reader's position fetched first (at least [`READAHEAD_BYTES`]).
pub const READAHEAD_PIECES: u64 = 4;

/// Where a stream reader's window goes, the same for every driver: when the reader's
/// position enters another piece, [`update`](Self::update) gives its new window for
/// [`TorrentSession::set_reader_window`] (the position and [`READAHEAD_BYTES`] ahead, at
/// least [`READAHEAD_PIECES`] pieces); while it stays in the same piece, nothing.
#[derive(Debug, Clone, Default)]
pub struct ReaderWindow {
    piece: Option<u64>,
}

impl ReaderWindow {
    /// The window for a reader at torrent offset `pos` reading up to `end`, if it moved.
    pub fn update(&mut self, pos: u64, end: u64, piece_length: u64) -> Option<Range<u64>> {
        let piece = pos / piece_length.max(1);
        if self.piece == Some(piece) {
            return None;
        }
        self.piece = Some(piece);
        let ahead = READAHEAD_BYTES.max(READAHEAD_PIECES * piece_length);
        Some(pos..end.min(pos.saturating_add(ahead)))
    }
}

/// What a session starts from.
#[derive(Debug, Clone)]
pub enum Start {
    /// The metainfo is known. `have` lists pieces verified in storage (all of them to seed);
    /// `storage_ready` is false when the driver still has to open storage (it is then asked
    /// with [`Output::OpenStorage`]).
    Metainfo {
        /// The torrent.
        meta: Arc<Metainfo>,
        /// Pieces already verified.
        have: Bitfield,
        /// Whether storage is open.
        storage_ready: bool,
    },
    /// Only the info hash (a magnet link): the metadata comes from peers.
    InfoHash(InfoHash),
}

/// How a connection reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection (or any stream a desktop client speaks).
    Tcp,
    /// A WebRTC data channel with this peer (from a WebSocket tracker's offer or answer).
    WebRtc {
        /// The remote peer id the tracker gave.
        peer_id: PeerId,
    },
    /// A web seed (BEP 19) the session runs itself; its bytes travel as [`Output::Fetch`].
    WebSeed,
}

/// How hashing and storing a piece went (the driver's answer to [`Output::VerifyPiece`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The hash matched and the piece is stored.
    Stored,
    /// The hash did not match.
    HashMismatch,
    /// The hash matched but storing failed.
    StoreFailed,
}

/// Everything a driver feeds a session.
#[derive(Debug)]
pub enum Input {
    /// Time passed (feed at [`TorrentSession::poll_timeout`]).
    Timeout,
    /// A connection is open (`key` chosen by the driver, unique for the client). If the
    /// session does not want it, [`Output::Disconnect`] follows.
    PeerConnected {
        /// The connection.
        key: PeerKey,
        /// The remote address, if the transport has one.
        addr: Option<SocketAddr>,
        /// Who opened it.
        direction: Direction,
        /// TCP or WebRTC.
        transport: Transport,
    },
    /// Bytes arrived from a peer.
    PeerData {
        /// The connection.
        key: PeerKey,
        /// The bytes.
        data: BytesMut,
    },
    /// A connection closed (not after [`Output::Disconnect`], which needs no answer).
    PeerClosed {
        /// The connection.
        key: PeerKey,
    },
    /// The answer to an [`Output::Fetch`]: one body per request, in order, or why it failed
    /// (HTTP status, connection error, timeout).
    Fetched {
        /// The web seed.
        key: PeerKey,
        /// [`Fetch::id`](crate::webseed::Fetch::id).
        id: u64,
        /// The bodies, or the error.
        result: Result<Vec<Bytes>, String>,
    },
    /// An [`Output::Connect`] failed.
    ConnectFailed {
        /// The address.
        addr: SocketAddr,
    },
    /// The answer to [`Output::ReadPiece`] (`None` if the read failed).
    PieceRead {
        /// The piece.
        piece: PieceIndex,
        /// Its bytes.
        data: Option<Bytes>,
    },
    /// The answer to [`Output::VerifyPiece`], with the buffer handed back for reuse.
    PieceChecked {
        /// The piece.
        piece: PieceIndex,
        /// How it went.
        outcome: CheckOutcome,
        /// The buffer of [`Output::VerifyPiece`].
        data: Bytes,
    },
    /// Storage is open (the answer to [`Output::OpenStorage`]); `have` lists pieces found
    /// already verified in it.
    StorageReady {
        /// Pieces on disk, if any were checked.
        have: Option<Bitfield>,
    },
    /// The torrent is not wanted (e.g. too large for the driver's quota): no storage is set
    /// up, every peer is dropped and `stopped` announced; the session stays until stopped.
    Refuse(String),
    /// An [`Output::Announce`] finished, with the peers the reply carried.
    Announced {
        /// The job.
        job: JobId,
        /// The reply or why it failed.
        result: Result<TrackerReply, TrackerFailure>,
        /// Peers from the reply.
        peers: Vec<SocketAddr>,
    },
    /// A WebSocket tracker's message for this torrent.
    Signal {
        /// The tracker.
        url: Arc<str>,
        /// What it says.
        signal: TorrentSignal,
    },
    /// A WebRTC connection asked for with [`RtcAction::ApplyAnswer`] or
    /// [`RtcAction::AnswerOffer`] failed before its channel opened.
    RtcFailed {
        /// The remote peer.
        peer_id: PeerId,
    },
    /// Addresses to try (from the user or a magnet link's `x.pe`).
    AddPeers(Vec<SocketAddr>),
    /// Our announced address changed (port mapping): tell the trackers now.
    Reannounce,
    /// Drop every peer and tell trackers we paused.
    Pause,
    /// Undo [`Input::Pause`].
    Resume,
    /// Stop for good: `stopped` is announced; [`Output::Stopped`] follows when it is answered
    /// or the announce config's `stop_timeout` has passed.
    Stop,
}

/// Everything a session asks of its driver.
#[derive(Debug)]
pub enum Output {
    /// Open a TCP connection, then feed [`Input::PeerConnected`] or [`Input::ConnectFailed`].
    Connect(SocketAddr),
    /// Carry out HTTP GETs for a web seed (each request's URL with its `Range` header) and
    /// answer with [`Input::Fetched`]. Give each a timeout (a minute, say): a fetch never
    /// answered holds the web seed's blocks.
    Fetch {
        /// The web seed.
        key: PeerKey,
        /// What to get.
        fetch: crate::webseed::Fetch,
    },
    /// Close this connection; the session has already forgotten it.
    Disconnect(PeerKey),
    /// Read this whole piece and feed [`Input::PieceRead`]. `buffer` is a spare buffer to read
    /// into, if the session has one.
    ReadPiece {
        /// The piece.
        piece: PieceIndex,
        /// Where it starts in the torrent's data.
        offset: u64,
        /// Its length.
        length: u32,
        /// A buffer to reuse.
        buffer: Option<BytesMut>,
    },
    /// Hash this piece; if it matches `expected`, store it at `offset`; then feed
    /// [`Input::PieceChecked`].
    VerifyPiece {
        /// The piece.
        piece: PieceIndex,
        /// Where it goes in the torrent's data.
        offset: u64,
        /// Its bytes.
        data: Bytes,
        /// The SHA-1 from the metainfo.
        expected: [u8; 20],
    },
    /// The metadata is known and storage is needed: open it (checking what is already there
    /// if the driver can), then feed [`Input::StorageReady`] or [`Input::Refuse`].
    OpenStorage(Arc<Metainfo>),
    /// Announce to an HTTP(S) or UDP tracker, then feed [`Input::Announced`].
    Announce(AnnounceJob),
    /// Something for the WebSocket trackers or the WebRTC layer.
    Rtc(RtcAction),
    /// Something happened.
    Event(Event),
    /// The session is over (after [`Input::Stop`]): drop it.
    Stopped,
}

/// What a user interface or log wants to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer's handshake completed.
    PeerConnected {
        /// The connection.
        key: PeerKey,
        /// Its peer id.
        peer_id: PeerId,
        /// Its address, if any.
        addr: Option<SocketAddr>,
        /// TCP or WebRTC.
        transport: Transport,
    },
    /// A connection ended.
    PeerDisconnected {
        /// The connection.
        key: PeerKey,
        /// Its address, if any.
        addr: Option<SocketAddr>,
        /// Why.
        reason: String,
    },
    /// A web seed failed; it is tried again later when `retry`, else dropped.
    WebSeedFailed {
        /// Its URL.
        url: String,
        /// Why.
        reason: String,
        /// Whether it will be tried again.
        retry: bool,
    },
    /// A peer was banned for sending corrupt data.
    PeerBanned {
        /// Its address, if any.
        addr: Option<SocketAddr>,
    },
    /// The metadata arrived (magnet links).
    Metadata,
    /// Metadata assembled from peers did not match the info hash; it is fetched again.
    MetadataFailed {
        /// How many peers sent pieces of it.
        sources: usize,
    },
    /// Storage is open: the torrent is ready.
    Ready,
    /// A piece was verified and stored.
    PieceVerified(PieceIndex),
    /// A piece failed its hash check and will be fetched again.
    HashFailed(PieceIndex),
    /// A peer runs a DHT node at this address (BEP 5 `PORT`): a driver with a DHT pings it.
    DhtNode(SocketAddr),
    /// A verified piece could not be stored; it will be fetched again.
    StoreFailed(PieceIndex),
    /// Every wanted piece is verified (`complete`: the whole torrent).
    Done {
        /// Whether every piece of the torrent is there.
        complete: bool,
    },
    /// The torrent was refused ([`Input::Refuse`]).
    Refused(String),
    /// A tracker answered.
    TrackerReply {
        /// Its URL.
        url: String,
        /// The event announced.
        event: AnnounceEvent,
        /// Interval until the next announce.
        interval: Duration,
        /// Seeders it reported.
        seeders: Option<u32>,
        /// Leechers it reported.
        leechers: Option<u32>,
        /// Peers the reply carried.
        peers: usize,
    },
    /// A tracker sent a warning.
    TrackerWarning {
        /// Its URL.
        url: String,
        /// The warning.
        message: String,
    },
    /// An announce failed.
    TrackerError {
        /// Its URL.
        url: String,
        /// Why.
        error: TrackerFailure,
    },
}

impl Event {
    /// What to tell the user about this event, if it is a warning (a piece to fetch again, a
    /// banned peer, a tracker's warning or failure); the same words for every driver.
    pub fn warning(&self) -> Option<String> {
        Some(match self {
            Event::PeerBanned { addr } => match addr {
                Some(a) => format!("banned peer {a}: it sent corrupt data"),
                None => "banned a peer that sent corrupt data".to_string(),
            },
            Event::HashFailed(p) => format!("piece {p} failed verification; fetching it again"),
            Event::WebSeedFailed { url, reason, retry } => format!(
                "web seed {url}: {reason}; {}",
                if *retry {
                    "trying it again later"
                } else {
                    "no longer used"
                }
            ),
            Event::MetadataFailed { sources } => format!(
                "metadata from {sources} peer(s) did not match the info hash; fetching it again"
            ),
            Event::StoreFailed(p) => format!("piece {p} could not be stored; fetching it again"),
            Event::TrackerWarning { url, message } => format!("tracker {url}: {message}"),
            Event::TrackerError { url, error } => format!("tracker {url}: {error}"),
            _ => return None,
        })
    }
}
