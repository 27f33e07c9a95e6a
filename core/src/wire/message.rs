//! Length-prefixed peer messages (BEP 3, BEP 6, BEP 10 envelope).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WireError;

/// The usual block size: requests larger than this are commonly refused.
pub const BLOCK_LEN: u32 = 16 * 1024;
/// Bytes before a piece message's block: length prefix (4), id (1), index (4), begin (4).
pub const PIECE_HEADER_LEN: usize = 13;
/// The largest payload (after the id byte, and for `Piece` / `Extended` after their own
/// headers) that fits a 32-bit frame length. Encoding a larger one panics.
pub const MAX_PAYLOAD_LEN: usize = u32::MAX as usize - 9;

mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST_PIECE: u8 = 0x0d;
    pub const HAVE_ALL: u8 = 0x0e;
    pub const HAVE_NONE: u8 = 0x0f;
    pub const REJECT_REQUEST: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    pub const EXTENDED: u8 = 20;
}

/// A request for (or cancellation / rejection of) one block of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRequest {
    /// Piece index.
    pub index: u32,
    /// Byte offset inside the piece.
    pub begin: u32,
    /// Block length in bytes.
    pub length: u32,
}

impl BlockRequest {
    /// Builds a request.
    pub const fn new(index: u32, begin: u32, length: u32) -> Self {
        BlockRequest {
            index,
            begin,
            length,
        }
    }

    fn parse(p: &[u8]) -> Option<Self> {
        Some(BlockRequest {
            index: be32(p.get(0..4)?)?,
            begin: be32(p.get(4..8)?)?,
            length: be32(p.get(8..12)?)?,
        })
    }

    fn put(&self, out: &mut BytesMut) {
        out.put_u32(self.index);
        out.put_u32(self.begin);
        out.put_u32(self.length);
    }
}

/// A peer wire message (everything after the handshake).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A zero-length frame.
    KeepAlive,
    /// The sender will not serve requests.
    Choke,
    /// The sender will serve requests.
    Unchoke,
    /// The sender wants pieces from the receiver.
    Interested,
    /// The sender wants nothing from the receiver.
    NotInterested,
    /// The sender has completed a piece.
    Have {
        /// Piece index.
        piece: u32,
    },
    /// The pieces the sender has, high bit of the first byte is piece 0.
    Bitfield(Bytes),
    /// Asks for a block.
    Request(BlockRequest),
    /// A block of data.
    Piece {
        /// Piece index.
        index: u32,
        /// Byte offset inside the piece.
        begin: u32,
        /// The block.
        data: Bytes,
    },
    /// Withdraws a request.
    Cancel(BlockRequest),
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// BEP 6: the receiver might like this piece.
    SuggestPiece(u32),
    /// BEP 6: the sender has every piece.
    HaveAll,
    /// BEP 6: the sender has no piece.
    HaveNone,
    /// BEP 6: the sender will not serve this request.
    RejectRequest(BlockRequest),
    /// BEP 6: the receiver may request this piece even while choked.
    AllowedFast(u32),
    /// BEP 10: an extension message; `id` 0 is the extension handshake.
    Extended {
        /// Extension message id (as assigned by the receiver's extension handshake).
        id: u8,
        /// The extension's payload.
        payload: Bytes,
    },
}

/// The kind of a [`Message`], without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum MessageKind {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have,
    Bitfield,
    Request,
    Piece,
    Cancel,
    Port,
    SuggestPiece,
    HaveAll,
    HaveNone,
    RejectRequest,
    AllowedFast,
    Extended,
}

impl MessageKind {
    /// The message id byte, or `None` for keep-alive (which has none).
    pub fn id(self) -> Option<u8> {
        use MessageKind as K;
        Some(match self {
            K::KeepAlive => return None,
            K::Choke => id::CHOKE,
            K::Unchoke => id::UNCHOKE,
            K::Interested => id::INTERESTED,
            K::NotInterested => id::NOT_INTERESTED,
            K::Have => id::HAVE,
            K::Bitfield => id::BITFIELD,
            K::Request => id::REQUEST,
            K::Piece => id::PIECE,
            K::Cancel => id::CANCEL,
            K::Port => id::PORT,
            K::SuggestPiece => id::SUGGEST_PIECE,
            K::HaveAll => id::HAVE_ALL,
            K::HaveNone => id::HAVE_NONE,
            K::RejectRequest => id::REJECT_REQUEST,
            K::AllowedFast => id::ALLOWED_FAST,
            K::Extended => id::EXTENDED,
        })
    }

    /// The kind with message id `id`, if known.
    pub fn from_id(id: u8) -> Option<Self> {
        use MessageKind as K;
        Some(match id {
            id::CHOKE => K::Choke,
            id::UNCHOKE => K::Unchoke,
            id::INTERESTED => K::Interested,
            id::NOT_INTERESTED => K::NotInterested,
            id::HAVE => K::Have,
            id::BITFIELD => K::Bitfield,
            id::REQUEST => K::Request,
            id::PIECE => K::Piece,
            id::CANCEL => K::Cancel,
            id::PORT => K::Port,
            id::SUGGEST_PIECE => K::SuggestPiece,
            id::HAVE_ALL => K::HaveAll,
            id::HAVE_NONE => K::HaveNone,
            id::REJECT_REQUEST => K::RejectRequest,
            id::ALLOWED_FAST => K::AllowedFast,
            id::EXTENDED => K::Extended,
            _ => return None,
        })
    }

    /// Whether this message belongs to the BEP 6 fast extension.
    pub fn is_fast_extension(self) -> bool {
        matches!(
            self,
            MessageKind::SuggestPiece
                | MessageKind::HaveAll
                | MessageKind::HaveNone
                | MessageKind::RejectRequest
                | MessageKind::AllowedFast
        )
    }

    fn name(self) -> &'static str {
        use MessageKind as K;
        match self {
            K::KeepAlive => "keep-alive",
            K::Choke => "choke",
            K::Unchoke => "unchoke",
            K::Interested => "interested",
            K::NotInterested => "not interested",
            K::Have => "have",
            K::Bitfield => "bitfield",
            K::Request => "request",
            K::Piece => "piece",
            K::Cancel => "cancel",
            K::Port => "port",
            K::SuggestPiece => "suggest piece",
            K::HaveAll => "have all",
            K::HaveNone => "have none",
            K::RejectRequest => "reject request",
            K::AllowedFast => "allowed fast",
            K::Extended => "extended",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// The 13 bytes preceding a block in a piece message, so a driver can write header and block
/// (`Bytes`) vectored without copying the block.
///
/// # Panics
/// If `block_len` exceeds [`MAX_PAYLOAD_LEN`] (impossible for a real block).
pub fn encode_piece_header(index: u32, begin: u32, block_len: u32) -> [u8; PIECE_HEADER_LEN] {
    assert!(
        block_len as usize <= MAX_PAYLOAD_LEN,
        "piece block too large to encode"
    );
    let mut h = [0u8; PIECE_HEADER_LEN];
    h[0..4].copy_from_slice(&(block_len + 9).to_be_bytes());
    h[4] = id::PIECE;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

impl Message {
    /// The kind of this message.
    pub fn kind(&self) -> MessageKind {
        use MessageKind as K;
        match self {
            Message::KeepAlive => K::KeepAlive,
            Message::Choke => K::Choke,
            Message::Unchoke => K::Unchoke,
            Message::Interested => K::Interested,
            Message::NotInterested => K::NotInterested,
            Message::Have { .. } => K::Have,
            Message::Bitfield(_) => K::Bitfield,
            Message::Request(_) => K::Request,
            Message::Piece { .. } => K::Piece,
            Message::Cancel(_) => K::Cancel,
            Message::Port(_) => K::Port,
            Message::SuggestPiece(_) => K::SuggestPiece,
            Message::HaveAll => K::HaveAll,
            Message::HaveNone => K::HaveNone,
            Message::RejectRequest(_) => K::RejectRequest,
            Message::AllowedFast(_) => K::AllowedFast,
            Message::Extended { .. } => K::Extended,
        }
    }

    /// The frame length: the value of the 4-byte length prefix (id byte plus payload).
    fn frame_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have { .. } | Message::SuggestPiece(_) | Message::AllowedFast(_) => 5,
            Message::Port(_) => 3,
            Message::Request(_) | Message::Cancel(_) | Message::RejectRequest(_) => 13,
            Message::Bitfield(b) => 1 + b.len(),
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
        }
    }

    /// Bytes [`encode`](Self::encode) appends, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self.frame_len()
    }

    /// Appends the length-prefixed message to `out` (reserving the space first).
    ///
    /// For piece messages this copies the block; use [`encode_piece_header`] to avoid that.
    ///
    /// # Panics
    /// If a `Bitfield`, `Piece` or `Extended` payload is longer than [`MAX_PAYLOAD_LEN`]: such a
    /// frame cannot be expressed on the wire. Messages built by the decoder never are.
    pub fn encode(&self, out: &mut BytesMut) {
        let frame_len = self.frame_len();
        let prefix = u32::try_from(frame_len).expect("message too large to encode");
        out.reserve(4 + frame_len);
        out.put_u32(prefix);
        let Some(id) = self.kind().id() else {
            return;
        };
        out.put_u8(id);
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have { piece: n } | Message::SuggestPiece(n) | Message::AllowedFast(n) => {
                out.put_u32(*n)
            }
            Message::Port(p) => out.put_u16(*p),
            Message::Request(r) | Message::Cancel(r) | Message::RejectRequest(r) => r.put(out),
            Message::Bitfield(b) => out.put_slice(b),
            Message::Piece { index, begin, data } => {
                out.put_u32(*index);
                out.put_u32(*begin);
                out.put_slice(data);
            }
            Message::Extended { id, payload } => {
                out.put_u8(*id);
                out.put_slice(payload);
            }
        }
    }

    /// The encoded message as `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes one frame: the bytes after the 4-byte length prefix (id byte then payload).
    /// An empty frame is a keep-alive. Variable-size payloads are sliced from `frame`, not
    /// copied.
    pub fn from_frame(mut frame: Bytes) -> Result<Message, WireError> {
        let Some(&id) = frame.first() else {
            return Ok(Message::KeepAlive);
        };
        match id {
            id::BITFIELD => {
                frame.advance(1);
                Ok(Message::Bitfield(frame))
            }
            id::PIECE => {
                let (index, begin) = piece_fields(&frame).ok_or(WireError::PayloadLength {
                    kind: MessageKind::Piece,
                    len: frame.len() - 1,
                })?;
                frame.advance(9);
                Ok(Message::Piece {
                    index,
                    begin,
                    data: frame,
                })
            }
            id::EXTENDED => {
                let ext = *frame.get(1).ok_or(WireError::PayloadLength {
                    kind: MessageKind::Extended,
                    len: 0,
                })?;
                frame.advance(2);
                Ok(Message::Extended {
                    id: ext,
                    payload: frame,
                })
            }
            _ => decode_fixed(id, &frame[1..]),
        }
    }
}

/// `(index, begin)` from a piece frame (id byte included), if it is long enough.
fn piece_fields(frame: &[u8]) -> Option<(u32, u32)> {
    Some((be32(frame.get(1..5)?)?, be32(frame.get(5..9)?)?))
}

/// Decodes a message whose payload has a fixed size (everything but bitfield, piece and
/// extended, for which it returns a `PayloadLength` error).
pub(super) fn decode_fixed(id: u8, payload: &[u8]) -> Result<Message, WireError> {
    let kind = MessageKind::from_id(id).ok_or(WireError::UnknownMessage(id))?;
    let bad = || WireError::PayloadLength {
        kind,
        len: payload.len(),
    };
    let empty = |m: Message| {
        if payload.is_empty() {
            Ok(m)
        } else {
            Err(bad())
        }
    };
    let word = || match payload {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(bad()),
    };
    let request = || {
        if payload.len() == 12 {
            BlockRequest::parse(payload).ok_or_else(bad)
        } else {
            Err(bad())
        }
    };
    match kind {
        MessageKind::Choke => empty(Message::Choke),
        MessageKind::Unchoke => empty(Message::Unchoke),
        MessageKind::Interested => empty(Message::Interested),
        MessageKind::NotInterested => empty(Message::NotInterested),
        MessageKind::HaveAll => empty(Message::HaveAll),
        MessageKind::HaveNone => empty(Message::HaveNone),
        MessageKind::Have => word().map(|piece| Message::Have { piece }),
        MessageKind::SuggestPiece => word().map(Message::SuggestPiece),
        MessageKind::AllowedFast => word().map(Message::AllowedFast),
        MessageKind::Port => match payload {
            [a, b] => Ok(Message::Port(u16::from_be_bytes([*a, *b]))),
            _ => Err(bad()),
        },
        MessageKind::Request => request().map(Message::Request),
        MessageKind::Cancel => request().map(Message::Cancel),
        MessageKind::RejectRequest => request().map(Message::RejectRequest),
        MessageKind::KeepAlive
        | MessageKind::Bitfield
        | MessageKind::Piece
        | MessageKind::Extended => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(m: &Message) -> Bytes {
        let mut b = m.to_bytes();
        b.advance(4);
        b
    }

    #[test]
    fn exact_encodings() {
        let r = BlockRequest::new(1, 0x4000, 0x4000);
        let cases: Vec<(Message, &[u8])> = vec![
            (Message::KeepAlive, &[0, 0, 0, 0]),
            (Message::Choke, &[0, 0, 0, 1, 0]),
            (Message::Unchoke, &[0, 0, 0, 1, 1]),
            (Message::Interested, &[0, 0, 0, 1, 2]),
            (Message::NotInterested, &[0, 0, 0, 1, 3]),
            (
                Message::Have { piece: 0x01020304 },
                &[0, 0, 0, 5, 4, 1, 2, 3, 4],
            ),
            (
                Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
                &[0, 0, 0, 3, 5, 0xff, 0x80],
            ),
            (
                Message::Request(r),
                &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece {
                    index: 2,
                    begin: 3,
                    data: Bytes::from_static(b"xy"),
                },
                &[0, 0, 0, 11, 7, 0, 0, 0, 2, 0, 0, 0, 3, b'x', b'y'],
            ),
            (
                Message::Cancel(r),
                &[0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::Port(6881), &[0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (Message::SuggestPiece(7), &[0, 0, 0, 5, 13, 0, 0, 0, 7]),
            (Message::HaveAll, &[0, 0, 0, 1, 14]),
            (Message::HaveNone, &[0, 0, 0, 1, 15]),
            (
                Message::RejectRequest(r),
                &[0, 0, 0, 13, 16, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::AllowedFast(9), &[0, 0, 0, 5, 17, 0, 0, 0, 9]),
            (
                Message::Extended {
                    id: 0,
                    payload: Bytes::from_static(b"de"),
                },
                &[0, 0, 0, 4, 20, 0, b'd', b'e'],
            ),
        ];
        for (m, wire) in cases {
            let enc = m.to_bytes();
            assert_eq!(&enc[..], wire, "{m:?}");
            assert_eq!(m.encoded_len(), wire.len());
            assert_eq!(Message::from_frame(frame_of(&m)).unwrap(), m);
            assert_eq!(
                MessageKind::from_id(wire.get(4).copied().unwrap_or(99)),
                m.kind().id().and(Some(m.kind()))
            );
        }
    }

    #[test]
    fn piece_header_matches_encode() {
        let data = Bytes::from(vec![7u8; 16384]);
        let m = Message::Piece {
            index: 42,
            begin: 16384,
            data: data.clone(),
        };
        let enc = m.to_bytes();
        let h = encode_piece_header(42, 16384, 16384);
        assert_eq!(&enc[..PIECE_HEADER_LEN], &h);
        assert_eq!(&enc[PIECE_HEADER_LEN..], &data[..]);
    }

    #[test]
    fn wrong_payload_lengths_name_the_message() {
        let cases: &[(&[u8], MessageKind, usize)] = &[
            (&[0, 1], MessageKind::Choke, 1),
            (&[1, 1, 2], MessageKind::Unchoke, 2),
            (&[2, 0], MessageKind::Interested, 1),
            (&[3, 0], MessageKind::NotInterested, 1),
            (&[4, 0, 0, 0], MessageKind::Have, 3),
            (&[4, 0, 0, 0, 0, 0], MessageKind::Have, 5),
            (
                &[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                MessageKind::Request,
                11,
            ),
            (&[7, 0, 0, 0, 0, 0, 0, 0], MessageKind::Piece, 7),
            (&[7], MessageKind::Piece, 0),
            (&[8; 14], MessageKind::Cancel, 13),
            (&[9, 1], MessageKind::Port, 1),
            (&[9, 1, 2, 3], MessageKind::Port, 3),
            (&[13], MessageKind::SuggestPiece, 0),
            (&[14, 0], MessageKind::HaveAll, 1),
            (&[15, 0], MessageKind::HaveNone, 1),
            (&[16, 0], MessageKind::RejectRequest, 1),
            (&[17, 0, 0], MessageKind::AllowedFast, 2),
            (&[20], MessageKind::Extended, 0),
        ];
        for &(frame, kind, len) in cases {
            let err = Message::from_frame(Bytes::copy_from_slice(frame)).unwrap_err();
            assert_eq!(err, WireError::PayloadLength { kind, len }, "{frame:?}");
            assert!(!err.is_fatal());
            assert!(err.to_string().contains(&kind.to_string()));
        }
    }

    #[test]
    fn unknown_ids_carry_the_id() {
        for id in [10u8, 11, 12, 18, 19, 21, 0xff] {
            assert_eq!(
                Message::from_frame(Bytes::copy_from_slice(&[id, 1, 2])),
                Err(WireError::UnknownMessage(id))
            );
        }
        for id in 0..=255u8 {
            match MessageKind::from_id(id) {
                Some(k) => assert_eq!(k.id(), Some(id)),
                None => assert!(Message::from_frame(Bytes::copy_from_slice(&[id])).is_err()),
            }
        }
    }

    #[test]
    fn empty_payloads_are_allowed_where_variable() {
        assert_eq!(
            Message::from_frame(Bytes::from_static(&[5])).unwrap(),
            Message::Bitfield(Bytes::new())
        );
        assert_eq!(
            Message::from_frame(Bytes::from_static(&[7, 0, 0, 0, 1, 0, 0, 0, 2])).unwrap(),
            Message::Piece {
                index: 1,
                begin: 2,
                data: Bytes::new()
            }
        );
        assert_eq!(
            Message::from_frame(Bytes::from_static(&[20, 3])).unwrap(),
            Message::Extended {
                id: 3,
                payload: Bytes::new()
            }
        );
        assert_eq!(
            Message::from_frame(Bytes::new()).unwrap(),
            Message::KeepAlive
        );
    }

    #[test]
    fn fast_extension_kinds() {
        assert!(MessageKind::HaveAll.is_fast_extension());
        assert!(MessageKind::RejectRequest.is_fast_extension());
        assert!(!MessageKind::Piece.is_fast_extension());
        assert!(!MessageKind::Extended.is_fast_extension());
    }
}
