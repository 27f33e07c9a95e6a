//! Message stream encryption costs: RC4 throughput (what every encrypted byte pays on each
//! side) and one whole handshake between an initiator and a responder in memory (two
//! Diffie-Hellman key pairs and two shared secrets, the 1 KiB RC4 discards, the
//! synchronisation scans), which is what each new encrypted connection pays.
//!
//! `CARGO_INCREMENTAL=0 cargo bench -p webtorrent-core --bench mse -- --quick`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use webtorrent_core::id::Id20;
use webtorrent_core::mse::{req2_hash, Handshake, Methods, Rc4};

fn rc4(c: &mut Criterion) {
    let mut g = c.benchmark_group("rc4");
    let mut data = vec![0x5au8; 1 << 20];
    let mut r = Rc4::mse(b"0123456789abcdefghij");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("apply 1 MiB", |b| b.iter(|| r.apply(black_box(&mut data))));
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let info_hash = Id20([9u8; 20]);
    let want = req2_hash(&info_hash);
    let lookup = |h: &[u8; 20]| (*h == want).then_some(info_hash);
    let mut n = 0u8;
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("initiator and responder to established", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let mut a = Handshake::initiator(info_hash, Methods::PREFER_RC4, b"", [n; 32]);
            let mut z = Handshake::responder(Methods::PREFER_RC4, [n ^ 0xff; 32]);
            while !(a.is_done() && z.is_done()) {
                let mut moved = false;
                if let Some(x) = a.poll_transmit() {
                    moved = true;
                    z.handle_data(&x, lookup).expect("responder");
                }
                if let Some(x) = z.poll_transmit() {
                    moved = true;
                    a.handle_data(&x, lookup).expect("initiator");
                }
                assert!(moved, "the handshake stalled");
            }
            black_box((a.into_established(), z.into_established()))
        })
    });
    g.finish();
}

criterion_group!(benches, rc4, handshake);
criterion_main!(benches);
