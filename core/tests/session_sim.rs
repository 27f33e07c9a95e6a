//! [`TorrentSession`]s wired together in memory: a tracker that hands out every running
//! node's address, instant links, storage in a `Vec`. Each test drives the sessions only
//! through their inputs and outputs, as a driver would, and checks what arrived by hash.

mod sim;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use webtorrent_core::announce::{AnnounceEvent, TrackerReply};
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::peer::Direction;
use webtorrent_core::piece::{sha1, Bitfield, PieceIndex};
use webtorrent_core::session::{
    CheckOutcome, Event, Input, Output, RtcAction, SessionSettings, Start, TorrentSession,
    TorrentSignal, Transport, MAX_STORE_FAILURES_IN_ROW,
};
use webtorrent_core::signal::OfferId;
use webtorrent_core::{Id20, PeerId, PeerKey, Time};

const TRACKER: &str = "http://tracker.test/announce";
const WS_TRACKER: &str = "ws://tracker.test/";

struct Node {
    s: TorrentSession,
    addr: SocketAddr,
    data: Vec<u8>,
    /// What storage holds before the metadata arrives (magnet into an existing folder).
    on_disk: Option<Vec<u8>>,
    /// Answer `VerifyPiece` (false: keep them, to test back-pressure).
    verify: bool,
    held_verifies: Vec<(PieceIndex, Bytes)>,
    /// How many of the next verified pieces fail to store (`u32::MAX`: a full disk).
    store_fails: u32,
    /// Refuse the torrent when storage is asked for.
    refuse: Option<String>,
    inbox: VecDeque<Input>,
    events: Vec<Event>,
    announced: Vec<AnnounceEvent>,
    rtc: Vec<RtcAction>,
    verified: Vec<u32>,
    open_storage_asked: usize,
    stopped: bool,
}

struct Net {
    nodes: Vec<Node>,
    /// A web server: file URL -> bytes; `corrupt` flips a byte of every body.
    web: HashMap<String, Vec<u8>>,
    web_corrupt: bool,
    web_fetches: usize,
    links: HashMap<PeerKey, (usize, PeerKey)>,
    next_key: u64,
    now: Time,
}

fn peer_id(n: u8) -> PeerId {
    Id20([n; 20])
}

impl Net {
    fn new() -> Self {
        Net {
            nodes: Vec::new(),
            web: HashMap::new(),
            web_corrupt: false,
            web_fetches: 0,
            links: HashMap::new(),
            next_key: 1,
            now: Time::ZERO,
        }
    }

    fn add(&mut self, start: Start, data: Vec<u8>) -> usize {
        self.add_with(start, data, |_| {})
    }

    /// Like [`add`](Self::add), with settings changed by `tune`.
    fn add_with(
        &mut self,
        start: Start,
        data: Vec<u8>,
        tune: impl FnOnce(&mut SessionSettings),
    ) -> usize {
        let i = self.nodes.len();
        let mut settings = SessionSettings::new(peer_id(i as u8 + 1));
        settings.torrent.session.listen_port = Some(6881 + i as u16);
        tune(&mut settings);
        let s = TorrentSession::new(
            settings,
            start,
            vec![vec![TRACKER.to_string()], vec![WS_TRACKER.to_string()]],
            i as u64 + 7,
            self.now,
        )
        .expect("session starts");
        self.nodes.push(Node {
            s,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)), 6881),
            data,
            on_disk: None,
            verify: true,
            held_verifies: Vec::new(),
            store_fails: 0,
            refuse: None,
            inbox: VecDeque::new(),
            events: Vec::new(),
            announced: Vec::new(),
            rtc: Vec::new(),
            verified: Vec::new(),
            open_storage_asked: 0,
            stopped: false,
        });
        i
    }

    fn seed(&mut self, meta: &Arc<Metainfo>, data: &[u8]) -> usize {
        let start = Start::Metainfo {
            meta: meta.clone(),
            have: Bitfield::full(meta.info.num_pieces()),
            storage_ready: true,
        };
        self.add(start, data.to_vec())
    }

    fn leecher(&mut self, meta: &Arc<Metainfo>) -> usize {
        let start = Start::Metainfo {
            meta: meta.clone(),
            have: Bitfield::new(meta.info.num_pieces()),
            storage_ready: false,
        };
        self.add(start, Vec::new())
    }

    fn magnet(&mut self, meta: &Arc<Metainfo>) -> usize {
        self.add(Start::InfoHash(meta.info_hash), Vec::new())
    }

    fn input(&mut self, i: usize, input: Input) {
        self.nodes[i].inbox.push_back(input);
    }

    fn key(&mut self) -> PeerKey {
        self.next_key += 1;
        PeerKey(self.next_key)
    }

    /// One round: inputs in, outputs carried out, wire bytes moved.
    fn step(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].stopped {
                continue;
            }
            if self.nodes[i].s.poll_timeout() <= now {
                self.nodes[i].s.handle_input(now, Input::Timeout);
            }
            while let Some(input) = self.nodes[i].inbox.pop_front() {
                self.nodes[i].s.handle_input(now, input);
            }
            while let Some(out) = self.nodes[i].s.poll_output() {
                self.on_output(i, out);
            }
            for key in self.nodes[i].s.pending_transmits() {
                while let Some(b) = self.nodes[i].s.poll_transmit_to(key) {
                    if let Some(&(j, other)) = self.links.get(&key) {
                        let data = BytesMut::from(&b[..]);
                        self.input(j, Input::PeerData { key: other, data });
                    }
                }
            }
        }
        self.now += Duration::from_millis(5);
    }

    fn on_output(&mut self, i: usize, out: Output) {
        match out {
            Output::Connect(addr) => {
                let target = self.nodes.iter().position(|n| n.addr == addr && !n.stopped);
                let Some(j) = target else {
                    self.input(i, Input::ConnectFailed { addr });
                    return;
                };
                let (ka, kb) = (self.key(), self.key());
                self.links.insert(ka, (j, kb));
                self.links.insert(kb, (i, ka));
                let from = self.nodes[i].addr;
                self.input(
                    i,
                    Input::PeerConnected {
                        key: ka,
                        addr: Some(addr),
                        direction: Direction::Outgoing,
                        transport: Transport::Tcp,
                    },
                );
                self.input(
                    j,
                    Input::PeerConnected {
                        key: kb,
                        addr: Some(from),
                        direction: Direction::Incoming,
                        transport: Transport::Tcp,
                    },
                );
            }
            Output::Disconnect(key) => {
                if let Some((j, other)) = self.links.remove(&key) {
                    self.links.remove(&other);
                    self.input(j, Input::PeerClosed { key: other });
                }
            }
            Output::ReadPiece {
                piece,
                offset,
                length,
                ..
            } => {
                let n = &self.nodes[i];
                let (s, e) = (offset as usize, offset as usize + length as usize);
                let data = n.data.get(s..e).map(Bytes::copy_from_slice);
                self.input(i, Input::PieceRead { piece, data });
            }
            Output::VerifyPiece {
                piece,
                offset,
                data,
                expected,
            } => {
                let n = &mut self.nodes[i];
                if !n.verify {
                    n.held_verifies.push((piece, data));
                    return;
                }
                let outcome = if sha1(&data) != expected {
                    CheckOutcome::HashMismatch
                } else if n.store_fails > 0 {
                    if n.store_fails != u32::MAX {
                        n.store_fails -= 1;
                    }
                    CheckOutcome::StoreFailed
                } else {
                    let s = offset as usize;
                    n.data[s..s + data.len()].copy_from_slice(&data);
                    n.verified.push(piece.get());
                    CheckOutcome::Stored
                };
                self.input(
                    i,
                    Input::PieceChecked {
                        piece,
                        outcome,
                        data,
                    },
                );
            }
            Output::OpenStorage(meta) => {
                let n = &mut self.nodes[i];
                n.open_storage_asked += 1;
                if let Some(reason) = n.refuse.clone() {
                    self.input(i, Input::Refuse(reason));
                    return;
                }
                let total = meta.info.total_length() as usize;
                let (data, have) = match n.on_disk.take() {
                    Some(d) => {
                        let layout = meta.info.layout;
                        let mut have = Bitfield::new(meta.info.num_pieces());
                        for p in layout.pieces() {
                            let s = layout.piece_offset(p) as usize;
                            let e = s + layout.piece_len(p) as usize;
                            if sha1(&d[s..e]) == meta.info.piece_hash(p) {
                                have.set(p);
                            }
                        }
                        (d, Some(have))
                    }
                    None => (vec![0; total], None),
                };
                n.data = data;
                self.input(i, Input::StorageReady { have });
            }
            Output::Announce(job) => {
                self.nodes[i].announced.push(job.event);
                let peers: Vec<SocketAddr> = self
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(j, n)| *j != i && !n.stopped)
                    .map(|(_, n)| n.addr)
                    .collect();
                let reply = TrackerReply {
                    interval: Some(Duration::from_secs(1800)),
                    peers_count: peers.len(),
                    ..TrackerReply::default()
                };
                self.input(
                    i,
                    Input::Announced {
                        job: job.id,
                        result: Ok(reply),
                        peers,
                    },
                );
            }
            Output::Rtc(action) => {
                // The WebSocket tracker answers announces at once, with no offers.
                if let RtcAction::Announce { params, .. } = &action {
                    self.input(
                        i,
                        Input::Announced {
                            job: params.job,
                            result: Ok(TrackerReply::default()),
                            peers: Vec::new(),
                        },
                    );
                }
                self.nodes[i].rtc.push(action);
            }
            Output::Fetch { key, fetch } => {
                self.web_fetches += 1;
                let mut bodies = Vec::new();
                let mut result = Ok(());
                for r in &fetch.requests {
                    let body = self
                        .web
                        .get(&r.url)
                        .and_then(|f| f.get(r.range.start as usize..r.range.end as usize));
                    match body {
                        Some(b) => {
                            let mut b = b.to_vec();
                            if self.web_corrupt {
                                b[0] ^= 0xff;
                            }
                            bodies.push(Bytes::from(b));
                        }
                        None => result = Err(format!("404 for {}", r.url)),
                    }
                }
                let result = result.map(|()| bodies);
                self.input(
                    i,
                    Input::Fetched {
                        key,
                        id: fetch.id,
                        result,
                    },
                );
            }
            Output::Event(e) => self.nodes[i].events.push(e),
            Output::Stopped => self.nodes[i].stopped = true,
        }
    }

    /// Steps until `done` holds or `limit` of simulated time passes.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }
}

fn has_event(n: &Node, f: impl Fn(&Event) -> bool) -> bool {
    n.events.iter().any(f)
}

fn done_event(n: &Node) -> Option<bool> {
    n.events.iter().find_map(|e| match e {
        Event::Done { complete } => Some(*complete),
        _ => None,
    })
}

fn torrent(len: usize, files: &[usize], seed: u64) -> (Arc<Metainfo>, Vec<u8>) {
    let data = sim::content(len, seed);
    let meta = sim::multi_file_torrent(&data, files, 16 * 1024);
    (meta, data)
}

#[test]
fn magnet_leecher_gets_metadata_data_and_announces_completed_then_stopped() {
    let (meta, data) = torrent(300_000, &[100_000, 200_000], 1);
    let mut net = Net::new();
    let seed = net.seed(&meta, &data);
    let leech = net.magnet(&meta);
    assert!(
        net.run(Duration::from_secs(60), |n| done_event(&n.nodes[leech])
            .is_some())
    );
    let l = &net.nodes[leech];
    assert_eq!(l.data, data, "downloaded bytes match");
    assert_eq!(l.open_storage_asked, 1);
    assert_eq!(done_event(l), Some(true));
    assert!(has_event(l, |e| matches!(e, Event::Metadata)));
    assert!(has_event(l, |e| matches!(e, Event::Ready)));
    // `completed` once the download is done (after the HTTP tracker replied, on both trackers).
    assert_eq!(
        l.announced,
        vec![AnnounceEvent::Started, AnnounceEvent::Completed]
    );
    // The seed started complete: no `completed`, and it was Done from the start.
    assert_eq!(net.nodes[seed].announced, vec![AnnounceEvent::Started]);
    assert_eq!(done_event(&net.nodes[seed]), Some(true));
    // Stop: `stopped` goes out, and once answered the session ends, leaving the WS tracker.
    net.input(leech, Input::Stop);
    assert!(net.run(Duration::from_secs(5), |n| n.nodes[leech].stopped));
    let l = &net.nodes[leech];
    assert_eq!(l.announced.last(), Some(&AnnounceEvent::Stopped));
    assert!(l
        .rtc
        .iter()
        .any(|a| matches!(a, RtcAction::Leave { url } if &**url == WS_TRACKER)));
}

#[test]
fn stop_without_a_tracker_reply_ends_at_the_stop_timeout() {
    let (meta, data) = torrent(50_000, &[50_000], 2);
    let mut net = Net::new();
    let seed = net.seed(&meta, &data);
    // `started` is sent and answered.
    net.step();
    net.step();
    assert_eq!(net.nodes[seed].announced, vec![AnnounceEvent::Started]);
    // The tracker never answers `stopped` here: the outputs are taken by hand.
    let now = net.now;
    net.nodes[seed].s.handle_input(now, Input::Stop);
    let mut outs = Vec::new();
    while let Some(o) = net.nodes[seed].s.poll_output() {
        outs.push(o);
    }
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Announce(j) if j.event == AnnounceEvent::Stopped)));
    assert!(!outs.iter().any(|o| matches!(o, Output::Stopped)));
    let deadline = net.nodes[seed].s.poll_timeout();
    assert!(deadline > now);
    net.nodes[seed]
        .s
        .handle_input(deadline + Duration::from_secs(60), Input::Timeout);
    let mut stopped = false;
    while let Some(o) = net.nodes[seed].s.poll_output() {
        stopped |= matches!(o, Output::Stopped);
    }
    assert!(stopped, "the session ends once the stop timeout passed");
}

#[test]
fn pause_drops_peers_and_refuses_new_ones_resume_finishes() {
    let (meta, data) = torrent(2_000_000, &[2_000_000], 3);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let leech = net.leecher(&meta);
    // Let some pieces through, then pause.
    assert!(
        net.run(Duration::from_secs(60), |n| n.nodes[leech].verified.len()
            >= 5)
    );
    net.input(leech, Input::Pause);
    net.step();
    net.step();
    assert!(net.nodes[leech].s.is_paused());
    assert_eq!(net.nodes[leech].s.num_peers(), 0);
    assert!(net.links.is_empty(), "every connection was closed");
    let verified = net.nodes[leech].verified.len();
    // While paused nothing moves, and an incoming connection is refused.
    net.run(Duration::from_secs(5), |_| false);
    assert_eq!(net.nodes[leech].verified.len(), verified);
    let k = net.key();
    net.input(
        leech,
        Input::PeerConnected {
            key: k,
            addr: Some(SocketAddr::from(([10, 9, 9, 9], 1))),
            direction: Direction::Incoming,
            transport: Transport::Tcp,
        },
    );
    net.nodes[leech].rtc.clear();
    let now = net.now;
    while let Some(i) = net.nodes[leech].inbox.pop_front() {
        net.nodes[leech].s.handle_input(now, i);
    }
    let mut refused = false;
    while let Some(o) = net.nodes[leech].s.poll_output() {
        refused |= matches!(o, Output::Disconnect(key) if key == k);
    }
    assert!(refused, "a paused session refuses connections");
    net.input(leech, Input::Resume);
    assert!(
        net.run(Duration::from_secs(120), |n| done_event(&n.nodes[leech])
            .is_some())
    );
    assert_eq!(net.nodes[leech].data, data);
    let a = &net.nodes[leech].announced;
    assert!(
        a.contains(&AnnounceEvent::Stopped),
        "pausing announces stopped: {a:?}"
    );
    assert_eq!(a.last(), Some(&AnnounceEvent::Completed));
}

#[test]
fn file_selection_downloads_only_wanted_pieces_and_is_not_completed() {
    let (meta, data) = torrent(400_000, &[100_000, 150_000, 150_000], 4);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let leech = net.leecher(&meta);
    let now = net.now;
    net.nodes[leech]
        .s
        .set_files_wanted(now, &[false, true, false])
        .expect("selection accepted");
    assert!(
        net.run(Duration::from_secs(60), |n| done_event(&n.nodes[leech])
            .is_some())
    );
    let l = &net.nodes[leech];
    assert_eq!(
        done_event(l),
        Some(false),
        "the selection is done, not the torrent"
    );
    assert!(!l.s.is_complete());
    // The second file's bytes arrived intact.
    assert_eq!(&l.data[100_000..250_000], &data[100_000..250_000]);
    // Only pieces overlapping it were fetched.
    let layout = meta.info.layout;
    for p in &l.verified {
        let p = layout.piece(*p).expect("piece index");
        let s = layout.piece_offset(p);
        let e = s + u64::from(layout.piece_len(p));
        assert!(
            e > 100_000 && s < 250_000,
            "piece {p} is outside the wanted file"
        );
    }
    assert!(!l.announced.contains(&AnnounceEvent::Completed));
}

#[test]
fn verify_backlog_holds_requests_instead_of_buffering_the_torrent() {
    let (meta, data) = torrent(4_000_000, &[4_000_000], 5);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let leech = net.leecher(&meta);
    net.nodes[leech].verify = false;
    net.run(Duration::from_secs(30), |_| false);
    let l = &net.nodes[leech];
    let settings = SessionSettings::new(peer_id(1));
    // Handed out: at most max_verifying; the rest waits in the session, bounded by the
    // backlog plus what was already requested when the hold began.
    assert_eq!(l.held_verifies.len(), settings.max_verifying);
    let stats = net.nodes[leech].s.stats(net.now);
    let received = stats.downloaded;
    assert!(
        received < data.len() as u64 / 2,
        "requests were held: {received} of {} bytes fetched",
        data.len()
    );
    // Releasing the verifications lets the download finish.
    net.nodes[leech].verify = true;
    let held = std::mem::take(&mut net.nodes[leech].held_verifies);
    for (piece, buf) in held {
        let s = meta.info.layout.piece_offset(piece) as usize;
        net.nodes[leech].data[s..s + buf.len()].copy_from_slice(&buf);
        net.input(
            leech,
            Input::PieceChecked {
                piece,
                outcome: CheckOutcome::Stored,
                data: buf,
            },
        );
    }
    assert!(
        net.run(Duration::from_secs(120), |n| done_event(&n.nodes[leech])
            .is_some())
    );
    assert_eq!(net.nodes[leech].data, data);
}

#[test]
fn magnet_into_a_folder_with_some_data_fetches_only_the_rest() {
    let (meta, data) = torrent(320_000, &[320_000], 6);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let leech = net.magnet(&meta);
    // The first half is already on disk; the rest is garbage.
    let mut disk = data.clone();
    for b in &mut disk[160_000..] {
        *b = 0xAA;
    }
    net.nodes[leech].on_disk = Some(disk);
    assert!(
        net.run(Duration::from_secs(60), |n| done_event(&n.nodes[leech])
            .is_some())
    );
    let l = &net.nodes[leech];
    assert_eq!(l.data, data);
    let first_missing = (160_000 / (16 * 1024)) as u32;
    assert!(
        l.verified.iter().all(|p| *p >= first_missing),
        "pieces on disk were fetched again: {:?}",
        l.verified
    );
}

#[test]
fn a_refused_torrent_drops_its_peers_and_announces_stopped() {
    let (meta, data) = torrent(100_000, &[100_000], 7);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let leech = net.magnet(&meta);
    net.nodes[leech].refuse = Some("too large".into());
    assert!(net.run(Duration::from_secs(30), |n| has_event(
        &n.nodes[leech],
        |e| matches!(e, Event::Refused(_))
    )));
    net.run(Duration::from_secs(2), |_| false);
    let l = &net.nodes[leech];
    assert_eq!(l.s.refused(), Some("too large"));
    assert_eq!(l.s.num_peers(), 0);
    assert!(l.verified.is_empty());
    assert_eq!(l.announced.last(), Some(&AnnounceEvent::Stopped));
    // Resume does not undo a refusal.
    net.input(leech, Input::Resume);
    net.run(Duration::from_secs(2), |_| false);
    assert!(net.nodes[leech].s.is_paused());
}

#[test]
fn storage_that_keeps_failing_stops_the_download_instead_of_fetching_forever() {
    let (meta, data) = torrent(400_000, &[400_000], 9);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let leech = net.magnet(&meta);
    net.nodes[leech].store_fails = u32::MAX;
    assert!(net.run(Duration::from_secs(60), |n| has_event(
        &n.nodes[leech],
        |e| matches!(e, Event::Refused(_))
    )));
    let l = &net.nodes[leech];
    let failures = l
        .events
        .iter()
        .filter(|e| matches!(e, Event::StoreFailed(_)))
        .count();
    assert_eq!(failures, MAX_STORE_FAILURES_IN_ROW as usize);
    assert!(l.s.refused().is_some_and(|r| r.contains("disk full")));
    net.run(Duration::from_secs(2), |_| false);
    assert_eq!(net.nodes[leech].s.num_peers(), 0);
}

#[test]
fn a_few_pieces_failing_to_store_are_fetched_again() {
    let (meta, data) = torrent(400_000, &[400_000], 10);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let leech = net.magnet(&meta);
    net.nodes[leech].store_fails = MAX_STORE_FAILURES_IN_ROW - 1;
    assert!(
        net.run(Duration::from_secs(60), |n| done_event(&n.nodes[leech])
            .is_some())
    );
    let l = &net.nodes[leech];
    assert_eq!(l.data, data);
    assert!(l.s.refused().is_none());
    assert_eq!(
        l.events
            .iter()
            .filter(|e| matches!(e, Event::StoreFailed(_)))
            .count(),
        (MAX_STORE_FAILURES_IN_ROW - 1) as usize
    );
}

fn offer_id(n: u8) -> OfferId {
    Id20([n; 20])
}

#[test]
fn webrtc_routes_answer_wanted_offers_refuse_the_rest_and_abort_dropped_answers() {
    let (meta, data) = torrent(50_000, &[50_000], 8);
    let mut net = Net::new();
    let me = net.seed(&meta, &data);
    net.step();
    let url: Arc<str> = Arc::from(WS_TRACKER);
    assert!(net.nodes[me]
        .rtc
        .iter()
        .any(|a| matches!(a, RtcAction::Announce { url: u, .. } if *u == url)));
    let signal = |s: TorrentSignal| Input::Signal {
        url: url.clone(),
        signal: s,
    };
    let act = |net: &mut Net, input: Input| -> Vec<RtcAction> {
        net.nodes[me].rtc.clear();
        net.input(me, input);
        net.step();
        std::mem::take(&mut net.nodes[me].rtc)
    };
    // A remote offer is answered.
    let a = act(
        &mut net,
        signal(TorrentSignal::Offer {
            peer_id: peer_id(50),
            offer_id: offer_id(1),
            sdp: "v=0".into(),
        }),
    );
    assert!(matches!(&a[..], [RtcAction::AnswerOffer { peer_id: p, .. }] if *p == peer_id(50)));
    // Our own offer coming back through the tracker is refused.
    let a = act(
        &mut net,
        signal(TorrentSignal::Offer {
            peer_id: peer_id(1),
            offer_id: offer_id(2),
            sdp: "v=0".into(),
        }),
    );
    assert!(matches!(&a[..], [RtcAction::RefuseOffer { .. }]));
    // The tracker drops our answer: the attempt is given up.
    let a = act(
        &mut net,
        signal(TorrentSignal::DropAnswer {
            peer_id: peer_id(50),
            offer_id: offer_id(1),
        }),
    );
    assert!(matches!(&a[..], [RtcAction::Abort { peer_id: p }] if *p == peer_id(50)));
    // An answer to one of our offers is applied; the channel opening makes it a peer.
    let a = act(
        &mut net,
        signal(TorrentSignal::Answer {
            peer_id: peer_id(60),
            offer_id: offer_id(3),
            sdp: "v=0".into(),
        }),
    );
    assert!(matches!(&a[..], [RtcAction::ApplyAnswer { offer_id: o, .. }] if *o == offer_id(3)));
    // A dropped offer is closed; being asked for offers makes them.
    let a = act(
        &mut net,
        signal(TorrentSignal::DropOffer {
            offer_id: offer_id(4),
        }),
    );
    assert!(matches!(&a[..], [RtcAction::DropOffer { .. }]));
    let a = act(
        &mut net,
        signal(TorrentSignal::CreateOffer {
            offer_id: offer_id(5),
        }),
    );
    assert!(matches!(&a[..], [RtcAction::CreateOffer { .. }]));
    // At the peer limit offers are refused.
    let mut settings = SessionSettings::new(peer_id(90));
    settings.torrent.max_peers = 1;
    let mut s = TorrentSession::new(
        settings,
        Start::Metainfo {
            meta: meta.clone(),
            have: Bitfield::full(meta.info.num_pieces()),
            storage_ready: true,
        },
        vec![vec![WS_TRACKER.into()]],
        1,
        Time::ZERO,
    )
    .expect("session");
    let offer = |n: u8| Input::Signal {
        url: url.clone(),
        signal: TorrentSignal::Offer {
            peer_id: peer_id(n),
            offer_id: offer_id(n),
            sdp: "v=0".into(),
        },
    };
    s.handle_input(Time::ZERO, offer(70));
    s.handle_input(Time::ZERO, offer(71));
    let mut answered = 0;
    let mut refused = 0;
    while let Some(o) = s.poll_output() {
        match o {
            Output::Rtc(RtcAction::AnswerOffer { .. }) => answered += 1,
            Output::Rtc(RtcAction::RefuseOffer { .. }) => refused += 1,
            _ => {}
        }
    }
    assert_eq!((answered, refused), (1, 1));
    // A connection attempt that never reports back stops counting after the timeout.
    let later = Time::ZERO + Duration::from_secs(120);
    s.handle_input(later, Input::Timeout);
    s.handle_input(later, offer(72));
    let mut aborted = false;
    let mut answered = false;
    while let Some(o) = s.poll_output() {
        aborted |= matches!(o, Output::Rtc(RtcAction::Abort { peer_id: p }) if p == peer_id(70));
        answered |=
            matches!(o, Output::Rtc(RtcAction::AnswerOffer { peer_id: p, .. }) if p == peer_id(72));
    }
    assert!(aborted && answered);
}

/// `meta` with a web seed at `base`, and the web server's files for it.
fn with_web_seed(net: &mut Net, meta: &Arc<Metainfo>, data: &[u8], base: &str) -> Arc<Metainfo> {
    let mut m = (**meta).clone();
    m.url_list = vec![base.to_string()];
    let urls = webtorrent_core::webseed::file_urls(base, &m).unwrap();
    for (f, url) in m.info.files.iter().zip(urls) {
        let (s, e) = (f.offset as usize, (f.offset + f.length) as usize);
        net.web.insert(url, data[s..e].to_vec());
    }
    Arc::new(m)
}

#[test]
fn a_web_seed_alone_completes_a_download() {
    let (meta, data) = torrent(300_000, &[100_000, 150_000, 50_000], 21);
    let mut net = Net::new();
    let meta = with_web_seed(&mut net, &meta, &data, "http://web.test/files/");
    let l = net.leecher(&meta);
    assert!(net.run(Duration::from_secs(60), |n| done_event(&n.nodes[l])
        == Some(true)));
    assert!(net.nodes[l].data == data, "the bytes differ");
    assert!(net.web_fetches > 0);
    // Requests were merged: far fewer fetches than 16 KiB blocks.
    assert!(
        net.web_fetches < 300_000 / 16384,
        "{} fetches",
        net.web_fetches
    );
    assert!(has_event(&net.nodes[l], |e| matches!(
        e,
        Event::PeerConnected {
            transport: Transport::WebSeed,
            ..
        }
    )));
    // Complete: the web seed is let go.
    assert_eq!(net.nodes[l].s.webseed_counts().0, 0);
}

#[test]
fn a_web_seed_sending_wrong_bytes_is_dropped_and_peers_finish() {
    let (meta, data) = torrent(200_000, &[200_000], 22);
    let mut net = Net::new();
    let meta = with_web_seed(&mut net, &meta, &data, "http://web.test/f.bin");
    net.web_corrupt = true;
    net.seed(&meta, &data);
    let l = net.leecher(&meta);
    assert!(
        net.run(Duration::from_secs(120), |n| done_event(&n.nodes[l])
            == Some(true))
    );
    assert!(net.nodes[l].data == data, "the bytes differ");
    assert!(has_event(&net.nodes[l], |e| matches!(
        e,
        Event::WebSeedFailed { retry: false, .. }
    )));
    assert_eq!(net.nodes[l].s.webseed_counts().2, 1);
}

#[test]
fn a_failing_web_seed_is_retried_later() {
    let (meta, data) = torrent(100_000, &[100_000], 23);
    let mut net = Net::new();
    let meta = with_web_seed(&mut net, &meta, &data, "http://web.test/f.bin");
    let files = std::mem::take(&mut net.web);
    let l = net.leecher(&meta);
    // The server answers 404 at first.
    assert!(!net.run(Duration::from_secs(5), |n| done_event(&n.nodes[l])
        .is_some()));
    assert!(has_event(&net.nodes[l], |e| matches!(
        e,
        Event::WebSeedFailed { retry: true, .. }
    )));
    net.web = files;
    assert!(
        net.run(Duration::from_secs(120), |n| done_event(&n.nodes[l])
            == Some(true))
    );
    assert!(net.nodes[l].data == data);
}

/// The order pieces were verified in by a leecher with a stream reader near the end of the
/// second of two files (only the first file selected), or without one (both selected).
fn verified_order(reader: bool) -> (Vec<u32>, Net, usize, Vec<u8>) {
    let (meta, data) = torrent(40 * 16384, &[20 * 16384, 20 * 16384], 24);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let l = net.leecher(&meta);
    let now = net.now;
    // Without a reader both files are wanted, so that the control could fetch 36 to 38.
    net.nodes[l]
        .s
        .set_files_wanted(now, &[true, !reader])
        .unwrap();
    if reader {
        let at = 36 * 16384;
        net.nodes[l]
            .s
            .set_reader_window(now, 7, Some(at..at + 3 * 16384))
            .unwrap();
        // The reader's file is selected for it.
        assert_eq!(net.nodes[l].s.files_wanted(), Some(vec![true, true]));
        assert_eq!(net.nodes[l].s.num_readers(), 1);
    }
    net.input(l, Input::StorageReady { have: None });
    assert!(net.run(Duration::from_secs(30), |n| n.nodes[l].verified.len() >= 16));
    (net.nodes[l].verified.clone(), net, l, data)
}

#[test]
fn reader_windows_come_first_and_select_their_file() {
    // Choked at first, the leecher fetches its allowed-fast pieces (BEP 6); right after the
    // unchoke come the reader's pieces. The same swarm without the reader (deterministic)
    // is the control.
    let window_early = |order: &[u32]| [36, 37, 38].iter().all(|p| order[..16].contains(p));
    let (control, ..) = verified_order(false);
    assert!(!window_early(&control), "{control:?}");
    let (order, mut net, l, data) = verified_order(true);
    assert!(window_early(&order), "{order:?}");
    // Out of range, and gone.
    let now = net.now;
    let total = 40 * 16384;
    assert!(net.nodes[l]
        .s
        .set_reader_window(now, 8, Some(total..total + 1))
        .is_err());
    net.nodes[l].s.set_reader_window(now, 7, None).unwrap();
    assert_eq!(net.nodes[l].s.num_readers(), 0);
    assert!(net.run(Duration::from_secs(60), |n| done_event(&n.nodes[l])
        == Some(true)));
    assert!(net.nodes[l].data == data);
}

#[test]
fn piece_ranges_are_fetched_whatever_the_files() {
    let (meta, data) = torrent(40 * 16384, &[20 * 16384, 20 * 16384], 25);
    let mut net = Net::new();
    net.seed(&meta, &data);
    let l = net.leecher(&meta);
    let now = net.now;
    // Pieces 5 to 7 and 30 (webtorrent's torrent.select), and no file.
    net.nodes[l]
        .s
        .set_piece_ranges_wanted(now, &[5..8, 30..31])
        .unwrap();
    net.nodes[l]
        .s
        .set_files_wanted(now, &[false, false])
        .unwrap();
    assert!(net.nodes[l]
        .s
        .set_piece_ranges_wanted(now, std::slice::from_ref(&(39..41)))
        .is_err());
    net.input(l, Input::StorageReady { have: None });
    assert!(net.run(Duration::from_secs(30), |n| done_event(&n.nodes[l])
        == Some(false)));
    net.run(Duration::from_secs(1), |_| false);
    let mut got = net.nodes[l].verified.clone();
    got.sort_unstable();
    assert_eq!(got, [5, 6, 7, 30]);
    // Cleared: only the files count again; the second file brings pieces 20 to 39.
    let now = net.now;
    net.nodes[l].s.set_piece_ranges_wanted(now, &[]).unwrap();
    net.nodes[l]
        .s
        .set_files_wanted(now, &[false, true])
        .unwrap();
    assert!(net.run(Duration::from_secs(30), |n| {
        (20..40).all(|p| n.nodes[l].verified.contains(&p))
    }));
    assert!(!net.nodes[l].verified.iter().any(|p| (8..20).contains(p)));
}

#[test]
fn a_reader_window_moves_when_the_reader_enters_another_piece() {
    use webtorrent_core::session::{ReaderWindow, READAHEAD_BYTES};
    let pl = 256 * 1024;
    let mut w = ReaderWindow::default();
    assert_eq!(
        w.update(1000, 1 << 30, pl),
        Some(1000..1000 + READAHEAD_BYTES)
    );
    // Same piece: nothing to send.
    assert_eq!(w.update(pl - 1, 1 << 30, pl), None);
    // Next piece; cut at the end of what is read; at least four large pieces ahead.
    assert_eq!(w.update(pl, pl + 10, pl), Some(pl..pl + 10));
    let big = 4 << 20;
    assert_eq!(w.update(10 * big, 1 << 40, big), Some(10 * big..14 * big));
}

#[test]
fn a_download_left_alone_asks_the_tracker_again_at_its_min_interval_and_a_seed_does_not() {
    let (meta, data) = torrent(200_000, &[200_000], 11);
    let mut net = Net::new();
    // The leecher announces while nobody else is there: the tracker's reply says come back
    // in 30 minutes (the sim's interval), and its min interval is our floor (60 s).
    let leecher = net.leecher(&meta);
    assert!(net.run(Duration::from_secs(1), |n| !n.nodes[leecher]
        .announced
        .is_empty()));
    // Then a seed that cannot dial anyone (as a browser page) arrives.
    let start = Start::Metainfo {
        meta: meta.clone(),
        have: Bitfield::full(meta.info.num_pieces()),
        storage_ready: true,
    };
    let seed = net.add_with(start, data.clone(), |s| s.torrent.max_connecting = 0);
    assert!(
        !net.run(Duration::from_secs(50), |n| n.nodes[leecher]
            .s
            .is_complete()),
        "the leecher cannot find the seed before its min interval"
    );
    assert!(
        net.run(Duration::from_secs(20), |n| n.nodes[leecher]
            .s
            .is_complete()),
        "a leecher with no peer announces again once its min interval allows"
    );
    assert_eq!(net.nodes[leecher].data, data);
    // Each tracker heard `started`; then one early announce each at most (the WebSocket
    // tracker's comes 5 ms later, when the leecher has its peer and needs it no more).
    let n = net.nodes[leecher].announced.len();
    assert!((3..=4).contains(&n), "{n} announces");
    // The seed, alone or not, waits out the interval like everyone else.
    let announced = net.nodes[seed].announced.len();
    assert!(
        !net.run(Duration::from_secs(300), |n| n.nodes[seed].announced.len()
            > announced)
    );
}
