#![no_main]
//! Arbitrary text as a magnet link; what parses must round-trip through `to_uri`.
use libfuzzer_sys::fuzz_target;
use webtorrent_core::magnet::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for candidate in [s.to_string(), format!("magnet:?{s}")] {
        if let Ok(m) = Magnet::parse(&candidate) {
            let again = Magnet::parse(&m.to_uri()).expect("built link parses");
            assert_eq!(again, m);
        }
    }
});
