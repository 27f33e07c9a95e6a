//! Piece picking: which blocks to request from which peer.
//!
//! The [`Picker`] knows what we have, how many peers have each piece and which blocks are
//! requested from whom. The torrent state machine feeds it peers' bitfields and `have`s,
//! asks it for blocks to request ([`Picker::pick`]) and reports what came back. It never
//! touches sockets, clocks or OS randomness; ties are broken with a seeded [`Rng`].
//!
//! Order of preference for one peer:
//! 1. pieces overlapping the priority (streaming) byte range, in piece order;
//! 2. pieces already in progress (bounding how many are open at once);
//! 3. new pieces: random ones until a few are complete, then rarest first with random
//!    tie-break;
//! 4. in end-game (every missing block requested), blocks already requested from other peers,
//!    up to [`PickerConfig::endgame_copies`] copies of each.
//!
//! A choked peer is only asked for pieces in its allowed-fast set (BEP 6).
//!
//! Costs: a ±1 availability change is O(1); opening or closing a piece is O(peers) at worst
//! (one swap per availability bucket above it); a pick touches the few pieces in progress,
//! then scans the availability order from the rarest end, falling back to a word-wise scan of
//! the peer's bitfield when the peer lacks the rare pieces.
//!
//! The work is split by concern: `types` (the error, tuning, peer view and block verdict),
//! `availability` (peers' pieces), `selection` (wanted pieces, the priority range and the
//! state derived from them), `pick` (choosing blocks), `requests` (outstanding requests and
//! received blocks), `pieces` (hash verdicts, opening and closing pieces in progress), with
//! `bits` and `order` as helpers; this file holds the internal types, construction and
//! queries.

mod availability;
mod bits;
#[cfg(test)]
mod invariants;
mod order;
mod pick;
mod pieces;
mod requests;
mod selection;
#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;
use std::ops::Range;

use crate::id::PeerKey;
use crate::piece::{Bitfield, Block, Layout, PieceIndex, BLOCK_SIZE};
use crate::rng::Rng;
use bits::{Bits, PeerBits};
use order::Order;

pub use selection::MAX_PRIORITY_RANGES;
pub use types::{PeerPieces, PeerView, PickerConfig, PickerError, Received};

/// Most copies of one block that can be outstanding at once (end-game).
pub const MAX_COPIES: usize = 3;

const NONE: u32 = u32::MAX;
/// `Slot::n` of a received block; `peers[0]` is then the peer that sent it.
const RECEIVED: u8 = u8::MAX;

/// One block of a piece in progress.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Number of peers it is requested from, or [`RECEIVED`].
    n: u8,
    /// The requesting peers (`..n`), or the sender when received.
    peers: [PeerKey; MAX_COPIES],
}

const EMPTY_SLOT: Slot = Slot {
    n: 0,
    peers: [PeerKey(0); MAX_COPIES],
};

/// A piece in progress.
#[derive(Debug, Clone)]
struct OpenPiece {
    piece: u32,
    slots: Vec<Slot>,
    /// Blocks neither requested nor received.
    free: u32,
    /// Blocks requested from at least one peer and not received.
    requested: u32,
    received: u32,
    /// No free block below this index.
    hint: u32,
    /// Single-source pieces: the one peer this piece is downloaded from.
    owner: Option<PeerKey>,
    /// Index in `Picker::partial`, or `NONE`.
    partial_pos: u32,
}

impl OpenPiece {
    fn is_complete(&self) -> bool {
        self.received as usize == self.slots.len()
    }
}

/// Per-peer bookkeeping, present while the peer has outstanding requests or owns pieces.
#[derive(Debug, Clone, Default)]
struct PeerState {
    outstanding: Vec<Block>,
    owned: Vec<u32>,
}

/// Decides which blocks to request from which peer. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Picker {
    layout: Layout,
    config: PickerConfig,
    rng: Rng,
    have: Bitfield,
    /// Pieces the user wants (priority above zero).
    wanted: Bits,
    /// Wanted and not had.
    want: Bits,
    /// Wanted, not had, and with a free block.
    pickable: Bits,
    /// In `order`: wanted, normal priority, not had, not in progress.
    fresh: Bits,
    /// Download from one peer only.
    single: Bits,
    /// Peers with a bitfield that have the piece (seeds are counted in `seeds`).
    avail: Vec<u32>,
    seeds: u32,
    order: Order,
    /// Piece -> index in `open`, or `NONE`.
    slot_of: Vec<u32>,
    open: Vec<OpenPiece>,
    spare: Vec<u32>,
    num_open: usize,
    num_finished: usize,
    /// Open pieces that are wanted and have free blocks.
    partial: Vec<u32>,
    /// Free blocks each piece contributes to `free_blocks`.
    counted: Vec<u32>,
    free_blocks: u64,
    wanted_missing: u32,
    missing_bytes: u64,
    num_requests: usize,
    ranges: Vec<Range<u32>>,
    peers: BTreeMap<PeerKey, PeerState>,
}

impl Picker {
    /// A picker for `layout` that already has the pieces in `have` (all clear for a new
    /// download), with every piece wanted and the given tuning and random seed.
    pub fn new(
        layout: Layout,
        have: Bitfield,
        config: PickerConfig,
        seed: u64,
    ) -> Result<Self, PickerError> {
        let n = layout.num_pieces();
        if have.len() != n {
            return Err(PickerError::HaveLength {
                got: have.len(),
                expected: n,
            });
        }
        let mut wanted = Bits::new(n);
        for p in 0..n {
            wanted.put(p, true);
        }
        let mut picker = Picker {
            layout,
            config,
            rng: Rng::new(seed),
            have,
            wanted,
            want: Bits::new(n),
            pickable: Bits::new(n),
            fresh: Bits::new(n),
            single: Bits::new(n),
            avail: vec![0; n as usize],
            seeds: 0,
            order: Order::new(n),
            slot_of: vec![NONE; n as usize],
            open: Vec::new(),
            spare: Vec::new(),
            num_open: 0,
            num_finished: 0,
            partial: Vec::new(),
            counted: vec![0; n as usize],
            free_blocks: 0,
            wanted_missing: 0,
            missing_bytes: 0,
            num_requests: 0,
            ranges: Vec::new(),
            peers: BTreeMap::new(),
        };
        for p in 0..n {
            if !picker.have.get_raw(p) {
                picker.missing_bytes += u64::from(picker.piece_len(p));
            }
            picker.refresh(p, false);
        }
        picker.rebuild_order();
        Ok(picker)
    }

    // ----- queries -----

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Pieces we have (verified).
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when we have every piece.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// True when we have every wanted piece.
    pub fn is_finished(&self) -> bool {
        self.wanted_missing == 0
    }

    /// Bytes of the pieces we do not have (wanted or not; partial pieces count in full).
    pub fn missing_bytes(&self) -> u64 {
        self.missing_bytes
    }

    /// Whether the peer has a piece we want and do not have. O(pieces / 64).
    pub fn interesting(&self, view: &PeerView<'_>) -> bool {
        match view.bits() {
            PeerBits::All => self.wanted_missing > 0,
            bits => self.want.intersects(&bits),
        }
    }

    /// Pieces in progress: opened and not yet verified or failed (including complete ones
    /// awaiting their hash check).
    pub fn num_open_pieces(&self) -> usize {
        self.num_open
    }

    /// True when every block of every wanted missing piece is requested or received.
    pub fn in_endgame(&self) -> bool {
        self.free_blocks == 0 && self.wanted_missing > 0
    }

    /// Whether the block is received and awaiting its piece's verification, or its piece is
    /// had.
    pub fn is_received(&self, block: Block) -> bool {
        let Some(n) = self.block_no(&block) else {
            return false;
        };
        let p = block.piece.get();
        if self.have.get_raw(p) {
            return true;
        }
        let s = self.slot_of[p as usize];
        s != NONE && self.open[s as usize].slots[n as usize].n == RECEIVED
    }

    // ----- internals -----

    fn num_pieces(&self) -> u32 {
        self.layout.num_pieces()
    }

    fn index(&self, p: u32) -> PieceIndex {
        self.layout
            .piece(p)
            .expect("internal piece indexes are below num_pieces")
    }

    fn piece_len(&self, p: u32) -> u32 {
        self.layout.piece_len(self.index(p))
    }

    fn num_blocks(&self, p: u32) -> u32 {
        self.piece_len(p).div_ceil(BLOCK_SIZE)
    }

    fn in_range(&self, p: u32) -> bool {
        self.ranges.iter().any(|r| r.contains(&p))
    }

    /// The block's number within its piece, if it is one of this torrent's blocks.
    fn block_no(&self, b: &Block) -> Option<u32> {
        let p = b.piece.get();
        if p >= self.num_pieces() || b.begin % BLOCK_SIZE != 0 {
            return None;
        }
        let len = self.piece_len(p);
        if b.begin >= len || b.length != (len - b.begin).min(BLOCK_SIZE) {
            return None;
        }
        Some(b.begin / BLOCK_SIZE)
    }
}
