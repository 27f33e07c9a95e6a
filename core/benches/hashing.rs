//! Piece hashing throughput on one core (compare with `openssl speed -evp sha1 -bytes 262144`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webtorrent_core::piece::{sha1, PieceHasher};

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha1");
    for size in [16 * 1024usize, 256 * 1024, 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("piece", size), &data, |b, d| {
            b.iter(|| sha1(std::hint::black_box(d)))
        });
    }
    let data: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("stream_8MiB_256KiB_pieces_64KiB_chunks", |b| {
        b.iter(|| {
            let mut h = PieceHasher::new(256 * 1024);
            for chunk in data.chunks(64 * 1024) {
                h.update(chunk);
            }
            h.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
