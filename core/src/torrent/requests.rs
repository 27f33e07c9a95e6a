//! Filling a peer's request queue with blocks picked by the piece picker.

use super::{Has, Torrent};
use crate::id::PeerKey;
use crate::picker::PeerView;
use crate::time::Time;
use crate::wire::BlockRequest;

impl Torrent {
    /// Requests as many blocks from the peer as its queue depth allows.
    pub(super) fn fill_requests(&mut self, now: Time, key: PeerKey) {
        let Some(c) = &mut self.content else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.session.is_active() || !peer.session.am_interested() {
            return;
        }
        let slots = peer.session.request_slots(now);
        if slots == 0 {
            return;
        }
        let choked = peer.session.peer_choking();
        if choked && (peer.allowed_fast.is_empty() || !peer.session.supports_fast()) {
            return;
        }
        let view = match &peer.has {
            Has::All => PeerView::seed(),
            Has::Some(b) => PeerView::bitfield(b),
            _ => return,
        }
        .choked(choked)
        .allowed_fast(&peer.allowed_fast);
        self.pick_buf.clear();
        c.picker.pick(key, view, slots, &mut self.pick_buf);
        for b in self.pick_buf.drain(..) {
            peer.session
                .request(now, BlockRequest::new(b.piece.get(), b.begin, b.length));
        }
        if !self.dirty.contains(&key) {
            self.dirty.push_back(key);
        }
    }
}
