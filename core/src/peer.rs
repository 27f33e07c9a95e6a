//! One peer connection's protocol state: handshake, extension handshake, choke and interest
//! flags, pipelined requests with timeouts, the peer's own requests, keep-alives and rates.
//!
//! A [`PeerSession`] parses what the peer sends into [`SessionEvent`]s and encodes what the
//! torrent decides to send. It decides nothing about pieces: the torrent state machine
//! ([`crate::torrent`]) owns the sessions and makes those choices. Time is an input.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::ext::{self, ExtendedHandshake, MetadataMessage, PexMessage};
use crate::id::{InfoHash, PeerId};
use crate::piece::BLOCK_SIZE;
use crate::time::Time;
use crate::wire::{
    encode_piece_header, BlockRequest, Decoder, Event, Handshake, Message, WireError,
};

/// How long a connection may take to complete the BitTorrent handshake (10 s, as
/// libtorrent's `handshake_timeout`). The default of [`SessionConfig::handshake_timeout`];
/// the native listener also bounds the wait for an incoming handshake's first bytes with it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings shared by every session of a torrent.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// `v` in the extension handshake.
    pub client_name: String,
    /// Our listen port, sent as `p`.
    pub listen_port: Option<u16>,
    /// Our DHT node's UDP port: the handshake says we run a DHT (BEP 5) and peers that run
    /// one too are sent a `PORT` message. `None`: no DHT.
    pub dht_port: Option<u16>,
    /// Offer BEP 6 (fast extension).
    pub fast: bool,
    /// Offer BEP 10 (extension protocol).
    pub extensions: bool,
    /// Offer BEP 11 (`ut_pex`); off for private torrents.
    pub pex: bool,
    /// How many requests from the peer we queue (`reqq` we advertise).
    pub max_peer_requests: u32,
    /// Most of our requests outstanding at one peer, whatever its `reqq`.
    pub max_our_requests: u32,
    /// Largest frame accepted from the peer.
    pub max_frame_len: u32,
    /// Send a keep-alive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// Close after this long without receiving anything.
    pub idle_timeout: Duration,
    /// Close if the handshake has not completed after this long.
    pub handshake_timeout: Duration,
    /// A request not answered after this long is given up.
    pub request_timeout: Duration,
    /// Ask this peer for whole pieces, never for blocks of pieces others are downloading
    /// (web seeds: one HTTP range per piece instead of scattered blocks).
    pub whole_pieces: bool,
}

impl SessionConfig {
    /// Defaults for a torrent and our peer id.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        SessionConfig {
            info_hash,
            peer_id,
            client_name: concat!("webtorrent-rs ", env!("CARGO_PKG_VERSION")).to_string(),
            listen_port: None,
            dht_port: None,
            fast: true,
            extensions: true,
            pex: true,
            max_peer_requests: 250,
            max_our_requests: 250,
            max_frame_len: crate::wire::DEFAULT_MAX_FRAME_LEN,
            keepalive_interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(180),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            request_timeout: Duration::from_secs(30),
            whole_pieces: false,
        }
    }
}

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We connected to the peer: we send our handshake first.
    Outgoing,
    /// The peer connected to us: we answer its handshake.
    Incoming,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The byte stream is not the peer wire protocol.
    #[error("wire protocol error: {0}")]
    Wire(#[from] WireError),
    /// The handshake named another torrent.
    #[error("peer handshake is for another torrent")]
    WrongInfoHash,
    /// The peer broke a protocol rule.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A malformed extension message.
    #[error("bad extension message: {0}")]
    Extension(String),
    /// No handshake in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing received for too long.
    #[error("peer idle for too long")]
    Idle,
}

/// What the peer did, for the torrent to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The handshake completed. Our handshake has been queued; the torrent now sends the
    /// extension handshake (if [`PeerSession::supports_extensions`]) and its pieces.
    Handshake {
        /// The peer's id.
        peer_id: PeerId,
    },
    /// The peer's extension handshake (the first or an update).
    ExtendedHandshake(Box<ExtendedHandshake>),
    /// `bitfield`, raw: validated by the torrent, which knows the piece count.
    Bitfield(Bytes),
    /// BEP 6 `have all`.
    HaveAll,
    /// BEP 6 `have none`.
    HaveNone,
    /// `have`, raw index.
    Have(u32),
    /// The peer choked us. Requests it implicitly dropped are in `dropped`.
    Choked {
        /// Our requests that will not be answered (non-fast peers drop them all).
        dropped: Vec<BlockRequest>,
    },
    /// The peer unchoked us.
    Unchoked,
    /// The peer became interested in our pieces.
    Interested,
    /// The peer lost interest.
    NotInterested,
    /// The peer asks for a block; already bounded by our `reqq`. The torrent validates it and
    /// answers with [`PeerSession::send_block`] or [`PeerSession::reject`].
    Request(BlockRequest),
    /// The peer withdrew a request we had not served yet.
    Cancel(BlockRequest),
    /// A block arrived. `requested` is false when we never asked for it (or gave up on it).
    Block {
        /// Which block.
        request: BlockRequest,
        /// Its bytes (zero-copy slice of the receive buffer).
        data: Bytes,
        /// Whether it answers an outstanding request of ours.
        requested: bool,
    },
    /// BEP 6 reject of one of our requests.
    Rejected(BlockRequest),
    /// BEP 6: the peer lets us request this piece while choked.
    AllowedFast(u32),
    /// BEP 6 suggestion.
    Suggest(u32),
    /// Our requests that got no answer within the timeout; they are forgotten.
    TimedOut(Vec<BlockRequest>),
    /// A `ut_metadata` message.
    Metadata(MetadataMessage),
    /// A `ut_pex` message.
    Pex(PexMessage),
    /// BEP 5 `PORT`: the peer runs a DHT node on this UDP port of its address.
    DhtPort(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHandshake,
    Active,
    Closed,
}

/// Bytes per second over a sliding window of one-second buckets.
#[derive(Debug, Clone)]
pub struct RateMeter {
    buckets: [u64; 5],
    current_second: u64,
    total: u64,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    /// An empty meter.
    pub fn new() -> Self {
        RateMeter {
            buckets: [0; 5],
            current_second: 0,
            total: 0,
        }
    }

    fn roll(&mut self, now: Time) {
        let sec = now.as_micros() / 1_000_000;
        if sec > self.current_second {
            let gap = (sec - self.current_second).min(5);
            for i in 1..=gap {
                self.buckets[((self.current_second + i) % 5) as usize] = 0;
            }
            self.current_second = sec;
        }
    }

    /// Counts `n` bytes at `now`.
    pub fn add(&mut self, now: Time, n: u64) {
        self.roll(now);
        self.buckets[(self.current_second % 5) as usize] += n;
        self.total += n;
    }

    /// Average bytes per second over the last few seconds.
    pub fn rate(&mut self, now: Time) -> u64 {
        self.roll(now);
        // The current second is partial: weight the window as 4 full seconds plus the part.
        let part = (now.as_micros() % 1_000_000) as f64 / 1e6;
        let sum: u64 = self.buckets.iter().sum();
        (sum as f64 / (4.0 + part)) as u64
    }

    /// All bytes counted.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct PeerSession {
    config: SessionConfig,
    direction: Direction,
    state: State,
    decoder: Decoder,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    started: Time,
    last_sent: Time,
    last_received: Time,
    peer_id: Option<PeerId>,
    fast: bool,
    extensions: bool,
    their_ext: Option<ExtendedHandshake>,
    our_ext_ids: [Option<&'static str>; 3],
    seen_availability: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    outstanding: VecDeque<(BlockRequest, Time)>,
    peer_requests: usize,
    events: VecDeque<SessionEvent>,
    min_queue: u32,
    /// Payload bytes received in `piece` messages.
    pub download: RateMeter,
    /// Payload bytes sent in `piece` messages.
    pub upload: RateMeter,
}

/// Our local extension ids, advertised in `m`.
const OUR_UT_METADATA: u8 = 1;
const OUR_UT_PEX: u8 = 2;

impl PeerSession {
    /// The settings the session runs with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// A new session. Outgoing sessions queue our handshake at once.
    pub fn new(config: SessionConfig, direction: Direction, now: Time) -> Self {
        let mut s = PeerSession {
            decoder: Decoder::new().with_max_frame_len(config.max_frame_len),
            config,
            direction,
            state: State::AwaitingHandshake,
            out: VecDeque::new(),
            out_bytes: 0,
            started: now,
            last_sent: now,
            last_received: now,
            peer_id: None,
            fast: false,
            extensions: false,
            their_ext: None,
            our_ext_ids: [None, Some(ext::UT_METADATA), Some(ext::UT_PEX)],
            seen_availability: false,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            outstanding: VecDeque::new(),
            peer_requests: 0,
            events: VecDeque::new(),
            min_queue: 8,
            download: RateMeter::new(),
            upload: RateMeter::new(),
        };
        if direction == Direction::Outgoing {
            s.queue_handshake(now);
        }
        s
    }

    fn queue_handshake(&mut self, now: Time) {
        let mut h = Handshake::new(self.config.info_hash, self.config.peer_id);
        h.reserved.set_extension_protocol(self.config.extensions);
        h.reserved.set_fast_extension(self.config.fast);
        h.reserved.set_dht(self.config.dht_port.is_some());
        self.push(now, Bytes::copy_from_slice(&h.to_bytes()));
    }

    fn push(&mut self, now: Time, b: Bytes) {
        self.out_bytes += b.len();
        self.out.push_back(b);
        self.last_sent = now;
    }

    fn send(&mut self, now: Time, m: &Message) {
        let mut buf = BytesMut::with_capacity(m.encoded_len());
        m.encode(&mut buf);
        self.push(now, buf.freeze());
    }

    /// Which side opened the connection.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The peer's id, once the handshake is in.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.peer_id
    }

    /// True once both handshakes are exchanged.
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }

    /// True when both sides offered the fast extension.
    pub fn supports_fast(&self) -> bool {
        self.fast
    }

    /// True when both sides offered the extension protocol.
    pub fn supports_extensions(&self) -> bool {
        self.extensions
    }

    /// The peer's extension handshake, if received.
    pub fn their_extensions(&self) -> Option<&ExtendedHandshake> {
        self.their_ext.as_ref()
    }

    /// Whether the peer accepts the named extension.
    pub fn peer_supports(&self, name: &str) -> bool {
        self.extension_id(name).is_some()
    }

    fn extension_id(&self, name: &str) -> Option<u8> {
        self.their_ext
            .as_ref()
            .and_then(|e| e.m.get(name).copied())
            .filter(|&id| id != 0)
    }

    /// We are choking the peer.
    pub fn am_choking(&self) -> bool {
        self.am_choking
    }

    /// We are interested in the peer.
    pub fn am_interested(&self) -> bool {
        self.am_interested
    }

    /// The peer is choking us.
    pub fn peer_choking(&self) -> bool {
        self.peer_choking
    }

    /// The peer is interested in us.
    pub fn peer_interested(&self) -> bool {
        self.peer_interested
    }

    /// Our requests awaiting an answer.
    pub fn outstanding(&self) -> impl Iterator<Item = &BlockRequest> {
        self.outstanding.iter().map(|(r, _)| r)
    }

    /// Number of our requests awaiting an answer.
    pub fn num_outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Number of the peer's requests we have accepted and not yet answered.
    pub fn num_peer_requests(&self) -> usize {
        self.peer_requests
    }

    /// Bytes queued for sending and not yet taken by the driver.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// How many more requests we should send now: the adaptive queue depth minus what is out.
    ///
    /// The depth follows the download rate (about two seconds of data in flight), starts at 8,
    /// and never exceeds the peer's `reqq` or our own limit.
    pub fn request_slots(&mut self, now: Time) -> usize {
        let rate = self.download.rate(now);
        let by_rate = (rate * 2).div_ceil(u64::from(BLOCK_SIZE)) as u32;
        let reqq = self
            .their_ext
            .as_ref()
            .and_then(|e| e.reqq)
            .unwrap_or(250)
            .max(1);
        let cap = reqq.min(self.config.max_our_requests);
        let target = by_rate.max(self.min_queue).min(cap.max(1));
        (target as usize).saturating_sub(self.outstanding.len())
    }

    /// Feeds bytes received from the peer. On error the session is closed; the caller drops
    /// the connection.
    pub fn receive(&mut self, now: Time, data: &[u8]) -> Result<(), SessionError> {
        self.receive_with(now, |d| d.extend(data))
    }

    /// Like [`receive`](Self::receive), taking ownership of the bytes: block payloads are then
    /// handed on as slices of `data` instead of being copied into the decoder's buffer.
    pub fn receive_owned(&mut self, now: Time, data: BytesMut) -> Result<(), SessionError> {
        self.receive_with(now, |d| d.extend_owned(data))
    }

    /// Adds bytes to the decoder with `add` and processes what it can decode.
    fn receive_with(
        &mut self,
        now: Time,
        add: impl FnOnce(&mut Decoder),
    ) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.last_received = now;
        add(&mut self.decoder);
        let r = self.process(now);
        if r.is_err() {
            self.state = State::Closed;
        }
        r
    }

    fn process(&mut self, now: Time) -> Result<(), SessionError> {
        loop {
            let ev = match self.decoder.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match ev {
                Event::HandshakeHeader(h) => {
                    if h.info_hash != self.config.info_hash {
                        return Err(SessionError::WrongInfoHash);
                    }
                }
                Event::Handshake(h) => {
                    if h.info_hash != self.config.info_hash {
                        return Err(SessionError::WrongInfoHash);
                    }
                    self.fast = self.config.fast && h.reserved.fast_extension();
                    self.extensions = self.config.extensions && h.reserved.extension_protocol();
                    self.peer_id = Some(h.peer_id);
                    if self.direction == Direction::Incoming {
                        self.queue_handshake(now);
                    }
                    if let (Some(port), true) = (self.config.dht_port, h.reserved.dht()) {
                        // BEP 5: after the handshake, to peers whose handshake says DHT.
                        self.send(now, &Message::Port(port));
                    }
                    self.state = State::Active;
                    self.events
                        .push_back(SessionEvent::Handshake { peer_id: h.peer_id });
                }
                Event::Message(m) => self.on_message(now, m)?,
            }
        }
    }

    fn on_message(&mut self, now: Time, m: Message) -> Result<(), SessionError> {
        use SessionEvent as E;
        if m.kind().is_fast_extension() && !self.fast {
            return Err(SessionError::Protocol(
                "fast extension message without BEP 6",
            ));
        }
        match m {
            Message::KeepAlive => {}
            Message::Choke => {
                if !self.peer_choking {
                    self.peer_choking = true;
                    let dropped = if self.fast {
                        Vec::new()
                    } else {
                        self.outstanding.drain(..).map(|(r, _)| r).collect()
                    };
                    self.events.push_back(E::Choked { dropped });
                }
            }
            Message::Unchoke => {
                if self.peer_choking {
                    self.peer_choking = false;
                    self.events.push_back(E::Unchoked);
                }
            }
            Message::Interested => {
                if !self.peer_interested {
                    self.peer_interested = true;
                    self.events.push_back(E::Interested);
                }
            }
            Message::NotInterested => {
                if self.peer_interested {
                    self.peer_interested = false;
                    self.events.push_back(E::NotInterested);
                }
            }
            Message::Have { piece } => {
                self.seen_availability = true;
                self.events.push_back(E::Have(piece));
            }
            Message::Bitfield(b) => self.availability(E::Bitfield(b))?,
            Message::HaveAll => self.availability(E::HaveAll)?,
            Message::HaveNone => self.availability(E::HaveNone)?,
            Message::Request(r) => {
                if r.length == 0 || r.length > BLOCK_SIZE {
                    return Err(SessionError::Protocol("request larger than 16 KiB"));
                }
                if self.peer_requests >= self.config.max_peer_requests as usize {
                    if self.fast {
                        self.send(now, &Message::RejectRequest(r));
                    }
                    // Without BEP 6 an excess request is dropped silently.
                } else {
                    self.peer_requests += 1;
                    self.events.push_back(E::Request(r));
                }
            }
            Message::Cancel(r) => self.events.push_back(E::Cancel(r)),
            Message::Piece { index, begin, data } => {
                let request = BlockRequest::new(index, begin, data.len() as u32);
                let pos = self.outstanding.iter().position(|(r, _)| *r == request);
                let requested = if let Some(i) = pos {
                    self.outstanding.remove(i);
                    true
                } else {
                    false
                };
                self.download.add(now, data.len() as u64);
                self.min_queue = 8;
                self.events.push_back(E::Block {
                    request,
                    data,
                    requested,
                });
            }
            Message::RejectRequest(r) => {
                if let Some(i) = self.outstanding.iter().position(|(x, _)| *x == r) {
                    self.outstanding.remove(i);
                    self.events.push_back(E::Rejected(r));
                }
            }
            Message::AllowedFast(p) => self.events.push_back(E::AllowedFast(p)),
            Message::SuggestPiece(p) => self.events.push_back(E::Suggest(p)),
            Message::Port(port) => {
                // Only worth a ping when we run a DHT ourselves; port 0 is no node.
                if self.config.dht_port.is_some() && port != 0 {
                    self.events.push_back(E::DhtPort(port));
                }
            }
            Message::Extended { id, payload } => {
                if !self.extensions {
                    return Err(SessionError::Protocol("extended message without BEP 10"));
                }
                self.on_extended(id, payload)?;
            }
        }
        Ok(())
    }

    fn availability(&mut self, ev: SessionEvent) -> Result<(), SessionError> {
        if self.seen_availability {
            return Err(SessionError::Protocol(
                "bitfield, have all or have none after availability was known",
            ));
        }
        self.seen_availability = true;
        self.events.push_back(ev);
        Ok(())
    }

    fn on_extended(&mut self, id: u8, payload: Bytes) -> Result<(), SessionError> {
        let bad = |e: ext::ExtError| SessionError::Extension(e.to_string());
        if id == ext::HANDSHAKE_ID {
            let h = ExtendedHandshake::decode(&payload).map_err(bad)?;
            self.their_ext = Some(h.clone());
            self.events
                .push_back(SessionEvent::ExtendedHandshake(Box::new(h)));
            return Ok(());
        }
        match self.our_ext_ids.get(usize::from(id)).copied().flatten() {
            Some(ext::UT_METADATA) => {
                let m = MetadataMessage::decode(&payload).map_err(bad)?;
                self.events.push_back(SessionEvent::Metadata(m));
            }
            Some(ext::UT_PEX) if self.config.pex => {
                let m = PexMessage::decode(&payload).map_err(bad)?;
                self.events.push_back(SessionEvent::Pex(m));
            }
            // Unknown or disabled extension ids are ignored, as BEP 10 allows.
            _ => {}
        }
        Ok(())
    }

    /// The next thing the peer did.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Takes queued outgoing bytes, up to about `max` bytes (at least one chunk).
    pub fn poll_transmit(&mut self, max: usize) -> Option<Bytes> {
        let first = self.out.pop_front()?;
        self.out_bytes -= first.len();
        if first.len() >= max || self.out.is_empty() {
            return Some(first);
        }
        let mut buf = BytesMut::with_capacity(max.min(self.out_bytes + first.len()));
        buf.extend_from_slice(&first);
        while let Some(next) = self.out.front() {
            if buf.len() + next.len() > max {
                break;
            }
            buf.extend_from_slice(next);
            self.out_bytes -= next.len();
            self.out.pop_front();
        }
        Some(buf.freeze())
    }

    /// Takes the next queued chunk without coalescing (zero copy for block payloads).
    pub fn poll_chunk(&mut self) -> Option<Bytes> {
        let b = self.out.pop_front()?;
        self.out_bytes -= b.len();
        Some(b)
    }

    /// Sends our extension handshake. `metadata_size` is set when we have the info dictionary.
    pub fn send_extended_handshake(
        &mut self,
        now: Time,
        metadata_size: Option<u32>,
        yourip: Option<std::net::IpAddr>,
    ) {
        if !self.extensions {
            return;
        }
        let mut h = ExtendedHandshake::default();
        h.m.insert(ext::UT_METADATA.to_string(), OUR_UT_METADATA);
        if self.config.pex {
            h.m.insert(ext::UT_PEX.to_string(), OUR_UT_PEX);
        }
        h.v = Some(self.config.client_name.clone());
        h.p = self.config.listen_port;
        h.reqq = Some(self.config.max_peer_requests);
        h.metadata_size = metadata_size;
        h.yourip = yourip;
        self.send(now, &h.to_message());
    }

    /// Announces our pieces as the first message: `have all` / `have none` with BEP 6, else a
    /// bitfield (omitted when we have nothing and the peer lacks BEP 6).
    pub fn send_availability(&mut self, now: Time, bitfield: Option<&crate::piece::Bitfield>) {
        match bitfield {
            Some(b) if b.is_full() && self.fast && !b.is_empty() => {
                self.send(now, &Message::HaveAll)
            }
            Some(b) if !b.is_clear() => self.send(
                now,
                &Message::Bitfield(Bytes::copy_from_slice(b.as_bytes())),
            ),
            _ if self.fast => self.send(now, &Message::HaveNone),
            _ => {}
        }
    }

    /// Sends `have`.
    pub fn send_have(&mut self, now: Time, piece: u32) {
        self.send(now, &Message::Have { piece });
    }

    /// Chokes the peer. With BEP 6 its pending requests must be rejected by the caller
    /// (the torrent knows which reads are in flight); without it they are void.
    pub fn choke(&mut self, now: Time) {
        if !self.am_choking {
            self.am_choking = true;
            self.send(now, &Message::Choke);
            if !self.fast {
                self.peer_requests = 0;
            }
        }
    }

    /// Unchokes the peer.
    pub fn unchoke(&mut self, now: Time) {
        if self.am_choking {
            self.am_choking = false;
            self.send(now, &Message::Unchoke);
        }
    }

    /// Sets our interest.
    pub fn set_interested(&mut self, now: Time, interested: bool) {
        if self.am_interested != interested {
            self.am_interested = interested;
            let m = if interested {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send(now, &m);
        }
    }

    /// Requests a block and starts its timer.
    pub fn request(&mut self, now: Time, r: BlockRequest) {
        self.outstanding.push_back((r, now));
        self.send(now, &Message::Request(r));
    }

    /// Withdraws a request (end-game duplicate, or no longer wanted).
    pub fn cancel(&mut self, now: Time, r: BlockRequest) {
        if let Some(i) = self.outstanding.iter().position(|(x, _)| *x == r) {
            self.outstanding.remove(i);
            self.send(now, &Message::Cancel(r));
        }
    }

    /// Forgets all our outstanding requests without telling the peer (e.g. after we gave up).
    pub fn forget_requests(&mut self) -> Vec<BlockRequest> {
        self.outstanding.drain(..).map(|(r, _)| r).collect()
    }

    /// Answers one of the peer's requests with data (header and payload queued separately, so
    /// the payload is not copied).
    pub fn send_block(&mut self, now: Time, r: BlockRequest, data: Bytes) {
        self.peer_requests = self.peer_requests.saturating_sub(1);
        if self.am_choking && !self.fast {
            return;
        }
        let header = encode_piece_header(r.index, r.begin, data.len() as u32);
        self.upload.add(now, data.len() as u64);
        self.push(now, Bytes::copy_from_slice(&header));
        self.push(now, data);
    }

    /// Rejects one of the peer's requests (BEP 6), or just forgets it without BEP 6.
    pub fn reject(&mut self, now: Time, r: BlockRequest) {
        self.peer_requests = self.peer_requests.saturating_sub(1);
        if self.fast {
            self.send(now, &Message::RejectRequest(r));
        }
    }

    /// A request of the peer's that we drop without answering (it cancelled it).
    pub fn drop_peer_request(&mut self) {
        self.peer_requests = self.peer_requests.saturating_sub(1);
    }

    /// Sends BEP 6 `allowed fast`.
    pub fn send_allowed_fast(&mut self, now: Time, piece: u32) {
        if self.fast {
            self.send(now, &Message::AllowedFast(piece));
        }
    }

    /// Sends a `ut_metadata` message, if the peer supports it.
    pub fn send_metadata(&mut self, now: Time, m: &MetadataMessage) -> bool {
        match self.extension_id(ext::UT_METADATA) {
            Some(id) => {
                self.send(now, &m.to_message(id));
                true
            }
            None => false,
        }
    }

    /// Sends a `ut_pex` message, if the peer supports it.
    pub fn send_pex(&mut self, now: Time, m: &PexMessage) -> bool {
        match self.extension_id(ext::UT_PEX) {
            Some(id) if self.config.pex => {
                self.send(now, &m.to_message(id));
                true
            }
            _ => false,
        }
    }

    /// Runs timers: handshake and idle timeouts, request timeouts, keep-alives.
    pub fn handle_timeout(&mut self, now: Time) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Ok(());
        }
        if self.state == State::AwaitingHandshake
            && now.saturating_since(self.started) >= self.config.handshake_timeout
        {
            self.state = State::Closed;
            return Err(SessionError::HandshakeTimeout);
        }
        if now.saturating_since(self.last_received) >= self.config.idle_timeout {
            self.state = State::Closed;
            return Err(SessionError::Idle);
        }
        let timeout = self.config.request_timeout;
        if self
            .outstanding
            .front()
            .is_some_and(|(_, t)| now.saturating_since(*t) >= timeout)
        {
            // The peer is stalled: give up on everything it owes, so others can serve it.
            let lost = self.forget_requests();
            self.min_queue = 2;
            self.events.push_back(SessionEvent::TimedOut(lost));
        }
        if self.state == State::Active
            && now.saturating_since(self.last_sent) >= self.config.keepalive_interval
        {
            self.send(now, &Message::KeepAlive);
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to do.
    pub fn next_timeout(&self) -> Time {
        let mut t = self.last_received + self.config.idle_timeout;
        if self.state == State::AwaitingHandshake {
            t = t.min(self.started + self.config.handshake_timeout);
        } else {
            t = t.min(self.last_sent + self.config.keepalive_interval);
        }
        if let Some((_, sent)) = self.outstanding.front() {
            t = t.min(*sent + self.config.request_timeout);
        }
        t
    }

    /// Marks the session closed; further input is ignored.
    pub fn close(&mut self) {
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id20;

    fn cfg(peer: u8) -> SessionConfig {
        SessionConfig::new(Id20([9; 20]), Id20([peer; 20]))
    }

    fn drain(s: &mut PeerSession) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = s.poll_chunk() {
            v.extend_from_slice(&b);
        }
        v
    }

    fn events(s: &mut PeerSession) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// Two sessions wired together, handshakes exchanged.
    fn pair() -> (PeerSession, PeerSession) {
        let t = Time::ZERO;
        let mut a = PeerSession::new(cfg(1), Direction::Outgoing, t);
        let mut b = PeerSession::new(cfg(2), Direction::Incoming, t);
        b.receive(t, &drain(&mut a)).unwrap();
        a.receive(t, &drain(&mut b)).unwrap();
        assert_eq!(
            events(&mut a),
            [SessionEvent::Handshake {
                peer_id: Id20([2; 20])
            }]
        );
        assert_eq!(
            events(&mut b),
            [SessionEvent::Handshake {
                peer_id: Id20([1; 20])
            }]
        );
        assert!(a.supports_fast() && a.supports_extensions());
        (a, b)
    }

    #[test]
    fn handshake_then_extension_handshake() {
        let (mut a, mut b) = pair();
        let t = Time::ZERO;
        a.send_extended_handshake(t, Some(1234), None);
        b.receive(t, &drain(&mut a)).unwrap();
        match events(&mut b).as_slice() {
            [SessionEvent::ExtendedHandshake(h)] => {
                assert_eq!(h.metadata_size, Some(1234));
                assert_eq!(h.reqq, Some(250));
            }
            other => panic!("{other:?}"),
        }
        assert!(b.peer_supports(ext::UT_METADATA));
        assert!(b.peer_supports(ext::UT_PEX));
    }

    #[test]
    fn port_message_goes_to_dht_peers_only() {
        let t = Time::ZERO;
        // a runs a DHT node on 6882, b too on 7000, c none.
        let mut ca = cfg(1);
        ca.dht_port = Some(6882);
        let mut cb = cfg(2);
        cb.dht_port = Some(7000);
        let mut a = PeerSession::new(ca.clone(), Direction::Outgoing, t);
        let mut b = PeerSession::new(cb, Direction::Incoming, t);
        b.receive(t, &drain(&mut a)).unwrap();
        a.receive(t, &drain(&mut b)).unwrap();
        b.receive(t, &drain(&mut a)).unwrap();
        let ea = events(&mut a);
        let eb = events(&mut b);
        assert!(ea.contains(&SessionEvent::DhtPort(7000)), "{ea:?}");
        assert!(eb.contains(&SessionEvent::DhtPort(6882)), "{eb:?}");
        // A peer without a DHT bit is sent no PORT, and its PORT is ignored by a session
        // without a DHT.
        let mut a = PeerSession::new(ca, Direction::Outgoing, t);
        let mut c = PeerSession::new(cfg(3), Direction::Incoming, t);
        c.receive(t, &drain(&mut a)).unwrap();
        let from_c = drain(&mut c);
        a.receive(t, &from_c).unwrap();
        assert!(!events(&mut a)
            .iter()
            .any(|e| matches!(e, SessionEvent::DhtPort(_))));
        let from_a = drain(&mut a);
        assert!(!from_a.windows(7).any(|w| w == [0, 0, 0, 3, 9, 0x1a, 0xe2]));
        c.receive(t, &from_a).unwrap();
        events(&mut c);
        let mut port = BytesMut::new();
        Message::Port(6882).encode(&mut port);
        c.receive(t, &port).unwrap();
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn wrong_info_hash_is_refused_after_48_bytes() {
        let t = Time::ZERO;
        let mut other = PeerSession::new(
            SessionConfig::new(Id20([8; 20]), Id20([3; 20])),
            Direction::Outgoing,
            t,
        );
        let mut b = PeerSession::new(cfg(2), Direction::Incoming, t);
        let bytes = drain(&mut other);
        assert_eq!(b.receive(t, &bytes[..48]), Err(SessionError::WrongInfoHash));
        // Nothing of ours was sent to the wrong torrent's peer.
        assert!(b.poll_chunk().is_none());
    }

    #[test]
    fn requests_pieces_and_timeouts() {
        let (mut a, mut b) = pair();
        let t = Time::ZERO;
        b.unchoke(t);
        a.receive(t, &drain(&mut b)).unwrap();
        assert_eq!(events(&mut a), [SessionEvent::Unchoked]);
        assert_eq!(a.request_slots(t), 8);
        let r1 = BlockRequest::new(0, 0, 16384);
        let r2 = BlockRequest::new(0, 16384, 16384);
        a.request(t, r1);
        a.request(t, r2);
        b.receive(t, &drain(&mut a)).unwrap();
        assert_eq!(
            events(&mut b),
            [SessionEvent::Request(r1), SessionEvent::Request(r2)]
        );
        b.send_block(t, r1, Bytes::from(vec![5u8; 16384]));
        a.receive(t, &drain(&mut b)).unwrap();
        match events(&mut a).as_slice() {
            [SessionEvent::Block {
                request,
                data,
                requested: true,
            }] => {
                assert_eq!(*request, r1);
                assert_eq!(data.len(), 16384);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.num_outstanding(), 1);
        // r2 never comes: it times out.
        let later = t + Duration::from_secs(31);
        a.handle_timeout(later).unwrap();
        assert_eq!(events(&mut a), [SessionEvent::TimedOut(vec![r2])]);
        assert_eq!(a.num_outstanding(), 0);
    }

    #[test]
    fn non_fast_choke_drops_requests_and_fast_messages_are_refused() {
        let t = Time::ZERO;
        let mut c = cfg(1);
        c.fast = false;
        let mut a = PeerSession::new(c, Direction::Outgoing, t);
        let mut b = PeerSession::new(cfg(2), Direction::Incoming, t);
        b.receive(t, &drain(&mut a)).unwrap();
        a.receive(t, &drain(&mut b)).unwrap();
        events(&mut a);
        events(&mut b);
        assert!(!a.supports_fast());
        b.unchoke(t);
        a.receive(t, &drain(&mut b)).unwrap();
        let r = BlockRequest::new(1, 0, 100);
        a.request(t, r);
        b.choke(t);
        a.receive(t, &drain(&mut b)).unwrap();
        assert_eq!(
            events(&mut a),
            [
                SessionEvent::Unchoked,
                SessionEvent::Choked { dropped: vec![r] }
            ]
        );
        // A fast-extension message from b is a protocol violation for a.
        let mut buf = BytesMut::new();
        Message::HaveAll.encode(&mut buf);
        assert!(matches!(a.receive(t, &buf), Err(SessionError::Protocol(_))));
    }

    #[test]
    fn peer_requests_are_bounded() {
        let (mut a, mut b) = pair();
        let t = Time::ZERO;
        for i in 0..300 {
            a.request(t, BlockRequest::new(i, 0, 16384));
        }
        b.receive(t, &drain(&mut a)).unwrap();
        let evs = events(&mut b);
        assert_eq!(evs.len(), 250);
        assert_eq!(b.num_peer_requests(), 250);
        // The 50 excess requests were rejected (fast extension).
        a.receive(t, &drain(&mut b)).unwrap();
        let rejected = events(&mut a)
            .into_iter()
            .filter(|e| matches!(e, SessionEvent::Rejected(_)))
            .count();
        assert_eq!(rejected, 50);
        // Oversized request is a protocol error.
        let mut buf = BytesMut::new();
        Message::Request(BlockRequest::new(0, 0, 1 << 20)).encode(&mut buf);
        assert!(b.receive(t, &buf).is_err());
    }

    #[test]
    fn second_bitfield_is_a_violation() {
        let (mut a, mut b) = pair();
        let t = Time::ZERO;
        a.send_availability(t, Some(&crate::piece::Bitfield::full(10)));
        b.receive(t, &drain(&mut a)).unwrap();
        assert_eq!(events(&mut b), [SessionEvent::HaveAll]);
        let mut buf = BytesMut::new();
        Message::Bitfield(Bytes::from_static(&[0xff, 0xc0])).encode(&mut buf);
        assert!(matches!(b.receive(t, &buf), Err(SessionError::Protocol(_))));
    }

    #[test]
    fn keepalive_idle_and_handshake_timeouts() {
        let (mut a, _b) = pair();
        let t = Time::ZERO + Duration::from_secs(61);
        a.handle_timeout(t).unwrap();
        assert_eq!(drain(&mut a), [0, 0, 0, 0]);
        assert_eq!(
            a.handle_timeout(Time::ZERO + Duration::from_secs(181)),
            Err(SessionError::Idle)
        );
        let mut lone = PeerSession::new(cfg(1), Direction::Incoming, Time::ZERO);
        assert!(lone.next_timeout() <= Time::ZERO + Duration::from_secs(20));
        assert_eq!(
            lone.handle_timeout(Time::ZERO + Duration::from_secs(20)),
            Err(SessionError::HandshakeTimeout)
        );
    }

    #[test]
    fn queue_depth_adapts_to_rate() {
        let (mut a, _b) = pair();
        let mut t = Time::ZERO;
        assert_eq!(a.request_slots(t), 8);
        // 4 MB/s for a few seconds: about 2 s of blocks, capped by reqq 250.
        for _ in 0..50 {
            t += Duration::from_millis(100);
            a.download.add(t, 400_000);
        }
        let slots = a.request_slots(t);
        assert!(slots > 200 && slots <= 250, "{slots}");
        // A slow peer gets a small queue.
        let (mut c, _d) = pair();
        let mut t = Time::ZERO;
        for _ in 0..50 {
            t += Duration::from_millis(100);
            c.download.add(t, 1000);
        }
        assert!(c.request_slots(t) <= 8);
    }
}
