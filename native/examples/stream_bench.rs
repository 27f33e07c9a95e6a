//! Streaming and web seed figures (issue 14), on loopback with plain 127.0.0.1 sockets:
//!
//! 1. **Time to first byte** of a stream URL (and after seeking) while the only seeder
//!    uploads at 4 MB/s: a leecher serves the torrent's file with [`StreamServer`]; GETs with
//!    `Range: bytes=P-` at 0 %, 30 %, 70 % and 95 % of the file, each timed from sending the
//!    request to the first body byte.
//! 2. **Web seed throughput**: a seeder's [`StreamServer`] serves the file over HTTP; `curl`
//!    fetches it whole (the baselines: discarding the bytes, and saving them to a file), then a
//!    leecher with no peers downloads it with that URL as its only web seed (verifying every
//!    piece and writing the file).
//!
//! ```sh
//! cargo run --release -p webtorrent --example stream_bench -- [SIZE_MIB] [WEBSEED_MIB]
//! ```
//!
//! Defaults: a 256 MiB file for the stream test, 1024 MiB for the web seed test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use webtorrent::server::stream::StreamServer;
use webtorrent::{AddOptions, TorrentCreator, WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        trackers: false,
        webrtc: false,
        ..WebTorrentOptions::default()
    }
}

fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn serve(client: &WebTorrent) -> StreamServer {
    let (a, b) = (client.clone(), client.clone());
    StreamServer::bind(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Arc::new(move |ih| a.get(ih)),
        Arc::new(move || b.torrents()),
    )
    .await
    .expect("stream server")
}

/// Milliseconds from sending `Range: bytes=at-` to the first body byte.
async fn first_byte(http: &reqwest::Client, url: &str, at: u64) -> f64 {
    let t0 = Instant::now();
    let mut resp = http
        .get(url)
        .header("Range", format!("bytes={at}-"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 206);
    let chunk = resp.chunk().await.expect("body").expect("a first chunk");
    assert!(!chunk.is_empty());
    t0.elapsed().as_secs_f64() * 1000.0
}

/// A file server for one file on 127.0.0.1 that sends at most `rate` bytes/s in all: GET
/// with `Range: bytes=A-B` (206) or without (200), keep-alive. Returns the URL and the
/// count of body bytes sent.
async fn throttled_server(
    path: std::path::PathBuf,
    rate: u64,
) -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let url = format!("http://{}/file", listener.local_addr().unwrap());
    let len = std::fs::metadata(&path).unwrap().len();
    // One budget for every connection: the next instant a chunk may leave.
    let next = Arc::new(tokio::sync::Mutex::new(tokio::time::Instant::now()));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (path, next, sent) = (path.clone(), next.clone(), sent.clone());
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut rd = BufReader::new(rd);
                let mut file = tokio::fs::File::open(&path).await.unwrap();
                loop {
                    let mut range = None;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("range: bytes=") {
                            let (a, b) = v.trim().split_once('-').unwrap_or(("0", ""));
                            let a: u64 = a.parse().unwrap_or(0);
                            let b: u64 = b.parse().unwrap_or(len - 1).min(len - 1);
                            range = Some((a, b + 1));
                        }
                    }
                    let (a, b) = range.unwrap_or((0, len));
                    let head = match range {
                        Some(_) => format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{}/{len}\r\n\r\n",
                            b - a,
                            b - 1
                        ),
                        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n"),
                    };
                    if wr.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    file.seek(std::io::SeekFrom::Start(a)).await.unwrap();
                    let mut left = b - a;
                    let mut buf = vec![0u8; 64 << 10];
                    while left > 0 {
                        let n = (left as usize).min(buf.len());
                        file.read_exact(&mut buf[..n]).await.unwrap();
                        let at = {
                            let mut t = next.lock().await;
                            let now = tokio::time::Instant::now();
                            let at = (*t).max(now);
                            *t = at + Duration::from_secs_f64(n as f64 / rate as f64);
                            at
                        };
                        tokio::time::sleep_until(at).await;
                        if wr.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                        sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (url, counter)
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let size_mib = args.first().copied().unwrap_or(256);
    let web_mib = args.get(1).copied().unwrap_or(1024);

    // ---- 1. time to first byte at 4 MB/s
    let len = (size_mib << 20) as usize;
    // STREAM_RATE=bytes/s overrides the seeder's 4 MB/s.
    let rate: u64 = std::env::var("STREAM_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000);
    let seeder = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(rate),
        ..opts()
    })
    .await
    .unwrap();
    let seeded = seeder
        .seed("film.mp4".to_string(), Bytes::from(data(len)), None)
        .await
        .unwrap();
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let t = leecher
        .add_with(
            seeded.torrent_file().unwrap(),
            AddOptions {
                peers: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, seeder.port()))],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    let server = serve(&leecher).await;
    let url = server.url(t.info_hash(), 0);
    // reqwest is built without a TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    println!(
        "## Stream: time to first byte, {size_mib} MiB file, seeder at 4 MB/s, piece {} KiB\n",
        seeded.metainfo().unwrap().info.piece_length() / 1024
    );
    println!("| position | first byte (ms) |\n|---|---|");
    for pct in [0u64, 30, 70, 95] {
        let at = len as u64 * pct / 100;
        let ms = first_byte(&http, &url, at).await;
        println!("| {pct} % (seek) | {ms:.0} |");
    }
    println!(
        "\n(downloaded meanwhile: {:.1} MiB of {size_mib})\n",
        t.downloaded() as f64 / 1048576.0
    );
    server.shutdown().await;
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();

    // ---- 2. web seed vs curl, same server
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = data(1 << 20);
        for _ in 0..web_mib {
            f.write_all(&chunk).unwrap();
        }
    }
    let origin = WebTorrent::new(opts()).await.unwrap();
    let ot = origin
        .seed_path(&path, TorrentCreator::new())
        .await
        .unwrap();
    let server = serve(&origin).await;
    let url = server.url(ot.info_hash(), 0);
    // curl: discarding the bytes, and saving them to a file on the same disk as the
    // leecher's download (what a user who fetches a file with curl gets).
    let curl = |out: &str| -> f64 {
        let o = Command::new("curl")
            .args(["-s", "-o", out, "-w", "%{speed_download}", &url])
            .output()
            .expect("curl (Debian package curl)");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0)
    };
    // The median of three runs each (writing to disk varies a lot from run to run).
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let curl_bps = median((0..3).map(|_| curl("/dev/null")).collect());
    let saved = tempfile::tempdir().unwrap();
    let to_file = saved.path().join("curl.bin");
    let curl_file_bps = median(
        (0..3)
            .map(|_| {
                let bps = curl(&to_file.to_string_lossy());
                let _ = std::fs::remove_file(&to_file);
                bps
            })
            .collect(),
    );
    drop(saved);
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let folder = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let t = leecher
        .add_with(
            ot.torrent_file().unwrap(),
            AddOptions {
                download_dir: Some(folder.path().to_path_buf()),
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    t.add_web_seed(&url).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3600), t.wait_done())
        .await
        .expect("web seed download finishes")
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let ws_bps = (web_mib << 20) as f64 / secs;
    println!("## Web seed only, {web_mib} MiB from a local HTTP server\n");
    println!("| client | MiB/s |\n|---|---|");
    println!("| curl -o /dev/null | {:.0} |", curl_bps / 1048576.0);
    println!("| curl -o FILE | {:.0} |", curl_file_bps / 1048576.0);
    println!(
        "| webtorrent-rs web seed (verified, written) | {:.0} |",
        ws_bps / 1048576.0
    );
    let pct = |base: f64| {
        if base > 0.0 {
            ws_bps / base * 100.0
        } else {
            0.0
        }
    };
    println!(
        "\nweb seed / curl -o /dev/null: {:.0} %; web seed / curl -o FILE: {:.0} %",
        pct(curl_bps),
        pct(curl_file_bps)
    );
    leecher.destroy().await.unwrap();

    // ---- 3. web seed and a peer together vs each alone. The peer is a second seeder of the
    // same file, its upload limited (PEER_RATE bytes/s, default 100 MB/s), and the web seed
    // a server that sends at most WEBSEED_RATE bytes/s (default 100 MB/s): sources slower
    // than the leecher, as on a real network.
    let rate = |var: &str| -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000_000)
    };
    let (peer_rate, web_rate) = (rate("PEER_RATE"), rate("WEBSEED_RATE"));
    let (url, web_sent) = throttled_server(path.clone(), web_rate).await;
    let peer_seed = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(peer_rate),
        ..opts()
    })
    .await
    .unwrap();
    peer_seed
        .seed_existing(
            webtorrent::TorrentSource::TorrentFile(ot.torrent_file().unwrap()),
            dir.path(),
            AddOptions::default(),
        )
        .await
        .expect("second seeder");
    println!(
        "\n## Web seed ({:.0} MB/s) plus a peer ({:.0} MB/s), {web_mib} MiB\n",
        web_rate as f64 / 1e6,
        peer_rate as f64 / 1e6
    );
    println!("| sources | s | MiB/s | from the web seed |\n|---|---|---|---|");
    for (label, web, peer) in [
        ("web seed alone", true, false),
        ("peer alone", false, true),
        ("web seed + peer", true, true),
    ] {
        let leecher = WebTorrent::new(opts()).await.unwrap();
        let folder = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let web_before = web_sent.load(std::sync::atomic::Ordering::Relaxed);
        let t = leecher
            .add_with(
                ot.torrent_file().unwrap(),
                AddOptions {
                    download_dir: Some(folder.path().to_path_buf()),
                    peers: if peer {
                        vec![SocketAddr::from((Ipv4Addr::LOCALHOST, peer_seed.port()))]
                    } else {
                        Vec::new()
                    },
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap();
        if web {
            t.add_web_seed(&url).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(3600), t.wait_done())
            .await
            .expect("download finishes")
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let from_web = web_sent.load(std::sync::atomic::Ordering::Relaxed) - web_before;
        println!(
            "| {label} | {secs:.2} | {:.0} | {:.0} % |",
            web_mib as f64 / secs,
            from_web as f64 / (web_mib << 20) as f64 * 100.0
        );
        leecher.destroy().await.unwrap();
    }
    server.shutdown().await;
    peer_seed.destroy().await.unwrap();
    origin.destroy().await.unwrap();
}
