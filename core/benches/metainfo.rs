//! Parsing a torrent with 100 000 pieces; creating torrents from hashes.

use criterion::{criterion_group, criterion_main, Criterion};
use webtorrent_core::creator::{FileSpec, TorrentCreator};
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;

fn big_torrent(pieces: usize) -> Vec<u8> {
    let piece_length = 16 * 1024u32;
    let hashes: Vec<u8> = (0..pieces * 20).map(|i| (i % 253) as u8).collect();
    let per_file = (pieces as u64 * u64::from(piece_length)) / 100;
    let files: Vec<FileSpec> = (0..100)
        .map(|i| FileSpec {
            path: vec![format!("dir{}", i % 7), format!("file{i}.bin")],
            length: per_file,
        })
        .collect();
    TorrentCreator::new()
        .with_announce(vec![
            "http://127.0.0.1:8000/announce".into(),
            "ws://127.0.0.1:8000".into(),
        ])
        .create_multi_with_hashes("big", &files, piece_length, hashes)
        .expect("valid torrent")
        .torrent_file
        .to_vec()
}

fn parse(c: &mut Criterion) {
    let t = big_torrent(100_000);
    assert_eq!(Metainfo::from_bytes(&t).unwrap().info.num_pieces(), 100_000);
    c.bench_function("parse_torrent_100k_pieces", |b| {
        b.iter(|| Metainfo::from_bytes(std::hint::black_box(&t)).unwrap())
    });
    let m = Metainfo::from_bytes(&t).unwrap();
    let mut magnet = Magnet::new(m.info_hash);
    magnet.name = Some("big".into());
    magnet.trackers = m.trackers().into_iter().flatten().collect();
    let uri = magnet.to_uri();
    c.bench_function("parse_magnet", |b| {
        b.iter(|| Magnet::parse(std::hint::black_box(&uri)).unwrap())
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
