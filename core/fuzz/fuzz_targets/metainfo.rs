#![no_main]
//! Arbitrary bytes as a torrent file and as an info dictionary; what parses must write back
//! out and parse to the same torrent with the same info hash.
use libfuzzer_sys::fuzz_target;
use webtorrent_core::metainfo::{Info, Metainfo, MetainfoLimits};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        let written = m.to_bytes();
        let again = Metainfo::from_bytes(&written).expect("written torrent parses");
        assert_eq!(again.info_hash, m.info_hash);
        assert_eq!(again.info, m.info);
        let total: u64 = m.info.files.iter().map(|f| f.length).sum();
        assert_eq!(total, m.info.total_length());
        for p in m.info.layout.pieces().take(4) {
            let start = m.info.layout.piece_offset(p);
            let len = u64::from(m.info.layout.piece_len(p));
            let covered: u64 = m.info.file_slices(start..start + len).map(|s| s.2).sum();
            assert_eq!(covered, len);
        }
    }
    let _ = Info::from_bytes(data, &MetainfoLimits::default());
});
