//! Fast resume on disk: for each torrent with files, `<dir>/<info hash>.resume` holds the
//! pieces verified and each file's size and modification time
//! ([`webtorrent_core::resume::ResumeData`]). Written atomically (a temporary file renamed
//! over the old one) after the data it records is flushed, so a crash never leaves a piece
//! recorded whose bytes are not on disk; read back when the torrent is added again, so that
//! only the pieces of files changed since are hashed.

use std::io::{self, Write};
use std::path::PathBuf;

use tracing::{debug, warn};
use webtorrent_core::metainfo::Info;
use webtorrent_core::piece::Bitfield;
use webtorrent_core::resume::ResumeData;
use webtorrent_core::InfoHash;

use crate::storage::{verify_pieces, Storage};

/// The folder of resume files.
#[derive(Debug, Clone)]
pub(crate) struct ResumeStore {
    dir: PathBuf,
}

impl ResumeStore {
    pub fn new(dir: PathBuf) -> Self {
        ResumeStore { dir }
    }

    fn path(&self, info_hash: InfoHash) -> PathBuf {
        self.dir.join(format!("{}.resume", info_hash.to_hex()))
    }

    /// The torrent's resume data; `None` when there is none, and (with a warning) when it is
    /// unusable: the torrent is then checked in full.
    pub fn load(&self, info_hash: InfoHash, info: &Info) -> Option<ResumeData> {
        let path = self.path(info_hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read resume data: checking every piece");
                return None;
            }
        };
        match ResumeData::from_bytes(&bytes, info_hash, info) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "ignoring resume data: checking every piece");
                None
            }
        }
    }

    /// Writes `data` atomically.
    pub fn save(&self, data: &ResumeData) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(data.info_hash);
        let tmp = path.with_extension("resume.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data.to_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    }
}

/// The pieces of `storage` to start with: from resume data, hashing only the pieces of
/// files changed since it was written; `None` when there is no usable resume data.
pub(crate) fn resume_have(
    store: &ResumeStore,
    info_hash: InfoHash,
    info: &Info,
    storage: &dyn Storage,
) -> Option<Bitfield> {
    let r = store.load(info_hash, info)?;
    let stamps = storage.stamps()?;
    let rec = r.reconcile(info, &stamps);
    let mut have = rec.have;
    if rec.recheck.count() > 0 {
        let checked = verify_pieces(info, storage, Some(&rec.recheck));
        debug!(files = ?rec.changed_files, rechecked = rec.recheck.count(), found = checked.count(), "files changed since the resume data: their pieces rechecked");
        for p in checked.ones() {
            if let Ok(p) = info.layout.piece(p) {
                have.set(p);
            }
        }
    }
    Some(have)
}

/// Records `have` of `storage` in `store`: flushes the data first, then stamps the files.
pub(crate) fn record(
    store: &ResumeStore,
    info_hash: InfoHash,
    have: Bitfield,
    storage: &dyn Storage,
) {
    if let Err(e) = storage.flush() {
        warn!(error = %e, "cannot flush the data: resume data not written");
        return;
    }
    let Some(files) = storage.stamps() else {
        return;
    };
    let data = ResumeData {
        info_hash,
        pieces: have,
        files,
    };
    if let Err(e) = store.save(&data) {
        warn!(dir = %store.dir.display(), error = %e, "cannot write resume data");
    }
}
