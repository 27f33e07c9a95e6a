//! The incremental, zero-copy wire decoder.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use super::handshake::{Handshake, HandshakeHeader, HANDSHAKE_HEADER_LEN, HANDSHAKE_LEN};
use super::message::{decode_fixed, Message};
use super::WireError;
use crate::id::Id20;

/// Default [`Decoder`] frame limit: 1 MiB plus a piece message header.
///
/// A frame is the message id plus payload (the value of the 4-byte length prefix). 1 MiB fits a
/// bitfield for 8 million pieces and any sane extension message; a 16 KiB block needs only
/// 16 KiB + 9. Callers that want stricter per-message limits (e.g. refusing piece messages over
/// 16 KiB + 9) apply them to the decoded message.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 1024 * 1024 + 13;

/// Incomplete frames up to this size are reserved in full as soon as their length prefix is in,
/// so a block arrives into one allocation. Larger ones grow as their bytes come.
const MAX_PRERESERVE: usize = 128 * 1024;

/// Where a [`Decoder`] is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting for the first 48 handshake bytes (protocol, reserved bits, info hash).
    HandshakeHeader,
    /// Header taken; waiting for the remote's 20-byte peer id.
    HandshakePeerId,
    /// Decoding length-prefixed messages.
    Messages,
    /// A fatal error happened; every call returns it again.
    Failed,
}

/// Something decoded from the stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first 48 bytes of the remote handshake. An accepting side looks up the torrent by
    /// `info_hash` and replies with its own handshake without waiting for the peer id.
    HandshakeHeader(HandshakeHeader),
    /// The complete remote handshake (always after [`Event::HandshakeHeader`]).
    Handshake(Handshake),
    /// A wire message.
    Message(Message),
}

#[derive(Debug)]
enum State {
    Header,
    PeerId(HandshakeHeader),
    Messages,
    Failed(WireError),
}

/// Incremental decoder of a peer connection's incoming bytes.
///
/// Feed bytes with [`extend`](Self::extend), or read straight into
/// [`buffer_mut`](Self::buffer_mut), then call [`next_event`](Self::next_event) (or, once the
/// handshake is done, [`next_message`](Self::next_message)) until it returns `Ok(None)`.
///
/// * Handshakes may arrive in any number of pieces; the header event comes as soon as 48 bytes
///   are in, and a stream that is not BitTorrent is rejected from its first wrong byte.
/// * A frame whose length prefix exceeds the limit is refused as soon as the 4-byte prefix is
///   in, before any of it is buffered or reserved.
/// * `Piece` blocks, `Bitfield`s and `Extended` payloads are split off the buffer as `Bytes`
///   sharing its allocation: no copy.
pub struct Decoder {
    buf: BytesMut,
    /// Chunks given with [`extend_owned`](Self::extend_owned) that could not be joined to
    /// `buf` without a copy, in order; moved over as decoding needs them.
    queued: VecDeque<BytesMut>,
    /// Total length of `queued`.
    queued_len: usize,
    /// Input comes as owned chunks: incomplete frames are not pre-reserved (the next chunk
    /// usually continues the same allocation and is joined without a copy).
    owned_input: bool,
    state: State,
    max_frame_len: u32,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer itself may be large: show its length only.
        f.debug_struct("Decoder")
            .field("phase", &self.phase())
            .field("buffered", &self.buffered())
            .field("max_frame_len", &self.max_frame_len)
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder expecting the remote handshake first, with [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Decoder {
            buf: BytesMut::new(),
            queued: VecDeque::new(),
            queued_len: 0,
            owned_input: false,
            state: State::Header,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }

    /// A decoder for a stream whose handshake was already handled: messages only.
    pub fn messages_only() -> Self {
        Decoder {
            state: State::Messages,
            ..Self::new()
        }
    }

    /// Sets the largest accepted frame (id byte plus payload, i.e. the length prefix value).
    pub fn with_max_frame_len(mut self, max_frame_len: u32) -> Self {
        // Keeps `4 + len` representable in a 32-bit usize.
        self.max_frame_len = max_frame_len.min(u32::MAX - 4);
        self
    }

    /// The largest accepted frame length.
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Header => Phase::HandshakeHeader,
            State::PeerId(_) => Phase::HandshakePeerId,
            State::Messages => Phase::Messages,
            State::Failed(_) => Phase::Failed,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.merge_queued();
        self.buf.extend_from_slice(data);
    }

    /// Appends received bytes without copying them where possible: the chunk becomes the
    /// buffer when nothing is buffered, and is joined in place when it continues the buffer's
    /// allocation (successive `split()`s of one read buffer). Otherwise it is queued, and only
    /// the bytes needed to complete a frame that straddles the two are copied.
    pub fn extend_owned(&mut self, data: BytesMut) {
        self.owned_input = true;
        if data.is_empty() {
            return;
        }
        if self.queued.is_empty() {
            if self.buf.is_empty() {
                self.buf = data;
                return;
            }
            if contiguous(&self.buf, &data) {
                self.buf.unsplit(data);
                return;
            }
        }
        self.queued_len += data.len();
        self.queued.push_back(data);
    }

    /// Moves every queued chunk into `buf` (copying).
    fn merge_queued(&mut self) {
        while let Some(c) = self.queued.pop_front() {
            self.buf.unsplit(c);
        }
        self.queued_len = 0;
    }

    /// Moves queued bytes into `buf` until a frame (or handshake part) is complete there or
    /// nothing is queued.
    fn refill(&mut self) {
        loop {
            let need = self.needed_in_buf();
            let Some(front) = self.queued.front_mut() else {
                return;
            };
            if self.buf.is_empty() || contiguous(&self.buf, front) {
                let c = self.queued.pop_front().unwrap_or_default();
                self.queued_len -= c.len();
                self.buf.unsplit(c);
                continue;
            }
            if need == 0 {
                return;
            }
            let k = need.min(front.len());
            self.buf.reserve(need);
            self.buf.extend_from_slice(&front[..k]);
            front.advance(k);
            self.queued_len -= k;
            if front.is_empty() {
                self.queued.pop_front();
            }
        }
    }

    /// The receive buffer, for reading from a socket straight into it (e.g.
    /// `buf.reserve(64 * 1024)` then a `read_buf`-style call).
    ///
    /// Only append to it: bytes already there are undecoded input. [`Decoder::bytes_needed`]
    /// tells how much more is needed to make progress. The decoder keeps no offsets into the
    /// buffer, so the only effect of other changes is to corrupt the stream.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        self.merge_queued();
        &mut self.buf
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.queued_len
    }

    /// How many more bytes must arrive before the next call can yield something (0 when it can
    /// already, including when it would return an error).
    pub fn bytes_needed(&self) -> usize {
        if self.queued.is_empty() {
            return self.needed_in_buf();
        }
        let mut head = [0u8; 4];
        let mut n = 0;
        for c in std::iter::once(&self.buf).chain(self.queued.iter()) {
            for b in c.iter().take(4 - n) {
                head[n] = *b;
                n += 1;
            }
        }
        let want = match self.state {
            State::Header => HANDSHAKE_HEADER_LEN,
            State::PeerId(_) => HANDSHAKE_LEN - HANDSHAKE_HEADER_LEN,
            State::Failed(_) => 0,
            State::Messages if n < 4 => 4,
            State::Messages => match u32::from_be_bytes(head) {
                len if len > self.max_frame_len => 0,
                len => 4 + len as usize,
            },
        };
        want.saturating_sub(self.buffered())
    }

    /// [`bytes_needed`](Self::bytes_needed) counting `buf` only.
    fn needed_in_buf(&self) -> usize {
        let want = match self.state {
            State::Header => HANDSHAKE_HEADER_LEN,
            State::PeerId(_) => HANDSHAKE_LEN - HANDSHAKE_HEADER_LEN,
            State::Failed(_) => 0,
            State::Messages => match self.frame_len() {
                None => 4,
                Some(len) if len > self.max_frame_len => 0,
                Some(len) => 4 + len as usize,
            },
        };
        want.saturating_sub(self.buf.len())
    }

    /// Gives back the undecoded bytes.
    pub fn into_buffer(mut self) -> BytesMut {
        self.merge_queued();
        self.buf
    }

    fn frame_len(&self) -> Option<u32> {
        match self.buf.get(..4) {
            Some(&[a, b, c, d]) => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }

    fn fail(&mut self, err: WireError) -> WireError {
        self.state = State::Failed(err.clone());
        err
    }

    /// Decodes the next handshake part or message, `Ok(None)` if more bytes are needed.
    ///
    /// After a fatal error ([`WireError::is_fatal`]) the same error is returned forever;
    /// after a non-fatal one the bad frame has been skipped.
    pub fn next_event(&mut self) -> Result<Option<Event>, WireError> {
        self.refill();
        match &self.state {
            State::Failed(err) => Err(err.clone()),
            State::Messages => Ok(self.decode_message()?.map(Event::Message)),
            State::Header => {
                let seen = self.buf.len().min(HANDSHAKE_HEADER_LEN);
                if let Err(e) = HandshakeHeader::check_prefix(&self.buf[..seen]) {
                    return Err(self.fail(e));
                }
                if seen < HANDSHAKE_HEADER_LEN {
                    return Ok(None);
                }
                let header = match HandshakeHeader::decode(&self.buf[..HANDSHAKE_HEADER_LEN]) {
                    Ok(h) => h,
                    Err(e) => return Err(self.fail(e)),
                };
                self.buf.advance(HANDSHAKE_HEADER_LEN);
                self.state = State::PeerId(header);
                Ok(Some(Event::HandshakeHeader(header)))
            }
            State::PeerId(header) => {
                let Some(id) = self.buf.get(..20) else {
                    return Ok(None);
                };
                let mut peer_id = [0u8; 20];
                peer_id.copy_from_slice(id);
                let hs = header.with_peer_id(Id20(peer_id));
                self.buf.advance(20);
                self.state = State::Messages;
                Ok(Some(Event::Handshake(hs)))
            }
        }
    }

    /// Decodes the next message, `Ok(None)` if more bytes are needed.
    ///
    /// Use once the handshake has been taken with [`next_event`](Self::next_event) (or on a
    /// [`messages_only`](Self::messages_only) decoder); before that it returns
    /// [`WireError::HandshakePending`] and changes nothing.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        self.refill();
        match &self.state {
            State::Messages => self.decode_message(),
            State::Failed(err) => Err(err.clone()),
            State::Header | State::PeerId(_) => Err(WireError::HandshakePending),
        }
    }

    fn decode_message(&mut self) -> Result<Option<Message>, WireError> {
        let Some(len) = self.frame_len() else {
            return Ok(None);
        };
        if len > self.max_frame_len {
            return Err(self.fail(WireError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            }));
        }
        let len = len as usize;
        let total = 4 + len;
        if self.buf.len() < total {
            let missing = total - self.buf.len();
            if total <= MAX_PRERESERVE && !self.owned_input {
                self.buf.reserve(missing);
            }
            return Ok(None);
        }
        if len == 0 {
            self.buf.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        match self.buf[4] {
            5 | 7 | 20 => {
                // Bitfield, piece, extended: hand out the payload without copying it.
                self.buf.advance(4);
                let frame = self.buf.split_to(len).freeze();
                Message::from_frame(frame).map(Some)
            }
            id => {
                let result = decode_fixed(id, &self.buf[5..total]);
                self.buf.advance(total);
                result.map(Some)
            }
        }
    }
}

/// Whether `next` starts right where `buf` ends (so `unsplit` joins them without a copy when
/// they share an allocation; it copies otherwise, which is still correct).
fn contiguous(buf: &BytesMut, next: &BytesMut) -> bool {
    std::ptr::eq(buf.as_ptr().wrapping_add(buf.len()), next.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{BlockRequest, MessageKind};
    use bytes::{BufMut, Bytes};

    fn handshake() -> Handshake {
        let mut h = Handshake::new(Id20([0xaa; 20]), Id20([0xbb; 20]));
        h.reserved.set_extension_protocol(true);
        h
    }

    fn drain(d: &mut Decoder) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = d.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    #[test]
    fn handshake_then_messages_in_one_buffer() {
        let mut d = Decoder::new();
        d.extend(&handshake().to_bytes());
        d.extend(&Message::Unchoke.to_bytes());
        d.extend(&Message::Have { piece: 3 }.to_bytes());
        assert_eq!(
            drain(&mut d),
            vec![
                Event::HandshakeHeader(handshake().header()),
                Event::Handshake(handshake()),
                Event::Message(Message::Unchoke),
                Event::Message(Message::Have { piece: 3 }),
            ]
        );
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.phase(), Phase::Messages);
    }

    #[test]
    fn header_event_comes_at_48_bytes_before_peer_id() {
        let bytes = handshake().to_bytes();
        let mut d = Decoder::new();
        for (i, b) in bytes.iter().enumerate() {
            d.extend(&[*b]);
            let ev = d.next_event().unwrap();
            match i + 1 {
                48 => assert_eq!(ev, Some(Event::HandshakeHeader(handshake().header()))),
                68 => assert_eq!(ev, Some(Event::Handshake(handshake()))),
                n if n < 48 => {
                    assert_eq!(ev, None);
                    assert_eq!(d.bytes_needed(), 48 - n);
                    assert_eq!(d.phase(), Phase::HandshakeHeader);
                }
                n => {
                    assert_eq!(ev, None);
                    assert_eq!(d.bytes_needed(), 68 - n);
                    assert_eq!(d.phase(), Phase::HandshakePeerId);
                }
            }
        }
        assert_eq!(d.phase(), Phase::Messages);
    }

    #[test]
    fn non_bittorrent_stream_rejected_early_and_stays_failed() {
        let mut d = Decoder::new();
        d.extend(b"GE");
        assert_eq!(d.next_event(), Err(WireError::ProtocolLength(b'G')));
        assert_eq!(d.phase(), Phase::Failed);
        assert!(d.next_event().unwrap_err().is_fatal());
        assert_eq!(d.next_message(), Err(WireError::ProtocolLength(b'G')));

        let mut d = Decoder::new();
        d.extend(b"\x13BitTorrent");
        assert_eq!(d.next_event(), Ok(None));
        d.extend(b"-protocol");
        assert_eq!(d.next_event(), Err(WireError::ProtocolName));
    }

    #[test]
    fn next_message_before_handshake_is_a_caller_error() {
        let mut d = Decoder::new();
        d.extend(&handshake().to_bytes());
        assert_eq!(d.next_message(), Err(WireError::HandshakePending));
        assert!(!WireError::HandshakePending.is_fatal());
        assert_eq!(d.phase(), Phase::HandshakeHeader);
        assert_eq!(drain(&mut d).len(), 2);
    }

    #[test]
    fn oversized_frame_refused_from_its_prefix_alone() {
        let mut d = Decoder::messages_only();
        d.extend(&(DEFAULT_MAX_FRAME_LEN + 1).to_be_bytes());
        let before = d.buffer_mut().capacity();
        assert_eq!(
            d.next_message(),
            Err(WireError::FrameTooLarge {
                len: DEFAULT_MAX_FRAME_LEN + 1,
                max: DEFAULT_MAX_FRAME_LEN
            })
        );
        assert_eq!(d.buffer_mut().capacity(), before, "nothing reserved");
        assert_eq!(d.bytes_needed(), 0);
        // Fatal: more bytes do not resurrect it.
        d.extend(&[0; 64]);
        assert!(matches!(
            d.next_message(),
            Err(WireError::FrameTooLarge { .. })
        ));

        // Exactly at the limit is fine.
        let mut d = Decoder::messages_only().with_max_frame_len(100);
        assert_eq!(d.max_frame_len(), 100);
        let bf = Message::Bitfield(Bytes::from(vec![0xf0; 99]));
        d.extend(&bf.to_bytes());
        assert_eq!(d.next_message().unwrap(), Some(bf));
        d.extend(&101u32.to_be_bytes());
        assert_eq!(
            d.next_message(),
            Err(WireError::FrameTooLarge { len: 101, max: 100 })
        );
    }

    #[test]
    fn oversized_frame_after_handshake() {
        let mut d = Decoder::new().with_max_frame_len(16 * 1024 + 9);
        d.extend(&handshake().to_bytes());
        d.extend(&[0, 0, 0x40, 0x0a]);
        assert_eq!(drain_until_err(&mut d), 2);
    }

    fn drain_until_err(d: &mut Decoder) -> usize {
        let mut n = 0;
        while let Ok(Some(_)) = d.next_event() {
            n += 1;
        }
        assert!(d.next_event().is_err());
        n
    }

    #[test]
    fn truncated_frames_wait_for_more() {
        let msg = Message::Request(BlockRequest::new(1, 2, 3)).to_bytes();
        let mut d = Decoder::messages_only();
        for i in 0..msg.len() {
            d.extend(&msg[i..i + 1]);
            if i + 1 < msg.len() {
                assert_eq!(d.next_message(), Ok(None));
                let need = if i + 1 < 4 { 4 } else { msg.len() };
                assert_eq!(d.bytes_needed(), need - (i + 1));
            }
        }
        assert_eq!(
            d.next_message().unwrap(),
            Some(Message::Request(BlockRequest::new(1, 2, 3)))
        );
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.bytes_needed(), 4);
    }

    #[test]
    fn non_fatal_errors_skip_the_frame() {
        let mut d = Decoder::messages_only();
        d.extend(&[0, 0, 0, 3, 99, 1, 2]); // unknown id 99
        d.extend(&[0, 0, 0, 2, 4, 1]); // have with a 1-byte payload
        d.extend(&[0, 0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0]); // piece without begin
        d.extend(&Message::Choke.to_bytes());
        assert_eq!(d.next_message(), Err(WireError::UnknownMessage(99)));
        assert_eq!(
            d.next_message(),
            Err(WireError::PayloadLength {
                kind: MessageKind::Have,
                len: 1
            })
        );
        assert_eq!(
            d.next_message(),
            Err(WireError::PayloadLength {
                kind: MessageKind::Piece,
                len: 7
            })
        );
        assert_eq!(d.next_message(), Ok(Some(Message::Choke)));
        assert_eq!(d.phase(), Phase::Messages);
    }

    #[test]
    fn keep_alive_and_into_buffer() {
        let mut d = Decoder::messages_only();
        d.extend(&[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(d.next_message(), Ok(Some(Message::KeepAlive)));
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(&d.into_buffer()[..], &[0, 0, 0, 1]);
    }

    #[test]
    fn piece_data_is_not_copied() {
        let mut stream = BytesMut::new();
        for i in 0..4u32 {
            Message::Piece {
                index: i,
                begin: 0,
                data: Bytes::from(vec![i as u8; 16384]),
            }
            .encode(&mut stream);
        }
        Message::Bitfield(Bytes::from(vec![0xff; 100])).encode(&mut stream);
        Message::Extended {
            id: 3,
            payload: Bytes::from(vec![b'x'; 50]),
        }
        .encode(&mut stream);

        let mut d = Decoder::messages_only();
        let buf = d.buffer_mut();
        buf.reserve(stream.len());
        buf.put_slice(&stream);
        let start = buf.as_ptr() as usize;
        let range = start..start + buf.len();

        let mut seen = 0;
        while let Some(m) = d.next_message().unwrap() {
            let payload = match &m {
                Message::Piece { data, .. } => data,
                Message::Bitfield(b) => b,
                Message::Extended { payload, .. } => payload,
                other => panic!("unexpected {other:?}"),
            };
            let p = payload.as_ptr() as usize;
            assert!(
                range.contains(&p),
                "payload copied out of the receive buffer"
            );
            assert!(p + payload.len() <= range.end);
            seen += 1;
        }
        assert_eq!(seen, 6);
    }

    #[test]
    fn incomplete_block_is_reserved_once() {
        let piece = Message::Piece {
            index: 0,
            begin: 0,
            data: Bytes::from(vec![1u8; 16384]),
        }
        .to_bytes();
        let mut d = Decoder::messages_only();
        d.extend(&piece[..100]);
        assert_eq!(d.next_message(), Ok(None));
        assert!(d.buffer_mut().capacity() >= piece.len());
        let ptr = d.buffer_mut().as_ptr();
        for chunk in piece[100..].chunks(1000) {
            d.extend(chunk);
        }
        assert_eq!(
            d.buffer_mut().as_ptr(),
            ptr,
            "no reallocation while the block arrived"
        );
        assert!(matches!(d.next_message(), Ok(Some(Message::Piece { .. }))));
    }
}
