//! What to fetch: the file selection, the streaming priority range, and pieces the driver
//! found already verified in storage after the metadata arrived.

use std::ops::Range;

use super::{SelectionError, Torrent};
use crate::id::PeerKey;
use crate::metainfo::Info;
use crate::piece::{Bitfield, PieceIndex};
use crate::time::Time;
use crate::wire::BlockRequest;

impl Torrent {
    /// Marks pieces found already verified in storage after the metadata arrived (a magnet
    /// into a folder that already has some of the data). Pieces are counted as verified,
    /// `Have` is sent to peers, interest is updated, [`TorrentEvent::Done`] fires if that
    /// completes the torrent (or the selection). Pieces already had are ignored; requests
    /// outstanding for the others are cancelled and their partial downloads dropped. No
    /// [`TorrentEvent::PieceVerified`] is given for them: the driver knows.
    ///
    /// Errors if `have`'s length is not the torrent's piece count or there is no metadata
    /// yet.
    ///
    /// [`TorrentEvent::Done`]: super::TorrentEvent::Done
    /// [`TorrentEvent::PieceVerified`]: super::TorrentEvent::PieceVerified
    pub fn pieces_on_disk(&mut self, now: Time, have: &Bitfield) -> Result<(), SelectionError> {
        self.now = self.now.max(now);
        let Some(c) = &mut self.content else {
            return Err(SelectionError::NoMetadata);
        };
        let n = c.meta.info.num_pieces();
        if have.len() != n {
            return Err(SelectionError::WrongLength {
                expected: n as usize,
                got: have.len() as usize,
            });
        }
        let new: Vec<PieceIndex> = have
            .ones()
            .filter_map(|i| c.meta.info.layout.piece(i).ok())
            .filter(|p| !c.picker.have().get(*p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        // Blocks still requested for these pieces are not needed any more.
        for (k, peer) in self.peers.iter_mut() {
            let stale: Vec<BlockRequest> = c
                .picker
                .outstanding(*k)
                .iter()
                .filter(|b| have.get(b.piece))
                .map(|b| BlockRequest::new(b.piece.get(), b.begin, b.length))
                .collect();
            for r in stale {
                peer.session.cancel(now, r);
            }
        }
        for p in &new {
            c.assembling.remove(p);
            // A verdict still to come for it is ignored.
            c.verifying.remove(p);
            c.suspects.take(*p);
            c.picker.piece_verified(*p);
        }
        self.update_left();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in &keys {
            if let Some(peer) = self.peers.get_mut(k) {
                if peer.session.is_active() {
                    for p in &new {
                        peer.session.send_have(now, p.get());
                    }
                }
            }
            self.mark_dirty(*k);
        }
        self.update_done();
        self.refresh_interest(now);
        Ok(())
    }

    /// Which files (by index into `meta.info.files`, padding files included) are wanted. A
    /// piece is wanted when it overlaps any wanted non-padding file; unwanted pieces are never
    /// requested (pieces already being assembled may finish). Everything is wanted by
    /// default. Peers that have nothing we want any more are told we are not interested,
    /// peers that now have something we want get interested and requests.
    /// [`TorrentEvent::Done`](super::TorrentEvent::Done) fires once every wanted piece is
    /// verified, at once if they are already.
    ///
    /// Errors if `wanted` does not have one entry per file or there is no metadata yet.
    pub fn set_files_wanted(&mut self, now: Time, wanted: &[bool]) -> Result<(), SelectionError> {
        self.now = self.now.max(now);
        let Some(c) = &mut self.content else {
            return Err(SelectionError::NoMetadata);
        };
        let files = c.meta.info.files.len();
        if wanted.len() != files {
            return Err(SelectionError::WrongLength {
                expected: files,
                got: wanted.len(),
            });
        }
        if c.files_wanted == wanted {
            return Ok(());
        }
        c.files_wanted = wanted.to_vec();
        self.apply_wanted(now);
        Ok(())
    }

    /// Piece ranges fetched whatever the file selection (end exclusive): a piece is wanted
    /// when a wanted file overlaps it or one of these ranges holds it. An empty list leaves
    /// the file selection alone.
    ///
    /// Errors if a range is reversed or ends past the last piece, or there is no metadata
    /// yet; nothing changes then.
    pub fn set_piece_ranges_wanted(
        &mut self,
        now: Time,
        ranges: &[Range<u32>],
    ) -> Result<(), SelectionError> {
        self.now = self.now.max(now);
        let Some(c) = &mut self.content else {
            return Err(SelectionError::NoMetadata);
        };
        let n = c.meta.info.num_pieces();
        if ranges.iter().any(|r| r.start > r.end || r.end > n) {
            return Err(SelectionError::OutOfRange);
        }
        if c.pieces_wanted == ranges {
            return Ok(());
        }
        c.pieces_wanted = ranges.to_vec();
        self.apply_wanted(now);
        Ok(())
    }

    /// The wanted pieces from the file selection and the piece ranges, then what follows.
    fn apply_wanted(&mut self, now: Time) {
        let Some(c) = &mut self.content else {
            return;
        };
        let mut pieces = wanted_pieces(&c.meta.info, &c.files_wanted);
        for r in &c.pieces_wanted {
            for p in r.clone() {
                if let Ok(p) = c.meta.info.layout.piece(p) {
                    pieces.set(p);
                }
            }
        }
        c.picker.set_wanted_pieces(&pieces);
        self.update_done();
        self.refresh_interest(now);
    }

    /// The current file selection, one entry per file of `meta.info.files` (`None` before
    /// the metadata).
    pub fn files_wanted(&self) -> Option<Vec<bool>> {
        self.content.as_ref().map(|c| c.files_wanted.clone())
    }

    /// Pieces covering this byte range of the torrent are fetched first, in order (streaming);
    /// `None` or an empty range clears it. Only wanted pieces are fetched: select the file
    /// too.
    ///
    /// Errors if the range is reversed or ends past the torrent's end, or there is no
    /// metadata yet.
    pub fn set_priority_range(
        &mut self,
        now: Time,
        range: Option<Range<u64>>,
    ) -> Result<(), SelectionError> {
        let ranges: &[Range<u64>] = match &range {
            Some(r) => std::slice::from_ref(r),
            None => &[],
        };
        self.set_priority_ranges(now, ranges)
    }

    /// Several priority ranges at once (one per stream reader), the most urgent first: the
    /// first range's pieces are fetched in order, then the second's, and so on. An empty
    /// list clears them; at most [`MAX_PRIORITY_RANGES`](crate::picker::MAX_PRIORITY_RANGES)
    /// are kept.
    ///
    /// Errors if a range is reversed or ends past the torrent's end, or there is no metadata
    /// yet; nothing changes then.
    pub fn set_priority_ranges(
        &mut self,
        now: Time,
        ranges: &[Range<u64>],
    ) -> Result<(), SelectionError> {
        self.now = self.now.max(now);
        let Some(c) = &mut self.content else {
            return Err(SelectionError::NoMetadata);
        };
        let total = c.meta.info.total_length();
        if ranges.iter().any(|r| r.start > r.end || r.end > total) {
            return Err(SelectionError::OutOfRange);
        }
        c.picker.set_priority_ranges(ranges);
        self.make_room_for_priority(now);
        self.fill_all_requests(now);
        Ok(())
    }

    /// A reader jumped to a piece nobody is fetching (a seek, a new stream): withdraws the
    /// requests for pieces outside the priority ranges, so the urgent blocks do not wait
    /// behind seconds of other blocks queued at the peers. A reader moving on through pieces
    /// already requested changes nothing.
    fn make_room_for_priority(&mut self, now: Time) {
        let Some(c) = &mut self.content else {
            return;
        };
        let ranges = c.picker.priority_ranges().to_vec();
        let Some(first) = ranges.first() else {
            return;
        };
        let Some(head) = (first.start..first.end).find(|&p| !c.picker.have().get_raw(p)) else {
            return;
        };
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        let requested = keys.iter().any(|k| {
            c.picker
                .outstanding(*k)
                .iter()
                .any(|b| b.piece.get() == head)
        });
        if requested {
            return;
        }
        let urgent = |p: u32| ranges.iter().any(|r| r.contains(&p));
        for k in keys {
            let Some(peer) = self.peers.get_mut(&k) else {
                continue;
            };
            let stale: Vec<_> = c
                .picker
                .outstanding(k)
                .iter()
                .filter(|b| !urgent(b.piece.get()))
                .copied()
                .collect();
            for b in stale {
                peer.session
                    .cancel(now, BlockRequest::new(b.piece.get(), b.begin, b.length));
                c.picker.request_failed(k, b);
            }
        }
    }

    /// After what we want or have changed: our interest in every peer, then requests.
    fn refresh_interest(&mut self, now: Time) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            if let Err(e) = self.peer_has_changed(now, k) {
                self.drop_peer(now, k, e);
                continue;
            }
            self.fill_requests(now, k);
        }
    }
}

/// The pieces overlapping a wanted, non-padding, non-empty file.
pub(super) fn wanted_pieces(info: &Info, wanted: &[bool]) -> Bitfield {
    let mut bits = Bitfield::new(info.num_pieces());
    let piece_length = u64::from(info.piece_length()).max(1);
    for (f, _) in info
        .files
        .iter()
        .zip(wanted)
        .filter(|(f, w)| **w && !f.padding && f.length > 0)
    {
        let first = f.offset / piece_length;
        let last = (f.offset + f.length - 1) / piece_length;
        for p in first..=last {
            if let Some(p) = u32::try_from(p)
                .ok()
                .and_then(|p| info.layout.piece(p).ok())
            {
                bits.set(p);
            }
        }
    }
    bits
}
