//! Piece picking: which blocks to request from which peer.
//!
//! The [`Picker`] knows what we have, how many peers have each piece and which blocks are
//! requested from whom. The torrent state machine feeds it peers' bitfields and `have`s,
//! asks it for blocks to request ([`Picker::pick`]) and reports what came back. It never
//! touches sockets, clocks or OS randomness; ties are broken with a seeded [`Rng`].
//!
//! Order of preference for one peer:
//! 1. pieces overlapping the priority (streaming) byte range, in piece order;
//! 2. pieces already in progress (bounding how many are open at once);
//! 3. new pieces: random ones until a few are complete, then rarest first with random
//!    tie-break;
//! 4. in end-game (every missing block requested), blocks already requested from other peers,
//!    up to [`PickerConfig::endgame_copies`] copies of each.
//!
//! A choked peer is only asked for pieces in its allowed-fast set (BEP 6).
//!
//! Costs: a ±1 availability change is O(1); opening or closing a piece is O(peers) at worst
//! (one swap per availability bucket above it); a pick touches the few pieces in progress,
//! then scans the availability order from the rarest end, falling back to a word-wise scan of
//! the peer's bitfield when the peer lacks the rare pieces.

mod bits;
mod order;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ops::Range;

use crate::id::PeerKey;
use crate::piece::{Bitfield, Block, Layout, PieceIndex, BLOCK_SIZE};
use crate::rng::Rng;
use bits::{next_in, Bits, PeerBits};
use order::Order;

/// Most copies of one block that can be outstanding at once (end-game).
pub const MAX_COPIES: usize = 3;

const NONE: u32 = u32::MAX;
/// `Slot::n` of a received block; `peers[0]` is then the peer that sent it.
const RECEIVED: u8 = u8::MAX;
/// Fewest places of the availability order a pick looks at before switching to a scan of
/// the peer's bitfield.
const SCAN_BUDGET: usize = 256;
/// Random probes of the order per random pick before scanning the peer's bitfield.
const RANDOM_PROBES: usize = 16;
/// A priority range change touching more pieces than `num_pieces / BULK_DIVISOR` rebuilds the
/// order instead of moving pieces one at a time.
const BULK_DIVISOR: u32 = 16;

/// Errors from building a picker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickerError {
    /// The have bitfield does not cover exactly the torrent's pieces.
    #[error("have bitfield covers {got} pieces, torrent has {expected}")]
    HaveLength {
        /// Pieces covered by the bitfield.
        got: u32,
        /// Pieces in the torrent.
        expected: u32,
    },
}

/// Tuning of a [`Picker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickerConfig {
    /// Pick random pieces (instead of rarest) until this many pieces are complete.
    pub random_first_pieces: u32,
    /// Pieces in progress with unrequested blocks allowed regardless of the peer count.
    pub min_open_pieces: usize,
    /// More pieces in progress allowed per peer with outstanding requests. A new piece is
    /// started only while fewer than `max(min_open_pieces, open_pieces_per_peer * peers)`
    /// pieces in progress still have unrequested blocks (pieces in the priority range and
    /// allowed-fast pieces of a choked peer are exempt).
    pub open_pieces_per_peer: usize,
    /// Most peers one block is requested from at once in end-game (1 disables end-game;
    /// values above [`MAX_COPIES`] count as `MAX_COPIES`).
    pub endgame_copies: u8,
    /// After a hash failure of a piece that came from several peers, download it again from
    /// one peer only, so that a corrupting peer can be identified.
    pub single_source_after_failure: bool,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            random_first_pieces: 4,
            min_open_pieces: 8,
            open_pieces_per_peer: 2,
            endgame_copies: 3,
            single_source_after_failure: true,
        }
    }
}

/// The pieces a peer has.
#[derive(Debug, Clone, Copy)]
pub enum PeerPieces<'a> {
    /// Every piece (a seed, or `HaveAll`).
    All,
    /// The pieces set in its bitfield.
    Some(&'a Bitfield),
}

/// What the picker needs to know about a peer to pick for it.
#[derive(Debug, Clone, Copy)]
pub struct PeerView<'a> {
    /// The pieces it has.
    pub pieces: PeerPieces<'a>,
    /// Whether it chokes us.
    pub choked: bool,
    /// Pieces it lets us request while choked (BEP 6).
    pub allowed_fast: &'a [PieceIndex],
}

impl<'a> PeerView<'a> {
    /// An unchoking peer with every piece.
    pub fn seed() -> Self {
        PeerView {
            pieces: PeerPieces::All,
            choked: false,
            allowed_fast: &[],
        }
    }

    /// An unchoking peer with the pieces in `bitfield`.
    pub fn bitfield(bitfield: &'a Bitfield) -> Self {
        PeerView {
            pieces: PeerPieces::Some(bitfield),
            choked: false,
            allowed_fast: &[],
        }
    }

    /// Sets whether the peer chokes us.
    pub fn choked(mut self, choked: bool) -> Self {
        self.choked = choked;
        self
    }

    /// Sets the peer's allowed-fast set.
    pub fn allowed_fast(mut self, pieces: &'a [PieceIndex]) -> Self {
        self.allowed_fast = pieces;
        self
    }

    /// Whether the peer has the piece.
    pub fn has(&self, piece: PieceIndex) -> bool {
        self.bits().get(piece.get())
    }

    fn bits(&self) -> PeerBits<'a> {
        match self.pieces {
            PeerPieces::All => PeerBits::All,
            PeerPieces::Some(bf) => PeerBits::of(bf),
        }
    }
}

/// What [`Picker::block_received`] made of a block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    /// We needed the block: store it. False for duplicates, blocks of pieces we have, blocks
    /// of unwanted pieces not in progress, and blocks that do not fit the torrent's block
    /// grid.
    pub new: bool,
    /// The sending peer had it outstanding (false: unrequested, or already cancelled).
    pub requested: bool,
    /// This block completed its piece: hash it, then call [`Picker::piece_verified`] or
    /// [`Picker::piece_failed`].
    pub piece_complete: bool,
    /// Other peers the block was requested from: send them `cancel`. Their requests are no
    /// longer outstanding.
    pub cancel: Vec<PeerKey>,
}

/// One block of a piece in progress.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Number of peers it is requested from, or [`RECEIVED`].
    n: u8,
    /// The requesting peers (`..n`), or the sender when received.
    peers: [PeerKey; MAX_COPIES],
}

const EMPTY_SLOT: Slot = Slot {
    n: 0,
    peers: [PeerKey(0); MAX_COPIES],
};

/// A piece in progress.
#[derive(Debug, Clone)]
struct OpenPiece {
    piece: u32,
    slots: Vec<Slot>,
    /// Blocks neither requested nor received.
    free: u32,
    /// Blocks requested from at least one peer and not received.
    requested: u32,
    received: u32,
    /// No free block below this index.
    hint: u32,
    /// Single-source pieces: the one peer this piece is downloaded from.
    owner: Option<PeerKey>,
    /// Index in `Picker::partial`, or `NONE`.
    partial_pos: u32,
}

impl OpenPiece {
    fn is_complete(&self) -> bool {
        self.received as usize == self.slots.len()
    }
}

/// Per-peer bookkeeping, present while the peer has outstanding requests or owns pieces.
#[derive(Debug, Clone, Default)]
struct PeerState {
    outstanding: Vec<Block>,
    owned: Vec<u32>,
}

/// Decides which blocks to request from which peer. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Picker {
    layout: Layout,
    config: PickerConfig,
    rng: Rng,
    have: Bitfield,
    /// Pieces the user wants (priority above zero).
    wanted: Bits,
    /// Wanted and not had.
    want: Bits,
    /// Wanted, not had, and with a free block.
    pickable: Bits,
    /// In `order`: wanted, normal priority, not had, not in progress.
    fresh: Bits,
    /// Download from one peer only.
    single: Bits,
    /// Peers with a bitfield that have the piece (seeds are counted in `seeds`).
    avail: Vec<u32>,
    seeds: u32,
    order: Order,
    /// Piece -> index in `open`, or `NONE`.
    slot_of: Vec<u32>,
    open: Vec<OpenPiece>,
    spare: Vec<u32>,
    num_open: usize,
    num_finished: usize,
    /// Open pieces that are wanted and have free blocks.
    partial: Vec<u32>,
    /// Free blocks each piece contributes to `free_blocks`.
    counted: Vec<u32>,
    free_blocks: u64,
    wanted_missing: u32,
    missing_bytes: u64,
    num_requests: usize,
    range: Option<Range<u32>>,
    peers: BTreeMap<PeerKey, PeerState>,
}

impl Picker {
    /// A picker for `layout` that already has the pieces in `have` (all clear for a new
    /// download), with every piece wanted and the given tuning and random seed.
    pub fn new(
        layout: Layout,
        have: Bitfield,
        config: PickerConfig,
        seed: u64,
    ) -> Result<Self, PickerError> {
        let n = layout.num_pieces();
        if have.len() != n {
            return Err(PickerError::HaveLength {
                got: have.len(),
                expected: n,
            });
        }
        let mut wanted = Bits::new(n);
        for p in 0..n {
            wanted.put(p, true);
        }
        let mut picker = Picker {
            layout,
            config,
            rng: Rng::new(seed),
            have,
            wanted,
            want: Bits::new(n),
            pickable: Bits::new(n),
            fresh: Bits::new(n),
            single: Bits::new(n),
            avail: vec![0; n as usize],
            seeds: 0,
            order: Order::new(n),
            slot_of: vec![NONE; n as usize],
            open: Vec::new(),
            spare: Vec::new(),
            num_open: 0,
            num_finished: 0,
            partial: Vec::new(),
            counted: vec![0; n as usize],
            free_blocks: 0,
            wanted_missing: 0,
            missing_bytes: 0,
            num_requests: 0,
            range: None,
            peers: BTreeMap::new(),
        };
        for p in 0..n {
            if !picker.have.get_raw(p) {
                picker.missing_bytes += u64::from(picker.piece_len(p));
            }
            picker.refresh(p, false);
        }
        picker.rebuild_order();
        Ok(picker)
    }

    // ----- availability -----

    /// A peer announced its bitfield: each piece in it becomes one more available.
    pub fn peer_bitfield(&mut self, bitfield: &Bitfield) {
        self.for_each_piece_of(bitfield, |s, p| s.inc_avail(p));
    }

    /// A peer announced a piece (`have`). Call once per piece per peer.
    pub fn peer_have(&mut self, piece: PieceIndex) {
        if piece.get() < self.num_pieces() {
            self.inc_avail(piece.get());
        }
    }

    /// A peer with `bitfield` (its latest) went away, or lost its pieces.
    pub fn peer_gone(&mut self, bitfield: &Bitfield) {
        self.for_each_piece_of(bitfield, |s, p| s.dec_avail(p));
    }

    /// A peer with every piece joined (counted apart: O(1)).
    pub fn seed_added(&mut self) {
        self.seeds = self.seeds.saturating_add(1);
    }

    /// A peer counted with [`Picker::seed_added`] went away.
    pub fn seed_gone(&mut self) {
        self.seeds = self.seeds.saturating_sub(1);
    }

    /// Number of peers known to have the piece, seeds included.
    pub fn availability(&self, piece: PieceIndex) -> u32 {
        self.avail
            .get(piece.as_usize())
            .map_or(0, |a| a.saturating_add(self.seeds))
    }

    fn for_each_piece_of(&mut self, bitfield: &Bitfield, mut f: impl FnMut(&mut Self, u32)) {
        let n = self.num_pieces();
        for (i, &byte) in bitfield.as_bytes().iter().enumerate() {
            let mut b = byte;
            while b != 0 {
                let p = i as u32 * 8 + b.leading_zeros();
                if p >= n {
                    return;
                }
                f(self, p);
                b &= !(0x80 >> (p % 8));
            }
        }
    }

    fn inc_avail(&mut self, p: u32) {
        let a = self.avail[p as usize];
        if a == u32::MAX {
            return;
        }
        self.order.inc(p, a);
        self.avail[p as usize] = a + 1;
    }

    fn dec_avail(&mut self, p: u32) {
        let a = self.avail[p as usize];
        if a == 0 {
            return;
        }
        self.order.dec(p, a);
        self.avail[p as usize] = a - 1;
    }

    // ----- priorities -----

    /// Pieces overlapping this byte range of the torrent are picked first, in order
    /// (streaming). `None` or an empty range clears it.
    pub fn set_priority_range(&mut self, range: Option<Range<u64>>) {
        let pl = u64::from(self.layout.piece_length());
        let n = u64::from(self.num_pieces());
        let new = range.filter(|r| r.start < r.end).and_then(|r| {
            let start = r.start / pl;
            let end = r.end.min(self.layout.total_length()).div_ceil(pl).min(n);
            (start < end).then_some(start as u32..end as u32)
        });
        if new == self.range {
            return;
        }
        let old = std::mem::replace(&mut self.range, new.clone());
        let touched: u32 = [&old, &new]
            .iter()
            .filter_map(|r| r.as_ref().map(|r| r.len() as u32))
            .sum();
        let bulk = touched > self.num_pieces() / BULK_DIVISOR;
        for r in [old, new].into_iter().flatten() {
            for p in r {
                self.refresh(p, !bulk);
            }
        }
        if bulk {
            self.rebuild_order();
        }
    }

    /// The priority range, as piece indexes.
    pub fn priority_pieces(&self) -> Option<Range<u32>> {
        self.range.clone()
    }

    /// Whether we want the piece at all (priority zero: never picked). Requests already sent
    /// for it stay outstanding.
    pub fn set_wanted(&mut self, piece: PieceIndex, wanted: bool) {
        let p = piece.get();
        if p < self.num_pieces() && self.wanted.get(p) != wanted {
            self.wanted.put(p, wanted);
            self.refresh(p, true);
        }
    }

    /// Replaces the whole wanted set (a file selection) in one pass.
    pub fn set_wanted_pieces(&mut self, wanted: &Bitfield) {
        for p in 0..self.num_pieces() {
            self.wanted.put(p, wanted.get_raw(p));
            self.refresh(p, false);
        }
        self.rebuild_order();
    }

    /// Whether the piece is wanted.
    pub fn is_wanted(&self, piece: PieceIndex) -> bool {
        self.wanted.get(piece.get())
    }

    // ----- picking -----

    /// Picks up to `max_blocks` blocks to request from `peer`, appends them to `out`, marks
    /// them requested by `peer` and returns how many were picked.
    ///
    /// Never returns a block `peer` already has outstanding, a received block, a block of a
    /// piece we have or don't want, or a piece the peer lacks. A choked peer only gets
    /// pieces of its allowed-fast set.
    pub fn pick(
        &mut self,
        peer: PeerKey,
        view: PeerView<'_>,
        max_blocks: usize,
        out: &mut Vec<Block>,
    ) -> usize {
        let start = out.len();
        if max_blocks == 0 || self.wanted_missing == 0 {
            return 0;
        }
        let bits = view.bits();
        let mut need = max_blocks;
        if view.choked {
            for &piece in view.allowed_fast {
                let p = piece.get();
                if need == 0 {
                    break;
                }
                if self.pickable.get(p) && bits.get(p) && self.owner_ok(p, peer) {
                    self.take(p, peer, &mut need, out);
                }
            }
            if need > 0 && self.in_endgame() {
                self.endgame(peer, bits, Some(view.allowed_fast), &mut need, out);
            }
        } else {
            self.pick_unchoked(peer, bits, &mut need, out);
        }
        let picked = out.len() - start;
        if picked > 0 {
            self.num_requests += picked;
            self.peers
                .entry(peer)
                .or_default()
                .outstanding
                .extend_from_slice(&out[start..]);
        }
        picked
    }

    fn pick_unchoked(
        &mut self,
        peer: PeerKey,
        bits: PeerBits<'_>,
        need: &mut usize,
        out: &mut Vec<Block>,
    ) {
        // 1. The priority range, in order.
        if let Some(r) = self.range.clone() {
            let mut from = r.start;
            while *need > 0 {
                let Some(p) = next_in(from, r.end, |w| self.pickable.word(w) & bits.word(w)) else {
                    break;
                };
                if self.owner_ok(p, peer) {
                    self.take(p, peer, need, out);
                }
                from = p + 1;
            }
        }
        // 2. Pieces in progress.
        let mut i = 0;
        while *need > 0 && i < self.partial.len() {
            let p = self.partial[i];
            if bits.get(p) && !self.in_range(p) && self.owner_ok(p, peer) {
                self.take(p, peer, need, out);
            }
            if self.partial.get(i) == Some(&p) {
                i += 1;
            }
        }
        // 3. New pieces.
        if *need > 0 && self.order.len() > 0 {
            let active = self.peers.len() + usize::from(!self.peers.contains_key(&peer));
            let cap = self
                .config
                .min_open_pieces
                .max(self.config.open_pieces_per_peer.saturating_mul(active));
            let random = self.have.count() as usize + self.num_finished
                < self.config.random_first_pieces as usize;
            let mut from = 0;
            while *need > 0 && self.partial.len() < cap {
                let found = if random {
                    self.random_fresh(bits)
                } else {
                    self.rarest_fresh(bits, &mut from)
                };
                let Some(p) = found else {
                    break;
                };
                self.take(p, peer, need, out);
            }
        }
        // 4. End-game.
        if *need > 0 && self.in_endgame() {
            self.endgame(peer, bits, None, need, out);
        }
    }

    /// The rarest piece in `order` the peer has, starting at place `*from`.
    fn rarest_fresh(&mut self, bits: PeerBits<'_>, from: &mut usize) -> Option<u32> {
        let len = self.order.len();
        let start = match bits {
            // Pieces nobody with a bitfield has cannot be in this peer's bitfield.
            PeerBits::Some(..) => (*from).max(self.order.start_of(1)),
            PeerBits::All => *from,
        };
        // Scan the order while that is likely cheaper than the fallback below, which costs
        // one step per bitfield word plus one per candidate piece: at most twice the better
        // of the two.
        let candidates = u64::from(bits.count()).min(u64::from(self.num_pieces())) * len as u64
            / u64::from(self.num_pieces()).max(1);
        let budget = SCAN_BUDGET.max(self.fresh.num_words() + candidates as usize);
        let end = len.min(start.saturating_add(budget));
        for i in start..end {
            let p = self.order.at(i);
            if bits.get(p) {
                *from = i;
                return Some(p);
            }
        }
        if end == len {
            *from = len;
            return None;
        }
        // The peer lacks the rarest pieces: find its piece with the lowest place.
        let mut best: Option<(u32, u32)> = None;
        for w in 0..self.fresh.num_words() {
            let mut x = self.fresh.word(w) & bits.word(w);
            while x != 0 {
                let p = w as u32 * 64 + x.leading_zeros();
                x &= !(1u64 << (63 - p % 64));
                if let Some(pos) = self.order.pos(p) {
                    if best.is_none_or(|(b, _)| pos < b) {
                        best = Some((pos, p));
                    }
                }
            }
        }
        match best {
            Some((pos, p)) => {
                *from = pos as usize;
                Some(p)
            }
            None => {
                *from = len;
                None
            }
        }
    }

    /// A random piece in `order` the peer has.
    fn random_fresh(&mut self, bits: PeerBits<'_>) -> Option<u32> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        for _ in 0..RANDOM_PROBES {
            let p = self.order.at(self.rng.below(len as u64) as usize);
            if bits.get(p) {
                return Some(p);
            }
        }
        let words = self.fresh.num_words();
        let first = self.rng.below(words as u64) as usize;
        for k in 0..words {
            let w = (first + k) % words;
            let x = self.fresh.word(w) & bits.word(w);
            if x != 0 {
                let mut skip = self.rng.below(u64::from(x.count_ones()));
                let mut y = x;
                loop {
                    let bit = y.leading_zeros();
                    if skip == 0 {
                        return Some(w as u32 * 64 + bit);
                    }
                    skip -= 1;
                    y &= !(1u64 << (63 - bit));
                }
            }
        }
        None
    }

    /// Requests free blocks of `p` (opening it if needed) from `peer`.
    fn take(&mut self, p: u32, peer: PeerKey, need: &mut usize, out: &mut Vec<Block>) {
        let s = self.open_piece(p);
        let piece = self.index(p);
        let len = self.piece_len(p);
        let single = self.single.get(p);
        let op = &mut self.open[s as usize];
        let mut newly_owned = false;
        if single && op.owner.is_none() {
            op.owner = Some(peer);
            newly_owned = true;
        }
        let mut i = op.hint as usize;
        while *need > 0 && i < op.slots.len() {
            let slot = &mut op.slots[i];
            if slot.n == 0 {
                slot.n = 1;
                slot.peers[0] = peer;
                op.free -= 1;
                op.requested += 1;
                *need -= 1;
                let begin = i as u32 * BLOCK_SIZE;
                out.push(Block {
                    piece,
                    begin,
                    length: (len - begin).min(BLOCK_SIZE),
                });
            }
            i += 1;
        }
        op.hint = i as u32;
        if newly_owned {
            self.peers.entry(peer).or_default().owned.push(p);
        }
        self.refresh(p, true);
    }

    /// End-game: blocks already requested from others, fewest copies first.
    fn endgame(
        &mut self,
        peer: PeerKey,
        bits: PeerBits<'_>,
        only: Option<&[PieceIndex]>,
        need: &mut usize,
        out: &mut Vec<Block>,
    ) {
        let copies = usize::from(self.config.endgame_copies).min(MAX_COPIES);
        for c in 1..copies {
            for s in 0..self.open.len() {
                if *need == 0 {
                    return;
                }
                let p = self.open[s].piece;
                if p == NONE
                    || !self.want.get(p)
                    || !bits.get(p)
                    || !self.owner_ok(p, peer)
                    || only.is_some_and(|set| !set.iter().any(|x| x.get() == p))
                {
                    continue;
                }
                let piece = self.index(p);
                let len = self.piece_len(p);
                let op = &mut self.open[s];
                for (i, slot) in op.slots.iter_mut().enumerate() {
                    if *need == 0 {
                        break;
                    }
                    let n = usize::from(slot.n);
                    if n == c && !slot.peers[..n].contains(&peer) {
                        slot.peers[n] = peer;
                        slot.n += 1;
                        *need -= 1;
                        let begin = i as u32 * BLOCK_SIZE;
                        out.push(Block {
                            piece,
                            begin,
                            length: (len - begin).min(BLOCK_SIZE),
                        });
                    }
                }
            }
        }
    }

    // ----- request bookkeeping -----

    /// A block arrived from `peer`. Records it if we need it (requested or not) and says
    /// which other peers to cancel it with.
    pub fn block_received(&mut self, peer: PeerKey, block: Block) -> Received {
        let Some(n) = self.block_no(&block) else {
            return Received::default();
        };
        let p = block.piece.get();
        let requested = self.drop_outstanding(peer, &block);
        let mut r = Received {
            requested,
            ..Received::default()
        };
        if self.have.get_raw(p) {
            return r;
        }
        let mut s = self.slot_of[p as usize];
        if s == NONE {
            if !self.want.get(p) {
                return r;
            }
            s = self.open_piece(p);
        }
        let slot = self.open[s as usize].slots[n as usize];
        if slot.n == RECEIVED {
            self.refresh(p, true);
            return r;
        }
        for &q in &slot.peers[..usize::from(slot.n)] {
            if q != peer {
                self.drop_outstanding(q, &block);
                r.cancel.push(q);
            }
        }
        let op = &mut self.open[s as usize];
        if slot.n > 0 {
            op.requested -= 1;
        } else {
            op.free -= 1;
        }
        op.slots[n as usize] = Slot {
            n: RECEIVED,
            peers: [peer; MAX_COPIES],
        };
        op.received += 1;
        r.new = true;
        if op.is_complete() {
            r.piece_complete = true;
            self.num_finished += 1;
        }
        self.refresh(p, true);
        r
    }

    /// A request to `peer` will not be answered (rejected, timed out, or choked without the
    /// fast extension): the block goes back to the pool. Returns whether it was outstanding.
    pub fn request_failed(&mut self, peer: PeerKey, block: Block) -> bool {
        let Some(n) = self.block_no(&block) else {
            return false;
        };
        if !self.drop_outstanding(peer, &block) {
            return false;
        }
        let p = block.piece.get();
        self.release_slot(p, n, peer);
        let s = self.slot_of[p as usize];
        if s != NONE && self.open[s as usize].owner == Some(peer) {
            let still = self
                .peers
                .get(&peer)
                .is_some_and(|st| st.outstanding.iter().any(|b| b.piece.get() == p));
            if !still {
                self.disown(p, peer);
            }
        }
        self.refresh(p, true);
        true
    }

    /// `peer` is gone: all its outstanding requests go back to the pool, and pieces it was
    /// the single source of are released.
    pub fn peer_disconnected(&mut self, peer: PeerKey) {
        let Some(st) = self.peers.remove(&peer) else {
            return;
        };
        self.num_requests -= st.outstanding.len();
        for b in &st.outstanding {
            if let Some(n) = self.block_no(b) {
                self.release_slot(b.piece.get(), n, peer);
            }
        }
        for &p in &st.owned {
            let s = self.slot_of[p as usize];
            if s != NONE && self.open[s as usize].owner == Some(peer) {
                self.open[s as usize].owner = None;
            }
        }
        for b in &st.outstanding {
            self.refresh(b.piece.get(), true);
        }
        for &p in &st.owned {
            self.refresh(p, true);
        }
    }

    /// Blocks outstanding to `peer`, oldest first until some are removed.
    pub fn outstanding(&self, peer: PeerKey) -> &[Block] {
        self.peers
            .get(&peer)
            .map_or(&[][..], |st| st.outstanding.as_slice())
    }

    /// Number of outstanding requests over all peers (end-game copies counted each).
    pub fn num_requests(&self) -> usize {
        self.num_requests
    }

    // ----- piece completion -----

    /// The piece passed its hash check: we have it.
    pub fn piece_verified(&mut self, piece: PieceIndex) {
        let p = piece.get();
        if p >= self.num_pieces() || self.have.get_raw(p) {
            return;
        }
        self.drop_piece(p);
        self.have.set(piece);
        self.missing_bytes -= u64::from(self.piece_len(p));
        self.single.put(p, false);
        self.refresh(p, true);
    }

    /// The piece failed its hash check (or a recheck found it bad): all its blocks are
    /// missing again. Returns the peers that sent its blocks, ascending; when there were
    /// several, the piece is downloaded from a single peer next time (if configured).
    pub fn piece_failed(&mut self, piece: PieceIndex) -> Vec<PeerKey> {
        let p = piece.get();
        if p >= self.num_pieces() {
            return Vec::new();
        }
        let contributors = self.contributors(piece);
        self.drop_piece(p);
        if self.have.unset(piece) {
            self.missing_bytes += u64::from(self.piece_len(p));
        }
        if self.config.single_source_after_failure && contributors.len() > 1 {
            self.single.put(p, true);
        }
        self.refresh(p, true);
        contributors
    }

    /// Peers that sent received blocks of a piece in progress, ascending.
    pub fn contributors(&self, piece: PieceIndex) -> Vec<PeerKey> {
        let Some(&s) = self.slot_of.get(piece.as_usize()) else {
            return Vec::new();
        };
        if s == NONE {
            return Vec::new();
        }
        let mut v: Vec<PeerKey> = self.open[s as usize]
            .slots
            .iter()
            .filter(|sl| sl.n == RECEIVED)
            .map(|sl| sl.peers[0])
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether the piece is downloaded from one peer only (after a failure).
    pub fn is_single_source(&self, piece: PieceIndex) -> bool {
        self.single.get(piece.get())
    }

    // ----- queries -----

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Pieces we have (verified).
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when we have every piece.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// True when we have every wanted piece.
    pub fn is_finished(&self) -> bool {
        self.wanted_missing == 0
    }

    /// Bytes of the pieces we do not have (wanted or not; partial pieces count in full).
    pub fn missing_bytes(&self) -> u64 {
        self.missing_bytes
    }

    /// Whether the peer has a piece we want and do not have. O(pieces / 64).
    pub fn interesting(&self, view: &PeerView<'_>) -> bool {
        match view.bits() {
            PeerBits::All => self.wanted_missing > 0,
            bits => self.want.intersects(&bits),
        }
    }

    /// Pieces in progress: opened and not yet verified or failed (including complete ones
    /// awaiting their hash check).
    pub fn num_open_pieces(&self) -> usize {
        self.num_open
    }

    /// True when every block of every wanted missing piece is requested or received.
    pub fn in_endgame(&self) -> bool {
        self.free_blocks == 0 && self.wanted_missing > 0
    }

    /// Whether the block is received and awaiting its piece's verification, or its piece is
    /// had.
    pub fn is_received(&self, block: Block) -> bool {
        let Some(n) = self.block_no(&block) else {
            return false;
        };
        let p = block.piece.get();
        if self.have.get_raw(p) {
            return true;
        }
        let s = self.slot_of[p as usize];
        s != NONE && self.open[s as usize].slots[n as usize].n == RECEIVED
    }

    // ----- internals -----

    fn num_pieces(&self) -> u32 {
        self.layout.num_pieces()
    }

    fn index(&self, p: u32) -> PieceIndex {
        self.layout
            .piece(p)
            .expect("internal piece indexes are below num_pieces")
    }

    fn piece_len(&self, p: u32) -> u32 {
        self.layout.piece_len(self.index(p))
    }

    fn num_blocks(&self, p: u32) -> u32 {
        self.piece_len(p).div_ceil(BLOCK_SIZE)
    }

    fn in_range(&self, p: u32) -> bool {
        self.range.as_ref().is_some_and(|r| r.contains(&p))
    }

    /// The block's number within its piece, if it is one of this torrent's blocks.
    fn block_no(&self, b: &Block) -> Option<u32> {
        let p = b.piece.get();
        if p >= self.num_pieces() || b.begin % BLOCK_SIZE != 0 {
            return None;
        }
        let len = self.piece_len(p);
        if b.begin >= len || b.length != (len - b.begin).min(BLOCK_SIZE) {
            return None;
        }
        Some(b.begin / BLOCK_SIZE)
    }

    fn owner_ok(&self, p: u32, peer: PeerKey) -> bool {
        match self.slot_of[p as usize] {
            NONE => true,
            s => self.open[s as usize].owner.is_none_or(|o| o == peer),
        }
    }

    /// Removes `block` from `peer`'s outstanding requests; whether it was there.
    fn drop_outstanding(&mut self, peer: PeerKey, block: &Block) -> bool {
        let Some(st) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(i) = st.outstanding.iter().position(|b| b == block) else {
            return false;
        };
        st.outstanding.swap_remove(i);
        self.num_requests -= 1;
        if st.outstanding.is_empty() && st.owned.is_empty() {
            self.peers.remove(&peer);
        }
        true
    }

    /// Takes `peer` off block `n` of open piece `p` (its outstanding list is updated by the
    /// caller).
    fn release_slot(&mut self, p: u32, n: u32, peer: PeerKey) {
        let s = self.slot_of[p as usize];
        if s == NONE {
            return;
        }
        let op = &mut self.open[s as usize];
        let slot = &mut op.slots[n as usize];
        if slot.n == RECEIVED {
            return;
        }
        let k = usize::from(slot.n);
        let Some(i) = slot.peers[..k].iter().position(|&q| q == peer) else {
            return;
        };
        slot.peers.copy_within(i + 1..k, i);
        slot.n -= 1;
        if slot.n == 0 {
            op.requested -= 1;
            op.free += 1;
            op.hint = op.hint.min(n);
        }
    }

    /// Ends `peer`'s ownership of single-source piece `p`.
    fn disown(&mut self, p: u32, peer: PeerKey) {
        let s = self.slot_of[p as usize];
        if s != NONE && self.open[s as usize].owner == Some(peer) {
            self.open[s as usize].owner = None;
        }
        if let Some(st) = self.peers.get_mut(&peer) {
            st.owned.retain(|&q| q != p);
            if st.outstanding.is_empty() && st.owned.is_empty() {
                self.peers.remove(&peer);
            }
        }
    }

    /// Cancels every request for `p` and closes it.
    fn drop_piece(&mut self, p: u32) {
        let s = self.slot_of[p as usize];
        if s == NONE {
            return;
        }
        let piece = self.index(p);
        let len = self.piece_len(p);
        let slots = std::mem::take(&mut self.open[s as usize].slots);
        for (i, slot) in slots.iter().enumerate() {
            if slot.n != RECEIVED {
                let begin = i as u32 * BLOCK_SIZE;
                let block = Block {
                    piece,
                    begin,
                    length: (len - begin).min(BLOCK_SIZE),
                };
                for &q in &slot.peers[..usize::from(slot.n)] {
                    self.drop_outstanding(q, &block);
                }
            }
        }
        self.open[s as usize].slots = slots;
        if let Some(owner) = self.open[s as usize].owner {
            self.disown(p, owner);
        }
        self.close(p);
    }

    /// Opens `p` if it is not open; returns its slot.
    fn open_piece(&mut self, p: u32) -> u32 {
        let s = self.slot_of[p as usize];
        if s != NONE {
            return s;
        }
        let nb = self.num_blocks(p);
        let s = match self.spare.pop() {
            Some(s) => s,
            None => {
                self.open.push(OpenPiece {
                    piece: NONE,
                    slots: Vec::new(),
                    free: 0,
                    requested: 0,
                    received: 0,
                    hint: 0,
                    owner: None,
                    partial_pos: NONE,
                });
                self.open.len() as u32 - 1
            }
        };
        let op = &mut self.open[s as usize];
        op.piece = p;
        op.slots.clear();
        op.slots.resize(nb as usize, EMPTY_SLOT);
        op.free = nb;
        op.requested = 0;
        op.received = 0;
        op.hint = 0;
        op.owner = None;
        op.partial_pos = NONE;
        self.slot_of[p as usize] = s;
        self.num_open += 1;
        s
    }

    /// Closes open piece `p`, which has no outstanding requests left.
    fn close(&mut self, p: u32) {
        let s = self.slot_of[p as usize];
        if s == NONE {
            return;
        }
        self.set_partial(p, s, false);
        let op = &mut self.open[s as usize];
        if op.is_complete() {
            self.num_finished -= 1;
        }
        op.piece = NONE;
        op.owner = None;
        self.slot_of[p as usize] = NONE;
        self.spare.push(s);
        self.num_open -= 1;
    }

    fn set_partial(&mut self, p: u32, s: u32, on: bool) {
        let at = self.open[s as usize].partial_pos;
        if on && at == NONE {
            self.open[s as usize].partial_pos = self.partial.len() as u32;
            self.partial.push(p);
        } else if !on && at != NONE {
            self.partial.swap_remove(at as usize);
            if let Some(&moved) = self.partial.get(at as usize) {
                let ms = self.slot_of[moved as usize];
                self.open[ms as usize].partial_pos = at;
            }
            self.open[s as usize].partial_pos = NONE;
        }
    }

    /// Brings everything derived from piece `p`'s state up to date: the want and pickable
    /// bits, counters, the in-progress list and (if `fix_order`) its place in the order.
    fn refresh(&mut self, p: u32, fix_order: bool) {
        let want = self.wanted.get(p) && !self.have.get_raw(p);
        if want != self.want.get(p) {
            self.want.put(p, want);
            if want {
                self.wanted_missing += 1;
            } else {
                self.wanted_missing -= 1;
            }
        }
        let mut s = self.slot_of[p as usize];
        if s != NONE {
            let op = &self.open[s as usize];
            if op.requested == 0 && op.received == 0 && op.owner.is_none() {
                self.close(p);
                s = NONE;
            }
        }
        let free = match s {
            NONE => self.num_blocks(p),
            s => self.open[s as usize].free,
        };
        let counted = if want { free } else { 0 };
        self.free_blocks =
            self.free_blocks + u64::from(counted) - u64::from(self.counted[p as usize]);
        self.counted[p as usize] = counted;
        self.pickable.put(p, want && free > 0);
        if s != NONE {
            self.set_partial(p, s, want && free > 0);
        }
        if fix_order {
            let in_order = want && s == NONE && !self.in_range(p);
            if in_order != self.order.contains(p) {
                let a = self.avail[p as usize];
                if in_order {
                    self.order.insert(p, a, &mut self.rng);
                } else {
                    self.order.remove(p, a);
                }
                self.fresh.put(p, in_order);
            }
        }
    }

    /// Rebuilds the order (and the `fresh` bits) from every piece's state.
    fn rebuild_order(&mut self) {
        let mut items = Vec::new();
        for p in 0..self.num_pieces() {
            let in_order =
                self.want.get(p) && self.slot_of[p as usize] == NONE && !self.in_range(p);
            self.fresh.put(p, in_order);
            if in_order {
                items.push((p, self.avail[p as usize]));
            }
        }
        self.order.rebuild(&items, &mut self.rng);
    }

    /// Checks every derived structure against a recomputation (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.order.check(|p| self.avail[p as usize]);
        let mut free_blocks = 0u64;
        let mut wanted_missing = 0u32;
        let mut missing = 0u64;
        let mut open = 0;
        let mut finished = 0;
        let mut requests: BTreeMap<PeerKey, Vec<Block>> = BTreeMap::new();
        for p in 0..self.num_pieces() {
            let have = self.have.get_raw(p);
            let want = self.wanted.get(p) && !have;
            assert_eq!(self.want.get(p), want, "want bit {p}");
            if !have {
                missing += u64::from(self.piece_len(p));
            }
            wanted_missing += u32::from(want);
            let s = self.slot_of[p as usize];
            let free = if s == NONE {
                self.num_blocks(p)
            } else {
                open += 1;
                let op = &self.open[s as usize];
                assert!(!have, "had piece {p} is open");
                assert_eq!(op.piece, p);
                assert_eq!(op.slots.len() as u32, self.num_blocks(p));
                let (mut f, mut q, mut r) = (0, 0, 0);
                for (i, sl) in op.slots.iter().enumerate() {
                    match sl.n {
                        0 => {
                            f += 1;
                            assert!(i as u32 >= op.hint, "free block below hint");
                        }
                        RECEIVED => r += 1,
                        n => {
                            q += 1;
                            let ps = &sl.peers[..usize::from(n)];
                            for (j, a) in ps.iter().enumerate() {
                                assert!(
                                    !ps[j + 1..].contains(a),
                                    "block requested twice from one peer"
                                );
                                requests.entry(*a).or_default().push(Block {
                                    piece: self.index(p),
                                    begin: i as u32 * BLOCK_SIZE,
                                    length: (self.piece_len(p) - i as u32 * BLOCK_SIZE)
                                        .min(BLOCK_SIZE),
                                });
                            }
                        }
                    }
                }
                assert_eq!(
                    (op.free, op.requested, op.received),
                    (f, q, r),
                    "piece {p} counts"
                );
                assert!(
                    op.requested + op.received > 0 || op.owner.is_some(),
                    "untouched piece {p} open"
                );
                if op.is_complete() {
                    finished += 1;
                }
                let in_partial = op.partial_pos != NONE;
                assert_eq!(in_partial, want && f > 0, "partial membership {p}");
                if in_partial {
                    assert_eq!(self.partial[op.partial_pos as usize], p);
                }
                if let Some(o) = op.owner {
                    assert!(self.peers.get(&o).is_some_and(|st| st.owned.contains(&p)));
                }
                f
            };
            if want {
                free_blocks += u64::from(free);
            }
            assert_eq!(self.pickable.get(p), want && free > 0, "pickable {p}");
            let in_order = want && s == NONE && !self.in_range(p);
            assert_eq!(self.order.contains(p), in_order, "order membership {p}");
            assert_eq!(self.fresh.get(p), in_order, "fresh bit {p}");
        }
        assert_eq!(self.free_blocks, free_blocks);
        assert_eq!(self.wanted_missing, wanted_missing);
        assert_eq!(self.missing_bytes, missing);
        assert_eq!(self.num_open, open);
        assert_eq!(self.num_finished, finished);
        assert_eq!(
            self.partial.len(),
            self.open.iter().filter(|o| o.partial_pos != NONE).count()
        );
        let mut total = 0;
        for (peer, st) in &self.peers {
            assert!(
                !st.outstanding.is_empty() || !st.owned.is_empty(),
                "empty peer entry"
            );
            let mut mine = st.outstanding.clone();
            mine.sort();
            let mut expect = requests.remove(peer).unwrap_or_default();
            expect.sort();
            assert_eq!(mine, expect, "outstanding of {peer:?}");
            total += mine.len();
        }
        assert!(
            requests.is_empty(),
            "requests without peer entry: {requests:?}"
        );
        assert_eq!(self.num_requests, total);
    }
}
