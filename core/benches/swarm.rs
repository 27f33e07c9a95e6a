//! The simulated swarm moving 1 GiB between two in-memory peers through the full state
//! machines (wire encoding and decoding, picking, assembly, SHA-1 verification). This is the
//! ceiling the network drivers are measured against.

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sim::{content, multi_file_torrent, Behaviour, LinkSpec, Sim};

fn swarm(c: &mut Criterion) {
    let size: usize = std::env::var("SWARM_BENCH_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30);
    let data = content(size, 1);
    let meta = multi_file_torrent(&data, &[size], 256 * 1024);
    let mut g = c.benchmark_group("swarm");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function("two_peers_in_memory", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut sim = Sim::new(1);
                sim.default_link = LinkSpec {
                    latency: Duration::from_micros(100),
                    bandwidth: 0,
                    cut_after: None,
                };
                let s = sim.add_seed(&meta, &data, Behaviour::Honest);
                let l = sim.add_leecher(&meta);
                sim.introduce(l, s);
                let start = Instant::now();
                let done = sim.run(Duration::from_secs(3600), |sim| {
                    sim.nodes[l].done_at.is_some()
                });
                total += start.elapsed();
                assert!(done);
                assert!(sim.nodes[l].data == data);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, swarm);
criterion_main!(benches);
