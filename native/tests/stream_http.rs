//! Files over HTTP while they download, checked with curl (an independent HTTP client):
//! `curl -r A-B` on a stream URL returns exactly those bytes for ranges at the start, the
//! middle and the end before the download completes, with 206, `Content-Range`,
//! `Accept-Ranges` and the file's type; `webtorrent stream` prints URLs that answer the same
//! way; `webtorrent download --select` writes only the selected files.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use common::{content, write_file};
use webtorrent::server::stream::StreamServer;
use webtorrent::{AddOptions, TorrentCreator, WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    common::trackerless_options()
}

use common::local;

/// What curl got: the status line and headers (lower-cased names), and the body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs curl with `args` and `url`, headers to a file, body to stdout.
async fn curl(args: &[&str], url: &str) -> Got {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "60", "-D"])
        .arg(&head)
        .args(args)
        .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run curl (Debian package curl)");
    assert!(
        out.status.success(),
        "curl {args:?} {url}: {:?}",
        out.status
    );
    let text = std::fs::read_to_string(&head).unwrap();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Got {
        status,
        headers,
        body: out.stdout,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_exact_ranges_at_the_start_middle_and_end_while_downloading() {
    // 12 MiB from a seeder sending about 2 MiB/s: six seconds for the whole.
    let data = content(12 * 1024 * 1024 + 777, 57);
    let seeder = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(2 * 1024 * 1024),
        ..opts()
    })
    .await
    .unwrap();
    let seeded = seeder
        .seed("film.mp4".to_string(), Bytes::from(data.clone()), None)
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
    let (lookup, index) = (leecher.clone(), leecher.clone());
    let server = StreamServer::bind(
        local(0),
        Arc::new(move |ih| lookup.get(ih)),
        Arc::new(move || index.torrents()),
    )
    .await
    .unwrap();
    let url = server.url(t.info_hash(), 0);
    let len = data.len();

    // Three readers at once: the start, the middle and the last bytes (suffix form).
    let mid = 7 * 1024 * 1024 + 4321;
    let r_start = "0-99999".to_string();
    let r_mid = format!("{mid}-{}", mid + 150_000 - 1);
    let (args_a, args_b) = (["-r", r_start.as_str()], ["-r", r_mid.as_str()]);
    let (a, b, c) = tokio::join!(
        curl(&args_a, &url),
        curl(&args_b, &url),
        curl(&["-H", "Range: bytes=-50000"], &url),
    );
    assert!(
        !t.is_done(),
        "the download finished before the ranges were read: the test proves nothing"
    );
    for (got, range) in [
        (&a, 0..100_000),
        (&b, mid..mid + 150_000),
        (&c, len - 50_000..len),
    ] {
        assert_eq!(got.status, 206);
        assert!(got.body == data[range.clone()], "bytes of {range:?} differ");
        assert_eq!(
            got.header("content-range"),
            Some(format!("bytes {}-{}/{len}", range.start, range.end - 1).as_str())
        );
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
        assert_eq!(got.header("content-type"), Some("video/mp4"));
        assert_eq!(
            got.header("content-length"),
            Some(range.len().to_string().as_str())
        );
    }

    // HEAD, a range past the end, an unknown torrent, a file that does not exist.
    let head = curl(&["-I"], &url).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    let past = curl(&["-r", &format!("{len}-")], &url).await;
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let base = format!("http://{}", server.local_addr());
    let unknown = curl(&[], &format!("{base}/stream/{}/0", "ab".repeat(20))).await;
    assert_eq!(unknown.status, 404);
    let nofile = curl(&[], &format!("{base}/stream/{}/9", t.info_hash().to_hex())).await;
    assert_eq!(nofile.status, 404);
    assert!(String::from_utf8_lossy(&nofile.body).contains("numbered from 0"));
    let listing = curl(&[], &format!("{base}/stream/{}", t.info_hash().to_hex())).await;
    assert!(String::from_utf8_lossy(&listing.body).contains("film.mp4"));

    // The whole file, with no Range: 200 and every byte, once the rest arrives.
    let whole = curl(&[], &url).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == data, "the whole file differs");
    server.shutdown().await;
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}

/// A seeded folder of three files, each a whole number of 16 KiB pieces so that they share
/// no piece: (client, .torrent path, files' data, info hash hex).
async fn three_files(dir: &Path) -> (WebTorrent, std::path::PathBuf, Vec<Vec<u8>>, String) {
    let src = dir.join("src").join("album");
    let files: Vec<Vec<u8>> = (0..3)
        .map(|i| content(16384 * (5 + i), 90 + i as u64))
        .collect();
    for (i, f) in files.iter().enumerate() {
        write_file(&src, &format!("track{i}.bin"), f);
    }
    let seeder = WebTorrent::new(opts()).await.unwrap();
    let t = seeder
        .seed_path(&src, TorrentCreator::new().with_piece_length(16384))
        .await
        .unwrap();
    let torrent = dir.join("album.torrent");
    std::fs::write(&torrent, t.torrent_file().unwrap()).unwrap();
    (seeder, torrent, files, t.info_hash().to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_select_writes_only_the_selected_files() {
    let dir = tempfile::tempdir().unwrap();
    let (seeder, torrent, files, hex) = three_files(dir.path()).await;
    let peer = local(seeder.port()).to_string();
    let magnet = format!("magnet:?xt=urn:btih:{hex}");
    for (n, source) in [torrent.to_str().unwrap(), magnet.as_str()]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("out{n}"));
        let o = common::cli()
            .args(["download", source, "--peer", &peer, "--select", "0,2"])
            .args(["--timeout", "60", "--quiet", "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let folder = out.join("album");
        assert_eq!(std::fs::read(folder.join("track0.bin")).unwrap(), files[0]);
        assert_eq!(std::fs::read(folder.join("track2.bin")).unwrap(), files[2]);
        assert!(
            !folder.join("track1.bin").exists(),
            "{source}: a deselected file was written"
        );
    }
    // A number the torrent does not have: a clear refusal, before anything is written.
    let o = common::cli()
        .args(["download", torrent.to_str().unwrap(), "--select", "3"])
        .args(["--peer", &peer, "--quiet", "-o"])
        .arg(dir.path().join("out-bad"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no file 3") && err.contains("webtorrent info"),
        "{err}"
    );
    let o = common::cli()
        .args(["download", torrent.to_str().unwrap(), "--select", "x"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("e.g. 0,2"));
    seeder.destroy().await.unwrap();
}

/// Stops a child process when dropped.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_command_prints_urls_that_answer_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (seeder, _torrent, files, hex) = three_files(dir.path()).await;
    let magnet = format!("magnet:?xt=urn:btih:{hex}");
    let mut child = Kill(
        common::cli()
            .args(["stream", &magnet, "--file", "1", "--listen", "127.0.0.1:0"])
            .args(["--peer", &local(seeder.port()).to_string(), "--quiet", "-o"])
            .arg(dir.path().join("out"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("stream printed no URL");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with(&format!("/stream/{hex}/1")),
        "{url}"
    );
    // --file 1: only that file's URL.
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    let got = curl(&["-r", "1000-50999"], &url).await;
    assert_eq!(got.status, 206);
    assert!(got.body == files[1][1000..51000]);
    let whole = curl(&[], &url).await;
    assert!(whole.body == files[1]);
    drop(child);

    // A busy address: the refusal says what to pass instead.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_webtorrent"))
        .args([
            "stream",
            &magnet,
            "--no-dht",
            "--no-port-mapping",
            "--quiet",
            "--listen",
        ])
        .arg(busy.local_addr().unwrap().to_string())
        .arg("-o")
        .arg(dir.path().join("out2"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--listen 127.0.0.1:0"), "{err}");
    seeder.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_server_streams_the_torrents_it_holds() {
    use webtorrent::server::{Server, ServerConfig};
    let server = Server::bind(ServerConfig {
        listen: local(0),
        udp: false,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let base = server.page_url();
    // Before it is given torrents: a 404 that says how to get some.
    let none = curl(&[], &format!("{base}stream/{}/0", "cd".repeat(20))).await;
    assert_eq!(none.status, 404);
    assert!(String::from_utf8_lossy(&none.body).contains("webtorrent serve FILE"));

    let client = WebTorrent::new(opts()).await.unwrap();
    let data = content(300_000, 3);
    let t = client
        .seed("song.mp3".to_string(), Bytes::from(data.clone()), None)
        .await
        .unwrap();
    let c = client.clone();
    server.set_torrents(Arc::new(move |ih| c.get(ih)));
    let url = server.stream_url(t.info_hash(), 0);
    assert!(url.starts_with(&base));
    let got = curl(&["-r", "1000-1999"], &url).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-type"), Some("audio/mpeg"));
    assert!(got.body == data[1000..2000]);
    // The tracker still answers beside it.
    let stats = curl(&[], &format!("{base}stats.json")).await;
    assert_eq!(stats.status, 200);
    server.shutdown().await;
    client.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_pieces_fetches_those_pieces_whatever_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (seeder, torrent, _files, _hex) = three_files(dir.path()).await;
    let leecher = WebTorrent::new(opts()).await.unwrap();
    // No file selected: nothing is fetched until pieces are.
    let t = leecher
        .add_with(
            std::fs::read(&torrent).unwrap(),
            AddOptions {
                peers: vec![local(seeder.port())],
                select: Some(Vec::new()),
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    let mut events = t.subscribe();
    assert!(t.select_pieces(vec![6..8, 20..99]).await.is_err());
    #[allow(clippy::single_range_in_vec_init)]
    t.select_pieces(vec![6..8]).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(webtorrent::Event::PieceVerified(p))) => got.push(p),
            Ok(Ok(_)) => {}
            other => panic!("pieces 6 and 7 did not arrive: {other:?} (got {got:?})"),
        }
    }
    got.sort_unstable();
    assert_eq!(got, [6, 7]);
    // Nothing else follows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.downloaded(), 2 * 16384);
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}
