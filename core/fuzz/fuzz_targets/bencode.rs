#![no_main]
//! Arbitrary bytes through the bencode reader: validate and decode agree, and what decodes
//! re-encodes to something that decodes to the same value.
use libfuzzer_sys::fuzz_target;
use webtorrent_core::bencode::{self, Limits};

fuzz_target!(|data: &[u8]| {
    let decoded = bencode::decode(data);
    assert_eq!(decoded.is_ok(), bencode::validate(data, Limits::default()).is_ok());
    if let Ok(v) = decoded {
        // Encoding is canonical (keys sorted), so the input's key order may change, but
        // encoding is idempotent and preserves the value's content.
        let canonical = v.encode();
        let again = bencode::decode(&canonical).expect("re-encoded value decodes");
        assert_eq!(again.encode(), canonical);
    }
    if let Ok((_, used)) = bencode::decode_prefix(data) {
        assert!(used <= data.len());
    }
    let _ = bencode::raw_dict_value(data, b"info");
});
