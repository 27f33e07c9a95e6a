//! Peer input: bytes from a connection, its session's decoded events, the peer's
//! pieces (bitfield, `have`) and our interest in it, and dropping connections.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{CandidateState, Has, Output, Peer, Torrent, TorrentEvent};
use crate::id::PeerKey;
use crate::peer::{Direction, PeerSession, SessionEvent};
use crate::picker::PeerView;
use crate::piece::Bitfield;
use crate::time::Time;

impl Torrent {
    /// Bytes arrived from a peer.
    pub fn peer_data(&mut self, now: Time, key: PeerKey, data: &[u8]) {
        self.feed_peer(now, key, |s| s.receive(now, data));
    }

    /// Bytes arrived from a peer, owned: like [`peer_data`](Self::peer_data) without copying
    /// them into the decoder (drivers that read into a `BytesMut` and `split()` it).
    pub fn peer_data_owned(&mut self, now: Time, key: PeerKey, data: BytesMut) {
        self.feed_peer(now, key, |s| s.receive_owned(now, data));
    }

    /// Hands received bytes to the peer's session with `feed`, then acts on what it decoded.
    fn feed_peer(
        &mut self,
        now: Time,
        key: PeerKey,
        feed: impl FnOnce(&mut PeerSession) -> Result<(), crate::peer::SessionError>,
    ) {
        self.now = self.now.max(now);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if let Err(e) = feed(&mut peer.session) {
            self.drop_peer(now, key, e.to_string());
            return;
        }
        self.process_events(now, key);
        self.fill_requests(now, key);
        self.mark_dirty(key);
    }

    /// The connection closed (by the peer or the network).
    pub fn peer_closed(&mut self, now: Time, key: PeerKey) {
        if self.peers.contains_key(&key) {
            self.remove_peer(now, key, "connection closed".to_string(), false);
        }
    }

    pub(super) fn drop_peer(&mut self, now: Time, key: PeerKey, reason: String) {
        self.remove_peer(now, key, reason, true);
    }

    fn remove_peer(&mut self, now: Time, key: PeerKey, reason: String, tell_driver: bool) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        peer.session.close();
        if let Some(c) = &mut self.content {
            c.picker.peer_disconnected(key);
            match &peer.has {
                Has::Some(b) => c.picker.peer_gone(b),
                Has::All => c.picker.seed_gone(),
                _ => {}
            }
        }
        if let Some(a) = peer.addr {
            if let Some(c) = self.candidates.get_mut(&a) {
                c.state = CandidateState::RetryAt(now + Duration::from_secs(60));
                self.candidate_queue.push_back(a);
            }
        }
        self.dirty.retain(|k| *k != key);
        if tell_driver {
            self.outputs.push_back(Output::Disconnect(key));
        }
        self.outputs
            .push_back(Output::Event(TorrentEvent::PeerDisconnected {
                peer: key,
                addr: peer.addr,
                reason,
            }));
        // Blocks it owed go to others.
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill_requests(now, k);
        }
        self.connect_more(now);
    }

    pub(super) fn process_events(&mut self, now: Time, key: PeerKey) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(ev) = peer.session.poll_event() else {
                return;
            };
            if let Err(reason) = self.on_event(now, key, ev) {
                self.drop_peer(now, key, reason);
                return;
            }
        }
    }

    fn on_event(&mut self, now: Time, key: PeerKey, ev: SessionEvent) -> Result<(), String> {
        match ev {
            SessionEvent::Handshake { peer_id } => {
                if peer_id == self.config.session.peer_id {
                    if let Some(a) = self.peers.get(&key).and_then(|p| p.addr) {
                        self.candidates.remove(&a);
                    }
                    return Err("connected to ourselves".into());
                }
                if self.banned_ids.contains(&peer_id) {
                    return Err("banned peer id".into());
                }
                let dup = self
                    .peers
                    .iter()
                    .find(|(k, p)| **k != key && p.session.peer_id() == Some(peer_id))
                    .map(|(k, p)| (*k, p.session.direction()));
                if let Some((other, other_dir)) = dup {
                    // Both sides dialled each other. Keep the connection opened by the peer
                    // with the lower id; both ends reach the same verdict.
                    let ours = self.config.session.peer_id;
                    let opener = |d: Direction| {
                        if d == Direction::Outgoing {
                            ours
                        } else {
                            peer_id
                        }
                    };
                    let this_dir = self.peers.get(&key).ok_or("gone")?.session.direction();
                    if opener(this_dir) < opener(other_dir) {
                        self.drop_peer(now, other, "duplicate connection to the same peer".into());
                    } else {
                        return Err("duplicate connection to the same peer".into());
                    }
                }
                let metadata_size = self
                    .content
                    .as_ref()
                    .map(|c| c.meta.info_bytes.len() as u32);
                let have = self.content.as_ref().map(|c| c.picker.have().clone());
                let info_hash = self.info_hash;
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                let yourip = peer.addr.map(|a| a.ip());
                peer.session
                    .send_extended_handshake(now, metadata_size, yourip);
                peer.session.send_availability(now, have.as_ref());
                // BEP 6: the canonical allowed-fast set, of the pieces we have.
                let fast_ip = peer.addr.and_then(|a| crate::fast::fast_set_ip(a.ip()));
                if let (Some(ip), Some(have), true) = (fast_ip, &have, peer.session.supports_fast())
                {
                    let set = crate::fast::allowed_fast_set(
                        ip,
                        &info_hash,
                        have.len(),
                        crate::fast::ALLOWED_FAST_COUNT,
                    );
                    for i in set {
                        if have.get_raw(i) {
                            peer.session.send_allowed_fast(now, i);
                            peer.fast_for_peer.push(i);
                        }
                    }
                }
                let addr = peer.addr;
                self.outputs
                    .push_back(Output::Event(TorrentEvent::PeerConnected {
                        peer: key,
                        peer_id,
                        addr,
                    }));
            }
            SessionEvent::ExtendedHandshake(h) => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                if let (Some(p), Some(a)) = (h.p, peer.addr) {
                    if peer.session.direction() == Direction::Incoming {
                        peer.listen_addr = Some(SocketAddr::new(a.ip(), p));
                    }
                }
                peer.metadata_size = h.metadata_size;
                if self.content.is_none() {
                    self.request_metadata(now, key);
                }
            }
            SessionEvent::Bitfield(raw) => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                peer.has = Has::Raw(raw);
                self.resolve_availability(now, key);
            }
            SessionEvent::HaveAll => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                peer.has = Has::All;
                if let Some(c) = &mut self.content {
                    c.picker.seed_added();
                }
                self.peer_has_changed(now, key)?;
            }
            SessionEvent::HaveNone => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                peer.has = Has::Raw(Bytes::new());
                self.resolve_availability(now, key);
            }
            SessionEvent::Have(i) => self.on_have(now, key, i)?,
            SessionEvent::Choked { dropped } => {
                if let Some(c) = &mut self.content {
                    for r in dropped {
                        if let Ok(b) = c.meta.info.layout.check_block(r.index, r.begin, r.length) {
                            c.picker.request_failed(key, b);
                        }
                    }
                }
            }
            SessionEvent::Unchoked => {}
            SessionEvent::Interested => {
                // Fill a free slot at once rather than waiting for the next choker round.
                let unchoked = self
                    .peers
                    .values()
                    .filter(|p| !p.session.am_choking())
                    .count();
                if unchoked < self.config.unchoke_slots {
                    let peer = self.peers.get_mut(&key).ok_or("gone")?;
                    peer.session.unchoke(now);
                    peer.last_unchoked = now;
                }
            }
            SessionEvent::NotInterested => {}
            SessionEvent::Request(r) => self.on_request(now, key, r),
            SessionEvent::Cancel(r) => {
                let peer = self.peers.get_mut(&key).ok_or("gone")?;
                if let Some(i) = peer.upload_queue.iter().position(|x| *x == r) {
                    peer.upload_queue.remove(i);
                    peer.session.drop_peer_request();
                } else if let Some(i) = peer.reads_in_flight.iter().position(|x| *x == r) {
                    // The read is under way; its result will be dropped.
                    peer.reads_in_flight.remove(i);
                    peer.session.drop_peer_request();
                }
            }
            SessionEvent::Block {
                request,
                data,
                requested,
            } => self.on_block(now, key, request, data, requested)?,
            SessionEvent::Rejected(r) => {
                if let Some(c) = &mut self.content {
                    if let Ok(b) = c.meta.info.layout.check_block(r.index, r.begin, r.length) {
                        c.picker.request_failed(key, b);
                    }
                }
            }
            SessionEvent::TimedOut(rs) => {
                if let Some(c) = &mut self.content {
                    for r in rs {
                        if let Ok(b) = c.meta.info.layout.check_block(r.index, r.begin, r.length) {
                            c.picker.request_failed(key, b);
                        }
                    }
                }
            }
            SessionEvent::AllowedFast(i) => {
                if let Some(c) = &self.content {
                    if let Ok(p) = c.meta.info.layout.piece(i) {
                        let peer = self.peers.get_mut(&key).ok_or("gone")?;
                        if peer.allowed_fast.len() < 64 && !peer.allowed_fast.contains(&p) {
                            peer.allowed_fast.push(p);
                        }
                    }
                }
            }
            SessionEvent::Suggest(_) => {}
            SessionEvent::Metadata(m) => self.on_metadata(now, key, m)?,
            SessionEvent::Pex(m) => self.on_pex(now, key, &m),
            SessionEvent::DhtPort(port) => {
                if let Some(mut addr) = self.peers.get(&key).and_then(|p| p.addr) {
                    addr.set_port(port);
                    self.outputs
                        .push_back(Output::Event(TorrentEvent::DhtNode(addr)));
                }
            }
        }
        Ok(())
    }

    pub(super) fn resolve_availability(&mut self, now: Time, key: PeerKey) {
        let Some(n) = self.num_pieces() else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Has::Raw(raw) = &peer.has else {
            return;
        };
        let parsed = if raw.is_empty() {
            Ok(Bitfield::new(n))
        } else {
            Bitfield::from_bytes(raw, n)
        };
        let mut bits = match parsed {
            Ok(b) => b,
            Err(e) => {
                self.drop_peer(now, key, format!("bad bitfield: {e}"));
                return;
            }
        };
        let Some(c) = &mut self.content else {
            return;
        };
        for i in std::mem::take(&mut peer.early_haves) {
            if let Ok(p) = c.meta.info.layout.piece(i) {
                bits.set(p);
            }
        }
        if bits.is_full() && n > 0 {
            c.picker.seed_added();
            peer.has = Has::All;
        } else {
            c.picker.peer_bitfield(&bits);
            peer.has = Has::Some(bits);
        }
        if let Err(e) = self.peer_has_changed(now, key) {
            self.drop_peer(now, key, e);
        }
    }

    fn on_have(&mut self, now: Time, key: PeerKey, i: u32) -> Result<(), String> {
        let peer = self.peers.get_mut(&key).ok_or("gone")?;
        let Some(c) = &mut self.content else {
            if peer.early_haves.len() < 100_000 {
                peer.early_haves.push(i);
            }
            if matches!(peer.has, Has::Unknown) {
                peer.has = Has::Raw(Bytes::new());
            }
            return Ok(());
        };
        let p = c
            .meta
            .info
            .layout
            .piece(i)
            .map_err(|e| format!("bad have: {e}"))?;
        match &mut peer.has {
            Has::All => return Ok(()),
            Has::Some(b) => {
                if b.set(p) {
                    c.picker.peer_have(p);
                    if b.is_full() {
                        c.picker.peer_gone(b);
                        c.picker.seed_added();
                        peer.has = Has::All;
                    }
                }
            }
            Has::Unknown | Has::Raw(_) => {
                let mut b = Bitfield::new(c.meta.info.num_pieces());
                b.set(p);
                c.picker.peer_bitfield(&b);
                peer.has = Has::Some(b);
            }
        }
        self.peer_has_changed(now, key)
    }

    /// After the peer's pieces (or what we want) changed: update our interest (in peers with
    /// a piece we want and lack), drop seed-to-seed links.
    pub(super) fn peer_has_changed(&mut self, now: Time, key: PeerKey) -> Result<(), String> {
        let complete = self.is_complete();
        let Some(c) = &self.content else {
            return Ok(());
        };
        let peer = self.peers.get_mut(&key).ok_or("gone")?;
        if complete {
            if matches!(peer.has, Has::All) && self.config.disconnect_seeds_when_done {
                return Err("both sides are seeds".into());
            }
            peer.session.set_interested(now, false);
            return Ok(());
        }
        let interesting = match &peer.has {
            Has::All => c.picker.interesting(&PeerView::seed()),
            Has::Some(b) => c.picker.interesting(&view_of(b, peer)),
            _ => false,
        };
        peer.session.set_interested(now, interesting);
        self.mark_dirty(key);
        Ok(())
    }
}

fn view_of<'a>(b: &'a Bitfield, p: &'a Peer) -> PeerView<'a> {
    PeerView::bitfield(b)
        .choked(p.session.peer_choking())
        .allowed_fast(&p.allowed_fast)
}
