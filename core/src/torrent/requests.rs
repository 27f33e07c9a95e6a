//! Filling a peer's request queue with blocks picked by the piece picker, and holding new
//! requests back (back-pressure from storage).

use super::{Has, Torrent};
use crate::id::PeerKey;
use crate::picker::PeerView;
use crate::time::Time;
use crate::wire::BlockRequest;

impl Torrent {
    /// Stops issuing new block requests while `hold` is true (blocks already requested still
    /// arrive); releasing it fills requests for every peer again. Used for back-pressure while
    /// pieces wait to be hashed and stored, and while storage is not ready yet.
    pub fn hold_requests(&mut self, now: Time, hold: bool) {
        self.now = self.now.max(now);
        self.requests_held = hold;
        if !hold {
            self.fill_all_requests(now);
        }
    }

    /// Whether requests are held ([`hold_requests`](Self::hold_requests)).
    pub fn requests_held(&self) -> bool {
        self.requests_held
    }

    /// [`fill_requests`](Self::fill_requests) for every peer.
    pub(super) fn fill_all_requests(&mut self, now: Time) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill_requests(now, k);
        }
    }

    /// Requests as many blocks from the peer as its queue depth allows.
    pub(super) fn fill_requests(&mut self, now: Time, key: PeerKey) {
        if self.requests_held {
            return;
        }
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
        .allowed_fast(&peer.allowed_fast)
        .whole_pieces(peer.session.config().whole_pieces);
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
