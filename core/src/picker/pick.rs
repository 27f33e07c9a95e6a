//! Picking blocks for a peer: the priority range, pieces in progress, new pieces (random
//! first, then rarest first) and end-game.

use crate::id::PeerKey;
use crate::piece::{Block, PieceIndex, BLOCK_SIZE};

use super::bits::{next_in, PeerBits};
use super::{PeerView, Picker, MAX_COPIES, NONE, RECEIVED};

/// Fewest places of the availability order a pick looks at before switching to a scan of
/// the peer's bitfield.
const SCAN_BUDGET: usize = 256;
/// Random probes of the order per random pick before scanning the peer's bitfield.
const RANDOM_PROBES: usize = 16;

impl Picker {
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
            self.pick_unchoked(peer, bits, view.whole_pieces, &mut need, out);
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
        whole: bool,
        need: &mut usize,
        out: &mut Vec<Block>,
    ) {
        // 1. The priority ranges, each in order, the first range first.
        for i in 0..self.ranges.len() {
            let r = self.ranges[i].clone();
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
            if *need == 0 {
                break;
            }
        }
        // 2. Pieces in progress (for a whole-piece peer, only those it alone requested from).
        let mut i = 0;
        while *need > 0 && i < self.partial.len() {
            let p = self.partial[i];
            if bits.get(p)
                && !self.in_range(p)
                && self.owner_ok(p, peer)
                && (!whole || self.only_requested_from(p, peer))
            {
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

    /// Whether every requested block of open piece `p` still outstanding is requested from
    /// `peer` alone.
    fn only_requested_from(&self, p: u32, peer: PeerKey) -> bool {
        match self.slot_of[p as usize] {
            NONE => true,
            s => self.open[s as usize]
                .slots
                .iter()
                .all(|b| b.n == 0 || b.n == RECEIVED || (b.n == 1 && b.peers[0] == peer)),
        }
    }

    fn owner_ok(&self, p: u32, peer: PeerKey) -> bool {
        match self.slot_of[p as usize] {
            NONE => true,
            s => self.open[s as usize].owner.is_none_or(|o| o == peer),
        }
    }
}
