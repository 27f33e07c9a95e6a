//! Interop with the real JavaScript peers: the npm `webtorrent` client (Node, TCP) and the npm
//! `bittorrent-tracker` server. These need the harness installed (`tests/interop/install.sh`)
//! and a loopback-only network namespace, so they are `#[ignore]`d in a plain `cargo test`;
//! `tests/run.sh` runs them with `tests/netns.sh cargo test ... -- --ignored`.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{cli, content, sha256_hex, write_file, Script, Tracker};
use webtorrent::{WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    common::loopback_options()
}

fn file_sha(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).expect("read downloaded file"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
async fn our_seeder_to_webtorrent_by_torrent_file_and_magnet() {
    let tracker = Tracker::start();
    let data = content(6_000_000, 1);
    let client = WebTorrent::new(opts()).await.unwrap();
    let t = client
        .seed(
            "ours.bin".into(),
            Bytes::from(data.clone()),
            Some(vec![tracker.http.clone()]),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let torrent_path = write_file(dir.path(), "ours.torrent", &t.torrent_file().unwrap());
    let out1 = dir.path().join("out1");
    let mut dl = Script::start(
        "download.mjs",
        &[
            "--torrent",
            torrent_path.to_str().unwrap(),
            "--out",
            out1.to_str().unwrap(),
            "--timeout",
            "90",
        ],
    );
    let done = dl.wait_event("done", Duration::from_secs(100));
    assert_eq!(done["files"][0]["sha256"], sha256_hex(&data));
    assert_eq!(file_sha(&out1.join("ours.bin")), sha256_hex(&data));
    // Stop the first downloader so the second can only fetch from us.
    dl.stop();
    // From the magnet link alone: webtorrent fetches the metadata from us (ut_metadata).
    let out2 = dir.path().join("out2");
    let magnet = t.magnet_uri();
    let mut dl2 = Script::start(
        "download.mjs",
        &[
            "--magnet",
            &magnet,
            "--out",
            out2.to_str().unwrap(),
            "--timeout",
            "90",
        ],
    );
    let done2 = dl2.wait_event("done", Duration::from_secs(100));
    assert_eq!(done2["files"][0]["sha256"], sha256_hex(&data));
    // Both downloads came from us (the status is refreshed a few times a second).
    let want = 2 * data.len() as u64;
    for _ in 0..50 {
        if t.uploaded() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t.uploaded() >= want, "uploaded {} of {want}", t.uploaded());
    client.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
async fn webtorrent_seeder_to_our_library_single_and_multi_file() {
    let tracker = Tracker::start();
    let dir = tempfile::tempdir().unwrap();
    let single = content(4_500_000, 2);
    let single_path = write_file(dir.path(), "src/theirs.bin", &single);
    let torrent_out = dir.path().join("theirs.torrent");
    let mut seed = Script::start(
        "seed.mjs",
        &[
            "--file",
            single_path.to_str().unwrap(),
            "--announce",
            &tracker.http,
            "--torrent-out",
            torrent_out.to_str().unwrap(),
        ],
    );
    seed.wait_event("seeding", Duration::from_secs(60));
    let out = dir.path().join("out");
    let client = WebTorrent::new(WebTorrentOptions {
        download_dir: Some(out.clone()),
        ..opts()
    })
    .await
    .unwrap();
    let t = client.add(torrent_out.as_path()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(90), t.wait_done())
        .await
        .expect("single-file download in time")
        .unwrap();
    assert_eq!(file_sha(&out.join("theirs.bin")), sha256_hex(&single));

    // Multi-file, by magnet link: metadata from webtorrent over ut_metadata.
    let album = dir.path().join("album");
    let a = content(1_234_567, 3);
    let b = content(2_000_000, 4);
    let c = content(10, 5);
    write_file(&album, "a.bin", &a);
    write_file(&album, "sub/b.bin", &b);
    write_file(&album, "sub/deeper/c.txt", &c);
    let mut seed2 = Script::start(
        "seed.mjs",
        &[
            "--file",
            album.to_str().unwrap(),
            "--announce",
            &tracker.http,
        ],
    );
    let seeding = seed2.wait_event("seeding", Duration::from_secs(60));
    let magnet = seeding["magnetURI"].as_str().unwrap().to_string();
    let m = client.add(magnet.as_str()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(90), m.wait_done())
        .await
        .expect("multi-file download in time")
        .unwrap();
    assert_eq!(m.name(), "album");
    assert_eq!(file_sha(&out.join("album/a.bin")), sha256_hex(&a));
    assert_eq!(file_sha(&out.join("album/sub/b.bin")), sha256_hex(&b));
    assert_eq!(
        file_sha(&out.join("album/sub/deeper/c.txt")),
        sha256_hex(&c)
    );
    // Destroying right after completion still says `stopped` (the `completed` announce may
    // be in flight): only the two webtorrent seeders remain on the tracker.
    client.destroy().await.unwrap();
    let stats = tracker.stats();
    assert_eq!(stats["peersAll"], 2, "{stats}");
}

#[test]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
fn webtorrent_seeder_to_our_cli() {
    let tracker = Tracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(3_333_333, 6);
    let path = write_file(dir.path(), "src/cli.bin", &data);
    let mut seed = Script::start(
        "seed.mjs",
        &[
            "--file",
            path.to_str().unwrap(),
            "--announce",
            &tracker.http,
        ],
    );
    let seeding = seed.wait_event("seeding", Duration::from_secs(60));
    let magnet = seeding["magnetURI"].as_str().unwrap();
    let out = dir.path().join("out");
    let status = cli()
        .args([
            "download",
            magnet,
            "-o",
            out.to_str().unwrap(),
            "--port",
            "0",
            "--timeout",
            "90",
        ])
        .status()
        .expect("run the CLI");
    assert!(status.success(), "CLI exit {status:?}");
    assert_eq!(file_sha(&out.join("cli.bin")), sha256_hex(&data));
    // A bad source is a clear error with a non-zero exit code.
    let bad = cli()
        .args(["download", "magnet:?xt=urn:btih:1234", "-o", "x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("info hash"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
async fn udp_tracker_joins_the_http_swarm() {
    let tracker = Tracker::start();
    let data = content(2_000_000, 7);
    let client = WebTorrent::new(opts()).await.unwrap();
    // We announce over UDP only; webtorrent announces over HTTP; the tracker joins them.
    let t = client
        .seed(
            "udp.bin".into(),
            Bytes::from(data.clone()),
            Some(vec![tracker.udp.clone()]),
        )
        .await
        .unwrap();
    let mut ev = t.subscribe();
    let reply = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(webtorrent::Event::TrackerReply { url, .. }) = ev.recv().await {
                return url;
            }
        }
    })
    .await
    .expect("UDP announce answered");
    assert!(reply.starts_with("udp://"));
    let dir = tempfile::tempdir().unwrap();
    let mut magnet = t.magnet_uri();
    magnet.push_str("&tr=");
    magnet.push_str(&webtorrent::core::percent::encode(
        tracker.http.as_bytes(),
        webtorrent::core::percent::Keep::Component,
    ));
    let out = dir.path().join("out");
    let mut dl = Script::start(
        "download.mjs",
        &[
            "--magnet",
            &magnet,
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "90",
        ],
    );
    let done = dl.wait_event("done", Duration::from_secs(100));
    assert_eq!(done["files"][0]["sha256"], sha256_hex(&data));
    client.destroy().await.unwrap();
}

/// The twin of `test_seed_to_dig_relay_tracker` against a local bittorrent-tracker: the
/// stats page shows our torrent with one seeder, and `stopped` on destroy removes the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
async fn test_seed_to_local_tracker() {
    let tracker = Tracker::start();
    let client = WebTorrent::new(opts()).await.unwrap();
    let t = client
        .seed(
            "test_file.txt".to_string(),
            Bytes::from("Hello, World! This is a test file."),
            Some(vec![tracker.http.clone()]),
        )
        .await
        .unwrap();
    let mut ev = t.subscribe();
    let (interval, seeders) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(webtorrent::Event::TrackerReply {
                interval,
                seeders,
                event,
                ..
            }) = ev.recv().await
            {
                assert_eq!(event, "started");
                return (interval, seeders);
            }
        }
    })
    .await
    .expect("tracker replied to started");
    assert!(interval >= Duration::from_secs(60));
    assert_eq!(seeders, Some(1));
    // Scrape (BEP 48) over HTTP and UDP sees us as the one seeder.
    for url in [&tracker.http, &tracker.udp] {
        let scraped = client.scrape(url, &[t.info_hash()]).await.unwrap();
        assert_eq!(scraped.len(), 1, "{url}");
        assert_eq!(scraped[0].1.complete, 1, "{url}");
    }
    let stats = tracker.stats();
    assert_eq!(stats["torrents"], 1, "{stats}");
    assert_eq!(stats["peersSeederOnly"], 1, "{stats}");
    assert_eq!(stats["peersAll"], 1, "{stats}");
    client.destroy().await.unwrap();
    let stats = tracker.stats();
    assert_eq!(stats["peersAll"], 0, "stopped removed our peer: {stats}");
}

/// Our CLI seeder → our CLI leecher, killed halfway and restarted: the second run resumes
/// from the verified pieces on disk and completes.
#[test]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
fn our_cli_leecher_resumes_after_being_killed() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let tracker = Tracker::start();
    let dir = tempfile::tempdir().unwrap();
    let data = content(6_000_000, 8);
    let path = write_file(dir.path(), "src/resume.bin", &data);
    let torrent = dir.path().join("resume.torrent");
    let mut seeder = cli()
        .args([
            "seed",
            path.to_str().unwrap(),
            "--announce",
            &tracker.http,
            "--port",
            "0",
        ])
        .args([
            "--piece-length",
            "65536",
            "--torrent-out",
            torrent.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("seeder.log")).unwrap())
        .spawn()
        .expect("start the CLI seeder");
    // The seeder prints its magnet link once the torrent is written and seeding started.
    let mut seeder_out = BufReader::new(seeder.stdout.take().unwrap());
    let mut first = String::new();
    seeder_out.read_line(&mut first).unwrap();
    assert!(first.starts_with("magnet:?xt=urn:btih:"), "{first}");
    let out = dir.path().join("out");
    let run = |limit: Option<&str>| {
        let mut c = cli();
        c.args([
            "download",
            torrent.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(["--port", "0", "--timeout", "90"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(l) = limit {
            c.args(["--download-limit", l]);
        }
        c.spawn().expect("start the CLI leecher")
    };
    // First run: slow (1 MB/s), killed after 3 s with SIGKILL: no clean shutdown.
    let mut slow = run(Some("1000000"));
    std::thread::sleep(Duration::from_secs(3));
    slow.kill().unwrap();
    slow.wait().unwrap();
    // Second run: resumes, then completes.
    let fast = run(None);
    let output = fast.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "second run failed: {stderr}\nseeder: {}",
        std::fs::read_to_string(dir.path().join("seeder.log")).unwrap_or_default()
    );
    let first_progress: f64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" % ")
                .and_then(|(p, _)| p.trim().parse().ok())
        })
        .expect("a progress line");
    assert!(
        first_progress > 5.0 && first_progress < 100.0,
        "resumed at {first_progress} %: {stderr}"
    );
    assert_eq!(file_sha(&out.join("resume.bin")), sha256_hex(&data));
    common::unsafe_free_kill(seeder.id(), "TERM");
    let status = seeder.wait().unwrap();
    assert!(status.success(), "seeder exits 0 on SIGTERM: {status:?}");
}
