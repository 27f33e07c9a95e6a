//! The client in a build without the `webrtc` feature: WebRTC cannot be asked for, and a
//! torrent's WebSocket trackers are skipped while TCP peers still trade pieces.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;

use crate::{AddOptions, Error, WebTorrent, WebTorrentOptions};

fn loopback() -> WebTorrentOptions {
    WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp_bind: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
        ..WebTorrentOptions::default()
    }
}

#[tokio::test]
async fn webrtc_is_off_by_default_and_refused_with_the_feature_to_enable() {
    assert!(!WebTorrentOptions::default().webrtc);
    let res = WebTorrent::new(WebTorrentOptions {
        webrtc: true,
        ..loopback()
    })
    .await;
    match res {
        Err(Error::Options(m)) => assert!(m.contains("`webrtc` cargo feature"), "{m}"),
        other => panic!("expected an options error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tracker_is_skipped_and_tcp_peers_still_download() {
    // Stands in for a WebSocket tracker: a build with WebRTC would connect to it at once.
    let ws = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let ws_url = format!("ws://{}/announce", ws.local_addr().unwrap());

    let content = Bytes::from(
        (0..300_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let seeder = WebTorrent::new(loopback()).await.unwrap();
    let t = seeder
        .seed("file.bin".into(), content.clone(), Some(vec![ws_url]))
        .await
        .unwrap();
    let leecher = WebTorrent::new(loopback()).await.unwrap();
    let l = leecher
        .add_with(
            t.torrent_file().unwrap(),
            AddOptions {
                peers: vec![SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    seeder.port(),
                )],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), l.wait_done())
        .await
        .expect("download finished in time")
        .unwrap();
    assert_eq!(l.bytes().await.unwrap(), content);

    let contacted = tokio::time::timeout(Duration::from_millis(300), ws.accept()).await;
    assert!(contacted.is_err(), "the ws:// tracker was contacted");
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}
