//! Unit tests of the torrent state machine: remote peers speak to it through their own
//! [`PeerSession`]s.

use super::assembly::aligned_piece_buf;
use super::*;
use crate::creator::TorrentCreator;
use crate::id::Id20;
use crate::peer::{Direction, SessionEvent};
use crate::wire::Message;

fn meta(len: usize) -> (Arc<Metainfo>, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let t = TorrentCreator::new()
        .with_piece_length(16384)
        .create_single_from_reader("t", len as u64, &data[..])
        .unwrap();
    (Arc::new(t.metainfo), data)
}

/// A remote peer speaking through its own session.
struct Remote {
    key: PeerKey,
    s: PeerSession,
}

fn connect(t: &mut Torrent, now: Time, n: u8, meta: &Metainfo) -> Remote {
    let key = PeerKey(u64::from(n));
    let addr = SocketAddr::from(([10, 0, 0, n], 6881));
    t.add_peer(now, key, Some(addr), Direction::Incoming)
        .unwrap();
    let s = PeerSession::new(
        SessionConfig::new(meta.info_hash, Id20([n; 20])),
        Direction::Outgoing,
        now,
    );
    let mut r = Remote { key, s };
    exchange(t, now, &mut r);
    r
}

/// Moves bytes both ways until quiet.
fn exchange(t: &mut Torrent, now: Time, r: &mut Remote) {
    for _ in 0..20 {
        let mut moved = false;
        while let Some(b) = r.s.poll_chunk() {
            t.peer_data(now, r.key, &b);
            moved = true;
        }
        while let Some(b) = t.poll_transmit_to(r.key) {
            r.s.receive(now, &b).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

fn unchoked(t: &Torrent) -> Vec<u64> {
    let mut v: Vec<u64> = t
        .peers
        .iter()
        .filter(|(_, p)| !p.session.am_choking())
        .map(|(k, _)| k.0)
        .collect();
    v.sort_unstable();
    v
}

fn reads(t: &mut Torrent) -> Vec<(u32, u64, u32)> {
    let mut v = Vec::new();
    while let Some(o) = t.poll_output() {
        if let Output::ReadPiece {
            piece,
            offset,
            length,
        } = o
        {
            v.push((piece.get(), offset, length));
        }
    }
    v
}

fn blocks(r: &mut Remote) -> Vec<(BlockRequest, Bytes)> {
    std::iter::from_fn(|| r.s.poll_event())
        .filter_map(|e| match e {
            SessionEvent::Block { request, data, .. } => Some((request, data)),
            _ => None,
        })
        .collect()
}

#[test]
fn uploads_read_each_piece_once_and_serve_blocks_from_it() {
    // 64 KiB pieces, four blocks each.
    let data: Vec<u8> = (0..6 * 65536).map(|i| (i * 13 % 251) as u8).collect();
    let made = TorrentCreator::new()
        .with_piece_length(65536)
        .create_single_from_reader("t", data.len() as u64, &data[..])
        .unwrap();
    let m = Arc::new(made.metainfo);
    let mut cfg = TorrentConfig::new(Id20([1; 20]));
    cfg.max_piece_reads = 2;
    cfg.upload_cache_bytes = 0; // still two pieces
    let mut t = Torrent::new(cfg, m.clone(), Bitfield::full(6), 7, Time::ZERO).unwrap();
    let now = Time::ZERO;
    let mut a = connect(&mut t, now, 2, &m);
    let mut b = connect(&mut t, now, 3, &m);
    for r in [&mut a, &mut b] {
        r.s.set_interested(now, true);
        exchange(&mut t, now, r);
    }
    // Four blocks of piece 1 from A: one read.
    for i in 0..4 {
        a.s.request(now, BlockRequest::new(1, i * 16384, 16384));
    }
    exchange(&mut t, now, &mut a);
    assert_eq!(reads(&mut t), [(1, 65536, 65536)]);
    t.piece_read(
        now,
        m.info.layout.piece(1).unwrap(),
        Some(Bytes::copy_from_slice(&data[65536..131072])),
    );
    exchange(&mut t, now, &mut a);
    let got = blocks(&mut a);
    assert_eq!(got.len(), 4);
    for (r, d) in &got {
        let off = r.index as usize * 65536 + r.begin as usize;
        assert_eq!(&d[..], &data[off..off + 16384]);
    }
    // B asks for piece 1 too: served from the cache, no new read.
    b.s.request(now, BlockRequest::new(1, 32768, 16384));
    exchange(&mut t, now, &mut b);
    assert_eq!(reads(&mut t), []);
    assert_eq!(blocks(&mut b).len(), 1);
    // Three other pieces at once: two reads (the limit), the third waits for one of them.
    for p in [2, 3, 4] {
        b.s.request(now, BlockRequest::new(p, 0, 16384));
    }
    exchange(&mut t, now, &mut b);
    assert_eq!(reads(&mut t), [(2, 131072, 65536), (3, 196608, 65536)]);
    // Storage failed for piece 2: rejected (fast extension); piece 4's read goes out.
    t.piece_read(now, m.info.layout.piece(2).unwrap(), None);
    exchange(&mut t, now, &mut b);
    assert_eq!(reads(&mut t), [(4, 262144, 65536)]);
    let evs: Vec<SessionEvent> = std::iter::from_fn(|| b.s.poll_event()).collect();
    assert!(
        evs.contains(&SessionEvent::Rejected(BlockRequest::new(2, 0, 16384))),
        "{evs:?}"
    );
    // Bytes of the wrong length count as a failed read.
    t.piece_read(
        now,
        m.info.layout.piece(3).unwrap(),
        Some(Bytes::from_static(b"short")),
    );
    t.piece_read(
        now,
        m.info.layout.piece(4).unwrap(),
        Some(Bytes::copy_from_slice(&data[262144..327680])),
    );
    exchange(&mut t, now, &mut b);
    let got = blocks(&mut b);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, BlockRequest::new(4, 0, 16384));
    // The cache holds two pieces (1 and 4); reading 5 evicts the least recently used, 1,
    // which is then read again.
    b.s.request(now, BlockRequest::new(5, 0, 16384));
    exchange(&mut t, now, &mut b);
    assert_eq!(reads(&mut t), [(5, 327680, 65536)]);
    t.piece_read(
        now,
        m.info.layout.piece(5).unwrap(),
        Some(Bytes::copy_from_slice(&data[327680..])),
    );
    exchange(&mut t, now, &mut b);
    assert_eq!(blocks(&mut b).len(), 1);
    a.s.request(now, BlockRequest::new(4, 0, 16384));
    a.s.request(now, BlockRequest::new(1, 0, 16384));
    exchange(&mut t, now, &mut a);
    assert_eq!(reads(&mut t), [(1, 65536, 65536)]);
    assert_eq!(blocks(&mut a).len(), 1, "piece 4 from the cache");
}

#[test]
fn piece_buffers_are_aligned_and_stay_so_when_recycled() {
    for len in [1, 16384, 262_144, 100_003] {
        let b = aligned_piece_buf(len);
        assert_eq!(b.len(), len);
        assert_eq!(b.as_ptr().align_offset(PIECE_BUF_ALIGN), 0);
        assert!(b.iter().all(|x| *x == 0));
        let again = b.freeze().try_into_mut().unwrap();
        assert_eq!(again.len(), len);
        assert_eq!(again.as_ptr().align_offset(PIECE_BUF_ALIGN), 0);
    }
}

#[test]
fn seeding_choker_rotates_round_robin() {
    let (m, _) = meta(20 * 16384);
    let n = m.info.num_pieces();
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::full(n),
        7,
        Time::ZERO,
    )
    .unwrap();
    let mut now = Time::ZERO;
    let mut remotes: Vec<Remote> = (2..8).map(|i| connect(&mut t, now, i, &m)).collect();
    for r in &mut remotes {
        r.s.set_interested(now, true);
        exchange(&mut t, now, r);
    }
    // Free slots are filled at once, in arrival order.
    assert_eq!(unchoked(&t), [2, 3, 4, 5]);
    let first = unchoked(&t);
    for _ in 0..4 {
        now += Duration::from_secs(10);
        t.handle_timeout(now);
    }
    let later = unchoked(&t);
    assert_eq!(later.len(), 4);
    assert!(later.contains(&6) && later.contains(&7), "{later:?}");
    assert_ne!(first, later);
}

#[test]
fn leeching_choker_prefers_fast_uploaders() {
    let (m, data) = meta(40 * 16384);
    let n = m.info.num_pieces();
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(n),
        7,
        Time::ZERO,
    )
    .unwrap();
    let mut now = Time::ZERO;
    let mut remotes: Vec<Remote> = (2..8).map(|i| connect(&mut t, now, i, &m)).collect();
    // Each remote is interested in us and sends us (unrequested) blocks: remote i sends
    // i - 1 blocks per second, so 7, 6 and 5 are the fastest.
    for _ in 0..3 {
        now += Duration::from_secs(1);
        for r in remotes.iter_mut() {
            r.s.set_interested(now, true);
            let per_sec = r.key.0 as usize - 1;
            for b in 0..per_sec {
                let piece = (r.key.0 as usize * 5 + b) % n as usize;
                let off = piece * 16384;
                let mut buf = BytesMut::new();
                Message::Piece {
                    index: piece as u32,
                    begin: 0,
                    data: Bytes::copy_from_slice(&data[off..off + 16384]),
                }
                .encode(&mut buf);
                t.peer_data(now, r.key, &buf);
            }
            exchange(&mut t, now, r);
        }
    }
    now += Duration::from_secs(1);
    t.handle_timeout(now);
    let u = unchoked(&t);
    assert_eq!(u.len(), 4, "{u:?}");
    for fast in [5, 6, 7] {
        assert!(u.contains(&fast), "{u:?}");
    }
    // Exactly one optimistic unchoke among the slow ones.
    assert_eq!(t.peers.values().filter(|p| p.optimistic).count(), 1);
}

#[test]
fn connection_limits_and_bans() {
    let (m, _) = meta(4 * 16384);
    let mut cfg = TorrentConfig::new(Id20([1; 20]));
    cfg.max_peers = 2;
    cfg.max_connecting = 1;
    let mut t = Torrent::new(cfg, m.clone(), Bitfield::new(4), 1, Time::ZERO).unwrap();
    let addrs: Vec<SocketAddr> = (2..6)
        .map(|i| SocketAddr::from(([10, 0, 0, i], 6881)))
        .collect();
    t.add_candidates(Time::ZERO, addrs.clone(), PeerSource::Tracker);
    let connects: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
    assert_eq!(connects, [Output::Connect(addrs[0])], "one dial at a time");
    t.connect_failed(Time::ZERO, addrs[0]);
    assert_eq!(t.poll_output(), Some(Output::Connect(addrs[1])));
    let _a = connect(&mut t, Time::ZERO, 3, &m);
    let _b = connect(&mut t, Time::ZERO, 4, &m);
    assert_eq!(
        t.add_peer(Time::ZERO, PeerKey(99), Some(addrs[3]), Direction::Incoming),
        Err(AddPeerError::Full)
    );
    t.banned_ips.insert(addrs[2].ip());
    t.peer_closed(Time::ZERO, PeerKey(4));
    assert_eq!(
        t.add_peer(Time::ZERO, PeerKey(98), Some(addrs[2]), Direction::Incoming),
        Err(AddPeerError::Banned)
    );
}

#[test]
fn bad_bitfield_and_out_of_range_have_drop_the_peer() {
    let (m, _) = meta(10 * 16384);
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(10),
        1,
        Time::ZERO,
    )
    .unwrap();
    let r = connect(&mut t, Time::ZERO, 2, &m);
    let mut buf = BytesMut::new();
    Message::Have { piece: 10 }.encode(&mut buf);
    t.peer_data(Time::ZERO, r.key, &buf);
    assert_eq!(t.num_peers(), 0);
    let outs: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
    assert!(outs.contains(&Output::Disconnect(r.key)));
    let r = connect(&mut t, Time::ZERO, 3, &m);
    let mut buf = BytesMut::new();
    Message::Bitfield(Bytes::from_static(&[0xff, 0xff])).encode(&mut buf);
    t.peer_data(Time::ZERO, r.key, &buf);
    assert_eq!(t.num_peers(), 0, "spare bits set: dropped");
}

#[test]
fn serves_requests_only_when_unchoked_and_valid() {
    let (m, data) = meta(40 * 16384);
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::full(40),
        1,
        Time::ZERO,
    )
    .unwrap();
    let now = Time::ZERO;
    let mut r = connect(&mut t, now, 2, &m);
    // The peer (10.0.0.2) got BEP 6's allowed-fast set.
    let fast = crate::fast::allowed_fast_set(
        std::net::Ipv4Addr::new(10, 0, 0, 2),
        &m.info_hash,
        40,
        crate::fast::ALLOWED_FAST_COUNT,
    );
    assert_eq!(fast.len(), 10);
    let evs: Vec<SessionEvent> = std::iter::from_fn(|| r.s.poll_event()).collect();
    let told: Vec<u32> = evs
        .iter()
        .filter_map(|e| match e {
            SessionEvent::AllowedFast(i) => Some(*i),
            _ => None,
        })
        .collect();
    assert_eq!(told, fast);
    // Requests while choked are rejected (fast extension)...
    let other = (0..40).find(|i| !fast.contains(i)).unwrap();
    r.s.request(now, BlockRequest::new(other, 0, 16384));
    exchange(&mut t, now, &mut r);
    let evs: Vec<SessionEvent> = std::iter::from_fn(|| r.s.poll_event()).collect();
    assert!(
        evs.contains(&SessionEvent::Rejected(BlockRequest::new(other, 0, 16384))),
        "{evs:?}"
    );
    // ...but for the allowed-fast pieces, served while choked.
    let f = fast[0];
    r.s.request(now, BlockRequest::new(f, 0, 16384));
    exchange(&mut t, now, &mut r);
    let o = f as usize * 16384;
    assert_eq!(reads(&mut t), [(f, o as u64, 16384)]);
    let piece = m.info.layout.piece(f).unwrap();
    t.piece_read(
        now,
        piece,
        Some(Bytes::copy_from_slice(&data[o..o + 16384])),
    );
    exchange(&mut t, now, &mut r);
    assert!(r.s.peer_choking());
    let got = std::iter::from_fn(|| r.s.poll_event()).find_map(|e| match e {
        SessionEvent::Block { data, .. } => Some(data),
        _ => None,
    });
    assert_eq!(got.as_deref(), Some(&data[o..o + 16384]));
    r.s.set_interested(now, true);
    exchange(&mut t, now, &mut r);
    assert!(!r.s.peer_choking());
    r.s.request(now, BlockRequest::new(1, 16000, 384));
    exchange(&mut t, now, &mut r);
    assert_eq!(reads(&mut t), [(1, 16384, 16384)]);
    let piece = m.info.layout.piece(1).unwrap();
    let off = 16384 + 16000;
    t.piece_read(
        now,
        piece,
        Some(Bytes::copy_from_slice(&data[16384..2 * 16384])),
    );
    exchange(&mut t, now, &mut r);
    let got = std::iter::from_fn(|| r.s.poll_event()).find_map(|e| match e {
        SessionEvent::Block { data, .. } => Some(data),
        _ => None,
    });
    assert_eq!(got.as_deref(), Some(&data[off..off + 384]));
    // A request past the end of the torrent is rejected.
    r.s.request(now, BlockRequest::new(40, 0, 1));
    exchange(&mut t, now, &mut r);
    let evs: Vec<SessionEvent> = std::iter::from_fn(|| r.s.poll_event()).collect();
    assert!(
        evs.iter().any(|e| matches!(e, SessionEvent::Rejected(_))),
        "{evs:?}"
    );
}
