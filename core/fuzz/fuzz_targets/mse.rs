#![no_main]
//! Arbitrary bytes into both sides of the MSE/PE handshake, split into chunks whose size
//! the first byte picks: the responder from the first byte on, the initiator after its own
//! public key went out, and an initiator that got a real responder's public key followed
//! by arbitrary bytes (so the key exchange succeeds and the synchronisation scan and the
//! decrypted fields take the fuzzer's bytes). Nothing may panic, and a finished handshake
//! must yield its stream.
use libfuzzer_sys::fuzz_target;
use webtorrent_core::id::Id20;
use webtorrent_core::mse::{req2_hash, Handshake, Methods};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let info_hash = Id20([3u8; 20]);
    let want = req2_hash(&info_hash);
    let lookup = |h: &[u8; 20]| (*h == want).then_some(info_hash);
    let methods = [Methods::PREFER_RC4, Methods::PREFER_PLAINTEXT, Methods::RC4_ONLY][usize::from(first >> 6) % 3];
    let feed = |mut h: Handshake, bytes: &[u8]| {
        for c in bytes.chunks(chunk) {
            if h.handle_data(c, lookup).is_err() {
                return;
            }
            while h.poll_transmit().is_some() {}
        }
        if h.is_done() {
            assert!(h.into_established().is_some());
        }
    };
    feed(Handshake::responder(methods, [1; 32]), rest);
    let mut i = Handshake::initiator(info_hash, methods, b"ia", [2; 32]);
    while i.poll_transmit().is_some() {}
    feed(i, rest);
    let mut i = Handshake::initiator(info_hash, methods, b"", [4; 32]);
    let mut r = Handshake::responder(methods, [5; 32]);
    if let Some(ya) = i.poll_transmit() {
        if r.handle_data(&ya, lookup).is_ok() {
            if let Some(yb) = r.poll_transmit() {
                let key = &yb[..yb.len().min(96)];
                if i.handle_data(key, lookup).is_ok() {
                    while i.poll_transmit().is_some() {}
                    feed(i, rest);
                }
            }
        }
    }
});
