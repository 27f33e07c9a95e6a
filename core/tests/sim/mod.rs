//! A deterministic in-memory network for driving [`Torrent`] state machines: no sockets, no
//! clock, a seeded RNG. Links have latency, bandwidth and an optional cut-off point.
//!
//! Pieces are hashed inline or on a worker thread ([`Verify`]); with the worker, verdicts are
//! still handed over at fixed simulated times, so runs stay deterministic either way.
//!
//! A node is a [`Torrent`] or a scripted [`RawPeer`] ([`Driver`]). Adversaries: torrents whose
//! storage lies ([`Behaviour`]), raw peers ([`Script`]), nodes with no address reached only
//! over [`Sim::link_addressless`], and nodes that come back with a new peer id
//! ([`Sim::respawn_every`]).

#![allow(dead_code)]

mod raw;

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use webtorrent_core::creator::TorrentCreator;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::peer::Direction;
use webtorrent_core::piece::PieceIndex;
use webtorrent_core::piece::{sha1, Bitfield};
use webtorrent_core::rng::Rng;
use webtorrent_core::torrent::{Output, Torrent, TorrentConfig, TorrentEvent};
use webtorrent_core::{Id20, InfoHash, PeerKey, Time};

#[allow(unused_imports)] // Not every test file uses every adversary.
pub use raw::{is_made_up, LiarReply, RawPeer, Script, FLOOD_ADDRS};

/// How a node's storage behaves when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Flips bits in every block it serves.
    Corrupt,
    /// Never answers a read, so the blocks peers ask for are never sent.
    Silent,
    /// Serves the bytes of another piece at the requested offset.
    WrongPiece,
}

/// What drives a node.
pub enum Driver {
    /// The torrent state machine under test.
    Torrent(Box<Torrent>),
    /// A scripted peer speaking the wire protocol through its own sessions.
    Raw(Box<RawPeer>),
}

/// A node that is replaced, every `every`, by a fresh seed with a new peer id, which links
/// (with no address) to `targets` again.
struct Respawn {
    every: Duration,
    next: Time,
    targets: Vec<usize>,
    meta: Arc<Metainfo>,
}

pub struct Node {
    pub driver: Driver,
    pub addr: SocketAddr,
    /// Where verified pieces are written (shared with the hashing thread, which stores what it
    /// verified, as a driver's disk task would). Empty for seeds.
    storage: Arc<Mutex<Vec<u8>>>,
    pub behaviour: Behaviour,
    pub done_at: Option<Time>,
    pub events: Vec<TorrentEvent>,
    pub seed_bytes: Option<Bytes>,
    /// Has no address (a WebRTC peer in a browser): nobody can dial it and it dials nobody;
    /// only [`Sim::link_addressless`] reaches it.
    pub addressless: bool,
    /// Addresses it dialled that no node has (made up, e.g. by a PEX flooder).
    pub failed_connects: Vec<SocketAddr>,
    /// How many times it was replaced by a fresh torrent with a new peer id.
    pub lives: u32,
    /// [`Output::ReadPiece`] requests it got (answered or not, per its [`Behaviour`]).
    pub reads: u64,
    respawn: Option<Respawn>,
}

impl Node {
    fn new(driver: Driver, addr: SocketAddr, storage: Arc<Mutex<Vec<u8>>>) -> Self {
        Node {
            driver,
            addr,
            storage,
            behaviour: Behaviour::Honest,
            done_at: None,
            events: Vec::new(),
            seed_bytes: None,
            addressless: false,
            failed_connects: Vec::new(),
            lives: 1,
            reads: 0,
            respawn: None,
        }
    }

    /// The node's torrent. Panics for a raw peer.
    pub fn torrent(&self) -> &Torrent {
        match &self.driver {
            Driver::Torrent(t) => t,
            Driver::Raw(_) => panic!("node is a raw peer, not a torrent"),
        }
    }

    /// The node's torrent. Panics for a raw peer.
    pub fn torrent_mut(&mut self) -> &mut Torrent {
        match &mut self.driver {
            Driver::Torrent(t) => t,
            Driver::Raw(_) => panic!("node is a raw peer, not a torrent"),
        }
    }

    /// The node's scripted peer. Panics for a torrent.
    pub fn raw(&self) -> &RawPeer {
        match &self.driver {
            Driver::Raw(r) => r,
            Driver::Torrent(_) => panic!("node is a torrent, not a raw peer"),
        }
    }

    fn add_peer(
        &mut self,
        now: Time,
        key: PeerKey,
        addr: Option<SocketAddr>,
        direction: Direction,
    ) -> bool {
        match &mut self.driver {
            Driver::Torrent(t) => t.add_peer(now, key, addr, direction).is_ok(),
            Driver::Raw(r) => r.add_peer(now, key, direction),
        }
    }

    fn peer_data(&mut self, now: Time, key: PeerKey, data: &[u8]) {
        match &mut self.driver {
            Driver::Torrent(t) => t.peer_data(now, key, data),
            Driver::Raw(r) => r.peer_data(now, key, data),
        }
    }

    fn peer_closed(&mut self, now: Time, key: PeerKey) {
        match &mut self.driver {
            Driver::Torrent(t) => t.peer_closed(now, key),
            Driver::Raw(r) => r.peer_closed(key),
        }
    }

    fn driver_timeout(&self) -> Time {
        match &self.driver {
            Driver::Torrent(t) => t.poll_timeout(),
            Driver::Raw(r) => r.poll_timeout(),
        }
    }

    /// When the node next has timed work: its driver's timers or its respawn.
    fn next_timer(&self) -> Time {
        let t = self.driver_timeout();
        self.respawn.as_ref().map_or(t, |r| t.min(r.next))
    }

    fn handle_timeout(&mut self, now: Time) {
        match &mut self.driver {
            Driver::Torrent(t) => t.handle_timeout(now),
            Driver::Raw(r) => r.handle_timeout(now),
        }
    }

    /// The node's storage: what it has verified and written so far.
    pub fn data(&self) -> MutexGuard<'_, Vec<u8>> {
        self.storage.lock().expect("storage lock")
    }

    /// Takes the storage out (leaving it empty), e.g. to reuse it in another run.
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.data())
    }
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
    /// Chunks on their way to each end, in order of arrival (which is also the order they were
    /// sent in: a link's latency is fixed and its sends are serialised).
    in_flight: [VecDeque<(Time, Bytes)>; 2],
}

/// Where the pieces the torrents ask to verify are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// At once, on the simulation's thread.
    Inline,
    /// On a worker thread, as a driver would. The verdict is handed to the torrent `delay` of
    /// simulated time after the request (waiting for the worker if it is not done yet), so a
    /// run is as deterministic as with [`Verify::Inline`]; meanwhile the simulation goes on.
    Thread { delay: Duration },
}

enum Ev {
    /// Chunks in flight to end `to_side` of `link` have arrived: all those due by now, which
    /// are handed over together, as a socket read would.
    Deliver {
        link: usize,
        to_side: usize,
    },
    Close {
        link: usize,
    },
    /// The verdict of hashing job `ticket` is due.
    Verified {
        node: usize,
        piece: PieceIndex,
        ticket: u64,
    },
}

/// An event due at `at`; `seq` orders events due at the same time.
struct Scheduled {
    at: Time,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct HashJob {
    ticket: u64,
    data: Bytes,
    expected: [u8; 20],
    storage: Arc<Mutex<Vec<u8>>>,
    offset: usize,
}

/// Checks a piece against its SHA-1 and, if good, writes it into `storage` at `offset`.
fn check_and_store(
    data: &[u8],
    expected: &[u8; 20],
    storage: &Mutex<Vec<u8>>,
    offset: usize,
) -> bool {
    let ok = sha1(data) == *expected;
    if ok {
        let mut s = storage.lock().expect("storage lock");
        s[offset..offset + data.len()].copy_from_slice(data);
    }
    ok
}

/// Most pieces waiting for the worker; further ones are checked on the simulation's thread (as
/// the native driver does when its hashing tasks fall behind). Either way the verdict is given
/// at the same simulated time, so this changes nothing but where the CPU time is spent.
const MAX_QUEUED_AT_WORKER: usize = 2;

/// Jobs not yet started by the worker, and whether the simulation is gone.
struct JobQueue {
    jobs: Mutex<(VecDeque<HashJob>, bool)>,
    ready: Condvar,
}

/// A worker thread hashing (and storing) pieces in the order they are handed to it.
struct Hasher {
    queue: Arc<JobQueue>,
    results: mpsc::Receiver<(u64, Bytes, bool)>,
    /// Verdicts received (or computed here) before they were due.
    early: HashMap<u64, (Bytes, bool)>,
    next_ticket: u64,
    worker: Option<JoinHandle<()>>,
}

impl Hasher {
    fn new() -> Self {
        let queue = Arc::new(JobQueue {
            jobs: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
        });
        let (result_tx, results) = mpsc::channel();
        let q = queue.clone();
        let worker = std::thread::Builder::new()
            .name("sim-hasher".into())
            .spawn(move || loop {
                let job = {
                    let mut jobs = q.jobs.lock().expect("job queue lock");
                    loop {
                        if let Some(job) = jobs.0.pop_front() {
                            break job;
                        }
                        if jobs.1 {
                            return;
                        }
                        jobs = q.ready.wait(jobs).expect("job queue lock");
                    }
                };
                let ok = check_and_store(&job.data, &job.expected, &job.storage, job.offset);
                if result_tx.send((job.ticket, job.data, ok)).is_err() {
                    return;
                }
            })
            .expect("spawn hasher");
        Hasher {
            queue,
            results,
            early: HashMap::new(),
            next_ticket: 0,
            worker: Some(worker),
        }
    }

    fn submit(
        &mut self,
        data: Bytes,
        expected: [u8; 20],
        storage: Arc<Mutex<Vec<u8>>>,
        offset: usize,
    ) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let job = HashJob {
            ticket,
            data,
            expected,
            storage,
            offset,
        };
        let mut jobs = self.queue.jobs.lock().expect("job queue lock");
        if jobs.0.len() >= MAX_QUEUED_AT_WORKER {
            drop(jobs);
            self.run_here(job);
        } else {
            jobs.0.push_back(job);
            drop(jobs);
            self.queue.ready.notify_one();
        }
        ticket
    }

    fn run_here(&mut self, job: HashJob) {
        let ok = check_and_store(&job.data, &job.expected, &job.storage, job.offset);
        self.early.insert(job.ticket, (job.data, ok));
    }

    /// The verdict of `ticket`: done already, or done here if the worker has not started it
    /// (so a worker that the OS keeps off the CPU does not stall the simulation), else waited
    /// for.
    fn wait(&mut self, ticket: u64) -> (Bytes, bool) {
        if let Some(r) = self.early.remove(&ticket) {
            return r;
        }
        let mut jobs = self.queue.jobs.lock().expect("job queue lock");
        if let Some(i) = jobs.0.iter().position(|j| j.ticket == ticket) {
            let job = jobs.0.remove(i).expect("position is in range");
            drop(jobs);
            self.run_here(job);
            return self.early.remove(&ticket).expect("just checked");
        }
        drop(jobs);
        loop {
            let (t, data, ok) = self.results.recv().expect("hasher alive");
            if t == ticket {
                return (data, ok);
            }
            self.early.insert(t, (data, ok));
        }
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.queue.jobs.lock() {
            jobs.1 = true;
        }
        self.queue.ready.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

pub struct Sim {
    pub nodes: Vec<Node>,
    links: Vec<Link>,
    key_to_link: HashMap<(usize, PeerKey), usize>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    next_key: u64,
    pub now: Time,
    pub rng: Rng,
    /// Link properties for specific (dialer, listener) pairs.
    pub link_specs: HashMap<(usize, usize), LinkSpec>,
    pub default_link: LinkSpec,
    pub bytes_moved: u64,
    /// Where pieces are hashed ([`Verify::Inline`] by default).
    pub verify: Verify,
    hasher: Option<Hasher>,
    /// Applied to the configuration of every torrent added (default: nothing changed).
    pub tune: fn(&mut TorrentConfig),
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
            seq: 0,
            next_key: 1,
            now: Time::ZERO,
            rng: Rng::new(seed),
            link_specs: HashMap::new(),
            default_link: LinkSpec::default(),
            bytes_moved: 0,
            verify: Verify::Inline,
            hasher: None,
            tune: |_| {},
        }
    }

    fn config(&mut self, idx: usize) -> TorrentConfig {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(b"-WR0001-");
        self.rng.fill(&mut id[8..]);
        id[19] = idx as u8;
        let mut c = TorrentConfig::new(Id20(id));
        c.session.listen_port = Some(6881);
        (self.tune)(&mut c);
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
        self.add_seed_bytes(meta, Bytes::copy_from_slice(data), behaviour)
    }

    /// Adds a node that has all of `data`, serving blocks as slices of it (no copy: benches
    /// share one buffer across runs).
    pub fn add_seed_bytes(
        &mut self,
        meta: &Arc<Metainfo>,
        data: Bytes,
        behaviour: Behaviour,
    ) -> usize {
        let idx = self.nodes.len();
        let cfg = self.config(idx);
        let n = meta.info.num_pieces();
        let seed = self.rng.next_u64();
        let torrent =
            Torrent::new(cfg, meta.clone(), Bitfield::full(n), seed, self.now).expect("torrent");
        let mut node = Node::new(
            Driver::Torrent(Box::new(torrent)),
            Self::addr_of(idx),
            Arc::default(),
        );
        node.behaviour = behaviour;
        node.done_at = Some(self.now);
        node.seed_bytes = Some(data);
        self.nodes.push(node);
        idx
    }

    /// Adds a scripted peer for the torrent `info_hash`, with a random peer id.
    pub fn add_raw(&mut self, info_hash: InfoHash, script: Script) -> usize {
        let idx = self.nodes.len();
        let id = self.config(idx).session.peer_id;
        let raw = RawPeer::new(script, info_hash, id, self.now);
        self.nodes.push(Node::new(
            Driver::Raw(Box::new(raw)),
            Self::addr_of(idx),
            Arc::default(),
        ));
        idx
    }

    /// Adds a node with nothing, from the torrent file.
    pub fn add_leecher(&mut self, meta: &Arc<Metainfo>) -> usize {
        // Filled (not lazily zeroed) so the storage's pages exist before the transfer.
        self.add_leecher_with_storage(meta, vec![0xee; meta.info.total_length() as usize])
    }

    /// Adds a node with nothing, writing verified pieces into `storage` (which must be as long
    /// as the torrent). Benches pass the same, already faulted-in buffer to every run.
    pub fn add_leecher_with_storage(&mut self, meta: &Arc<Metainfo>, storage: Vec<u8>) -> usize {
        assert_eq!(storage.len() as u64, meta.info.total_length());
        let idx = self.nodes.len();
        let cfg = self.config(idx);
        let n = meta.info.num_pieces();
        let seed = self.rng.next_u64();
        let torrent =
            Torrent::new(cfg, meta.clone(), Bitfield::new(n), seed, self.now).expect("torrent");
        self.push_node(torrent, storage)
    }

    /// Adds a node that knows only the info hash (magnet link).
    pub fn add_magnet_leecher(&mut self, info_hash: InfoHash, total: usize) -> usize {
        let idx = self.nodes.len();
        let cfg = self.config(idx);
        let seed = self.rng.next_u64();
        let torrent = Torrent::from_info_hash(cfg, info_hash, Vec::new(), seed, self.now);
        self.push_node(torrent, vec![0xee; total])
    }

    fn push_node(&mut self, torrent: Torrent, data: Vec<u8>) -> usize {
        let idx = self.nodes.len();
        self.nodes.push(Node::new(
            Driver::Torrent(Box::new(torrent)),
            Self::addr_of(idx),
            Arc::new(Mutex::new(data)),
        ));
        idx
    }

    /// Tells node `who` (a torrent) about node `about` (as a tracker would).
    pub fn introduce(&mut self, who: usize, about: usize) {
        let a = self.nodes[about].addr;
        let now = self.now;
        self.nodes[who].torrent_mut().add_candidates(
            now,
            [a],
            webtorrent_core::torrent::PeerSource::Tracker,
        );
        self.pump(who);
    }

    /// Connects `from` (dialling) and `to` directly, with no address on either side, as a
    /// WebRTC connection in a browser. Returns whether both ends took the connection.
    pub fn link_addressless(&mut self, from: usize, to: usize) -> bool {
        let now = self.now;
        let spec = self.spec_for(from, to);
        let (ka, kb) = self.new_keys();
        if !self.nodes[from].add_peer(now, ka, None, Direction::Outgoing) {
            return false;
        }
        if !self.nodes[to].add_peer(now, kb, None, Direction::Incoming) {
            self.nodes[from].peer_closed(now, ka);
            self.pump(from);
            return false;
        }
        self.open_link((from, ka), (to, kb), spec);
        self.pump(from);
        self.pump(to);
        true
    }

    /// Makes seed `node` an addressless peer that, every `every`, closes its connections and
    /// is replaced by a fresh seed (same behaviour) with a new random peer id, which links to
    /// `targets` again with [`Sim::link_addressless`] (so neither an IP ban nor a peer-id ban
    /// keeps it out). Links it to `targets` now.
    pub fn respawn_every(
        &mut self,
        node: usize,
        meta: &Arc<Metainfo>,
        every: Duration,
        targets: &[usize],
    ) {
        self.nodes[node].addressless = true;
        self.nodes[node].respawn = Some(Respawn {
            every,
            next: self.now + every,
            targets: targets.to_vec(),
            meta: meta.clone(),
        });
        for &t in targets {
            self.link_addressless(node, t);
        }
    }

    fn respawn(&mut self, i: usize) {
        let now = self.now;
        let mut keys: Vec<PeerKey> = self
            .key_to_link
            .keys()
            .filter(|(n, _)| *n == i)
            .map(|(_, k)| *k)
            .collect();
        keys.sort_unstable_by_key(|k| k.0);
        for k in keys {
            self.close_from(i, k);
        }
        let Some(r) = self.nodes[i].respawn.as_mut() else {
            return;
        };
        r.next = now + r.every;
        let (meta, targets) = (r.meta.clone(), r.targets.clone());
        let cfg = self.config(i);
        let seed = self.rng.next_u64();
        let n = meta.info.num_pieces();
        let torrent = Torrent::new(cfg, meta, Bitfield::full(n), seed, now).expect("torrent");
        let node = &mut self.nodes[i];
        node.driver = Driver::Torrent(Box::new(torrent));
        node.lives += 1;
        for t in targets {
            self.link_addressless(i, t);
        }
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// Gives node `i` the verdict on a piece (stored already if good) and its buffer back.
    fn piece_verdict(&mut self, i: usize, piece: PieceIndex, data: Bytes, ok: bool) {
        let now = self.now;
        let t = self.nodes[i].torrent_mut();
        t.piece_checked(now, piece, ok);
        t.recycle(data);
    }

    /// The node at the other end of node `node`'s connection `key` (open or closed).
    pub fn remote_of(&self, node: usize, key: PeerKey) -> Option<usize> {
        self.links.iter().find_map(|l| match l.ends {
            [a, (b, _)] if a == (node, key) => Some(b),
            [(a, _), b] if b == (node, key) => Some(a),
            _ => None,
        })
    }

    /// The properties of a new link between `a` and `b`. A link that drops midway does so
    /// once; reconnections between the pair are stable.
    fn spec_for(&mut self, a: usize, b: usize) -> LinkSpec {
        let spec = self
            .link_specs
            .get(&(a, b))
            .or_else(|| self.link_specs.get(&(b, a)))
            .copied()
            .unwrap_or(self.default_link);
        if let Some(s) = self.link_specs.get_mut(&(a, b)) {
            s.cut_after = None;
        }
        if let Some(s) = self.link_specs.get_mut(&(b, a)) {
            s.cut_after = None;
        }
        spec
    }

    fn new_keys(&mut self) -> (PeerKey, PeerKey) {
        let keys = (PeerKey(self.next_key), PeerKey(self.next_key + 1));
        self.next_key += 2;
        keys
    }

    fn open_link(&mut self, a: (usize, PeerKey), b: (usize, PeerKey), spec: LinkSpec) {
        let now = self.now;
        let link = self.links.len();
        self.links.push(Link {
            ends: [a, b],
            spec,
            next_free: [now, now],
            carried: 0,
            open: true,
            in_flight: [VecDeque::new(), VecDeque::new()],
        });
        self.key_to_link.insert(a, link);
        self.key_to_link.insert(b, link);
    }

    fn connect(&mut self, from: usize, addr: SocketAddr) {
        let now = self.now;
        let target = self
            .nodes
            .iter()
            .position(|n| n.addr == addr && !n.addressless);
        let to = match target {
            Some(to) if !self.nodes[from].addressless => to,
            _ => {
                self.nodes[from].failed_connects.push(addr);
                self.nodes[from].torrent_mut().connect_failed(now, addr);
                return;
            }
        };
        let spec = self.spec_for(from, to);
        let (ka, kb) = self.new_keys();
        let incoming_addr = SocketAddr::new(
            self.nodes[from].addr.ip(),
            40000 + (self.next_key % 20000) as u16,
        );
        if !self.nodes[from].add_peer(now, ka, Some(addr), Direction::Outgoing) {
            return;
        }
        if !self.nodes[to].add_peer(now, kb, Some(incoming_addr), Direction::Incoming) {
            self.nodes[from].peer_closed(now, ka);
            return;
        }
        self.open_link((from, ka), (to, kb), spec);
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
        let queue = &mut l.in_flight[1 - side];
        // Chunks arriving at the same time share one event.
        let pending = queue.back().is_some_and(|(at, _)| *at == arrive);
        queue.push_back((arrive, data));
        if !pending {
            self.schedule(
                arrive,
                Ev::Deliver {
                    link,
                    to_side: 1 - side,
                },
            );
        }
        if cut {
            self.schedule(arrive, Ev::Close { link });
        }
    }

    /// Carries out everything a raw peer asked for.
    fn pump_raw(&mut self, i: usize) {
        loop {
            let Driver::Raw(r) = &mut self.nodes[i].driver else {
                return;
            };
            if let Some(key) = r.poll_close() {
                self.close_from(i, key);
            } else if let Some((key, data)) = r.poll_transmit() {
                self.send(i, key, data);
            } else {
                return;
            }
        }
    }

    /// Carries out everything node `i` asked for.
    pub fn pump(&mut self, i: usize) {
        if matches!(self.nodes[i].driver, Driver::Raw(_)) {
            self.pump_raw(i);
            return;
        }
        loop {
            let now = self.now;
            let mut progressed = false;
            while let Some(out) = self.nodes[i].torrent_mut().poll_output() {
                progressed = true;
                match out {
                    Output::Connect(addr) => self.connect(i, addr),
                    Output::Disconnect(key) => self.close_from(i, key),
                    Output::ReadPiece {
                        piece,
                        offset,
                        length,
                    } => {
                        let (off, len) = (offset as usize, length as usize);
                        let node = &mut self.nodes[i];
                        node.reads += 1;
                        let data = match (&node.seed_bytes, node.behaviour) {
                            (Some(_), Behaviour::Silent) => None,
                            (Some(b), Behaviour::Honest) => Some(b.slice(off..off + len)),
                            (Some(b), Behaviour::Corrupt) => {
                                // One flipped byte in every block.
                                let mut v = b[off..off + len].to_vec();
                                for x in v.iter_mut().step_by(16384) {
                                    *x ^= 0xff;
                                }
                                Some(Bytes::from(v))
                            }
                            (Some(b), Behaviour::WrongPiece) => {
                                // The next piece, or the first when the next is the short
                                // last one (or there is none).
                                let src = if off + 2 * len <= b.len() {
                                    off + len
                                } else {
                                    0
                                };
                                assert_ne!(src, off, "a torrent of at least three pieces");
                                Some(b.slice(src..src + len))
                            }
                            (None, _) => Some(Bytes::copy_from_slice(&node.data()[off..off + len])),
                        };
                        if let Some(data) = data {
                            node.torrent_mut().piece_read(now, piece, Some(data));
                        }
                    }
                    Output::VerifyPiece {
                        piece,
                        data,
                        expected,
                    } => {
                        let meta = self.nodes[i].torrent().metainfo().expect("meta");
                        let offset = meta.info.layout.piece_offset(piece) as usize;
                        match self.verify {
                            Verify::Inline => {
                                let storage = &self.nodes[i].storage;
                                let ok = check_and_store(&data, &expected, storage, offset);
                                self.piece_verdict(i, piece, data, ok);
                            }
                            Verify::Thread { delay } => {
                                let storage = self.nodes[i].storage.clone();
                                let ticket = self
                                    .hasher
                                    .get_or_insert_with(Hasher::new)
                                    .submit(data, expected, storage, offset);
                                self.schedule(
                                    now + delay,
                                    Ev::Verified {
                                        node: i,
                                        piece,
                                        ticket,
                                    },
                                );
                            }
                        }
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
            while let Some((key, data)) = self.nodes[i].torrent_mut().poll_transmit(now) {
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
            let next_ev = self.queue.peek().map(|Reverse(s)| s.at);
            let next_timer = self.nodes.iter().map(Node::next_timer).min();
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
                let Reverse(scheduled) = self.queue.pop().expect("peeked");
                match scheduled.ev {
                    Ev::Deliver { link, to_side } => {
                        let l = &mut self.links[link];
                        let (node, key) = l.ends[to_side];
                        let n = &mut self.nodes[node];
                        while l.in_flight[to_side]
                            .front()
                            .is_some_and(|(at, _)| *at <= now)
                        {
                            if let Some((_, data)) = l.in_flight[to_side].pop_front() {
                                n.peer_data(now, key, &data);
                            }
                        }
                        self.pump(node);
                    }
                    Ev::Verified {
                        node,
                        piece,
                        ticket,
                    } => {
                        let hasher = self.hasher.as_mut().expect("hasher started");
                        let (data, ok) = hasher.wait(ticket);
                        self.piece_verdict(node, piece, data, ok);
                        self.pump(node);
                    }
                    Ev::Close { link } => {
                        for side in 0..2 {
                            let (node, key) = self.links[link].ends[side];
                            self.key_to_link.remove(&(node, key));
                            self.nodes[node].peer_closed(now, key);
                            self.pump(node);
                        }
                    }
                }
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i]
                        .respawn
                        .as_ref()
                        .is_some_and(|r| r.next <= now)
                    {
                        self.respawn(i);
                    }
                    if self.nodes[i].driver_timeout() <= now {
                        self.nodes[i].handle_timeout(now);
                        self.pump(i);
                    }
                }
            }
        }
    }
}
