//! Scripted peers that speak the wire protocol through their own [`PeerSession`]s instead of
//! a [`Torrent`](webtorrent_core::torrent::Torrent): adversaries that misbehave in ways the
//! torrent state machine never would (it sends its own extension handshake, PEX and answers).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use webtorrent_core::ext::{MetadataMessage, PexFlags, PexMessage, METADATA_PIECE_LEN};
use webtorrent_core::peer::{Direction, PeerSession, SessionConfig, SessionEvent};
use webtorrent_core::piece::Bitfield;
use webtorrent_core::{InfoHash, PeerId, PeerKey, Time};

/// Addresses in a PEX flood: `100.64.0.0/10` (shared address space), never a node's.
const MADE_UP_BASE: u32 = 0x6440_0000;

/// Whether `addr` is one a [`Script::PexFlooder`] made up.
pub fn is_made_up(addr: SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => u32::from(ip) & 0xffc0_0000 == MADE_UP_BASE,
        IpAddr::V6(_) => false,
    }
}

/// How a [`Script::MetadataLiar`] answers metadata requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiarReply {
    /// Not at all.
    Nothing,
    /// With junk of the claimed size.
    Junk,
    /// With a reject, followed at once by its size announced again.
    Reject,
}

/// How a raw peer misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Announces `metadata_size: size` in its extension handshake, and again in bursts of
    /// three every 100 ms (so its offer is renewed whenever it lapses), and has no pieces.
    MetadataLiar { size: u32, reply: LiarReply },
    /// Sends every peer a `ut_pex` message with 50 made-up addresses every 250 ms.
    PexFlooder,
    /// Unchokes, claims all `pieces` and never answers a request.
    Silent { pieces: u32 },
}

/// Addresses in each flood message (BEP 11's limit, as a flooder that hopes to be heard
/// would send).
pub const FLOOD_ADDRS: usize = 50;

/// A scripted peer: one session per connection, driven by a [`Script`].
pub struct RawPeer {
    pub script: Script,
    config: SessionConfig,
    sessions: BTreeMap<PeerKey, PeerSession>,
    /// Connections it dropped, for the simulation to close.
    closing: VecDeque<PeerKey>,
    next_tick: Time,
    next_made_up: u32,
    /// Made-up addresses sent in PEX messages.
    pub pex_addrs_sent: u64,
    /// Metadata requests received.
    pub metadata_requests: u64,
    /// Block requests received (and ignored or rejected).
    pub block_requests: u64,
}

impl RawPeer {
    pub fn new(script: Script, info_hash: InfoHash, peer_id: PeerId, now: Time) -> Self {
        let mut config = SessionConfig::new(info_hash, peer_id);
        config.listen_port = Some(6881);
        RawPeer {
            script,
            config,
            sessions: BTreeMap::new(),
            closing: VecDeque::new(),
            next_tick: now,
            next_made_up: 0,
            pex_addrs_sent: 0,
            metadata_requests: 0,
            block_requests: 0,
        }
    }

    fn interval(&self) -> Duration {
        match self.script {
            Script::PexFlooder => Duration::from_millis(250),
            Script::MetadataLiar { .. } => Duration::from_millis(100),
            Script::Silent { .. } => Duration::from_secs(1),
        }
    }

    /// Connections currently open.
    pub fn num_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn add_peer(&mut self, now: Time, key: PeerKey, direction: Direction) -> bool {
        if self.sessions.contains_key(&key) {
            return false;
        }
        let s = PeerSession::new(self.config.clone(), direction, now);
        self.sessions.insert(key, s);
        true
    }

    pub fn peer_data(&mut self, now: Time, key: PeerKey, data: &[u8]) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.receive(now, data).is_err() {
            self.drop_session(key);
            return;
        }
        self.process(now, key);
    }

    pub fn peer_closed(&mut self, key: PeerKey) {
        self.sessions.remove(&key);
    }

    fn drop_session(&mut self, key: PeerKey) {
        if self.sessions.remove(&key).is_some() {
            self.closing.push_back(key);
        }
    }

    fn metadata_size(&self) -> Option<u32> {
        match self.script {
            Script::MetadataLiar { size, .. } => Some(size),
            _ => None,
        }
    }

    fn process(&mut self, now: Time, key: PeerKey) {
        let script = self.script;
        let size = self.metadata_size();
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let mut flood = false;
        while let Some(ev) = s.poll_event() {
            match ev {
                SessionEvent::Handshake { .. } => {
                    s.send_extended_handshake(now, size, None);
                    match script {
                        Script::Silent { pieces } => {
                            s.send_availability(now, Some(&Bitfield::full(pieces)));
                            s.unchoke(now);
                        }
                        _ => s.send_availability(now, None),
                    }
                }
                SessionEvent::ExtendedHandshake(_) => flood = script == Script::PexFlooder,
                SessionEvent::Request(r) => {
                    self.block_requests += 1;
                    match script {
                        // Never answered, and not counted against the peer's queue either.
                        Script::Silent { .. } => s.drop_peer_request(),
                        _ => s.reject(now, r),
                    }
                }
                SessionEvent::Metadata(MetadataMessage::Request { piece }) => {
                    self.metadata_requests += 1;
                    match script {
                        Script::MetadataLiar {
                            size,
                            reply: LiarReply::Junk,
                        } => {
                            let start = piece.saturating_mul(METADATA_PIECE_LEN);
                            let len = size.saturating_sub(start).min(METADATA_PIECE_LEN);
                            let data = Bytes::from(vec![0x5a; len as usize]);
                            s.send_metadata(
                                now,
                                &MetadataMessage::Data {
                                    piece,
                                    total_size: size,
                                    data,
                                },
                            );
                        }
                        Script::MetadataLiar {
                            size,
                            reply: LiarReply::Reject,
                        } => {
                            s.send_metadata(now, &MetadataMessage::Reject { piece });
                            s.send_extended_handshake(now, Some(size), None);
                        }
                        Script::MetadataLiar {
                            reply: LiarReply::Nothing,
                            ..
                        } => {}
                        _ => {
                            s.send_metadata(now, &MetadataMessage::Reject { piece });
                        }
                    }
                }
                _ => {}
            }
        }
        if flood {
            self.flood(now, key);
        }
    }

    /// Sends one PEX message of made-up addresses on connection `key`.
    fn flood(&mut self, now: Time, key: PeerKey) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let mut msg = PexMessage::default();
        for _ in 0..FLOOD_ADDRS {
            let ip = Ipv4Addr::from(MADE_UP_BASE + self.next_made_up);
            self.next_made_up += 1;
            msg.added
                .push((SocketAddr::new(IpAddr::V4(ip), 6881), PexFlags::SEED));
        }
        if s.send_pex(now, &msg) {
            self.pex_addrs_sent += FLOOD_ADDRS as u64;
        }
    }

    pub fn poll_timeout(&self) -> Time {
        self.next_tick
    }

    pub fn handle_timeout(&mut self, now: Time) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.interval();
        let keys: Vec<PeerKey> = self.sessions.keys().copied().collect();
        let size = self.metadata_size();
        for key in keys {
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            if s.handle_timeout(now).is_err() {
                self.drop_session(key);
                continue;
            }
            if !s.is_active() {
                continue;
            }
            match self.script {
                Script::MetadataLiar { .. } => {
                    for _ in 0..3 {
                        s.send_extended_handshake(now, size, None);
                    }
                }
                Script::PexFlooder => self.flood(now, key),
                Script::Silent { .. } => {}
            }
        }
    }

    /// The next connection it closes itself.
    pub fn poll_close(&mut self) -> Option<PeerKey> {
        self.closing.pop_front()
    }

    /// The next bytes to send: `(connection, bytes)`.
    pub fn poll_transmit(&mut self) -> Option<(PeerKey, Bytes)> {
        self.sessions
            .iter_mut()
            .find_map(|(k, s)| s.poll_chunk().map(|b| (*k, b)))
    }
}
