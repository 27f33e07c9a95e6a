//! Property tests across the wire module: round trips, arbitrary splits, arbitrary input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::id::Id20;

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_request() -> impl Strategy<Value = BlockRequest> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(i, b, l)| BlockRequest::new(i, b, l))
}

pub(super) fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        any::<u32>().prop_map(|piece| Message::Have { piece }),
        arb_bytes(40).prop_map(Message::Bitfield),
        arb_request().prop_map(Message::Request),
        (any::<u32>(), any::<u32>(), arb_bytes(300))
            .prop_map(|(index, begin, data)| Message::Piece { index, begin, data }),
        arb_request().prop_map(Message::Cancel),
        any::<u16>().prop_map(Message::Port),
        any::<u32>().prop_map(Message::SuggestPiece),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        arb_request().prop_map(Message::RejectRequest),
        any::<u32>().prop_map(Message::AllowedFast),
        (any::<u8>(), arb_bytes(60)).prop_map(|(id, payload)| Message::Extended { id, payload }),
    ]
}

fn arb_handshake() -> impl Strategy<Value = Handshake> {
    (any::<[u8; 8]>(), any::<[u8; 20]>(), any::<[u8; 20]>()).prop_map(|(r, i, p)| Handshake {
        reserved: Reserved(r),
        info_hash: Id20(i),
        peer_id: Id20(p),
    })
}

/// Feeds `stream` to `d` cut at `cuts` (sorted, deduplicated by the caller or not) and collects
/// every event, failing the test on an error.
fn feed_split(d: &mut Decoder, stream: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(0);
    cuts.push(stream.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut events = Vec::new();
    for w in cuts.windows(2) {
        d.extend(&stream[w[0]..w[1]]);
        while let Some(e) = d.next_event().expect("valid stream") {
            events.push(e);
        }
    }
    events
}

proptest! {
    #[test]
    fn message_roundtrip(m in arb_message()) {
        let enc = m.to_bytes();
        prop_assert_eq!(enc.len(), m.encoded_len());
        let mut d = Decoder::messages_only();
        d.extend(&enc);
        prop_assert_eq!(d.next_message().unwrap(), Some(m.clone()));
        prop_assert_eq!(d.next_message().unwrap(), None);
        prop_assert_eq!(d.buffered(), 0);
        prop_assert_eq!(Message::from_frame(enc.slice(4..)).unwrap(), m);
    }

    #[test]
    fn handshake_roundtrip(h in arb_handshake()) {
        prop_assert_eq!(Handshake::decode(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn decoder_survives_arbitrary_splits(
        h in arb_handshake(),
        msgs in proptest::collection::vec(arb_message(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..60),
    ) {
        let mut stream = BytesMut::new();
        h.encode(&mut stream);
        for m in &msgs {
            m.encode(&mut stream);
        }
        let mut expected = vec![Event::HandshakeHeader(h.header()), Event::Handshake(h)];
        expected.extend(msgs.iter().cloned().map(Event::Message));

        let mut d = Decoder::new();
        let got = feed_split(&mut d, &stream, &cuts);
        prop_assert_eq!(got, expected);
        prop_assert_eq!(d.buffered(), 0);

        // Same stream, one byte at a time.
        let mut d = Decoder::new();
        let every: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(feed_split(&mut d, &stream, &every).len(), msgs.len() + 2);
    }

    #[test]
    fn owned_chunks_decode_like_copied_ones(
        h in arb_handshake(),
        msgs in proptest::collection::vec(arb_message(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..60),
        alloc in 1usize..2000,
        drain_every in 1usize..4,
    ) {
        let mut stream = BytesMut::new();
        h.encode(&mut stream);
        for m in &msgs {
            m.encode(&mut stream);
        }
        let mut expected = vec![Event::HandshakeHeader(h.header()), Event::Handshake(h)];
        expected.extend(msgs.iter().cloned().map(Event::Message));
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        cuts.dedup();
        // A reader filling one allocation and cutting chunks off it (contiguous), moving to a
        // new one when it is full (not contiguous); events taken every `drain_every` chunks.
        let mut reader = BytesMut::with_capacity(alloc);
        let mut d = Decoder::new();
        let mut reference = Decoder::new();
        let mut got = Vec::new();
        for (i, w) in cuts.windows(2).enumerate() {
            let part = &stream[w[0]..w[1]];
            if reader.capacity() < part.len() {
                reader = BytesMut::with_capacity(alloc.max(part.len()));
            }
            reader.extend_from_slice(part);
            d.extend_owned(reader.split());
            reference.extend(part);
            prop_assert_eq!(d.buffered(), reference.buffered());
            prop_assert_eq!(d.bytes_needed(), reference.bytes_needed());
            if i % drain_every == 0 {
                while let Some(e) = d.next_event().expect("valid stream") {
                    got.push(e);
                }
                while reference.next_event().expect("valid stream").is_some() {}
            }
        }
        while let Some(e) = d.next_event().expect("valid stream") {
            got.push(e);
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        max in prop_oneof![Just(DEFAULT_MAX_FRAME_LEN), 0u32..300],
        handshake_first in any::<bool>(),
    ) {
        let mut d = if handshake_first { Decoder::new() } else { Decoder::messages_only() }
            .with_max_frame_len(max);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort_unstable();
        for w in cuts.windows(2) {
            d.extend(&data[w[0]..w[1]]);
            loop {
                match d.next_event() {
                    Ok(Some(Event::Message(m))) => {
                        // Whatever decodes re-encodes to a frame within the limit.
                        prop_assert!(m.encoded_len() - 4 <= max as usize);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.is_fatal() => {
                        prop_assert_eq!(d.phase(), Phase::Failed);
                        break;
                    }
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn random_frames_decode_or_error_consistently(
        id in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut frame = vec![id];
        frame.extend_from_slice(&payload);
        match Message::from_frame(Bytes::from(frame.clone())) {
            Ok(m) => {
                // Canonical: re-encoding gives back the same frame.
                let enc = m.to_bytes();
                prop_assert_eq!(&enc[4..], &frame[..]);
            }
            Err(WireError::UnknownMessage(x)) => {
                prop_assert_eq!(x, id);
                prop_assert!(MessageKind::from_id(id).is_none());
            }
            Err(WireError::PayloadLength { kind, len }) => {
                prop_assert_eq!(kind.id(), Some(id));
                prop_assert_eq!(len, payload.len());
            }
            Err(e) => prop_assert!(false, "unexpected error {:?}", e),
        }
    }
}
