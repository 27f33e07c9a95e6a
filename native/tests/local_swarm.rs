//! Our seeder and our leecher over real TCP sockets on 127.0.0.1, without a tracker: in
//! memory, to disk, from a magnet link, and resuming a partial download.

mod common;

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

/// How a hostile test peer misbehaves after a correct handshake.
#[derive(Clone, Copy, Debug)]
enum Hostility {
    /// Answers every request with wrong bytes.
    CorruptBlocks,
    /// Announces a 2 GiB frame.
    OversizedFrame,
    /// Sends bytes that are not the wire protocol.
    Garbage,
}

/// A peer written against the wire format only, that accepts one connection and misbehaves.
async fn hostile_peer(info_hash: webtorrent::InfoHash, mode: Hostility) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use webtorrent::core::wire::{BytesMut, Decoder, Event, Handshake, Message};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut h =
                    Handshake::new(info_hash, webtorrent::core::Id20([0xe0 + mode as u8; 20]));
                h.reserved.set_fast_extension(true);
                let mut dec = Decoder::new();
                let mut buf = vec![0u8; 65536];
                let mut out = BytesMut::new();
                h.encode(&mut out);
                Message::HaveAll.encode(&mut out);
                Message::Unchoke.encode(&mut out);
                if s.write_all(&out).await.is_err() {
                    return;
                }
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    dec.extend(&buf[..n]);
                    while let Ok(Some(ev)) = dec.next_event() {
                        let reply: Vec<u8> = match (mode, ev) {
                            (Hostility::CorruptBlocks, Event::Message(Message::Request(r))) => {
                                let mut o = BytesMut::new();
                                Message::Piece {
                                    index: r.index,
                                    begin: r.begin,
                                    data: vec![0xab; r.length as usize].into(),
                                }
                                .encode(&mut o);
                                o.to_vec()
                            }
                            (Hostility::OversizedFrame, Event::Handshake(_)) => {
                                vec![0x7f, 0xff, 0xff, 0xff, 7, 0, 0, 0]
                            }
                            (Hostility::Garbage, Event::Handshake(_)) => {
                                b"GET / HTTP/1.1\r\n\r\n\x00\x00\x00\x05\xff\xff\xff\xff\xff"
                                    .to_vec()
                            }
                            _ => Vec::new(),
                        };
                        if !reply.is_empty() && s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_dropped_and_banned_and_the_download_completes() {
    let content = data(1_500_000, 3);
    let (file, _) = TorrentCreator::new()
        .with_piece_length(65536)
        .create_from_data("target.bin".to_string(), content.clone())
        .await
        .unwrap();
    let meta = webtorrent::core::metainfo::Metainfo::from_bytes(&file).unwrap();
    // The honest seeder is rate-limited so the hostile peers get plenty of requests.
    let seed_dir = tempfile::tempdir().unwrap();
    std::fs::write(seed_dir.path().join("target.bin"), &content).unwrap();
    let seeder = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(600_000),
        ..opts()
    })
    .await
    .unwrap();
    seeder
        .add_with_data(file.clone(), seed_dir.path().to_path_buf())
        .await
        .unwrap();
    let corrupt = hostile_peer(meta.info_hash, Hostility::CorruptBlocks).await;
    let oversized = hostile_peer(meta.info_hash, Hostility::OversizedFrame).await;
    let garbage = hostile_peer(meta.info_hash, Hostility::Garbage).await;
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let l = leecher.add(file).await.unwrap();
    // Subscribe before any peer is known, so no event is missed.
    let mut events = l.subscribe();
    l.add_peers(vec![local(corrupt), local(oversized), local(garbage)])
        .await
        .unwrap();
    // The hostile peers act first: wait until each one is banned or dropped.
    let mut banned = Vec::new();
    let mut dropped = Vec::new();
    let all_caught = |banned: &Vec<Option<SocketAddr>>,
                      dropped: &Vec<(Option<SocketAddr>, String)>| {
        banned.contains(&Some(local(corrupt)))
            && [oversized, garbage]
                .iter()
                .all(|p| dropped.iter().any(|(a, _)| *a == Some(local(*p))))
    };
    let caught = tokio::time::timeout(Duration::from_secs(30), async {
        while !all_caught(&banned, &dropped) {
            match events.recv().await {
                Ok(webtorrent::Event::PeerBanned { addr }) => banned.push(addr),
                Ok(webtorrent::Event::PeerDisconnected { addr, reason }) => {
                    dropped.push((addr, reason))
                }
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await;
    assert!(caught.is_ok(), "banned: {banned:?}, dropped: {dropped:?}");
    assert!(
        dropped.iter().any(|(_, r)| r.contains("exceeds the limit")),
        "oversized frame named: {dropped:?}"
    );
    assert_eq!(l.progress(), 0.0, "nothing from the hostile peers was kept");
    // Now the honest seeder: the download completes with the right bytes.
    l.add_peers(vec![local(seeder.port())]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), l.wait_done())
        .await
        .expect("completed from the honest seeder")
        .unwrap();
    assert_eq!(sha(&l.bytes().await.unwrap()), sha(&content));
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_file_only_is_downloaded_to_disk() {
    // Three files seeded from a folder, 16 KiB pieces.
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("album");
    std::fs::create_dir_all(&root).unwrap();
    let files = [
        ("a.bin", data(300_000, 11)),
        ("b.bin", data(500_000, 12)),
        ("c.bin", data(400_000, 13)),
    ];
    for (name, bytes) in &files {
        std::fs::write(root.join(name), bytes).unwrap();
    }
    let seeder = WebTorrent::new(opts()).await.unwrap();
    let t = seeder
        .seed_path(&root, TorrentCreator::new().with_piece_length(16 * 1024))
        .await
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let l = leecher
        .add_with(
            t.torrent_file().unwrap(),
            AddOptions {
                download_dir: Some(dest.path().to_path_buf()),
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<String> = l.files().iter().map(|f| f.path.clone()).collect();
    assert_eq!(names, ["a.bin", "b.bin", "c.bin"]);
    // A wrong-length selection is refused with a clear error.
    let err = l.select_files(vec![true]).await.unwrap_err();
    assert!(err.to_string().contains("expected 3"), "{err}");
    l.select_files(vec![false, true, false]).await.unwrap();
    l.add_peers(vec![local(seeder.port())]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), l.wait_done())
        .await
        .expect("the selected file finished in time")
        .unwrap();
    let got = std::fs::read(dest.path().join("album").join("b.bin")).unwrap();
    assert_eq!(sha(&got), sha(&files[1].1));
    // Only the pieces that overlap b.bin came: at most one piece more on each side.
    let fetched = l.downloaded();
    assert!(
        fetched <= 500_000 + 2 * 16 * 1024,
        "{fetched} bytes fetched for a 500000-byte file"
    );
    assert!(l.progress() < 0.5, "progress {}", l.progress());
    for c in [seeder, leecher] {
        c.destroy().await.unwrap();
    }
}

/// A magnet whose metadata declares 1 TiB: with default options the client refuses it with a
/// reason (memory is the default storage) instead of allocating; with the limit raised it
/// takes it, and memory is still only taken as pieces arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_declaring_a_terabyte_is_refused_not_allocated() {
    const TIB: u64 = 1 << 40;
    const PIECE: u64 = 16 << 20;
    let pieces = (TIB / PIECE) as usize;
    let mut info = format!(
        "d6:lengthi{TIB}e4:name4:huge12:piece lengthi{PIECE}e6:pieces{}:",
        pieces * 20
    )
    .into_bytes();
    info.extend(std::iter::repeat_n(7u8, pieces * 20));
    info.push(b'e');
    let mut file = b"d4:info".to_vec();
    file.extend_from_slice(&info);
    file.push(b'e');
    // Someone who has the metadata (and none of the data) serves it.
    let server = WebTorrent::new(WebTorrentOptions {
        memory_limit: u64::MAX,
        ..opts()
    })
    .await
    .unwrap();
    let served = server.add(Bytes::from(file)).await.unwrap();
    assert_eq!(served.length(), TIB);
    let magnet = format!("{}&x.pe=127.0.0.1:{}", served.magnet_uri(), server.port());

    let default = WebTorrent::new(opts()).await.unwrap();
    let t = default.add(magnet.as_str()).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(r) = t.refused() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the metadata arrived and the torrent was refused");
    assert!(refused.contains("1.0 TiB"), "{refused}");
    assert!(refused.contains("download folder"), "{refused}");

    let raised = WebTorrent::new(WebTorrentOptions {
        memory_limit: u64::MAX,
        ..opts()
    })
    .await
    .unwrap();
    let t = raised.add(magnet.as_str()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while t.metainfo().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("metadata");
    assert_eq!(t.length(), TIB);
    assert_eq!(t.refused(), None);
    assert!(common::rss() < 512 << 20, "RSS {} MiB", common::rss() >> 20);
    for c in [server, default, raised] {
        c.destroy().await.unwrap();
    }
}

/// A magnet link added with a folder that already holds most of the data: once the metadata
/// arrives, what is on disk is verified and kept, and only the rest is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_into_a_folder_with_the_data_fetches_only_what_is_missing() {
    let content = data(2_000_000, 9);
    let (file, _) = TorrentCreator::new()
        .with_piece_length(32768)
        .create_from_data("kept.bin".to_string(), content.clone())
        .await
        .unwrap();
    let seed_dir = tempfile::tempdir().unwrap();
    std::fs::write(seed_dir.path().join("kept.bin"), &content).unwrap();
    let seeder = WebTorrent::new(opts()).await.unwrap();
    let s = seeder
        .add_with_data(file, seed_dir.path().to_path_buf())
        .await
        .unwrap();
    // All but the last 100 kB are there already, one byte of it wrong.
    let dir = tempfile::tempdir().unwrap();
    let mut partial = content[..1_900_000].to_vec();
    partial[500_000] ^= 1;
    std::fs::write(dir.path().join("kept.bin"), &partial).unwrap();
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let magnet = format!("{}&x.pe=127.0.0.1:{}", s.magnet_uri(), seeder.port());
    let l = leecher
        .add_with_data(magnet.as_str(), dir.path().to_path_buf())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), l.wait_done())
        .await
        .expect("done in time")
        .unwrap();
    let on_disk = std::fs::read(dir.path().join("kept.bin")).unwrap();
    assert_eq!(sha(&on_disk), sha(&content));
    // The missing tail (4 pieces) and the corrupt piece, not the whole file.
    let got = l.downloaded();
    assert!(got <= 6 * 32768, "downloaded {got} bytes");
    for c in [seeder, leecher] {
        c.destroy().await.unwrap();
    }
}
