//! Unit tests of the torrent state machine: remote peers speak to it through their own
//! [`PeerSession`]s.

use std::collections::BTreeSet;

use super::assembly::aligned_piece_buf;
use super::selection::wanted_pieces;
use super::*;
use crate::creator::TorrentCreator;
use crate::id::Id20;
use crate::metainfo::FileEntry;
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

/// Five 16 KiB pieces over two files: `a` is bytes 0..40000 (pieces 0-2), `b` is
/// 40000..80000 (pieces 2-4); piece 2 straddles both.
fn two_files() -> (Arc<Metainfo>, Vec<u8>) {
    let data: Vec<u8> = (0..80_000).map(|i| (i * 11 % 251) as u8).collect();
    let t = TorrentCreator::new()
        .with_piece_length(16384)
        .create_multi(
            "two",
            vec![
                (vec!["a".to_string()], 40_000, &data[..40_000]),
                (vec!["b".to_string()], 40_000, &data[40_000..]),
            ],
        )
        .unwrap();
    (Arc::new(t.metainfo), data)
}

/// A connected remote that has `has` and unchokes us.
fn remote_with(t: &mut Torrent, now: Time, n: u8, m: &Metainfo, has: &Bitfield) -> Remote {
    let mut r = connect(t, now, n, m);
    r.s.send_availability(now, Some(has));
    r.s.unchoke(now);
    exchange(t, now, &mut r);
    r
}

fn bits(n: u32, pieces: &[u32]) -> Bitfield {
    let mut bytes = vec![0u8; n.div_ceil(8) as usize];
    for &p in pieces {
        bytes[(p / 8) as usize] |= 0x80 >> (p % 8);
    }
    Bitfield::from_bytes(&bytes, n).unwrap()
}

/// What a remote got from the torrent since last asked: block requests and cancels (other
/// events are dropped).
fn requests_and_cancels(r: &mut Remote) -> (Vec<BlockRequest>, Vec<BlockRequest>) {
    let mut reqs = Vec::new();
    let mut cancels = Vec::new();
    while let Some(e) = r.s.poll_event() {
        match e {
            SessionEvent::Request(q) => reqs.push(q),
            SessionEvent::Cancel(q) => cancels.push(q),
            _ => {}
        }
    }
    (reqs, cancels)
}

fn have_messages(r: &mut Remote) -> Vec<u32> {
    std::iter::from_fn(|| r.s.poll_event())
        .filter_map(|e| match e {
            SessionEvent::Have(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// Hashes the pieces the torrent hands out for verification and gives the verdicts back;
/// returns the pieces verified this way and the events.
fn verify_all(t: &mut Torrent, now: Time) -> (Vec<u32>, Vec<TorrentEvent>) {
    let mut verified = Vec::new();
    let mut events = Vec::new();
    while let Some(o) = t.poll_output() {
        match o {
            Output::VerifyPiece {
                piece,
                data,
                expected,
            } => {
                let ok = crate::piece::sha1(&data) == expected;
                assert!(ok, "piece {} assembled wrong", piece.get());
                verified.push(piece.get());
                t.piece_checked(now, piece, ok);
            }
            Output::Event(e) => events.push(e),
            _ => {}
        }
    }
    (verified, events)
}

/// Answers every block request the torrent sends the remotes with `data`, and verifies the
/// pieces, until it asks for nothing more. Returns the requests (with who got them) and the
/// events.
fn serve_all(
    t: &mut Torrent,
    now: Time,
    remotes: &mut [Remote],
    data: &[u8],
    piece_len: usize,
) -> (Vec<(PeerKey, BlockRequest)>, Vec<TorrentEvent>) {
    let mut requested = Vec::new();
    let mut events = Vec::new();
    for _ in 0..1000 {
        let mut busy = false;
        for r in remotes.iter_mut() {
            exchange(t, now, r);
            let (reqs, _) = requests_and_cancels(r);
            for q in reqs {
                let off = q.index as usize * piece_len + q.begin as usize;
                let block = Bytes::copy_from_slice(&data[off..off + q.length as usize]);
                r.s.send_block(now, q, block);
                requested.push((r.key, q));
                busy = true;
            }
            exchange(t, now, r);
        }
        let (verified, evs) = verify_all(t, now);
        busy |= !verified.is_empty();
        events.extend(evs);
        if !busy {
            return (requested, events);
        }
    }
    panic!("the torrent kept requesting");
}

fn pieces_of(reqs: &[(PeerKey, BlockRequest)]) -> BTreeSet<u32> {
    reqs.iter().map(|(_, q)| q.index).collect()
}

#[test]
fn only_pieces_of_wanted_files_are_fetched_and_done_fires_per_selection() {
    let (m, data) = two_files();
    assert_eq!(m.info.num_pieces(), 5);
    let now = Time::ZERO;
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(5),
        7,
        now,
    )
    .unwrap();
    assert_eq!(t.files_wanted(), Some(vec![true, true]));
    assert_eq!(
        t.set_files_wanted(now, &[true]),
        Err(SelectionError::WrongLength {
            expected: 2,
            got: 1
        })
    );
    t.set_files_wanted(now, &[false, true]).unwrap();
    assert_eq!(t.files_wanted(), Some(vec![false, true]));
    assert!(!t.is_finished());
    // A peer with only pieces of file a is of no interest; a seed is.
    let a = remote_with(&mut t, now, 2, &m, &bits(5, &[0, 1]));
    assert!(!a.s.peer_interested());
    let s = remote_with(&mut t, now, 3, &m, &Bitfield::full(5));
    assert!(s.s.peer_interested());
    let mut remotes = vec![a, s];
    let (reqs, events) = serve_all(&mut t, now, &mut remotes, &data, 16384);
    assert_eq!(pieces_of(&reqs), BTreeSet::from([2, 3, 4]));
    assert_eq!(reqs.len(), 3, "one block per piece, each asked for once");
    assert!(reqs.iter().all(|(k, _)| *k == PeerKey(3)));
    let verified: BTreeSet<u32> = events
        .iter()
        .filter_map(|e| match e {
            TorrentEvent::PieceVerified(p) => Some(p.get()),
            _ => None,
        })
        .collect();
    assert_eq!(verified, BTreeSet::from([2, 3, 4]));
    assert_eq!(
        events.iter().filter(|e| **e == TorrentEvent::Done).count(),
        1
    );
    assert!(t.is_finished());
    assert!(!t.is_complete());
    assert_eq!(t.have().unwrap().ones().collect::<Vec<_>>(), [2, 3, 4]);
    // `left` counts the whole torrent.
    assert_eq!(t.stats(now).left, Some(2 * 16384));
    assert!(
        !remotes[1].s.peer_interested(),
        "nothing wanted from the seed"
    );
    assert_eq!(t.num_peers(), 2, "not a seed: the seed stays connected");

    // Widening the selection: interested in both again, pieces 0 and 1 fetched, Done again.
    t.set_files_wanted(now, &[true, true]).unwrap();
    assert!(!t.is_finished());
    for r in remotes.iter_mut() {
        exchange(&mut t, now, r);
        assert!(r.s.peer_interested(), "peer {:?}", r.key);
    }
    let (reqs, events) = serve_all(&mut t, now, &mut remotes, &data, 16384);
    assert_eq!(pieces_of(&reqs), BTreeSet::from([0, 1]));
    assert!(events.contains(&TorrentEvent::Done));
    assert!(t.is_complete() && t.is_finished());
    assert_eq!(t.stats(now).left, Some(0));
}

#[test]
fn narrowing_to_pieces_already_had_finishes_at_once_and_drops_interest() {
    let (m, _) = two_files();
    let now = Time::ZERO;
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        bits(5, &[0, 1, 2]),
        7,
        now,
    )
    .unwrap();
    let mut s = remote_with(&mut t, now, 2, &m, &Bitfield::full(5));
    assert!(s.s.peer_interested());
    let _ = requests_and_cancels(&mut s);
    while t.poll_output().is_some() {}
    t.set_files_wanted(now, &[true, false]).unwrap();
    let outs: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
    assert_eq!(outs, [Output::Event(TorrentEvent::Done)]);
    exchange(&mut t, now, &mut s);
    assert!(!s.s.peer_interested());
    assert!(t.is_finished() && !t.is_complete());
    // Setting the same selection again changes nothing.
    t.set_files_wanted(now, &[true, false]).unwrap();
    assert_eq!(t.poll_output(), None);
}

#[test]
fn unwanted_pieces_are_never_requested_but_pieces_in_progress_may_finish() {
    // Eight pieces of two blocks; file a is pieces 0-3, file b pieces 4-7.
    let data: Vec<u8> = (0..8 * 32768).map(|i| (i * 5 % 251) as u8).collect();
    let made = TorrentCreator::new()
        .with_piece_length(32768)
        .create_multi(
            "t",
            vec![
                (vec!["a".to_string()], 4 * 32768, &data[..4 * 32768]),
                (vec!["b".to_string()], 4 * 32768, &data[4 * 32768..]),
            ],
        )
        .unwrap();
    let m = Arc::new(made.metainfo);
    let now = Time::ZERO;
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(8),
        7,
        now,
    )
    .unwrap();
    t.set_priority_range(now, Some(32768..65536)).unwrap();
    let mut s = remote_with(&mut t, now, 2, &m, &Bitfield::full(8));
    let (before, _) = requests_and_cancels(&mut s);
    assert_eq!(
        before[..2],
        [
            BlockRequest::new(1, 0, 16384),
            BlockRequest::new(1, 16384, 16384)
        ]
    );
    assert!(before.len() < 16, "some blocks left to request");
    // One block of piece 1 arrives, then file a is deselected; the other blocks asked for
    // before arrive afterwards.
    let block = |q: &BlockRequest| {
        let off = q.index as usize * 32768 + q.begin as usize;
        Bytes::copy_from_slice(&data[off..off + q.length as usize])
    };
    s.s.send_block(now, before[0], block(&before[0]));
    exchange(&mut t, now, &mut s);
    t.set_files_wanted(now, &[false, true]).unwrap();
    for q in &before[1..] {
        s.s.send_block(now, *q, block(q));
    }
    let mut remotes = vec![s];
    let (after, events) = serve_all(&mut t, now, &mut remotes, &data, 32768);
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|(_, q)| q.index >= 4),
        "unwanted piece requested: {after:?}"
    );
    // Pieces of file a finish only if all their blocks were asked for before the change
    // (piece 1 is among them); file b is fetched whole.
    let have: BTreeSet<u32> = t.have().unwrap().ones().collect();
    for p in 0..4 {
        let asked = before.iter().filter(|q| q.index == p).count();
        assert_eq!(have.contains(&p), asked == 2, "piece {p}");
    }
    assert!(have.contains(&1));
    assert!((4..8).all(|p| have.contains(&p)));
    assert!(t.is_finished() && !t.is_complete());
    assert!(events.contains(&TorrentEvent::Done));
}

#[test]
fn held_requests_stop_new_requests_and_release_resumes_them() {
    let (m, data) = meta(40 * 16384);
    let now = Time::ZERO;
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(40),
        7,
        now,
    )
    .unwrap();
    // Held before the seed shows up: interested, but nothing requested.
    t.hold_requests(now, true);
    assert!(t.requests_held());
    let mut s = remote_with(&mut t, now, 2, &m, &Bitfield::full(40));
    assert!(s.s.peer_interested());
    assert_eq!(requests_and_cancels(&mut s), (vec![], vec![]));
    t.handle_timeout(now);
    exchange(&mut t, now, &mut s);
    assert_eq!(requests_and_cancels(&mut s), (vec![], vec![]));
    // Released: requests go out.
    t.hold_requests(now, false);
    assert!(!t.requests_held());
    exchange(&mut t, now, &mut s);
    let (first, _) = requests_and_cancels(&mut s);
    assert!(!first.is_empty());
    // Held again: what was requested still arrives and is verified; nothing is cancelled and
    // nothing new requested.
    t.hold_requests(now, true);
    for q in &first {
        let off = q.index as usize * 16384;
        s.s.send_block(now, *q, Bytes::copy_from_slice(&data[off..off + 16384]));
    }
    exchange(&mut t, now, &mut s);
    let (verified, _) = verify_all(&mut t, now);
    let mut expected: Vec<u32> = first.iter().map(|q| q.index).collect();
    expected.sort_unstable();
    let mut got = verified.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    exchange(&mut t, now, &mut s);
    assert_eq!(requests_and_cancels(&mut s), (vec![], vec![]));
    // Released: the rest is fetched.
    t.hold_requests(now, false);
    let mut remotes = vec![s];
    let (rest, events) = serve_all(&mut t, now, &mut remotes, &data, 16384);
    let rest = pieces_of(&rest);
    assert_eq!(rest.len() + first.len(), 40);
    assert!(first.iter().all(|q| !rest.contains(&q.index)));
    assert!(events.contains(&TorrentEvent::Done));
    assert!(t.is_complete());
}

#[test]
fn pieces_found_on_disk_are_announced_and_can_complete_the_torrent() {
    let (m, _) = meta(8 * 16384);
    let now = Time::ZERO;
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(8),
        7,
        now,
    )
    .unwrap();
    let mut r = remote_with(&mut t, now, 2, &m, &bits(8, &[5]));
    assert!(r.s.peer_interested());
    let mut s = remote_with(&mut t, now, 3, &m, &Bitfield::full(8));
    let _ = requests_and_cancels(&mut r);
    let (asked, _) = requests_and_cancels(&mut s);
    // Some piece `p` is requested from the seed; it turns out to be on disk.
    let p = asked[0].index;
    while t.poll_output().is_some() {}
    assert_eq!(
        t.pieces_on_disk(now, &Bitfield::new(7)),
        Err(SelectionError::WrongLength {
            expected: 8,
            got: 7
        })
    );
    let on_disk = if p == 0 {
        bits(8, &[0, 3])
    } else {
        bits(8, &[0, p])
    };
    t.pieces_on_disk(now, &on_disk).unwrap();
    exchange(&mut t, now, &mut r);
    exchange(&mut t, now, &mut s);
    let want: Vec<u32> = on_disk.ones().collect();
    assert_eq!(have_messages(&mut r), want);
    // The seed was told too, and its requests for pieces on disk (`p`'s at least) were
    // withdrawn.
    let mut cancelled = Vec::new();
    let mut haves = Vec::new();
    while let Some(e) = s.s.poll_event() {
        match e {
            SessionEvent::Cancel(q) => cancelled.push(q.index),
            SessionEvent::Have(i) => haves.push(i),
            _ => {}
        }
    }
    assert_eq!(haves, want);
    cancelled.sort_unstable();
    let mut on_disk_asked: Vec<u32> = asked
        .iter()
        .map(|q| q.index)
        .filter(|i| want.contains(i))
        .collect();
    on_disk_asked.sort_unstable();
    assert!(cancelled.contains(&p));
    assert_eq!(cancelled, on_disk_asked);
    assert_eq!(t.have().unwrap().ones().collect::<Vec<_>>(), want);
    let st = t.stats(now);
    assert_eq!((st.left, st.verified), (Some(6 * 16384), 2 * 16384));
    let outs: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
    assert!(!outs.contains(&Output::Event(TorrentEvent::Done)));
    // A block for it arriving anyway is not assembled.
    s.s.send_block(now, asked[0], Bytes::from(vec![0u8; 16384]));
    exchange(&mut t, now, &mut s);
    assert!(!std::iter::from_fn(|| t.poll_output())
        .any(|o| matches!(o, Output::VerifyPiece { piece, .. } if piece.get() == p)));
    // Everything on disk: only the pieces not had are announced, Done fires, interest ends
    // and the seed (both sides seeds now) is dropped.
    t.pieces_on_disk(now, &Bitfield::full(8)).unwrap();
    exchange(&mut t, now, &mut r);
    let rest: Vec<u32> = (0..8).filter(|i| !want.contains(i)).collect();
    assert_eq!(have_messages(&mut r), rest);
    assert!(!r.s.peer_interested());
    let outs: Vec<Output> = std::iter::from_fn(|| t.poll_output()).collect();
    assert_eq!(
        outs.iter()
            .filter(|o| **o == Output::Event(TorrentEvent::Done))
            .count(),
        1
    );
    assert!(outs.contains(&Output::Disconnect(s.key)));
    assert!(t.is_complete());
    assert_eq!(t.stats(now).left, Some(0));
    // Again: nothing to do.
    t.pieces_on_disk(now, &Bitfield::full(8)).unwrap();
    assert_eq!(t.poll_output(), None);
}

#[test]
fn selection_needs_the_metadata_and_a_valid_range() {
    let (m, _) = meta(40 * 16384);
    let now = Time::ZERO;
    let mut magnet = Torrent::from_info_hash(
        TorrentConfig::new(Id20([1; 20])),
        m.info_hash,
        Vec::new(),
        7,
        now,
    );
    assert_eq!(magnet.files_wanted(), None);
    assert!(!magnet.is_finished());
    assert_eq!(
        magnet.set_files_wanted(now, &[true]),
        Err(SelectionError::NoMetadata)
    );
    assert_eq!(
        magnet.pieces_on_disk(now, &Bitfield::new(40)),
        Err(SelectionError::NoMetadata)
    );
    assert_eq!(
        magnet.set_priority_range(now, None),
        Err(SelectionError::NoMetadata)
    );
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(40),
        7,
        now,
    )
    .unwrap();
    let total = 40 * 16384;
    assert_eq!(
        t.set_priority_range(now, Some(0..total + 1)),
        Err(SelectionError::OutOfRange)
    );
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 10..5;
    assert_eq!(
        t.set_priority_range(now, Some(reversed)),
        Err(SelectionError::OutOfRange)
    );
    // Pieces 20 to 22 first, in order.
    t.set_priority_range(now, Some(20 * 16384 + 100..23 * 16384))
        .unwrap();
    let mut s = remote_with(&mut t, now, 2, &m, &Bitfield::full(40));
    let (reqs, _) = requests_and_cancels(&mut s);
    let first: Vec<u32> = reqs.iter().take(3).map(|q| q.index).collect();
    assert_eq!(first, [20, 21, 22]);
    t.set_priority_range(now, Some(total..total)).unwrap();
    t.set_priority_range(now, None).unwrap();
    // Several ranges: checked the same way, one bad range changes nothing.
    assert_eq!(
        magnet.set_priority_ranges(now, std::slice::from_ref(&(0..1))),
        Err(SelectionError::NoMetadata)
    );
    assert_eq!(
        t.set_priority_ranges(now, &[0..1, 0..total + 1]),
        Err(SelectionError::OutOfRange)
    );
    // A fresh torrent, so that no earlier request is outstanding.
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(40),
        7,
        now,
    )
    .unwrap();
    t.set_priority_ranges(now, &[30 * 16384..32 * 16384, 5 * 16384..6 * 16384])
        .unwrap();
    let mut s = remote_with(&mut t, now, 3, &m, &Bitfield::full(40));
    let (reqs, _) = requests_and_cancels(&mut s);
    let first: Vec<u32> = reqs.iter().take(3).map(|q| q.index).collect();
    assert_eq!(first, [30, 31, 5]);
}

#[test]
fn a_seek_withdraws_other_requests_and_a_moving_reader_does_not() {
    let (m, _) = meta(40 * 16384);
    let now = Time::ZERO;
    let mut t = Torrent::new(
        TorrentConfig::new(Id20([1; 20])),
        m.clone(),
        Bitfield::new(40),
        7,
        now,
    )
    .unwrap();
    let mut s = remote_with(&mut t, now, 2, &m, &Bitfield::full(40));
    let (first, _) = requests_and_cancels(&mut s);
    assert!(!first.is_empty());
    // A reader seeks to two pieces nobody fetches: the other requests are withdrawn and
    // those go first.
    let target = (0..39u32)
        .find(|p| !first.iter().any(|q| q.index == *p || q.index == p + 1))
        .unwrap();
    let at = u64::from(target) * 16384;
    t.set_priority_ranges(now, std::slice::from_ref(&(at..at + 2 * 16384)))
        .unwrap();
    exchange(&mut t, now, &mut s);
    let (reqs, cancels) = requests_and_cancels(&mut s);
    let mut cancelled: Vec<u32> = cancels.iter().map(|q| q.index).collect();
    let mut asked: Vec<u32> = first.iter().map(|q| q.index).collect();
    cancelled.sort_unstable();
    asked.sort_unstable();
    assert_eq!(cancelled, asked);
    assert_eq!(reqs.first().map(|q| q.index), Some(target));
    // The reader moves on within what is requested: nothing is withdrawn.
    t.set_priority_ranges(now, std::slice::from_ref(&(at + 16384..at + 2 * 16384)))
        .unwrap();
    exchange(&mut t, now, &mut s);
    let (_, cancels) = requests_and_cancels(&mut s);
    assert!(cancels.is_empty(), "{cancels:?}");
}

#[test]
fn wanted_pieces_skip_padding_and_empty_files() {
    let (m, _) = two_files();
    let mut info = m.info.clone();
    let file = |path: &str, offset: u64, length: u64, padding: bool| FileEntry {
        path: vec![path.to_string()],
        length,
        offset,
        padding,
    };
    // a (pieces 0-2), padding up to piece 3, an empty file, b (pieces 3-4).
    info.files = vec![
        file("a", 0, 40_000, false),
        file("pad", 40_000, 9152, true),
        file("empty", 49_152, 0, false),
        file("b", 49_152, 30_848, false),
    ];
    let ones = |w: &[bool]| wanted_pieces(&info, w).ones().collect::<Vec<_>>();
    assert_eq!(ones(&[true, false, false, false]), [0, 1, 2]);
    assert_eq!(ones(&[false, true, true, false]), [] as [u32; 0]);
    assert_eq!(ones(&[false, true, false, true]), [3, 4]);
    assert_eq!(ones(&[true, true, true, true]), [0, 1, 2, 3, 4]);
}

/// How a remote peer answers a magnet's metadata requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaPeer {
    /// The right size and the right bytes.
    Honest,
    /// A made-up size, then silence.
    WrongSizeSilent,
    /// A made-up size, then rejects.
    WrongSizeRejects,
    /// A made-up size, and bytes of that size.
    WrongSizeJunk,
    /// The right size, wrong bytes.
    Junk,
    /// A made-up size, announced again (twice in a row) every 100 ms; silence.
    WrongSizeSilentReannouncing,
    /// A made-up size, announced again (twice in a row) every 100 ms and after each reject.
    WrongSizeRejectsReannouncing,
    /// The right size and bytes, but ignores every request in its first 15 seconds.
    SlowAtFirst,
}

impl MetaPeer {
    fn reannounces(self) -> bool {
        matches!(
            self,
            MetaPeer::WrongSizeSilentReannouncing | MetaPeer::WrongSizeRejectsReannouncing
        )
    }
}

/// A magnet torrent fed by `peers` (connected in order, 300 ms apart) until it has the
/// metadata or two simulated minutes pass. Returns the torrent and when it finished.
fn fetch_metadata(peers: &[MetaPeer], seed: u64) -> (Torrent, Option<Time>) {
    use crate::ext::MetadataMessage;
    let (m, _) = meta(200 * 16384);
    let info = m.info_bytes.clone();
    let mut t = Torrent::from_info_hash(
        TorrentConfig::new(Id20([1; 20])),
        m.info_hash,
        Vec::new(),
        seed,
        Time::ZERO,
    );
    let mut rng = crate::rng::Rng::new(seed ^ 0x5eed);
    let mut remotes: Vec<(Remote, MetaPeer)> = Vec::new();
    for step in 0..1200u32 {
        let now = Time::ZERO + Duration::from_millis(100 * u64::from(step));
        if step % 3 == 0 && remotes.len() < peers.len() {
            let behaviour = peers[remotes.len()];
            let n = remotes.len() as u8 + 2;
            let mut r = connect(&mut t, now, n, &m);
            let size = match behaviour {
                MetaPeer::Honest | MetaPeer::Junk | MetaPeer::SlowAtFirst => info.len() as u32,
                _ => info.len() as u32 + 20_000,
            };
            r.s.send_extended_handshake(now, Some(size), None);
            exchange(&mut t, now, &mut r);
            remotes.push((r, behaviour));
        }
        t.handle_timeout(now);
        for (r, behaviour) in &mut remotes {
            if !t.peers.contains_key(&r.key) {
                continue;
            }
            let size = info.len() as u32 + 20_000;
            if behaviour.reannounces() {
                // Twice: should the first let its stale offer lapse, the second renews it.
                r.s.send_extended_handshake(now, Some(size), None);
                r.s.send_extended_handshake(now, Some(size), None);
            }
            exchange(&mut t, now, r);
            let requests: Vec<u32> = std::iter::from_fn(|| r.s.poll_event())
                .filter_map(|e| match e {
                    SessionEvent::Metadata(MetadataMessage::Request { piece }) => Some(piece),
                    _ => None,
                })
                .collect();
            for piece in requests {
                let reply = match behaviour {
                    MetaPeer::Honest => crate::ext::serve_metadata_piece(&info, piece),
                    MetaPeer::SlowAtFirst if now < Time::ZERO + Duration::from_secs(15) => continue,
                    MetaPeer::SlowAtFirst => crate::ext::serve_metadata_piece(&info, piece),
                    MetaPeer::WrongSizeSilent | MetaPeer::WrongSizeSilentReannouncing => continue,
                    MetaPeer::WrongSizeRejects => MetadataMessage::Reject { piece },
                    MetaPeer::WrongSizeRejectsReannouncing => {
                        r.s.send_metadata(now, &MetadataMessage::Reject { piece });
                        r.s.send_extended_handshake(now, Some(size), None);
                        continue;
                    }
                    MetaPeer::WrongSizeJunk | MetaPeer::Junk => {
                        let total = match behaviour {
                            MetaPeer::Junk => info.len() as u32,
                            _ => info.len() as u32 + 20_000,
                        };
                        let start = piece * 16384;
                        let len = (total - start.min(total)).min(16384) as usize;
                        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                        MetadataMessage::Data {
                            piece,
                            total_size: total,
                            data: Bytes::from(data),
                        }
                    }
                };
                r.s.send_metadata(now, &reply);
            }
            exchange(&mut t, now, r);
        }
        if t.metainfo().is_some() {
            assert_eq!(t.metainfo().unwrap().info_bytes, info);
            return (t, Some(now));
        }
    }
    (t, None)
}

#[test]
fn a_metadata_size_liar_connected_first_does_not_stall_a_magnet() {
    for liar in [
        MetaPeer::WrongSizeSilent,
        MetaPeer::WrongSizeRejects,
        MetaPeer::WrongSizeJunk,
    ] {
        let (_, done) = fetch_metadata(&[liar, MetaPeer::Honest], 3);
        assert!(done.is_some(), "{liar:?} stalled the metadata fetch");
    }
}

/// A liar that keeps announcing its size (again right after its requests time out, or after
/// each reject) must not keep the fetch on that size: a peer that failed a metadata request
/// is not asked again on this connection, so the honest size takes over.
#[test]
fn a_metadata_size_liar_that_keeps_reannouncing_does_not_stall_a_magnet() {
    for liar in [
        MetaPeer::WrongSizeSilentReannouncing,
        MetaPeer::WrongSizeRejectsReannouncing,
    ] {
        // Several seeds: the torrent's peers are visited in a random (hash) order.
        for seed in 0..8 {
            let (_, done) = fetch_metadata(&[liar, MetaPeer::Honest], seed);
            let limit = Time::ZERO + METADATA_REQUEST_TIMEOUT + Duration::from_secs(5);
            assert!(
                done.is_some_and(|d| d <= limit),
                "{liar:?} (seed {seed}) stalled the metadata fetch: done at {done:?}"
            );
        }
    }
}

#[test]
fn a_peer_slow_to_answer_metadata_once_is_asked_again_later() {
    // The only peer with the metadata misses the first requests' deadline: it is left alone
    // for a while, then asked again, and the magnet gets its metadata.
    let (_, done) = fetch_metadata(&[MetaPeer::SlowAtFirst], 3);
    let at = done.expect("the metadata arrived");
    let after = METADATA_REQUEST_TIMEOUT + METADATA_RETRY_AFTER;
    assert!(at >= Time::ZERO + after, "asked again too soon: {at:?}");
}

#[test]
fn metadata_from_a_lone_liar_bans_it_and_mixed_sources_go_one_at_a_time() {
    // A lone sender of bad metadata is banned.
    let (t, done) = fetch_metadata(&[MetaPeer::Junk, MetaPeer::Honest], 5);
    assert!(done.is_some());
    assert!(t.is_banned(SocketAddr::from(([10, 0, 0, 2], 6881))));
    // Liars and the honest peer all serve at once: the failed attempt is followed by
    // single-source ones until the honest peer's succeeds.
    for seed in 0..40 {
        let peers = [
            MetaPeer::Junk,
            MetaPeer::Honest,
            MetaPeer::Junk,
            MetaPeer::WrongSizeJunk,
            MetaPeer::WrongSizeSilent,
        ];
        let (t, done) = fetch_metadata(&peers, seed);
        assert!(done.is_some(), "seed {seed}: no metadata");
        assert!(
            !t.is_banned(SocketAddr::from(([10, 0, 0, 3], 6881))),
            "seed {seed}: the honest peer was banned"
        );
    }
}

/// `n` PEX messages of 50 fresh addresses each from `r`, `gap` apart, starting at `start`.
fn pex_flood(t: &mut Torrent, r: &mut Remote, start: Time, n: u32, gap: Duration, net: u8) {
    use crate::ext::{PexFlags, PexMessage};
    for i in 0..n {
        let now = start + gap * i;
        let added = (0..50u16)
            .map(|j| {
                let a = SocketAddr::from(([net, i as u8, (j >> 8) as u8, j as u8], 6881 + j));
                (a, PexFlags::empty())
            })
            .collect();
        let msg = PexMessage {
            added,
            ..PexMessage::default()
        };
        assert!(r.s.send_pex(now, &msg), "the torrent offers ut_pex");
        exchange(t, now, r);
    }
}

fn candidates_from(t: &Torrent, source: PeerSource) -> usize {
    t.candidates.values().filter(|c| c.source == source).count()
}

#[test]
fn pex_floods_are_rate_limited_capped_per_peer_and_cannot_crowd_out_trackers() {
    let (m, _) = meta(40 * 16384);
    let now = Time::ZERO;
    let mut cfg = TorrentConfig::new(Id20([1; 20]));
    cfg.max_candidates = 400;
    cfg.max_connecting = 0;
    let mut t = Torrent::new(cfg, m.clone(), Bitfield::new(40), 7, now).unwrap();
    let mut r = connect(&mut t, now, 2, &m);
    r.s.send_extended_handshake(now, None, None);
    exchange(&mut t, now, &mut r);
    // Ten messages in ten seconds: only the first counts.
    pex_flood(&mut t, &mut r, now, 10, Duration::from_secs(1), 20);
    assert_eq!(candidates_from(&t, PeerSource::Pex), 50);
    // One a minute for ten minutes: the peer's share stops at 200.
    let later = now + Duration::from_secs(60);
    pex_flood(&mut t, &mut r, later, 10, Duration::from_secs(60), 21);
    assert_eq!(candidates_from(&t, PeerSource::Pex), 200);
    // Other flooders fill PEX's half of the table and no more.
    let mut s = connect(&mut t, now, 3, &m);
    s.s.send_extended_handshake(now, None, None);
    exchange(&mut t, now, &mut s);
    pex_flood(&mut t, &mut s, later, 10, Duration::from_secs(60), 22);
    assert_eq!(candidates_from(&t, PeerSource::Pex), 200);
    // Trackers still get the whole table: PEX addresses make room.
    let tracker: Vec<SocketAddr> = (0..400u16)
        .map(|j| SocketAddr::from(([30, 0, (j >> 8) as u8, j as u8], 6881)))
        .collect();
    t.add_candidates(later, tracker.clone(), PeerSource::Tracker);
    assert_eq!(candidates_from(&t, PeerSource::Tracker), 400);
    assert_eq!(candidates_from(&t, PeerSource::Pex), 0);
    // And they are dialled first.
    assert_eq!(t.candidate_queue.front(), Some(&tracker[0]));
}

#[test]
fn the_oldest_failed_piece_is_forgotten_first() {
    let (m, _) = meta(100 * 16384);
    let piece = |i| m.info.layout.piece(i).unwrap();
    let mut log = super::assembly::SuspectLog::default();
    for i in 0..70 {
        log.insert(piece(i), Vec::new());
    }
    // Pieces 0..6 went, in the order they failed.
    assert_eq!(log.pieces(), (6..70).map(piece).collect::<Vec<_>>());
    // Failing again moves a piece to the back.
    log.insert(piece(6), Vec::new());
    log.insert(piece(80), Vec::new());
    assert_eq!(log.pieces()[0], piece(8));
    assert!(log.take(piece(6)).is_some());
    assert!(log.take(piece(6)).is_none());
}
