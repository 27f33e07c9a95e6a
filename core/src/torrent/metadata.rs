//! Fetching the info dictionary from peers (`ut_metadata`, BEP 9) for magnet links, and
//! serving it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Output, Torrent, TorrentEvent};
use crate::ext::{serve_metadata_piece, MetadataAssembler, MetadataMessage};
use crate::id::PeerKey;
use crate::metainfo::Metainfo;
use crate::piece::Bitfield;
use crate::time::Time;

impl Torrent {
    pub(super) fn request_metadata(&mut self, now: Time, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(size) = peer.metadata_size else {
            return;
        };
        if !peer.session.peer_supports(crate::ext::UT_METADATA) {
            return;
        }
        if self.metadata.is_none() {
            match MetadataAssembler::new(self.info_hash, size) {
                Ok(a) => self.metadata = Some(a),
                Err(_) => return,
            }
        }
        let Some(asm) = &self.metadata else {
            return;
        };
        if asm.size() != size {
            return;
        }
        peer.metadata_pending
            .retain(|(_, t)| now.saturating_since(*t) < Duration::from_secs(10));
        let pending_elsewhere: HashSet<u32> = HashSet::new();
        let missing: Vec<u32> = asm
            .missing_pieces()
            .filter(|p| !pending_elsewhere.contains(p))
            .collect();
        // Spread the first requests: start at a random missing piece.
        let offset = if missing.is_empty() {
            0
        } else {
            self.rng.below(missing.len() as u64) as usize
        };
        for i in 0..missing.len() {
            if peer.metadata_pending.len() >= 4 {
                break;
            }
            let p = missing[(i + offset) % missing.len()];
            if peer.metadata_pending.iter().any(|(x, _)| *x == p) {
                continue;
            }
            if peer
                .session
                .send_metadata(now, &MetadataMessage::Request { piece: p })
            {
                peer.metadata_pending.push((p, now));
            }
        }
        if !self.dirty.contains(&key) {
            self.dirty.push_back(key);
        }
    }

    pub(super) fn on_metadata(
        &mut self,
        now: Time,
        key: PeerKey,
        m: MetadataMessage,
    ) -> Result<(), String> {
        match m {
            MetadataMessage::Request { piece } => {
                let reply = match &self.content {
                    Some(c) => serve_metadata_piece(&c.meta.info_bytes, piece),
                    _ => MetadataMessage::Reject { piece },
                };
                if let Some(p) = self.peers.get_mut(&key) {
                    p.session.send_metadata(now, &reply);
                }
            }
            MetadataMessage::Reject { piece } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.metadata_pending.retain(|(x, _)| *x != piece);
                    p.metadata_size = None;
                }
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.metadata_pending.retain(|(x, _)| *x != piece);
                }
                if self.content.is_some() {
                    return Ok(());
                }
                let Some(asm) = &mut self.metadata else {
                    return Ok(());
                };
                match asm.add_piece(piece, total_size, &data) {
                    Ok(Some(info)) => {
                        let trackers = std::mem::take(&mut self.trackers_hint);
                        match Metainfo::from_info_bytes(info, self.info_hash, trackers) {
                            Ok(meta) => {
                                self.metadata = None;
                                if meta.info.private {
                                    self.config.session.pex = false;
                                }
                                let n = meta.info.num_pieces();
                                self.set_content(Arc::new(meta), Bitfield::new(n), now)
                                    .map_err(|e| e.to_string())?;
                                self.outputs
                                    .push_back(Output::Event(TorrentEvent::MetadataReceived));
                                let size = self
                                    .content
                                    .as_ref()
                                    .map(|c| c.meta.info_bytes.len() as u32);
                                let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                                for k in keys {
                                    // BEP 10 lets a handshake be sent again: peers that met us
                                    // before we had the metadata learn they can fetch it from
                                    // us now (a bridge between two magnet-only swarms).
                                    if let Some(p) = self.peers.get_mut(&k) {
                                        if p.session.is_active() {
                                            let yourip = p.addr.map(|a| a.ip());
                                            p.session.send_extended_handshake(now, size, yourip);
                                        }
                                    }
                                    let _ = self.peer_has_changed(now, k);
                                    self.fill_requests(now, k);
                                }
                            }
                            Err(e) => {
                                if let Some(a) = &mut self.metadata {
                                    a.reset();
                                }
                                return Err(format!("metadata unusable: {e}"));
                            }
                        }
                    }
                    Ok(None) => self.request_metadata(now, key),
                    Err(e) => return Err(format!("bad metadata: {e}")),
                }
            }
        }
        Ok(())
    }
}
