//! The embedded tracker and page server (`webtorrent::server`, `webtorrent serve`):
//!
//! * the sans-IO swarm bookkeeping: events and counts, expiry, IPv4/IPv6, WebSocket peers kept
//!   apart from HTTP/UDP peers, the bounds, the `/stats` figures;
//! * over loopback: our HTTP and UDP tracker clients announcing and scraping, two WebSocket
//!   clients exchanging an offer and an answer through it, `/stats.json`, the page's files;
//! * `webtorrent serve FILE` seeding to our client;
//! * interop (ignored; `tests/netns.sh cargo test -p webtorrent --test server -- --ignored`):
//!   the npm webtorrent seeder and leecher using this server as their tracker.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use webtorrent::server::swarm::{
    http_numwant, AnnounceResult, ConnId, PeerAnnounce, SwarmSides, Tracker, TrackerConfig, WsSend,
    MAX_CHANGED,
};
use webtorrent::server::{Server, ServerConfig, Stats};
use webtorrent::tracker::{AnnounceParams, TrackerClient, TrackerClientConfig};
use webtorrent::{AddOptions, WebTorrent, WebTorrentOptions};
use webtorrent_core::tracker::ws::{
    self, AnnounceRequest as WsAnnounce, AnswerRequest, ClientMessage, Offer, SdpType,
    SessionDescription, TrackerMessage,
};
use webtorrent_core::tracker::{AnnounceResponse, Event, Peer};
use webtorrent_core::{Id20, InfoHash, PeerId, Time};

// ---------------------------------------------------------------------------------------------
// Helpers

fn ih(n: u8) -> InfoHash {
    Id20([n; 20])
}

/// A peer id with a client prefix (e.g. `-WW0208-`) and a distinguishing last byte.
fn pid(prefix: &[u8], n: u8) -> PeerId {
    let mut b = [b'a'; 20];
    b[..prefix.len()].copy_from_slice(prefix);
    b[19] = n;
    Id20(b)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn secs(s: u64) -> Time {
    Time::from_millis(s * 1000)
}

fn ann(
    h: InfoHash,
    peer: PeerId,
    at: &str,
    left: Option<u64>,
    event: Option<Event>,
) -> PeerAnnounce {
    PeerAnnounce {
        info_hash: h,
        peer_id: peer,
        addr: addr(at),
        left,
        event,
        numwant: 50,
    }
}

fn counts(r: &AnnounceResult) -> (u32, u32) {
    (r.complete, r.incomplete)
}

fn addrs(r: &AnnounceResult) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = r.peers.iter().map(|p| p.addr).collect();
    v.sort();
    v
}

fn sdp(kind: SdpType, text: &str) -> SessionDescription {
    SessionDescription {
        kind,
        sdp: text.to_string(),
    }
}

fn ws_announce(h: InfoHash, peer: PeerId, offers: Vec<Offer>, left: Option<u64>) -> ClientMessage {
    ClientMessage::Announce(WsAnnounce {
        info_hash: h,
        peer_id: peer,
        numwant: Some(offers.len() as u32),
        uploaded: Some(0),
        downloaded: Some(0),
        left,
        event: Some(Event::Started),
        offers,
        trackerid: None,
    })
}

fn offer(id: u8, text: &str) -> Offer {
    Offer {
        offer: sdp(SdpType::Offer, text),
        offer_id: Id20([id; 20]),
    }
}

fn to(sends: &[WsSend], conn: u64) -> Vec<&TrackerMessage> {
    sends
        .iter()
        .filter(|s| s.conn == ConnId(conn))
        .map(|s| &s.message)
        .collect()
}

async fn start(config: ServerConfig) -> Server {
    Server::bind(ServerConfig {
        listen: addr("127.0.0.1:0"),
        ..config
    })
    .await
    .expect("server starts")
}

fn tracker_client() -> TrackerClient {
    TrackerClient::new(TrackerClientConfig {
        http_timeout: Duration::from_secs(5),
        udp_base_timeout: Duration::from_millis(500),
        udp_max_retries: 2,
        bind_v4: Some(addr("127.0.0.1:0")),
        bind_v6: Some(addr("[::1]:0")),
        ..TrackerClientConfig::default()
    })
    .expect("tracker client")
}

/// A raw HTTP/1.1 request (`Connection: close`): status, lower-cased head, body.
async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
        .await
        .expect("reply in time")
        .expect("read");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, resp[split + 4..].to_vec())
}

async fn get(addr: SocketAddr, target: &str) -> (u16, String, Vec<u8>) {
    http(addr, "GET", target, "").await
}

fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn announce_query(h: InfoHash, peer: PeerId, port: u16, left: u64, extra: &str) -> String {
    format!(
        "/announce?info_hash={}&peer_id={}&port={port}&left={left}{extra}",
        pct(h.as_bytes()),
        pct(peer.as_bytes())
    )
}

async fn stats_json(addr: SocketAddr) -> Stats {
    let (status, head, body) = get(addr, "/stats.json").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    serde_json::from_slice(&body).expect("stats JSON")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects")
        .0
}

async fn ws_send(ws: &mut Ws, msg: &ClientMessage) {
    ws.send(Message::text(msg.to_json())).await.expect("send");
}

/// The next tracker message (pings skipped).
async fn ws_recv(ws: &mut Ws) -> TrackerMessage {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = m {
            return TrackerMessage::from_json(t.as_str()).expect("tracker JSON");
        }
    }
}

fn ipv6_loopback_works() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------------
// The swarm bookkeeping, sans IO

#[test]
fn events_move_peers_between_leechers_and_seeders() {
    let mut t = Tracker::new(TrackerConfig::default(), 1);
    let h = ih(1);
    let (a, b, c, d) = (
        pid(b"-WW0208-", 1),
        pid(b"-WW0208-", 2),
        pid(b"-WW0208-", 3),
        pid(b"-WW0208-", 4),
    );
    let r = t.announce(
        secs(0),
        &ann(h, a, "10.0.0.1:1", Some(100), Some(Event::Started)),
    );
    assert_eq!(counts(&r), (0, 1));
    // An HTTP/UDP announcer is given itself too, as bittorrent-tracker does.
    assert_eq!(addrs(&r), [addr("10.0.0.1:1")]);
    assert_eq!(r.peers[0].peer_id, Some(a));
    let r = t.announce(
        secs(1),
        &ann(h, b, "10.0.0.2:2", Some(0), Some(Event::Started)),
    );
    assert_eq!(counts(&r), (1, 1));
    assert_eq!(addrs(&r), [addr("10.0.0.1:1"), addr("10.0.0.2:2")]);
    // `completed` turns a leecher into a seeder, once.
    let r = t.announce(
        secs(2),
        &ann(h, a, "10.0.0.1:1", Some(0), Some(Event::Completed)),
    );
    assert_eq!(counts(&r), (2, 0));
    let r = t.announce(
        secs(3),
        &ann(h, a, "10.0.0.1:1", Some(0), Some(Event::Completed)),
    );
    assert_eq!(counts(&r), (2, 0));
    // A seeder never goes back to leeching; `started` from a known peer is an update.
    let r = t.announce(secs(4), &ann(h, a, "10.0.0.1:1", Some(50), None));
    assert_eq!(counts(&r), (2, 0));
    let r = t.announce(
        secs(5),
        &ann(h, b, "10.0.0.2:2", Some(0), Some(Event::Started)),
    );
    assert_eq!(counts(&r), (2, 0));
    // `stopped` from an unknown peer changes nothing; from a known one it leaves.
    let r = t.announce(
        secs(6),
        &ann(h, c, "10.0.0.3:3", Some(0), Some(Event::Stopped)),
    );
    assert_eq!(counts(&r), (2, 0));
    let r = t.announce(
        secs(7),
        &ann(h, b, "10.0.0.2:2", Some(0), Some(Event::Stopped)),
    );
    assert_eq!(counts(&r), (1, 0));
    assert_eq!(addrs(&r), [addr("10.0.0.1:1")]);
    // A regular announce, `paused` or `completed` from an unknown peer starts it.
    let r = t.announce(secs(8), &ann(h, c, "10.0.0.3:3", Some(5), None));
    assert_eq!(counts(&r), (1, 1));
    let r = t.announce(secs(9), &ann(h, d, "10.0.0.4:4", None, Some(Event::Paused)));
    assert_eq!(counts(&r), (1, 2));
    let r = t.announce(
        secs(10),
        &ann(h, b, "10.0.0.2:2", Some(7), Some(Event::Completed)),
    );
    assert_eq!(
        counts(&r),
        (1, 3),
        "`completed` from a newcomer counts what `left` says"
    );
    // A regular announce with left=0 completes a leecher.
    let r = t.announce(secs(11), &ann(h, c, "10.0.0.3:3", Some(0), None));
    assert_eq!(counts(&r), (2, 2));
    // HTTP/UDP peers are told apart by address: a new port is a new peer.
    let r = t.announce(secs(12), &ann(h, c, "10.0.0.3:4", Some(0), None));
    assert_eq!(counts(&r), (3, 2));
    assert_eq!(t.num_peers(), 5);
    assert_eq!(t.num_torrents(), 1);
    assert_eq!(t.counts(&h), Some((3, 2)));
    assert_eq!(t.counts(&ih(9)), None);
}

#[test]
fn peers_expire_twenty_minutes_after_their_last_announce() {
    let mut t = Tracker::new(TrackerConfig::default(), 2);
    let h = ih(1);
    t.announce(
        secs(0),
        &ann(h, pid(b"-WW0208-", 1), "10.0.0.1:1", Some(0), None),
    );
    t.announce(
        secs(10),
        &ann(h, pid(b"-WW0208-", 2), "10.0.0.2:1", Some(9), None),
    );
    t.ws_open(ConnId(7), addr("10.0.0.3:5000"));
    let sends = t.ws_message(
        secs(20),
        ConnId(7),
        ws_announce(h, pid(b"-WW0208-", 3), vec![], Some(9)),
    );
    assert_eq!(sends.len(), 1);
    assert_eq!(t.counts(&h), Some((1, 2)));
    // Re-announcing refreshes the first peer.
    t.announce(
        secs(600),
        &ann(h, pid(b"-WW0208-", 1), "10.0.0.1:1", Some(0), None),
    );
    assert_eq!(t.expire(secs(1200)), 0, "exactly the TTL is not past it");
    assert_eq!(t.expire(secs(1211)), 1);
    assert_eq!(t.counts(&h), Some((1, 1)));
    assert_eq!(t.expire(secs(1221)), 1, "the WebSocket peer expires too");
    assert_eq!(t.counts(&h), Some((1, 0)));
    assert_eq!(t.expire(secs(1801)), 1);
    assert_eq!(t.counts(&h), Some((0, 0)));
    assert_eq!(t.num_peers(), 0);
    // The swarm itself stays known (bittorrent-tracker keeps it), inactive.
    let s = t.stats();
    assert_eq!((s.torrents, s.active_torrents, s.peers_all), (1, 0, 0));
    // Closing the socket of an expired peer is harmless.
    t.ws_close(ConnId(7));
    assert_eq!(t.counts(&h), Some((0, 0)));
}

#[test]
fn websocket_peers_are_kept_apart_from_http_and_udp_peers() {
    let mut t = Tracker::new(TrackerConfig::default(), 3);
    let h = ih(1);
    let (http_peer, w1, w2) = (
        pid(b"-WW0208-", 1),
        pid(b"-WW0208-", 2),
        pid(b"-WW0208-", 3),
    );
    let r = t.announce(
        secs(0),
        &ann(h, http_peer, "10.0.0.1:6881", Some(0), Some(Event::Started)),
    );
    assert_eq!(addrs(&r), [addr("10.0.0.1:6881")]);
    t.ws_open(ConnId(1), addr("10.0.0.2:40000"));
    t.ws_open(ConnId(2), addr("[2001:db8::3]:40000"));

    // w1 announces with one offer: nobody else speaks WebSocket yet, so it goes nowhere.
    let sends = t.ws_message(
        secs(1),
        ConnId(1),
        ws_announce(h, w1, vec![offer(10, "sdp-1")], None),
    );
    assert_eq!(sends.len(), 1);
    let TrackerMessage::AnnounceReply(reply) = to(&sends, 1)[0] else {
        panic!("{sends:?}")
    };
    // Counts cover both kinds; the interval is a fifth of HTTP's.
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(1)));
    assert_eq!(reply.interval, Some(120));
    assert_eq!(reply.info_hash, h);

    // w2 announces with two offers: one reaches w1 (never the HTTP peer, never w2 itself).
    let sends = t.ws_message(
        secs(2),
        ConnId(2),
        ws_announce(
            h,
            w2,
            vec![offer(20, "sdp-2a"), offer(21, "sdp-2b")],
            Some(0),
        ),
    );
    assert_eq!(sends.len(), 2, "{sends:?}");
    let [TrackerMessage::AnnounceReply(reply)] = to(&sends, 2)[..] else {
        panic!("{sends:?}")
    };
    assert_eq!((reply.complete, reply.incomplete), (Some(2), Some(1)));
    let [TrackerMessage::Offer(o)] = to(&sends, 1)[..] else {
        panic!("{sends:?}")
    };
    assert_eq!((o.info_hash, o.peer_id), (h, w2));
    assert_eq!(o.offer_id, Id20([20; 20]));
    assert_eq!(o.offer.sdp, "sdp-2a");

    // The HTTP peer still sees only itself.
    let r = t.announce(secs(3), &ann(h, http_peer, "10.0.0.1:6881", Some(0), None));
    assert_eq!(addrs(&r), [addr("10.0.0.1:6881")]);
    assert_eq!(counts(&r), (2, 1));

    // w1 answers w2's offer: forwarded to w2 only; the answerer gets no reply.
    let sends = t.ws_message(
        secs(4),
        ConnId(1),
        ClientMessage::Answer(AnswerRequest {
            info_hash: h,
            peer_id: w1,
            to_peer_id: w2,
            answer: sdp(SdpType::Answer, "answer-1"),
            offer_id: Id20([20; 20]),
            trackerid: None,
        }),
    );
    let [TrackerMessage::Answer(a)] = to(&sends, 2)[..] else {
        panic!("{sends:?}")
    };
    assert_eq!((a.peer_id, a.offer_id), (w1, Id20([20; 20])));
    assert_eq!(a.answer.sdp, "answer-1");
    assert!(to(&sends, 1).is_empty());
    // An answer to an unknown peer goes nowhere.
    let sends = t.ws_message(
        secs(4),
        ConnId(1),
        ClientMessage::Answer(AnswerRequest {
            info_hash: h,
            peer_id: w1,
            to_peer_id: pid(b"-XX", 9),
            answer: sdp(SdpType::Answer, "x"),
            offer_id: Id20([1; 20]),
            trackerid: None,
        }),
    );
    assert!(sends.is_empty());

    // Scrape over the socket: the counts, and `downloaded` as bittorrent-tracker fills it.
    let sends = t.ws_message(
        secs(5),
        ConnId(1),
        ClientMessage::Scrape(ws::ScrapeRequest {
            info_hashes: vec![h, ih(2)],
        }),
    );
    let [TrackerMessage::ScrapeReply(s)] = to(&sends, 1)[..] else {
        panic!("{sends:?}")
    };
    assert_eq!(s.files[&h].complete, 2);
    assert_eq!(s.files[&h].downloaded, 2);
    assert_eq!(s.files[&h].incomplete, 1);
    assert_eq!(s.files[&ih(2)].complete, 0);
    assert_eq!(s.min_request_interval, Some(600));

    // Closing w2's socket is its `stopped`.
    t.ws_close(ConnId(2));
    assert_eq!(t.counts(&h), Some((1, 1)));
    // A `stopped` announce over the socket works the same.
    let mut stop = ws_announce(h, w1, vec![], None);
    if let ClientMessage::Announce(a) = &mut stop {
        a.event = Some(Event::Stopped);
    }
    let sends = t.ws_message(secs(6), ConnId(1), stop);
    let [TrackerMessage::AnnounceReply(reply)] = to(&sends, 1)[..] else {
        panic!("{sends:?}")
    };
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(0)));
    t.ws_close(ConnId(1));
    assert_eq!(t.counts(&h), Some((1, 0)));
    assert_eq!(t.num_peers(), 1);
}

#[test]
fn a_websocket_peer_on_a_new_socket_is_not_removed_by_the_old_one_closing() {
    let mut t = Tracker::new(TrackerConfig::default(), 4);
    let h = ih(1);
    let w = pid(b"-WW0208-", 1);
    t.ws_open(ConnId(1), addr("127.0.0.1:1"));
    t.ws_open(ConnId(2), addr("127.0.0.1:2"));
    t.ws_message(secs(0), ConnId(1), ws_announce(h, w, vec![], None));
    t.ws_message(secs(1), ConnId(2), ws_announce(h, w, vec![], None));
    assert_eq!(t.counts(&h), Some((0, 1)));
    t.ws_close(ConnId(1));
    assert_eq!(t.counts(&h), Some((0, 1)));
    // Offers now reach it on its new socket.
    t.ws_open(ConnId(3), addr("127.0.0.1:3"));
    let sends = t.ws_message(
        secs(2),
        ConnId(3),
        ws_announce(h, pid(b"-WW0208-", 2), vec![offer(1, "o")], None),
    );
    assert_eq!(to(&sends, 2).len(), 1, "{sends:?}");
    t.ws_close(ConnId(2));
    assert_eq!(t.counts(&h), Some((0, 1)));
}

#[test]
fn bounds_on_swarms_peers_and_replies() {
    // A full swarm drops its least recently announced peer.
    let mut t = Tracker::new(
        TrackerConfig {
            max_peers_per_swarm: 3,
            ..TrackerConfig::default()
        },
        5,
    );
    let h = ih(1);
    for i in 1..=3u8 {
        t.announce(
            secs(u64::from(i)),
            &ann(
                h,
                pid(b"-WW0208-", i),
                &format!("10.0.0.{i}:1"),
                Some(1),
                None,
            ),
        );
    }
    // Peer 1 re-announces, so peer 2 is now the oldest.
    t.announce(
        secs(4),
        &ann(h, pid(b"-WW0208-", 1), "10.0.0.1:1", Some(1), None),
    );
    let r = t.announce(
        secs(5),
        &ann(h, pid(b"-WW0208-", 4), "10.0.0.4:1", Some(0), None),
    );
    assert_eq!(counts(&r), (1, 2));
    assert_eq!(
        addrs(&r),
        [addr("10.0.0.1:1"), addr("10.0.0.3:1"), addr("10.0.0.4:1")]
    );

    // Replies carry at most numwant (≤ 82) peers, chosen at random.
    let mut t = Tracker::new(TrackerConfig::default(), 6);
    for i in 0..200u16 {
        let a = ann(
            h,
            pid(b"-WW0208-", 0),
            &format!("10.0.{}.{}:1", i / 256, i % 256),
            Some(1),
            None,
        );
        t.announce(secs(0), &a);
    }
    let mut last = ann(h, pid(b"-WW0208-", 0), "10.1.0.0:1", Some(1), None);
    last.numwant = http_numwant(Some(5000));
    let r = t.announce(secs(0), &last);
    assert_eq!(r.peers.len(), 82);
    last.numwant = http_numwant(Some(10));
    let one = t.announce(secs(0), &last);
    let two = t.announce(secs(0), &last);
    assert_eq!((one.peers.len(), two.peers.len()), (10, 10));
    assert_ne!(addrs(&one), addrs(&two), "peer selection is random");

    // Too many swarms: the least recently announced goes.
    let mut t = Tracker::new(
        TrackerConfig {
            max_torrents: 2,
            ..TrackerConfig::default()
        },
        7,
    );
    // (second, swarm): one peer announcing to swarms 1, 2, 1 again, then 3.
    for (at, swarm) in [(0, 1), (1, 2), (2, 1), (3, 3)] {
        t.announce(
            secs(at),
            &ann(ih(swarm), pid(b"-WW", 1), "10.0.0.1:1", Some(0), None),
        );
    }
    assert_eq!(t.num_torrents(), 2);
    assert_eq!(t.counts(&ih(2)), None);
    assert_eq!(t.counts(&ih(1)), Some((1, 0)));
    assert_eq!(t.num_peers(), 2);

    // Too many peers in all: the least recently announced swarm gives up its oldest peer.
    let mut t = Tracker::new(
        TrackerConfig {
            max_peers: 4,
            ..TrackerConfig::default()
        },
        8,
    );
    // Peer n announces at second n - 1: two to swarm 1, two to swarm 2, one to swarm 3.
    for (n, swarm) in [(1u8, 1), (2, 1), (3, 2), (4, 2), (5, 3)] {
        t.announce(
            secs(u64::from(n) - 1),
            &ann(
                ih(swarm),
                pid(b"-WW", n),
                &format!("10.0.0.{n}:1"),
                Some(0),
                None,
            ),
        );
    }
    assert_eq!(t.num_peers(), 4);
    assert_eq!(t.counts(&ih(1)), Some((1, 0)));
    assert_eq!(t.counts(&ih(2)), Some((2, 0)));
    assert_eq!(t.counts(&ih(3)), Some((1, 0)));
    // A lone swarm at the bound makes room from itself.
    let mut t = Tracker::new(
        TrackerConfig {
            max_peers: 2,
            ..TrackerConfig::default()
        },
        9,
    );
    for i in 1..=5u8 {
        t.announce(
            secs(u64::from(i)),
            &ann(
                ih(1),
                pid(b"-WW", i),
                &format!("10.0.0.{i}:1"),
                Some(0),
                None,
            ),
        );
    }
    assert_eq!(t.num_peers(), 2);
    assert_eq!(t.counts(&ih(1)), Some((2, 0)));

    // One socket may join only so many swarms; forwarded offers are capped at 82.
    let mut t = Tracker::new(
        TrackerConfig {
            max_torrents_per_socket: 2,
            ..TrackerConfig::default()
        },
        10,
    );
    t.ws_open(ConnId(1), addr("127.0.0.1:1"));
    for n in 1..=2 {
        let s = t.ws_message(
            secs(0),
            ConnId(1),
            ws_announce(ih(n), pid(b"-WW", 1), vec![], None),
        );
        assert!(matches!(s[0].message, TrackerMessage::AnnounceReply(_)));
    }
    let s = t.ws_message(
        secs(0),
        ConnId(1),
        ws_announce(ih(3), pid(b"-WW", 1), vec![], None),
    );
    let TrackerMessage::Failure(f) = &s[0].message else {
        panic!("{s:?}")
    };
    assert_eq!(f.info_hash, Some(ih(3)));
    assert!(f.reason.contains("too many torrents"), "{}", f.reason);
    // Announcing again where it already is stays allowed.
    let s = t.ws_message(
        secs(0),
        ConnId(1),
        ws_announce(ih(1), pid(b"-WW", 1), vec![], None),
    );
    assert!(matches!(s[0].message, TrackerMessage::AnnounceReply(_)));

    let mut t = Tracker::new(TrackerConfig::default(), 11);
    for c in 1..=100u64 {
        t.ws_open(ConnId(c), addr("127.0.0.1:1"));
        t.ws_message(
            secs(0),
            ConnId(c),
            ws_announce(ih(1), pid(b"-WW", c as u8), vec![], None),
        );
    }
    t.ws_open(ConnId(1000), addr("127.0.0.1:1"));
    let offers: Vec<Offer> = (0..50).map(|i| offer(i, "o")).collect();
    let s = t.ws_message(
        secs(0),
        ConnId(1000),
        ws_announce(ih(1), pid(b"-WR", 0), offers, None),
    );
    assert_eq!(s.len(), 51, "one reply and one offer per offer given");
    let mut targets: Vec<ConnId> = s.iter().skip(1).map(|x| x.conn).collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 50, "each offer to a different peer");
}

#[test]
fn ipv4_and_ipv6_peers_in_compact_and_dictionary_replies() {
    let mut t = Tracker::new(TrackerConfig::default(), 12);
    let h = ih(1);
    t.announce(
        secs(0),
        &ann(h, pid(b"-WW0208-", 1), "10.0.0.1:6881", Some(0), None),
    );
    let r = t.announce(
        secs(0),
        &ann(h, pid(b"-WW0208-", 2), "[2001:db8::2]:6882", Some(1), None),
    );
    assert_eq!(counts(&r), (1, 1));
    let reply = AnnounceResponse {
        interval: Some(600),
        complete: Some(r.complete),
        incomplete: Some(r.incomplete),
        peers: r.peers.clone(),
        ..AnnounceResponse::default()
    };
    // Compact: IPv4 in `peers` (6 bytes each), IPv6 in `peers6` (18 bytes each).
    let body = reply.encode(webtorrent_core::tracker::PeerEncoding::Compact);
    let mut v4 = b"5:peers6:".to_vec();
    v4.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1]);
    assert!(body.windows(v4.len()).any(|w| w == v4.as_slice()));
    let mut v6 = b"6:peers618:".to_vec();
    v6.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend_from_slice(&6882u16.to_be_bytes());
    assert!(body.windows(v6.len()).any(|w| w == v6.as_slice()));
    let back = AnnounceResponse::decode(&body).unwrap();
    assert_eq!(back.peers.len(), 2);
    // Dictionary: one list, ids kept.
    let dict = reply.encode(webtorrent_core::tracker::PeerEncoding::Dictionary);
    let back = AnnounceResponse::decode(&dict).unwrap();
    let mut got: Vec<Peer> = back.peers;
    got.sort_by_key(|p| p.addr);
    assert_eq!(got[1].addr, addr("[2001:db8::2]:6882"));
    assert_eq!(got[1].peer_id, Some(pid(b"-WW0208-", 2)));
}

#[test]
fn stats_figures_match_bittorrent_trackers() {
    let mut t = Tracker::new(TrackerConfig::default(), 13);
    let x = pid(b"-WW0208-", 1); // seeds torrent 1, leeches torrent 2
    let y = pid(b"-WR0001-", 2); // leeches over IPv6
    let z = pid(b"-qB4650-", 3); // seeds
    let w = pid(b"-WW0103-", 4); // a browser, seeding over WebSocket
    t.announce(secs(0), &ann(ih(1), x, "10.0.0.1:1", Some(0), None));
    t.announce(secs(0), &ann(ih(2), x, "10.0.0.1:1", Some(10), None));
    t.announce(secs(0), &ann(ih(1), y, "[2001:db8::1]:1", Some(10), None));
    t.announce(secs(0), &ann(ih(2), z, "10.0.0.3:1", Some(0), None));
    t.ws_open(ConnId(1), addr("127.0.0.1:5000"));
    t.ws_message(secs(0), ConnId(1), ws_announce(ih(2), w, vec![], Some(0)));
    // A third torrent whose only peer left.
    t.announce(secs(0), &ann(ih(3), z, "10.0.0.3:1", Some(0), None));
    t.announce(
        secs(0),
        &ann(ih(3), z, "10.0.0.3:1", Some(0), Some(Event::Stopped)),
    );
    let s = t.stats();
    let mut clients: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    clients
        .entry("WebTorrent".into())
        .or_default()
        .insert("2.8".into(), 1);
    clients
        .entry("WebTorrent".into())
        .or_default()
        .insert("1.3".into(), 1);
    clients
        .entry("webtorrent-rs".into())
        .or_default()
        .insert("0.1".into(), 1);
    clients
        .entry("qBittorrent".into())
        .or_default()
        .insert("4.6.5".into(), 1);
    assert_eq!(
        s,
        Stats {
            torrents: 3,
            active_torrents: 2,
            peers_all: 4,
            peers_seeder_only: 2,
            peers_leecher_only: 1,
            peers_seeder_and_leecher: 1,
            peers_ipv4: 3,
            peers_ipv6: 1,
            clients,
            bridge: None,
        }
    );
}

/// What the bridge reads: each side's seeders and leechers, leaving out the bridge itself and
/// counting a page that also announced over HTTP on the WebSocket side only; and the swarms
/// changed since the last look, bounded.
#[test]
fn sides_and_changed_swarms_for_the_bridge() {
    let mut t = Tracker::new(TrackerConfig::default(), 9);
    let h = ih(1);
    let bridge = pid(b"-WR0001-", 1);
    let page = pid(b"-WW0208-", 2);
    let desktop = pid(b"-qB4650-", 3);
    assert!(t.take_changed().is_empty());
    t.ws_open(ConnId(1), addr("127.0.0.1:5000"));
    t.ws_message(secs(0), ConnId(1), ws_announce(h, page, vec![], Some(0)));
    // The page's HTTP announce from a port nobody can connect to.
    t.announce(
        secs(0),
        &ann(h, page, "127.0.0.1:9", Some(0), Some(Event::Started)),
    );
    assert_eq!(t.take_changed(), vec![h]);
    assert!(t.take_changed().is_empty(), "changes are taken once");
    let sides = t.sides(&h, bridge).unwrap();
    assert_eq!(
        sides,
        SwarmSides {
            ws_seeders: 1,
            ..SwarmSides::default()
        }
    );
    assert!(!sides.one_sided() && !sides.wanted());
    t.announce(
        secs(1),
        &ann(h, desktop, "127.0.0.1:6881", Some(5), Some(Event::Started)),
    );
    let sides = t.sides(&h, bridge).unwrap();
    assert_eq!((sides.net_leechers, sides.net_seeders), (1, 0));
    assert!(sides.one_sided() && sides.wanted());
    // The bridge itself, on both sides, is left out.
    t.announce(
        secs(2),
        &ann(h, bridge, "127.0.0.1:7000", Some(5), Some(Event::Started)),
    );
    t.ws_open(ConnId(2), addr("127.0.0.1:5001"));
    t.ws_message(secs(2), ConnId(2), ws_announce(h, bridge, vec![], Some(5)));
    assert_eq!(t.sides(&h, bridge).unwrap(), sides);
    // The page leaves (its socket closes): the swarm changed, and only the desktop is left.
    t.take_changed();
    t.ws_close(ConnId(1));
    assert_eq!(t.take_changed(), vec![h]);
    let sides = t.sides(&h, bridge).unwrap();
    assert!(!sides.one_sided());
    assert_eq!(
        sides.net_seeders, 1,
        "the page's HTTP entry now counts as a desktop seeder"
    );
    assert!(t.sides(&ih(2), bridge).is_none());
    // Bounded: announces in more swarms than MAX_CHANGED are not all remembered.
    for n in 0..(MAX_CHANGED + 10) {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&(n as u64).to_le_bytes());
        t.announce(
            secs(3),
            &ann(Id20(b), desktop, "127.0.0.1:6881", Some(1), None),
        );
    }
    assert_eq!(t.take_changed().len(), MAX_CHANGED);
}

// ---------------------------------------------------------------------------------------------
// Over loopback

/// A raw HTTP/1.0 request on loopback: `(status, body)`.
async fn http_request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// `/bridge.json` and `/bridge/...`: what the page asks the server, without and with a bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_endpoints() {
    let server = start(ServerConfig::default()).await;
    let port = server.local_addr().port();
    let (st, body) = http_request(port, "GET", "/bridge.json").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st, 200);
    assert_eq!(v["bridge"], false, "{v}");
    assert_eq!(v["announce"]["http"], server.http_announce_url(), "{v}");
    assert_eq!(v["announce"]["ws"], server.ws_url(), "{v}");
    let hex = "ab".repeat(20);
    let (st, _) = http_request(port, "GET", &format!("/bridge/torrents/{hex}")).await;
    assert_eq!(st, 404);

    let data = tempfile::tempdir().unwrap();
    let client = WebTorrent::new(WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        webrtc: false,
        ..WebTorrentOptions::default()
    })
    .await
    .unwrap();
    let bridge = webtorrent::bridge::Bridge::start(
        client.clone(),
        webtorrent::bridge::BridgeSource::Local(server.handle()),
        webtorrent::bridge::BridgeConfig {
            data_dir: data.path().to_path_buf(),
            max_torrents: 1,
            ..Default::default()
        },
    )
    .unwrap();
    server.set_bridge(bridge.hooks());
    let (_, body) = http_request(port, "GET", "/bridge.json").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bridge"], true, "{v}");
    assert_eq!(v["settings"]["maxTorrents"], 1, "{v}");
    let (st, body) = http_request(port, "GET", &format!("/bridge/torrents/{hex}")).await;
    assert_eq!(st, 200);
    assert!(body.contains(r#""state":"absent""#), "{body}");
    assert_eq!(
        http_request(port, "GET", "/bridge/torrents/xyz").await.0,
        400
    );
    assert_eq!(
        http_request(port, "GET", &format!("/bridge/keep/{hex}"))
            .await
            .0,
        405
    );
    assert_eq!(http_request(port, "GET", "/bridge/other/x").await.0, 404);
    let (st, body) = http_request(port, "POST", &format!("/bridge/keep/{hex}")).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(r#""state":"queued""#), "{body}");
    // The bridge joins it (by magnet; nobody has it here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_request(port, "GET", &format!("/bridge/torrents/{hex}")).await;
        if body.contains(r#""state":"joining""#) && body.contains(r#""kept":true"#) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Full (one torrent, and it is kept): another keep request is refused with a reason.
    let (st, body) = http_request(port, "POST", &format!("/bridge/keep/{}", "cd".repeat(20))).await;
    assert_eq!(st, 507, "{body}");
    assert!(body.contains("full"), "{body}");
    let stats = stats_json(server.local_addr()).await;
    let b = stats.bridge.expect("bridge figures");
    assert_eq!((b.torrents, b.kept, b.bridged), (1, 1, 1), "{b:?}");
    bridge.shutdown().await;
    client.destroy().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_http_client_announces_and_scrapes() {
    let server = start(ServerConfig::default()).await;
    let url = server.http_announce_url();
    let client = tracker_client();
    // An info hash with bytes that need escaping and bytes ≥ 0x80 (which bittorrent-tracker's
    // scrape mangles; ours must not).
    let h = Id20([
        0x00, b' ', b'+', b'~', b'%', 0xff, b'&', b'=', b'a', b'Z', 0x80, 0x7f, b'/', b'?', b'#',
        0x12, 0xc3, 0xa9, 0xfe, 0x01,
    ]);
    let mut p = AnnounceParams::new(h, pid(b"-WR0001-", 1), 6881);
    p.left = 1000;
    p.event = Some(Event::Started);
    let out = client.announce(&url, &p).await.expect("announce");
    assert_eq!(out.interval, Duration::from_secs(600));
    assert_eq!((out.complete, out.incomplete), (Some(0), Some(1)));
    assert_eq!(out.peers, [addr("127.0.0.1:6881")]);
    let mut s = AnnounceParams::new(h, pid(b"-WW0208-", 2), 6882);
    s.left = 0;
    s.event = Some(Event::Started);
    let out = client.announce(&url, &s).await.expect("announce");
    assert_eq!((out.complete, out.incomplete), (Some(1), Some(1)));
    let mut got = out.peers.clone();
    got.sort();
    assert_eq!(got, [addr("127.0.0.1:6881"), addr("127.0.0.1:6882")]);

    let stats = client.scrape(&url, &[h, ih(7)]).await.expect("scrape");
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].0, h);
    assert_eq!(
        (
            stats[0].1.complete,
            stats[0].1.downloaded,
            stats[0].1.incomplete
        ),
        (1, 1, 1)
    );
    assert_eq!(stats[1].0, ih(7));
    assert_eq!((stats[1].1.complete, stats[1].1.incomplete), (0, 0));

    p.event = Some(Event::Stopped);
    let out = client.announce(&url, &p).await.expect("stopped");
    assert_eq!((out.complete, out.incomplete), (Some(1), Some(0)));

    let st = stats_json(server.local_addr()).await;
    assert_eq!((st.torrents, st.active_torrents, st.peers_all), (1, 1, 1));
    assert_eq!(st.clients["WebTorrent"]["2.8"], 1);
    assert_eq!(st, server.stats());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_replies_as_bittorrent_tracker_does() {
    let server = start(ServerConfig::default()).await;
    let a = server.local_addr();
    let h = ih(0xab);
    // Compact, CORS header, the announcer itself in the list.
    let (status, head, body) = get(
        a,
        &announce_query(h, pid(b"-WW0208-", 1), 6881, 0, "&compact=1"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let r = AnnounceResponse::decode(&body).unwrap();
    assert_eq!(r.interval, Some(600));
    assert_eq!(r.peers, [Peer::from(addr("127.0.0.1:6881"))]);
    // Without compact=1: the dictionary model with peer ids; `no_peer_id` drops them.
    let (_, _, body) = get(a, &announce_query(h, pid(b"-WW0208-", 2), 6882, 5, "")).await;
    let r = AnnounceResponse::decode(&body).unwrap();
    assert_eq!(r.peers.len(), 2);
    assert!(r.peers.iter().all(|p| p.peer_id.is_some()));
    let (_, _, body) = get(
        a,
        &announce_query(h, pid(b"-WW0208-", 2), 6882, 5, "&no_peer_id=1"),
    )
    .await;
    let r = AnnounceResponse::decode(&body).unwrap();
    assert!(r.peers.iter().all(|p| p.peer_id.is_none()));
    // numwant.
    let (_, _, body) = get(
        a,
        &announce_query(h, pid(b"-WW0208-", 2), 6882, 5, "&compact=1&numwant=1"),
    )
    .await;
    assert_eq!(AnnounceResponse::decode(&body).unwrap().peers.len(), 1);
    // Refusals are bencoded failures with status 200, in bittorrent-tracker's words.
    for (target, reason) in [
        (
            "/announce?peer_id=aaaaaaaaaaaaaaaaaaaa&port=1&left=0".to_string(),
            "invalid info_hash",
        ),
        (
            format!("/announce?info_hash={}&port=1&left=0", pct(h.as_bytes())),
            "invalid peer_id",
        ),
        (announce_query(h, pid(b"-WW", 1), 0, 0, ""), "invalid port"),
        ("/scrape?info_hash=short".to_string(), "invalid info_hash"),
    ] {
        let (status, _, body) = get(a, &target).await;
        assert_eq!(status, 200);
        assert_eq!(
            webtorrent_core::tracker::ScrapeResponse::decode(&body),
            Err(webtorrent_core::tracker::HttpError::Failure(reason.into())),
            "{target}"
        );
    }
    // Scrape without info_hash: every torrent.
    let (_, _, body) = get(a, "/scrape").await;
    let s = webtorrent_core::tracker::ScrapeResponse::decode(&body).unwrap();
    assert_eq!(s.files.len(), 1);
    assert_eq!(s.files[&h].complete, 1);
    assert_eq!(s.min_request_interval, Some(600));
    // CORS preflight.
    let (status, head, _) = http(a, "OPTIONS", "/announce", "Origin: http://x\r\n").await;
    assert_eq!(status, 204);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("access-control-allow-methods"), "{head}");
    // `/stats` is HTML, or JSON when asked with Accept.
    let (status, head, body) = get(a, "/stats").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.starts_with("<h1>1 torrents (1 active)</h1>\n<h2>Connected Peers: 2</h2>"),
        "{html}"
    );
    assert!(
        html.contains("<li><strong>WebTorrent</strong> 2.8 : 2</li>"),
        "{html}"
    );
    let (_, head, body) = http(a, "GET", "/stats", "Accept: application/json\r\n").await;
    assert!(head.contains("content-type: application/json"), "{head}");
    let st: Stats = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (st.peers_all, st.peers_seeder_only, st.peers_leecher_only),
        (2, 1, 1)
    );
    // Keep-alive: two requests on one connection.
    let mut s = TcpStream::connect(a).await.unwrap();
    let one = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        announce_query(h, pid(b"-WW", 3), 7000, 0, "&compact=1")
    );
    s.write_all(format!("{one}{one}").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while got.windows(8).filter(|w| w == b"HTTP/1.1").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_replies_split_ipv4_and_ipv6_on_a_dual_stack_socket() {
    if !ipv6_loopback_works() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let server = Server::bind(ServerConfig {
        listen: addr("[::]:0"),
        ..ServerConfig::default()
    })
    .await
    .expect("bind [::]");
    let port = server.local_addr().port();
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    let h = ih(0x66);
    get(
        v4,
        &announce_query(h, pid(b"-WW0208-", 1), 6881, 0, "&compact=1"),
    )
    .await;
    let (_, _, body) = get(
        v6,
        &announce_query(h, pid(b"-WW0208-", 2), 6882, 9, "&compact=1"),
    )
    .await;
    // Both families, each in its own key.
    let mut v4_part = b"5:peers6:".to_vec();
    v4_part.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
    assert!(
        body.windows(v4_part.len()).any(|w| w == v4_part.as_slice()),
        "{body:?}"
    );
    let mut v6_part = b"6:peers618:".to_vec();
    v6_part.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    v6_part.extend_from_slice(&6882u16.to_be_bytes());
    assert!(
        body.windows(v6_part.len()).any(|w| w == v6_part.as_slice()),
        "{body:?}"
    );
    let st = stats_json(v4).await;
    assert_eq!((st.peers_ipv4, st.peers_ipv6), (1, 1));

    // UDP over IPv6 gets the IPv6 peers (18 bytes each); over IPv4 the IPv4 ones.
    let client = tracker_client();
    let mut p = AnnounceParams::new(h, pid(b"-WR0001-", 3), 6883);
    p.left = 0;
    let out = client
        .announce(&format!("udp://[::1]:{port}"), &p)
        .await
        .expect("UDP over IPv6");
    let mut got = out.peers;
    got.sort();
    assert_eq!(got, [addr("[::1]:6882"), addr("[::1]:6883")]);
    let out = client
        .announce(&format!("udp://127.0.0.1:{port}"), &p)
        .await
        .expect("UDP over IPv4");
    let mut got = out.peers;
    got.sort();
    assert_eq!(got, [addr("127.0.0.1:6881"), addr("127.0.0.1:6883")]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_udp_client_announces_and_scrapes() {
    let server = start(ServerConfig::default()).await;
    let url = server.udp_announce_url().expect("UDP runs");
    assert_eq!(
        server.udp_local_addr().map(|a| a.port()),
        Some(server.local_addr().port())
    );
    let client = tracker_client();
    let h = Id20([0xfe; 20]);
    let mut p = AnnounceParams::new(h, pid(b"-WR0001-", 1), 7001);
    p.left = 10;
    p.event = Some(Event::Started);
    let out = client.announce(&url, &p).await.expect("announce");
    assert_eq!(out.interval, Duration::from_secs(600));
    assert_eq!((out.complete, out.incomplete), (Some(0), Some(1)));
    assert_eq!(out.peers, [addr("127.0.0.1:7001")]);
    let mut s = AnnounceParams::new(h, pid(b"-WW0208-", 2), 7002);
    s.left = 0;
    let out = client.announce(&url, &s).await.expect("announce");
    assert_eq!((out.complete, out.incomplete), (Some(1), Some(1)));
    assert_eq!(out.peers.len(), 2);
    // HTTP and UDP peers share the swarm.
    let (_, _, body) = get(
        server.local_addr(),
        &announce_query(h, pid(b"-WW0208-", 3), 7003, 0, "&compact=1"),
    )
    .await;
    assert_eq!(AnnounceResponse::decode(&body).unwrap().peers.len(), 3);
    let stats = client.scrape(&url, &[ih(1), h]).await.expect("scrape");
    assert_eq!(stats.len(), 2);
    assert_eq!((stats[0].1.complete, stats[0].1.incomplete), (0, 0));
    assert_eq!(stats[1].0, h);
    assert_eq!((stats[1].1.complete, stats[1].1.incomplete), (2, 1));
    p.event = Some(Event::Stopped);
    let out = client.announce(&url, &p).await.expect("stopped");
    assert_eq!((out.complete, out.incomplete), (Some(2), Some(0)));

    // A made-up connection id gets an error reply, garbage gets none.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = server.udp_local_addr().unwrap();
    let bogus = webtorrent_core::tracker::udp::ScrapeRequest {
        connection_id: 0x1234,
        transaction_id: 99,
        info_hashes: vec![h],
    };
    sock.send_to(&bogus.encode(), target).await.unwrap();
    let mut buf = [0u8; 256];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an error reply")
        .unwrap();
    let reply = webtorrent_core::tracker::udp::Response::decode(
        &buf[..n],
        webtorrent_core::tracker::AddressFamily::V4,
    )
    .unwrap();
    assert!(
        matches!(reply, webtorrent_core::tracker::udp::Response::Error(ref e) if e.transaction_id == 99),
        "{reply:?}"
    );
    sock.send_to(b"garbage", target).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf))
            .await
            .is_err()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_exchange_an_offer_and_an_answer() {
    let server = start(ServerConfig::default()).await;
    let h = Id20([0x99; 20]);
    let (pa, pb) = (pid(b"-WW0208-", 1), pid(b"-WW0208-", 2));
    // Any path upgrades; the page's default is the bare origin.
    let mut a = ws_connect(&server.ws_url()).await;
    let mut b = ws_connect(&format!("{}/some/path", server.ws_url())).await;

    // A joins, offering one connection (as bittorrent-tracker's client sends it, left null).
    let raw = format!(
        r#"{{"numwant":1,"uploaded":0,"downloaded":0,"left":null,"event":"started","action":"announce","info_hash":{},"peer_id":{},"offers":[{{"offer":{{"type":"offer","sdp":"sdp-a"}},"offer_id":{}}}]}}"#,
        serde_json::to_string(&h.to_latin1_string()).unwrap(),
        serde_json::to_string(&pa.to_latin1_string()).unwrap(),
        serde_json::to_string(&Id20([1; 20]).to_latin1_string()).unwrap(),
    );
    a.send(Message::text(raw)).await.unwrap();
    let TrackerMessage::AnnounceReply(r) = ws_recv(&mut a).await else {
        panic!("announce reply expected")
    };
    assert_eq!(
        (r.info_hash, r.complete, r.incomplete, r.interval),
        (h, Some(0), Some(1), Some(120))
    );

    // B joins as a seeder with an offer: it reaches A.
    ws_send(
        &mut b,
        &ws_announce(h, pb, vec![offer(2, "sdp-b")], Some(0)),
    )
    .await;
    let TrackerMessage::AnnounceReply(r) = ws_recv(&mut b).await else {
        panic!("announce reply expected")
    };
    assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
    let TrackerMessage::Offer(o) = ws_recv(&mut a).await else {
        panic!("offer expected")
    };
    assert_eq!((o.info_hash, o.peer_id, o.offer_id), (h, pb, Id20([2; 20])));
    assert_eq!(
        (o.offer.kind, o.offer.sdp.as_str()),
        (SdpType::Offer, "sdp-b")
    );

    // A answers; B gets the answer, A no reply (its next message is its scrape's reply).
    ws_send(
        &mut a,
        &ClientMessage::Answer(AnswerRequest {
            info_hash: h,
            peer_id: pa,
            to_peer_id: pb,
            answer: sdp(SdpType::Answer, "answer-a"),
            offer_id: o.offer_id,
            trackerid: None,
        }),
    )
    .await;
    let TrackerMessage::Answer(ans) = ws_recv(&mut b).await else {
        panic!("answer expected")
    };
    assert_eq!(
        (ans.peer_id, ans.offer_id, ans.answer.sdp.as_str()),
        (pa, Id20([2; 20]), "answer-a")
    );
    ws_send(
        &mut a,
        &ClientMessage::Scrape(ws::ScrapeRequest {
            info_hashes: vec![h],
        }),
    )
    .await;
    let TrackerMessage::ScrapeReply(s) = ws_recv(&mut a).await else {
        panic!("scrape reply expected")
    };
    assert_eq!((s.files[&h].complete, s.files[&h].incomplete), (1, 1));

    // Bad JSON gets a bare failure reason; the socket stays usable.
    a.send(Message::text("{not json")).await.unwrap();
    let TrackerMessage::Failure(f) = ws_recv(&mut a).await else {
        panic!("failure expected")
    };
    assert_eq!((f.action, f.info_hash), (None, None));

    let st = stats_json(server.local_addr()).await;
    assert_eq!(
        (st.peers_all, st.peers_seeder_only, st.peers_leecher_only),
        (2, 1, 1)
    );
    assert_eq!(st.clients["WebTorrent"]["2.8"], 2);
    // HTTP announcers do not see WebSocket peers.
    let (_, _, body) = get(
        server.local_addr(),
        &announce_query(h, pid(b"-WR0001-", 3), 9000, 5, "&compact=1"),
    )
    .await;
    let r = AnnounceResponse::decode(&body).unwrap();
    assert_eq!(r.peers, [Peer::from(addr("127.0.0.1:9000"))]);
    assert_eq!((r.complete, r.incomplete), (Some(1), Some(2)));

    // Closing A's socket is A's `stopped`.
    a.close(None).await.unwrap();
    let mut left = (0, 0);
    for _ in 0..100 {
        let st = server.stats();
        left = (st.peers_seeder_only, st.peers_leecher_only);
        if left == (1, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, (1, 1), "A is gone, B and the HTTP peer remain");
    server.shutdown().await;
    // The server closes B's socket when it shuts down.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match b.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "socket closed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_are_bounded() {
    let server = start(ServerConfig::default()).await;
    let mut a = ws_connect(&server.ws_url()).await;
    // Larger than the 128 KiB message bound: the server drops the connection.
    let huge = format!(r#"{{"action":"scrape","x":"{}"}}"#, "a".repeat(200 * 1024));
    let _ = a.send(Message::text(huge)).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match a.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "oversized message closes the socket");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_the_right_types_and_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    common::write_file(&www, "index.html", b"<!doctype html><title>page</title>");
    common::write_file(&www, "app.js", b"console.log(1)");
    common::write_file(&www, "pkg/webtorrent_wasm_bg.wasm", b"\0asm\x01\0\0\0");
    common::write_file(&www, ".hidden", b"secret");
    common::write_file(dir.path(), "outside.txt", b"secret");
    let server = start(ServerConfig {
        www: Some(webtorrent::server::Www::new(www.clone())),
        ..ServerConfig::default()
    })
    .await;
    let a = server.local_addr();
    for (path, ty, body) in [
        (
            "/",
            "text/html; charset=utf-8",
            &b"<!doctype html><title>page</title>"[..],
        ),
        (
            "/index.html",
            "text/html; charset=utf-8",
            b"<!doctype html><title>page</title>",
        ),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            b"console.log(1)",
        ),
        (
            "/pkg/webtorrent_wasm_bg.wasm",
            "application/wasm",
            b"\0asm\x01\0\0\0",
        ),
        (
            "/app.js?v=2",
            "text/javascript; charset=utf-8",
            b"console.log(1)",
        ),
    ] {
        let (status, head, got) = get(a, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {ty}")),
            "{path}: {head}"
        );
        assert_eq!(got, body, "{path}");
    }
    let (status, head, _) = get(a, "/pkg").await;
    assert_eq!(status, 301);
    assert!(head.contains("location: /pkg/"), "{head}");
    for bad in [
        "/../outside.txt",
        "/pkg/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E%2Foutside.txt",
        "/.hidden",
        "/missing.js",
        "/pkg/",
    ] {
        let (status, _, body) = get(a, bad).await;
        assert_eq!(status, 404, "{bad}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{bad}");
    }
    let (status, _, _) = http(a, "POST", "/app.js", "Content-Length: 0\r\n").await;
    assert_eq!(status, 405);
    // HEAD: headers only.
    let (status, head, body) = http(a, "HEAD", "/app.js", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-length: 14"), "{head}");
    assert!(body.is_empty());
    server.shutdown().await;

    // Without a page folder, `/` is a small page naming the trackers.
    let server = start(ServerConfig {
        www: None,
        ..ServerConfig::default()
    })
    .await;
    let (status, _, body) = get(server.local_addr(), "/").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(&server.ws_url()), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_page_is_served_by_default() {
    let www = webtorrent::server::default_www_dir();
    if !www.join("index.html").is_file() {
        eprintln!("skipped: no www/index.html");
        return;
    }
    let server = start(ServerConfig::default()).await;
    let (status, _, body) = get(server.local_addr(), "/").await;
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(www.join("index.html")).unwrap());
    // The page's default tracker is its own origin's WebSocket, which this server is (the
    // browser tests check the page's behaviour; this checks the page we serve is that one).
    let app = std::fs::read_to_string(www.join("app.js")).unwrap();
    assert!(
        app.contains("`${scheme}//${location.host}"),
        "www/app.js defaults to ws(s)://<page host>"
    );
    server.shutdown().await;
}

/// `webtorrent serve FILE`: prints the page URL and the magnet; our client downloads the file
/// through the embedded tracker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_command_seeds_files_through_its_own_tracker() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(1_500_000, 7);
    let file = common::write_file(dir.path(), "served.bin", &data);
    let mut child = common::cli()
        .args(["serve", "--port", "0", "--quiet"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start webtorrent serve");
    let lines = stdout_lines(child.stdout.take().expect("stdout"));
    let page = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("page URL in time");
    assert!(
        page.starts_with("http://127.0.0.1:") && page.ends_with('/'),
        "{page}"
    );
    let magnet = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("magnet in time");
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "{magnet}");
    let port: u16 = page
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    assert!(
        magnet.contains(&format!("127.0.0.1%3A{port}%2Fannounce"))
            || magnet.contains(&format!("127.0.0.1:{port}/announce")),
        "{magnet}"
    );

    let leecher = WebTorrent::new(WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        webrtc: false,
        ..WebTorrentOptions::default()
    })
    .await
    .unwrap();
    let t = leecher
        .add_with(magnet.as_str(), AddOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), t.wait_done())
        .await
        .expect("download in time")
        .unwrap();
    assert_eq!(
        common::sha256_hex(&t.bytes().await.unwrap()),
        common::sha256_hex(&data)
    );
    let st = stats_json(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await;
    assert!(st.clients.contains_key("webtorrent-rs"), "{st:?}");
    leecher.destroy().await.unwrap();

    // SIGTERM: a clean exit.
    common::unsafe_free_kill(child.id(), "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Lines of a child's stdout, read on a thread.
fn stdout_lines(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------------------------
// Interop with the npm peers (needs tests/interop/install.sh and a loopback-only netns)

/// Seeds `data` with the npm webtorrent (seed.mjs) announcing to `announce`, downloads it with
/// another npm webtorrent (download.mjs), checks that the downloader's peer connection has
/// `wire_type` (`tcpOutgoing`, `webrtc`) and the SHA-256.
fn npm_seed_and_download(dir: &Path, data: &[u8], announce: &str, wire_type: &str) {
    let file = common::write_file(dir, "npm.bin", data);
    let torrent = dir.join("npm.torrent");
    let mut seed = common::Script::start(
        "seed.mjs",
        &[
            "--file",
            file.to_str().unwrap(),
            "--announce",
            announce,
            "--torrent-out",
            torrent.to_str().unwrap(),
        ],
    );
    seed.wait_event("seeding", Duration::from_secs(60));
    let out = dir.join("out");
    let mut dl = common::Script::start(
        "download.mjs",
        &[
            "--torrent",
            torrent.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "90",
        ],
    );
    let wire = dl.wait_event("wire", Duration::from_secs(60));
    assert_eq!(wire["type"], wire_type, "{wire}");
    let done = dl.wait_event("done", Duration::from_secs(100));
    assert_eq!(done["files"][0]["sha256"], common::sha256_hex(data));
    assert_eq!(
        common::sha256_hex(&std::fs::read(out.join("npm.bin")).unwrap()),
        common::sha256_hex(data)
    );
    dl.stop();
    seed.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
async fn npm_webtorrent_seeds_and_downloads_through_our_http_tracker() {
    let server = start(ServerConfig::default()).await;
    let url = server.http_announce_url();
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(5_000_000, 11);
    let d = dir.path().to_path_buf();
    let st_during =
        tokio::task::spawn_blocking(move || npm_seed_and_download(&d, &data, &url, "tcpOutgoing"));
    // While both run, the stats name them.
    let mut seen = false;
    for _ in 0..600 {
        let st = server.stats();
        if st
            .clients
            .get("WebTorrent")
            .is_some_and(|v| v.values().sum::<u64>() == 2)
        {
            seen = true;
            break;
        }
        if st_during.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    st_during.await.expect("download succeeded");
    assert!(seen, "both npm peers were in /stats as WebTorrent");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
async fn npm_webtorrent_seeds_and_downloads_through_our_udp_tracker() {
    let server = start(ServerConfig::default()).await;
    let url = server.udp_announce_url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(3_000_000, 12);
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || npm_seed_and_download(&d, &data, &url, "tcpOutgoing"))
        .await
        .expect("download succeeded");
    assert_eq!(
        server.stats().peers_all,
        0,
        "both said `stopped` or were stopped"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
async fn npm_webtorrent_seeds_and_downloads_over_webrtc_through_our_websocket_tracker() {
    let server = start(ServerConfig::default()).await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(2_000_000, 13);
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || npm_seed_and_download(&d, &data, &url, "webrtc"))
        .await
        .expect("download succeeded");
    server.shutdown().await;
}

/// Starts `webtorrent serve --port 0 FILE`; returns it with the page URL and magnet link it
/// prints.
fn serve_file(file: &std::path::Path) -> (std::process::Child, String, String) {
    let mut child = common::cli()
        .args(["serve", "--port", "0", "--quiet"])
        .arg(file)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start webtorrent serve");
    let lines = stdout_lines(child.stdout.take().expect("stdout"));
    let page = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("page line");
    let magnet = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("magnet line");
    (child, page, magnet)
}

/// `webtorrent serve FILE` seeds; the npm webtorrent downloads from the magnet it prints.
#[test]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
fn npm_webtorrent_downloads_from_webtorrent_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(4_000_000, 14);
    let file = common::write_file(dir.path(), "ours.bin", &data);
    let (mut child, page, magnet) = serve_file(&file);
    assert!(page.starts_with("http://127.0.0.1:"), "{page}");
    let out = dir.path().join("out");
    let mut dl = common::Script::start(
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
    assert_eq!(done["files"][0]["sha256"], common::sha256_hex(&data));
    dl.stop();
    common::unsafe_free_kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `webtorrent serve FILE` is a bridge: the npm webtorrent (Node, WebRTC through
/// `@roamhq/wrtc`) given only the WebSocket tracker downloads from it over WebRTC.
#[test]
#[ignore = "needs the npm harness in a loopback-only netns (tests/run.sh)"]
fn npm_webtorrent_downloads_over_webrtc_from_webtorrent_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(2_000_000, 15);
    let file = common::write_file(dir.path(), "bridge.bin", &data);
    let (mut child, page, magnet) = serve_file(&file);
    let host = page
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let info_hash = magnet
        .trim_start_matches("magnet:?xt=urn:btih:")
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let ws_only = format!("magnet:?xt=urn:btih:{info_hash}&tr=ws%3A%2F%2F{host}");
    let out = dir.path().join("out");
    let mut dl = common::Script::start(
        "download.mjs",
        &[
            "--magnet",
            &ws_only,
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "90",
        ],
    );
    let wire = dl.wait_event("wire", Duration::from_secs(60));
    assert_eq!(wire["type"], "webrtc", "{wire}");
    assert!(
        wire["peerId"].as_str().unwrap_or("").starts_with("2d5752"),
        "{wire}"
    );
    let done = dl.wait_event("done", Duration::from_secs(100));
    assert_eq!(done["files"][0]["sha256"], common::sha256_hex(&data));
    dl.stop();
    common::unsafe_free_kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The real webtorrent browser bundle in Chromium uses our WebSocket tracker, and our page,
/// served at `/` by our server, uses it by default (see `server_browser.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the npm harness, Debian's chromium, www/pkg and a loopback-only netns"]
async fn browser_peers_use_our_websocket_tracker() {
    let www = webtorrent::server::default_www_dir();
    assert!(
        www.join("pkg/webtorrent_wasm.js").is_file(),
        "build the page's wasm package first (wasm/build.sh)"
    );
    let server = start(ServerConfig::default()).await;
    let script = common::repo_root().join("native/tests/server_browser.mjs");
    let mut child = std::process::Command::new("node")
        .arg(&script)
        .args(["--page", &server.page_url(), "--exit-with-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let lines = stdout_lines(child.stdout.take().expect("stdout"));
    let events = tokio::task::spawn_blocking(move || {
        let mut ok = Vec::new();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(400))
                .expect("the browser script reports in time");
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match v["event"].as_str() {
                Some("ok") => ok.push(v["scenario"].as_str().unwrap_or("").to_string()),
                Some("done") => return ok,
                Some("error") => panic!("browser scenario failed:\n{}", v["message"]),
                _ => {}
            }
        }
    })
    .await
    .expect("browser scenarios");
    assert_eq!(events.len(), 3, "{events:?}");
    // Keep stdin open until it exits (`wait()` would close it first: `--exit-with-stdin`).
    let _stdin = child.stdin.take();
    let mut status = None;
    for _ in 0..600 {
        status = child.try_wait().expect("try_wait");
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("the browser script exits after its report");
    assert!(status.success(), "{status}");
    server.shutdown().await;
}

/// The close frame the server ends `ws` with (other messages skipped).
async fn ws_close_frame(ws: &mut Ws) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    let close = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), close)
        .await
        .expect("closed in time")
        .expect("with a frame")
}

/// The allow-list and the per-address rate limit refuse announces with a reason on HTTP, UDP
/// and WebSocket alike; oversized WebSocket messages and SDPs close the socket with code 1009
/// (message too big) and a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_rate_limit_and_size_refusals() {
    use webtorrent::server::{InfoHashFilter, RateLimit};
    use webtorrent::tracker::TrackerError;
    let allowed = ih(1);
    let server = start(ServerConfig {
        allow: InfoHashFilter::parse_list(&format!("# test\n{}\n", allowed.to_hex())).unwrap(),
        announce_rate: RateLimit {
            per_second: 1,
            burst: 4,
        },
        ..ServerConfig::default()
    })
    .await;
    let client = tracker_client();
    let http_url = server.http_announce_url();
    let udp_url = server.udp_announce_url().expect("UDP runs");
    // Not on the list: refused, on both protocols.
    let p = AnnounceParams::new(ih(2), pid(b"-WR0001-", 1), 7001);
    for url in [&http_url, &udp_url] {
        match client.announce(url, &p).await {
            Err(TrackerError::Failure(m)) => assert!(m.contains("not allowed"), "{url}: {m}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    // Listed: taken until the burst (4, the two refusals above counted nothing) is used up.
    let ok = AnnounceParams::new(allowed, pid(b"-WR0001-", 1), 7001);
    for _ in 0..4 {
        client
            .announce(&http_url, &ok)
            .await
            .expect("within the burst");
    }
    match client.announce(&udp_url, &ok).await {
        Err(TrackerError::Failure(m)) => assert!(m.contains("too many announces"), "{m}"),
        other => panic!("{other:?}"),
    }
    // WebSocket: refused with a failure naming the torrent.
    let mut ws = ws_connect(&server.ws_url()).await;
    ws_send(
        &mut ws,
        &ws_announce(ih(2), pid(b"-WW0208-", 2), Vec::new(), Some(5)),
    )
    .await;
    match ws_recv(&mut ws).await {
        TrackerMessage::Failure(f) => {
            assert!(f.reason.contains("not allowed"), "{}", f.reason);
            assert_eq!(f.info_hash, Some(ih(2)));
        }
        other => panic!("{other:?}"),
    }
    // An SDP over the limit closes the socket with a reason.
    let big = "a".repeat(webtorrent_core::tracker::ws::MAX_SDP_LEN + 1);
    ws_send(
        &mut ws,
        &ws_announce(allowed, pid(b"-WW0208-", 2), vec![offer(1, &big)], Some(5)),
    )
    .await;
    let frame = ws_close_frame(&mut ws).await;
    assert_eq!(u16::from(frame.code), 1009);
    assert!(frame.reason.contains("SDP"), "{}", frame.reason);
    // So does a message over the limit.
    let mut ws = ws_connect(&server.ws_url()).await;
    let huge = "x".repeat(webtorrent_core::tracker::ws::MAX_MESSAGE_LEN + 10);
    let _ = ws.send(Message::text(huge)).await;
    let frame = ws_close_frame(&mut ws).await;
    assert_eq!(u16::from(frame.code), 1009);
    assert!(frame.reason.contains("too large"), "{}", frame.reason);
    server.shutdown().await;
}
