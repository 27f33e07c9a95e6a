//! Pieces and blocks: lengths, validated piece indexes, 16 KiB block requests, bitfields and
//! SHA-1 piece verification.

use sha1::{Digest, Sha1};

/// The block size every request uses, except the last block of the last piece.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// Smallest allowed piece length.
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
/// Largest piece length this crate accepts when reading a torrent.
pub const MAX_PIECE_LENGTH: u32 = 64 * 1024 * 1024;

/// Errors about piece geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    /// The piece length is not a power of two within the allowed range.
    #[error("piece length {0} is not a power of two between 16 KiB and 64 MiB")]
    PieceLength(u64),
    /// The torrent has more pieces than fit in a 32-bit index.
    #[error("total length {0} needs too many pieces")]
    TooManyPieces(u64),
    /// A piece index past the last piece.
    #[error("piece index {index} out of range (torrent has {count} pieces)")]
    IndexOutOfRange {
        /// The index given.
        index: u32,
        /// Number of pieces.
        count: u32,
    },
    /// A block request that does not lie within its piece, or is empty or too large.
    #[error("invalid block request: piece {index}, offset {begin}, length {length}")]
    BadRequest {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// Requested length.
        length: u32,
    },
    /// A bitfield with the wrong byte length.
    #[error("bitfield has {got} bytes, expected {expected}")]
    BitfieldLength {
        /// Bytes received.
        got: usize,
        /// Bytes expected for the piece count.
        expected: usize,
    },
    /// A bitfield with spare bits set past the last piece.
    #[error("bitfield has spare bits set after the last piece")]
    BitfieldSpareBits,
}

/// A piece index checked against a torrent's piece count. Only [`Layout::piece`] makes one,
/// so code that holds a `PieceIndex` never re-checks bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The raw index.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The index as a `usize`, for indexing slices.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A block within a piece: what a `request`, `cancel` or `reject` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    /// The piece.
    pub piece: PieceIndex,
    /// Byte offset within the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// Piece geometry of a torrent: piece length, total length and the derived counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    piece_length: u32,
    total_length: u64,
    num_pieces: u32,
}

impl Layout {
    /// Builds the layout, checking the piece length is a power of two in
    /// [`MIN_PIECE_LENGTH`]`..=`[`MAX_PIECE_LENGTH`].
    pub fn new(piece_length: u64, total_length: u64) -> Result<Self, PieceError> {
        if !piece_length.is_power_of_two()
            || piece_length < u64::from(MIN_PIECE_LENGTH)
            || piece_length > u64::from(MAX_PIECE_LENGTH)
        {
            return Err(PieceError::PieceLength(piece_length));
        }
        let n = total_length.div_ceil(piece_length);
        let num_pieces = u32::try_from(n).map_err(|_| PieceError::TooManyPieces(total_length))?;
        Ok(Layout {
            piece_length: piece_length as u32,
            total_length,
            num_pieces,
        })
    }

    /// The nominal piece length.
    pub const fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Total bytes in the torrent.
    pub const fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of pieces.
    pub const fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Validates a raw index from the wire or a file.
    pub fn piece(&self, index: u32) -> Result<PieceIndex, PieceError> {
        if index < self.num_pieces {
            Ok(PieceIndex(index))
        } else {
            Err(PieceError::IndexOutOfRange {
                index,
                count: self.num_pieces,
            })
        }
    }

    /// Iterates over every piece index.
    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> + use<> {
        (0..self.num_pieces).map(PieceIndex)
    }

    /// Byte offset of the piece within the torrent.
    pub fn piece_offset(&self, piece: PieceIndex) -> u64 {
        u64::from(piece.0) * u64::from(self.piece_length)
    }

    /// Length of the piece: the nominal length, or less for the last piece.
    pub fn piece_len(&self, piece: PieceIndex) -> u32 {
        let start = self.piece_offset(piece);
        (self.total_length - start).min(u64::from(self.piece_length)) as u32
    }

    /// Number of 16 KiB blocks in the piece (the last one may be shorter).
    pub fn num_blocks(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// The `n`th block of the piece, or `None` past the last block.
    pub fn block(&self, piece: PieceIndex, n: u32) -> Option<Block> {
        let len = self.piece_len(piece);
        let begin = n.checked_mul(BLOCK_SIZE)?;
        if begin >= len {
            return None;
        }
        Some(Block {
            piece,
            begin,
            length: (len - begin).min(BLOCK_SIZE),
        })
    }

    /// Every block of the piece, in order.
    pub fn blocks(&self, piece: PieceIndex) -> impl Iterator<Item = Block> + use<> {
        let len = self.piece_len(piece);
        (0..len.div_ceil(BLOCK_SIZE)).map(move |n| {
            let begin = n * BLOCK_SIZE;
            Block {
                piece,
                begin,
                length: (len - begin).min(BLOCK_SIZE),
            }
        })
    }

    /// Checks a peer's request: within the piece, non-empty and at most [`BLOCK_SIZE`] long.
    pub fn check_request(&self, index: u32, begin: u32, length: u32) -> Result<Block, PieceError> {
        let bad = PieceError::BadRequest {
            index,
            begin,
            length,
        };
        let piece = self.piece(index).map_err(|_| bad.clone())?;
        let end = begin.checked_add(length).ok_or(bad.clone())?;
        if length == 0 || length > BLOCK_SIZE || end > self.piece_len(piece) {
            return Err(bad);
        }
        Ok(Block {
            piece,
            begin,
            length,
        })
    }

    /// Checks that a received block is one this layout could have requested: aligned to
    /// [`BLOCK_SIZE`] and exactly the block's length.
    pub fn check_block(&self, index: u32, begin: u32, length: u32) -> Result<Block, PieceError> {
        let piece = self.piece(index)?;
        match self.block(piece, begin / BLOCK_SIZE) {
            Some(b) if b.begin == begin && b.length == length => Ok(b),
            _ => Err(PieceError::BadRequest {
                index,
                begin,
                length,
            }),
        }
    }

    /// Byte length of a bitfield for this torrent.
    pub fn bitfield_len(&self) -> usize {
        (self.num_pieces as usize).div_ceil(8)
    }
}

/// Which pieces a peer has, one bit per piece, high bit of byte 0 first (BEP 3).
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    /// All bits clear.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// All bits set.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield {
            bytes: vec![0xff; (len as usize).div_ceil(8)],
            len,
            ones: len,
        };
        b.clear_spare();
        b
    }

    /// Parses a bitfield message for `len` pieces: exact byte length, spare bits zero.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Self, PieceError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(PieceError::BitfieldLength {
                got: bytes.len(),
                expected,
            });
        }
        let mut b = Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones: 0,
        };
        let before: Vec<u8> = b.bytes.clone();
        b.clear_spare();
        if b.bytes != before {
            return Err(PieceError::BitfieldSpareBits);
        }
        b.ones = b.bytes.iter().map(|x| x.count_ones()).sum();
        Ok(b)
    }

    fn clear_spare(&mut self) {
        let spare = (self.bytes.len() * 8) as u32 - self.len;
        if spare > 0 {
            if let Some(last) = self.bytes.last_mut() {
                *last &= 0xffu8 << spare;
            }
        }
    }

    /// Number of pieces covered.
    pub const fn len(&self) -> u32 {
        self.len
    }

    /// True when it covers no pieces.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of set bits.
    pub const fn count(&self) -> u32 {
        self.ones
    }

    /// True when every piece is set.
    pub const fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// True when no piece is set.
    pub const fn is_clear(&self) -> bool {
        self.ones == 0
    }

    /// Whether the piece is set.
    pub fn get(&self, piece: PieceIndex) -> bool {
        self.get_raw(piece.0)
    }

    /// Whether bit `i` is set; `false` past the end.
    pub fn get_raw(&self, i: u32) -> bool {
        self.bytes
            .get((i / 8) as usize)
            .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
    }

    /// Sets the piece; returns whether it was newly set.
    pub fn set(&mut self, piece: PieceIndex) -> bool {
        let (byte, mask) = ((piece.0 / 8) as usize, 0x80u8 >> (piece.0 % 8));
        match self.bytes.get_mut(byte) {
            Some(b) if *b & mask == 0 => {
                *b |= mask;
                self.ones += 1;
                true
            }
            _ => false,
        }
    }

    /// Clears the piece; returns whether it was set.
    pub fn unset(&mut self, piece: PieceIndex) -> bool {
        let (byte, mask) = ((piece.0 / 8) as usize, 0x80u8 >> (piece.0 % 8));
        match self.bytes.get_mut(byte) {
            Some(b) if *b & mask != 0 => {
                *b &= !mask;
                self.ones -= 1;
                true
            }
            _ => false,
        }
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Indexes of set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes.iter().enumerate().flat_map(|(i, &b)| {
            (0..8u32)
                .filter(move |j| b & (0x80 >> j) != 0)
                .map(move |j| i as u32 * 8 + j)
        })
    }
}

/// SHA-1 of `data` (uses the CPU's SHA extensions when present).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// True when `data` hashes to `expected`.
pub fn verify_piece(data: &[u8], expected: &[u8; 20]) -> bool {
    sha1(data) == *expected
}

/// Hashes a stream of bytes into consecutive piece hashes, for creating torrents from data that
/// arrives in chunks of any size (file after file).
#[derive(Clone)]
pub struct PieceHasher {
    piece_length: u64,
    in_piece: u64,
    hasher: Sha1,
    pieces: Vec<u8>,
}

impl PieceHasher {
    /// A hasher cutting pieces of `piece_length` bytes.
    pub fn new(piece_length: u32) -> Self {
        PieceHasher {
            piece_length: u64::from(piece_length),
            in_piece: 0,
            hasher: Sha1::new(),
            pieces: Vec::new(),
        }
    }

    /// Feeds the next bytes of the torrent's content.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.piece_length - self.in_piece) as usize;
            let take = room.min(data.len());
            self.hasher.update(&data[..take]);
            self.in_piece += take as u64;
            data = &data[take..];
            if self.in_piece == self.piece_length {
                let digest = std::mem::take(&mut self.hasher).finalize();
                self.pieces.extend_from_slice(&digest);
                self.in_piece = 0;
            }
        }
    }

    /// Hashes the final partial piece, if any, and returns the concatenated 20-byte hashes.
    pub fn finish(mut self) -> Vec<u8> {
        if self.in_piece > 0 {
            let digest = self.hasher.finalize();
            self.pieces.extend_from_slice(&digest);
        }
        self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_lengths() {
        let l = Layout::new(32768, 100_000).unwrap();
        assert_eq!(l.num_pieces(), 4);
        let last = l.piece(3).unwrap();
        assert_eq!(l.piece_len(last), 100_000 - 3 * 32768);
        assert_eq!(l.num_blocks(last), 1);
        assert_eq!(l.block(last, 0).unwrap().length, 1696);
        assert_eq!(l.block(last, 1), None);
        let first = l.piece(0).unwrap();
        assert_eq!(
            l.blocks(first).map(|b| b.length).collect::<Vec<_>>(),
            [16384, 16384]
        );
        assert!(matches!(
            l.piece(4),
            Err(PieceError::IndexOutOfRange { index: 4, count: 4 })
        ));
        assert_eq!(Layout::new(32768, 0).unwrap().num_pieces(), 0);
        assert_eq!(Layout::new(32768, 32768).unwrap().num_pieces(), 1);
    }

    #[test]
    fn layout_rejects_bad_piece_lengths() {
        for bad in [0u64, 1, 8192, 16385, 49152, 1 << 27] {
            assert_eq!(Layout::new(bad, 10), Err(PieceError::PieceLength(bad)));
        }
        assert!(matches!(
            Layout::new(16384, u64::MAX),
            Err(PieceError::TooManyPieces(_))
        ));
    }

    #[test]
    fn requests_are_checked() {
        let l = Layout::new(32768, 40000).unwrap();
        assert!(l.check_request(0, 0, 16384).is_ok());
        assert!(l.check_request(0, 100, 16384).is_ok());
        assert!(l.check_request(0, 16385, 16384).is_err());
        assert!(l.check_request(0, 0, 16385).is_err());
        assert!(l.check_request(0, 0, 0).is_err());
        assert!(l.check_request(1, 0, 7232).is_ok());
        assert!(l.check_request(1, 0, 7233).is_err());
        assert!(l.check_request(2, 0, 1).is_err());
        assert!(l.check_request(0, u32::MAX, 2).is_err());
        assert!(l.check_block(1, 0, 7232).is_ok());
        assert!(l.check_block(0, 100, 16384).is_err());
        assert!(l.check_block(0, 16384, 16000).is_err());
    }

    #[test]
    fn bitfield_rules() {
        assert_eq!(Bitfield::from_bytes(&[0xff, 0x80], 9).unwrap().count(), 9);
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0xc0], 9),
            Err(PieceError::BitfieldSpareBits)
        );
        assert!(matches!(
            Bitfield::from_bytes(&[0xff], 9),
            Err(PieceError::BitfieldLength {
                got: 1,
                expected: 2
            })
        ));
        let l = Layout::new(16384, 16384 * 10).unwrap();
        let mut b = Bitfield::new(10);
        assert!(b.set(l.piece(9).unwrap()));
        assert!(!b.set(l.piece(9).unwrap()));
        assert_eq!(b.as_bytes(), &[0x00, 0x40]);
        assert_eq!(b.ones().collect::<Vec<_>>(), [9]);
        assert!(b.unset(l.piece(9).unwrap()));
        assert!(b.is_clear());
        let f = Bitfield::full(10);
        assert_eq!(f.as_bytes(), &[0xff, 0xc0]);
        assert!(f.is_full());
        assert!(!f.get_raw(10));
    }

    #[test]
    fn sha1_known_answer() {
        assert_eq!(
            hex::encode(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert!(verify_piece(b"abc", &sha1(b"abc")));
        assert!(!verify_piece(b"abd", &sha1(b"abc")));
    }

    proptest! {
        #[test]
        fn blocks_tile_every_piece(pl_exp in 14u32..20, total in 0u64..5_000_000) {
            let l = Layout::new(1 << pl_exp, total).unwrap();
            let mut sum = 0u64;
            for p in l.pieces() {
                let mut pos = 0;
                for b in l.blocks(p) {
                    prop_assert_eq!(b.begin, pos);
                    prop_assert!(b.length > 0 && b.length <= BLOCK_SIZE);
                    prop_assert!(l.check_block(p.get(), b.begin, b.length).is_ok());
                    pos += b.length;
                }
                prop_assert_eq!(pos, l.piece_len(p));
                sum += u64::from(pos);
            }
            prop_assert_eq!(sum, total);
        }

        #[test]
        fn hasher_matches_direct_hash(data in proptest::collection::vec(any::<u8>(), 0..100_000), cuts in proptest::collection::vec(0usize..100_000, 0..8)) {
            let mut h = PieceHasher::new(16384);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut prev = 0;
            for c in cuts.into_iter().chain(std::iter::once(data.len())) {
                h.update(&data[prev..c]);
                prev = c;
            }
            let expected: Vec<u8> = data.chunks(16384).flat_map(sha1).collect();
            prop_assert_eq!(h.finish(), expected);
        }

        #[test]
        fn bitfield_roundtrip(len in 0u32..200, seed in any::<u64>()) {
            let l = Layout::new(16384, u64::from(len) * 16384).unwrap();
            let mut b = Bitfield::new(len);
            for p in l.pieces() {
                if (seed >> (p.get() % 64)) & 1 == 1 { b.set(p); }
            }
            let back = Bitfield::from_bytes(b.as_bytes(), len).unwrap();
            prop_assert_eq!(back.count(), b.count());
            prop_assert_eq!(back, b);
        }
    }
}
