//! Feeds arbitrary bytes through the wire `Decoder` in both modes, split into chunks derived
//! from the input, and checks that (1) splitting never changes what is decoded and (2) every
//! decoded handshake part and message re-encodes to exactly the bytes it was decoded from.

#![no_main]
use libfuzzer_sys::fuzz_target;
use webtorrent_core::wire::{Decoder, Event, Message, WireError};

#[derive(Debug, PartialEq)]
enum Outcome {
    Event(Event),
    Error(WireError),
}

/// Decodes `input` fed in chunks of the given sizes (cycled); stops at the first fatal error.
/// With `check`, verifies that each event re-encodes to the bytes it consumed.
fn run(mut d: Decoder, input: &[u8], sizes: &[usize], check: bool) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    let mut i = 0usize;
    while fed < input.len() {
        let n = sizes[i % sizes.len()].min(input.len() - fed);
        i += 1;
        d.extend(&input[fed..fed + n]);
        fed += n;
        loop {
            let before = d.buffered();
            match d.next_event() {
                Ok(None) => break,
                Ok(Some(ev)) => {
                    let used = before - d.buffered();
                    let raw = &input[consumed..consumed + used];
                    consumed += used;
                    if check {
                        match &ev {
                            Event::HandshakeHeader(h) => {
                                assert_eq!(
                                    raw,
                                    &h.with_peer_id(Default::default()).to_bytes()[..48]
                                );
                            }
                            Event::Handshake(h) => assert_eq!(raw, &h.peer_id.0[..]),
                            Event::Message(m) => {
                                let enc = m.to_bytes();
                                assert_eq!(enc.len(), m.encoded_len());
                                assert_eq!(raw, &enc[..], "re-encoding differs for {m:?}");
                                let again = Message::from_frame(enc.slice(4..)).expect("re-decode");
                                assert_eq!(&again, m);
                            }
                        }
                    }
                    out.push(Outcome::Event(ev));
                }
                Err(e) => {
                    let fatal = e.is_fatal();
                    if !fatal {
                        // The bad frame was skipped whole.
                        consumed += before - d.buffered();
                    }
                    out.push(Outcome::Error(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    assert_eq!(consumed + d.buffered(), input.len());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctrl, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, input)) = rest.split_first() else {
        return;
    };
    // Chunk sizes from a small xorshift seeded by the input; sizes 1..=64 or 1..=4.
    let mut x = u32::from(seed) | 0x100;
    let range = if ctrl & 0x10 != 0 { 4 } else { 64 };
    let sizes: Vec<usize> = (0..16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            1 + (x as usize % range)
        })
        .collect();
    let max = match ctrl & 0x0c {
        0 => u32::MAX,
        4 => 16 * 1024 + 9,
        8 => u32::from(ctrl >> 5) * 7,
        _ => webtorrent_core::wire::DEFAULT_MAX_FRAME_LEN,
    };
    for handshake in [true, false] {
        let make = || {
            if handshake {
                Decoder::new()
            } else {
                Decoder::messages_only()
            }
            .with_max_frame_len(max)
        };
        let whole = run(make(), input, &[input.len().max(1)], true);
        let split = run(make(), input, &sizes, true);
        assert_eq!(whole, split, "splitting changed the result");
    }
});
