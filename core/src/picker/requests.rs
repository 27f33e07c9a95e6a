//! Request bookkeeping: blocks received, requests failed, peers gone, and each peer's
//! outstanding requests and single-source pieces.

use crate::id::PeerKey;
use crate::piece::Block;

use super::{Picker, Received, Slot, MAX_COPIES, NONE, RECEIVED};

impl Picker {
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

    /// Removes `block` from `peer`'s outstanding requests; whether it was there.
    pub(super) fn drop_outstanding(&mut self, peer: PeerKey, block: &Block) -> bool {
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
    pub(super) fn disown(&mut self, p: u32, peer: PeerKey) {
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
}
