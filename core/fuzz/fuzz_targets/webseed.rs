//! Drives a web seed adapter (BEP 19) with arbitrary wire bytes from "the torrent" and
//! arbitrary HTTP answers (bodies of any length, errors): it must never panic, hand the
//! torrent only blocks it asked for, and end on any body whose length is wrong.

#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use webtorrent_core::creator::TorrentCreator;
use webtorrent_core::webseed::WebSeedPeer;
use webtorrent_core::wire::{Bytes, BytesMut, Decoder, Handshake, Message};
use webtorrent_core::Id20;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    // A small torrent: one file or two, 16 KiB pieces.
    let content = vec![7u8; 40_000];
    let c = TorrentCreator::new().with_piece_length(16384);
    let meta = if shape & 1 == 0 {
        c.create_single_from_reader("f", content.len() as u64, &content[..])
            .expect("create")
            .metainfo
    } else {
        let files = vec![
            (vec!["a".to_string()], 25_000u64, &content[..25_000]),
            (vec!["b".to_string()], 15_000u64, &content[25_000..]),
        ];
        c.create_multi("d", files).expect("create").metainfo
    };
    let meta = Arc::new(meta);
    let Ok(mut ws) = WebSeedPeer::new("http://h/", meta.clone()) else {
        return;
    };
    // A valid handshake first, so that the fuzzer spends its time on messages.
    let mut hs = BytesMut::new();
    Handshake::new(meta.info_hash, Id20([1; 20])).encode(&mut hs);
    if ws.handle_transmit(&hs).is_err() {
        return;
    }
    let mut asked = 0u64;
    for chunk in rest.chunks(64) {
        let Some((&op, body)) = chunk.split_first() else {
            continue;
        };
        match op % 3 {
            0 => {
                // Raw bytes as the torrent's messages.
                if ws.handle_transmit(body).is_err() {
                    return;
                }
            }
            1 => {
                if let Some(f) = ws.poll_fetch() {
                    let want: u64 = f.requests.iter().map(|r| r.range.end - r.range.start).sum();
                    asked += want;
                    // Bodies of the right length, or of the fuzzer's length.
                    let right = op & 0x80 == 0;
                    let bodies = f
                        .requests
                        .iter()
                        .map(|r| {
                            let n = if right {
                                (r.range.end - r.range.start) as usize
                            } else {
                                body.len()
                            };
                            Bytes::from(vec![1u8; n])
                        })
                        .collect();
                    let result = if op & 0x40 == 0 { Ok(bodies) } else { Err("HTTP 500".into()) };
                    if ws.fetched(f.id, result).is_err() {
                        return;
                    }
                }
            }
            _ => {
                // Whatever the adapter sent must decode as messages, blocks within the torrent.
                if let Some(out) = ws.poll_to_torrent() {
                    let mut d = Decoder::messages_only();
                    d.extend(&out);
                    while let Ok(Some(m)) = d.next_message() {
                        if let Message::Piece { index, begin, data } = m {
                            assert!(index < meta.info.num_pieces());
                            let end = u64::from(begin) + data.len() as u64;
                            assert!(end <= u64::from(meta.info.piece_length()));
                        }
                    }
                }
            }
        }
    }
    assert!(ws.delivered() <= asked, "delivered more than fetched");
});
