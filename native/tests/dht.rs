//! The DHT driver (BEP 5) between two of our clients on 127.0.0.1: the seeder announces its
//! torrent through the other client's DHT node, which then downloads it by a magnet link
//! with no tracker and no peer address. The libtorrent interop (both directions) is
//! `tests/libtorrent/dht_interop.py`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{content, local, sha256_hex};
use webtorrent::{AddOptions, DhtOptions, WebTorrent, WebTorrentOptions};

fn with_dht(bootstrap: Vec<std::net::SocketAddr>) -> WebTorrentOptions {
    WebTorrentOptions {
        webrtc: false,
        dht: Some(DhtOptions {
            bootstrap,
            read_only: false,
        }),
        ..common::trackerless_options()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trackerless_magnet_is_found_through_the_dht() {
    // The downloader's node first (no bootstrap: it learns the seeder when queried).
    let leecher = WebTorrent::new(with_dht(Vec::new())).await.unwrap();
    let seeder = WebTorrent::new(with_dht(vec![local(leecher.port())]))
        .await
        .unwrap();
    let data = content(600_000, 15);
    let seeded = seeder
        .seed(
            "by-dht.bin".to_string(),
            Bytes::from(data.clone()),
            Some(Vec::new()),
        )
        .await
        .unwrap();
    let magnet = format!("magnet:?xt=urn:btih:{}", seeded.info_hash().to_hex());
    // The seeder's announce reaches the leecher's node within a lookup's round trip; the
    // leecher's own lookup then finds it in its store, or at the seeder's node.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let t = leecher
        .add_with(
            magnet.as_str(),
            AddOptions {
                download_dir: Some(dir.path().to_path_buf()),
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(120), t.wait_done())
        .await
        .expect("the download through the DHT finishes")
        .unwrap();
    let got = std::fs::read(dir.path().join("by-dht.bin")).unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}
