//! Piece picker cost in a large swarm: 100 000 pieces of 256 KiB, 200 peers with random
//! bitfields of 10–100 % density plus 5 seeds.
//!
//! Requests stay in flight for a while (a global queue of a few thousand blocks), so there
//! are always pieces in progress; completed pieces are verified, and once 40 % of the
//! torrent is had the oldest had piece is failed again (as a recheck would), so the state
//! never runs out of work. Only the `pick` calls are timed in the `pick_*` benchmarks; the
//! `cycle` benchmark times pick, receive and verify together.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use webtorrent_core::picker::{PeerView, Picker, PickerConfig};
use webtorrent_core::piece::{Bitfield, Block, Layout, PieceIndex};
use webtorrent_core::rng::Rng;
use webtorrent_core::PeerKey;

const PIECES: u32 = 100_000;
const PIECE_LEN: u64 = 256 * 1024;
const PEERS: usize = 200;
const SEEDS: usize = 5;
const IN_FLIGHT: usize = 4000;
const HAVE_SHARE: f64 = 0.4;

struct Sim {
    picker: Picker,
    /// Bitfields of the partial peers; seeds come after them.
    peers: Vec<Bitfield>,
    in_flight: VecDeque<(PeerKey, Block)>,
    had: VecDeque<PieceIndex>,
    next_peer: usize,
    buf: Vec<Block>,
}

impl Sim {
    fn new() -> Self {
        let layout = Layout::new(PIECE_LEN, u64::from(PIECES) * PIECE_LEN).unwrap();
        let mut rng = Rng::new(42);
        let mut have = Bitfield::new(PIECES);
        let mut had = Vec::new();
        for p in layout.pieces() {
            if rng.chance(HAVE_SHARE) {
                have.set(p);
                had.push(p);
            }
        }
        rng.shuffle(&mut had);
        let mut picker = Picker::new(layout, have, PickerConfig::default(), 7).unwrap();
        let peers: Vec<Bitfield> = (0..PEERS)
            .map(|i| {
                let density = 0.1 + 0.9 * i as f64 / (PEERS - 1) as f64;
                let mut b = Bitfield::new(PIECES);
                for p in layout.pieces() {
                    if rng.chance(density) {
                        b.set(p);
                    }
                }
                b
            })
            .collect();
        for b in &peers {
            picker.peer_bitfield(b);
        }
        for _ in 0..SEEDS {
            picker.seed_added();
        }
        let mut sim = Sim {
            picker,
            peers,
            in_flight: VecDeque::new(),
            had: had.into(),
            next_peer: 0,
            buf: Vec::new(),
        };
        // Warm up into a steady state with pieces in progress.
        for _ in 0..20_000 {
            sim.pick(4);
            sim.settle();
        }
        sim
    }

    /// One pick for the next peer in turn; returns the time it took.
    fn pick(&mut self, max: usize) -> Duration {
        let i = self.next_peer;
        self.next_peer = (self.next_peer + 1) % (PEERS + SEEDS);
        let view = match self.peers.get(i) {
            Some(b) => PeerView::bitfield(b),
            None => PeerView::seed(),
        };
        let key = PeerKey(i as u64);
        self.buf.clear();
        let t = Instant::now();
        self.picker.pick(key, view, max, &mut self.buf);
        let d = t.elapsed();
        black_box(&self.buf);
        self.in_flight.extend(self.buf.iter().map(|&b| (key, b)));
        d
    }

    /// Delivers the oldest requests down to the in-flight target, verifying completed
    /// pieces and failing old ones to keep the had share steady.
    fn settle(&mut self) {
        while self.in_flight.len() > IN_FLIGHT {
            let Some((peer, block)) = self.in_flight.pop_front() else {
                break;
            };
            let r = self.picker.block_received(peer, block);
            if r.piece_complete {
                self.picker.piece_verified(block.piece);
                self.had.push_back(block.piece);
            }
        }
        let target = (f64::from(PIECES) * HAVE_SHARE) as u32;
        while self.picker.have().count() > target {
            let Some(p) = self.had.pop_front() else {
                break;
            };
            self.picker.piece_failed(p);
        }
        assert!(!self.picker.in_endgame());
    }
}

fn picks(c: &mut Criterion) {
    let mut sim = Sim::new();
    let mut g = c.benchmark_group("picker_100k_pieces_200_peers");
    g.sample_size(30);
    for max in [1usize, 16] {
        g.throughput(Throughput::Elements(max as u64));
        g.bench_function(format!("pick_{max}_blocks"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += sim.pick(max);
                    sim.settle();
                }
                total
            })
        });
    }
    // Pick, receive and verify, timed together, per block.
    g.throughput(Throughput::Elements(16));
    g.bench_function("cycle_16_blocks", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                sim.pick(16);
                sim.settle();
            }
            t.elapsed()
        })
    });
    g.finish();
    println!(
        "open pieces {}, requests {}, had {}",
        sim.picker.num_open_pieces(),
        sim.picker.num_requests(),
        sim.picker.have().count()
    );
}

fn joins(c: &mut Criterion) {
    let layout = Layout::new(PIECE_LEN, u64::from(PIECES) * PIECE_LEN).unwrap();
    let mut picker =
        Picker::new(layout, Bitfield::new(PIECES), PickerConfig::default(), 1).unwrap();
    let mut rng = Rng::new(5);
    let mut half = Bitfield::new(PIECES);
    for p in layout.pieces() {
        if rng.chance(0.5) {
            half.set(p);
        }
    }
    for _ in 0..50 {
        picker.peer_bitfield(&half);
    }
    let mut g = c.benchmark_group("picker_100k_pieces_availability");
    g.sample_size(20);
    g.bench_function("peer_bitfield_and_gone_50pct", |b| {
        b.iter(|| {
            picker.peer_bitfield(&half);
            picker.peer_gone(&half);
        })
    });
    g.bench_function("seed_added_and_gone", |b| {
        b.iter(|| {
            picker.seed_added();
            picker.seed_gone();
        })
    });
    g.finish();
}

criterion_group!(benches, picks, joins);
criterion_main!(benches);
