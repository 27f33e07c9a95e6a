//! The BitTorrent peer wire protocol (BEP 3, BEP 6): handshake, messages and an incremental decoder.
//!
//! * [`Handshake`] / [`HandshakeHeader`] / [`Reserved`]: the 68-byte opening exchange.
//! * [`Message`]: every length-prefixed message of BEP 3, the fast extension (BEP 6) and the
//!   extension protocol envelope (BEP 10), with [`Message::encode`] and
//!   [`encode_piece_header`] for writing a block without copying it.
//! * [`Decoder`]: an incremental, zero-copy decoder that bounds frame sizes before buffering them.
//! * [`compact`]: the 6- and 18-byte compact peer formats shared with trackers and PEX.

pub mod compact;
mod decoder;
mod handshake;
mod message;
#[cfg(test)]
mod tests;

/// Re-exported: payloads in this module's API are `Bytes`, encoders write to `BytesMut`.
pub use bytes::{Bytes, BytesMut};
pub use decoder::{Decoder, Event, Phase, DEFAULT_MAX_FRAME_LEN};
pub use handshake::{
    Handshake, HandshakeHeader, Reserved, HANDSHAKE_HEADER_LEN, HANDSHAKE_LEN, PROTOCOL,
};
pub use message::{
    encode_piece_header, BlockRequest, Message, MessageKind, BLOCK_LEN, MAX_PAYLOAD_LEN,
    PIECE_HEADER_LEN,
};

/// Errors from decoding the wire protocol.
///
/// [`WireError::is_fatal`] tells whether the byte stream is still usable: after a fatal error the
/// [`Decoder`] keeps returning it, after a non-fatal one the offending frame has been consumed and
/// decoding can go on if the caller chooses to keep the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The handshake's first byte (protocol string length) was not 19.
    #[error("handshake protocol string length is {0}, expected 19")]
    ProtocolLength(u8),
    /// The handshake's protocol string was not `BitTorrent protocol`.
    #[error("handshake protocol string is not \"BitTorrent protocol\"")]
    ProtocolName,
    /// A complete handshake was expected but the input had another length.
    #[error("handshake is {got} bytes, expected {expected}")]
    HandshakeLength {
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A frame declared a length above the decoder's limit; nothing of it was buffered.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The declared frame length (message id plus payload).
        len: u32,
        /// The decoder's limit.
        max: u32,
    },
    /// A message id this crate does not know. The frame has been skipped.
    #[error("unknown message id {0}")]
    UnknownMessage(u8),
    /// A known message with a payload of the wrong size. The frame has been skipped.
    #[error("{kind} message has an invalid payload length of {len} bytes")]
    PayloadLength {
        /// The message whose payload was wrong.
        kind: MessageKind,
        /// The payload length found (excluding the id byte).
        len: usize,
    },
    /// [`Decoder::next_message`] was called before the handshake had been taken with
    /// [`Decoder::next_event`]. A caller bug, not a peer's; the decoder state is unchanged.
    #[error("the handshake has not been decoded yet")]
    HandshakePending,
}

impl WireError {
    /// Whether the stream can no longer be decoded (the connection should be closed).
    ///
    /// Unknown message ids and bad payload lengths are not fatal: the frame boundaries are
    /// intact, so a lenient caller may skip them.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            WireError::UnknownMessage(_)
                | WireError::PayloadLength { .. }
                | WireError::HandshakePending
        )
    }
}
