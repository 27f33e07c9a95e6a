//! Web seeds (BEP 19) against a plain HTTP server written here (Range requests, nothing
//! else): a torrent whose only source is a web seed completes; a web seed that serves
//! wrong bytes is dropped and the download completes from a peer; a multi-file torrent maps
//! pieces onto per-file URLs.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{content, local, write_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use webtorrent::{AddOptions, TorrentCreator, WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    common::trackerless_options()
}

/// A file server that answers `GET` with `Range: bytes=A-B` (206) or without (200), one
/// request per connection. `corrupt` flips a byte in every body.
struct WebServer {
    addr: SocketAddr,
    files: Files,
    ranges: Arc<AtomicU64>,
    /// Body bytes sent.
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

impl WebServer {
    async fn start(corrupt: bool) -> WebServer {
        WebServer::start_with(corrupt, None).await
    }

    /// [`start`](Self::start), each reply sent at about `rate` bytes/s when given.
    async fn start_with(corrupt: bool, rate: Option<u64>) -> WebServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let files: Files = Arc::default();
        let served = files.clone();
        let ranges = Arc::new(AtomicU64::new(0));
        let counter = ranges.clone();
        let sent = Arc::new(AtomicU64::new(0));
        let sent_counter = sent.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let files = served.clone();
                let counter = counter.clone();
                let sent = sent_counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let range = head.lines().find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        if !n.eq_ignore_ascii_case("range") {
                            return None;
                        }
                        let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
                        Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                    });
                    let file = files.lock().unwrap().get(&path).cloned();
                    let reply = match file {
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                        Some(f) => {
                            let (status, body) = match range {
                                Some((a, b)) if a < f.len() => {
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    ("206 Partial Content", f[a..(b + 1).min(f.len())].to_vec())
                                }
                                _ => ("200 OK", f),
                            };
                            let mut body = body;
                            if corrupt && !body.is_empty() {
                                body[0] ^= 0xff;
                            }
                            let mut r = format!(
                                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&body);
                            r
                        }
                    };
                    let body_len = reply.len();
                    match rate {
                        None => {
                            let _ = s.write_all(&reply).await;
                        }
                        Some(rate) => {
                            // 16 KiB at a time, pausing to keep to the rate.
                            for chunk in reply.chunks(16384) {
                                if s.write_all(chunk).await.is_err() {
                                    return;
                                }
                                let pause = chunk.len() as f64 / rate as f64;
                                tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                            }
                        }
                    }
                    sent.fetch_add(body_len as u64, Ordering::Relaxed);
                    let _ = s.shutdown().await;
                });
            }
        });
        WebServer {
            addr,
            files,
            ranges,
            sent,
            task,
        }
    }

    fn serve(&self, path: &str, data: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), data.to_vec());
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A multi-file torrent of `files` with `server` as its web seed (at `/seed/`), the files
/// put on the server: the .torrent bytes.
async fn album(dir: &std::path::Path, files: &[Vec<u8>], server: &WebServer) -> Bytes {
    let src = dir.join("album");
    for (i, f) in files.iter().enumerate() {
        write_file(&src, &format!("part {i}.bin"), f);
        server.serve(&format!("/seed/album/part%20{i}.bin"), f);
    }
    let creator = TorrentCreator::new()
        .with_piece_length(32 * 1024)
        .with_url_list(vec![server.url("/seed/")]);
    let client = WebTorrent::new(opts()).await.unwrap();
    let t = client.seed_path(&src, creator).await.unwrap();
    let file = t.torrent_file().unwrap();
    client.destroy().await.unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_seed_alone_completes_a_multi_file_download() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<Vec<u8>> = [700_001, 1_300_000, 5]
        .iter()
        .enumerate()
        .map(|(i, &n)| content(n, 60 + i as u64))
        .collect();
    let server = WebServer::start(false).await;
    let torrent = album(dir.path(), &files, &server).await;

    let leecher = WebTorrent::new(opts()).await.unwrap();
    let out = dir.path().join("out");
    let t = leecher
        .add_with(
            torrent,
            AddOptions {
                download_dir: Some(out.clone()),
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), t.wait_done())
        .await
        .expect("the web seed alone completes the download within 60 s")
        .unwrap();
    for (i, f) in files.iter().enumerate() {
        let got = std::fs::read(out.join("album").join(format!("part {i}.bin"))).unwrap();
        assert!(got == *f, "file {i} differs");
    }
    // Blocks were merged into ranges: far fewer requests than 16 KiB blocks.
    let n = server.ranges.load(Ordering::Relaxed);
    assert!(n > 0 && n < 2_000_006 / 16384, "{n} range requests");
    leecher.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_seed_sending_wrong_bytes_is_dropped_and_a_peer_finishes() {
    let data = content(600_000, 77);
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f.bin", &data);
    let server = WebServer::start(true).await;
    server.serve("/f.bin", &data);
    let seeder = WebTorrent::new(opts()).await.unwrap();
    let seeded = seeder
        .seed_path(
            &path,
            TorrentCreator::new()
                .with_piece_length(32 * 1024)
                .with_url_list(vec![server.url("/f.bin")]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let t = leecher
        .add_with(
            seeded.torrent_file().unwrap(),
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
    tokio::time::timeout(Duration::from_secs(60), t.wait_done())
        .await
        .expect("the peer completes the download")
        .unwrap();
    assert!(t.bytes().await.unwrap() == data);
    assert!(
        server.ranges.load(Ordering::Relaxed) > 0,
        "the web seed was never asked"
    );
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_web_seed_serves_once_a_peer_gives_the_metadata() {
    let data = content(2_000_000, 78);
    let server = WebServer::start(false).await;
    server.serve("/m/film.bin", &data);
    // A slow seeder (64 KiB/s): the metadata comes from it, nearly all pieces from HTTP.
    let seeder = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(64 * 1024),
        ..opts()
    })
    .await
    .unwrap();
    let seeded = seeder
        .seed("film.bin".to_string(), Bytes::from(data.clone()), None)
        .await
        .unwrap();
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&ws={}&x.pe=127.0.0.1:{}",
        seeded.info_hash().to_hex(),
        server.url("/m/"),
        seeder.port()
    );
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let t = leecher.add(magnet.as_str()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), t.wait_done())
        .await
        .expect("done within 60 s")
        .unwrap();
    assert!(t.bytes().await.unwrap() == data);
    assert!(server.ranges.load(Ordering::Relaxed) > 0);
    // Adding the same web seed again changes nothing.
    assert!(!t.add_web_seed(&server.url("/m/")).await.unwrap());
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_seed_and_a_peer_both_deliver_a_large_share() {
    // Both sources slower than the leecher (about 1 MB/s each): with both, each carries a
    // good part of the download, so it takes about half as long as with either alone (the
    // time itself is measured by `stream_bench`, not here).
    let data = content(3_000_000, 79);
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "both.bin", &data);
    // One reply at a time at 256 kB/s; the web seed has up to four in flight.
    let server = WebServer::start_with(false, Some(256_000)).await;
    server.serve("/both.bin", &data);
    let seeder = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(1_000_000),
        ..opts()
    })
    .await
    .unwrap();
    let seeded = seeder
        .seed_path(
            &path,
            TorrentCreator::new()
                .with_piece_length(32 * 1024)
                .with_url_list(vec![server.url("/both.bin")]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let t = leecher
        .add_with(
            seeded.torrent_file().unwrap(),
            AddOptions {
                peers: vec![local(seeder.port())],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), t.wait_done())
        .await
        .expect("done within 60 s")
        .unwrap();
    assert!(t.bytes().await.unwrap() == data);
    let from_web = server.sent.load(Ordering::Relaxed);
    let from_peer = seeded.uploaded();
    let total = data.len() as u64;
    assert!(
        from_web > total / 5 && from_peer > total / 5,
        "web seed sent {from_web} bytes, the peer {from_peer}, of {total}"
    );
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}
