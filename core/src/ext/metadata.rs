//! BEP 9 `ut_metadata`: fetching the info dictionary from peers.

use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::{ExtError, LIMITS};
use crate::bencode::{decode_prefix_with, write_bytes, write_int, Value};
use crate::id::InfoHash;
use crate::wire::Message;

/// Size of every metadata piece but the last.
pub const METADATA_PIECE_LEN: u32 = 16 * 1024;
/// Largest metadata (info dictionary) accepted: 16 MiB, i.e. 1024 pieces. That fits the info
/// dictionary of a torrent with ~800 000 pieces.
pub const MAX_METADATA_SIZE: u32 = 16 * 1024 * 1024;

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

/// A `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetadataMessage {
    /// Asks for a piece of the metadata.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// A piece of the metadata.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole metadata.
        total_size: u32,
        /// The piece: 16 KiB, or less for the last one.
        data: Bytes,
    },
    /// The sender will not serve this piece.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

impl MetadataMessage {
    /// Decodes an extension payload. `Data` bytes are a slice of `payload` (no copy).
    ///
    /// Unknown keys, and trailing bytes after a request or reject, are ignored. A data message
    /// must carry at most one 16 KiB piece and a `total_size` within [`MAX_METADATA_SIZE`].
    pub fn decode(payload: &Bytes) -> Result<Self, ExtError> {
        let (value, used) = decode_prefix_with(payload, LIMITS)?;
        if value.as_dict().is_none() {
            return Err(ExtError::NotADict);
        }
        let int = |k: &'static str| {
            value
                .get(k.as_bytes())
                .and_then(Value::as_int)
                .ok_or(ExtError::Field(k))
        };
        let msg_type = int("msg_type")?;
        let piece = u32::try_from(int("piece")?).map_err(|_| ExtError::Field("piece"))?;
        match msg_type {
            MSG_REQUEST => Ok(MetadataMessage::Request { piece }),
            MSG_REJECT => Ok(MetadataMessage::Reject { piece }),
            MSG_DATA => {
                let size = int("total_size")?;
                let total_size = u32::try_from(size)
                    .ok()
                    .filter(|&s| s > 0 && s <= MAX_METADATA_SIZE)
                    .ok_or(ExtError::MetadataSize {
                        size,
                        max: MAX_METADATA_SIZE,
                    })?;
                let data = payload.slice(used..);
                if data.len() > METADATA_PIECE_LEN as usize {
                    return Err(ExtError::DataTooLong(data.len()));
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data,
                })
            }
            other => Err(ExtError::UnknownMsgType(other)),
        }
    }

    /// The payload: a canonical bencoded dictionary, followed by the data for `Data`.
    pub fn encode(&self) -> Bytes {
        let mut dict = Vec::with_capacity(48);
        dict.push(b'd');
        write_bytes(&mut dict, b"msg_type");
        let (kind, piece) = match self {
            MetadataMessage::Request { piece } => (MSG_REQUEST, piece),
            MetadataMessage::Data { piece, .. } => (MSG_DATA, piece),
            MetadataMessage::Reject { piece } => (MSG_REJECT, piece),
        };
        write_int(&mut dict, kind);
        write_bytes(&mut dict, b"piece");
        write_int(&mut dict, i64::from(*piece));
        let data: &[u8] = match self {
            MetadataMessage::Data {
                total_size, data, ..
            } => {
                write_bytes(&mut dict, b"total_size");
                write_int(&mut dict, i64::from(*total_size));
                data
            }
            _ => &[],
        };
        dict.push(b'e');
        if data.is_empty() {
            return Bytes::from(dict);
        }
        let mut out = BytesMut::with_capacity(dict.len() + data.len());
        out.put_slice(&dict);
        out.put_slice(data);
        out.freeze()
    }

    /// The wire message, sent with the receiver's `ut_metadata` id.
    pub fn to_message(&self, id: u8) -> Message {
        Message::Extended {
            id,
            payload: self.encode(),
        }
    }

    /// The piece this message is about.
    pub fn piece(&self) -> u32 {
        match self {
            MetadataMessage::Request { piece }
            | MetadataMessage::Data { piece, .. }
            | MetadataMessage::Reject { piece } => *piece,
        }
    }
}

/// Answers a request for `piece` of the complete metadata `info`: the `Data` message (sliced
/// from `info`, no copy) or a `Reject` if the piece does not exist or `info` is empty or larger
/// than [`MAX_METADATA_SIZE`].
pub fn serve_metadata_piece(info: &Bytes, piece: u32) -> MetadataMessage {
    let reject = MetadataMessage::Reject { piece };
    let Ok(total_size) = u32::try_from(info.len()) else {
        return reject;
    };
    if total_size == 0 || total_size > MAX_METADATA_SIZE {
        return reject;
    }
    let Some(start) = piece.checked_mul(METADATA_PIECE_LEN) else {
        return reject;
    };
    if start >= total_size {
        return reject;
    }
    let end = total_size.min(start + METADATA_PIECE_LEN);
    MetadataMessage::Data {
        piece,
        total_size,
        data: info.slice(start as usize..end as usize),
    }
}

/// The SHA-1 of complete metadata: the v1 info hash it must match.
pub fn metadata_hash(metadata: &[u8]) -> InfoHash {
    InfoHash::new(Sha1::digest(metadata).into())
}

/// Errors from assembling metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The announced size is 0 or above [`MAX_METADATA_SIZE`].
    #[error("metadata size {0} is outside 1..={max}", max = MAX_METADATA_SIZE)]
    Size(u32),
    /// A piece index past the end.
    #[error("metadata piece {piece} out of range ({count} pieces)")]
    PieceOutOfRange {
        /// The index received.
        piece: u32,
        /// Number of pieces.
        count: u32,
    },
    /// A piece of the wrong length (all but the last must be 16 KiB).
    #[error("metadata piece {piece} is {got} bytes, expected {expected}")]
    PieceLength {
        /// The index received.
        piece: u32,
        /// Length required.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// A data message whose `total_size` differs from the size being assembled.
    #[error("metadata total_size {got} differs from the expected {expected}")]
    TotalSize {
        /// Size being assembled.
        expected: u32,
        /// Size in the message.
        got: u32,
    },
    /// All pieces arrived but their SHA-1 is not the info hash. The assembler was reset.
    #[error("metadata does not match the info hash")]
    HashMismatch,
}

/// Collects `ut_metadata` pieces and verifies them against the info hash.
///
/// Memory is bounded by the size given to [`new`](Self::new) (at most [`MAX_METADATA_SIZE`])
/// and allocated when the first piece arrives.
#[derive(Debug, Clone)]
pub struct MetadataAssembler {
    info_hash: InfoHash,
    size: u32,
    buf: Vec<u8>,
    have: Vec<bool>,
    remaining: u32,
    done: Option<Bytes>,
}

impl MetadataAssembler {
    /// Starts assembling `size` bytes (the `metadata_size` a peer announced) for `info_hash`.
    pub fn new(info_hash: InfoHash, size: u32) -> Result<Self, MetadataError> {
        if size == 0 || size > MAX_METADATA_SIZE {
            return Err(MetadataError::Size(size));
        }
        let count = size.div_ceil(METADATA_PIECE_LEN);
        Ok(MetadataAssembler {
            info_hash,
            size,
            buf: Vec::new(),
            have: vec![false; count as usize],
            remaining: count,
            done: None,
        })
    }

    /// The info hash the metadata must match.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The metadata size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of 16 KiB pieces (the last may be shorter).
    pub fn piece_count(&self) -> u32 {
        self.have.len() as u32
    }

    /// Length of `piece`, if it exists.
    pub fn piece_len(&self, piece: u32) -> Option<usize> {
        let start = piece.checked_mul(METADATA_PIECE_LEN)?;
        (start < self.size).then(|| (self.size - start).min(METADATA_PIECE_LEN) as usize)
    }

    /// Whether `piece` has been received (in the current attempt).
    pub fn has_piece(&self, piece: u32) -> bool {
        self.done.is_some() || self.have.get(piece as usize).copied().unwrap_or(false)
    }

    /// Pieces still to fetch, in order.
    pub fn missing_pieces(&self) -> impl Iterator<Item = u32> + '_ {
        let have: &[bool] = if self.done.is_some() { &[] } else { &self.have };
        have.iter()
            .enumerate()
            .filter(|(_, &h)| !h)
            .map(|(i, _)| i as u32)
    }

    /// Whether the metadata was assembled and verified.
    pub fn is_complete(&self) -> bool {
        self.done.is_some()
    }

    /// The verified metadata, once complete.
    pub fn metadata(&self) -> Option<&Bytes> {
        self.done.as_ref()
    }

    /// Forgets every received piece (e.g. to start over with other peers).
    pub fn reset(&mut self) {
        self.have.iter_mut().for_each(|h| *h = false);
        self.remaining = self.piece_count();
        self.done = None;
    }

    /// Stores a received piece. Returns the verified metadata when this piece completed it
    /// (exactly once), `Ok(None)` otherwise, including for pieces arriving after completion.
    ///
    /// A piece already held is overwritten. If the complete metadata does not hash to the info
    /// hash, everything is discarded and [`MetadataError::HashMismatch`] returned, so the
    /// pieces can be fetched again from other peers.
    pub fn add_piece(
        &mut self,
        piece: u32,
        total_size: u32,
        data: &[u8],
    ) -> Result<Option<Bytes>, MetadataError> {
        if self.done.is_some() {
            return Ok(None);
        }
        if total_size != self.size {
            return Err(MetadataError::TotalSize {
                expected: self.size,
                got: total_size,
            });
        }
        let expected = self
            .piece_len(piece)
            .ok_or(MetadataError::PieceOutOfRange {
                piece,
                count: self.piece_count(),
            })?;
        if data.len() != expected {
            return Err(MetadataError::PieceLength {
                piece,
                expected,
                got: data.len(),
            });
        }
        if self.buf.is_empty() {
            self.buf = vec![0; self.size as usize];
        }
        let start = piece as usize * METADATA_PIECE_LEN as usize;
        self.buf[start..start + expected].copy_from_slice(data);
        if let Some(h) = self.have.get_mut(piece as usize) {
            if !*h {
                *h = true;
                self.remaining -= 1;
            }
        }
        if self.remaining > 0 {
            return Ok(None);
        }
        if metadata_hash(&self.buf) != self.info_hash {
            self.reset();
            return Err(MetadataError::HashMismatch);
        }
        let metadata = Bytes::from(std::mem::take(&mut self.buf));
        self.done = Some(metadata.clone());
        Ok(Some(metadata))
    }

    /// [`add_piece`](Self::add_piece) for a `Data` message; requests and rejects are ignored.
    pub fn add_message(&mut self, msg: &MetadataMessage) -> Result<Option<Bytes>, MetadataError> {
        match msg {
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => self.add_piece(*piece, *total_size, data),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id20;

    fn info(len: usize) -> (Bytes, InfoHash) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let hash = Id20(Sha1::digest(&data).into());
        (Bytes::from(data), hash)
    }

    #[test]
    fn decodes_bep9_examples() {
        let req = Bytes::from_static(b"d8:msg_typei0e5:piecei0ee");
        assert_eq!(
            MetadataMessage::decode(&req).unwrap(),
            MetadataMessage::Request { piece: 0 }
        );
        let data = Bytes::from_static(b"d8:msg_typei1e5:piecei0e10:total_sizei8eexxxxxxxx");
        let msg = MetadataMessage::decode(&data).unwrap();
        assert_eq!(
            msg,
            MetadataMessage::Data {
                piece: 0,
                total_size: 8,
                data: Bytes::from_static(b"xxxxxxxx")
            }
        );
        assert_eq!(msg.encode(), data);
        if let MetadataMessage::Data { data: d, .. } = &msg {
            // Zero copy: the data points into the payload.
            assert_eq!(d.as_ptr(), data[data.len() - 8..].as_ptr());
        }
        let rej = Bytes::from_static(b"d8:msg_typei2e5:piecei3ee");
        assert_eq!(
            MetadataMessage::decode(&rej).unwrap(),
            MetadataMessage::Reject { piece: 3 }
        );
        assert_eq!(MetadataMessage::decode(&rej).unwrap().encode(), rej);
        assert_eq!(MetadataMessage::decode(&rej).unwrap().piece(), 3);
    }

    #[test]
    fn rejects_bad_metadata_messages() {
        let cases: &[(&[u8], ExtError)] = &[
            (b"d5:piecei0ee", ExtError::Field("msg_type")),
            (b"d8:msg_typei0ee", ExtError::Field("piece")),
            (b"d8:msg_typei0e5:piecei-1ee", ExtError::Field("piece")),
            (b"d8:msg_typei0e5:piece1:0e", ExtError::Field("piece")),
            (b"d8:msg_typei1e5:piecei0ee", ExtError::Field("total_size")),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei0ee",
                ExtError::MetadataSize {
                    size: 0,
                    max: MAX_METADATA_SIZE,
                },
            ),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei16777217ee",
                ExtError::MetadataSize {
                    size: 16_777_217,
                    max: MAX_METADATA_SIZE,
                },
            ),
            (b"d8:msg_typei3e5:piecei0ee", ExtError::UnknownMsgType(3)),
            (b"i1e", ExtError::NotADict),
        ];
        for (input, err) in cases {
            assert_eq!(
                MetadataMessage::decode(&Bytes::copy_from_slice(input)).as_ref(),
                Err(err),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        long.extend_from_slice(&[0; 16385]);
        assert_eq!(
            MetadataMessage::decode(&Bytes::from(long)),
            Err(ExtError::DataTooLong(16385))
        );
        assert!(matches!(
            MetadataMessage::decode(&Bytes::from_static(b"d8:msg_type")),
            Err(ExtError::Bencode(_))
        ));
        // Trailing bytes after a request are tolerated.
        assert_eq!(
            MetadataMessage::decode(&Bytes::from_static(b"d8:msg_typei0e5:piecei1eeXX")),
            Ok(MetadataMessage::Request { piece: 1 })
        );
    }

    #[test]
    fn assembles_and_verifies() {
        let (full, hash) = info(40_000);
        let mut a = MetadataAssembler::new(hash, 40_000).unwrap();
        assert_eq!(a.piece_count(), 3);
        assert_eq!(a.piece_len(2), Some(40_000 - 32_768));
        assert_eq!(a.piece_len(3), None);
        assert_eq!(a.missing_pieces().collect::<Vec<_>>(), vec![0, 1, 2]);

        // Out of order, with a duplicate.
        for p in [2u32, 0, 0] {
            let msg = serve_metadata_piece(&full, p);
            assert_eq!(a.add_message(&msg), Ok(None));
        }
        assert!(a.has_piece(0) && !a.has_piece(1) && a.has_piece(2));
        assert_eq!(a.missing_pieces().collect::<Vec<_>>(), vec![1]);
        let got = a.add_message(&serve_metadata_piece(&full, 1)).unwrap();
        assert_eq!(got.as_ref(), Some(&full));
        assert!(a.is_complete());
        assert_eq!(a.metadata(), Some(&full));
        assert_eq!(a.missing_pieces().count(), 0);
        // Late pieces after completion are ignored.
        assert_eq!(a.add_message(&serve_metadata_piece(&full, 1)), Ok(None));
        assert_eq!(
            a.add_message(&MetadataMessage::Reject { piece: 0 }),
            Ok(None)
        );
    }

    #[test]
    fn exact_multiple_and_single_piece() {
        let (full, hash) = info(32_768);
        let mut a = MetadataAssembler::new(hash, 32_768).unwrap();
        assert_eq!(a.piece_count(), 2);
        assert_eq!(a.piece_len(1), Some(16_384));
        assert_eq!(a.add_message(&serve_metadata_piece(&full, 0)), Ok(None));
        assert_eq!(
            a.add_message(&serve_metadata_piece(&full, 1)),
            Ok(Some(full))
        );

        let (full, hash) = info(1);
        let mut a = MetadataAssembler::new(hash, 1).unwrap();
        assert_eq!(a.add_piece(0, 1, &full), Ok(Some(full)));
    }

    #[test]
    fn hash_mismatch_resets() {
        let (full, hash) = info(20_000);
        let mut a = MetadataAssembler::new(hash, 20_000).unwrap();
        let mut bad = full[16_384..].to_vec();
        bad[0] ^= 1;
        assert_eq!(a.add_piece(1, 20_000, &bad), Ok(None));
        assert_eq!(
            a.add_piece(0, 20_000, &full[..16_384]),
            Err(MetadataError::HashMismatch)
        );
        assert!(!a.is_complete());
        assert_eq!(a.missing_pieces().collect::<Vec<_>>(), vec![0, 1]);
        // Refetch from an honest peer.
        assert_eq!(a.add_piece(1, 20_000, &full[16_384..]), Ok(None));
        assert_eq!(a.add_piece(0, 20_000, &full[..16_384]), Ok(Some(full)));
    }

    #[test]
    fn rejects_bad_pieces() {
        let (full, hash) = info(20_000);
        assert_eq!(
            MetadataAssembler::new(hash, 0).unwrap_err(),
            MetadataError::Size(0)
        );
        assert_eq!(
            MetadataAssembler::new(hash, MAX_METADATA_SIZE + 1).unwrap_err(),
            MetadataError::Size(MAX_METADATA_SIZE + 1)
        );
        let mut a = MetadataAssembler::new(hash, 20_000).unwrap();
        assert_eq!(
            a.add_piece(2, 20_000, &[]),
            Err(MetadataError::PieceOutOfRange { piece: 2, count: 2 })
        );
        assert_eq!(
            a.add_piece(u32::MAX, 20_000, &[]),
            Err(MetadataError::PieceOutOfRange {
                piece: u32::MAX,
                count: 2
            })
        );
        assert_eq!(
            a.add_piece(0, 20_000, &full[..100]),
            Err(MetadataError::PieceLength {
                piece: 0,
                expected: 16_384,
                got: 100
            })
        );
        assert_eq!(
            a.add_piece(1, 20_000, &full[..16_384]),
            Err(MetadataError::PieceLength {
                piece: 1,
                expected: 20_000 - 16_384,
                got: 16_384
            })
        );
        assert_eq!(
            a.add_piece(0, 19_999, &full[..16_384]),
            Err(MetadataError::TotalSize {
                expected: 20_000,
                got: 19_999
            })
        );
        assert_eq!(a.missing_pieces().count(), 2, "errors leave state alone");
    }

    #[test]
    fn serving_rejects_missing_pieces() {
        let (full, _) = info(20_000);
        match serve_metadata_piece(&full, 1) {
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                assert_eq!(
                    (piece, total_size, data.len()),
                    (1, 20_000, 20_000 - 16_384)
                );
                assert_eq!(data.as_ptr(), full[16_384..].as_ptr());
            }
            other => panic!("{other:?}"),
        }
        for p in [2, u32::MAX / 2, u32::MAX] {
            assert_eq!(
                serve_metadata_piece(&full, p),
                MetadataMessage::Reject { piece: p }
            );
        }
        assert_eq!(
            serve_metadata_piece(&Bytes::new(), 0),
            MetadataMessage::Reject { piece: 0 }
        );
        let msg = serve_metadata_piece(&full, 0).to_message(3);
        assert!(matches!(msg, Message::Extended { id: 3, .. }));
    }
}
