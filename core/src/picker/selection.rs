//! Which pieces are wanted and which come first: the wanted set, the priority (streaming)
//! range, and the state derived from them for each piece (want and pickable bits, free block
//! counts, the in-progress list, the availability order).

use std::ops::Range;

use crate::piece::{Bitfield, PieceIndex};

use super::{Picker, NONE};

/// A priority range change touching more pieces than `num_pieces / BULK_DIVISOR` rebuilds the
/// order instead of moving pieces one at a time.
const BULK_DIVISOR: u32 = 16;

/// Most priority ranges kept at once (stream readers of one torrent).
pub const MAX_PRIORITY_RANGES: usize = 64;

impl Picker {
    /// Pieces overlapping this byte range of the torrent are picked first, in order
    /// (streaming). `None` or an empty range clears it. The same as
    /// [`set_priority_ranges`](Self::set_priority_ranges) with one range or none.
    pub fn set_priority_range(&mut self, range: Option<Range<u64>>) {
        let ranges: &[Range<u64>] = match &range {
            Some(r) => std::slice::from_ref(r),
            None => &[],
        };
        self.set_priority_ranges(ranges);
    }

    /// Pieces overlapping these byte ranges are picked first: the first range's pieces in
    /// order, then the second's, and so on (one range per stream reader, the most urgent
    /// first). Empty ranges are ignored, ranges past the end are cut to it, and at most
    /// [`MAX_PRIORITY_RANGES`] are kept.
    pub fn set_priority_ranges(&mut self, ranges: &[Range<u64>]) {
        let pl = u64::from(self.layout.piece_length());
        let n = u64::from(self.num_pieces());
        let total = self.layout.total_length();
        let mut new: Vec<Range<u32>> = Vec::new();
        for r in ranges {
            if new.len() == MAX_PRIORITY_RANGES {
                break;
            }
            if r.start >= r.end {
                continue;
            }
            let start = r.start / pl;
            let end = r.end.min(total).div_ceil(pl).min(n);
            if start < end {
                new.push(start as u32..end as u32);
            }
        }
        if new == self.ranges {
            return;
        }
        let old = std::mem::replace(&mut self.ranges, new);
        let touched: u32 = old
            .iter()
            .chain(self.ranges.iter())
            .map(|r| r.len() as u32)
            .sum();
        let bulk = touched > self.num_pieces() / BULK_DIVISOR;
        let new = self.ranges.clone();
        for r in old.into_iter().chain(new) {
            for p in r {
                self.refresh(p, !bulk);
            }
        }
        if bulk {
            self.rebuild_order();
        }
    }

    /// The first priority range, as piece indexes.
    pub fn priority_pieces(&self) -> Option<Range<u32>> {
        self.ranges.first().cloned()
    }

    /// Every priority range, as piece indexes, most urgent first.
    pub fn priority_ranges(&self) -> &[Range<u32>] {
        &self.ranges
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

    /// Brings everything derived from piece `p`'s state up to date: the want and pickable
    /// bits, counters, the in-progress list and (if `fix_order`) its place in the order.
    pub(super) fn refresh(&mut self, p: u32, fix_order: bool) {
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
    pub(super) fn rebuild_order(&mut self) {
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
}
