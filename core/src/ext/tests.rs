//! Property tests for the extension messages.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use proptest::prelude::*;
use sha1::{Digest, Sha1};

use super::*;
use crate::id::Id20;

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn arb_handshake() -> impl Strategy<Value = ExtendedHandshake> {
    (
        proptest::collection::btree_map("[a-z_]{1,20}", any::<u8>(), 0..10),
        proptest::option::of(".{0,40}"),
        proptest::option::of(1u16..),
        proptest::option::of(any::<u32>()),
        proptest::option::of(1..=MAX_METADATA_SIZE),
        proptest::option::of(arb_ip()),
        proptest::option::of(any::<[u8; 4]>()),
        proptest::option::of(any::<[u8; 16]>()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(m, v, p, reqq, metadata_size, yourip, ipv4, ipv6, complete_ago, upload_only)| {
                ExtendedHandshake {
                    m: m.into_iter().collect::<BTreeMap<String, u8>>(),
                    v,
                    p,
                    reqq,
                    metadata_size,
                    yourip,
                    ipv4: ipv4.map(Into::into),
                    ipv6: ipv6.map(Ipv6Addr::from),
                    complete_ago,
                    upload_only,
                }
            },
        )
}

fn arb_metadata_message() -> impl Strategy<Value = MetadataMessage> {
    prop_oneof![
        any::<u32>().prop_map(|piece| MetadataMessage::Request { piece }),
        any::<u32>().prop_map(|piece| MetadataMessage::Reject { piece }),
        (
            any::<u32>(),
            1..=MAX_METADATA_SIZE,
            proptest::collection::vec(any::<u8>(), 0..=METADATA_PIECE_LEN as usize)
        )
            .prop_map(|(piece, total_size, data)| MetadataMessage::Data {
                piece,
                total_size,
                data: Bytes::from(data)
            }),
    ]
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::V4(SocketAddrV4::new(ip.into(), p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::V6(SocketAddrV6::new(
            ip.into(),
            p,
            0,
            0
        ))),
    ]
}

/// IPv4 entries first, each family in its original order: the order `decode` produces.
fn v4_first<T: Clone>(items: &[T], addr: impl Fn(&T) -> SocketAddr) -> Vec<T> {
    let mut out: Vec<T> = items
        .iter()
        .filter(|t| addr(t).is_ipv4())
        .cloned()
        .collect();
    out.extend(items.iter().filter(|t| addr(t).is_ipv6()).cloned());
    out
}

/// Fuzz regression (`extension`, input `AQAAAACjow==`): a 2-byte metadata completed by piece
/// 0, then an out-of-range piece 1. Late pieces after completion are ignored, whatever they are.
#[test]
fn fuzz_regression_late_out_of_range_piece_after_completion() {
    let input: &[u8] = &[0x01, 0x00, 0x00, 0x00, 0x00, 0xa3, 0xa3];
    let info = Bytes::from_static(&[0x00, 0x01]);
    let mut a = MetadataAssembler::new(metadata_hash(&info), 2).unwrap();
    assert_eq!(a.piece_count(), 1);
    assert_eq!(a.add_piece(0, 2, &info), Ok(Some(info.clone())));
    assert_eq!(a.add_piece(1, 2, &[]), Ok(None));
    assert_eq!(a.add_piece(0, 2, &info), Ok(None));
    assert_eq!(a.metadata(), Some(&info));
    // Before completion the same piece index is an error.
    let mut b = MetadataAssembler::new(metadata_hash(&info), 2).unwrap();
    assert_eq!(
        b.add_piece(1, 2, &[]),
        Err(MetadataError::PieceOutOfRange { piece: 1, count: 1 })
    );
    // The raw input must not upset the message decoders either.
    assert!(ExtendedHandshake::decode(input).is_err());
    assert!(MetadataMessage::decode(&Bytes::from_static(input)).is_err());
    assert!(PexMessage::decode(input).is_err());
}

proptest! {
    #[test]
    fn ext_handshake_roundtrip(h in arb_handshake()) {
        let enc = h.encode();
        prop_assert_eq!(ExtendedHandshake::decode(&enc).unwrap(), h.clone());
        // Canonical: same bytes as the generic bencode writer.
        prop_assert_eq!(crate::bencode::decode(&enc).unwrap().encode(), enc);
        match h.to_message() {
            crate::wire::Message::Extended { id, payload } => {
                prop_assert_eq!(id, HANDSHAKE_ID);
                prop_assert_eq!(ExtendedHandshake::decode(&payload).unwrap(), h);
            }
            _ => prop_assert!(false),
        }
    }

    #[test]
    fn metadata_message_roundtrip(m in arb_metadata_message()) {
        let enc = m.encode();
        prop_assert_eq!(MetadataMessage::decode(&enc).unwrap(), m);
    }

    #[test]
    fn pex_roundtrip(
        added in proptest::collection::vec((arb_addr(), any::<u8>().prop_map(PexFlags)), 0..50),
        dropped in proptest::collection::vec(arb_addr(), 0..50),
    ) {
        let m = PexMessage { added, dropped };
        let enc = m.encode();
        prop_assert_eq!(crate::bencode::decode(&enc).unwrap().encode(), enc.clone());
        let got = PexMessage::decode(&enc).unwrap();
        prop_assert_eq!(got.added, v4_first(&m.added, |a| a.0));
        prop_assert_eq!(got.dropped, v4_first(&m.dropped, |a| *a));
    }

    #[test]
    fn arbitrary_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(h) = ExtendedHandshake::decode(&data) {
            prop_assert_eq!(ExtendedHandshake::decode(&h.encode()).unwrap(), h);
        }
        let bytes = Bytes::from(data.clone());
        if let Ok(m) = MetadataMessage::decode(&bytes) {
            prop_assert_eq!(MetadataMessage::decode(&m.encode()).unwrap(), m);
        }
        if let Ok(p) = PexMessage::decode(&data) {
            prop_assert_eq!(PexMessage::decode(&p.encode()).unwrap(), p);
        }
    }

    #[test]
    fn arbitrary_dicts_never_panic(
        entries in proptest::collection::btree_map(
            prop_oneof![
                Just("m".to_string()), Just("msg_type".to_string()), Just("piece".to_string()),
                Just("total_size".to_string()), Just("added".to_string()), Just("added.f".to_string()),
                Just("dropped6".to_string()), Just("metadata_size".to_string()), Just("yourip".to_string()),
                Just("p".to_string()), Just("v".to_string()),
            ],
            prop_oneof![
                (-3i64..70000).prop_map(|i| format!("i{i}e")),
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
                    let mut s = format!("{}:", b.len());
                    s.extend(b.iter().map(|&c| char::from(b'a' + c % 26)));
                    s
                }),
                Just("d6:ut_pexi1ee".to_string()),
            ],
            0..8,
        ),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut data = b"d".to_vec();
        for (k, v) in &entries {
            data.extend_from_slice(format!("{}:{k}{v}", k.len()).as_bytes());
        }
        data.push(b'e');
        let _ = ExtendedHandshake::decode(&data);
        let _ = PexMessage::decode(&data);
        data.extend_from_slice(&tail);
        if let Ok(m) = MetadataMessage::decode(&Bytes::from(data)) {
            prop_assert_eq!(MetadataMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn assembler_completes_in_any_order(
        size in 1u32..100_000,
        seed in any::<u64>(),
        order in proptest::collection::vec(any::<u32>(), 0..20),
    ) {
        let info: Vec<u8> = (0..size).map(|i| (u64::from(i).wrapping_mul(seed | 1) >> 7) as u8).collect();
        let info = Bytes::from(info);
        let hash = Id20(Sha1::digest(&info).into());
        let mut a = MetadataAssembler::new(hash, size).unwrap();
        let n = a.piece_count();
        prop_assert_eq!(n, size.div_ceil(METADATA_PIECE_LEN));
        // Random pieces first (duplicates allowed), then whatever is still missing.
        let mut seq: Vec<u32> = order.iter().map(|o| o % n).collect();
        let mut result = None;
        for &p in &seq {
            if let Some(done) = a.add_message(&serve_metadata_piece(&info, p)).unwrap() {
                result = Some(done);
            }
        }
        seq = a.missing_pieces().collect();
        for p in seq {
            prop_assert!(result.is_none());
            if let Some(done) = a.add_message(&serve_metadata_piece(&info, p)).unwrap() {
                result = Some(done);
            }
        }
        prop_assert_eq!(result, Some(info));
        prop_assert!(a.is_complete());
    }
}
