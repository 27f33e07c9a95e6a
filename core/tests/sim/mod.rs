//! A deterministic in-memory network for driving [`Torrent`] state machines: no sockets, no
//! clock, a seeded RNG. Links have latency, bandwidth and an optional cut-off point.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use webtorrent_core::creator::TorrentCreator;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::piece::{sha1, Bitfield};
use webtorrent_core::rng::Rng;
use webtorrent_core::session::Direction;
use webtorrent_core::torrent::{Output, Torrent, TorrentConfig, TorrentEvent};
use webtorrent_core::{Id20, InfoHash, PeerKey, Time};

/// How a node's storage behaves when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Flips bits in every block it serves.
    Corrupt,
}

pub struct Node {
    pub torrent: Torrent,
    pub addr: SocketAddr,
    pub data: Vec<u8>,
    pub behaviour: Behaviour,
    pub done_at: Option<Time>,
    pub events: Vec<TorrentEvent>,
    pub seed_bytes: Option<Bytes>,
}

#[derive(Debug, Clone, Copy)]
pub struct LinkSpec {
    pub latency: Duration,
    /// Bytes per second; 0 = unlimited.
    pub bandwidth: u64,
    /// Close the link after this many bytes have crossed it (both directions together).
    pub cut_after: Option<u64>,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            latency: Duration::from_millis(5),
            bandwidth: 20_000_000,
            cut_after: None,
        }
    }
}

struct Link {
    ends: [(usize, PeerKey); 2],
    spec: LinkSpec,
    next_free: [Time; 2],
    carried: u64,
    open: bool,
}

enum Ev {
    Deliver {
        link: usize,
        to_side: usize,
        data: Bytes,
    },
    Close {
        link: usize,
    },
}

pub struct Sim {
    pub nodes: Vec<Node>,
    links: Vec<Link>,
    key_to_link: HashMap<(usize, PeerKey), usize>,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    evs: BTreeMap<u64, Ev>,
    seq: u64,
    next_key: u64,
    pub now: Time,
    pub rng: Rng,
    /// Link properties for specific (dialer, listener) pairs.
    pub link_specs: HashMap<(usize, usize), LinkSpec>,
    pub default_link: LinkSpec,
    pub bytes_moved: u64,
}

pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = vec![0u8; len];
    r.fill(&mut v);
    v
}

/// A multi-file torrent over `data` split into files of the given lengths.
pub fn multi_file_torrent(data: &[u8], lengths: &[usize], piece_length: u32) -> Arc<Metainfo> {
    assert_eq!(lengths.iter().sum::<usize>(), data.len());
    let mut off = 0;
    let files: Vec<(Vec<String>, u64, &[u8])> = lengths
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let f = (
                vec![format!("dir{}", i % 2), format!("file{i}.bin")],
                l as u64,
                &data[off..off + l],
            );
            off += l;
            f
        })
        .collect();
    let t = TorrentCreator::new()
        .with_piece_length(piece_length)
        .create_multi("sim", files)
        .expect("valid torrent");
    Arc::new(t.metainfo)
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Sim {
            nodes: Vec::new(),
            links: Vec::new(),
            key_to_link: HashMap::new(),
            queue: BinaryHeap::new(),
            evs: BTreeMap::new(),
            seq: 0,
            next_key: 1,
            now: Time::ZERO,
            rng: Rng::new(seed),
            link_specs: HashMap::new(),
            default_link: LinkSpec::default(),
            bytes_moved: 0,
        }
    }

    fn config(&mut self, idx: usize) -> TorrentConfig {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(b"-WR0001-");
        self.rng.fill(&mut id[8..]);
        id[19] = idx as u8;
        let mut c = TorrentConfig::new(Id20(id));
        c.session.listen_port = Some(6881);
        c
    }

    fn addr_of(idx: usize) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                (idx / 250) as u8,
                (idx % 250) as u8 + 1,
            )),
            6881,
        )
    }

    /// Adds a node that has all of `data`.
    pub fn add_seed(&mut self, meta: &Arc<Metainfo>, data: &[u8], behaviour: Behaviour) -> usize {
        let idx = self.nodes.len();
        let cfg = self.config(idx);
        let n = meta.info.num_pieces();
        let seed = self.rng.next_u64();
        let torrent =
            Torrent::new(cfg, meta.clone(), Bitfield::full(n), seed, self.now).expect("torrent");
        self.nodes.push(Node {
            torrent,
            addr: Self::addr_of(idx),
            data: data.to_vec(),
            behaviour,
            done_at: Some(self.now),
            events: Vec::new(),
            seed_bytes: Some(Bytes::copy_from_slice(data)),
        });
        idx
    }

    /// Adds a node with nothing, from the torrent file.
    pub fn add_leecher(&mut self, meta: &Arc<Metainfo>) -> usize {
        let idx = self.nodes.len();
        let cfg = self.config(idx);
        let n = meta.info.num_pieces();
        let seed = self.rng.next_u64();
        let torrent =
            Torrent::new(cfg, meta.clone(), Bitfield::new(n), seed, self.now).expect("torrent");
        self.push_node(torrent, meta.info.total_length() as usize)
    }

    /// Adds a node that knows only the info hash (magnet link).
    pub fn add_magnet_leecher(&mut self, info_hash: InfoHash, total: usize) -> usize {
        let idx = self.nodes.len();
        let cfg = self.config(idx);
        let seed = self.rng.next_u64();
        let torrent = Torrent::from_info_hash(cfg, info_hash, Vec::new(), seed, self.now);
        self.push_node(torrent, total)
    }

    fn push_node(&mut self, torrent: Torrent, total: usize) -> usize {
        let idx = self.nodes.len();
        self.nodes.push(Node {
            torrent,
            addr: Self::addr_of(idx),
            // Filled (not lazily zeroed) so the storage's pages exist before the transfer.
            data: vec![0xee; total],
            behaviour: Behaviour::Honest,
            done_at: None,
            events: Vec::new(),
            seed_bytes: None,
        });
        idx
    }

    /// Tells node `who` about node `about` (as a tracker would).
    pub fn introduce(&mut self, who: usize, about: usize) {
        let a = self.nodes[about].addr;
        let now = self.now;
        self.nodes[who].torrent.add_candidates(
            now,
            [a],
            webtorrent_core::torrent::PeerSource::Tracker,
        );
        self.pump(who);
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.evs.insert(self.seq, ev);
    }

    fn connect(&mut self, from: usize, addr: SocketAddr) {
        let now = self.now;
        let Some(to) = self.nodes.iter().position(|n| n.addr == addr) else {
            self.nodes[from].torrent.connect_failed(now, addr);
            return;
        };
        let spec = self
            .link_specs
            .get(&(from, to))
            .or_else(|| self.link_specs.get(&(to, from)))
            .copied()
            .unwrap_or(self.default_link);
        // A link that drops midway does so once; reconnections between the pair are stable.
        if let Some(s) = self.link_specs.get_mut(&(from, to)) {
            s.cut_after = None;
        }
        if let Some(s) = self.link_specs.get_mut(&(to, from)) {
            s.cut_after = None;
        }
        let ka = PeerKey(self.next_key);
        let kb = PeerKey(self.next_key + 1);
        self.next_key += 2;
        let incoming_addr = SocketAddr::new(
            self.nodes[from].addr.ip(),
            40000 + (self.next_key % 20000) as u16,
        );
        if self.nodes[from]
            .torrent
            .add_peer(now, ka, Some(addr), Direction::Outgoing)
            .is_err()
        {
            return;
        }
        if self.nodes[to]
            .torrent
            .add_peer(now, kb, Some(incoming_addr), Direction::Incoming)
            .is_err()
        {
            self.nodes[from].torrent.peer_closed(now, ka);
            return;
        }
        let link = self.links.len();
        self.links.push(Link {
            ends: [(from, ka), (to, kb)],
            spec,
            next_free: [now, now],
            carried: 0,
            open: true,
        });
        self.key_to_link.insert((from, ka), link);
        self.key_to_link.insert((to, kb), link);
    }

    fn send(&mut self, node: usize, key: PeerKey, data: Bytes) {
        let Some(&link) = self.key_to_link.get(&(node, key)) else {
            return;
        };
        let l = &mut self.links[link];
        if !l.open {
            return;
        }
        let side = if l.ends[0] == (node, key) { 0 } else { 1 };
        let start = l.next_free[side].max(self.now);
        let tx = (data.len() as u64 * 1_000_000_000)
            .checked_div(l.spec.bandwidth)
            .map_or(Duration::ZERO, Duration::from_nanos);
        l.next_free[side] = start + tx;
        let arrive = l.next_free[side] + l.spec.latency;
        l.carried += data.len() as u64;
        self.bytes_moved += data.len() as u64;
        let cut = l.spec.cut_after.is_some_and(|c| l.carried >= c);
        if cut {
            l.open = false;
        }
        self.schedule(
            arrive,
            Ev::Deliver {
                link,
                to_side: 1 - side,
                data,
            },
        );
        if cut {
            self.schedule(arrive, Ev::Close { link });
        }
    }

    /// Carries out everything node `i` asked for.
    pub fn pump(&mut self, i: usize) {
        loop {
            let now = self.now;
            let mut progressed = false;
            while let Some(out) = self.nodes[i].torrent.poll_output() {
                progressed = true;
                match out {
                    Output::Connect(addr) => self.connect(i, addr),
                    Output::Disconnect(key) => self.close_from(i, key),
                    Output::ReadBlock { peer, block } => {
                        let meta = self.nodes[i].torrent.metainfo().cloned().expect("meta");
                        let off = meta.info.layout.piece_offset(block.piece) as usize
                            + block.begin as usize;
                        let node = &mut self.nodes[i];
                        let data = match (&node.seed_bytes, node.behaviour) {
                            (Some(b), Behaviour::Honest) => {
                                b.slice(off..off + block.length as usize)
                            }
                            (_, Behaviour::Corrupt) => {
                                let mut v = node.data[off..off + block.length as usize].to_vec();
                                v[0] ^= 0xff;
                                Bytes::from(v)
                            }
                            (None, _) => {
                                Bytes::copy_from_slice(&node.data[off..off + block.length as usize])
                            }
                        };
                        node.torrent.block_read(now, peer, block, Some(data));
                    }
                    Output::VerifyPiece {
                        piece,
                        data,
                        expected,
                    } => {
                        let ok = sha1(&data) == expected;
                        let node = &mut self.nodes[i];
                        if ok {
                            let meta = node.torrent.metainfo().cloned().expect("meta");
                            let off = meta.info.layout.piece_offset(piece) as usize;
                            node.data[off..off + data.len()].copy_from_slice(&data);
                        }
                        node.torrent.piece_checked(now, piece, ok);
                        node.torrent.recycle(data);
                    }
                    Output::Event(e) => {
                        let node = &mut self.nodes[i];
                        if e == TorrentEvent::Done {
                            node.done_at = Some(now);
                        }
                        if !matches!(e, TorrentEvent::PieceVerified(_)) {
                            node.events.push(e);
                        }
                    }
                }
            }
            while let Some((key, data)) = self.nodes[i].torrent.poll_transmit(now) {
                progressed = true;
                self.send(i, key, data);
            }
            if !progressed {
                break;
            }
        }
    }

    fn close_from(&mut self, node: usize, key: PeerKey) {
        let Some(&link) = self.key_to_link.get(&(node, key)) else {
            return;
        };
        if self.links[link].open {
            self.links[link].open = false;
            let at = self.now + self.links[link].spec.latency;
            self.schedule(at, Ev::Close { link });
        }
    }

    /// Runs until `until` returns true or `limit` of simulated time passes. Returns whether
    /// `until` became true.
    pub fn run(&mut self, limit: Duration, mut until: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        for i in 0..self.nodes.len() {
            self.pump(i);
        }
        loop {
            if until(self) {
                return true;
            }
            let next_ev = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self.nodes.iter().map(|n| n.torrent.poll_timeout()).min();
            let next = match (next_ev, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("something to do"),
            };
            if next > end {
                return false;
            }
            self.now = self.now.max(next);
            let now = self.now;
            if next_ev == Some(next) {
                let Reverse((_, seq)) = self.queue.pop().expect("peeked");
                match self.evs.remove(&seq).expect("event") {
                    Ev::Deliver {
                        link,
                        to_side,
                        data,
                    } => {
                        let (node, key) = self.links[link].ends[to_side];
                        self.nodes[node].torrent.peer_data(now, key, &data);
                        self.pump(node);
                    }
                    Ev::Close { link } => {
                        for side in 0..2 {
                            let (node, key) = self.links[link].ends[side];
                            self.key_to_link.remove(&(node, key));
                            self.nodes[node].torrent.peer_closed(now, key);
                            self.pump(node);
                        }
                    }
                }
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].torrent.poll_timeout() <= now {
                        self.nodes[i].torrent.handle_timeout(now);
                        self.pump(i);
                    }
                }
            }
        }
    }
}
