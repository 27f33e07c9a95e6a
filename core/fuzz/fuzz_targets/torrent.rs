#![no_main]
//! A seeding and a leeching torrent state machine fed arbitrary peer bytes after a valid
//! handshake; outputs are carried out like a driver would. Nothing may panic, and (liveness)
//! whatever the hostile peer did, an honest seeder connected afterwards still delivers the
//! whole torrent to the leecher while the hostile peer stays connected.
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
        carry_out(&mut tor, &content, now);
        while tor.poll_transmit_to(key).is_some() {}
    }
    if mode & 1 == 0 {
        return;
    }
    let Ok(mut seed) =
        Torrent::new(TorrentConfig::new(Id20([3; 20])), meta.clone(), Bitfield::full(n), 2, now)
    else {
        return;
    };
    let (to_seed, to_leecher) = (PeerKey(2), PeerKey(3));
    tor.add_peer(now, to_seed, "10.0.0.3:6881".parse().ok(), Direction::Outgoing)
        .expect("room for the honest seeder");
    seed.add_peer(now, to_leecher, "10.0.0.1:6881".parse().ok(), Direction::Incoming)
        .expect("a fresh seeder takes a peer");
    for _ in 0..4000 {
        now += Duration::from_millis(50);
        tor.handle_timeout(now);
        seed.handle_timeout(now);
        carry_out(&mut tor, &content, now);
        carry_out(&mut seed, &content, now);
        while let Some(b) = tor.poll_transmit_to(to_seed) {
            seed.peer_data(now, to_leecher, &b);
        }
        while let Some(b) = seed.poll_transmit_to(to_leecher) {
            tor.peer_data(now, to_seed, &b);
        }
        // The hostile peer hears what it is sent and says nothing more.
        while tor.poll_transmit_to(key).is_some() {}
        if tor.is_complete() {
            return;
        }
    }
    panic!("an honest seeder could not finish the download after the hostile peer's input");
});

/// Carries out a torrent's outputs as a driver would, with `content` as its storage.
fn carry_out(tor: &mut Torrent, content: &[u8], now: Time) {
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
}
