//! Picker tests: behaviour with controlled seeds, and random operation sequences checked
//! against the picker's own invariants and a simple model.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};

const KIB: u64 = 1024;

fn layout(piece_len: u64, total: u64) -> Layout {
    Layout::new(piece_len, total).unwrap()
}

fn bf(l: &Layout, pieces: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(l.num_pieces());
    for &p in pieces {
        b.set(l.piece(p).unwrap());
    }
    b
}

fn cfg() -> PickerConfig {
    PickerConfig {
        random_first_pieces: 0,
        ..PickerConfig::default()
    }
}

fn picker(l: Layout, config: PickerConfig, seed: u64) -> Picker {
    Picker::new(l, Bitfield::new(l.num_pieces()), config, seed).unwrap()
}

fn pick(p: &mut Picker, peer: u64, view: PeerView<'_>, max: usize) -> Vec<Block> {
    let mut out = Vec::new();
    let n = p.pick(PeerKey(peer), view, max, &mut out);
    assert_eq!(n, out.len());
    p.check_invariants();
    out
}

fn pieces_of(blocks: &[Block]) -> Vec<u32> {
    let mut v: Vec<u32> = blocks.iter().map(|b| b.piece.get()).collect();
    v.dedup();
    v
}

/// Receives every block, verifying pieces as they complete.
fn deliver(p: &mut Picker, peer: u64, blocks: &[Block]) {
    for &b in blocks {
        let r = p.block_received(PeerKey(peer), b);
        assert!(r.new);
        if r.piece_complete {
            p.piece_verified(b.piece);
        }
    }
    p.check_invariants();
}

#[test]
fn rejects_wrong_have_length() {
    let l = layout(16 * KIB, 10 * 16 * KIB);
    assert_eq!(
        Picker::new(l, Bitfield::new(9), cfg(), 1).unwrap_err(),
        PickerError::HaveLength {
            got: 9,
            expected: 10
        }
    );
}

#[test]
fn rarest_piece_chosen() {
    let l = layout(32 * KIB, 20 * 32 * KIB);
    for seed in 0..20 {
        let mut p = picker(l, cfg(), seed);
        let all: Vec<u32> = (0..20).collect();
        let common: Vec<u32> = (0..20).filter(|&i| i != 13).collect();
        let (a, b) = (bf(&l, &all), bf(&l, &common));
        p.peer_bitfield(&a);
        p.peer_bitfield(&b);
        p.peer_bitfield(&b);
        p.seed_added();
        assert_eq!(p.availability(l.piece(13).unwrap()), 2);
        assert_eq!(p.availability(l.piece(12).unwrap()), 4);
        let got = pick(&mut p, 1, PeerView::bitfield(&a), 2);
        assert_eq!(pieces_of(&got), [13], "seed {seed}");
        // A peer without piece 13 gets one of the others.
        let got = pick(&mut p, 2, PeerView::bitfield(&b), 1);
        assert_ne!(got[0].piece.get(), 13);
    }
}

#[test]
fn rarest_first_follows_availability_changes() {
    let l = layout(16 * KIB, 8 * 16 * KIB);
    let mut p = picker(l, cfg(), 5);
    let all = Bitfield::full(8);
    for _ in 0..3 {
        p.peer_bitfield(&all);
    }
    // Piece 6 loses holders, piece 2 gains: 6 is now the rarest.
    p.peer_gone(&bf(&l, &[6]));
    p.peer_gone(&bf(&l, &[6]));
    for i in 0..8 {
        if i != 6 {
            p.peer_have(l.piece(i).unwrap());
        }
    }
    assert_eq!(pieces_of(&pick(&mut p, 1, PeerView::seed(), 1)), [6]);
    // Underflow is ignored.
    p.peer_gone(&all);
    p.peer_gone(&all);
    p.peer_gone(&all);
    p.peer_gone(&all);
    p.seed_gone();
    assert_eq!(p.availability(l.piece(6).unwrap()), 0);
    p.check_invariants();
}

#[test]
fn random_first_pieces_vary_across_seeds() {
    let l = layout(16 * KIB, 64 * 16 * KIB);
    let config = PickerConfig {
        random_first_pieces: 4,
        ..PickerConfig::default()
    };
    let all = Bitfield::full(64);
    let mut firsts = BTreeSet::new();
    for seed in 0..30 {
        let mut p = picker(l, config, seed);
        p.peer_bitfield(&all);
        p.peer_bitfield(&all);
        // Piece 0 is strictly the rarest, but random mode ignores that.
        p.peer_gone(&bf(&l, &[0]));
        let got = pick(&mut p, 1, PeerView::bitfield(&all), 1);
        firsts.insert(got[0].piece.get());
    }
    assert!(firsts.len() > 10, "{firsts:?}");
    // Once enough pieces are complete, rarest first takes over.
    let mut p = picker(l, config, 9);
    p.peer_bitfield(&all);
    p.peer_bitfield(&all);
    p.peer_gone(&bf(&l, &[0]));
    for _ in 0..4 {
        let got = pick(&mut p, 1, PeerView::seed(), 1);
        if got[0].piece.get() == 0 {
            // Picked at random: fine, but then it is no longer a candidate.
            deliver(&mut p, 1, &got);
            return;
        }
        deliver(&mut p, 1, &got);
    }
    assert_eq!(p.have().count(), 4);
    assert_eq!(pieces_of(&pick(&mut p, 1, PeerView::seed(), 1)), [0]);
}

#[test]
fn partial_pieces_preferred() {
    let l = layout(256 * KIB, 10 * 256 * KIB);
    let mut p = picker(l, cfg(), 3);
    let all = Bitfield::full(10);
    p.peer_bitfield(&all);
    p.peer_bitfield(&all);
    let first = pick(&mut p, 1, PeerView::seed(), 4);
    assert_eq!(first.len(), 4);
    let piece = first[0].piece;
    assert_eq!(pieces_of(&first), [piece.get()]);
    // Make another piece strictly rarer: peer 2 still continues the open piece.
    p.peer_gone(&bf(&l, &[(piece.get() + 1) % 10]));
    let second = pick(&mut p, 2, PeerView::seed(), 12);
    assert_eq!(pieces_of(&second), [piece.get()]);
    assert_eq!(second[0].begin, 4 * BLOCK_SIZE);
    assert_eq!(p.num_open_pieces(), 1);
    // The piece is fully requested now: the next pick opens the rare one.
    let third = pick(&mut p, 2, PeerView::seed(), 1);
    assert_eq!(pieces_of(&third), [(piece.get() + 1) % 10]);
}

#[test]
fn a_whole_piece_peer_does_not_share_pieces_in_progress() {
    let l = layout(256 * KIB, 10 * 256 * KIB);
    let mut p = picker(l, cfg(), 3);
    p.seed_added();
    p.seed_added();
    // Peer 1 starts a piece; the web seed (peer 2) takes another piece whole.
    let first = pick(&mut p, 1, PeerView::seed(), 4);
    let piece = first[0].piece.get();
    let web = pick(&mut p, 2, PeerView::seed().whole_pieces(true), 16);
    assert_eq!(web.len(), 16);
    let other = pieces_of(&web);
    assert_eq!(other.len(), 1);
    assert_ne!(other[0], piece);
    assert!(web
        .iter()
        .enumerate()
        .all(|(i, b)| b.begin == i as u32 * BLOCK_SIZE));
    // Half a piece for the web seed: it continues that piece of its own next time.
    let half = pick(&mut p, 2, PeerView::seed().whole_pieces(true), 8);
    let mine = half[0].piece.get();
    assert_ne!(mine, piece);
    let rest = pick(&mut p, 2, PeerView::seed().whole_pieces(true), 8);
    assert_eq!(pieces_of(&rest), [mine]);
    assert_eq!(rest[0].begin, 8 * BLOCK_SIZE);
    // An ordinary peer still continues peer 1's piece.
    let more = pick(&mut p, 3, PeerView::seed(), 2);
    assert_eq!(pieces_of(&more), [piece]);
}

#[test]
fn open_pieces_are_capped() {
    let l = layout(256 * KIB, 10 * 256 * KIB);
    let config = PickerConfig {
        min_open_pieces: 1,
        open_pieces_per_peer: 0,
        ..cfg()
    };
    let mut p = picker(l, config, 3);
    let a = bf(&l, &[0]);
    let b = bf(&l, &[1]);
    p.peer_bitfield(&a);
    p.peer_bitfield(&b);
    assert_eq!(pieces_of(&pick(&mut p, 1, PeerView::bitfield(&a), 2)), [0]);
    // Piece 0 still has free blocks, peer 2 lacks it and may not open another.
    assert!(pick(&mut p, 2, PeerView::bitfield(&b), 2).is_empty());
    pick(&mut p, 1, PeerView::bitfield(&a), 100);
    assert_eq!(pieces_of(&pick(&mut p, 2, PeerView::bitfield(&b), 2)), [1]);
    // The priority range is exempt.
    p.set_priority_range(Some(2 * 256 * KIB..3 * 256 * KIB));
    assert_eq!(pieces_of(&pick(&mut p, 3, PeerView::seed(), 1)), [2]);
    assert_eq!(p.num_open_pieces(), 3);
}

#[test]
fn choked_peer_gets_only_allowed_fast() {
    let l = layout(32 * KIB, 10 * 32 * KIB);
    let mut p = picker(l, cfg(), 1);
    let theirs = bf(&l, &[1, 2, 3, 4]);
    p.peer_bitfield(&theirs);
    let view = PeerView::bitfield(&theirs).choked(true);
    assert!(pick(&mut p, 1, view, 10).is_empty());
    let fast = [l.piece(3).unwrap(), l.piece(7).unwrap()];
    let got = pick(&mut p, 1, view.allowed_fast(&fast), 10);
    assert_eq!(pieces_of(&got), [3]);
    assert_eq!(got.len(), 2);
    assert!(pick(&mut p, 1, view.allowed_fast(&fast), 10).is_empty());
    // Unchoked, it gets the rest.
    let got = pick(&mut p, 1, PeerView::bitfield(&theirs), 10);
    let mut ps = pieces_of(&got);
    ps.sort();
    assert_eq!(ps, [1, 2, 4]);
}

#[test]
fn endgame_duplicates_and_cancels() {
    let l = layout(32 * KIB, 2 * 32 * KIB);
    let mut p = picker(l, cfg(), 1);
    for _ in 0..4 {
        p.seed_added();
    }
    let a = pick(&mut p, 1, PeerView::seed(), 10);
    assert_eq!(a.len(), 4);
    assert!(p.in_endgame());
    assert!(pick(&mut p, 1, PeerView::seed(), 10).is_empty());
    let b = pick(&mut p, 2, PeerView::seed(), 10);
    let c = pick(&mut p, 3, PeerView::seed(), 10);
    assert_eq!((b.len(), c.len()), (4, 4));
    // Three copies each: nothing for a fourth peer.
    assert!(pick(&mut p, 4, PeerView::seed(), 10).is_empty());
    assert_eq!(p.num_requests(), 12);
    let r = p.block_received(PeerKey(2), a[0]);
    assert!(r.new && r.requested && !r.piece_complete);
    assert_eq!(r.cancel, [PeerKey(1), PeerKey(3)]);
    assert!(!p.outstanding(PeerKey(1)).contains(&a[0]));
    assert!(!p.outstanding(PeerKey(3)).contains(&a[0]));
    // The cancelled copy arriving anyway is a duplicate.
    let late = p.block_received(PeerKey(1), a[0]);
    assert!(!late.new && !late.requested);
    // A freed copy slot goes to the fourth peer.
    assert!(p.request_failed(PeerKey(3), a[1]));
    let d = pick(&mut p, 4, PeerView::seed(), 10);
    assert_eq!(d, [a[1]]);
    p.check_invariants();
}

#[test]
fn endgame_copies_configurable() {
    let l = layout(16 * KIB, 16 * KIB);
    let config = PickerConfig {
        endgame_copies: 1,
        ..cfg()
    };
    let mut p = picker(l, config, 1);
    assert_eq!(pick(&mut p, 1, PeerView::seed(), 10).len(), 1);
    assert!(p.in_endgame());
    assert!(pick(&mut p, 2, PeerView::seed(), 10).is_empty());
}

#[test]
fn disconnect_returns_blocks() {
    let l = layout(256 * KIB, 4 * 256 * KIB);
    let mut p = picker(l, cfg(), 8);
    let a = pick(&mut p, 1, PeerView::seed(), 20);
    assert_eq!(a.len(), 20);
    assert_eq!(p.outstanding(PeerKey(1)).len(), 20);
    p.peer_disconnected(PeerKey(1));
    p.check_invariants();
    assert!(p.outstanding(PeerKey(1)).is_empty());
    assert_eq!(p.num_requests(), 0);
    assert_eq!(p.num_open_pieces(), 0);
    let b: HashSet<Block> = pick(&mut p, 2, PeerView::seed(), 100).into_iter().collect();
    assert_eq!(b.len(), 64);
    assert!(a.iter().all(|blk| b.contains(blk)));
}

#[test]
fn failed_request_returns_block() {
    let l = layout(64 * KIB, 64 * KIB);
    let mut p = picker(l, cfg(), 8);
    let a = pick(&mut p, 1, PeerView::seed(), 4);
    assert!(
        !p.request_failed(PeerKey(2), a[2]),
        "not outstanding to peer 2"
    );
    assert!(p.request_failed(PeerKey(1), a[2]));
    assert!(!p.request_failed(PeerKey(1), a[2]));
    assert!(!p.in_endgame());
    assert_eq!(pick(&mut p, 2, PeerView::seed(), 1), [a[2]]);
    // Every block is requested again: end-game copies of peer 1's blocks follow.
    assert!(p.in_endgame());
    let copies = pick(&mut p, 2, PeerView::seed(), 4);
    assert_eq!(copies.len(), 3);
    assert!(!copies.contains(&a[2]));
}

#[test]
fn hash_failure_resets_and_goes_single_source() {
    let l = layout(64 * KIB, 2 * 64 * KIB);
    let mut p = picker(l, cfg(), 2);
    let a = pick(&mut p, 1, PeerView::seed(), 2);
    let b = pick(&mut p, 2, PeerView::seed(), 2);
    assert_eq!(pieces_of(&a), pieces_of(&b));
    let piece = a[0].piece;
    for (peer, blocks) in [(1, &a), (2, &b)] {
        for &blk in blocks.iter() {
            let r = p.block_received(PeerKey(peer), blk);
            assert!(r.new);
            assert_eq!(r.piece_complete, peer == 2 && blk == b[1]);
        }
    }
    let before = p.missing_bytes();
    assert_eq!(p.contributors(piece), [PeerKey(1), PeerKey(2)]);
    assert_eq!(p.piece_failed(piece), [PeerKey(1), PeerKey(2)]);
    p.check_invariants();
    assert_eq!(p.missing_bytes(), before);
    assert!(p.is_single_source(piece));
    assert_eq!(p.num_open_pieces(), 0);
    assert!(!p.is_received(a[0]));
    // Peer 3 starts the piece again; peer 4 may not join it.
    p.set_priority_range(Some(l.piece_offset(piece)..l.piece_offset(piece) + 1));
    let c = pick(&mut p, 3, PeerView::seed(), 1);
    assert_eq!(pieces_of(&c), [piece.get()]);
    let d = pick(&mut p, 4, PeerView::seed(), 4);
    assert!(d.iter().all(|blk| blk.piece != piece), "{d:?}");
    // The owner keeps the rest for itself.
    let e = pick(&mut p, 3, PeerView::seed(), 3);
    assert_eq!(e.iter().filter(|blk| blk.piece == piece).count(), 3);
    // The owner chokes us: the piece is released to others.
    for blk in c.iter().chain(&e) {
        p.request_failed(PeerKey(3), *blk);
    }
    p.check_invariants();
    let f = pick(&mut p, 4, PeerView::seed(), 1);
    assert_eq!(pieces_of(&f), [piece.get()]);
    let g = pick(&mut p, 4, PeerView::seed(), 3);
    deliver(&mut p, 4, &g);
    deliver(&mut p, 4, &f);
    assert!(p.have().get(piece));
    assert!(!p.is_single_source(piece));
}

#[test]
fn single_source_owner_disconnect_releases() {
    let l = layout(64 * KIB, 64 * KIB);
    let mut p = picker(l, cfg(), 2);
    let piece = l.piece(0).unwrap();
    let a = pick(&mut p, 1, PeerView::seed(), 2);
    deliver_partial(&mut p, 1, &a);
    let b = pick(&mut p, 2, PeerView::seed(), 2);
    for &blk in &b {
        p.block_received(PeerKey(2), blk);
    }
    p.piece_failed(piece);
    let c = pick(&mut p, 1, PeerView::seed(), 1);
    p.block_received(PeerKey(1), c[0]);
    // Owner 1 has nothing outstanding but still owns the piece.
    assert!(pick(&mut p, 2, PeerView::seed(), 4).is_empty());
    p.peer_disconnected(PeerKey(1));
    p.check_invariants();
    assert_eq!(pick(&mut p, 2, PeerView::seed(), 4).len(), 3);
}

fn deliver_partial(p: &mut Picker, peer: u64, blocks: &[Block]) {
    for &b in blocks {
        assert!(p.block_received(PeerKey(peer), b).new);
    }
}

#[test]
fn priority_range_picked_in_order() {
    let l = layout(32 * KIB, 100 * 32 * KIB);
    let mut p = picker(l, cfg(), 4);
    let all = Bitfield::full(100);
    p.peer_bitfield(&all);
    p.peer_bitfield(&all);
    // Piece 90 is the rarest, but the range comes first.
    p.peer_gone(&bf(&l, &[90]));
    p.set_priority_range(Some(40 * 32 * KIB + 5..45 * 32 * KIB - 1));
    assert_eq!(p.priority_pieces(), Some(40..45));
    let got = pick(&mut p, 1, PeerView::seed(), 7);
    assert_eq!(pieces_of(&got), [40, 41, 42, 43]);
    assert_eq!(got[0].begin, 0);
    assert_eq!(got[1].begin, BLOCK_SIZE);
    let peer2 = bf(&l, &(0..100).filter(|&i| i != 43).collect::<Vec<_>>());
    let got = pick(&mut p, 2, PeerView::bitfield(&peer2), 4);
    assert_eq!(pieces_of(&got), [44, 90]);
    // Cleared: back to rarest first.
    p.set_priority_range(None);
    p.check_invariants();
    let got = pick(&mut p, 1, PeerView::seed(), 1);
    assert_eq!(pieces_of(&got), [43]);
    // A huge range rebuilds the order in bulk.
    p.set_priority_range(Some(0..u64::MAX));
    p.check_invariants();
    assert_eq!(p.priority_pieces(), Some(0..100));
    assert_eq!(pieces_of(&pick(&mut p, 1, PeerView::seed(), 2)), [0]);
    p.set_priority_range(Some(7..7));
    assert_eq!(p.priority_pieces(), None);
    p.check_invariants();
}

#[test]
fn priority_ranges_first_range_first() {
    let l = layout(32 * KIB, 100 * 32 * KIB);
    let mut p = picker(l, cfg(), 4);
    let all = Bitfield::full(100);
    p.peer_bitfield(&all);
    let pl = 32 * KIB;
    // Two readers: the urgent one near the end, the other near the start.
    p.set_priority_ranges(&[80 * pl..82 * pl, 10 * pl..12 * pl, 5..5]);
    assert_eq!(p.priority_ranges(), &[80..82, 10..12]);
    assert_eq!(p.priority_pieces(), Some(80..82));
    p.check_invariants();
    let got = pick(&mut p, 1, PeerView::seed(), 2 * 4);
    assert_eq!(pieces_of(&got), [80, 81, 10, 11]);
    // Past the cap, later ranges are dropped; a range past the end is cut to it.
    let many: Vec<_> = (0..MAX_PRIORITY_RANGES as u64 + 5)
        .map(|i| i * pl..i * pl + 1)
        .collect();
    p.set_priority_ranges(&many);
    assert_eq!(p.priority_ranges().len(), MAX_PRIORITY_RANGES);
    p.set_priority_ranges(std::slice::from_ref(&(99 * pl..u64::MAX)));
    assert_eq!(p.priority_ranges(), std::slice::from_ref(&(99..100)));
    p.check_invariants();
    p.set_priority_ranges(&[]);
    assert!(p.priority_ranges().is_empty());
    p.check_invariants();
}

#[test]
fn resume_from_partial_have() {
    let l = layout(16 * KIB, 10 * 16 * KIB - 100);
    let have = bf(&l, &[0, 2, 4, 6, 9]);
    let mut p = Picker::new(l, have, cfg(), 6).unwrap();
    p.check_invariants();
    assert_eq!(p.missing_bytes(), 5 * 16 * KIB);
    assert!(!p.is_complete());
    let got = pick(&mut p, 1, PeerView::seed(), 100);
    let mut ps = pieces_of(&got);
    ps.sort();
    assert_eq!(ps, [1, 3, 5, 7, 8]);
    // A block of a piece we have is not new.
    let r = p.block_received(PeerKey(1), l.block(l.piece(0).unwrap(), 0).unwrap());
    assert!(!r.new);
    deliver(&mut p, 1, &got);
    assert!(p.is_complete() && p.is_finished());
    assert_eq!(p.missing_bytes(), 0);
    assert!(pick(&mut p, 1, PeerView::seed(), 100).is_empty());
    assert!(!p.in_endgame());
}

#[test]
fn last_piece_short_last_block() {
    // 2 full pieces of 64 KiB, then 40 000 bytes: blocks of 16384, 16384, 7232.
    let l = layout(64 * KIB, 2 * 64 * KIB + 40_000);
    let mut p = picker(l, cfg(), 1);
    p.set_priority_range(Some(2 * 64 * KIB..2 * 64 * KIB + 1));
    let got = pick(&mut p, 1, PeerView::seed(), 10);
    let last: Vec<(u32, u32)> = got
        .iter()
        .filter(|b| b.piece.get() == 2)
        .map(|b| (b.begin, b.length))
        .collect();
    assert_eq!(last, [(0, 16384), (16384, 16384), (32768, 7232)]);
    // A wrongly sized block is refused.
    let bad = Block {
        length: 16384,
        ..got[2]
    };
    assert_eq!(p.block_received(PeerKey(1), bad), Received::default());
    assert!(!p.request_failed(PeerKey(1), bad));
    deliver(&mut p, 1, &got);
    // Pieces 2 and one other are complete; the third is half done (counted missing in full).
    assert_eq!(p.missing_bytes(), 64 * KIB);
}

#[test]
fn never_picks_a_piece_the_peer_lacks() {
    let l = layout(16 * KIB, 500 * 16 * KIB);
    let mut p = picker(l, cfg(), 11);
    let mut rng = crate::rng::Rng::new(99);
    let peers: Vec<Bitfield> = (0..8)
        .map(|i| {
            let density = 0.02 + 0.1 * f64::from(i);
            let ps: Vec<u32> = (0..500).filter(|_| rng.chance(density)).collect();
            bf(&l, &ps)
        })
        .collect();
    for b in &peers {
        p.peer_bitfield(b);
    }
    for round in 0..200 {
        let i = round % peers.len();
        let got = pick(&mut p, i as u64, PeerView::bitfield(&peers[i]), 3);
        for b in &got {
            assert!(peers[i].get(b.piece));
            assert!(!p.have().get(b.piece));
        }
        deliver(&mut p, i as u64, &got);
    }
    // A peer without pieces we need is not interesting.
    let none = bf(&l, &[]);
    assert!(pick(&mut p, 50, PeerView::bitfield(&none), 3).is_empty());
    assert!(!p.interesting(&PeerView::bitfield(&none)));
}

#[test]
fn sparse_peer_among_common_pieces_uses_bitfield_scan() {
    // The peer has only the most common piece: the order scan gives up and the bitfield
    // scan finds it.
    let n = 4000;
    let l = layout(16 * KIB, u64::from(n) * 16 * KIB);
    let mut p = picker(l, cfg(), 1);
    let all: Vec<u32> = (0..n).collect();
    p.peer_bitfield(&bf(&l, &all));
    let one = bf(&l, &[3999]);
    p.peer_bitfield(&one);
    p.peer_bitfield(&one);
    let two = bf(&l, &[1000, 3999]);
    p.peer_bitfield(&two);
    assert_eq!(
        pieces_of(&pick(&mut p, 1, PeerView::bitfield(&two), 1)),
        [1000]
    );
    assert_eq!(
        pieces_of(&pick(&mut p, 2, PeerView::bitfield(&one), 1)),
        [3999]
    );
}

#[test]
fn unrequested_blocks_accepted_when_missing() {
    let l = layout(32 * KIB, 4 * 32 * KIB);
    let mut p = picker(l, cfg(), 1);
    let piece = l.piece(2).unwrap();
    let blk = l.block(piece, 1).unwrap();
    let r = p.block_received(PeerKey(9), blk);
    assert!(r.new && !r.requested && !r.piece_complete && r.cancel.is_empty());
    p.check_invariants();
    assert_eq!(p.num_open_pieces(), 1);
    assert!(p.is_received(blk));
    assert!(!p.block_received(PeerKey(9), blk).new);
    // The other block is requested from peer 1 but comes from peer 2.
    let got = pick(&mut p, 1, PeerView::seed(), 1);
    assert_eq!(got, [l.block(piece, 0).unwrap()]);
    let r = p.block_received(PeerKey(2), got[0]);
    assert!(r.new && !r.requested && r.piece_complete);
    assert_eq!(r.cancel, [PeerKey(1)]);
    assert!(p.outstanding(PeerKey(1)).is_empty());
    p.check_invariants();
    // Unwanted, not in progress: refused.
    let other = l.piece(3).unwrap();
    p.set_wanted(other, false);
    assert!(!p.block_received(PeerKey(9), l.block(other, 0).unwrap()).new);
    // A block of a piece index from another (bigger) torrent is ignored.
    let big = layout(32 * KIB, 100 * 32 * KIB);
    let foreign = big.block(big.piece(50).unwrap(), 0).unwrap();
    assert_eq!(p.block_received(PeerKey(9), foreign), Received::default());
    p.piece_verified(big.piece(50).unwrap());
    p.set_wanted(big.piece(50).unwrap(), false);
    assert!(p.piece_failed(big.piece(50).unwrap()).is_empty());
    p.check_invariants();
}

#[test]
fn unwanted_pieces_are_skipped() {
    let l = layout(16 * KIB, 6 * 16 * KIB);
    let mut p = picker(l, cfg(), 1);
    for i in [0, 1, 2, 3] {
        p.set_wanted(l.piece(i).unwrap(), false);
    }
    p.check_invariants();
    let got = pick(&mut p, 1, PeerView::seed(), 10);
    let mut ps = pieces_of(&got);
    ps.sort();
    assert_eq!(ps, [4, 5]);
    deliver(&mut p, 1, &got);
    assert!(p.is_finished() && !p.is_complete());
    assert!(!p.interesting(&PeerView::seed()));
    assert_eq!(p.missing_bytes(), 4 * 16 * KIB);
    let mut sel = Bitfield::new(6);
    sel.set(l.piece(1).unwrap());
    p.set_wanted_pieces(&sel);
    p.check_invariants();
    assert!(p.interesting(&PeerView::seed()));
    assert!(!p.interesting(&PeerView::bitfield(&bf(&l, &[0, 4]))));
    assert!(p.interesting(&PeerView::bitfield(&bf(&l, &[1]))));
    assert_eq!(pieces_of(&pick(&mut p, 1, PeerView::seed(), 10)), [1]);
}

#[test]
fn verified_piece_cancels_its_requests() {
    // A piece verified from elsewhere (e.g. found on disk) drops its outstanding requests.
    let l = layout(64 * KIB, 64 * KIB);
    let mut p = picker(l, cfg(), 1);
    pick(&mut p, 1, PeerView::seed(), 2);
    p.piece_verified(l.piece(0).unwrap());
    p.check_invariants();
    assert_eq!(p.num_requests(), 0);
    assert!(p.is_complete());
    // A recheck failure makes it missing again.
    assert!(p.piece_failed(l.piece(0).unwrap()).is_empty());
    p.check_invariants();
    assert_eq!(p.missing_bytes(), 64 * KIB);
    assert_eq!(pick(&mut p, 1, PeerView::seed(), 10).len(), 4);
}

#[test]
fn empty_torrent() {
    let l = layout(16 * KIB, 0);
    let mut p = picker(l, cfg(), 1);
    assert!(p.is_complete() && p.is_finished() && !p.in_endgame());
    assert!(pick(&mut p, 1, PeerView::seed(), 4).is_empty());
    p.set_priority_range(Some(0..100));
    p.seed_added();
    p.check_invariants();
}

// ----- random operation sequences -----

#[derive(Debug, Clone)]
enum Op {
    Join {
        peer: u8,
        seed: bool,
        bits: u64,
    },
    Leave {
        peer: u8,
    },
    Have {
        peer: u8,
        piece: u8,
    },
    Pick {
        peer: u8,
        max: u8,
        choked: bool,
        fast: u8,
    },
    Receive {
        peer: u8,
        which: u8,
    },
    Unrequested {
        peer: u8,
        piece: u8,
        block: u8,
    },
    Reject {
        peer: u8,
        which: u8,
    },
    Check {
        which: u8,
        good: bool,
    },
    Range {
        start: u8,
        len: u8,
    },
    Want {
        piece: u8,
        on: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0u8..6;
    prop_oneof![
        2 => (peer.clone(), prop::bool::weighted(0.3), any::<u64>())
            .prop_map(|(peer, seed, bits)| Op::Join { peer, seed, bits }),
        1 => peer.clone().prop_map(|peer| Op::Leave { peer }),
        1 => (peer.clone(), any::<u8>()).prop_map(|(peer, piece)| Op::Have { peer, piece }),
        6 => (peer.clone(), 0u8..10, prop::bool::weighted(0.2), any::<u8>())
            .prop_map(|(peer, max, choked, fast)| Op::Pick { peer, max, choked, fast }),
        6 => (peer.clone(), any::<u8>()).prop_map(|(peer, which)| Op::Receive { peer, which }),
        1 => (peer.clone(), any::<u8>(), any::<u8>())
            .prop_map(|(peer, piece, block)| Op::Unrequested { peer, piece, block }),
        1 => (peer.clone(), any::<u8>()).prop_map(|(peer, which)| Op::Reject { peer, which }),
        3 => (any::<u8>(), prop::bool::weighted(0.6))
            .prop_map(|(which, good)| Op::Check { which, good }),
        1 => (any::<u8>(), 0u8..6).prop_map(|(start, len)| Op::Range { start, len }),
        1 => (any::<u8>(), prop::bool::weighted(0.7)).prop_map(|(piece, on)| Op::Want { piece, on }),
    ]
}

#[derive(Default)]
struct Model {
    /// Connected peers: `None` is a seed.
    peers: BTreeMap<u8, Option<Bitfield>>,
    /// Blocks received since their piece was last reset.
    received: HashSet<Block>,
    /// Pieces reported complete and not yet checked.
    complete: Vec<PieceIndex>,
    avail: Vec<u32>,
    seeds: u32,
}

fn run_ops(l: Layout, config: PickerConfig, seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let n = l.num_pieces();
    let mut p = picker(l, config, seed);
    let mut m = Model {
        avail: vec![0; n as usize],
        ..Model::default()
    };
    for op in ops {
        match *op {
            Op::Join { peer, seed, bits } => {
                if m.peers.contains_key(&peer) {
                    continue;
                }
                if seed {
                    p.seed_added();
                    m.seeds += 1;
                    m.peers.insert(peer, None);
                } else {
                    let ps: Vec<u32> = (0..n).filter(|i| bits >> (i % 64) & 1 == 1).collect();
                    let b = bf(&l, &ps);
                    p.peer_bitfield(&b);
                    for &i in &ps {
                        m.avail[i as usize] += 1;
                    }
                    m.peers.insert(peer, Some(b));
                }
            }
            Op::Leave { peer } => {
                p.peer_disconnected(PeerKey(peer.into()));
                match m.peers.remove(&peer) {
                    Some(None) => {
                        p.seed_gone();
                        m.seeds -= 1;
                    }
                    Some(Some(b)) => {
                        p.peer_gone(&b);
                        for i in b.ones() {
                            m.avail[i as usize] -= 1;
                        }
                    }
                    None => {}
                }
            }
            Op::Have { peer, piece } => {
                if n == 0 {
                    continue;
                }
                let i = l.piece(u32::from(piece) % n).unwrap();
                if let Some(Some(b)) = m.peers.get_mut(&peer) {
                    if b.set(i) {
                        p.peer_have(i);
                        m.avail[i.as_usize()] += 1;
                    }
                }
            }
            Op::Pick {
                peer,
                max,
                choked,
                fast,
            } => {
                let Some(has) = m.peers.get(&peer) else {
                    continue;
                };
                let fast: Vec<PieceIndex> = (0..n)
                    .filter(|i| (fast >> (i % 8)) & 1 == 1)
                    .map(|i| l.piece(i).unwrap())
                    .collect();
                let view = match has {
                    None => PeerView::seed(),
                    Some(b) => PeerView::bitfield(b),
                }
                .choked(choked)
                .allowed_fast(&fast)
                // Peer 5 stands for a web seed.
                .whole_pieces(peer == 5);
                let before: HashSet<Block> = p
                    .outstanding(PeerKey(peer.into()))
                    .iter()
                    .copied()
                    .collect();
                let mut out = vec![];
                let got = p.pick(PeerKey(peer.into()), view, max.into(), &mut out);
                prop_assert_eq!(got, out.len());
                prop_assert!(got <= usize::from(max));
                let mut seen = HashSet::new();
                for b in &out {
                    prop_assert!(view.has(b.piece), "peer lacks {:?}", b);
                    prop_assert!(!p.have().get(b.piece));
                    prop_assert!(p.is_wanted(b.piece));
                    prop_assert!(!m.received.contains(b), "received block picked {:?}", b);
                    prop_assert!(!before.contains(b), "picked twice for one peer {:?}", b);
                    prop_assert!(seen.insert(*b));
                    prop_assert!(!choked || fast.contains(&b.piece));
                    prop_assert!(l.check_block(b.piece.get(), b.begin, b.length).is_ok());
                }
            }
            Op::Receive { peer, which } | Op::Reject { peer, which } => {
                let out = p.outstanding(PeerKey(peer.into()));
                if out.is_empty() {
                    continue;
                }
                let b = out[usize::from(which) % out.len()];
                if matches!(op, Op::Reject { .. }) {
                    prop_assert!(p.request_failed(PeerKey(peer.into()), b));
                } else {
                    receive(&mut p, &mut m, peer, b, true)?;
                }
            }
            Op::Unrequested { peer, piece, block } => {
                if n == 0 {
                    continue;
                }
                let i = l.piece(u32::from(piece) % n).unwrap();
                let b = l.block(i, u32::from(block) % l.num_blocks(i)).unwrap();
                let requested = p.outstanding(PeerKey(peer.into())).contains(&b);
                receive(&mut p, &mut m, peer, b, requested)?;
            }
            Op::Check { which, good } => {
                if m.complete.is_empty() {
                    continue;
                }
                let i = m
                    .complete
                    .swap_remove(usize::from(which) % m.complete.len());
                m.received.retain(|b| b.piece != i);
                if good {
                    p.piece_verified(i);
                    prop_assert!(p.have().get(i));
                } else {
                    let c = p.piece_failed(i);
                    prop_assert!(!c.is_empty());
                    prop_assert!(!p.have().get(i));
                }
            }
            Op::Range { start, len } => {
                let pl = u64::from(l.piece_length());
                let s = u64::from(start) * pl / 3;
                if start % 2 == 0 {
                    p.set_priority_range((len > 0).then(|| s..s + u64::from(len) * pl));
                } else {
                    // Two readers: one here, one a third of the way further on.
                    let t = s + u64::from(n) * pl / 3;
                    p.set_priority_ranges(&[s..s + u64::from(len) * pl, t..t + pl]);
                }
            }
            Op::Want { piece, on } => {
                if n > 0 {
                    let i = l.piece(u32::from(piece) % n).unwrap();
                    p.set_wanted(i, on);
                    if !on {
                        // Its complete-but-unchecked state stays; it may still be checked.
                    }
                }
            }
        }
        p.check_invariants();
        for i in l.pieces() {
            prop_assert_eq!(p.availability(i), m.avail[i.as_usize()] + m.seeds);
        }
        let missing: u64 = l
            .pieces()
            .filter(|&i| !p.have().get(i))
            .map(|i| u64::from(l.piece_len(i)))
            .sum();
        prop_assert_eq!(p.missing_bytes(), missing);
        for b in &m.received {
            prop_assert!(p.is_received(*b));
        }
    }

    // Finish: everyone else leaves, a seed joins, everything is wanted; picking and receiving
    // must complete the torrent.
    for (&peer, has) in &m.peers {
        p.peer_disconnected(PeerKey(peer.into()));
        match has {
            None => p.seed_gone(),
            Some(b) => p.peer_gone(b),
        }
    }
    p.check_invariants();
    prop_assert_eq!(p.num_requests(), 0);
    p.set_priority_range(None);
    p.set_wanted_pieces(&Bitfield::full(n));
    for i in m.complete.drain(..) {
        p.piece_verified(i);
    }
    p.seed_added();
    let mut rounds = 0;
    while !p.is_complete() {
        rounds += 1;
        prop_assert!(rounds < 10_000, "no progress");
        let mut out = vec![];
        p.pick(PeerKey(100), PeerView::seed(), 7, &mut out);
        prop_assert!(!out.is_empty(), "seed gets nothing while incomplete");
        for b in out {
            let r = p.block_received(PeerKey(100), b);
            prop_assert!(r.new && r.requested);
            if r.piece_complete {
                p.piece_verified(b.piece);
            }
        }
    }
    p.check_invariants();
    prop_assert_eq!(p.missing_bytes(), 0);
    Ok(())
}

fn receive(
    p: &mut Picker,
    m: &mut Model,
    peer: u8,
    b: Block,
    requested: bool,
) -> Result<(), TestCaseError> {
    let had = p.have().get(b.piece);
    let in_progress = p.contributors(b.piece).len()
        + usize::from(p.outstanding(PeerKey(peer.into())).contains(&b))
        > 0;
    let r = p.block_received(PeerKey(peer.into()), b);
    prop_assert_eq!(r.requested, requested);
    prop_assert!(!r.cancel.contains(&PeerKey(peer.into())));
    for q in &r.cancel {
        prop_assert!(!p.outstanding(*q).contains(&b));
    }
    prop_assert!(!p.outstanding(PeerKey(peer.into())).contains(&b));
    if m.received.contains(&b) || had {
        prop_assert!(!r.new, "block counted twice {:?}", b);
    } else if p.is_wanted(b.piece) || in_progress {
        prop_assert!(r.new || !p.is_wanted(b.piece));
    }
    if r.new {
        m.received.insert(b);
        prop_assert!(p.is_received(b));
    }
    if r.piece_complete {
        prop_assert!(r.new);
        prop_assert!(l_blocks_received(p, m, b.piece));
        m.complete.push(b.piece);
    }
    Ok(())
}

fn l_blocks_received(p: &Picker, m: &Model, piece: PieceIndex) -> bool {
    p.layout().blocks(piece).all(|b| m.received.contains(&b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_operations_keep_invariants(
        pieces in 0u32..12,
        tail in 0u32..3 * 16384,
        seed in any::<u64>(),
        copies in 1u8..4,
        random_first in 0u32..3,
        ops in prop::collection::vec(op(), 0..200),
    ) {
        // Pieces of two blocks, and a short last piece.
        let total = u64::from(pieces) * 32768 + u64::from(tail % 32768);
        let l = layout(32 * KIB, total);
        let config = PickerConfig {
            random_first_pieces: random_first,
            min_open_pieces: 2,
            open_pieces_per_peer: 1,
            endgame_copies: copies,
            single_source_after_failure: true,
        };
        run_ops(l, config, seed, &ops)?;
    }

    #[test]
    fn bigger_pieces_keep_invariants(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let l = layout(128 * KIB, 9 * 128 * KIB + 5000);
        run_ops(l, PickerConfig::default(), seed, &ops)?;
    }
}
