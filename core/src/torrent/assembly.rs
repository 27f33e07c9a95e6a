//! Received blocks: assembling them into pieces, handing pieces out for verification,
//! the verdict, smart ban of peers that sent bad blocks, and piece buffer reuse.

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};

use super::{
    Assembly, Output, Striker, Suspects, Torrent, TorrentEvent, Verifying, MAX_STRIKERS,
    PIECE_BUF_ALIGN,
};
use crate::id::{PeerId, PeerKey};
use crate::piece::PieceIndex;
use crate::time::Time;
use crate::wire::BlockRequest;

/// Most failed pieces remembered for smart banning.
const MAX_SUSPECT_PIECES: usize = 64;

/// Failed pieces' block fingerprints, oldest first; beyond [`MAX_SUSPECT_PIECES`] the oldest
/// is forgotten.
#[derive(Debug, Default)]
pub(super) struct SuspectLog(std::collections::VecDeque<(PieceIndex, Suspects)>);

impl SuspectLog {
    /// Takes a piece's fingerprints out.
    pub(super) fn take(&mut self, piece: PieceIndex) -> Option<Suspects> {
        let i = self.0.iter().position(|(p, _)| *p == piece)?;
        self.0.remove(i).map(|(_, s)| s)
    }

    /// Records a piece's fingerprints (replacing older ones of it), forgetting the oldest
    /// piece when full.
    pub(super) fn insert(&mut self, piece: PieceIndex, suspects: Suspects) {
        self.take(piece);
        if self.0.len() >= MAX_SUSPECT_PIECES {
            self.0.pop_front();
        }
        self.0.push_back((piece, suspects));
    }

    #[cfg(test)]
    pub(super) fn pieces(&self) -> Vec<PieceIndex> {
        self.0.iter().map(|(p, _)| *p).collect()
    }
}

/// Most spare piece buffers kept.
const MAX_SPARE_BUFS: usize = 16;

impl Torrent {
    pub(super) fn on_block(
        &mut self,
        now: Time,
        key: PeerKey,
        r: BlockRequest,
        data: Bytes,
        _requested: bool,
    ) -> Result<(), String> {
        self.stats.downloaded += data.len() as u64;
        self.download.add(now, data.len() as u64);
        let Some(c) = &mut self.content else {
            return Err("piece data before metadata".into());
        };
        let Ok(block) = c.meta.info.layout.check_block(r.index, r.begin, r.length) else {
            return Err("block does not fit the torrent's layout".into());
        };
        let received = c.picker.block_received(key, block);
        for other in received.cancel {
            if let Some(p) = self.peers.get_mut(&other) {
                p.session.cancel(now, r);
                if !self.dirty.contains(&other) {
                    self.dirty.push_back(other);
                }
            }
        }
        if !received.new {
            return Ok(());
        }
        let (addr, pid) = self
            .peers
            .get(&key)
            .map(|p| (p.addr, p.session.peer_id()))
            .unwrap_or((None, None));
        let piece_len = c.meta.info.layout.piece_len(block.piece) as usize;
        let num_blocks = c.meta.info.layout.num_blocks(block.piece) as usize;
        let spare = &mut self.spare_bufs;
        let asm = c.assembling.entry(block.piece).or_insert_with(|| {
            let buf = match spare.pop() {
                Some(mut b) => {
                    // No need to zero it: the piece's blocks tile it completely and the
                    // piece is only verified once every block has been copied in.
                    if b.len() >= piece_len {
                        b.truncate(piece_len);
                    } else {
                        b.resize(piece_len, 0);
                    }
                    b
                }
                None => aligned_piece_buf(piece_len),
            };
            Assembly {
                buf,
                contributors: Vec::new(),
                block_from: vec![u16::MAX; num_blocks],
            }
        });
        let start = block.begin as usize;
        asm.buf[start..start + data.len()].copy_from_slice(&data);
        let idx = match asm.contributors.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                asm.contributors.push((key, addr, pid));
                asm.contributors.len() - 1
            }
        };
        if let Some(slot) = asm
            .block_from
            .get_mut((block.begin / crate::piece::BLOCK_SIZE) as usize)
        {
            *slot = u16::try_from(idx).unwrap_or(u16::MAX);
        }
        if received.piece_complete {
            if let Some(asm) = c.assembling.remove(&block.piece) {
                let expected = c.meta.info.piece_hash(block.piece);
                let data = asm.buf.freeze();
                c.verifying.insert(
                    block.piece,
                    Verifying {
                        contributors: asm.contributors,
                        block_from: asm.block_from,
                        data: data.clone(),
                    },
                );
                self.outputs.push_back(Output::VerifyPiece {
                    piece: block.piece,
                    data,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// The driver checked (and, if valid, stored) a piece.
    pub fn piece_checked(&mut self, now: Time, piece: PieceIndex, valid: bool) {
        let Some(c) = &mut self.content else {
            return;
        };
        let Some(v) = c.verifying.remove(&piece) else {
            return;
        };
        if valid {
            // Smart ban: if this piece failed before, whoever sent a block that differs from
            // the good one lied.
            if let Some(suspects) = c.suspects.take(piece) {
                let mut liars = Vec::new();
                for (begin, hash, who) in suspects {
                    let start = begin as usize;
                    let end = (start + crate::piece::BLOCK_SIZE as usize).min(v.data.len());
                    if start < end && crate::piece::sha1(&v.data[start..end]) != hash {
                        liars.push(who);
                    }
                }
                liars.dedup_by_key(|w| w.0);
                for (key, addr, pid) in liars {
                    self.ban(now, key, addr, pid);
                }
            }
            let Some(c) = &mut self.content else {
                return;
            };
            c.picker.piece_verified(piece);
            self.update_left();
            self.outputs
                .push_back(Output::Event(TorrentEvent::PieceVerified(piece)));
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in &keys {
                if let Some(p) = self.peers.get_mut(k) {
                    if p.session.is_active() {
                        p.session.send_have(now, piece.get());
                    }
                }
                self.mark_dirty(*k);
            }
            self.update_done();
            for k in keys {
                if let Err(e) = self.peer_has_changed(now, k) {
                    self.drop_peer(now, k, e);
                }
            }
            return;
        }
        c.picker.piece_failed(piece);
        self.outputs
            .push_back(Output::Event(TorrentEvent::HashFailed(piece)));
        let contributors = v.contributors;
        if contributors.len() == 1 {
            // Everything came from one peer: it sent bad data.
            if let Some((key, addr, pid)) = contributors.into_iter().next() {
                self.ban(now, key, addr, pid);
            }
        } else {
            // Several senders: remember each block's fingerprint; the good copy will tell
            // who lied. Peers in many failures are banned anyway.
            let mut suspects = Suspects::new();
            for (i, from) in v.block_from.iter().enumerate() {
                let Some(who) = contributors.get(usize::from(*from)) else {
                    continue;
                };
                let start = i * crate::piece::BLOCK_SIZE as usize;
                let end = (start + crate::piece::BLOCK_SIZE as usize).min(v.data.len());
                if start < end {
                    suspects.push((start as u32, crate::piece::sha1(&v.data[start..end]), *who));
                }
            }
            c.suspects.insert(piece, suspects);
            for (key, addr, pid) in contributors {
                // Counted by IP, or by peer id for a peer with no address (WebRTC in a
                // browser), so a peer's strikes add up across pieces either way.
                let who = match (addr, pid) {
                    (Some(a), _) => Some(Striker::Ip(a.ip())),
                    (None, Some(id)) => Some(Striker::Id(id)),
                    (None, None) => None,
                };
                let strikes = match who {
                    Some(w)
                        if self.strikes.len() < MAX_STRIKERS || self.strikes.contains_key(&w) =>
                    {
                        let s = self.strikes.entry(w).or_insert(0);
                        *s += 1;
                        *s
                    }
                    _ => 1,
                };
                if strikes >= self.config.max_strikes {
                    self.ban(now, key, addr, pid);
                }
            }
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill_requests(now, k);
        }
    }

    pub(super) fn ban(
        &mut self,
        now: Time,
        key: PeerKey,
        addr: Option<SocketAddr>,
        pid: Option<PeerId>,
    ) {
        let already = pid.is_some_and(|id| self.banned_ids.contains(&id))
            || addr.is_some_and(|a| self.is_banned(a));
        if already {
            if self.peers.contains_key(&key) {
                self.drop_peer(now, key, "banned".into());
            }
            return;
        }
        // Ban the IP, except on loopback where all local peers share it: there, the exact
        // address (and below, the peer id) identify the culprit.
        let listen = self.peers.get(&key).and_then(|p| p.listen_addr);
        for a in addr.iter().chain(listen.iter()) {
            if a.ip().is_loopback() {
                self.banned_addrs.insert(*a);
                self.candidates.remove(a);
            } else {
                self.banned_ips.insert(a.ip());
                let ip = a.ip();
                self.candidates.retain(|c, _| c.ip() != ip);
            }
        }
        if let Some(id) = pid {
            self.banned_ids.insert(id);
        }
        self.outputs
            .push_back(Output::Event(TorrentEvent::PeerBanned { peer: key, addr }));
        if self.peers.contains_key(&key) {
            self.drop_peer(now, key, "sent data that failed verification".into());
        }
    }

    /// Hands back the bytes of a [`Output::VerifyPiece`] once the driver is done with them, so
    /// the buffer can be reused for the next piece (optional; saves an allocation per piece).
    pub fn recycle(&mut self, data: Bytes) {
        if self.spare_bufs.len() >= MAX_SPARE_BUFS {
            return;
        }
        let Some(c) = &self.content else {
            return;
        };
        if let Ok(b) = data.try_into_mut() {
            if b.capacity() >= c.meta.info.piece_length() as usize
                && b.as_ptr().align_offset(PIECE_BUF_ALIGN) == 0
            {
                self.spare_bufs.push(b);
            }
        }
    }

    /// Storing a verified piece failed: fetch it again later, without blaming any peer.
    pub fn piece_store_failed(&mut self, now: Time, piece: PieceIndex) {
        let Some(c) = &mut self.content else {
            return;
        };
        if c.verifying.remove(&piece).is_some() {
            c.picker.piece_failed(piece);
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                self.fill_requests(now, k);
            }
        }
    }
}

/// A zeroed buffer of `len` bytes starting at a [`PIECE_BUF_ALIGN`] boundary.
pub(super) fn aligned_piece_buf(len: usize) -> BytesMut {
    let mut b = BytesMut::zeroed(len + PIECE_BUF_ALIGN - 1);
    let skip = b
        .as_ptr()
        .align_offset(PIECE_BUF_ALIGN)
        .min(PIECE_BUF_ALIGN - 1);
    b.advance(skip);
    b.truncate(len);
    b
}
