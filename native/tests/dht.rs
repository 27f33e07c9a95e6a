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
        dht: Some(DhtOptions::local(&bootstrap)),
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

/// Polls `f` until it holds, for at most `secs`.
async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_tell_each_other_their_dht_port_except_on_private_torrents() {
    use webtorrent::TorrentCreator;
    // Two isolated DHT nodes: the only way they learn of each other is the BEP 5 `PORT`
    // message sent after the peer handshake.
    let a = WebTorrent::new(with_dht(Vec::new())).await.unwrap();
    let b = WebTorrent::new(with_dht(Vec::new())).await.unwrap();
    let data = content(200_000, 16);
    // A private torrent first: no `PORT` either way.
    let (private, _) = TorrentCreator::new()
        .with_private(true)
        .create_from_data("private.bin".into(), Bytes::from(data.clone()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("private.bin");
    std::fs::write(&file, &data).unwrap();
    a.seed_existing(private.clone(), &file, AddOptions::default())
        .await
        .unwrap();
    let t = b
        .add_with(
            private,
            AddOptions {
                peers: vec![local(a.port())],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), t.wait_done())
        .await
        .expect("the private torrent downloads")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.dht_nodes().await, Some((0, 0)));
    assert_eq!(b.dht_nodes().await, Some((0, 0)));
    // A public one: each side pings the port the other sent, and keeps the node.
    let public = a
        .seed("public.bin".into(), Bytes::from(data), Some(Vec::new()))
        .await
        .unwrap();
    let t = b
        .add_with(
            public.torrent_file().unwrap().to_vec(),
            AddOptions {
                peers: vec![local(a.port())],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), t.wait_done())
        .await
        .expect("the public torrent downloads")
        .unwrap();
    for (name, c) in [("a", &a), ("b", &b)] {
        assert!(
            eventually(10, || async { c.dht_nodes().await == Some((1, 0)) }).await,
            "{name} did not add the other's DHT node: {:?}",
            c.dht_nodes().await
        );
    }
    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_table_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").join("dht.dat");
    let other = WebTorrent::new(with_dht(Vec::new())).await.unwrap();
    let mut opts = DhtOptions::local(&[other.dht_addr().unwrap()]);
    opts.state_file = Some(state.clone());
    let first = WebTorrent::new(WebTorrentOptions {
        dht: Some(opts),
        ..with_dht(Vec::new())
    })
    .await
    .unwrap();
    assert!(
        eventually(20, || async { first.dht_nodes().await == Some((1, 0)) }).await,
        "the first run did not join: {:?}",
        first.dht_nodes().await
    );
    first.destroy().await.unwrap();
    let saved = webtorrent::core::dht::state::SavedState::decode(&std::fs::read(&state).unwrap())
        .expect("the state file is written on destroy");
    assert_eq!(saved.nodes.len(), 1);
    assert_eq!(saved.nodes[0].addr, other.dht_addr().unwrap());
    // A second run with no bootstrap node at all rejoins from the state file.
    let mut opts = DhtOptions::local(&[]);
    opts.state_file = Some(state.clone());
    let second = WebTorrent::new(WebTorrentOptions {
        dht: Some(opts),
        ..with_dht(Vec::new())
    })
    .await
    .unwrap();
    assert!(
        eventually(20, || async { second.dht_nodes().await == Some((1, 0)) }).await,
        "the restarted node did not rejoin: {:?}",
        second.dht_nodes().await
    );
    second.destroy().await.unwrap();
    // A damaged state file is replaced, not fatal.
    std::fs::write(&state, b"garbage").unwrap();
    let mut opts = DhtOptions::local(&[other.dht_addr().unwrap()]);
    opts.state_file = Some(state.clone());
    let third = WebTorrent::new(WebTorrentOptions {
        dht: Some(opts),
        ..with_dht(Vec::new())
    })
    .await
    .unwrap();
    assert!(eventually(20, || async { third.dht_nodes().await == Some((1, 0)) }).await);
    third.destroy().await.unwrap();
    let again = webtorrent::core::dht::state::SavedState::decode(&std::fs::read(&state).unwrap());
    assert!(again.is_ok(), "{again:?}");
    other.destroy().await.unwrap();
}
