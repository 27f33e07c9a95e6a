//! A swarm that attacks the client's resources over real loopback sockets. Its own test binary,
//! so that the memory it measures is this test's alone.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use webtorrent::{AddOptions, WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        trackers: false,
        ..WebTorrentOptions::default()
    }
}

/// Caps this process's open files at `n` (the soft limit), as a small server would have.
fn limit_open_files(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// `n` connections to `target` that never send a byte, four from each of 250 loopback
/// addresses other than 127.0.0.1, each opened again a second after the other side closes
/// it, until `stop`.
fn silent_flood(target: SocketAddr, n: usize, stop: Arc<AtomicBool>, opened: Arc<AtomicU64>) {
    for i in 0..n {
        let stop = stop.clone();
        let opened = opened.clone();
        let source = SocketAddr::from(([127, 0, 1, 2 + (i % 250) as u8], 0));
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            while !stop.load(Ordering::Relaxed) {
                let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if sock.bind(source).is_err() {
                    return;
                }
                let Ok(mut s) = sock.connect(target).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let mut b = [0u8; 1];
                // Wait until the other side closes (or forever).
                tokio::select! {
                    _ = s.read(&mut b) => {}
                    _ = async { while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    } } => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// 1,000 connections that never send a handshake, reopened a second after they are closed, do not
/// stop an honest peer from downloading from the same seeder, and the process (seeder,
/// leecher and the attackers' sockets together) stays under 100 MiB. Open files are capped
/// so that holding every silent connection for its whole timeout would run out of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_do_not_stop_an_honest_download() {
    limit_open_files(1600);
    let content = Bytes::from(
        (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let seeder = WebTorrent::new(opts()).await.unwrap();
    let t = seeder
        .seed("file.bin".into(), content.clone(), None)
        .await
        .unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], seeder.port()));
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    silent_flood(target, 1000, stop.clone(), opened.clone());
    // Let the flood build up before the honest peer comes.
    for _ in 0..50 {
        if opened.load(Ordering::Relaxed) >= 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let leecher = WebTorrent::new(opts()).await.unwrap();
    let l = leecher
        .add_with(
            t.torrent_file().unwrap(),
            AddOptions {
                peers: vec![target],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(90), l.wait_done())
        .await
        .expect("the honest download finished during the flood")
        .unwrap();
    let got = l.bytes().await.unwrap();
    assert_eq!(Sha256::digest(&got), Sha256::digest(&content));
    let peak = common::rss();
    stop.store(true, Ordering::Relaxed);
    assert!(peak < 100 << 20, "RSS {} MiB", peak >> 20);
    for c in [seeder, leecher] {
        c.destroy().await.unwrap();
    }
}
