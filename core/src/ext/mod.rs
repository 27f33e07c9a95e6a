//! Extension protocol messages: the BEP 10 handshake, BEP 9 `ut_metadata` and BEP 11 `ut_pex`.
//!
//! These decode the `payload` of a [`Message::Extended`](crate::wire::Message::Extended).
//! Extended message id 0 is always the [`ExtendedHandshake`]; other ids are the ones the
//! *receiver* assigned in its own handshake's `m` dictionary.
//!
//! Decoding is bounded: every payload is parsed with [`LIMITS`], and each message type caps its
//! own lists and sizes (see [`MAX_EXTENSIONS`], [`MAX_METADATA_SIZE`], [`MAX_PEX_PEERS`]).

mod handshake;
mod metadata;
mod pex;
#[cfg(test)]
mod tests;

pub use handshake::{
    ExtendedHandshake, MAX_CLIENT_NAME_LEN, MAX_EXTENSIONS, MAX_EXTENSION_NAME_LEN,
};
pub use metadata::{
    metadata_hash, serve_metadata_piece, MetadataAssembler, MetadataError, MetadataMessage,
    MAX_METADATA_SIZE, METADATA_PIECE_LEN,
};
pub use pex::{PexFlags, PexMessage, MAX_PEX_PEERS};

use crate::bencode::{BencodeError, Limits};
use crate::wire::compact::CompactError;

/// Extended message id of the extension handshake.
pub const HANDSHAKE_ID: u8 = 0;
/// Name of the BEP 9 metadata extension in `m`.
pub const UT_METADATA: &str = "ut_metadata";
/// Name of the BEP 11 peer exchange extension in `m`.
pub const UT_PEX: &str = "ut_pex";

/// Bencode bounds for every extension payload: ample for real messages, small enough that a
/// hostile 1 MiB payload cannot turn into a large tree.
pub const LIMITS: Limits = Limits {
    max_depth: 8,
    max_values: 4096,
};

/// Errors from decoding an extension message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    /// The payload is not valid bencode (or exceeds [`LIMITS`]).
    #[error("invalid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The payload is not a dictionary.
    #[error("extension message is not a dictionary")]
    NotADict,
    /// A required field is missing or has the wrong type or range.
    #[error("missing or invalid field `{0}`")]
    Field(&'static str),
    /// The handshake's `m` dictionary has too many entries.
    #[error("{count} entries in `m`, at most {max} allowed")]
    TooManyExtensions {
        /// Entries found.
        count: usize,
        /// The limit, [`MAX_EXTENSIONS`].
        max: usize,
    },
    /// A metadata size outside `1..=MAX_METADATA_SIZE`.
    #[error("metadata size {size} is outside 1..={max}")]
    MetadataSize {
        /// The size announced.
        size: i64,
        /// The limit, [`MAX_METADATA_SIZE`].
        max: u32,
    },
    /// A `ut_metadata` message type other than request (0), data (1) or reject (2).
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownMsgType(i64),
    /// A `ut_metadata` data message carrying more than one 16 KiB piece.
    #[error("ut_metadata data of {0} bytes exceeds one 16 KiB piece")]
    DataTooLong(usize),
    /// A compact peer list whose length is not a multiple of its entry size.
    #[error(transparent)]
    Compact(#[from] CompactError),
}
