//! Fast resume: what a client remembers of a torrent between runs, so that a restart serves
//! at once instead of rehashing every byte.
//!
//! [`ResumeData`] holds the pieces verified and, for each file, the size and modification
//! time it had when they were. On restart, [`ResumeData::reconcile`] compares them with the
//! files as they are now: pieces that lie only in unchanged files are trusted, pieces that
//! touch a changed or missing file must be checked again (only those). Pieces are recorded
//! only once verified, so the worst a stale resume file can do is make a client fetch
//! again what it already had.
//!
//! The format is a bencoded dictionary (version 1), bounded when read: a file that is
//! corrupt, truncated or for another torrent is an error, and the driver then rechecks.

use crate::bencode::{self, Limits, Value};
use crate::id::InfoHash;
use crate::metainfo::Info;
use crate::piece::{Bitfield, PieceIndex};

/// The format version written.
pub const VERSION: i64 = 1;

/// A file's identity on disk: what changes when it is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, in nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
}

/// A torrent's resume data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeData {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Verified pieces.
    pub pieces: Bitfield,
    /// Each file's stamp when `pieces` was recorded, in torrent order; `None` for a file
    /// that did not exist (or is a BEP 47 padding file).
    pub files: Vec<Option<FileStamp>>,
    /// Where the driver keeps the torrent's content (the folder holding its name), so that
    /// it can be started again from this record alone; `None` when it does not say.
    pub save_path: Option<String>,
}

/// Why resume data cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Not the format, truncated or corrupt.
    #[error("malformed resume data: {0}")]
    Malformed(&'static str),
    /// Written by a newer version.
    #[error("resume data of unknown version {0}")]
    Version(i64),
    /// For another torrent or another layout of it.
    #[error("resume data for another torrent: {0}")]
    Mismatch(&'static str),
}

/// What a restart may trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Pieces verified before and lying only in unchanged files.
    pub have: Bitfield,
    /// Pieces to hash again: every piece touching a file that changed, appeared or went.
    pub recheck: Bitfield,
    /// Indexes of the files that changed.
    pub changed_files: Vec<usize>,
}

impl ResumeData {
    /// Resume data for `info` with nothing verified and no stamps.
    pub fn empty(info_hash: InfoHash, info: &Info) -> Self {
        ResumeData {
            info_hash,
            pieces: Bitfield::new(info.num_pieces()),
            files: vec![None; info.files.len()],
            save_path: None,
        }
    }

    /// The bencoded form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.pieces.as_bytes().len() + 24 * self.files.len());
        out.push(b'd');
        bencode::write_bytes(&mut out, b"files");
        out.push(b'l');
        for f in &self.files {
            out.push(b'l');
            if let Some(f) = f {
                bencode::write_int(&mut out, i64::try_from(f.size).unwrap_or(i64::MAX));
                bencode::write_int(&mut out, i64::try_from(f.mtime_ns).unwrap_or(i64::MAX));
            }
            out.push(b'e');
        }
        out.push(b'e');
        bencode::write_bytes(&mut out, b"info-hash");
        bencode::write_bytes(&mut out, &self.info_hash.0);
        bencode::write_bytes(&mut out, b"num-pieces");
        bencode::write_int(&mut out, i64::from(self.pieces.len()));
        bencode::write_bytes(&mut out, b"pieces");
        bencode::write_bytes(&mut out, self.pieces.as_bytes());
        if let Some(p) = &self.save_path {
            bencode::write_bytes(&mut out, b"save-path");
            bencode::write_bytes(&mut out, p.as_bytes());
        }
        bencode::write_bytes(&mut out, b"version");
        bencode::write_int(&mut out, VERSION);
        out.push(b'e');
        out
    }

    /// Reads resume data written for `info_hash` / `info`; anything else is an error.
    pub fn from_bytes(b: &[u8], info_hash: InfoHash, info: &Info) -> Result<Self, ResumeError> {
        let limits = Limits {
            max_depth: 4,
            max_values: 8 + 4 * info.files.len().min(1 << 20),
        };
        let v = bencode::decode_with(b, limits)
            .map_err(|_| ResumeError::Malformed("not bencode within bounds"))?;
        let version = v
            .get(b"version")
            .and_then(Value::as_int)
            .ok_or(ResumeError::Malformed("no version"))?;
        if version != VERSION {
            return Err(ResumeError::Version(version));
        }
        let ih = v
            .get(b"info-hash")
            .and_then(Value::as_bytes)
            .ok_or(ResumeError::Malformed("no info hash"))?;
        if ih != info_hash.0 {
            return Err(ResumeError::Mismatch("its info hash differs"));
        }
        let n = v
            .get(b"num-pieces")
            .and_then(Value::as_int)
            .ok_or(ResumeError::Malformed("no piece count"))?;
        if n != i64::from(info.num_pieces()) {
            return Err(ResumeError::Mismatch("its piece count differs"));
        }
        let bits = v
            .get(b"pieces")
            .and_then(Value::as_bytes)
            .ok_or(ResumeError::Malformed("no pieces"))?;
        let pieces = Bitfield::from_bytes(bits, info.num_pieces()).map_err(|_| {
            ResumeError::Malformed("the piece bitfield has the wrong length or spare bits set")
        })?;
        let list = v
            .get(b"files")
            .and_then(Value::as_list)
            .ok_or(ResumeError::Malformed("no file list"))?;
        if list.len() != info.files.len() {
            return Err(ResumeError::Mismatch("its file count differs"));
        }
        let mut files = Vec::with_capacity(list.len());
        for f in list {
            let f = f
                .as_list()
                .ok_or(ResumeError::Malformed("a file entry is not a list"))?;
            files.push(match f {
                [] => None,
                [size, mtime] => {
                    let size = size.as_int().and_then(|s| u64::try_from(s).ok());
                    let mtime = mtime.as_int().and_then(|s| u64::try_from(s).ok());
                    match (size, mtime) {
                        (Some(size), Some(mtime_ns)) => Some(FileStamp { size, mtime_ns }),
                        _ => {
                            return Err(ResumeError::Malformed(
                                "a file stamp is not two natural numbers",
                            ))
                        }
                    }
                }
                _ => {
                    return Err(ResumeError::Malformed(
                        "a file entry has neither 0 nor 2 items",
                    ))
                }
            });
        }
        let save_path = match v.get(b"save-path") {
            None => None,
            Some(p) => Some(
                p.as_str()
                    .ok_or(ResumeError::Malformed("the save path is not UTF-8 text"))?
                    .to_string(),
            ),
        };
        Ok(ResumeData {
            info_hash,
            pieces,
            files,
            save_path,
        })
    }

    /// Compares the recorded stamps with the files as they are now (`current`, in torrent
    /// order; `None` for a missing file): what may be trusted and what must be checked.
    pub fn reconcile(&self, info: &Info, current: &[Option<FileStamp>]) -> Reconciled {
        let n = info.num_pieces();
        let mut have = Bitfield::new(n);
        let mut recheck = Bitfield::new(n);
        let changed_files: Vec<usize> = info
            .files
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                !f.padding
                    && self.files.get(*i).copied().flatten() != current.get(*i).copied().flatten()
            })
            .map(|(i, _)| i)
            .collect();
        let layout = info.layout;
        for &i in &changed_files {
            let f = &info.files[i];
            for p in pieces_of(layout, f.offset, f.length) {
                recheck.set(p);
            }
        }
        for p in self.pieces.ones() {
            if let Ok(p) = layout.piece(p) {
                if !recheck.get(p) {
                    have.set(p);
                }
            }
        }
        Reconciled {
            have,
            recheck,
            changed_files,
        }
    }
}

/// The pieces holding bytes `offset..offset + length` (none for an empty range).
fn pieces_of(
    layout: crate::piece::Layout,
    offset: u64,
    length: u64,
) -> impl Iterator<Item = PieceIndex> {
    let pl = u64::from(layout.piece_length()).max(1);
    let (first, last) = if length == 0 {
        (1, 0)
    } else {
        (offset / pl, (offset + length - 1) / pl)
    };
    (first..=last).filter_map(move |i| u32::try_from(i).ok().and_then(|i| layout.piece(i).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::creator::TorrentCreator;
    use crate::metainfo::Metainfo;
    use proptest::prelude::*;

    /// Three files of 100 000, 50 000 and 70 000 bytes, 32 KiB pieces.
    fn meta() -> Metainfo {
        let (a, b, c) = (vec![1u8; 100_000], vec![2u8; 50_000], vec![3u8; 70_000]);
        let files = vec![
            (vec!["a".to_string()], 100_000u64, &a[..]),
            (vec!["b".to_string()], 50_000, &b[..]),
            (vec!["c".to_string()], 70_000, &c[..]),
        ];
        let t = TorrentCreator::new()
            .with_piece_length(32 * 1024)
            .create_multi("multi", files)
            .expect("torrent");
        t.metainfo
    }

    fn stamps(m: &Metainfo, t: u64) -> Vec<Option<FileStamp>> {
        m.info
            .files
            .iter()
            .map(|f| {
                Some(FileStamp {
                    size: f.length,
                    mtime_ns: t,
                })
            })
            .collect()
    }

    #[test]
    fn round_trips_and_refuses_what_is_not_its_own() {
        let m = meta();
        let mut r = ResumeData::empty(m.info_hash, &m.info);
        r.pieces.set(m.info.layout.piece(3).unwrap());
        r.files = stamps(&m, 7);
        r.files[1] = None;
        r.save_path = Some("/data/här".into());
        let b = r.to_bytes();
        assert_eq!(ResumeData::from_bytes(&b, m.info_hash, &m.info).unwrap(), r);
        let mut other = m.info_hash;
        other.0[0] ^= 1;
        assert!(matches!(
            ResumeData::from_bytes(&b, other, &m.info),
            Err(ResumeError::Mismatch(_))
        ));
        for cut in [0, 1, b.len() / 2, b.len() - 1] {
            assert!(
                ResumeData::from_bytes(&b[..cut], m.info_hash, &m.info).is_err(),
                "cut at {cut}"
            );
        }
        let at = b
            .windows(12)
            .position(|w| w == b"7:versioni1e")
            .expect("version key");
        let mut v2 = b.clone();
        v2[at + 10] = b'2';
        assert_eq!(
            ResumeData::from_bytes(&v2, m.info_hash, &m.info),
            Err(ResumeError::Version(2))
        );
    }

    #[test]
    fn a_changed_file_costs_only_its_pieces() {
        let m = meta();
        let n = m.info.num_pieces();
        let mut r = ResumeData::empty(m.info_hash, &m.info);
        r.pieces = Bitfield::full(n);
        r.files = stamps(&m, 7);
        let same = r.reconcile(&m.info, &stamps(&m, 7));
        assert_eq!(same.have.count(), n);
        assert_eq!(same.recheck.count(), 0);
        assert!(same.changed_files.is_empty());
        // File b (bytes 100 000..150 000) was written to: pieces 3 and 4 (32 KiB pieces).
        let mut now = stamps(&m, 7);
        now[1] = Some(FileStamp {
            size: 50_000,
            mtime_ns: 8,
        });
        let r2 = r.reconcile(&m.info, &now);
        assert_eq!(r2.changed_files, vec![1]);
        let recheck: Vec<u32> = r2.recheck.ones().collect();
        assert_eq!(recheck, vec![3, 4]);
        assert_eq!(r2.have.count(), n - 2);
        // A missing file: the same.
        now[1] = None;
        assert_eq!(
            r.reconcile(&m.info, &now)
                .recheck
                .ones()
                .collect::<Vec<_>>(),
            vec![3, 4]
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let m = meta();
            let _ = ResumeData::from_bytes(&b, m.info_hash, &m.info);
        }

        #[test]
        fn trusted_and_rechecked_pieces_never_overlap(changed in proptest::collection::vec(any::<bool>(), 3), had in any::<u8>()) {
            let m = meta();
            let mut r = ResumeData::empty(m.info_hash, &m.info);
            for i in 0..m.info.num_pieces() {
                if had & (1 << i) != 0 {
                    r.pieces.set(m.info.layout.piece(i).unwrap());
                }
            }
            r.files = stamps(&m, 1);
            let now: Vec<_> = m.info.files.iter().zip(&changed)
                .map(|(f, c)| Some(FileStamp { size: f.length, mtime_ns: if *c { 2 } else { 1 } }))
                .collect();
            let out = r.reconcile(&m.info, &now);
            for p in out.have.ones() {
                prop_assert!(!out.recheck.get_raw(p));
                prop_assert!(r.pieces.get_raw(p));
            }
        }
    }
}
