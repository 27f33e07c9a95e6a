//! The simulated swarm moving 1 GiB between two in-memory peers through the full state
//! machines (wire encoding and decoding, picking, assembly, SHA-1 verification of every piece).
//! This is the ceiling the network drivers are measured against.
//!
//! `SWARM_BENCH_BYTES` sets the size (default 1 GiB). Besides criterion's wall-clock figures,
//! the CPU time spent in the measured runs is printed at the end (on Linux), so that load from
//! other processes on a shared machine can be told apart from the cost of the pipeline.

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sim::{content, multi_file_torrent, Behaviour, LinkSpec, Sim, Verify};

/// Resources used so far, from procfs (`None` elsewhere).
struct Usage {
    /// CPU time of the whole process.
    process: Duration,
    /// CPU time of this thread.
    thread: Duration,
    /// Minor page faults of the process.
    faults: u64,
}

fn usage() -> Option<Usage> {
    // minflt is field 10 of /proc/self/stat; utime and stime are fields 14 and 15, in clock
    // ticks (100 Hz on Linux). All include threads that have exited.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(7);
    let faults: u64 = fields.next()?.parse().ok()?;
    let mut fields = fields.skip(3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let process = Duration::from_millis((utime + stime) * 10);
    // The first field of schedstat is this thread's run time in nanoseconds.
    let sched = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let thread = Duration::from_nanos(sched.split_whitespace().next()?.parse().ok()?);
    Some(Usage {
        process,
        thread,
        faults,
    })
}

#[derive(Default)]
struct Totals {
    runs: u64,
    wall: Duration,
    process_cpu: Duration,
    main_cpu: Duration,
    faults: u64,
    best: Option<Duration>,
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn swarm(c: &mut Criterion) {
    let size: usize = std::env::var("SWARM_BENCH_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30);
    // Pieces are hashed on a second thread, as the native driver does; `SWARM_BENCH_HASH=inline`
    // hashes them on the simulation's thread instead, a number sets the simulated delay (µs)
    // after which the verdict is taken.
    let verify = match std::env::var("SWARM_BENCH_HASH").ok().as_deref() {
        Some("inline") => Verify::Inline,
        Some(us) => Verify::Thread {
            delay: Duration::from_micros(us.parse().expect("SWARM_BENCH_HASH: inline or µs")),
        },
        None => Verify::Thread {
            delay: Duration::from_micros(100),
        },
    };
    let data = content(size, 1);
    let seed_data = Bytes::copy_from_slice(&data);
    // The leecher's storage, reused (and refilled) across runs so that page faults of a fresh
    // gigabyte are not part of what is measured.
    let mut storage = vec![0xee; size];
    let meta = multi_file_torrent(&data, &[size], 256 * 1024);
    let mut totals = Totals::default();
    let mut g = c.benchmark_group("swarm");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function("two_peers_in_memory", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                storage.fill(0xee);
                let mut sim = Sim::new(1);
                sim.default_link = LinkSpec {
                    latency: Duration::from_micros(100),
                    bandwidth: 0,
                    cut_after: None,
                };
                sim.verify = verify;
                let s = sim.add_seed_bytes(&meta, seed_data.clone(), Behaviour::Honest);
                let l = sim.add_leecher_with_storage(&meta, std::mem::take(&mut storage));
                sim.introduce(l, s);
                let before = usage();
                let start = Instant::now();
                let done = sim.run(Duration::from_secs(3600), |sim| {
                    sim.nodes[l].done_at.is_some()
                });
                let elapsed = start.elapsed();
                if let (Some(a), Some(b)) = (before, usage()) {
                    totals.process_cpu += b.process.saturating_sub(a.process);
                    totals.main_cpu += b.thread.saturating_sub(a.thread);
                    totals.faults += b.faults.saturating_sub(a.faults);
                }
                totals.runs += 1;
                totals.wall += elapsed;
                totals.best = Some(totals.best.map_or(elapsed, |b| b.min(elapsed)));
                total += elapsed;
                assert!(done);
                assert!(*sim.nodes[l].data() == data);
                storage = sim.nodes[l].take_data();
            }
            total
        })
    });
    g.finish();
    // Calibration, right after the runs: what SHA-1 alone costs on this machine as loaded now,
    // hashing as many bytes (one piece-sized buffer, in cache, over and over).
    let piece = &data[..data.len().min(256 * 1024)];
    let before = usage();
    let start = Instant::now();
    let mut x = 0u8;
    for _ in 0..size / piece.len().max(1) {
        x ^= webtorrent_core::piece::sha1(piece)[0];
    }
    let wall = start.elapsed();
    if let (Some(a), Some(b)) = (before, usage()) {
        eprintln!(
            "swarm: SHA-1 alone, as many bytes: {:.0} MiB/s wall, {:.3} CPU s per GiB ({x})",
            mib_per_s(size as u64, wall),
            b.thread.saturating_sub(a.thread).as_secs_f64() / (size as f64 / (1u64 << 30) as f64),
        );
    }
    if totals.runs > 0 {
        let bytes = size as u64 * totals.runs;
        eprintln!(
            "swarm: {} runs of {} bytes: wall {:.0} MiB/s (best run {:.0} MiB/s); \
             CPU per GiB: process {:.3} s, main thread {:.3} s \
             (= {:.0} MiB/s per CPU-second of the whole process); {} page faults per run",
            totals.runs,
            size,
            mib_per_s(bytes, totals.wall),
            totals.best.map_or(0.0, |b| mib_per_s(size as u64, b)),
            totals.process_cpu.as_secs_f64() / (bytes as f64 / (1u64 << 30) as f64),
            totals.main_cpu.as_secs_f64() / (bytes as f64 / (1u64 << 30) as f64),
            mib_per_s(bytes, totals.process_cpu),
            totals.faults / totals.runs,
        );
    }
}

criterion_group!(benches, swarm);
criterion_main!(benches);
