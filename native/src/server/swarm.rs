//! The tracker's bookkeeping, sans-IO: swarms of peers with expiry, seeder and leecher counts,
//! peer selection for replies and the WebSocket signaling (offers out, answers back). Time comes
//! in as an argument and randomness from a seeded generator, so all of it runs in unit tests.
//!
//! It follows bittorrent-tracker 11.2.3 (`lib/server/swarm.js` and `server.js`):
//!
//! * One swarm per info hash holds both kinds of peers and counts them together, but HTTP/UDP
//!   peers (keyed by `ip:port`) and WebSocket peers (keyed by peer id) are kept apart when
//!   peers are handed out: an HTTP or UDP announcer gets only HTTP/UDP peers (itself
//!   included), a WebSocket announcer only other WebSocket peers, as offers.
//! * Events: `started` for a known peer and `completed` by a seeder are updates; `completed`,
//!   `paused` or a regular announce from an unknown peer start it; `stopped` from an unknown
//!   peer does nothing. A peer becomes a seeder when it announces `left=0` and never goes back.
//! * A peer that has not announced for [`TrackerConfig::peer_ttl`] (20 min) expires. A full
//!   swarm (1000 peers) drops its least recently announced peer to admit a new one.
//! * A WebSocket answer is also an announce of the answering peer (no reply is sent to it); a
//!   closed socket counts as `stopped` for every swarm it announced in.
//! * Scrape: `downloaded` is reported equal to `complete`, as bittorrent-tracker does.
//!
//! Bounds beyond bittorrent-tracker's: at most [`TrackerConfig::max_torrents`] swarms (the least
//! recently announced one is dropped for a new one) and [`TrackerConfig::max_peers`] peers in
//! all (peers of the least recently announced swarms go first), and at most
//! [`TrackerConfig::max_torrents_per_socket`] swarms per WebSocket.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use webtorrent_core::rng::Rng;
use webtorrent_core::tracker::ws::{
    AnnounceReply, AnswerMessage, ClientMessage, Failure, OfferMessage, ScrapeReply,
    TrackerMessage, WsAction,
};
use webtorrent_core::tracker::{Event, Peer, ScrapeFile, MAX_SCRAPE_HASHES};
use webtorrent_core::{InfoHash, PeerId, Time};

use super::lru::LruMap;
use super::peerid;
use super::stats::Stats;

/// Peers in a reply when the announce does not say (bittorrent-tracker's
/// `DEFAULT_ANNOUNCE_PEERS`).
pub const DEFAULT_NUMWANT: usize = 50;

/// Most peers in one reply, and most offers forwarded for one announce (bittorrent-tracker's
/// `MAX_ANNOUNCE_PEERS`; keeps a UDP reply under 512 bytes for IPv4).
pub const MAX_NUMWANT: usize = 82;

/// Settings of a [`Tracker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Announce interval given to HTTP and UDP clients (and `min_request_interval` of scrapes);
    /// WebSocket clients get a fifth of it. Default 10 min.
    pub interval: Duration,
    /// A peer that has not announced for this long is dropped. Default 20 min.
    pub peer_ttl: Duration,
    /// Most peers in one swarm. Default 1000.
    pub max_peers_per_swarm: usize,
    /// Most swarms. Default 100 000.
    pub max_torrents: usize,
    /// Most peers in all swarms together. Default 1 000 000.
    pub max_peers: usize,
    /// Most swarms one WebSocket connection may announce in. Default 1000.
    pub max_torrents_per_socket: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            interval: Duration::from_secs(600),
            peer_ttl: Duration::from_secs(20 * 60),
            max_peers_per_swarm: 1000,
            max_torrents: 100_000,
            max_peers: 1_000_000,
            max_torrents_per_socket: 1000,
        }
    }
}

impl TrackerConfig {
    /// The announce interval for HTTP and UDP clients, in whole seconds (at least 1).
    pub fn interval_secs(&self) -> u32 {
        u32::try_from(self.interval.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    /// The announce interval for WebSocket clients: a fifth of [`interval_secs`]
    /// (rounded up), as bittorrent-tracker sends (2 min by default).
    ///
    /// [`interval_secs`]: TrackerConfig::interval_secs
    pub fn ws_interval_secs(&self) -> u32 {
        self.interval_secs().div_ceil(5)
    }
}

/// Most swarms remembered as changed between two [`Tracker::take_changed`] calls; announces
/// beyond that are not remembered (the swarm is seen again at its peers' next announce).
pub const MAX_CHANGED: usize = 4096;

/// Seeders and leechers of one swarm on each side: HTTP/UDP peers (desktop clients, TCP) and
/// WebSocket peers (browsers, WebRTC), as the bridge needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwarmSides {
    /// HTTP/UDP seeders.
    pub net_seeders: u32,
    /// HTTP/UDP leechers.
    pub net_leechers: u32,
    /// WebSocket seeders.
    pub ws_seeders: u32,
    /// WebSocket leechers.
    pub ws_leechers: u32,
}

impl SwarmSides {
    /// Whether one side has a seeder while the other side has a leecher: the swarm needs a
    /// peer on both sides to move the data across.
    pub fn one_sided(&self) -> bool {
        (self.ws_seeders > 0 && self.net_leechers > 0)
            || (self.net_seeders > 0 && self.ws_leechers > 0)
    }

    /// Whether anybody still wants the torrent (a leecher on either side).
    pub fn wanted(&self) -> bool {
        self.net_leechers > 0 || self.ws_leechers > 0
    }
}

/// A driver's handle for one WebSocket connection, unique among open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// An HTTP or UDP announce, already validated and with the driver's choices applied (the
/// address the request came from, the `numwant` rule of its protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAnnounce {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer's id.
    pub peer_id: PeerId,
    /// Where the peer listens: the request's source IP and the announced port. IPv4-mapped
    /// IPv6 addresses should be given as IPv4.
    pub addr: SocketAddr,
    /// Bytes left; `None` when unknown (counts as a leecher).
    pub left: Option<u64>,
    /// The event; `None` for a regular announce.
    pub event: Option<Event>,
    /// Peers wanted, see [`http_numwant`] and [`udp_numwant`].
    pub numwant: usize,
}

/// The tracker's answer to an HTTP or UDP announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResult {
    /// Seeders in the swarm (both kinds of peers).
    pub complete: u32,
    /// Leechers in the swarm (both kinds of peers).
    pub incomplete: u32,
    /// HTTP/UDP peers, in random order, the announcer included when it is in the swarm.
    pub peers: Vec<Peer>,
}

/// A WebSocket message to send to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSend {
    /// The receiving connection.
    pub conn: ConnId,
    /// The message.
    pub message: TrackerMessage,
}

/// `numwant` of an HTTP announce as bittorrent-tracker reads it: absent, negative or 0 means
/// [`DEFAULT_NUMWANT`]; at most [`MAX_NUMWANT`].
pub fn http_numwant(numwant: Option<u32>) -> usize {
    match numwant {
        None | Some(0) => DEFAULT_NUMWANT,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(MAX_NUMWANT),
    }
}

/// `num_want` of a UDP announce as bittorrent-tracker reads it (an unsigned 32-bit field): 0
/// means [`DEFAULT_NUMWANT`], and -1 (`None` from the codec) is 2³²−1, so [`MAX_NUMWANT`].
pub fn udp_numwant(num_want: Option<u32>) -> usize {
    match num_want {
        Some(0) => DEFAULT_NUMWANT,
        None => MAX_NUMWANT,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(MAX_NUMWANT),
    }
}

const SEEDER: u8 = 1;
const LEECHER: u8 = 2;
const IPV4: u8 = 4;
const IPV6: u8 = 8;

/// The raw material of [`Stats`]: swarm counts and every peer entry's id and flags.
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    torrents: u64,
    active_torrents: u64,
    /// One per peer entry (a peer in several swarms appears several times).
    peers: Vec<(PeerId, u8)>,
}

impl StatsSnapshot {
    /// Merges the entries by peer id, counts and names the clients.
    pub fn finish(mut self) -> Stats {
        self.peers.sort_unstable_by_key(|a| a.0);
        let mut merged: Vec<(PeerId, u8)> = Vec::with_capacity(self.peers.len());
        for (id, flags) in self.peers {
            match merged.last_mut() {
                Some(last) if last.0 == id => last.1 |= flags,
                _ => merged.push((id, flags)),
            }
        }
        let count = |want: u8, not: u8| {
            merged
                .iter()
                .filter(|(_, f)| f & want == want && f & not == 0)
                .count() as u64
        };
        let mut clients: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (peer_id, _) in &merged {
            let info = peerid::identify(peer_id);
            let version = peerid::stats_version(peer_id, &info);
            *clients
                .entry(info.client)
                .or_default()
                .entry(version)
                .or_default() += 1;
        }
        Stats {
            torrents: self.torrents,
            active_torrents: self.active_torrents,
            peers_all: merged.len() as u64,
            peers_seeder_only: count(SEEDER, LEECHER),
            peers_leecher_only: count(LEECHER, SEEDER),
            peers_seeder_and_leecher: count(SEEDER | LEECHER, 0),
            peers_ipv4: count(IPV4, 0),
            peers_ipv6: count(IPV6, 0),
            clients,
            bridge: None,
        }
    }
}

/// HTTP/UDP peers are keyed by address, WebSocket peers by peer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Net(SocketAddr),
    Ws(PeerId),
}

#[derive(Debug, Clone)]
struct PeerEntry {
    peer_id: PeerId,
    addr: SocketAddr,
    complete: bool,
    /// When it last announced.
    modified: Time,
    /// Announce order across both kinds, to find the oldest of a swarm.
    stamp: u64,
    /// The WebSocket connection of a WebSocket peer.
    conn: Option<ConnId>,
}

#[derive(Debug, Default)]
struct Swarm {
    net: LruMap<SocketAddr, PeerEntry>,
    ws: LruMap<PeerId, PeerEntry>,
    complete: u32,
    incomplete: u32,
}

impl Swarm {
    fn len(&self) -> usize {
        self.net.len() + self.ws.len()
    }

    fn get(&self, key: &Key) -> Option<&PeerEntry> {
        match key {
            Key::Net(a) => self.net.get(a),
            Key::Ws(p) => self.ws.get(p),
        }
    }

    fn get_mut(&mut self, key: &Key) -> Option<&mut PeerEntry> {
        match key {
            Key::Net(a) => self.net.get_mut(a),
            Key::Ws(p) => self.ws.get_mut(p),
        }
    }

    fn touch(&mut self, key: &Key) {
        match key {
            Key::Net(a) => self.net.touch(a),
            Key::Ws(p) => self.ws.touch(p),
        };
    }

    fn insert(&mut self, key: Key, e: PeerEntry) {
        if e.complete {
            self.complete = self.complete.saturating_add(1);
        } else {
            self.incomplete = self.incomplete.saturating_add(1);
        }
        match key {
            Key::Net(a) => self.net.insert(a, e),
            Key::Ws(p) => self.ws.insert(p, e),
        };
    }

    fn uncount(&mut self, e: &PeerEntry) {
        if e.complete {
            self.complete = self.complete.saturating_sub(1);
        } else {
            self.incomplete = self.incomplete.saturating_sub(1);
        }
    }

    fn remove(&mut self, key: &Key) -> Option<PeerEntry> {
        let e = match key {
            Key::Net(a) => self.net.remove(a),
            Key::Ws(p) => self.ws.remove(p),
        }?;
        self.uncount(&e);
        Some(e)
    }

    /// The key of the least recently announced peer of either kind.
    fn oldest_key(&self) -> Option<Key> {
        match (self.net.oldest(), self.ws.oldest()) {
            (Some((a, n)), Some((p, w))) => Some(if n.stamp <= w.stamp {
                Key::Net(*a)
            } else {
                Key::Ws(*p)
            }),
            (Some((a, _)), None) => Some(Key::Net(*a)),
            (None, Some((p, _))) => Some(Key::Ws(*p)),
            (None, None) => None,
        }
    }
}

/// What the tracker knows of one WebSocket connection.
#[derive(Debug)]
struct WsConn {
    addr: SocketAddr,
    /// The swarms it announced in, and as whom.
    joined: Vec<(InfoHash, PeerId)>,
}

/// The tracker's state: every swarm, and the WebSocket connections' memberships.
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    swarms: LruMap<InfoHash, Swarm>,
    conns: HashMap<ConnId, WsConn>,
    total_peers: usize,
    stamp: u64,
    rng: Rng,
    /// Swarms announced in since the last [`Tracker::take_changed`] (at most [`MAX_CHANGED`]).
    changed: HashSet<InfoHash>,
}

impl Tracker {
    /// An empty tracker; `seed` drives the random choice of peers.
    pub fn new(config: TrackerConfig, seed: u64) -> Self {
        Tracker {
            config,
            swarms: LruMap::default(),
            conns: HashMap::new(),
            total_peers: 0,
            stamp: 0,
            rng: Rng::new(seed),
            changed: HashSet::new(),
        }
    }

    /// Remembers that `info_hash`'s swarm changed, within [`MAX_CHANGED`].
    fn mark_changed(&mut self, info_hash: InfoHash) {
        if self.changed.len() < MAX_CHANGED {
            self.changed.insert(info_hash);
        }
    }

    /// The swarms announced in (or left) since the last call, in no particular order.
    pub fn take_changed(&mut self) -> Vec<InfoHash> {
        self.changed.drain().collect()
    }

    /// Each side's seeders and leechers of a swarm, leaving out `exclude` (the bridge's own
    /// peer id). A client that announced on both sides (a page that also announces over HTTP,
    /// from a port nobody can connect to) counts on the WebSocket side only.
    pub fn sides(&self, info_hash: &InfoHash, exclude: PeerId) -> Option<SwarmSides> {
        let swarm = self.swarms.get(info_hash)?;
        let mut s = SwarmSides::default();
        for (p, e) in swarm.ws.iter() {
            if *p == exclude {
                continue;
            }
            if e.complete {
                s.ws_seeders += 1;
            } else {
                s.ws_leechers += 1;
            }
        }
        for (_, e) in swarm.net.iter() {
            if e.peer_id == exclude || swarm.ws.get(&e.peer_id).is_some() {
                continue;
            }
            if e.complete {
                s.net_seeders += 1;
            } else {
                s.net_leechers += 1;
            }
        }
        Some(s)
    }

    /// The settings.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Number of swarms (torrents) known, empty ones included.
    pub fn num_torrents(&self) -> usize {
        self.swarms.len()
    }

    /// Number of peers in all swarms.
    pub fn num_peers(&self) -> usize {
        self.total_peers
    }

    /// `(complete, incomplete)` of a swarm, when it exists.
    pub fn counts(&self, info_hash: &InfoHash) -> Option<(u32, u32)> {
        self.swarms
            .get(info_hash)
            .map(|s| (s.complete, s.incomplete))
    }

    /// Handles an HTTP or UDP announce.
    pub fn announce(&mut self, now: Time, a: &PeerAnnounce) -> AnnounceResult {
        let key = Key::Net(a.addr);
        self.announce_peer(
            now,
            a.info_hash,
            key,
            a.peer_id,
            a.addr,
            None,
            a.left,
            a.event,
        );
        let (complete, incomplete) = self.counts(&a.info_hash).unwrap_or((0, 0));
        let mut peers = Vec::new();
        if let Some(swarm) = self.swarms.get(&a.info_hash) {
            for i in sample(&mut self.rng, swarm.net.len(), a.numwant, |_| false) {
                if let Some((_, e)) = swarm.net.get_index(i) {
                    peers.push(Peer {
                        addr: e.addr,
                        peer_id: Some(e.peer_id),
                    });
                }
            }
        }
        AnnounceResult {
            complete,
            incomplete,
            peers,
        }
    }

    /// Scrape counters for `info_hashes`, in order (zeros for unknown torrents); an empty list
    /// asks for every torrent, of which the [`MAX_SCRAPE_HASHES`] most recently announced are
    /// given.
    pub fn scrape(&self, info_hashes: &[InfoHash]) -> Vec<(InfoHash, ScrapeFile)> {
        let file = |s: Option<&Swarm>| {
            let (complete, incomplete) = s.map_or((0, 0), |s| (s.complete, s.incomplete));
            ScrapeFile {
                complete,
                downloaded: complete,
                incomplete,
                name: None,
            }
        };
        if info_hashes.is_empty() {
            return self
                .swarms
                .iter_newest_first()
                .take(MAX_SCRAPE_HASHES)
                .map(|(h, s)| (*h, file(Some(s))))
                .collect();
        }
        info_hashes
            .iter()
            .map(|h| (*h, file(self.swarms.get(h))))
            .collect()
    }

    /// A WebSocket connection from `addr` opened (the peer's IP, for `/stats`).
    pub fn ws_open(&mut self, conn: ConnId, addr: SocketAddr) {
        self.conns.insert(
            conn,
            WsConn {
                addr,
                joined: Vec::new(),
            },
        );
    }

    /// A WebSocket connection closed: `stopped` in every swarm it announced in.
    pub fn ws_close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for (info_hash, peer_id) in c.joined {
            let Some(swarm) = self.swarms.get_mut(&info_hash) else {
                continue;
            };
            let key = Key::Ws(peer_id);
            if swarm.get(&key).is_some_and(|e| e.conn == Some(conn)) {
                swarm.remove(&key);
                self.total_peers = self.total_peers.saturating_sub(1);
                self.mark_changed(info_hash);
            }
        }
    }

    /// Handles a message from WebSocket connection `conn` (opened with [`ws_open`]); returns
    /// what to send, to it and to others. Messages from unknown connections are ignored.
    ///
    /// [`ws_open`]: Tracker::ws_open
    pub fn ws_message(&mut self, now: Time, conn: ConnId, msg: ClientMessage) -> Vec<WsSend> {
        let Some(addr) = self.conns.get(&conn).map(|c| c.addr) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match msg {
            ClientMessage::Announce(a) => {
                if let Some(f) = self.check_socket_bound(conn, a.info_hash, a.peer_id) {
                    out.push(WsSend { conn, message: f });
                    return out;
                }
                let numwant = a.offers.len().min(MAX_NUMWANT);
                let key = Key::Ws(a.peer_id);
                let present = self.announce_peer(
                    now,
                    a.info_hash,
                    key,
                    a.peer_id,
                    addr,
                    Some(conn),
                    a.left,
                    a.event,
                );
                if present {
                    self.join(conn, a.info_hash, a.peer_id);
                }
                let (complete, incomplete) = self.counts(&a.info_hash).unwrap_or((0, 0));
                out.push(WsSend {
                    conn,
                    message: TrackerMessage::AnnounceReply(AnnounceReply {
                        info_hash: a.info_hash,
                        interval: Some(self.config.ws_interval_secs()),
                        min_interval: None,
                        complete: Some(complete),
                        incomplete: Some(incomplete),
                        warning_message: None,
                        tracker_id: None,
                    }),
                });
                if let Some(swarm) = self.swarms.get(&a.info_hash) {
                    let own = a.peer_id;
                    let picked = sample(&mut self.rng, swarm.ws.len(), numwant, |i| {
                        swarm.ws.get_index(i).is_some_and(|(p, _)| *p == own)
                    });
                    for (offer, i) in a.offers.into_iter().zip(picked) {
                        let Some(to) = swarm.ws.get_index(i).and_then(|(_, e)| e.conn) else {
                            continue;
                        };
                        out.push(WsSend {
                            conn: to,
                            message: TrackerMessage::Offer(OfferMessage {
                                info_hash: a.info_hash,
                                peer_id: a.peer_id,
                                offer: offer.offer,
                                offer_id: offer.offer_id,
                            }),
                        });
                    }
                }
            }
            ClientMessage::Answer(a) => {
                if let Some(f) = self.check_socket_bound(conn, a.info_hash, a.peer_id) {
                    out.push(WsSend { conn, message: f });
                    return out;
                }
                let key = Key::Ws(a.peer_id);
                let present = self.announce_peer(
                    now,
                    a.info_hash,
                    key,
                    a.peer_id,
                    addr,
                    Some(conn),
                    None,
                    None,
                );
                if present {
                    self.join(conn, a.info_hash, a.peer_id);
                }
                let to = self
                    .swarms
                    .get(&a.info_hash)
                    .and_then(|s| s.ws.get(&a.to_peer_id))
                    .and_then(|e| e.conn);
                if let Some(to) = to {
                    out.push(WsSend {
                        conn: to,
                        message: TrackerMessage::Answer(AnswerMessage {
                            info_hash: a.info_hash,
                            peer_id: a.peer_id,
                            answer: a.answer,
                            offer_id: a.offer_id,
                        }),
                    });
                }
            }
            ClientMessage::Scrape(s) => {
                let files: BTreeMap<InfoHash, ScrapeFile> =
                    self.scrape(&s.info_hashes).into_iter().collect();
                out.push(WsSend {
                    conn,
                    message: TrackerMessage::ScrapeReply(ScrapeReply {
                        files,
                        min_request_interval: Some(self.config.interval_secs()),
                    }),
                });
            }
        }
        out
    }

    /// Drops peers that have not announced for longer than the TTL; returns how many.
    pub fn expire(&mut self, now: Time) -> usize {
        let ttl = self.config.peer_ttl;
        let expired = |e: &PeerEntry| now.saturating_since(e.modified) > ttl;
        let mut n = 0;
        let mut left_sockets = Vec::new();
        for (info_hash, swarm) in self.swarms.iter_mut() {
            while let Some((_, e)) = swarm.net.oldest().filter(|(_, e)| expired(e)) {
                let key = Key::Net(e.addr);
                swarm.remove(&key);
                n += 1;
            }
            while let Some((p, e)) = swarm.ws.oldest().filter(|(_, e)| expired(e)) {
                let (p, conn) = (*p, e.conn);
                swarm.remove(&Key::Ws(p));
                n += 1;
                left_sockets.push((conn, *info_hash, p));
            }
        }
        self.total_peers = self.total_peers.saturating_sub(n);
        // Expired WebSocket peers leave their connection's list (the connection may stay).
        for (conn, info_hash, peer_id) in left_sockets {
            self.forget(conn, info_hash, peer_id);
        }
        n
    }

    /// The figures of `/stats` and `/stats.json`.
    pub fn stats(&self) -> Stats {
        self.stats_snapshot().finish()
    }

    /// What `/stats` needs, copied out cheaply (one pass over the peers, no hashing) so that
    /// the rest of the work ([`StatsSnapshot::finish`]) can run without holding the tracker.
    pub fn stats_snapshot(&self) -> StatsSnapshot {
        let mut peers = Vec::with_capacity(self.total_peers);
        let mut active = 0u64;
        for (_, swarm) in self.swarms.iter() {
            if swarm.len() > 0 {
                active += 1;
            }
            let net = swarm.net.iter().map(|(_, e)| e);
            for e in net.chain(swarm.ws.iter().map(|(_, e)| e)) {
                let mut flags = if e.complete { SEEDER } else { LEECHER };
                flags |= if e.addr.is_ipv6() { IPV6 } else { IPV4 };
                peers.push((e.peer_id, flags));
            }
        }
        StatsSnapshot {
            torrents: self.swarms.len() as u64,
            active_torrents: active,
            peers,
        }
    }

    // -----------------------------------------------------------------------------------------

    /// A failure when `conn` would join more swarms than allowed.
    fn check_socket_bound(
        &self,
        conn: ConnId,
        info_hash: InfoHash,
        peer_id: PeerId,
    ) -> Option<TrackerMessage> {
        let c = self.conns.get(&conn)?;
        if c.joined.len() < self.config.max_torrents_per_socket
            || c.joined.contains(&(info_hash, peer_id))
        {
            return None;
        }
        Some(TrackerMessage::Failure(Failure {
            action: Some(WsAction::Announce),
            reason: format!(
                "too many torrents on one connection (at most {})",
                self.config.max_torrents_per_socket
            ),
            info_hash: Some(info_hash),
        }))
    }

    fn join(&mut self, conn: ConnId, info_hash: InfoHash, peer_id: PeerId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.joined.contains(&(info_hash, peer_id)) {
                c.joined.push((info_hash, peer_id));
            }
        }
    }

    fn forget(&mut self, conn: Option<ConnId>, info_hash: InfoHash, peer_id: PeerId) {
        if let Some(c) = conn.and_then(|c| self.conns.get_mut(&c)) {
            c.joined.retain(|j| *j != (info_hash, peer_id));
        }
    }

    /// Removes a peer's entry and its connection's membership.
    fn drop_peer(&mut self, info_hash: InfoHash, key: &Key) {
        let Some(e) = self.swarms.get_mut(&info_hash).and_then(|s| s.remove(key)) else {
            return;
        };
        self.total_peers = self.total_peers.saturating_sub(1);
        if let Key::Ws(p) = key {
            self.forget(e.conn, info_hash, *p);
        }
    }

    /// Applies one announce to the swarm (created when new). Returns whether the peer is in
    /// the swarm afterwards.
    #[allow(clippy::too_many_arguments)]
    fn announce_peer(
        &mut self,
        now: Time,
        info_hash: InfoHash,
        key: Key,
        peer_id: PeerId,
        addr: SocketAddr,
        conn: Option<ConnId>,
        left: Option<u64>,
        event: Option<Event>,
    ) -> bool {
        self.mark_changed(info_hash);
        if !self.swarms.touch(&info_hash) {
            while self.swarms.len() >= self.config.max_torrents.max(1) {
                let Some((old_hash, old)) = self.swarms.pop_oldest() else {
                    break;
                };
                self.total_peers = self.total_peers.saturating_sub(old.len());
                for (p, e) in old.ws.iter() {
                    self.forget(e.conn, old_hash, *p);
                }
            }
            self.swarms.insert(info_hash, Swarm::default());
        }
        let exists = self
            .swarms
            .get(&info_hash)
            .is_some_and(|s| s.get(&key).is_some());
        if !exists {
            match event {
                Some(Event::Stopped) => return false,
                _ => {
                    self.make_room(info_hash);
                    self.stamp += 1;
                    let entry = PeerEntry {
                        peer_id,
                        addr,
                        complete: left == Some(0),
                        modified: now,
                        stamp: self.stamp,
                        conn,
                    };
                    if let Some(s) = self.swarms.get_mut(&info_hash) {
                        s.insert(key, entry);
                        self.total_peers += 1;
                    }
                    return true;
                }
            }
        }
        if event == Some(Event::Stopped) {
            self.drop_peer(info_hash, &key);
            return false;
        }
        // `started` again, `completed`, `paused` or a regular announce from a known peer: an
        // update, which also completes it when nothing is left.
        self.stamp += 1;
        let stamp = self.stamp;
        let mut old_conn = None;
        if let Some(s) = self.swarms.get_mut(&info_hash) {
            let mut became_seeder = false;
            if let Some(e) = s.get_mut(&key) {
                let completes = event == Some(Event::Completed) || left == Some(0);
                if !e.complete && completes {
                    e.complete = true;
                    became_seeder = true;
                }
                e.modified = now;
                e.stamp = stamp;
                e.peer_id = peer_id;
                e.addr = addr;
                if e.conn != conn {
                    old_conn = e.conn;
                    e.conn = conn;
                }
            }
            if became_seeder {
                s.complete = s.complete.saturating_add(1);
                s.incomplete = s.incomplete.saturating_sub(1);
            }
            s.touch(&key);
        }
        // The same WebSocket peer on a new connection: the old one no longer speaks for it.
        if let Key::Ws(p) = key {
            self.forget(old_conn, info_hash, p);
        }
        true
    }

    /// Makes room for one more peer in `info_hash`'s swarm: under the global bound first
    /// (taking from the least recently announced swarms), then under the swarm's own.
    fn make_room(&mut self, info_hash: InfoHash) {
        while self.total_peers >= self.config.max_peers.max(1) {
            let Some((&oldest_hash, oldest)) = self.swarms.oldest() else {
                break;
            };
            if oldest_hash == info_hash {
                // Only this swarm is left: drop its own oldest peer.
                let Some(k) = oldest.oldest_key() else { break };
                self.drop_peer(info_hash, &k);
            } else if let Some(k) = oldest.oldest_key() {
                self.drop_peer(oldest_hash, &k);
            } else {
                // An empty swarm: no use keeping it at the bottom.
                self.swarms.pop_oldest();
            }
        }
        while let Some(k) = self
            .swarms
            .get(&info_hash)
            .filter(|s| s.len() >= self.config.max_peers_per_swarm.max(1))
            .and_then(Swarm::oldest_key)
        {
            self.drop_peer(info_hash, &k);
        }
    }
}

/// Up to `m` distinct positions in `0..n` in random order, skipping those `skip` refuses: a
/// lazy Fisher–Yates shuffle that costs O(draws), not O(n).
fn sample(rng: &mut Rng, n: usize, m: usize, skip: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(m.min(n));
    let mut moved: HashMap<usize, usize> = HashMap::new();
    let mut i = 0;
    while out.len() < m && i < n {
        let j = i + rng.below((n - i) as u64) as usize;
        let at_j = moved.get(&j).copied().unwrap_or(j);
        let at_i = moved.get(&i).copied().unwrap_or(i);
        moved.insert(j, at_i);
        i += 1;
        if !skip(at_j) {
            out.push(at_j);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_a_partial_permutation() {
        let mut rng = Rng::new(1);
        for n in 0..30 {
            for m in 0..35 {
                let s = sample(&mut rng, n, m, |i| i == 3);
                let mut sorted = s.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), s.len());
                assert!(s.iter().all(|&i| i < n && i != 3));
                let avail = if n > 3 { n - 1 } else { n };
                assert_eq!(s.len(), m.min(avail));
            }
        }
        // Every position turns up over many draws.
        let mut seen = [0u32; 10];
        for _ in 0..1000 {
            for i in sample(&mut rng, 10, 2, |_| false) {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c > 120), "{seen:?}");
    }

    #[test]
    fn numwant_rules() {
        assert_eq!(http_numwant(None), 50);
        assert_eq!(http_numwant(Some(0)), 50);
        assert_eq!(http_numwant(Some(10)), 10);
        assert_eq!(http_numwant(Some(1000)), 82);
        assert_eq!(udp_numwant(None), 82);
        assert_eq!(udp_numwant(Some(0)), 50);
        assert_eq!(udp_numwant(Some(7)), 7);
        let c = TrackerConfig::default();
        assert_eq!((c.interval_secs(), c.ws_interval_secs()), (600, 120));
    }
}
