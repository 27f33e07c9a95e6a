//! Memory of one DHT node ([`Dht`]): its routing table and its peer store, measured with a
//! counting global allocator.
//!
//! The node joins a simulated network of 10,000 nodes (random ids at `10.x.y.z:6881`, each
//! answering from a Kademlia table of its own: `K` nodes of its bucket holding the target,
//! the closest ones near its own id), bootstraps from one of them and runs 20 simulated
//! minutes of table upkeep (a refresh round included). Then each of the 10,000 nodes queries
//! it once (`find_node`, half of them near its id), so its table and replacement lists fill
//! as they would on the real DHT. Then the network's nodes fill its peer store to the bounds
//! of `webtorrent_core::dht::store` ([`MAX_HASHES`] torrents of [`MAX_PEERS_PER_HASH`]
//! peers): each gets a token with `get_peers` and sends `announce_peer` queries with it. The
//! rate limits are raised (public config fields) so that none of these queries is dropped
//! (checked); queries are spaced in simulated time so that the limiter's map of sources stays
//! within its bound of 4,096.
//!
//! Printed: the node's live bytes when empty, after joining, after the network's queries
//! (with the number of nodes in the table), after the store filled (with `stored()`), and
//! after it is dropped. The rate limiter's map of sources grows with the queries too and
//! never shrinks; its share is measured apart, on a node queried by the same sources
//! read-only (so that they stay out of its table).
//!
//! Live bytes are counted per thread (the node lives on the test's thread), so libtest's own
//! threads do not blur them; the figures are the bytes the node holds on the heap (its own
//! `size_of` aside), relative to a baseline taken once the simulated network was built.
//!
//! Figures (10,000 nodes, store filled to its bounds; a few seconds in release):
//! `cargo test -p webtorrent-core --release --test dht_memory -- --ignored --nocapture`.
//! The small variant (1,000 nodes, 50 full torrents) runs with the other tests and checks
//! bounds on bytes per stored peer, per table node and per tracked source:
//! `cargo test -p webtorrent-core --test dht_memory -- --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use webtorrent_core::dht::krpc::{Body, Message, Method, NodeInfo, Query, Response, Want};
use webtorrent_core::dht::routing::K;
use webtorrent_core::dht::store::{MAX_HASHES, MAX_PEERS_PER_HASH};
use webtorrent_core::dht::{Dht, DhtConfig};
use webtorrent_core::id::Id20;
use webtorrent_core::rng::Rng;
use webtorrent_core::time::Time;

// ---------------------------------------------------------------------------------------
// Counting allocator: live bytes allocated by the current thread.

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live bytes allocated (and not yet freed) by this thread.
fn live() -> i64 {
    LIVE.with(Cell::get)
}

// ---------------------------------------------------------------------------------------
// The simulated network.

/// One-way latency of the simulated network.
const LATENCY: Duration = Duration::from_millis(25);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

fn index(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v) if v.port() == 6881 && v.ip().octets()[0] == 10 => {
            let o = v.ip().octets();
            Some((o[1] as usize) << 16 | (o[2] as usize) << 8 | o[3] as usize)
        }
        _ => None,
    }
}

fn bit(id: &Id20, b: usize) -> bool {
    id.0[b / 8] & (0x80 >> (b % 8)) != 0
}

fn xor(a: &Id20, b: &Id20) -> [u8; 20] {
    let mut d = [0u8; 20];
    for (i, x) in d.iter_mut().enumerate() {
        *x = a.0[i] ^ b.0[i];
    }
    d
}

fn random_id(rng: &mut Rng) -> Id20 {
    let mut id = [0u8; 20];
    rng.fill(&mut id);
    Id20(id)
}

/// The rest of the DHT: node `i` has id `ids[i]` (sorted) at [`addr`]`(i)` and answers from
/// perfect knowledge of the network.
struct Net {
    ids: Vec<Id20>,
}

impl Net {
    fn new(n: usize, rng: &mut Rng) -> Net {
        let mut ids: Vec<Id20> = (0..n).map(|_| random_id(rng)).collect();
        ids.sort_unstable();
        ids.dedup();
        Net { ids }
    }

    /// The range of the sorted ids sharing at least `bits` leading bits with `target`, or the
    /// narrowest one holding `k` or more if that is wider.
    fn range(&self, target: &Id20, bits: usize, k: usize) -> (usize, usize) {
        let (mut lo, mut hi) = (0, self.ids.len());
        for b in 0..bits.min(160) {
            let mid = lo + self.ids[lo..hi].partition_point(|id| !bit(id, b));
            let (l, h) = if bit(target, b) { (mid, hi) } else { (lo, mid) };
            if h - l < k {
                break;
            }
            (lo, hi) = (l, h);
        }
        (lo, hi)
    }

    /// The `k` nodes closest to `target`.
    fn closest(&self, target: &Id20, k: usize) -> Vec<NodeInfo> {
        let (lo, hi) = self.range(target, 160, k);
        let mut near: Vec<usize> = (lo..hi).collect();
        near.sort_by_key(|&i| xor(&self.ids[i], target));
        near.truncate(k);
        near.into_iter().map(|i| self.info(i)).collect()
    }

    fn info(&self, i: usize) -> NodeInfo {
        NodeInfo {
            id: self.ids[i],
            addr: addr(i),
        }
    }

    /// What node `i` answers when asked for `target`, as a Kademlia table would: `K` nodes of
    /// its bucket holding `target` (the same ones every time), or the `K` closest when that
    /// bucket is its own neighbourhood.
    fn known(&self, i: usize, target: &Id20) -> Vec<NodeInfo> {
        let shared = (0..160)
            .find(|&b| bit(&self.ids[i], b) != bit(target, b))
            .unwrap_or(160);
        let (lo, hi) = self.range(target, shared + 1, 1);
        let len = hi - lo;
        if len <= 2 * K {
            return self.closest(target, K);
        }
        let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (shared as u64) << 32;
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 32;
        let start = x as usize % len;
        let stride = len / K;
        (0..K)
            .map(|m| self.info(lo + (start + m * stride) % len))
            .collect()
    }

    /// Node `i`'s answer to a query, if `data` is one.
    fn answer(&self, i: usize, data: &[u8]) -> Option<Vec<u8>> {
        let m = Message::decode(data).ok()?;
        let Body::Query(q) = m.body else { return None };
        let mut r = Response {
            id: self.ids[i],
            ..Response::default()
        };
        match q.method {
            Method::FindNode { target, .. } => r.nodes = self.known(i, &target),
            Method::GetPeers { info_hash, .. } => {
                r.nodes = self.known(i, &info_hash);
                r.token = Some(b"token".to_vec());
            }
            Method::Ping | Method::AnnouncePeer { .. } => {}
        }
        Some(
            Message {
                tid: m.tid,
                body: Body::Response(r),
                read_only: false,
                ip: None,
                version: None,
            }
            .encode(),
        )
    }
}

fn query(tid: u32, id: Id20, method: Method, read_only: bool) -> Vec<u8> {
    Message {
        tid: tid.to_be_bytes().to_vec(),
        body: Body::Query(Query { id, method }),
        read_only,
        ip: None,
        version: Some(b"SIM0".to_vec()),
    }
    .encode()
}

/// An answer of the network on its way to the node: arrival, order, from, bytes.
type InFlight = Reverse<(Time, u64, usize, Vec<u8>)>;

/// The node under test in the network.
struct Harness<'a> {
    net: &'a Net,
    dht: Dht,
    now: Time,
    /// Answers of the network on their way to the node.
    inflight: BinaryHeap<InFlight>,
    seq: u64,
    /// The node's answer to the last query fed with [`Harness::feed`].
    last_reply: Option<Message>,
}

impl Harness<'_> {
    /// Sends what the node sends: queries to the network are answered, answers to the last
    /// fed query kept.
    fn flush(&mut self) {
        while let Some(t) = self.dht.poll_transmit() {
            let Ok(m) = Message::decode(&t.data) else {
                continue;
            };
            match m.body {
                Body::Query(_) => {
                    let Some(i) = index(t.to).filter(|&i| i < self.net.ids.len()) else {
                        continue;
                    };
                    if let Some(answer) = self.net.answer(i, &t.data) {
                        self.seq += 1;
                        self.inflight
                            .push(Reverse((self.now + LATENCY * 2, self.seq, i, answer)));
                    }
                }
                _ => self.last_reply = Some(m),
            }
        }
        while self.dht.poll_event().is_some() {}
    }

    /// Runs the network and the node's timers until `until`.
    fn run_until(&mut self, until: Time) {
        loop {
            let next_msg = self.inflight.peek().map(|Reverse(m)| m.0);
            let next_wake = self.dht.poll_timeout();
            let next = match (next_msg, next_wake) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_msg == Some(next) {
                let Reverse((_, _, from, data)) = self.inflight.pop().expect("peeked");
                self.dht.handle_datagram(self.now, addr(from), &data);
            } else {
                self.dht.handle_timeout(self.now);
            }
            self.flush();
        }
        self.now = self.now.max(until);
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Feeds a datagram from `from` now; returns the node's answer to it.
    fn feed(&mut self, from: SocketAddr, data: &[u8]) -> Option<Message> {
        self.last_reply = None;
        self.dht.handle_datagram(self.now, from, data);
        self.flush();
        self.last_reply.take()
    }

    /// Lets the lookups in progress end, and frees the harness's own buffers, so that the
    /// live bytes are the node's.
    fn settle(&mut self) {
        for _ in 0..120 {
            self.advance(Duration::from_secs(1));
            if self.inflight.is_empty() {
                break;
            }
        }
        self.inflight.shrink_to_fit();
        self.last_reply = None;
    }
}

// ---------------------------------------------------------------------------------------
// The scenario.

/// Live bytes of the node at each stage (relative to a baseline without it) and what it held.
struct Figures {
    network: usize,
    empty: i64,
    joined: i64,
    joined_nodes: usize,
    queried: i64,
    queried_nodes: usize,
    limiter: i64,
    store: i64,
    hashes: usize,
    peers: usize,
    after_drop: i64,
    rate_limited: u64,
}

fn kib(b: i64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

fn config(bootstrap: Vec<SocketAddr>) -> DhtConfig {
    DhtConfig {
        bootstrap,
        // Every query counts; the limiter still tracks its sources.
        query_rate: 1_000_000_000,
        query_rate_per_ip: 1_000_000_000,
        ..DhtConfig::default()
    }
}

/// Every node of the network queries the node once, 1 ms apart (as nodes that have it in
/// their tables or pass by it in lookups do); half of them look near its id. Read-only
/// queriers stay out of its table.
fn queried_by_all(h: &mut Harness<'_>, rng: &mut Rng, read_only: bool) {
    for i in 0..h.net.ids.len() {
        let mut target = random_id(rng);
        if i % 2 == 0 {
            target.0[..2].copy_from_slice(&h.dht.id().0[..2]);
        }
        let method = Method::FindNode {
            target,
            want: Want::default(),
        };
        let q = query(i as u32, h.net.ids[i], method, read_only);
        let reply = h.feed(addr(i), &q);
        assert!(matches!(reply.map(|m| m.body), Some(Body::Response(_))));
        h.advance(Duration::from_millis(1));
    }
    h.settle();
}

/// What the query rate limiter's map of sources costs: a node with an empty table queried
/// by every node of the network, read-only so that they stay out of its table.
fn limiter_bytes(net: &Net, t0: Time, seed: u64) -> i64 {
    let mut rng = Rng::new(seed);
    let base = live();
    let dht = Dht::new(t0, config(Vec::new()), seed);
    let mut h = Harness {
        net,
        dht,
        now: t0,
        inflight: BinaryHeap::new(),
        seq: 0,
        last_reply: None,
    };
    let empty = live() - base;
    queried_by_all(&mut h, &mut rng, true);
    assert_eq!(h.dht.num_nodes(), (0, 0));
    live() - base - empty
}

fn scenario(network: usize, hashes: usize, seed: u64) -> Figures {
    let mut rng = Rng::new(seed);
    let net = Net::new(network, &mut rng);
    let n = net.ids.len();
    let t0 = Time::from_duration(Duration::from_secs(1000));
    let limiter = limiter_bytes(&net, t0, seed ^ 1);
    let tag = format!("dht_memory[{n} nodes]");

    let base = live();
    let dht = Dht::new(t0, config(vec![addr(0)]), seed);
    let mut h = Harness {
        net: &net,
        dht,
        now: t0,
        inflight: BinaryHeap::new(),
        seq: 0,
        last_reply: None,
    };
    let empty = live() - base;
    eprintln!(
        "{tag}: empty node:                {empty:>10} bytes on the heap (+ {} bytes of `Dht` \
         itself)",
        std::mem::size_of::<Dht>()
    );

    // Join: bootstrap from node 0, then 20 minutes, in which every bucket is refreshed once.
    h.dht.handle_timeout(t0);
    h.flush();
    h.advance(Duration::from_secs(20 * 60));
    h.settle();
    let joined = live() - base;
    let joined_nodes = h.dht.num_nodes().0;
    eprintln!(
        "{tag}: joined (answers only):     {joined:>10} bytes ({}), {joined_nodes} nodes in the \
         table, {:.0} bytes per node",
        kib(joined),
        (joined - empty) as f64 / joined_nodes as f64
    );

    // Then every node of the network queries it once.
    queried_by_all(&mut h, &mut rng, false);
    let queried = live() - base;
    let queried_nodes = h.dht.num_nodes().0;
    eprintln!(
        "{tag}: after {n} nodes queried:  {queried:>10} bytes ({}), {queried_nodes} nodes in \
         the table (+ replacements), of which ~{limiter} bytes ({}) are the rate limiter's map \
         of sources (measured apart)",
        kib(queried),
        kib(limiter)
    );

    // Tokens: one get_peers from every announcer.
    let announcers = n;
    let mut tokens: Vec<Vec<u8>> = Vec::with_capacity(announcers);
    for i in 0..announcers {
        let method = Method::GetPeers {
            info_hash: random_id(&mut rng),
            want: Want::default(),
        };
        let q = query(i as u32, net.ids[i], method, false);
        let reply = h.feed(addr(i), &q).expect("an answer to get_peers");
        let Body::Response(r) = reply.body else {
            panic!("get_peers refused: {reply:?}")
        };
        tokens.push(r.token.expect("a token"));
        h.advance(Duration::from_millis(1));
    }
    // Announces: slot s (of hashes × MAX_PEERS_PER_HASH) is announcer s % announcers for
    // torrent s / MAX_PEERS_PER_HASH, so a torrent's peers are distinct. Announcer by
    // announcer, 100 µs apart, so the rate limiter never tracks too many sources at once.
    let mut torrents: Vec<Id20> = (0..hashes).map(|_| random_id(&mut rng)).collect();
    torrents.sort_unstable();
    torrents.dedup();
    assert_eq!(torrents.len(), hashes);
    let slots = hashes * MAX_PEERS_PER_HASH;
    let mut tid = 0u32;
    for (i, token) in tokens.iter().enumerate() {
        for s in (i..slots).step_by(announcers) {
            tid = tid.wrapping_add(1);
            let method = Method::AnnouncePeer {
                info_hash: torrents[s / MAX_PEERS_PER_HASH],
                port: 51413,
                implied_port: false,
                token: token.clone(),
            };
            let q = query(tid, net.ids[i], method, false);
            match h.feed(addr(i), &q).map(|m| m.body) {
                Some(Body::Response(_)) => {}
                other => panic!("announce_peer from {i} refused: {other:?}"),
            }
            h.advance(Duration::from_micros(100));
        }
    }
    drop(tokens);
    drop(torrents);
    h.settle();
    let store = live() - base;
    let (stored_hashes, peers) = h.dht.stored();
    eprintln!(
        "{tag}: after the store filled:    {store:>10} bytes ({}), stored() = ({stored_hashes} \
         torrents, {peers} peers), {:.1} bytes per stored peer",
        kib(store),
        (store - queried) as f64 / peers as f64
    );
    let stats = h.dht.stats();
    eprintln!("{tag}: {stats:?}");
    let Harness { dht, .. } = h;
    drop(dht);
    let after_drop = live() - base;
    eprintln!("{tag}: after dropping the node: {after_drop:>10} bytes");
    Figures {
        network: n,
        empty,
        joined,
        joined_nodes,
        queried,
        queried_nodes,
        limiter,
        store,
        hashes: stored_hashes,
        peers,
        after_drop,
        rate_limited: stats.rate_limited,
    }
}

fn check(f: &Figures, hashes: usize) {
    assert_eq!(f.rate_limited, 0, "no query was dropped");
    assert_eq!(f.hashes, hashes);
    assert_eq!(f.peers, hashes * MAX_PEERS_PER_HASH);
    // A table in a network this size is several buckets of K nodes.
    assert!(
        f.joined_nodes >= 3 * K && f.queried_nodes >= 6 * K,
        "{} / {} nodes in the table of a node in {} nodes",
        f.joined_nodes,
        f.queried_nodes,
        f.network
    );
    // A table node is an id, an address, times and a count, in a bucket's vector; 512 bytes
    // each, the buckets and their replacements included, is generous.
    let per_node = (f.joined - f.empty) as f64 / f.joined_nodes as f64;
    assert!(
        per_node < 512.0,
        "{per_node:.0} bytes per node in the table"
    );
    let per_node = (f.queried - f.limiter - f.empty) as f64 / f.queried_nodes as f64;
    assert!(
        per_node < 512.0,
        "{per_node:.0} bytes per node in the table"
    );
    // The limiter tracks at most 4,096 sources, each an address and a bucket.
    let sources = f.network.min(4096) as f64;
    assert!(
        (f.limiter as f64) < sources * 128.0,
        "{} bytes for {sources} sources",
        f.limiter
    );
    // A stored peer is a socket address and a time, in a vector that may have grown by
    // doubling; 128 bytes is generous.
    let per_peer = (f.store - f.queried) as f64 / f.peers as f64;
    assert!(per_peer < 128.0, "{per_peer:.1} bytes per stored peer");
    assert!(f.empty < 16 * 1024, "an empty node holds {} bytes", f.empty);
    // Dropping the node frees all it held.
    assert!(f.after_drop.abs() < 1024, "{} bytes left", f.after_drop);
}

#[test]
fn memory_is_bounded_per_peer_and_per_node() {
    let f = scenario(1_000, 50, 3);
    check(&f, 50);
}

#[test]
#[ignore = "figures: 10,000 nodes and a full store, run with --release --nocapture"]
fn figures_at_10000_nodes_and_a_full_store() {
    let f = scenario(10_000, MAX_HASHES, 5);
    check(&f, MAX_HASHES);
    eprintln!(
        "dht_memory: SUMMARY at {} nodes: empty {} B; joined {} B ({} nodes); queried by all \
         {} B ({} nodes; limiter ~{} B); store full {} B ({} torrents, {} peers)",
        f.network,
        f.empty,
        f.joined,
        f.joined_nodes,
        f.queried,
        f.queried_nodes,
        f.limiter,
        f.store,
        f.hashes,
        f.peers
    );
}
