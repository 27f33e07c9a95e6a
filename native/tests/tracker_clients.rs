//! The HTTP and UDP tracker clients against small test doubles on the loopback interface.
//!
//! The doubles speak through the core's codecs (a tracker's side of them) and record what they
//! receive, so the tests check both directions: what the client sends and how it reads replies.
//! A last test talks to the real bittorrent-tracker when the interop harness is installed.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use webtorrent::tracker::{
    AnnounceParams, ScrapeStats, TrackerClient, TrackerClientConfig, TrackerError,
};
use webtorrent_core::tracker::http::encode_failure;
use webtorrent_core::tracker::udp::{self, Request, Response};
use webtorrent_core::tracker::{
    AddressFamily, AnnounceRequest, AnnounceResponse, Event, Peer, PeerEncoding, ScrapeFile,
    ScrapeRequest, ScrapeResponse,
};
use webtorrent_core::{Id20, InfoHash};

// ---------------------------------------------------------------------------------------------
// Helpers

fn config() -> TrackerClientConfig {
    TrackerClientConfig {
        http_timeout: Duration::from_secs(5),
        udp_base_timeout: Duration::from_millis(200),
        udp_max_retries: 2,
        max_response_bytes: 64 * 1024,
        bind_v4: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        ..TrackerClientConfig::default()
    }
}

fn client() -> TrackerClient {
    TrackerClient::new(config()).expect("client")
}

/// An info hash with bytes that need escaping: NUL, space, `+`, `~`, `%`, 0xFF, `&`, `=`.
fn tricky_hash() -> InfoHash {
    Id20([
        0x00, b' ', b'+', b'~', b'%', 0xff, b'&', b'=', b'a', b'Z', b'0', b'-', b'.', b'_', 0x80,
        0x7f, b'/', b'?', b'#', 0x12,
    ])
}

fn hash(n: u8) -> InfoHash {
    Id20([n; 20])
}

fn params(info_hash: InfoHash) -> AnnounceParams {
    AnnounceParams {
        info_hash,
        peer_id: Id20(*b"-WR0001-\x01\x02 abc~+/%\xfe\xff"),
        port: 6881,
        uploaded: 1,
        downloaded: 2,
        left: 12_345,
        event: Some(Event::Started),
        numwant: Some(25),
        key: 0xDEAD_BEEF,
        tracker_id: Some(b"prev id".to_vec()),
    }
}

/// RFC 3986 percent-encoding, written out independently of the core's encoder.
fn pct(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

// ---------------------------------------------------------------------------------------------
// HTTP tracker double

/// How the HTTP double answers one request.
enum HttpReply {
    /// A status and a body with a correct `Content-Length`.
    Full(u16, Vec<u8>),
    /// `200` and this body without `Content-Length`, ended by closing the connection.
    Unframed(Vec<u8>),
    /// `200` claiming a `Content-Length` of this many bytes, then nothing.
    ClaimsLength(u64),
    /// Never answers.
    Hang,
}

type HttpHandler = Arc<dyn Fn(&str, &str) -> HttpReply + Send + Sync>;

/// A one-route-per-closure HTTP/1.1 server that records every request target.
struct HttpTracker {
    addr: SocketAddr,
    /// `(path, query)` of each request, in arrival order.
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl HttpTracker {
    async fn start(handler: impl Fn(&str, &str) -> HttpReply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: HttpHandler = Arc::new(handler);
        let log = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_http(stream, Arc::clone(&handler), Arc::clone(&log)));
            }
        });
        HttpTracker { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve_http(
    mut stream: TcpStream,
    handler: HttpHandler,
    log: Arc<Mutex<Vec<(String, String)>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        assert!(head.len() < 64 * 1024, "request head too large");
    }
    let head = String::from_utf8(head).expect("ASCII request head");
    let target = head.split(' ').nth(1).expect("request target").to_string();
    assert!(head.starts_with("GET "), "{head}");
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    log.lock()
        .unwrap()
        .push((path.to_string(), query.to_string()));
    let reply = handler(path, query);
    let bytes = match reply {
        HttpReply::Full(status, body) => {
            let mut out = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            out
        }
        HttpReply::Unframed(body) => {
            let mut out = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            out.extend_from_slice(&body);
            out
        }
        HttpReply::ClaimsLength(len) => {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes()
        }
        HttpReply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
    };
    // The client may hang up early (oversized bodies); that is fine.
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
    // Hold the connection open briefly so a refusing client sees the data, not a reset.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn announce_body(peers: &[&str]) -> Vec<u8> {
    AnnounceResponse {
        interval: Some(1800),
        min_interval: Some(900),
        warning_message: Some("careful".into()),
        tracker_id: Some(b"tid-1".to_vec()),
        complete: Some(5),
        incomplete: Some(7),
        external_ip: Some("203.0.113.9".parse().unwrap()),
        peers: peers.iter().map(|p| Peer::from(addr(p))).collect(),
    }
    .encode(PeerEncoding::Compact)
}

// ---------------------------------------------------------------------------------------------
// HTTP tests

#[tokio::test]
async fn http_announce_sends_the_right_query_and_parses_compact_v4_and_v6_peers() {
    let tracker = HttpTracker::start(|path, _| {
        assert_eq!(path, "/announce");
        HttpReply::Full(
            200,
            announce_body(&[
                "10.0.0.1:6881",
                "10.0.0.2:51413",
                "10.0.0.1:6881",
                "[2001:db8::1]:6882",
                "[::ffff:10.0.0.2]:51413",
                "[2001:db8::2]:0",
            ]),
        )
    })
    .await;
    let p = params(tricky_hash());
    let out = client()
        .announce(&tracker.url("/announce?passkey=s3cret"), &p)
        .await
        .expect("announce");

    assert_eq!(out.interval, Duration::from_secs(1800));
    assert_eq!(out.min_interval, Some(Duration::from_secs(900)));
    assert_eq!((out.complete, out.incomplete), (Some(5), Some(7)));
    assert_eq!(out.tracker_id.as_deref(), Some(&b"tid-1"[..]));
    assert_eq!(out.warning.as_deref(), Some("careful"));
    assert_eq!(out.external_ip, Some("203.0.113.9".parse().unwrap()));
    // Duplicates (also the IPv4-mapped one) and port 0 are gone; v4 first, then v6.
    assert_eq!(
        out.peers,
        vec![
            addr("10.0.0.1:6881"),
            addr("10.0.0.2:51413"),
            addr("[2001:db8::1]:6882")
        ]
    );
    assert_eq!(out.to_reply().peers_count, 3);

    let requests = tracker.requests();
    assert_eq!(requests.len(), 1);
    let query = &requests[0].1;
    // The announce URL's own query comes first and is kept.
    assert!(query.starts_with("passkey=s3cret&"), "{query}");
    let params: Vec<&str> = query.split('&').collect();
    for want in [
        format!("info_hash={}", pct(p.info_hash.as_bytes())),
        format!("peer_id={}", pct(p.peer_id.as_bytes())),
        "port=6881".to_string(),
        "uploaded=1".to_string(),
        "downloaded=2".to_string(),
        "left=12345".to_string(),
        "event=started".to_string(),
        "compact=1".to_string(),
        "numwant=25".to_string(),
        "key=DEADBEEF".to_string(),
        "trackerid=prev%20id".to_string(),
    ] {
        assert!(params.contains(&want.as_str()), "{want} missing in {query}");
    }
    // And a tracker reading it gets every value back.
    let req = AnnounceRequest::from_query(query).expect("tracker-side parse");
    assert_eq!(req.info_hash, p.info_hash);
    assert_eq!(req.peer_id, p.peer_id);
    assert_eq!(req.event, Some(Event::Started));
    assert!(req.compact);
}

#[tokio::test]
async fn http_regular_announce_has_no_event_and_missing_interval_falls_back() {
    let tracker = HttpTracker::start(|_, _| HttpReply::Full(200, b"d5:peers0:e".to_vec())).await;
    let mut p = params(hash(1));
    p.event = None;
    p.numwant = None;
    p.tracker_id = None;
    let out = client()
        .announce(&tracker.url("/announce"), &p)
        .await
        .expect("announce");
    assert_eq!(out.interval, webtorrent::tracker::DEFAULT_INTERVAL);
    assert!(out.peers.is_empty());
    let query = &tracker.requests()[0].1;
    assert!(!query.contains("event="), "{query}");
    assert!(!query.contains("numwant="), "{query}");
    assert!(!query.contains("trackerid="), "{query}");
}

#[tokio::test]
async fn http_failure_reason_is_surfaced() {
    let tracker =
        HttpTracker::start(|_, _| HttpReply::Full(200, encode_failure("unregistered torrent")))
            .await;
    let err = client()
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .unwrap_err();
    assert_eq!(err, TrackerError::Failure("unregistered torrent".into()));
}

#[tokio::test]
async fn http_non_2xx_status_is_an_http_error() {
    for status in [404u16, 503, 302] {
        let tracker = HttpTracker::start(move |_, _| {
            HttpReply::Full(status, encode_failure("should not be read"))
        })
        .await;
        let err = client()
            .announce(&tracker.url("/announce"), &params(hash(1)))
            .await
            .unwrap_err();
        assert_eq!(err, TrackerError::Http(status));
    }
}

#[tokio::test]
async fn http_garbage_body_is_a_protocol_error() {
    let tracker =
        HttpTracker::start(|_, _| HttpReply::Full(200, b"<html>oops</html>".to_vec())).await;
    let err = client()
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, TrackerError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn http_oversized_bodies_are_refused() {
    // Declared too large: refused before reading.
    let tracker = HttpTracker::start(|_, _| HttpReply::ClaimsLength(10 * 1024 * 1024)).await;
    let err = client()
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, TrackerError::Protocol(_)), "{err:?}");

    // Not declared: the stream is cut at the limit (64 KiB here) and refused.
    let tracker = HttpTracker::start(|_, _| {
        let mut body = b"d8:intervali60e5:peers600000:".to_vec();
        body.extend(std::iter::repeat_n(1u8, 600_000));
        body.push(b'e');
        HttpReply::Unframed(body)
    })
    .await;
    let err = client()
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, TrackerError::Protocol(_)), "{err:?}");

    // Just under the limit (64 KiB), unframed, is read in full.
    let tracker = HttpTracker::start(|_, _| {
        let n = 60_000;
        let mut body = format!("d8:intervali60e3:pad{n}:").into_bytes();
        body.extend(std::iter::repeat_n(b'x', n));
        body.extend_from_slice(b"5:peers6:\x0a\x00\x00\x01\x1a\xe1e");
        assert!(body.len() < 64 * 1024);
        HttpReply::Unframed(body)
    })
    .await;
    let out = client()
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .expect("body under the limit");
    assert_eq!(out.peers, vec![addr("10.0.0.1:6881")]);
}

/// On tokio's paused clock: the default 15 s limit passes in no real time.
#[tokio::test(start_paused = true)]
async fn http_timeout_is_reported() {
    let tracker = HttpTracker::start(|_, _| HttpReply::Hang).await;
    let client = TrackerClient::new(TrackerClientConfig {
        http_timeout: TrackerClientConfig::default().http_timeout,
        ..config()
    })
    .expect("client");
    let started = tokio::time::Instant::now();
    let err = client
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .unwrap_err();
    assert_eq!(err, TrackerError::Timeout);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(16),
        "{took:?}"
    );
}

#[tokio::test]
async fn http_connection_refused_is_a_network_error_without_the_passkey() {
    let port = {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client()
        .announce(
            &format!("http://127.0.0.1:{port}/announce?passkey=TOPSECRET"),
            &params(hash(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TrackerError::Network(_)), "{err:?}");
    assert!(!err.to_string().contains("TOPSECRET"), "{err}");
}

#[tokio::test]
async fn http_scrape_uses_the_scrape_url_and_keeps_the_order_asked() {
    let tracker = HttpTracker::start(|path, query| {
        assert_eq!(path, "/x/scrape.php");
        let req = ScrapeRequest::from_query(query).expect("scrape query");
        let mut resp = ScrapeResponse::default();
        for h in req.info_hashes {
            if h != hash(3) {
                resp.files.insert(
                    h,
                    ScrapeFile {
                        complete: u32::from(h.0[0]),
                        downloaded: 100 + u32::from(h.0[0]),
                        incomplete: 200 + u32::from(h.0[0]),
                        name: None,
                    },
                );
            }
        }
        HttpReply::Full(200, resp.encode())
    })
    .await;
    let got = client()
        .scrape(
            &tracker.url("/x/announce.php?pk=1"),
            &[hash(2), hash(3), hash(1)],
        )
        .await
        .expect("scrape");
    assert_eq!(
        got,
        vec![
            (
                hash(2),
                ScrapeStats {
                    complete: 2,
                    downloaded: 102,
                    incomplete: 202
                }
            ),
            (
                hash(1),
                ScrapeStats {
                    complete: 1,
                    downloaded: 101,
                    incomplete: 201
                }
            ),
        ]
    );
    let requests = tracker.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].1.starts_with("pk=1&info_hash="),
        "{:?}",
        requests[0]
    );
    assert_eq!(requests[0].1.matches("info_hash=").count(), 3);
}

#[tokio::test]
async fn http_scrape_failure_and_unsupported_url() {
    let tracker =
        HttpTracker::start(|_, _| HttpReply::Full(200, encode_failure("scrape disabled"))).await;
    let c = client();
    assert_eq!(
        c.scrape(&tracker.url("/announce"), &[hash(1)]).await,
        Err(TrackerError::Failure("scrape disabled".into()))
    );
    assert_eq!(
        c.scrape(&tracker.url("/tracker"), &[hash(1)]).await,
        Err(TrackerError::ScrapeUnsupported)
    );
    assert_eq!(c.scrape(&tracker.url("/announce"), &[]).await, Ok(vec![]));
    // Only the first scrape reached the tracker.
    assert_eq!(tracker.requests().len(), 1);
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_network_error() {
    // Exercises the rustls set-up: the handshake must fail cleanly, not panic for want of a
    // crypto provider.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            let _ = s.shutdown().await;
        }
    });
    let err = client()
        .announce(
            &format!("https://127.0.0.1:{port}/announce"),
            &params(hash(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TrackerError::Network(_)), "{err:?}");
}

#[test]
fn client_can_be_built_outside_a_runtime() {
    let c = TrackerClient::new(TrackerClientConfig::default()).expect("client");
    assert_eq!(c.config().udp_base_timeout, Duration::from_secs(4));
    assert!(format!("{c:?}").contains("udp_started: false"));
}

// ---------------------------------------------------------------------------------------------
// UDP tracker double

/// How the UDP double behaves.
#[derive(Clone, Default)]
struct UdpBehavior {
    /// Ignore the first this many datagrams.
    drop_first: usize,
    /// Ignore the first this many announce requests (connects are answered).
    drop_announces: usize,
    /// Answer announces with this error message.
    announce_error: Option<String>,
    /// Never answer.
    silent: bool,
    /// Before each real reply, send a forged one (right transaction id, wrong source port) and
    /// one with a wrong transaction id.
    forge: bool,
    /// Peers in every announce reply.
    peers: Vec<SocketAddr>,
    /// Also put `10.<hash[0]>.<hash[1]>.1:<port>` in announce replies, to check matching.
    echo_hash_peer: bool,
}

#[derive(Default)]
struct UdpLog {
    /// Every datagram that arrived, dropped or not.
    datagrams: usize,
    /// Decoded requests that were not dropped, with their source.
    requests: Vec<(SocketAddr, Request)>,
    /// Announce requests dropped by `drop_announces`.
    dropped_announces: Vec<udp::AnnounceRequest>,
    /// Connection ids handed out; clearing it simulates a tracker restart.
    issued: HashSet<u64>,
}

impl UdpLog {
    fn connects(&self) -> usize {
        self.requests
            .iter()
            .filter(|(_, r)| matches!(r, Request::Connect(_)))
            .count()
    }

    fn announces(&self) -> Vec<udp::AnnounceRequest> {
        self.requests
            .iter()
            .filter_map(|(_, r)| match r {
                Request::Announce(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }
}

struct UdpTracker {
    addr: SocketAddr,
    log: Arc<Mutex<UdpLog>>,
}

impl UdpTracker {
    async fn start(behavior: UdpBehavior) -> Self {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), behavior)
            .await
            .expect("bind UDP tracker")
    }

    async fn start_on(bind: SocketAddr, behavior: UdpBehavior) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(bind).await?;
        let forger = UdpSocket::bind(SocketAddr::new(bind.ip(), 0)).await?;
        let addr = socket.local_addr()?;
        let family = AddressFamily::of(&addr);
        let log = Arc::new(Mutex::new(UdpLog::default()));
        let task_log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let seen = {
                    let mut log = task_log.lock().unwrap();
                    log.datagrams += 1;
                    log.datagrams
                };
                if seen <= behavior.drop_first {
                    continue;
                }
                let req = Request::decode(&buf[..n]).expect("client sent a valid request");
                let known_connection = {
                    let mut log = task_log.lock().unwrap();
                    if let Request::Announce(a) = &req {
                        if log.dropped_announces.len() < behavior.drop_announces {
                            log.dropped_announces.push(a.clone());
                            continue;
                        }
                    }
                    log.requests.push((from, req.clone()));
                    req.connection_id()
                        .is_none_or(|id| log.issued.contains(&id))
                };
                if behavior.silent {
                    continue;
                }
                let tid = req.transaction_id();
                let reply = match &req {
                    Request::Connect(_) => {
                        let id = rand::random::<u64>();
                        task_log.lock().unwrap().issued.insert(id);
                        Response::Connect(udp::ConnectResponse {
                            transaction_id: tid,
                            connection_id: id,
                        })
                    }
                    Request::Announce(a) => {
                        if !known_connection {
                            continue; // as opentracker: unknown connection ids are ignored
                        }
                        if let Some(message) = &behavior.announce_error {
                            Response::Error(udp::ErrorResponse {
                                transaction_id: tid,
                                message: message.clone(),
                            })
                        } else {
                            let mut peers = behavior.peers.clone();
                            if behavior.echo_hash_peer {
                                let h = a.info_hash.0;
                                peers.push(SocketAddr::from(([10, h[0], h[1], 1], a.port)));
                            }
                            Response::Announce(udp::AnnounceResponse {
                                transaction_id: tid,
                                interval: 1234,
                                leechers: 3,
                                seeders: 4,
                                peers,
                            })
                        }
                    }
                    Request::Scrape(s) => {
                        if !known_connection {
                            continue;
                        }
                        Response::Scrape(udp::ScrapeResponse {
                            transaction_id: tid,
                            stats: s
                                .info_hashes
                                .iter()
                                .map(|h| udp::ScrapeStats {
                                    seeders: u32::from(h.0[0]),
                                    completed: 10 * u32::from(h.0[0]),
                                    leechers: 100 + u32::from(h.0[0]),
                                })
                                .collect(),
                        })
                    }
                };
                if behavior.forge {
                    let forged = Response::Error(udp::ErrorResponse {
                        transaction_id: tid,
                        message: "forged".into(),
                    });
                    let _ = forger.send_to(&forged.encode(family), from).await;
                    let stray = Response::Error(udp::ErrorResponse {
                        transaction_id: tid.wrapping_add(1),
                        message: "stray".into(),
                    });
                    let _ = socket.send_to(&stray.encode(family), from).await;
                    let _ = socket.send_to(b"junk", from).await;
                }
                let _ = socket.send_to(&reply.encode(family), from).await;
            }
        });
        Ok(UdpTracker { addr, log })
    }

    fn url(&self, rest: &str) -> String {
        format!("udp://{}{rest}", self.addr)
    }
}

// ---------------------------------------------------------------------------------------------
// UDP tests

#[tokio::test]
async fn udp_announce_sends_every_field_and_parses_the_reply() {
    let tracker = UdpTracker::start(UdpBehavior {
        peers: vec![
            addr("10.0.0.1:6881"),
            addr("10.0.0.2:6882"),
            addr("10.0.0.1:6881"),
        ],
        ..UdpBehavior::default()
    })
    .await;
    let p = params(tricky_hash());
    let out = client()
        .announce(&tracker.url("/announce?passkey=s3cret#frag"), &p)
        .await
        .expect("announce");
    assert_eq!(out.interval, Duration::from_secs(1234));
    assert_eq!((out.complete, out.incomplete), (Some(4), Some(3)));
    assert_eq!(out.min_interval, None);
    assert_eq!(
        out.peers,
        vec![addr("10.0.0.1:6881"), addr("10.0.0.2:6882")]
    );

    let log = tracker.log.lock().unwrap();
    assert_eq!(log.connects(), 1);
    let a = &log.announces()[0];
    assert_eq!(a.info_hash, p.info_hash);
    assert_eq!(a.peer_id, p.peer_id);
    assert_eq!((a.uploaded, a.downloaded, a.left), (1, 2, 12_345));
    assert_eq!(a.event, Some(Event::Started));
    assert_eq!(a.key, 0xDEAD_BEEF);
    assert_eq!(a.num_want, Some(25));
    assert_eq!(a.port, 6881);
    assert_eq!(a.ip, None);
    // BEP 41: path and query go along, the fragment does not.
    assert_eq!(a.url_data, b"/announce?passkey=s3cret");
}

#[tokio::test]
async fn udp_connection_id_is_reused_within_a_minute() {
    let tracker = UdpTracker::start(UdpBehavior::default()).await;
    let c = client();
    let url = tracker.url("");
    let mut p = params(hash(1));
    c.announce(&url, &p).await.expect("first announce");
    p.event = None;
    c.announce(&url, &p).await.expect("second announce");
    c.scrape(&url, &[hash(9)]).await.expect("scrape");
    let log = tracker.log.lock().unwrap();
    assert_eq!(log.connects(), 1, "second request must not connect again");
    let announces = log.announces();
    assert_eq!(announces.len(), 2);
    assert_eq!(announces[0].connection_id, announces[1].connection_id);
    assert_eq!(announces[1].event, None);
    assert!(announces[0].url_data.is_empty());
}

#[tokio::test]
async fn udp_lost_packets_are_retransmitted() {
    // The first two connects vanish: the third (after 200 + 400 ms) gets through.
    let tracker = UdpTracker::start(UdpBehavior {
        drop_first: 2,
        ..UdpBehavior::default()
    })
    .await;
    let started = Instant::now();
    let out = client()
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .expect("announce after retransmissions");
    assert_eq!(out.interval, Duration::from_secs(1234));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let log = tracker.log.lock().unwrap();
    assert_eq!(log.datagrams, 4);
    assert_eq!(log.connects(), 1);
    assert_eq!(log.announces().len(), 1);
}

#[tokio::test]
async fn udp_lost_announce_is_retransmitted_with_the_same_transaction() {
    let tracker = UdpTracker::start(UdpBehavior {
        drop_announces: 1,
        ..UdpBehavior::default()
    })
    .await;
    let out = client().announce(&tracker.url(""), &params(hash(1))).await;
    assert!(out.is_ok(), "{out:?}");
    let log = tracker.log.lock().unwrap();
    assert_eq!(log.connects(), 1, "a fresh connection id is kept");
    let (lost, answered) = (&log.dropped_announces[0], &log.announces()[0]);
    assert_eq!(lost.transaction_id, answered.transaction_id);
    assert_eq!(lost.connection_id, answered.connection_id);
}

#[tokio::test]
async fn udp_cached_connection_is_dropped_when_the_tracker_forgot_it() {
    let tracker = UdpTracker::start(UdpBehavior::default()).await;
    let c = client();
    c.announce(&tracker.url(""), &params(hash(1)))
        .await
        .expect("first announce");
    // The tracker restarts: the cached id is now unknown and announces with it are ignored.
    tracker.log.lock().unwrap().issued.clear();
    c.announce(&tracker.url(""), &params(hash(1)))
        .await
        .expect("announce after reconnecting");
    let log = tracker.log.lock().unwrap();
    assert_eq!(log.connects(), 2);
    assert_eq!(log.announces().len(), 3);
}

/// On tokio's paused clock, with the default schedule: 4 + 8 + 16 s.
#[tokio::test(start_paused = true)]
async fn udp_silence_is_a_timeout_after_the_retransmissions() {
    let tracker = UdpTracker::start(UdpBehavior {
        silent: true,
        ..UdpBehavior::default()
    })
    .await;
    let defaults = TrackerClientConfig::default();
    let client = TrackerClient::new(TrackerClientConfig {
        udp_base_timeout: defaults.udp_base_timeout,
        udp_max_retries: defaults.udp_max_retries,
        ..config()
    })
    .expect("client");
    let started = tokio::time::Instant::now();
    let err = client
        .announce(&tracker.url(""), &params(hash(1)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, TrackerError::Timeout);
    assert!(
        took >= Duration::from_secs(28) && took < Duration::from_secs(29),
        "{took:?}"
    );
    assert_eq!(tracker.log.lock().unwrap().datagrams, 3);
}

#[tokio::test]
async fn udp_error_reply_is_a_failure_and_forgets_the_connection() {
    let tracker = UdpTracker::start(UdpBehavior {
        announce_error: Some("torrent not registered".into()),
        ..UdpBehavior::default()
    })
    .await;
    let c = client();
    for _ in 0..2 {
        let err = c
            .announce(&tracker.url(""), &params(hash(1)))
            .await
            .unwrap_err();
        assert_eq!(err, TrackerError::Failure("torrent not registered".into()));
    }
    // After an error the connection id is not trusted any more.
    assert_eq!(tracker.log.lock().unwrap().connects(), 2);
}

#[tokio::test]
async fn udp_forged_and_stray_packets_are_ignored() {
    let tracker = UdpTracker::start(UdpBehavior {
        forge: true,
        peers: vec![addr("10.9.9.9:9")],
        ..UdpBehavior::default()
    })
    .await;
    let out = client()
        .announce(&tracker.url(""), &params(hash(1)))
        .await
        .expect("announce despite forged packets");
    assert_eq!(out.peers, vec![addr("10.9.9.9:9")]);
}

#[tokio::test]
async fn udp_concurrent_requests_are_matched_by_transaction_id() {
    let a = UdpTracker::start(UdpBehavior {
        echo_hash_peer: true,
        ..UdpBehavior::default()
    })
    .await;
    let b = UdpTracker::start(UdpBehavior {
        echo_hash_peer: true,
        ..UdpBehavior::default()
    })
    .await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..40u8 {
        let c = c.clone();
        let url = if i % 2 == 0 { a.url("") } else { b.url("") };
        tasks.push(tokio::spawn(async move {
            let mut p = params(Id20([i; 20]));
            p.port = 1000 + u16::from(i);
            let out = c.announce(&url, &p).await.expect("announce");
            assert_eq!(
                out.peers,
                vec![SocketAddr::from(([10, i, i, 1], 1000 + u16::from(i)))]
            );
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::test]
async fn udp_scrape_maps_the_counters_in_order() {
    let tracker = UdpTracker::start(UdpBehavior::default()).await;
    let got = client()
        .scrape(&tracker.url("/announce"), &[hash(3), hash(1)])
        .await
        .expect("scrape");
    assert_eq!(
        got,
        vec![
            (
                hash(3),
                ScrapeStats {
                    complete: 3,
                    downloaded: 30,
                    incomplete: 103
                }
            ),
            (
                hash(1),
                ScrapeStats {
                    complete: 1,
                    downloaded: 10,
                    incomplete: 101
                }
            ),
        ]
    );
    // More hashes than fit in one packet are split over several requests.
    let many: Vec<InfoHash> = (0..100u8).map(hash).collect();
    let got = client()
        .scrape(&tracker.url(""), &many)
        .await
        .expect("big scrape");
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|(h, s)| s.complete == u32::from(h.0[0])));
}

#[tokio::test]
async fn udp_over_ipv6_uses_18_byte_peers() {
    let tracker = match UdpTracker::start_on(
        SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
        UdpBehavior {
            peers: vec![addr("[2001:db8::7]:7000"), addr("[::1]:7001")],
            ..UdpBehavior::default()
        },
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("skipping: no IPv6 loopback ({e})");
            return;
        }
    };
    let out = client()
        .announce(&tracker.url("/announce"), &params(hash(1)))
        .await
        .expect("announce over IPv6");
    assert_eq!(
        out.peers,
        vec![addr("[2001:db8::7]:7000"), addr("[::1]:7001")]
    );
}

#[tokio::test]
async fn udp_hostnames_are_resolved() {
    let tracker = UdpTracker::start(UdpBehavior::default()).await;
    let url = format!("udp://localhost:{}/announce", tracker.addr.port());
    // `localhost` may resolve to ::1 first, where nothing listens; accept either outcome but
    // require a plain answer when it resolves to 127.0.0.1 first.
    let first = tokio::net::lookup_host(("localhost", tracker.addr.port()))
        .await
        .ok()
        .and_then(|mut it| it.next());
    let c = TrackerClient::new(TrackerClientConfig {
        udp_base_timeout: Duration::from_millis(100),
        udp_max_retries: 0,
        ..config()
    })
    .expect("client");
    let result = c.announce(&url, &params(hash(1))).await;
    if first.is_some_and(|a| a.is_ipv4()) {
        result.expect("announce by name");
    }
}

/// Waits (up to 3 s) until `local` can be bound again, i.e. our socket on it is closed.
async fn wait_until_released(local: SocketAddr, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match UdpSocket::bind(local).await {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => {
                panic!("UDP socket {local} still bound after {after}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test]
async fn udp_socket_is_released_when_the_last_clone_is_dropped() {
    let tracker = UdpTracker::start(UdpBehavior::default()).await;
    let c = client();
    let c2 = c.clone();
    c.announce(&tracker.url(""), &params(hash(1)))
        .await
        .expect("announce");
    let local = tracker.log.lock().unwrap().requests[0].0;
    drop(c);
    // Still in use by the clone.
    c2.announce(&tracker.url(""), &params(hash(1)))
        .await
        .expect("announce through the clone");
    assert!(
        UdpSocket::bind(local).await.is_err(),
        "socket closed too early"
    );
    drop(c2);
    wait_until_released(local, "the client was dropped").await;
}

#[tokio::test]
async fn close_releases_the_udp_socket_while_clones_live() {
    let tracker = UdpTracker::start(UdpBehavior::default()).await;
    let c = client();
    let c2 = c.clone();
    c.announce(&tracker.url(""), &params(hash(1)))
        .await
        .expect("announce");
    let local = tracker.log.lock().unwrap().requests[0].0;
    c.close().await;
    wait_until_released(local, "close()").await;
    let err = c2
        .announce(&tracker.url(""), &params(hash(1)))
        .await
        .expect_err("closed");
    assert!(err.to_string().contains("closed"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// URLs

#[tokio::test]
async fn unsupported_and_invalid_urls() {
    let c = client();
    let p = params(hash(1));
    assert_eq!(
        c.announce("wss://tracker.example/announce", &p).await,
        Err(TrackerError::UnsupportedScheme("wss".into()))
    );
    assert_eq!(
        c.announce("gopher://tracker.example/", &p).await,
        Err(TrackerError::UnsupportedScheme("gopher".into()))
    );
    for bad in [
        "udp://127.0.0.1",
        "udp://127.0.0.1:0",
        "udp://:6969",
        "http://",
        "tracker.example/announce",
    ] {
        let err = c.announce(bad, &p).await.unwrap_err();
        assert!(matches!(err, TrackerError::InvalidUrl(_)), "{bad}: {err:?}");
    }
    assert!(TrackerClient::supports("http://t.example/announce"));
    assert!(TrackerClient::supports("HTTPS://t.example/announce"));
    assert!(TrackerClient::supports("udp://t.example:6969"));
    assert!(!TrackerClient::supports("ws://t.example"));
    assert!(!TrackerClient::supports("wss://t.example"));
    assert!(!TrackerClient::supports("magnet:?xt=urn:btih:x"));
}

// ---------------------------------------------------------------------------------------------
// The real bittorrent-tracker

/// Announces over HTTP and UDP to bittorrent-tracker started by the interop harness, when it is
/// installed (`tests/interop/node_modules` and `tests/interop/tracker.mjs`).
#[tokio::test]
async fn interop_bittorrent_tracker() {
    let interop = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop");
    let script = interop.join("tracker.mjs");
    if !interop.join("node_modules/bittorrent-tracker").is_dir() || !script.is_file() {
        eprintln!(
            "skipping interop_bittorrent_tracker: {} or its node_modules is missing",
            script.display()
        );
        return;
    }
    let Some(mut harness) = interop_harness::start(&script).await else {
        eprintln!("skipping interop_bittorrent_tracker: the harness did not start");
        return;
    };
    let port = harness.port;
    let c = client();
    let mut urls = vec![
        format!("http://127.0.0.1:{port}/announce"),
        format!("udp://127.0.0.1:{port}"),
    ];
    if harness.udp6 {
        urls.push(format!("udp://[::1]:{port}"));
    }
    for (i, url) in urls.iter().enumerate() {
        // A byte >= 0x80 exercises bittorrent-tracker's mangled HTTP scrape keys.
        let mut hash_bytes: [u8; 20] = rand::random();
        hash_bytes[0] = 0xff;
        let info_hash = Id20(hash_bytes);
        let mut p = params(info_hash);
        p.port = 40_000 + u16::try_from(i).unwrap();
        p.tracker_id = None;
        let out = c
            .announce(url, &p)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(out.interval, Duration::from_secs(600), "{url}: {out:?}");
        assert_eq!((out.complete, out.incomplete), (Some(0), Some(1)), "{url}");
        if url.contains("[::1]") {
            // bittorrent-tracker 11.2.3 puts IPv6 peers in `peers6`, which its UDP reply never
            // carries (it writes only the IPv4 list, 6-byte entries even to IPv6 clients): our
            // own [::1] peer cannot come back. The empty list still has to decode.
            assert!(out.peers.is_empty(), "{url}: {:?}", out.peers);
        } else {
            let me = SocketAddr::from((Ipv4Addr::LOCALHOST, p.port));
            assert!(
                out.peers.contains(&me),
                "{url}: {me} not in {:?}",
                out.peers
            );
        }
        let scraped = c
            .scrape(url, &[info_hash])
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            scraped,
            vec![(
                info_hash,
                ScrapeStats {
                    complete: 0,
                    downloaded: 0,
                    incomplete: 1
                }
            )],
            "{url}"
        );
        p.event = Some(Event::Stopped);
        c.announce(url, &p)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    harness.stop().await;
}

mod interop_harness {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, ChildStdin, Command, Stdio};
    use std::time::Duration;

    /// A running `node tracker.mjs`, killed on drop. It also stops by itself when our end of
    /// its stdin closes (`--exit-with-stdin`) or after a minute (`--lifetime`).
    pub struct Harness {
        child: Child,
        _stdin: Option<ChildStdin>,
        /// The port of every protocol.
        pub port: u16,
        /// Whether UDP is also served on `[::1]`.
        pub udp6: bool,
    }

    /// Starts the harness and waits for its `{"event":"ready","port":N,…}` line.
    pub async fn start(script: &Path) -> Option<Harness> {
        let mut child = Command::new("node")
            .arg(script)
            .args(["--quiet", "--exit-with-stdin", "--lifetime", "60"])
            .current_dir(script.parent()?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut harness = Harness {
            child,
            _stdin: stdin,
            port: 0,
            udp6: false,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stdout = stdout?;
        // Reads every line, so the harness never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ready) = ready(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(ready);
                    }
                }
            }
        });
        let (port, udp6) = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .ok()?
            .ok()?;
        harness.port = port;
        harness.udp6 = udp6;
        Some(harness)
    }

    impl Harness {
        /// Kills the harness and waits for it.
        pub async fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The port of a `{"event":"ready","port":N,…}` line, and whether it lists `udp6`.
    fn ready(line: &str) -> Option<(u16, bool)> {
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if !compact.contains("\"event\":\"ready\"") {
            return None;
        }
        let rest = compact.split_once("\"port\":")?.1;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some((digits.parse().ok()?, compact.contains("\"udp6\":\"udp://")))
    }
}
