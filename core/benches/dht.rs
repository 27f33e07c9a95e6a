//! Incoming queries one DHT node ([`Dht`]) answers per second on one core: `handle_datagram`
//! of a pre-encoded query plus draining `poll_transmit` of its answer, per query kind and for
//! a mix, all through the public API.
//!
//! The node first joins a simulated network of 1,000,000 nodes (random ids at
//! `10.x.y.z:6881`, each answering from a Kademlia table of its own), runs 16 `get_peers`
//! lookups and 20 simulated minutes of upkeep, and is queried by 20,000 of the network's
//! nodes: its routing table ends with about 100 nodes (K = 8 per bucket; on the real DHT,
//! tens of millions of nodes, it would hold some 160, and `find_node` / `get_peers` cost grows
//! with it, see below). 4,000 other nodes (the benchmark's sources, each at its own address,
//! under the 4,096 sources the rate limiter tracks) get tokens with `get_peers` and fill its
//! peer store with 100 torrents of 100 peers. The rate limits are raised (public config
//! fields) so that no query is dropped; this is checked at the end.
//!
//! Each measured batch is 4,000 queries, one from each source: `ping`, `find_node` (random
//! target), `get_peers` of an unknown torrent (nodes and a token), `get_peers` of a stored
//! torrent (50 of its 140 peers, nodes and a token), `announce_peer` with a valid token (a
//! re-announce after the first run, as most are; the first adds 40 peers per torrent), and a
//! mix (about 15 % ping, 30 % find_node, 30 % get_peers unknown, 15 % get_peers stored, 10 %
//! announce_peer). Criterion reports queries per second (elements/s) of wall time; the CPU
//! time of the benchmark's thread is also read (Linux schedstat) and queries per CPU-second
//! printed at the end, which a loaded machine disturbs less.
//!
//! `CARGO_INCREMENTAL=0 cargo bench -p webtorrent-core --bench dht -- --quick`
//! (drop `--quick` for criterion's full sampling).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use webtorrent_core::dht::krpc::{Body, Message, Method, NodeInfo, Query, Response, Want};
use webtorrent_core::dht::routing::K;
use webtorrent_core::dht::{Dht, DhtConfig};
use webtorrent_core::id::Id20;
use webtorrent_core::rng::Rng;
use webtorrent_core::time::Time;

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

    /// Lets the lookups in progress end, and frees the harness's own buffers.
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
// The benchmark.

/// Size of the simulated network the node lives in.
const NETWORK: usize = 1_000_000;
/// Distinct sources of the measured queries (under the limiter's 4,096).
const SOURCES: usize = 4_000;
/// Stored torrents, and peers of each.
const TORRENTS: usize = 100;
const PEERS_PER_TORRENT: usize = 100;

fn source_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([20, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

/// This thread's CPU time so far (Linux), `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Queries to feed: (source, datagram).
type Batch = Vec<(SocketAddr, Vec<u8>)>;

struct Setup {
    dht: Dht,
    now: Time,
    /// Batches by name.
    batches: Vec<(&'static str, Batch)>,
}

fn setup() -> Setup {
    let started = Instant::now();
    let mut rng = Rng::new(42);
    let net = Net::new(NETWORK, &mut rng);
    let t0 = Time::from_duration(Duration::from_secs(1000));
    let config = DhtConfig {
        bootstrap: vec![addr(0)],
        query_rate: u32::MAX,
        query_rate_per_ip: u32::MAX,
        ..DhtConfig::default()
    };
    let mut h = Harness {
        net: &net,
        dht: Dht::new(t0, config, 42),
        now: t0,
        inflight: BinaryHeap::new(),
        seq: 0,
        last_reply: None,
    };
    // Join, look a few torrents up as a node with torrents does, and keep the table up.
    h.dht.handle_timeout(t0);
    h.flush();
    h.advance(Duration::from_secs(10));
    for _ in 0..16 {
        let now = h.now;
        h.dht.get_peers(now, random_id(&mut rng));
        h.flush();
        h.advance(Duration::from_secs(5));
    }
    h.advance(Duration::from_secs(20 * 60));
    let joined = h.dht.num_nodes().0;
    // Nodes of the network query it, 1 ms apart.
    for q in 0..20_000u32 {
        let i = rng.below(net.ids.len() as u64) as usize;
        let method = Method::FindNode {
            target: random_id(&mut rng),
            want: Want::default(),
        };
        h.feed(addr(i), &query(q, net.ids[i], method, false));
        h.advance(Duration::from_millis(1));
    }
    // Upkeep pings the new nodes; the limiter forgets the network's sources.
    h.advance(Duration::from_secs(120));
    h.settle();
    let nodes = h.dht.num_nodes().0;

    // The sources: ids, tokens.
    let ids: Vec<Id20> = (0..SOURCES).map(|_| random_id(&mut rng)).collect();
    let mut tokens = Vec::with_capacity(SOURCES);
    for (i, id) in ids.iter().enumerate() {
        let method = Method::GetPeers {
            info_hash: random_id(&mut rng),
            want: Want::default(),
        };
        let reply = h.feed(source_addr(i), &query(i as u32, *id, method, false));
        let Some(Body::Response(r)) = reply.map(|m| m.body) else {
            panic!("no answer to get_peers")
        };
        tokens.push(r.token.expect("a token"));
    }
    // The store: TORRENTS × PEERS_PER_TORRENT peers, announced by the sources on ports of
    // their own.
    let torrents: Vec<Id20> = (0..TORRENTS).map(|_| random_id(&mut rng)).collect();
    for (t, info_hash) in torrents.iter().enumerate() {
        for p in 0..PEERS_PER_TORRENT {
            let i = (t * PEERS_PER_TORRENT + p) % SOURCES;
            let method = Method::AnnouncePeer {
                info_hash: *info_hash,
                port: 10_000 + p as u16,
                implied_port: false,
                token: tokens[i].clone(),
            };
            let reply = h.feed(source_addr(i), &query(p as u32, ids[i], method, false));
            assert!(matches!(reply.map(|m| m.body), Some(Body::Response(_))));
        }
    }
    assert_eq!(h.dht.stored(), (TORRENTS, TORRENTS * PEERS_PER_TORRENT));

    // The batches, one query from each source.
    let batch = |f: &mut dyn FnMut(usize) -> Method| -> Batch {
        (0..SOURCES)
            .map(|i| {
                let q = query(0x1000_0000 + i as u32, ids[i], f(i), false);
                (source_addr(i), q)
            })
            .collect()
    };
    let ping = batch(&mut |_| Method::Ping);
    let mut r = Rng::new(7);
    let find_node = batch(&mut |_| Method::FindNode {
        target: random_id(&mut r),
        want: Want::default(),
    });
    let get_peers_none = batch(&mut |_| Method::GetPeers {
        info_hash: random_id(&mut r),
        want: Want::default(),
    });
    let get_peers_stored = batch(&mut |i| Method::GetPeers {
        info_hash: torrents[i % TORRENTS],
        want: Want::default(),
    });
    let announce = batch(&mut |i| Method::AnnouncePeer {
        info_hash: torrents[i % TORRENTS],
        port: 7000,
        implied_port: false,
        token: tokens[i].clone(),
    });
    let mix: Batch = (0..SOURCES)
        .map(|i| {
            let roll = r.below(100);
            let from = if roll < 15 {
                &ping
            } else if roll < 45 {
                &find_node
            } else if roll < 75 {
                &get_peers_none
            } else if roll < 90 {
                &get_peers_stored
            } else {
                &announce
            };
            from[i].clone()
        })
        .collect();
    let batches = vec![
        ("ping", ping),
        ("find_node", find_node),
        ("get_peers_unknown", get_peers_none),
        ("get_peers_stored", get_peers_stored),
        ("announce_peer", announce),
        ("mix", mix),
    ];
    // Each query is answered (not refused) once; the announces are re-announces from here on.
    for (name, b) in &batches {
        for (from, q) in b {
            let reply = h.feed(*from, q);
            let Some(Body::Response(r)) = reply.map(|m| m.body) else {
                panic!("{name}: no answer")
            };
            if *name == "get_peers_stored" {
                assert!(!r.values.is_empty());
            }
        }
    }
    let (torrents_stored, peers) = h.dht.stored();
    eprintln!(
        "dht bench setup ({:.1} s): {NETWORK} nodes in the network; {joined} nodes in the table \
         after joining, {nodes} after 20,000 of them queried it, {} now; {torrents_stored} \
         torrents, {peers} peers stored; {SOURCES} sources",
        started.elapsed().as_secs_f64(),
        h.dht.num_nodes().0,
    );
    Setup {
        now: h.now,
        dht: h.dht,
        batches,
    }
}

fn queries(c: &mut Criterion) {
    let Setup {
        mut dht,
        now,
        batches,
    } = setup();
    let before = dht.stats();
    let mut cpu: Vec<(&str, u64, Duration)> = Vec::new();
    let mut g = c.benchmark_group("dht_incoming");
    g.throughput(Throughput::Elements(SOURCES as u64));
    // A batch of 4,000 queries takes up to some 50 ms.
    g.sample_size(10);
    for (name, batch) in &batches {
        let mut count = 0u64;
        let mut spent = Duration::ZERO;
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let cpu0 = thread_cpu();
                let start = Instant::now();
                for _ in 0..iters {
                    for (from, data) in batch {
                        dht.handle_datagram(now, *from, data);
                        while let Some(t) = dht.poll_transmit() {
                            black_box(&t);
                        }
                    }
                }
                let wall = start.elapsed();
                if let (Some(a), Some(b)) = (cpu0, thread_cpu()) {
                    spent += b.saturating_sub(a);
                    count += iters * batch.len() as u64;
                }
                wall
            })
        });
        cpu.push((name, count, spent));
    }
    g.finish();
    let after = dht.stats();
    assert_eq!(
        after.rate_limited, before.rate_limited,
        "queries were dropped"
    );
    assert_eq!(after.malformed, before.malformed);
    for (name, count, spent) in cpu {
        if count > 0 && !spent.is_zero() {
            eprintln!(
                "dht_incoming/{name}: {:.0} queries per CPU-second of the bench thread \
                 ({count} queries, {:.3} s CPU)",
                count as f64 / spent.as_secs_f64(),
                spent.as_secs_f64()
            );
        }
    }
    eprintln!(
        "dht bench: {} queries answered in all, none dropped; table {} nodes, stored {:?}",
        after.queries_in - before.queries_in,
        dht.num_nodes().0,
        dht.stored()
    );
}

criterion_group!(benches, queries);
criterion_main!(benches);
