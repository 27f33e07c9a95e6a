//! Native peers over WebRTC, signalled through a WebSocket tracker (the npm
//! `bittorrent-tracker`), and the bridge between the WebRTC and TCP swarms. They open UDP
//! sockets and run the npm harness, so they are `#[ignore]`d in a plain `cargo test`;
//! `tests/run.sh` runs them inside a loopback-only network namespace.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use common::{content, sha256_hex, Script, Tracker};
use webtorrent::{AddOptions, TorrentSource, WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp_bind: Some("127.0.0.1:0".parse().expect("addr")),
        ..WebTorrentOptions::default()
    }
}

/// Two native clients that can only meet through the WebSocket tracker: WebRTC only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns and the npm harness (tests/run.sh)"]
async fn native_to_native_over_webrtc() {
    let tracker = Tracker::start();
    let data = content(6 * 1024 * 1024 + 1234, 77);
    let seeder = WebTorrent::new(WebTorrentOptions {
        incoming: false,
        ..opts()
    })
    .await
    .unwrap();
    let t = seeder
        .seed(
            "rtc.bin".to_string(),
            Bytes::from(data.clone()),
            Some(vec![tracker.ws.clone()]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(WebTorrentOptions {
        incoming: false,
        ..opts()
    })
    .await
    .unwrap();
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        hex::encode(t.info_hash()),
        tracker.ws
    );
    let d = leecher
        .add_with(TorrentSource::Magnet(magnet), AddOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(90), d.wait_done())
        .await
        .expect("download finished in time")
        .unwrap();
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
    let bridge = WebTorrent::new(opts()).await.unwrap();
    let magnet = format!(
        "magnet:?xt=urn:btih:{info_hash}&tr={}&tr={}",
        tracker.http, tracker.ws
    );
    let b = bridge
        .add_with(TorrentSource::Magnet(magnet), AddOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(90), b.wait_done())
        .await
        .expect("bridge finished in time")
        .unwrap();
    // The WebRTC-only leecher: no TCP listener, only the WebSocket tracker.
    let leecher = WebTorrent::new(WebTorrentOptions {
        incoming: false,
        ..opts()
    })
    .await
    .unwrap();
    let magnet = format!("magnet:?xt=urn:btih:{info_hash}&tr={}", tracker.ws);
    let d = leecher
        .add_with(TorrentSource::Magnet(magnet), AddOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(90), d.wait_done())
        .await
        .expect("WebRTC leecher finished in time")
        .unwrap();
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
    let seeder = WebTorrent::new(WebTorrentOptions {
        incoming: false,
        ..opts()
    })
    .await
    .unwrap();
    let t = seeder
        .seed(
            "bench.bin".to_string(),
            Bytes::from(data.clone()),
            Some(vec![tracker.ws.clone()]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(WebTorrentOptions {
        incoming: false,
        ..opts()
    })
    .await
    .unwrap();
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
