//! Pieces in progress: hash verdicts (verified, failed), the peers that contributed to a
//! piece, and opening and closing pieces.

use crate::id::PeerKey;
use crate::piece::{Block, PieceIndex, BLOCK_SIZE};

use super::{OpenPiece, Picker, EMPTY_SLOT, NONE, RECEIVED};

impl Picker {
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
    pub(super) fn open_piece(&mut self, p: u32) -> u32 {
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
    pub(super) fn close(&mut self, p: u32) {
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

    pub(super) fn set_partial(&mut self, p: u32, s: u32, on: bool) {
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
}
