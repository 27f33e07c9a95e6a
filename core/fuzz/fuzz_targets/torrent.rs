#![no_main]
//! A seeding and a leeching torrent state machine fed arbitrary peer bytes after a valid
//! handshake; outputs are carried out like a driver would. Nothing may panic.
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::Duration;
use webtorrent_core::creator::TorrentCreator;
use webtorrent_core::piece::{sha1, Bitfield};
use webtorrent_core::peer::Direction;
use webtorrent_core::torrent::{Output, Torrent, TorrentConfig};
use webtorrent_core::wire::Handshake;
use webtorrent_core::{Id20, PeerKey, Time};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let t = TorrentCreator::new()
        .with_piece_length(16384)
        .create_single_from_reader("f", content.len() as u64, &content[..])
        .expect("torrent");
    let meta = Arc::new(t.metainfo);
    let n = meta.info.num_pieces();
    let have = if mode & 1 == 0 { Bitfield::full(n) } else { Bitfield::new(n) };
    let Ok(mut tor) =
        Torrent::new(TorrentConfig::new(Id20([1; 20])), meta.clone(), have, 1, Time::ZERO)
    else {
        return;
    };
    let key = PeerKey(1);
    let addr = "10.0.0.2:6881".parse().ok();
    if tor.add_peer(Time::ZERO, key, addr, Direction::Incoming).is_err() {
        return;
    }
    let mut h = Handshake::new(meta.info_hash, Id20([2; 20]));
    h.reserved.set_extension_protocol(true);
    h.reserved.set_fast_extension(mode & 2 == 0);
    tor.peer_data(Time::ZERO, key, &h.to_bytes());
    let mut now = Time::ZERO;
    for chunk in rest.chunks(61) {
        tor.peer_data(now, key, chunk);
        now += Duration::from_millis(300);
        tor.handle_timeout(now);
        while let Some(out) = tor.poll_output() {
            match out {
                Output::ReadPiece { piece, offset, length } => {
                    let (off, len) = (offset as usize, length as usize);
                    let d = bytes::Bytes::copy_from_slice(&content[off..off + len]);
                    tor.piece_read(now, piece, Some(d));
                }
                Output::VerifyPiece { piece, data, expected } => {
                    tor.piece_checked(now, piece, sha1(&data) == expected);
                }
                _ => {}
            }
        }
        while tor.poll_transmit(now).is_some() {}
    }
});
