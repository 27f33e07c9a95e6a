//! Decodes extension messages from arbitrary bytes, checks that whatever decodes round-trips,
//! and drives a `MetadataAssembler` with pieces derived from the input.

#![no_main]
use libfuzzer_sys::fuzz_target;
use webtorrent_core::ext::{
    metadata_hash, serve_metadata_piece, ExtendedHandshake, MetadataAssembler, MetadataError,
    MetadataMessage, PexMessage, METADATA_PIECE_LEN,
};
use webtorrent_core::wire::Bytes;
use webtorrent_core::Id20;

fn decoders(payload: &[u8]) {
    if let Ok(h) = ExtendedHandshake::decode(payload) {
        let enc = h.encode();
        assert_eq!(
            ExtendedHandshake::decode(&enc).expect("re-decode handshake"),
            h
        );
    }
    let bytes = Bytes::copy_from_slice(payload);
    if let Ok(m) = MetadataMessage::decode(&bytes) {
        let enc = m.encode();
        assert_eq!(
            MetadataMessage::decode(&enc).expect("re-decode metadata"),
            m
        );
        if let MetadataMessage::Data {
            total_size, data, ..
        } = &m
        {
            assert!(data.len() <= METADATA_PIECE_LEN as usize);
            if let Ok(mut a) = MetadataAssembler::new(Id20([0; 20]), *total_size) {
                // Anything may fail, nothing may panic.
                let _ = a.add_message(&m);
            }
        }
    }
    if let Ok(p) = PexMessage::decode(payload) {
        let enc = p.encode();
        assert_eq!(PexMessage::decode(&enc).expect("re-decode pex"), p);
    }
}

fn assembler(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let ctrl = data[2];
    if ctrl & 0x80 == 0 {
        // Leave most inputs to the (cheaper) decoders.
        return;
    }
    // Up to three pieces, so the short last piece and out-of-order completion are covered.
    let size = 1 + u32::from(u16::from_le_bytes([data[0], data[1]])) % 40_000;
    let ops = &data[3..];
    let info: Vec<u8> = (0..size as usize)
        .map(|i| ops.get(i % ops.len().max(1)).copied().unwrap_or(0) ^ (i as u8))
        .collect();
    let info = Bytes::from(info);
    let mut hash = metadata_hash(&info).0;
    let honest_hash = ctrl & 1 == 0;
    if !honest_hash {
        hash[0] ^= 1;
    }
    let mut a = MetadataAssembler::new(Id20(hash), size).expect("size in range");
    let count = a.piece_count();
    assert_eq!(count, size.div_ceil(METADATA_PIECE_LEN));
    let mut corrupted = false;
    let mut completions = 0;
    for op in ops.chunks(3) {
        let [p, kind, arg] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        let piece = u32::from(p) % (count + 1);
        let Some(MetadataMessage::Data {
            data: good,
            total_size,
            ..
        }) = Some(serve_metadata_piece(&info, piece))
        else {
            // Once complete, every late piece is ignored, even an out-of-range one.
            let expected = if a.is_complete() {
                Ok(None)
            } else {
                Err(MetadataError::PieceOutOfRange { piece, count })
            };
            assert_eq!(a.add_piece(piece, size, &[]), expected);
            continue;
        };
        assert_eq!(total_size, size);
        let result = match kind % 4 {
            0 => a.add_piece(piece, size, &good),
            1 => {
                let cut = usize::from(arg) % good.len().max(1);
                let r = a.add_piece(piece, size, &good[..cut]);
                assert!(r.is_err() || a.is_complete());
                r
            }
            2 => {
                let r = a.add_piece(piece, size.wrapping_add(u32::from(arg) + 1), &good);
                assert!(r.is_err() || a.is_complete());
                r
            }
            _ => {
                let mut bad = good.to_vec();
                let at = usize::from(arg) % bad.len();
                bad[at] ^= 0x80;
                if !a.is_complete() {
                    corrupted = true;
                }
                a.add_piece(piece, size, &bad)
            }
        };
        match result {
            Ok(Some(meta)) => {
                completions += 1;
                assert_eq!(meta, info);
                assert!(honest_hash);
                assert_eq!(a.metadata(), Some(&info));
                assert_eq!(a.missing_pieces().count(), 0);
            }
            Err(MetadataError::HashMismatch) => {
                assert!(!honest_hash || corrupted);
                corrupted = false;
                assert_eq!(a.missing_pieces().count() as u32, count);
            }
            _ => {}
        }
    }
    assert!(completions <= 1);
}

fuzz_target!(|data: &[u8]| {
    decoders(data);
    assembler(data);
});
