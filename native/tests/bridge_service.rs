//! The bridge as a service (`webtorrent serve`'s bridge, in-process): peers that can only reach
//! one side — WebRTC-only clients on the WebSocket tracker, TCP-only clients on the HTTP
//! tracker — get each other's torrents with no command per torrent, within the bridge's
//! bounds, and a restarted bridge resumes from its data folder. WebRTC opens UDP sockets, so
//! these are `#[ignore]`d in a plain `cargo test`; `tests/run.sh` runs them inside a
//! loopback-only network namespace.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{content, download_magnet, loopback_options, sha256_hex, webrtc_only_options};
use webtorrent::bridge::{Bridge, BridgeConfig, BridgeSource};
use webtorrent::server::{Server, ServerConfig};
use webtorrent::{WebTorrent, WebTorrentOptions};

/// A client that speaks TCP only (no WebRTC): a desktop BitTorrent client.
fn tcp_only_options() -> WebTorrentOptions {
    WebTorrentOptions {
        webrtc: false,
        ..loopback_options()
    }
}

/// A client reachable over WebRTC only that never dials TCP either (no PEX to learn TCP
/// addresses from): a browser.
fn browser_options() -> WebTorrentOptions {
    WebTorrentOptions {
        pex: false,
        ..webrtc_only_options()
    }
}

async fn server() -> Server {
    // RUST_LOG=webtorrent=debug shows what the bridge does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        www: None,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

/// A bridge on `server`'s tracker keeping its torrents in `data`.
async fn bridge(server: &Server, data: &Path, config: BridgeConfig) -> (WebTorrent, Bridge) {
    let client = WebTorrent::new(loopback_options()).await.unwrap();
    let b = Bridge::start(
        client.clone(),
        BridgeSource::Local(server.handle()),
        BridgeConfig {
            data_dir: data.to_path_buf(),
            ..config
        },
    )
    .unwrap();
    server.set_bridge(b.hooks());
    (client, b)
}

/// The bridge's copy of a single-file torrent, read back from its data folder.
fn bridge_copy(data: &Path, info_hash: &str, name: &str) -> Vec<u8> {
    let p = data.join(info_hash.to_ascii_lowercase()).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("the bridge's copy {}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns (tests/run.sh)"]
async fn a_webrtc_seed_reaches_a_tcp_client_and_back() {
    let srv = server().await;
    let data_dir = tempfile::tempdir().unwrap();
    let (bridge_client, b) = bridge(&srv, data_dir.path(), BridgeConfig::default()).await;

    // Browser → desktop: the seeder is reachable over WebRTC only and announces only on the
    // WebSocket tracker; the leecher speaks TCP only and knows only the HTTP tracker.
    let data = content(3 * 1024 * 1024 + 4321, 11);
    let browser = WebTorrent::new(browser_options()).await.unwrap();
    let t = browser
        .seed(
            "from-browser.bin".into(),
            Bytes::from(data.clone()),
            Some(vec![srv.ws_url()]),
        )
        .await
        .unwrap();
    let hex = hex::encode(t.info_hash());
    let desktop = WebTorrent::new(tcp_only_options()).await.unwrap();
    let got = download_magnet(
        &desktop,
        &hex,
        &[&srv.http_announce_url()],
        Duration::from_secs(90),
        "TCP-only leecher",
    )
    .await;
    assert_eq!(sha256_hex(&got.bytes().await.unwrap()), sha256_hex(&data));
    assert_eq!(
        sha256_hex(&bridge_copy(data_dir.path(), &hex, "from-browser.bin")),
        sha256_hex(&data)
    );

    // Desktop → browser: a TCP-only seeder on the HTTP tracker, a WebRTC-only leecher on the
    // WebSocket tracker.
    let data2 = content(2 * 1024 * 1024 + 77, 12);
    let t2 = desktop
        .seed(
            "from-desktop.bin".into(),
            Bytes::from(data2.clone()),
            Some(vec![srv.http_announce_url()]),
        )
        .await
        .unwrap();
    let got2 = download_magnet(
        &browser,
        &hex::encode(t2.info_hash()),
        &[&srv.ws_url()],
        Duration::from_secs(90),
        "WebRTC-only leecher",
    )
    .await;
    assert_eq!(sha256_hex(&got2.bytes().await.unwrap()), sha256_hex(&data2));

    // The figures follow the transfers within a fraction of a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let stats = srv.stats().bridge.expect("bridge figures in /stats");
        let moved = stats.bytes_browser_to_desktop >= data.len() as u64
            && stats.bytes_desktop_to_browser >= data2.len() as u64;
        if moved || tokio::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stats.bridged, 2, "{stats:?}");
    assert_eq!(stats.torrents, 2, "{stats:?}");
    assert_eq!(stats.refused, 0, "{stats:?}");
    assert!(
        stats.bytes_browser_to_desktop >= data.len() as u64,
        "{stats:?}"
    );
    assert!(
        stats.bytes_desktop_to_browser >= data2.len() as u64,
        "{stats:?}"
    );
    assert!(stats.bytes_reserved >= (data.len() + data2.len()) as u64);
    desktop.destroy().await.unwrap();
    browser.destroy().await.unwrap();
    b.shutdown().await;
    bridge_client.destroy().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns (tests/run.sh)"]
async fn over_quota_is_refused_and_a_restart_resumes_without_fetching_again() {
    let srv = server().await;
    let data_dir = tempfile::tempdir().unwrap();
    let config = BridgeConfig {
        max_bytes: 6 * 1024 * 1024,
        ..BridgeConfig::default()
    };
    let (bridge_client, b) = bridge(&srv, data_dir.path(), config.clone()).await;
    let browser = WebTorrent::new(browser_options()).await.unwrap();
    let desktop = WebTorrent::new(tcp_only_options()).await.unwrap();

    // Fits: 4 MiB of a 6 MiB quota.
    let small = content(4 * 1024 * 1024, 21);
    let ts = browser
        .seed(
            "small.bin".into(),
            Bytes::from(small.clone()),
            Some(vec![srv.ws_url()]),
        )
        .await
        .unwrap();
    let small_hex = hex::encode(ts.info_hash());
    let got = download_magnet(
        &desktop,
        &small_hex,
        &[&srv.http_announce_url()],
        Duration::from_secs(90),
        "TCP-only leecher (small)",
    )
    .await;
    assert_eq!(sha256_hex(&got.bytes().await.unwrap()), sha256_hex(&small));

    // A page asks the server to keep the small one: kept torrents are never evicted.
    let kept = b.hooks().keep(ts.info_hash()).unwrap();
    assert_eq!(kept["infoHash"], small_hex, "{kept}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.hooks().status(ts.info_hash())["kept"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "keep request not taken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Does not fit in what is left (3 MiB > 2 MiB left) and nothing may make room: refused.
    let big = content(3 * 1024 * 1024, 22);
    let tb = browser
        .seed("big.bin".into(), Bytes::from(big), Some(vec![srv.ws_url()]))
        .await
        .unwrap();
    let big_hex = hex::encode(tb.info_hash());
    let refused_leecher = desktop
        .add(common::magnet(&big_hex, &[&srv.http_announce_url()]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = srv.stats().bridge.unwrap();
        if s.refused >= 1 {
            break;
        }
        assert_eq!(s.evicted, 0, "a kept torrent was evicted: {s:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the over-quota torrent was not refused: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = srv.stats().bridge.unwrap();
    assert!(
        s.bytes_reserved <= config.max_bytes,
        "quota exceeded: {s:?}"
    );
    assert!(!refused_leecher.is_done());
    let st = b.hooks().status(tb.info_hash());
    assert_eq!(st["state"], "refused", "{st}");
    assert!(
        !data_dir.path().join(&big_hex).join("big.bin").exists(),
        "the refused torrent wrote data"
    );
    let _ = desktop.remove(refused_leecher.info_hash()).await;

    // Restart the bridge on the same data folder, with the WebRTC seeder gone: what it
    // verified before is there at once and is served to a new TCP client.
    browser.destroy().await.unwrap();
    b.shutdown().await;
    bridge_client.destroy().await.unwrap();
    let (bridge_client, b) = bridge(&srv, data_dir.path(), config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let restored = loop {
        if let Some(t) = b
            .torrents()
            .into_iter()
            .find(|t| t.info_hash() == ts.info_hash())
        {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge did not resume the saved torrent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(restored.is_done(), "resumed torrent not complete on disk");
    let fresh = WebTorrent::new(tcp_only_options()).await.unwrap();
    let got = download_magnet(
        &fresh,
        &small_hex,
        &[&srv.http_announce_url()],
        Duration::from_secs(90),
        "TCP-only leecher after the restart",
    )
    .await;
    assert_eq!(sha256_hex(&got.bytes().await.unwrap()), sha256_hex(&small));
    assert_eq!(
        restored.downloaded(),
        0,
        "the restarted bridge fetched again"
    );
    fresh.destroy().await.unwrap();
    desktop.destroy().await.unwrap();
    b.shutdown().await;
    bridge_client.destroy().await.unwrap();
    srv.shutdown().await;
}

/// Twenty torrents at once, half from browsers to desktops and half the other way, beside a
/// torrent larger than the bridge's whole quota: that one is refused, the rest complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns (tests/run.sh)"]
async fn twenty_torrents_half_each_way_and_one_over_quota() {
    let srv = server().await;
    let data_dir = tempfile::tempdir().unwrap();
    let config = BridgeConfig {
        max_bytes: 16 * 1024 * 1024,
        ..BridgeConfig::default()
    };
    let (bridge_client, b) = bridge(&srv, data_dir.path(), config.clone()).await;
    let browser = WebTorrent::new(browser_options()).await.unwrap();
    let desktop = WebTorrent::new(tcp_only_options()).await.unwrap();
    let mut expected = Vec::new();
    let mut downloads = Vec::new();
    for i in 0..20u64 {
        let data = content(400 * 1024 + i as usize * 1000, 100 + i);
        let name = format!("t{i}.bin");
        // Even ones go browser → desktop, odd ones desktop → browser.
        let (seeder, leecher, seed_tracker, leech_tracker) = if i % 2 == 0 {
            (&browser, &desktop, srv.ws_url(), srv.http_announce_url())
        } else {
            (&desktop, &browser, srv.http_announce_url(), srv.ws_url())
        };
        let t = seeder
            .seed(name, Bytes::from(data.clone()), Some(vec![seed_tracker]))
            .await
            .unwrap();
        let d = leecher
            .add(common::magnet(
                &hex::encode(t.info_hash()),
                &[&leech_tracker],
            ))
            .await
            .unwrap();
        expected.push(sha256_hex(&data));
        downloads.push(d);
    }
    let huge = content(17 * 1024 * 1024, 999);
    let th = browser
        .seed(
            "huge.bin".into(),
            Bytes::from(huge),
            Some(vec![srv.ws_url()]),
        )
        .await
        .unwrap();
    let huge_leecher = desktop
        .add(common::magnet(
            &hex::encode(th.info_hash()),
            &[&srv.http_announce_url()],
        ))
        .await
        .unwrap();
    for (i, (d, sha)) in downloads.iter().zip(&expected).enumerate() {
        tokio::time::timeout(Duration::from_secs(120), d.wait_done())
            .await
            .unwrap_or_else(|_| panic!("torrent {i} not done: {:?}", srv.stats().bridge))
            .unwrap();
        assert_eq!(&sha256_hex(&d.bytes().await.unwrap()), sha, "torrent {i}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = srv.stats().bridge.unwrap();
        if s.refused >= 1 || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s.refused, 1, "{s:?}");
    assert_eq!(s.evicted, 0, "{s:?}");
    assert!(s.bridged >= 21, "{s:?}");
    assert!(s.bytes_reserved <= config.max_bytes, "{s:?}");
    assert!(!huge_leecher.is_done());
    let st = b.hooks().status(th.info_hash());
    assert_eq!(st["state"], "refused", "{st}");
    desktop.destroy().await.unwrap();
    browser.destroy().await.unwrap();
    b.shutdown().await;
    bridge_client.destroy().await.unwrap();
    srv.shutdown().await;
}

/// `webtorrent bridge --tracker URL` (the standalone bridge, on a tracker it does not run) is
/// killed with SIGKILL mid-transfer and restarted on the same `--data`: the transfer
/// finishes, and the seeder does not send again what the bridge had verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns (tests/run.sh)"]
async fn a_killed_standalone_bridge_resumes_from_its_data_folder() {
    let srv = server().await;
    let data_dir = tempfile::tempdir().unwrap();
    let total = 6 * 1024 * 1024;
    let data = content(total, 31);
    // The browser sends at 1 MiB/s, so the transfer takes about 6 s.
    let browser = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(1024 * 1024),
        ..browser_options()
    })
    .await
    .unwrap();
    let t = browser
        .seed(
            "slow.bin".into(),
            Bytes::from(data.clone()),
            Some(vec![srv.ws_url()]),
        )
        .await
        .unwrap();
    let desktop = WebTorrent::new(tcp_only_options()).await.unwrap();
    let d = desktop
        .add(common::magnet(
            &hex::encode(t.info_hash()),
            &[&srv.http_announce_url()],
        ))
        .await
        .unwrap();
    let start_bridge = || {
        common::cli()
            .args([
                "bridge",
                "--quiet",
                "--tracker",
                &srv.http_announce_url(),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--scan-interval",
                "1",
                "--data",
            ])
            .arg(data_dir.path())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start webtorrent bridge")
    };
    let mut first = start_bridge();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while d.progress() < 0.3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the desktop client got nothing through the bridge"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().expect("SIGKILL the bridge");
    let _ = first.wait();
    let sent_before = t.uploaded();
    let mut second = start_bridge();
    let done = tokio::time::timeout(Duration::from_secs(90), d.wait_done()).await;
    let _ = second.kill();
    let _ = second.wait();
    done.expect("not finished after the restart").unwrap();
    assert_eq!(sha256_hex(&d.bytes().await.unwrap()), sha256_hex(&data));
    // Only what was in flight when the bridge died may be sent twice.
    let sent = t.uploaded();
    assert!(
        sent <= total as u64 + total as u64 / 5,
        "the seeder sent {sent} bytes for {total} ({sent_before} before the restart)"
    );
    desktop.destroy().await.unwrap();
    browser.destroy().await.unwrap();
    srv.shutdown().await;
}

/// A bridged torrent nobody wants any more (its only leecher is done) is dropped after
/// `idle`, with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns (tests/run.sh)"]
async fn a_torrent_nobody_wants_is_dropped_when_idle() {
    let srv = server().await;
    let data_dir = tempfile::tempdir().unwrap();
    let config = BridgeConfig {
        idle: Duration::from_secs(1),
        ..BridgeConfig::default()
    };
    let (bridge_client, b) = bridge(&srv, data_dir.path(), config).await;
    let browser = WebTorrent::new(browser_options()).await.unwrap();
    let desktop = WebTorrent::new(tcp_only_options()).await.unwrap();
    let data = content(1024 * 1024 + 5, 41);
    let t = browser
        .seed(
            "idle.bin".into(),
            Bytes::from(data.clone()),
            Some(vec![srv.ws_url()]),
        )
        .await
        .unwrap();
    let hex = hex::encode(t.info_hash());
    let got = download_magnet(
        &desktop,
        &hex,
        &[&srv.http_announce_url()],
        Duration::from_secs(60),
        "TCP-only leecher",
    )
    .await;
    assert_eq!(sha256_hex(&got.bytes().await.unwrap()), sha256_hex(&data));
    assert!(data_dir.path().join(&hex).is_dir());
    // The desktop client seeds now: nobody leeches, so the bridge lets it go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = srv.stats().bridge.unwrap();
        if s.idle_dropped == 1 && s.torrents == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not dropped: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while data_dir.path().join(&hex).exists()
        || data_dir.path().join(format!("{hex}.torrent")).exists()
    {
        assert!(tokio::time::Instant::now() < deadline, "data left behind");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(srv.stats().bridge.unwrap().bytes_reserved, 0);
    desktop.destroy().await.unwrap();
    browser.destroy().await.unwrap();
    b.shutdown().await;
    bridge_client.destroy().await.unwrap();
    srv.shutdown().await;
}

/// `webtorrent serve` (tracker, page and bridge in one process) is killed with SIGKILL
/// mid-transfer and started again on the same port and `--data`: the peers come back (the
/// WebRTC side reconnects to the WebSocket tracker, the TCP side announces again), the
/// transfer finishes, and the seeder does not send again what the bridge had verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns (tests/run.sh)"]
async fn a_killed_serve_restarts_on_its_data_and_the_transfer_finishes() {
    use std::io::BufRead;
    let data_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start_serve = || {
        let mut child = common::cli()
            .args(["serve", "--quiet", "--no-udp", "--interval", "2"])
            .args(["--port", &port.to_string()])
            .arg("--data")
            .arg(data_dir.path())
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start webtorrent serve");
        let out = child.stdout.take().expect("stdout");
        let mut first = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut first)
            .expect("the page URL");
        assert!(first.starts_with("http://127.0.0.1:"), "{first}");
        child
    };
    let ws = format!("ws://127.0.0.1:{port}");
    let http = format!("http://127.0.0.1:{port}/announce");
    let mut serve = start_serve();
    let total = 6 * 1024 * 1024;
    let data = content(total, 51);
    // A browser that reconnects to a lost WebSocket tracker within a second (the default,
    // bittorrent-tracker's, waits 10 s plus up to 5 min).
    let browser = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(1024 * 1024),
        signal: Some(webtorrent::core::signal::Config {
            reconnect_minimum: Duration::from_millis(500),
            reconnect_maximum: Duration::from_secs(1),
            reconnect_variance: Duration::from_millis(1),
            ..Default::default()
        }),
        ..browser_options()
    })
    .await
    .unwrap();
    let t = browser
        .seed(
            "restart.bin".into(),
            Bytes::from(data.clone()),
            Some(vec![ws]),
        )
        .await
        .unwrap();
    let desktop = WebTorrent::new(tcp_only_options()).await.unwrap();
    let d = desktop
        .add(common::magnet(&hex::encode(t.info_hash()), &[&http]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while d.progress() < 0.3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the desktop client got nothing through serve"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve.kill().expect("SIGKILL serve");
    let _ = serve.wait();
    let sent_before = t.uploaded();
    let mut serve = start_serve();
    let done = tokio::time::timeout(Duration::from_secs(120), d.wait_done()).await;
    let _ = serve.kill();
    let _ = serve.wait();
    done.expect("not finished after the restart").unwrap();
    assert_eq!(sha256_hex(&d.bytes().await.unwrap()), sha256_hex(&data));
    let sent = t.uploaded();
    assert!(
        sent <= total as u64 + total as u64 / 5,
        "the seeder sent {sent} bytes for {total} ({sent_before} before the restart)"
    );
    desktop.destroy().await.unwrap();
    browser.destroy().await.unwrap();
}
