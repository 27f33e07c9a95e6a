//! `wss://` WebSocket trackers: a TLS front (self-signed certificate, trusted through
//! `SSL_CERT_FILE`) before the npm `bittorrent-tracker`; two native clients meet through it
//! and move a torrent over WebRTC. WebRTC opens UDP sockets, so the test is `#[ignore]`d in a
//! plain `cargo test`; `tests/run.sh` runs it inside a loopback-only network namespace.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{content, download_magnet, magnet, sha256_hex, webrtc_only_options, Tracker};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use webtorrent::{AddOptions, Event, TorrentSource, WebTorrent};

/// Terminates TLS for `localhost`/`127.0.0.1` and forwards the plain bytes to `backend`.
/// Listens on every loopback address so that a name the certificate lacks can be tried.
async fn tls_front(backend: SocketAddr, dir: &std::path::Path) -> (u16, std::path::PathBuf) {
    let key =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, key.cert.pem()).expect("write certificate");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns and the npm harness (tests/run.sh)"]
async fn peers_meet_through_a_wss_tracker() {
    let tracker = Tracker::start();
    let dir = tempfile::tempdir().unwrap();
    let backend: SocketAddr = format!("127.0.0.1:{}", tracker.port).parse().unwrap();
    let (port, ca) = tls_front(backend, dir.path()).await;
    // rustls-native-certs reads the trusted roots from here; nothing else in this test
    // binary runs at the same time.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let wss = format!("wss://localhost:{port}");

    // The seeder signals only through the TLS front, the leecher only in plain text: the
    // offers and answers between them cross the wss:// connection.
    let data = content(3 * 1024 * 1024 + 517, 91);
    let seeder = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let t = seeder
        .seed(
            "secure.bin".to_string(),
            Bytes::from(data.clone()),
            Some(vec![wss.clone()]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let info_hash = hex::encode(t.info_hash());
    let d = download_magnet(
        &leecher,
        &info_hash,
        &[&tracker.ws],
        Duration::from_secs(90),
        "download through the wss:// tracker",
    )
    .await;
    assert_eq!(sha256_hex(&d.bytes().await.unwrap()), sha256_hex(&data));

    // A name the certificate does not cover: the announce fails with a clear error.
    let other = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let wrong = format!("wss://127.0.0.2:{port}");
    let o = other
        .add_with(
            TorrentSource::Magnet(magnet(&info_hash, &[&wrong])),
            AddOptions::default(),
        )
        .await
        .unwrap();
    let mut events = o.subscribe();
    let error = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await {
                Ok(Event::TrackerError { url, error }) if url == wrong => return error,
                Ok(_) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("the bad certificate is reported");
    assert!(
        error.to_lowercase().contains("certificate"),
        "unexpected error: {error}"
    );
    other.destroy().await.unwrap();
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}

/// A WebSocket tracker that completes the handshake and then stalls: it never reads another
/// frame and never replies. Returns its URL and how many connections it took.
async fn stalled_tracker() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Hold the socket open, unread, for longer than the test runs.
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    drop(ws);
                }
            });
        }
    });
    (format!("ws://127.0.0.1:{port}"), accepted)
}

/// One tracker that never answers must not hold up the torrents that also use a working one:
/// the download goes ahead through the working tracker, and both clients shut down within
/// their bounded `stopped` wait instead of waiting on the stalled socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a loopback-only netns (tests/run.sh)"]
async fn a_stalled_websocket_tracker_holds_up_neither_the_swarm_nor_shutdown() {
    let (stalled, accepted) = stalled_tracker().await;
    let server = webtorrent::server::Server::bind(webtorrent::server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..webtorrent::server::ServerConfig::default()
    })
    .await
    .expect("tracker starts");
    let healthy = server.ws_url();

    let data = content(2 * 1024 * 1024 + 33, 17);
    let seeder = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let t = seeder
        .seed(
            "stalled.bin".to_string(),
            Bytes::from(data.clone()),
            Some(vec![stalled.clone(), healthy.clone()]),
        )
        .await
        .unwrap();
    let leecher = WebTorrent::new(webrtc_only_options()).await.unwrap();
    let d = download_magnet(
        &leecher,
        &hex::encode(t.info_hash()),
        &[&stalled, &healthy],
        Duration::from_secs(90),
        "download next to a stalled tracker",
    )
    .await;
    assert_eq!(sha256_hex(&d.bytes().await.unwrap()), sha256_hex(&data));
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "both clients reached the stalled tracker"
    );
    // `stopped` waits at most the announce config's stop_timeout (5 s by default).
    for (who, client) in [("leecher", leecher), ("seeder", seeder)] {
        tokio::time::timeout(Duration::from_secs(30), client.destroy())
            .await
            .unwrap_or_else(|_| panic!("the {who} did not shut down"))
            .unwrap();
    }
    server.shutdown().await;
}
