//! Native peers over WebRTC, signalled through a WebSocket tracker (the npm
//! `bittorrent-tracker`), and the bridge between the WebRTC and TCP swarms. They open UDP
//! sockets and run the npm harness, so they are `#[ignore]`d in a plain `cargo test`;
//! `tests/run.sh` runs them inside a loopback-only network namespace.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    content, download_magnet, loopback_options, sha256_hex, webrtc_only_options, Script, Tracker,
};
use webtorrent::WebTorrent;

/// Two native clients that can only meet through the WebSocket tracker: WebRTC only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns and the npm harness (tests/run.sh)"]
async fn native_to_native_over_webrtc() {
    let tracker = Tracker::start();
    let data = content(6 * 1024 * 1024 + 1234, 77);
    let seeder = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let t = seeder
        .seed(
            "rtc.bin".to_string(),
            Bytes::from(data.clone()),
            Some(vec![tracker.ws.clone()]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let d = download_magnet(
        &leecher,
        &hex::encode(t.info_hash()),
        &[&tracker.ws],
        Duration::from_secs(90),
        "WebRTC leecher",
    )
    .await;
    let got = d.bytes().await.unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    let stats = tracker.stats();
    assert_eq!(stats["torrents"], 1, "{stats}");
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}

/// The bridge: a TCP-only webtorrent (Node) seeder, our client on both trackers, and a second
/// native client reachable only over WebRTC downloads through the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns and the npm harness (tests/run.sh)"]
async fn tcp_seeder_reaches_webrtc_leecher_through_the_bridge() {
    let tracker = Tracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(5 * 1024 * 1024 + 99, 78);
    let path = common::write_file(dir.path(), "bridged.bin", &data);
    let mut seed = Script::start(
        "seed.mjs",
        &[
            "--announce",
            &tracker.http,
            "--exit-with-stdin",
            "--file",
            path.to_str().unwrap(),
        ],
    );
    let ready = seed.wait_event("seeding", Duration::from_secs(60));
    let info_hash = ready["infoHash"].as_str().expect("infoHash").to_string();
    let bridge = WebTorrent::new(loopback_options()).await.unwrap();
    let b = download_magnet(
        &bridge,
        &info_hash,
        &[&tracker.http, &tracker.ws],
        Duration::from_secs(90),
        "bridge",
    )
    .await;
    assert_eq!(sha256_hex(&b.bytes().await.unwrap()), sha256_hex(&data));
    // The WebRTC-only leecher: no TCP listener, only the WebSocket tracker.
    let leecher = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let d = download_magnet(
        &leecher,
        &info_hash,
        &[&tracker.ws],
        Duration::from_secs(90),
        "WebRTC leecher",
    )
    .await;
    assert_eq!(sha256_hex(&d.bytes().await.unwrap()), sha256_hex(&data));
    leecher.destroy().await.unwrap();
    bridge.destroy().await.unwrap();
    seed.stop();
}

/// Not a test but a measurement: `WEBRTC_BENCH_MIB` MiB (default 256) from one native client
/// to another over WebRTC only, printing MB/s. Run in release inside tests/netns.sh with
/// `--ignored --nocapture webrtc_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; needs a loopback-only netns and the npm harness"]
async fn webrtc_throughput() {
    let mib: usize = std::env::var("WEBRTC_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let tracker = Tracker::start();
    let data = content(mib * 1024 * 1024, 79);
    let seeder = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let t = seeder
        .seed(
            "bench.bin".to_string(),
            Bytes::from(data.clone()),
            Some(vec![tracker.ws.clone()]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let torrent_file = t.torrent_file().expect("torrent file");
    let d = leecher.add(torrent_file).await.unwrap();
    // Time from the first connected peer to the last verified piece.
    let mut ev = d.subscribe();
    let start = loop {
        if let Ok(webtorrent::Event::PeerConnected { .. }) = ev.recv().await {
            break std::time::Instant::now();
        }
    };
    tokio::time::timeout(Duration::from_secs(600), d.wait_done())
        .await
        .expect("finished")
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(sha256_hex(&d.bytes().await.unwrap()), sha256_hex(&data));
    println!(
        "webrtc native -> native: {mib} MiB in {secs:.2} s = {:.1} MB/s",
        (mib * 1024 * 1024) as f64 / secs / 1e6
    );
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}
