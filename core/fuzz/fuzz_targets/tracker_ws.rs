//! WebTorrent WebSocket tracker JSON, both directions.
//! Whatever parses must serialize and parse back to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webtorrent_core::tracker::ws::{ClientMessage, TrackerMessage, MAX_MESSAGE_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = ClientMessage::from_json(text) {
        let json = m.to_json();
        if json.len() <= MAX_MESSAGE_LEN {
            assert_eq!(ClientMessage::from_json(&json), Ok(m));
        }
    }
    if let Ok(m) = TrackerMessage::from_json(text) {
        let json = m.to_json();
        if json.len() <= MAX_MESSAGE_LEN {
            assert_eq!(TrackerMessage::from_json(&json), Ok(m));
        }
    }
});
