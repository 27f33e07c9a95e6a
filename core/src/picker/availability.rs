//! Availability: how many peers have each piece, kept up to date from peers' bitfields,
//! `have`s and departures (seeds are counted apart).

use crate::piece::{Bitfield, PieceIndex};

use super::Picker;

impl Picker {
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
}
