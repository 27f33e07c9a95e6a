//! Serving peers' requests: the per-peer upload queue, whole-piece reads from storage and
//! the upload cache they fill.

use bytes::{Bytes, BytesMut};

use super::{Output, Peer, Torrent, TorrentStats};
use crate::id::PeerKey;
use crate::peer::RateMeter;
use crate::piece::PieceIndex;
use crate::time::Time;
use crate::wire::BlockRequest;

/// Most buffers of evicted upload-cache pieces kept for the driver's reads.
const MAX_SPARE_READS: usize = 4;

impl Torrent {
    pub(super) fn on_request(&mut self, now: Time, key: PeerKey, r: BlockRequest) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let valid = self.content.as_ref().and_then(|c| {
            let b = c
                .meta
                .info
                .layout
                .check_request(r.index, r.begin, r.length)
                .ok()?;
            c.picker.have().get(b.piece).then_some(b)
        });
        let allowed = !peer.session.am_choking() || peer.fast_for_peer.contains(&r.index);
        match valid {
            Some(_) if allowed => {
                peer.upload_queue.push_back(r);
                self.pump_reads(key);
            }
            _ => peer.session.reject(now, r),
        }
    }

    /// Serves queued requests while the peer's send queue has room: from the upload cache,
    /// or by asking for the piece to be read.
    pub(super) fn pump_reads(&mut self, key: PeerKey) {
        let now = self.now;
        let Some(c) = &self.content else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let layout = &c.meta.info.layout;
        let mut served = false;
        while let Some(r) = peer.upload_queue.front().copied() {
            let in_flight = peer.reads_in_flight.len() * crate::piece::BLOCK_SIZE as usize;
            if in_flight + peer.session.queued_bytes() >= self.config.max_upload_queue {
                break;
            }
            let Ok(block) = layout.check_request(r.index, r.begin, r.length) else {
                peer.upload_queue.pop_front();
                continue;
            };
            if let Some(i) = self
                .upload_cache
                .iter()
                .position(|(p, _)| *p == block.piece)
            {
                peer.upload_queue.pop_front();
                // Most recently used last.
                if let Some(entry) = self.upload_cache.remove(i) {
                    let data = block_of(&entry.1, r);
                    self.upload_cache.push_back(entry);
                    serve_block(peer, &mut self.stats, &mut self.upload, now, r, data);
                    served = true;
                }
                continue;
            }
            if !self.reading.contains(&block.piece) {
                if self.reading.len() >= self.config.max_piece_reads.max(1) {
                    // Waits for a read to finish (piece_read pumps every peer again).
                    break;
                }
                self.reading.insert(block.piece);
                self.outputs.push_back(Output::ReadPiece {
                    piece: block.piece,
                    offset: layout.piece_offset(block.piece),
                    length: layout.piece_len(block.piece),
                });
            }
            peer.upload_queue.pop_front();
            peer.reads_in_flight.push(r);
        }
        if served {
            self.mark_dirty(key);
        }
    }

    /// A piece asked for with [`Output::ReadPiece`] was read. `None` (or bytes of the wrong
    /// length) means storage failed: the requests waiting for it are rejected. Drivers that
    /// read ahead may also pass pieces not asked for: verified ones go into the cache.
    pub fn piece_read(&mut self, now: Time, piece: PieceIndex, data: Option<Bytes>) {
        self.now = self.now.max(now);
        let now = self.now;
        self.reading.remove(&piece);
        let Some(c) = &self.content else {
            return;
        };
        let piece_len = c.meta.info.layout.piece_len(piece) as usize;
        let data = data.filter(|d| d.len() == piece_len && c.picker.have().get(piece));
        if let Some(d) = &data {
            let budget = self
                .config
                .upload_cache_bytes
                .max(2 * c.meta.info.piece_length() as usize);
            self.upload_cache.retain(|(p, _)| *p != piece);
            let mut cached: usize = self.upload_cache.iter().map(|(_, b)| b.len()).sum();
            while cached + d.len() > budget {
                match self.upload_cache.pop_front() {
                    Some((_, old)) => {
                        cached -= old.len();
                        // Usually every block sent from it is gone by now: reuse it.
                        if self.spare_reads.len() < MAX_SPARE_READS {
                            if let Ok(b) = old.try_into_mut() {
                                self.spare_reads.push(b);
                            }
                        }
                    }
                    None => break,
                }
            }
            self.upload_cache.push_back((piece, d.clone()));
        }
        let keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.reads_in_flight.is_empty() || !p.upload_queue.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            let mut served = false;
            let mut i = 0;
            while i < peer.reads_in_flight.len() {
                let r = peer.reads_in_flight[i];
                if r.index != piece.get() {
                    i += 1;
                    continue;
                }
                peer.reads_in_flight.swap_remove(i);
                let block = data.as_ref().and_then(|d| block_of(d, r));
                serve_block(peer, &mut self.stats, &mut self.upload, now, r, block);
                served = true;
            }
            if served {
                self.mark_dirty(key);
            }
            self.pump_reads(key);
        }
    }

    /// A buffer that held a piece evicted from the upload cache, for reading the next
    /// [`Output::ReadPiece`] into (optional; saves an allocation and page faults per read).
    pub fn take_read_buffer(&mut self) -> Option<BytesMut> {
        self.spare_reads.pop()
    }
}

/// The bytes of request `r` within its piece's data, if they are there.
fn block_of(piece: &Bytes, r: BlockRequest) -> Option<Bytes> {
    let start = r.begin as usize;
    let end = start.checked_add(r.length as usize)?;
    (end <= piece.len()).then(|| piece.slice(start..end))
}

/// Sends a block read for `peer`, or rejects the request if it could not be read or the peer
/// was choked meanwhile.
fn serve_block(
    peer: &mut Peer,
    stats: &mut TorrentStats,
    upload: &mut RateMeter,
    now: Time,
    r: BlockRequest,
    data: Option<Bytes>,
) {
    let allowed = !peer.session.am_choking() || peer.fast_for_peer.contains(&r.index);
    match data {
        Some(d) if d.len() == r.length as usize && allowed => {
            let n = d.len() as u64;
            peer.session.send_block(now, r, d);
            stats.uploaded += n;
            upload.add(now, n);
        }
        _ => peer.session.reject(now, r),
    }
}
