#![no_main]
//! A resume file as it may be found on disk (truncated, corrupt, another torrent's): read it
//! for a three-file torrent and reconcile it with stamps taken from the input's tail.
//! Nothing may panic, and trusted pieces are never pieces to recheck.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use webtorrent_core::creator::{CreatedTorrent, TorrentCreator};
use webtorrent_core::resume::{FileStamp, ResumeData};

fn torrent() -> &'static CreatedTorrent {
    static T: OnceLock<CreatedTorrent> = OnceLock::new();
    T.get_or_init(|| {
        let (a, b, c) = (vec![1u8; 40_000], vec![2u8; 20_000], vec![3u8; 30_000]);
        TorrentCreator::new()
            .with_piece_length(16 * 1024)
            .create_multi(
                "t",
                vec![
                    (vec!["a".into()], 40_000u64, &a[..]),
                    (vec!["b".into()], 20_000, &b[..]),
                    (vec!["c".into()], 30_000, &c[..]),
                ],
            )
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let t = torrent();
    let info = &t.metainfo.info;
    if let Ok(r) = ResumeData::from_bytes(data, t.info_hash, info) {
        let stamps: Vec<Option<FileStamp>> = (0..3)
            .map(|i| {
                data.get(i).map(|&b| FileStamp {
                    size: u64::from(b),
                    mtime_ns: u64::from(b),
                })
            })
            .collect();
        let out = r.reconcile(info, &stamps);
        for p in out.have.ones() {
            assert!(!out.recheck.get_raw(p));
        }
        assert_eq!(ResumeData::from_bytes(&r.to_bytes(), t.info_hash, info).unwrap(), r);
    }
});
