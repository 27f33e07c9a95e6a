#![no_main]
//! A peer session fed arbitrary bytes (after a valid handshake, or raw) interleaved with
//! timer ticks and our own actions: it must never panic, and what it queues must stay bounded.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use webtorrent_core::peer::{Direction, PeerSession, SessionConfig};
use webtorrent_core::wire::{BlockRequest, Handshake};
use webtorrent_core::{Id20, Time};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let info_hash = Id20([7; 20]);
    let cfg = SessionConfig::new(info_hash, Id20([1; 20]));
    let dir = if mode & 1 == 0 { Direction::Incoming } else { Direction::Outgoing };
    let mut s = PeerSession::new(cfg, dir, Time::ZERO);
    let mut now = Time::ZERO;
    if mode & 2 == 0 {
        let mut h = Handshake::new(info_hash, Id20([2; 20]));
        h.reserved.set_extension_protocol(true);
        h.reserved.set_fast_extension(mode & 4 == 0);
        if s.receive(now, &h.to_bytes()).is_err() {
            return;
        }
    }
    // Chunks: first byte of each chunk picks an action, the next byte its length.
    let mut i = 0;
    while i + 2 <= rest.len() {
        let action = rest[i];
        let len = rest[i + 1] as usize;
        i += 2;
        let end = (i + len).min(rest.len());
        let chunk = &rest[i..end];
        i = end;
        match action % 8 {
            0..=3 => {
                if s.receive(now, chunk).is_err() {
                    return;
                }
            }
            4 => {
                now += Duration::from_millis(u64::from(action) * 500);
                if s.handle_timeout(now).is_err() {
                    return;
                }
            }
            5 => {
                let r = BlockRequest::new(u32::from(action), 0, 16384);
                s.request(now, r);
            }
            6 => {
                s.unchoke(now);
                while let Some(ev) = s.poll_event() {
                    if let webtorrent_core::peer::SessionEvent::Request(r) = ev {
                        s.send_block(now, r, Bytes::from(vec![0u8; r.length as usize]));
                    }
                }
            }
            _ => {
                while s.poll_transmit(1 << 16).is_some() {}
            }
        }
        assert!(s.num_peer_requests() <= 250);
        assert!(s.num_outstanding() <= 10_000);
    }
    while s.poll_event().is_some() {}
});
