//! Fetching the info dictionary from peers (`ut_metadata`, BEP 9) for magnet links, and
//! serving it.
//!
//! Peers announce the metadata size in their extension handshake and nothing vouches for it
//! until the whole dictionary hashes to the info hash, so no single peer may decide the
//! fetch:
//! * the size being assembled is dropped once no connected peer still offers it;
//! * a peer that rejects a request, or leaves one unanswered for
//!   [`METADATA_REQUEST_TIMEOUT`], is not asked again for [`METADATA_RETRY_AFTER`], even if
//!   it announces a size again (else a liar re-announcing its size would keep it offered),
//!   and its size does not count as offered meanwhile; then it gets another chance (an honest
//!   peer that was only slow once must not be lost for good);
//! * when the assembled dictionary fails its hash check, a lone sender is banned; with
//!   several senders the next attempt takes every piece from one peer (the longest
//!   connected), so each failure either succeeds or rules a peer out.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Output, Torrent, TorrentEvent};
use crate::ext::{serve_metadata_piece, MetadataAssembler, MetadataError, MetadataMessage};
use crate::id::{PeerId, PeerKey};
use crate::metainfo::Metainfo;
use crate::piece::Bitfield;
use crate::time::Time;

/// How long a peer may take to answer a metadata request before it is no longer asked.
pub const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a peer that rejected or did not answer a metadata request is left alone.
pub const METADATA_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Metadata requests in flight per peer.
const METADATA_PIPELINE: usize = 4;

/// The state of a magnet link's metadata fetch.
#[derive(Debug, Default)]
pub(super) struct MetadataFetch {
    asm: Option<MetadataAssembler>,
    /// Who sent pieces of the current attempt.
    sources: Vec<(PeerKey, Option<SocketAddr>, Option<PeerId>)>,
    /// After a failed attempt with several senders: the one peer the next attempt uses.
    only: Option<PeerKey>,
}

impl MetadataFetch {
    fn restart(&mut self) {
        self.asm = None;
        self.sources.clear();
    }
}

impl Torrent {
    /// Whether `key` can be asked for metadata (of `size` bytes, when given).
    fn serves_metadata(&self, key: PeerKey, size: Option<u32>) -> bool {
        self.peers.get(&key).is_some_and(|p| {
            p.session.is_active()
                && p.session.peer_supports(crate::ext::UT_METADATA)
                && p.metadata_given_up
                    .is_none_or(|t| self.now.saturating_since(t) >= METADATA_RETRY_AFTER)
                && p.metadata_size.is_some()
                && size.is_none_or(|s| p.metadata_size == Some(s))
        })
    }

    /// The peer that has offered metadata the longest.
    fn oldest_metadata_peer(&self) -> Option<PeerKey> {
        self.peers
            .iter()
            .filter(|(k, _)| self.serves_metadata(**k, None))
            .min_by_key(|(k, p)| (p.connected_at, **k))
            .map(|(k, _)| *k)
    }

    pub(super) fn request_metadata(&mut self, now: Time, key: PeerKey) {
        self.now = self.now.max(now);
        if self.content.is_some() {
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer
            .metadata_pending
            .iter()
            .any(|(_, t)| now.saturating_since(*t) >= METADATA_REQUEST_TIMEOUT)
        {
            // It does not answer: stop asking it.
            peer.metadata_pending.clear();
            peer.metadata_given_up = Some(now);
            return;
        }
        if !self.serves_metadata(key, None) {
            return;
        }
        let Some(size) = self.peers.get(&key).and_then(|p| p.metadata_size) else {
            return;
        };
        if let Some(only) = self.metadata.only {
            if only != key {
                if self.serves_metadata(only, None) {
                    return;
                }
                // The chosen peer left or stopped offering: the longest connected takes over.
                let next = self.oldest_metadata_peer();
                self.metadata.only = next;
                self.metadata.restart();
                if next != Some(key) {
                    return;
                }
            }
        }
        let current = self.metadata.asm.as_ref().map(MetadataAssembler::size);
        if let Some(s) = current.filter(|s| *s != size) {
            // Another size is being assembled: keep it while someone still offers it.
            let offered = self
                .peers
                .keys()
                .any(|k| *k != key && self.serves_metadata(*k, Some(s)));
            if offered || self.metadata.only.is_some() {
                return;
            }
            self.metadata.restart();
        }
        if self.metadata.asm.is_none() {
            match MetadataAssembler::new(self.info_hash, size) {
                Ok(a) => self.metadata.asm = Some(a),
                Err(_) => return,
            }
        }
        let Some(asm) = &self.metadata.asm else {
            return;
        };
        let pending_elsewhere: HashSet<u32> = self
            .peers
            .iter()
            .filter(|(k, _)| **k != key)
            .flat_map(|(_, p)| p.metadata_pending.iter().map(|(x, _)| *x))
            .collect();
        let mut missing: Vec<u32> = asm
            .missing_pieces()
            .filter(|p| !pending_elsewhere.contains(p))
            .collect();
        if missing.is_empty() {
            // Only pieces asked of others are left: ask again here (whoever answers first).
            missing = asm.missing_pieces().collect();
        }
        // Spread the first requests: start at a random missing piece.
        let offset = if missing.is_empty() {
            0
        } else {
            self.rng.below(missing.len() as u64) as usize
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        for i in 0..missing.len() {
            if peer.metadata_pending.len() >= METADATA_PIPELINE {
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
        self.mark_dirty(key);
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
                    p.metadata_given_up = Some(now);
                }
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                let Some(p) = self.peers.get_mut(&key) else {
                    return Ok(());
                };
                let asked = p.metadata_pending.iter().any(|(x, _)| *x == piece);
                p.metadata_pending.retain(|(x, _)| *x != piece);
                let who = (key, p.addr, p.session.peer_id());
                if self.content.is_some() || !asked {
                    // Late (another peer answered first) or unasked: not part of an attempt.
                    return Ok(());
                }
                let Some(asm) = &mut self.metadata.asm else {
                    return Ok(());
                };
                let added = asm.add_piece(piece, total_size, &data);
                if !self.metadata.sources.iter().any(|s| s.0 == key) {
                    self.metadata.sources.push(who);
                }
                match added {
                    Ok(Some(info)) => self.metadata_complete(now, info)?,
                    Ok(None) => self.request_metadata(now, key),
                    Err(MetadataError::HashMismatch) => self.metadata_failed(now),
                    Err(e) => return Err(format!("bad metadata: {e}")),
                }
            }
        }
        Ok(())
    }

    /// The assembled dictionary did not hash to the info hash.
    fn metadata_failed(&mut self, now: Time) {
        let sources = std::mem::take(&mut self.metadata.sources);
        self.metadata.restart();
        self.outputs
            .push_back(Output::Event(TorrentEvent::MetadataFailed {
                sources: sources.len(),
            }));
        if let [(key, addr, pid)] = sources[..] {
            self.metadata.only = None;
            self.ban(now, key, addr, pid);
        } else {
            // Someone among them lied: one peer at a time from now on.
            self.metadata.only = self.oldest_metadata_peer();
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.request_metadata(now, k);
        }
    }

    /// The dictionary hashed to the info hash: the torrent's content is known.
    fn metadata_complete(&mut self, now: Time, info: bytes::Bytes) -> Result<(), String> {
        let trackers = std::mem::take(&mut self.trackers_hint);
        let meta = match Metainfo::from_info_bytes(info, self.info_hash, trackers) {
            Ok(m) => m,
            Err(e) => {
                self.metadata.restart();
                return Err(format!("metadata unusable: {e}"));
            }
        };
        self.metadata = MetadataFetch::default();
        if meta.info.private {
            self.config.session.pex = false;
            self.config.session.dht_port = None;
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
            // BEP 10 lets a handshake be sent again: peers that met us before we had the
            // metadata learn they can fetch it from us now (a bridge between two magnet-only
            // swarms).
            if let Some(p) = self.peers.get_mut(&k) {
                p.metadata_pending.clear();
                if p.session.is_active() {
                    let yourip = p.addr.map(|a| a.ip());
                    p.session.send_extended_handshake(now, size, yourip);
                }
            }
            let _ = self.peer_has_changed(now, k);
            self.fill_requests(now, k);
        }
        Ok(())
    }
}
