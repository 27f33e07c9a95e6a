//! Our seeder and our leecher over real TCP sockets on 127.0.0.1, without a tracker: in
//! memory, to disk, from a magnet link, and resuming a partial download.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use webtorrent::{AddOptions, TorrentCreator, WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        trackers: false,
        ..WebTorrentOptions::default()
    }
}

fn data(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| ((i as u64 * 2654435761 + u64::from(seed)) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_to_leecher_in_memory_and_magnet() {
    let content = data(3_000_000, 1);
    let seeder = WebTorrent::new(opts()).await.unwrap();
    let t = seeder
        .seed("file.bin".into(), content.clone(), None)
        .await
        .unwrap();
    assert!(t.is_done());
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let torrent_file = t.torrent_file().unwrap();
    let l = leecher
        .add_with(
            torrent_file,
            AddOptions {
                peers: vec![local(seeder.port())],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), l.wait_done())
        .await
        .expect("download finished in time")
        .unwrap();
    assert_eq!(sha(&l.bytes().await.unwrap()), sha(&content));
    assert_eq!(l.info_hash(), t.info_hash());

    // A second leecher from a magnet link with the seeder as x.pe.
    let magnet = format!("{}&x.pe=127.0.0.1:{}", t.magnet_uri(), seeder.port());
    let leecher2 = WebTorrent::new(opts()).await.unwrap();
    let m = leecher2.add(magnet.as_str()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), m.wait_done())
        .await
        .expect("magnet download finished in time")
        .unwrap();
    assert_eq!(sha(&m.bytes().await.unwrap()), sha(&content));
    assert_eq!(m.name(), "file.bin");
    for c in [seeder, leecher, leecher2] {
        c.destroy().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_to_disk_and_resume() {
    let content = data(2_000_000, 2);
    let (file, _hash) = TorrentCreator::new()
        .with_piece_length(32768)
        .create_from_data("disk.bin".to_string(), content.clone())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Half the file is already there (and one corrupt piece), as after an interrupted run.
    let mut partial = content.to_vec();
    partial.truncate(1_000_000);
    partial[40_000] ^= 0xff;
    std::fs::write(dir.path().join("disk.bin"), &partial).unwrap();

    // The seeder verifies its complete copy on disk.
    let seed_dir = tempfile::tempdir().unwrap();
    std::fs::write(seed_dir.path().join("disk.bin"), &content).unwrap();
    let seeder = WebTorrent::new(opts()).await.unwrap();
    let s = seeder
        .add_with_data(file.clone(), seed_dir.path().to_path_buf())
        .await
        .unwrap();
    assert!(s.is_done());
    let leecher = WebTorrent::new(WebTorrentOptions {
        download_dir: Some(dir.path().to_path_buf()),
        ..opts()
    })
    .await
    .unwrap();
    let l = leecher.add(file.clone()).await.unwrap();
    assert_eq!(l.info_hash(), s.info_hash());
    // Resumed: the verified part counts before any peer connects.
    let pre = l.progress();
    assert!(pre > 0.4 && pre < 0.5, "resumed progress {pre}");
    l.add_peers(vec![local(seeder.port())]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), l.wait_done())
        .await
        .expect("done in time")
        .unwrap();
    leecher.destroy().await.unwrap();
    let on_disk = std::fs::read(dir.path().join("disk.bin")).unwrap();
    assert_eq!(sha(&on_disk), sha(&content));
    // It downloaded roughly the missing half, not everything.
    let got = l.downloaded();
    assert!(got < 1_300_000, "downloaded {got} bytes");
    seeder.destroy().await.unwrap();
}
