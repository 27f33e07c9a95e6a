//! A simulated DHT: thousands of [`Dht`] machines on a network with latency, plus liars and
//! churn. Checks that lookups converge and announces are found, and reports messages and
//! rounds per lookup.
//!
//! `cargo test -p webtorrent-core --test dht_sim` runs 1,000 nodes; the figures for 10,000:
//! `cargo test --release -p webtorrent-core --test dht_sim -- --ignored --nocapture`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use webtorrent_core::dht::krpc::{Body, Message, Method, NodeInfo, Response};
use webtorrent_core::dht::{Dht, DhtConfig, Event, LookupId, LookupReport};
use webtorrent_core::id::Id20;
use webtorrent_core::rng::Rng;
use webtorrent_core::time::Time;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

fn index(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v) if v.port() == 6881 => {
            let o = v.ip().octets();
            (o[0] == 10).then(|| (o[1] as usize) << 16 | (o[2] as usize) << 8 | o[3] as usize)
        }
        _ => None,
    }
}

/// A datagram in flight: arrival, order, from, to, bytes.
type InFlight = Reverse<(Time, u64, usize, usize, Vec<u8>)>;

enum Node {
    Honest(Box<Dht>),
    /// Answers every query with made-up nodes (at addresses nobody uses) and a fake peer.
    Liar(Id20),
}

struct Sim {
    nodes: Vec<Node>,
    online: Vec<bool>,
    latency: Vec<Duration>,
    queue: BinaryHeap<InFlight>,
    wakes: BinaryHeap<Reverse<(Time, usize)>>,
    seq: u64,
    now: Time,
    rng: Rng,
    messages: u64,
    events: Vec<(usize, Event)>,
}

impl Sim {
    fn new(n: usize, liars: f64, seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let t0 = Time::ZERO;
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 && rng.chance(liars) {
                let mut id = [0u8; 20];
                rng.fill(&mut id);
                nodes.push(Node::Liar(Id20(id)));
            } else {
                // Bootstrap from node 0 and, once there are some, a few earlier nodes.
                let mut bootstrap = vec![addr(0)];
                for _ in 0..2 {
                    if i > 1 {
                        bootstrap.push(addr(rng.below(i as u64) as usize));
                    }
                }
                let config = DhtConfig {
                    bootstrap,
                    ..DhtConfig::default()
                };
                nodes.push(Node::Honest(Box::new(Dht::new(
                    t0,
                    config,
                    seed ^ (i as u64 + 1),
                ))));
            }
        }
        let latency = (0..n)
            .map(|_| Duration::from_millis(5 + rng.below(95)))
            .collect();
        Sim {
            nodes,
            online: vec![true; n],
            latency,
            queue: BinaryHeap::new(),
            wakes: BinaryHeap::new(),
            seq: 0,
            now: t0,
            rng,
            messages: 0,
            events: Vec::new(),
        }
    }

    fn dht(&mut self, i: usize) -> &mut Dht {
        match &mut self.nodes[i] {
            Node::Honest(d) => d,
            Node::Liar(_) => panic!("node {i} is a liar"),
        }
    }

    fn is_honest(&self, i: usize) -> bool {
        matches!(self.nodes[i], Node::Honest(_))
    }

    /// Collects what node `i` sends and wants, after it handled something.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        let Node::Honest(d) = &mut self.nodes[i] else {
            return;
        };
        while let Some(t) = d.poll_transmit() {
            self.messages += 1;
            if let Some(j) = index(t.to).filter(|&j| j < self.online.len()) {
                let at = now + self.latency[i] + self.latency[j];
                self.seq += 1;
                self.queue.push(Reverse((at, self.seq, i, j, t.data)));
            }
        }
        while let Some(e) = d.poll_event() {
            self.events.push((i, e));
        }
        if let Some(at) = d.poll_timeout() {
            self.wakes.push(Reverse((at.max(now), i)));
        }
    }

    fn deliver(&mut self, from: usize, to: usize, data: &[u8]) {
        if !self.online[to] || !self.online[from] {
            return;
        }
        let now = self.now;
        match &mut self.nodes[to] {
            Node::Honest(d) => {
                d.handle_datagram(now, addr(from), data);
                self.flush(to);
            }
            Node::Liar(id) => {
                let id = *id;
                let Ok(m) = Message::decode(data) else { return };
                let Body::Query(q) = m.body else { return };
                let mut fake = Vec::new();
                for _ in 0..8 {
                    let mut nid = [0u8; 20];
                    self.rng.fill(&mut nid);
                    // Close to what was asked, so lookups are tempted.
                    if let Method::FindNode { target, .. }
                    | Method::GetPeers {
                        info_hash: target, ..
                    } = q.method
                    {
                        nid[..4].copy_from_slice(&target.0[..4]);
                    }
                    let port = 1000 + self.rng.below(1000) as u16;
                    fake.push(NodeInfo {
                        id: Id20(nid),
                        addr: SocketAddr::from(([10, 250, 0, 1], port)),
                    });
                }
                let values = if matches!(q.method, Method::GetPeers { .. }) {
                    vec!["10.251.0.1:1".parse().unwrap()]
                } else {
                    Vec::new()
                };
                let resp = Message {
                    tid: m.tid,
                    body: Body::Response(Response {
                        id,
                        nodes: fake,
                        values,
                        token: Some(b"liar".to_vec()),
                        ..Response::default()
                    }),
                    read_only: false,
                    ip: None,
                    version: None,
                };
                self.messages += 1;
                let at = now + self.latency[to] + self.latency[from];
                self.seq += 1;
                self.queue
                    .push(Reverse((at, self.seq, to, from, resp.encode())));
            }
        }
    }

    /// Runs until `until`.
    fn run(&mut self, until: Time) {
        loop {
            let next_msg = self.queue.peek().map(|Reverse(m)| m.0);
            let next_wake = self.wakes.peek().map(|Reverse(w)| w.0);
            let next = match (next_msg, next_wake) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_msg == Some(next) {
                let Reverse((_, _, from, to, data)) = self.queue.pop().unwrap();
                self.deliver(from, to, &data);
            } else {
                let Reverse((_, i)) = self.wakes.pop().unwrap();
                if !self.online[i] || !self.is_honest(i) {
                    continue;
                }
                let d = self.dht(i);
                if d.poll_timeout().is_some_and(|t| t <= next) {
                    d.handle_timeout(next);
                    self.flush(i);
                }
            }
        }
        self.now = until;
    }

    /// Joins every node, a few per simulated second, and lets the tables settle.
    fn bootstrap(&mut self, per_sec: usize) {
        let n = self.nodes.len();
        for i in 0..n {
            if i % per_sec == 0 {
                let until = self.now + Duration::from_secs(1);
                self.run(until);
            }
            if self.is_honest(i) {
                let now = self.now;
                self.dht(i).handle_timeout(now);
                self.flush(i);
            }
        }
        let until = self.now + Duration::from_secs(120);
        self.run(until);
    }

    fn report(&self, node: usize, id: LookupId) -> Option<LookupReport> {
        self.events.iter().find_map(|(i, e)| match e {
            Event::LookupDone(r) if *i == node && r.id == id => Some(r.clone()),
            _ => None,
        })
    }

    fn peers_found(&self, node: usize, id: LookupId) -> Vec<SocketAddr> {
        self.events
            .iter()
            .filter_map(|(i, e)| match e {
                Event::Peers { lookup, peers, .. } if *i == node && *lookup == id => {
                    Some(peers.clone())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }
}

struct Outcome {
    found: usize,
    lookups: usize,
    reports: Vec<LookupReport>,
}

/// Announces `torrents` torrents from honest nodes, takes `churn` of the honest nodes
/// offline, then looks each torrent up from `askers` other nodes.
fn scenario(
    n: usize,
    liars: f64,
    churn: f64,
    torrents: usize,
    askers: usize,
    seed: u64,
) -> (Sim, Outcome) {
    let mut sim = Sim::new(n, liars, seed);
    sim.bootstrap(50);
    let honest: Vec<usize> = (1..n).filter(|&i| sim.is_honest(i)).collect();
    let mut rng = Rng::new(seed ^ 0xabc);
    let mut announced = Vec::new();
    for t in 0..torrents {
        let who = honest[rng.below(honest.len() as u64) as usize];
        let mut ih = [0u8; 20];
        rng.fill(&mut ih);
        let now = sim.now;
        sim.dht(who).announce(now, Id20(ih), Some(40000 + t as u16));
        sim.flush(who);
        announced.push((
            Id20(ih),
            SocketAddr::new(addr(who).ip(), 40000 + t as u16),
            who,
        ));
    }
    let until = sim.now + Duration::from_secs(30);
    sim.run(until);
    // Churn: some honest nodes leave (never the announcers).
    for &i in &honest {
        if rng.chance(churn) && !announced.iter().any(|a| a.2 == i) {
            sim.online[i] = false;
        }
    }
    let mut asks = Vec::new();
    for (ih, peer, _) in &announced {
        for _ in 0..askers {
            let who = loop {
                let w = honest[rng.below(honest.len() as u64) as usize];
                if sim.online[w] {
                    break w;
                }
            };
            let now = sim.now;
            let id = sim.dht(who).get_peers(now, *ih);
            sim.flush(who);
            asks.push((who, id, *peer));
        }
    }
    let until = sim.now + Duration::from_secs(60);
    sim.run(until);
    let mut found = 0;
    let mut reports = Vec::new();
    for (who, id, peer) in &asks {
        if sim.peers_found(*who, *id).contains(peer) {
            found += 1;
        }
        if let Some(r) = sim.report(*who, *id) {
            reports.push(r);
        }
    }
    let lookups = asks.len();
    (
        sim,
        Outcome {
            found,
            lookups,
            reports,
        },
    )
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn summary(label: &str, sim: &Sim, o: &Outcome) -> String {
    let q = median(o.reports.iter().map(|r| u64::from(r.queries)).collect());
    let rounds = median(o.reports.iter().map(|r| u64::from(r.rounds)).collect());
    let ms = median(
        o.reports
            .iter()
            .map(|r| r.elapsed.as_millis() as u64)
            .collect(),
    );
    let worst = o.reports.iter().map(|r| r.queries).max().unwrap_or(0);
    format!(
        "{label}: {}/{} lookups found the peer; per lookup median {q} queries (worst {worst}), \
         {rounds} rounds, {ms} ms simulated; {} messages in all",
        o.found, o.lookups, sim.messages
    )
}

#[test]
fn lookups_converge_with_liars_and_churn() {
    let (sim, o) = scenario(1000, 0.1, 0.2, 10, 5, 7);
    eprintln!("{}", summary("1000 nodes, 10 % liars, 20 % gone", &sim, &o));
    assert_eq!(o.reports.len(), o.lookups, "every lookup ends");
    assert!(
        o.found * 100 >= o.lookups * 95,
        "{} of {} found",
        o.found,
        o.lookups
    );
    let q = median(o.reports.iter().map(|r| u64::from(r.queries)).collect());
    assert!(q <= 80, "median {q} queries per lookup");
    // Tables are full of live nodes: every honest online node knows at least K.
    for i in 0..sim.nodes.len() {
        if let Node::Honest(d) = &sim.nodes[i] {
            assert!(d.num_nodes().0 >= 8, "node {i}: {:?}", d.num_nodes());
        }
    }
}

#[test]
#[ignore = "figures: 10,000 nodes, run with --release --nocapture"]
fn figures_at_10000_nodes() {
    let (sim, o) = scenario(10_000, 0.1, 0.2, 20, 10, 11);
    eprintln!(
        "{}",
        summary("10000 nodes, 10 % liars, 20 % gone", &sim, &o)
    );
    let honest: Vec<&Dht> = sim
        .nodes
        .iter()
        .filter_map(|n| match n {
            Node::Honest(d) => Some(&**d),
            Node::Liar(_) => None,
        })
        .collect();
    let nodes: usize = honest.iter().map(|d| d.num_nodes().0).sum();
    eprintln!(
        "routing tables: {:.1} nodes per table on average",
        nodes as f64 / honest.len() as f64
    );
}
