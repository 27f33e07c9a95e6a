//! The mainline DHT (BEP 5) as a sans-IO machine, with BEP 32 (IPv6), BEP 42 (secure node
//! ids) and BEP 43 (read-only nodes).
//!
//! A driver owns one UDP socket per address family and feeds [`Dht`] what arrives
//! ([`Dht::handle_datagram`]) and the time ([`Dht::handle_timeout`] at
//! [`Dht::poll_timeout`]); it sends what [`Dht::poll_transmit`] gives and reads
//! [`Dht::poll_event`] for peers found. Torrents ask with [`Dht::get_peers`] and
//! [`Dht::announce`].
//!
//! - [`krpc`]: the messages.
//! - [`routing`]: k-buckets, node liveness, refresh.
//! - [`lookup`]: iterative `find_node` / `get_peers` lookups.
//! - [`store`]: tokens and the peers announced to us.
//! - [`secure`]: BEP 42 node ids.

pub mod krpc;
pub mod lookup;
pub mod routing;
pub mod secure;
pub mod state;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use krpc::{Body, KrpcError, Message, Method, NodeInfo, Query, Response, Want};
use lookup::{Kind, Lookup};
use routing::{RoutingTable, K};
use store::{PeerStore, Tokens};

use crate::id::Id20;
use crate::rng::Rng;
use crate::time::Time;

/// A query unanswered this long has failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(4);
/// Table upkeep (refresh, pings, expiry, bootstrap retries) runs this often.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);
/// Most of our queries in flight at once; lookups wait for room beyond it.
pub const MAX_PENDING: usize = 512;
/// Most lookups running at once; more wait in a queue.
pub const MAX_LOOKUPS: usize = 32;
/// Most lookups waiting for room.
pub const MAX_QUEUED_LOOKUPS: usize = 1024;
/// Most source addresses the query rate limiter tracks.
const MAX_LIMITER_ENTRIES: usize = 4096;

/// Settings of a DHT node.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Our node id; `None` picks a random one. A BEP 42 id for a known external address is
    /// the caller's to make, with [`secure::secure_id`].
    pub id: Option<Id20>,
    /// BEP 43: never answer queries, ask with `ro = 1`, stay out of others' tables.
    pub read_only: bool,
    /// Addresses to bootstrap from when the table is empty (routers or known nodes).
    pub bootstrap: Vec<SocketAddr>,
    /// Incoming queries per second accepted from one IP address (twice that in a burst).
    pub query_rate_per_ip: u32,
    /// Incoming queries per second accepted in all.
    pub query_rate: u32,
    /// Only keep nodes whose id matches their IP address (BEP 42) in the table.
    pub enforce_secure_ids: bool,
    /// `v` sent with our messages.
    pub version: Option<Vec<u8>>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            id: None,
            read_only: false,
            bootstrap: Vec::new(),
            query_rate_per_ip: 20,
            query_rate: 2000,
            enforce_secure_ids: false,
            version: Some(b"WR01".to_vec()),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// The bencoded message.
    pub data: Vec<u8>,
}

/// Names a lookup started by [`Dht::get_peers`], [`Dht::announce`] or [`Dht::find_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// How a lookup went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupReport {
    /// The lookup.
    pub id: LookupId,
    /// Its target.
    pub target: Id20,
    /// Queries sent.
    pub queries: u32,
    /// Answers received.
    pub answers: u32,
    /// Rounds: the longest chain of answers leading to the last one.
    pub rounds: u32,
    /// Peers found.
    pub peers: usize,
    /// `announce_peer` queries sent at the end.
    pub announced: usize,
    /// From start to end.
    pub elapsed: Duration,
}

/// What the DHT reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Peers of a torrent found by a lookup (new ones since its last event).
    Peers {
        /// The lookup.
        lookup: LookupId,
        /// The torrent.
        info_hash: Id20,
        /// The peers.
        peers: Vec<SocketAddr>,
    },
    /// A lookup ended.
    LookupDone(LookupReport),
}

/// Counters for figures and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queries received.
    pub queries_in: u64,
    /// Queries dropped by the rate limit.
    pub rate_limited: u64,
    /// Datagrams that were not KRPC.
    pub malformed: u64,
    /// Queries we sent.
    pub queries_out: u64,
    /// Our queries that timed out.
    pub timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Lookup(LookupId),
    Announce,
    Ping,
}

#[derive(Debug, Clone)]
struct Pending {
    to: SocketAddr,
    id: Option<Id20>,
    sent: Time,
    why: Why,
}

#[derive(Debug)]
struct Running {
    lookup: Lookup,
    v6: bool,
    /// Announce at the end with this port (`None`: implied port) if `Some`.
    announce: Option<Option<u16>>,
    peers_reported: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Time,
}

/// A DHT node; see the [module docs](self).
#[derive(Debug)]
pub struct Dht {
    config: DhtConfig,
    id: Id20,
    rng: Rng,
    table4: RoutingTable,
    table6: RoutingTable,
    tokens: Tokens,
    store: PeerStore,
    pending: HashMap<u16, Pending>,
    next_tid: u16,
    lookups: HashMap<LookupId, Running>,
    queued: VecDeque<(LookupId, Id20, Kind, Option<Option<u16>>)>,
    next_lookup: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    limiter: HashMap<IpAddr, Bucket>,
    global: Bucket,
    next_maintenance: Time,
    /// The latest time fed in.
    now: Time,
    last_bootstrap: Option<Time>,
    external: Option<SocketAddr>,
    stats: Stats,
}

impl Dht {
    /// A node; `seed` feeds its randomness (ids, tokens, transaction ids).
    pub fn new(now: Time, config: DhtConfig, seed: u64) -> Dht {
        let mut rng = Rng::new(seed);
        let id = config.id.unwrap_or_else(|| {
            let mut id = [0u8; 20];
            rng.fill(&mut id);
            Id20(id)
        });
        let tokens = Tokens::new(now, &mut rng);
        let next_tid = rng.below(u64::from(u16::MAX)) as u16;
        let global = Bucket {
            tokens: f64::from(config.query_rate),
            at: now,
        };
        Dht {
            id,
            table4: RoutingTable::new(id, now),
            table6: RoutingTable::new(id, now),
            tokens,
            store: PeerStore::default(),
            pending: HashMap::new(),
            next_tid,
            lookups: HashMap::new(),
            queued: VecDeque::new(),
            next_lookup: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            limiter: HashMap::new(),
            global,
            next_maintenance: now,
            now,
            last_bootstrap: None,
            external: None,
            stats: Stats::default(),
            rng,
            config,
        }
    }

    /// Our node id.
    pub fn id(&self) -> Id20 {
        self.id
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Nodes in the IPv4 and IPv6 tables.
    pub fn num_nodes(&self) -> (usize, usize) {
        (self.table4.len(), self.table6.len())
    }

    /// Torrents and peers stored for others.
    pub fn stored(&self) -> (usize, usize) {
        self.store.counts()
    }

    /// Our address as other nodes report it (BEP 42 `ip`), if any did.
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.external
    }

    /// Good nodes of both tables, to save and restore with [`Dht::add_node`].
    pub fn good_nodes(&self, now: Time) -> Vec<NodeInfo> {
        self.table4
            .entries()
            .chain(self.table6.entries())
            .filter(|e| e.is_good(now))
            .map(|e| e.node)
            .collect()
    }

    fn table(&mut self, v6: bool) -> &mut RoutingTable {
        if v6 {
            &mut self.table6
        } else {
            &mut self.table4
        }
    }

    /// Replaces the bootstrap addresses (names resolved after the start, or again later) and
    /// bootstraps at the next [`Dht::handle_timeout`] if the table is short of nodes.
    pub fn set_bootstrap(&mut self, now: Time, addrs: Vec<SocketAddr>) {
        self.config.bootstrap = addrs;
        self.last_bootstrap = None;
        self.next_maintenance = self.next_maintenance.min(now);
    }

    /// Our id and good nodes, to save and give back through [`DhtConfig::id`] and
    /// [`Dht::add_node`] after a restart.
    pub fn saved_state(&self, now: Time) -> state::SavedState {
        state::SavedState {
            id: self.id,
            nodes: self.good_nodes(now),
        }
    }

    /// Pings `addr` (a saved node, or a peer's BEP 5 `PORT`): it joins the table if it answers.
    pub fn add_node(&mut self, now: Time, addr: SocketAddr) {
        if self.table(addr.is_ipv6()).contains_addr(addr) {
            return;
        }
        self.send_query(now, addr, None, Method::Ping, Why::Ping);
    }

    /// Looks up peers of `info_hash`.
    pub fn get_peers(&mut self, now: Time, info_hash: Id20) -> LookupId {
        self.start(now, info_hash, Kind::GetPeers, None)
    }

    /// Looks up peers of `info_hash` and announces us to the closest nodes: on `port`, or
    /// on our UDP source port (`None`, BEP 5 `implied_port`). A read-only node only looks.
    pub fn announce(&mut self, now: Time, info_hash: Id20, port: Option<u16>) -> LookupId {
        self.start(now, info_hash, Kind::GetPeers, Some(port))
    }

    /// Looks up the nodes closest to `target` (they join the table as they answer).
    pub fn find_node(&mut self, now: Time, target: Id20) -> LookupId {
        self.start(now, target, Kind::FindNode, None)
    }

    fn start(
        &mut self,
        now: Time,
        target: Id20,
        kind: Kind,
        announce: Option<Option<u16>>,
    ) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        // Peers announced to this very node count too.
        if kind == Kind::GetPeers {
            let mut local = self.store.get(now, &target, false, &mut self.rng);
            local.extend(self.store.get(now, &target, true, &mut self.rng));
            if !local.is_empty() {
                self.events.push_back(Event::Peers {
                    lookup: id,
                    info_hash: target,
                    peers: local,
                });
            }
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            if self.queued.len() >= MAX_QUEUED_LOOKUPS {
                self.queued.pop_front();
            }
            self.queued.push_back((id, target, kind, announce));
        } else {
            self.launch(now, id, target, kind, announce);
        }
        id
    }

    fn launch(
        &mut self,
        now: Time,
        id: LookupId,
        target: Id20,
        kind: Kind,
        announce: Option<Option<u16>>,
    ) {
        // One lookup per family we know nodes of; knowing none, per family of the bootstrap
        // addresses (IPv4 when there are none).
        let empty = self.table4.is_empty() && self.table6.is_empty();
        let boot_v6 = empty && self.config.bootstrap.iter().any(SocketAddr::is_ipv6);
        let boot_v4 = empty && self.config.bootstrap.iter().any(SocketAddr::is_ipv4);
        let mut families = Vec::new();
        if !self.table6.is_empty() || boot_v6 {
            families.push(true);
        }
        if !self.table4.is_empty() || boot_v4 || families.is_empty() {
            families.push(false);
        }
        for (n, v6) in families.into_iter().enumerate() {
            let key = if n == 0 {
                id
            } else {
                let k = LookupId(self.next_lookup);
                self.next_lookup += 1;
                k
            };
            let seeds = self.table(v6).closest(&target, K * 2);
            let mut lookup = Lookup::new(now, target, kind, &seeds);
            if seeds.is_empty() {
                for b in self.config.bootstrap.clone() {
                    if b.is_ipv6() == v6 {
                        lookup.add_asked(now, b);
                        let method = self.lookup_method(kind, target, v6);
                        self.send_query(now, b, None, method, Why::Lookup(key));
                    }
                }
            }
            self.lookups.insert(
                key,
                Running {
                    lookup,
                    v6,
                    announce,
                    peers_reported: 0,
                },
            );
            self.step(now, key);
        }
    }

    fn lookup_method(&self, kind: Kind, target: Id20, v6: bool) -> Method {
        let want = Want { v4: !v6, v6 };
        match kind {
            Kind::FindNode => Method::FindNode { target, want },
            Kind::GetPeers => Method::GetPeers {
                info_hash: target,
                want,
            },
        }
    }

    /// Sends a lookup's next queries, or ends it.
    fn step(&mut self, now: Time, id: LookupId) {
        let Some(r) = self.lookups.get_mut(&id) else {
            return;
        };
        if r.lookup.is_done() {
            self.finish(now, id);
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        let (kind, target, v6) = (r.lookup.kind, r.lookup.target, r.v6);
        let next = r.lookup.next_queries(now);
        for n in next {
            let method = self.lookup_method(kind, target, v6);
            self.send_query(now, n.addr, Some(n.id), method, Why::Lookup(id));
        }
        // Nothing in flight and nothing new to ask: done.
        if !self.pending.values().any(|p| p.why == Why::Lookup(id)) {
            self.finish(now, id);
        }
    }

    fn finish(&mut self, now: Time, id: LookupId) {
        let Some(r) = self.lookups.remove(&id) else {
            return;
        };
        self.pending.retain(|_, p| p.why != Why::Lookup(id));
        let mut announced = 0;
        if let (Some(port), false) = (r.announce, self.config.read_only) {
            for (node, token) in r.lookup.closest_answered() {
                let Some(token) = token else { continue };
                let method = Method::AnnouncePeer {
                    info_hash: r.lookup.target,
                    port: port.unwrap_or(0),
                    implied_port: port.is_none(),
                    token,
                };
                self.send_query(now, node.addr, Some(node.id), method, Why::Announce);
                announced += 1;
            }
        }
        self.table(r.v6).touch(now, &r.lookup.target);
        self.events.push_back(Event::LookupDone(LookupReport {
            id,
            target: r.lookup.target,
            queries: r.lookup.queries,
            answers: r.lookup.answers,
            rounds: r.lookup.rounds,
            peers: r.lookup.peers().len(),
            announced,
            elapsed: now.saturating_since(r.lookup.started()),
        }));
        if let Some((qid, target, kind, announce)) = self.queued.pop_front() {
            self.launch(now, qid, target, kind, announce);
        }
    }

    fn send_query(
        &mut self,
        now: Time,
        to: SocketAddr,
        id: Option<Id20>,
        method: Method,
        why: Why,
    ) {
        if self.pending.len() >= MAX_PENDING * 2 {
            return;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let msg = Message {
            tid: tid.to_be_bytes().to_vec(),
            body: Body::Query(Query {
                id: self.id,
                method,
            }),
            read_only: self.config.read_only,
            ip: None,
            version: self.config.version.clone(),
        };
        self.pending.insert(
            tid,
            Pending {
                to,
                id,
                sent: now,
                why,
            },
        );
        self.stats.queries_out += 1;
        self.out.push_back(Transmit {
            to,
            data: msg.encode(),
        });
    }

    fn allow_query(&mut self, now: Time, ip: IpAddr) -> bool {
        let refill = |b: &mut Bucket, rate: f64, burst: f64| {
            let secs = now.saturating_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + secs * rate).min(burst);
            b.at = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                true
            } else {
                false
            }
        };
        let global_rate = f64::from(self.config.query_rate);
        if !refill(&mut self.global, global_rate, global_rate) {
            return false;
        }
        if self.limiter.len() >= MAX_LIMITER_ENTRIES && !self.limiter.contains_key(&ip) {
            // Forget sources idle long enough to have a full bucket again.
            self.limiter
                .retain(|_, b| now.saturating_since(b.at) < Duration::from_secs(2));
            if self.limiter.len() >= MAX_LIMITER_ENTRIES {
                return false;
            }
        }
        let rate = f64::from(self.config.query_rate_per_ip);
        let b = self.limiter.entry(ip).or_insert(Bucket {
            tokens: rate * 2.0,
            at: now,
        });
        refill(b, rate, rate * 2.0)
    }

    /// Feeds one datagram from `from`.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(KrpcError::UnknownMethod { tid, .. }) => {
                self.stats.malformed += 1;
                if !self.config.read_only && self.allow_query(now, from.ip()) {
                    let e = Message::error(tid, krpc::code::METHOD_UNKNOWN, "method unknown");
                    self.reply(from, e);
                }
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match msg.body {
            Body::Query(q) => self.on_query(now, from, msg.tid, q, msg.read_only),
            Body::Response(r) => self.on_response(now, from, &msg.tid, r, msg.read_only, msg.ip),
            Body::Error { .. } => self.on_error(now, from, &msg.tid),
        }
    }

    fn reply(&mut self, to: SocketAddr, mut msg: Message) {
        msg.version = self.config.version.clone();
        self.out.push_back(Transmit {
            to,
            data: msg.encode(),
        });
    }

    fn heard(&mut self, now: Time, node: NodeInfo, responded: bool) {
        if self.config.enforce_secure_ids && !secure::is_secure(&node.id, node.addr.ip()) {
            return;
        }
        self.table(node.addr.is_ipv6()).insert(now, node, responded);
    }

    fn on_query(&mut self, now: Time, from: SocketAddr, tid: Vec<u8>, q: Query, read_only: bool) {
        self.stats.queries_in += 1;
        if self.config.read_only {
            return;
        }
        if !self.allow_query(now, from.ip()) {
            self.stats.rate_limited += 1;
            return;
        }
        if !read_only {
            self.heard(
                now,
                NodeInfo {
                    id: q.id,
                    addr: from,
                },
                false,
            );
        }
        let mut resp = Response {
            id: self.id,
            ..Response::default()
        };
        let nodes_for = |dht: &Dht, target: &Id20, want: Want, resp: &mut Response| {
            let (v4, v6) = if want.v4 || want.v6 {
                (want.v4, want.v6)
            } else {
                (from.is_ipv4(), from.is_ipv6())
            };
            if v4 {
                resp.nodes = dht.table4.closest(target, K);
            }
            if v6 {
                resp.nodes6 = dht.table6.closest(target, K);
            }
        };
        match q.method {
            Method::Ping => {}
            Method::FindNode { target, want } => nodes_for(self, &target, want, &mut resp),
            Method::GetPeers { info_hash, want } => {
                resp.values = self
                    .store
                    .get(now, &info_hash, from.is_ipv6(), &mut self.rng);
                nodes_for(self, &info_hash, want, &mut resp);
                resp.token = Some(self.tokens.make(from.ip()));
            }
            Method::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.check(from.ip(), &token) {
                    let e = Message::error(tid, krpc::code::PROTOCOL, "bad token");
                    self.reply(from, e);
                    return;
                }
                let port = if implied_port { from.port() } else { port };
                if port == 0 {
                    let e = Message::error(tid, krpc::code::PROTOCOL, "port 0");
                    self.reply(from, e);
                    return;
                }
                self.store
                    .announce(now, info_hash, SocketAddr::new(from.ip(), port));
            }
        }
        let msg = Message {
            tid,
            body: Body::Response(resp),
            read_only: false,
            ip: Some(from),
            version: None,
        };
        self.reply(from, msg);
    }

    fn take_pending(&mut self, from: SocketAddr, tid: &[u8]) -> Option<Pending> {
        let tid = u16::from_be_bytes(tid.try_into().ok()?);
        // Only the node we asked may answer.
        if self.pending.get(&tid)?.to != from {
            return None;
        }
        self.pending.remove(&tid)
    }

    fn on_response(
        &mut self,
        now: Time,
        from: SocketAddr,
        tid: &[u8],
        r: Response,
        read_only: bool,
        ip: Option<SocketAddr>,
    ) {
        let Some(p) = self.take_pending(from, tid) else {
            return;
        };
        if r.id == self.id {
            return;
        }
        if let Some(ip) = ip {
            self.external = Some(ip);
        }
        if !read_only {
            self.heard(
                now,
                NodeInfo {
                    id: r.id,
                    addr: from,
                },
                true,
            );
        }
        if let Why::Lookup(lid) = p.why {
            let Some(run) = self.lookups.get_mut(&lid) else {
                return;
            };
            let nodes = if run.v6 { &r.nodes6 } else { &r.nodes };
            // Nodes of the other family, or our own id, are no use to this lookup.
            let nodes: Vec<NodeInfo> = nodes
                .iter()
                .filter(|n| n.addr.is_ipv6() == run.v6 && n.id != self.id && n.addr.port() != 0)
                .copied()
                .collect();
            let peers: Vec<SocketAddr> = if run.lookup.kind == Kind::GetPeers {
                r.values.iter().filter(|a| a.port() != 0).copied().collect()
            } else {
                Vec::new()
            };
            let token = (run.lookup.kind == Kind::GetPeers)
                .then_some(r.token)
                .flatten();
            run.lookup.answered(from, r.id, &nodes, &peers, token);
            let found = run.lookup.peers();
            if found.len() > run.peers_reported {
                let new = found[run.peers_reported..].to_vec();
                run.peers_reported = found.len();
                self.events.push_back(Event::Peers {
                    lookup: lid,
                    info_hash: run.lookup.target,
                    peers: new,
                });
            }
            self.step(now, lid);
        }
    }

    fn on_error(&mut self, now: Time, from: SocketAddr, tid: &[u8]) {
        let Some(p) = self.take_pending(from, tid) else {
            return;
        };
        if let Why::Lookup(lid) = p.why {
            if let Some(run) = self.lookups.get_mut(&lid) {
                run.lookup.failed(from);
            }
            self.step(now, lid);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Dht::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t = self.next_maintenance;
        for p in self.pending.values() {
            t = t.min(p.sent + QUERY_TIMEOUT);
            // A lookup query turning slow frees a slot for another node.
            let slow = p.sent + lookup::SLOW_AFTER;
            if matches!(p.why, Why::Lookup(_)) && slow > self.now {
                t = t.min(slow);
            }
        }
        Some(t)
    }

    /// Expires queries, moves lookups on and keeps the table up.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        // Expired queries.
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_since(p.sent) >= QUERY_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for tid in expired {
            let Some(p) = self.pending.remove(&tid) else {
                continue;
            };
            self.stats.timeouts += 1;
            self.table(p.to.is_ipv6()).failed(p.id, p.to);
            if let Why::Lookup(lid) = p.why {
                if let Some(run) = self.lookups.get_mut(&lid) {
                    run.lookup.failed(p.to);
                }
            }
        }
        // Lookups: slow queries free their slots.
        let ids: Vec<LookupId> = self.lookups.keys().copied().collect();
        for id in ids {
            self.step(now, id);
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE_EVERY;
            self.maintain(now);
        }
    }

    fn maintain(&mut self, now: Time) {
        self.tokens.tick(now, &mut self.rng);
        self.store.expire(now);
        self.limiter
            .retain(|_, b| now.saturating_since(b.at) < Duration::from_secs(10));
        // Bootstrap when the table is nearly empty, at most every 30 s.
        let bootstrapping = self.table4.len() + self.table6.len() < K
            && self
                .last_bootstrap
                .is_none_or(|t| now.saturating_since(t) >= MAINTENANCE_EVERY);
        if bootstrapping && !self.config.bootstrap.is_empty() {
            self.last_bootstrap = Some(now);
            let own = self.id;
            self.find_node(now, own);
            return;
        }
        for v6 in [false, true] {
            let mut rng = self.rng.clone();
            let table = self.table(v6);
            if table.is_empty() {
                continue;
            }
            let targets = table.due_refresh(now, || {
                let mut id = [0u8; 20];
                rng.fill(&mut id);
                Id20(id)
            });
            let pings = table.to_ping(now, 8);
            self.rng = rng;
            for t in targets.into_iter().take(4) {
                self.find_node(now, t);
            }
            for n in pings {
                self.send_query(now, n.addr, Some(n.id), Method::Ping, Why::Ping);
            }
        }
    }
}

#[cfg(test)]
mod tests;
