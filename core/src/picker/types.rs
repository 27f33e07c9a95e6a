//! The public types around a [`Picker`]: its error and tuning, what it needs to know about a
//! peer ([`PeerView`]) and what it made of a received block ([`Received`]).

use crate::id::PeerKey;
use crate::piece::{Bitfield, PieceIndex};

use super::bits::PeerBits;
#[cfg(doc)]
use super::{Picker, MAX_COPIES};

/// Errors from building a picker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickerError {
    /// The have bitfield does not cover exactly the torrent's pieces.
    #[error("have bitfield covers {got} pieces, torrent has {expected}")]
    HaveLength {
        /// Pieces covered by the bitfield.
        got: u32,
        /// Pieces in the torrent.
        expected: u32,
    },
}

/// Tuning of a [`Picker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickerConfig {
    /// Pick random pieces (instead of rarest) until this many pieces are complete.
    pub random_first_pieces: u32,
    /// Pieces in progress with unrequested blocks allowed regardless of the peer count.
    pub min_open_pieces: usize,
    /// More pieces in progress allowed per peer with outstanding requests. A new piece is
    /// started only while fewer than `max(min_open_pieces, open_pieces_per_peer * peers)`
    /// pieces in progress still have unrequested blocks (pieces in the priority range and
    /// allowed-fast pieces of a choked peer are exempt).
    pub open_pieces_per_peer: usize,
    /// Most peers one block is requested from at once in end-game (1 disables end-game;
    /// values above [`MAX_COPIES`] count as `MAX_COPIES`).
    pub endgame_copies: u8,
    /// After a hash failure of a piece that came from several peers, download it again from
    /// one peer only, so that a corrupting peer can be identified.
    pub single_source_after_failure: bool,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            random_first_pieces: 4,
            min_open_pieces: 8,
            open_pieces_per_peer: 2,
            endgame_copies: 3,
            single_source_after_failure: true,
        }
    }
}

/// The pieces a peer has.
#[derive(Debug, Clone, Copy)]
pub enum PeerPieces<'a> {
    /// Every piece (a seed, or `HaveAll`).
    All,
    /// The pieces set in its bitfield.
    Some(&'a Bitfield),
}

/// What the picker needs to know about a peer to pick for it.
#[derive(Debug, Clone, Copy)]
pub struct PeerView<'a> {
    /// The pieces it has.
    pub pieces: PeerPieces<'a>,
    /// Whether it chokes us.
    pub choked: bool,
    /// Pieces it lets us request while choked (BEP 6).
    pub allowed_fast: &'a [PieceIndex],
    /// Give it whole pieces: no blocks of pieces others are downloading (a web seed, which
    /// then fetches one HTTP range per piece instead of scattered blocks).
    pub whole_pieces: bool,
}

impl<'a> PeerView<'a> {
    /// An unchoking peer with every piece.
    pub fn seed() -> Self {
        PeerView {
            pieces: PeerPieces::All,
            choked: false,
            allowed_fast: &[],
            whole_pieces: false,
        }
    }

    /// An unchoking peer with the pieces in `bitfield`.
    pub fn bitfield(bitfield: &'a Bitfield) -> Self {
        PeerView {
            pieces: PeerPieces::Some(bitfield),
            choked: false,
            allowed_fast: &[],
            whole_pieces: false,
        }
    }

    /// Sets whether the peer chokes us.
    pub fn choked(mut self, choked: bool) -> Self {
        self.choked = choked;
        self
    }

    /// Sets the peer's allowed-fast set.
    pub fn allowed_fast(mut self, pieces: &'a [PieceIndex]) -> Self {
        self.allowed_fast = pieces;
        self
    }

    /// Sets whether the peer gets whole pieces only (see [`PeerView::whole_pieces`]).
    pub fn whole_pieces(mut self, whole: bool) -> Self {
        self.whole_pieces = whole;
        self
    }

    /// Whether the peer has the piece.
    pub fn has(&self, piece: PieceIndex) -> bool {
        self.bits().get(piece.get())
    }

    pub(super) fn bits(&self) -> PeerBits<'a> {
        match self.pieces {
            PeerPieces::All => PeerBits::All,
            PeerPieces::Some(bf) => PeerBits::of(bf),
        }
    }
}

/// What [`Picker::block_received`] made of a block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    /// We needed the block: store it. False for duplicates, blocks of pieces we have, blocks
    /// of unwanted pieces not in progress, and blocks that do not fit the torrent's block
    /// grid.
    pub new: bool,
    /// The sending peer had it outstanding (false: unrequested, or already cancelled).
    pub requested: bool,
    /// This block completed its piece: hash it, then call [`Picker::piece_verified`] or
    /// [`Picker::piece_failed`].
    pub piece_complete: bool,
    /// Other peers the block was requested from: send them `cancel`. Their requests are no
    /// longer outstanding.
    pub cancel: Vec<PeerKey>,
}
