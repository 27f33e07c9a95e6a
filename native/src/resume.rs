//! Fast resume on disk: for each torrent with files, `<dir>/<info hash>.resume` holds the
//! pieces verified and each file's size and modification time
//! ([`webtorrent_core::resume::ResumeData`]). Written atomically (a temporary file renamed
//! over the old one) after the data it records is flushed, so a crash never leaves a piece
//! recorded whose bytes are not on disk; read back when the torrent is added again, so that
//! only the pieces of files changed since are hashed. The torrent file is kept beside its
//! record, with the folder of its data, so the state folder alone can start it again
//! ([`saved_torrents`], [`WebTorrent::restore`](crate::WebTorrent::restore)).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};
use webtorrent_core::metainfo::{Info, Metainfo};
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

    fn torrent_path(&self, info_hash: InfoHash) -> PathBuf {
        self.dir.join(format!("{}.torrent", info_hash.to_hex()))
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
/// The torrent itself is kept beside it (once), with `folder`, so that the record alone can
/// start it again ([`saved_torrents`]).
pub(crate) fn record(
    store: &ResumeStore,
    meta: &Metainfo,
    folder: Option<&Path>,
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
    let torrent = store.torrent_path(meta.info_hash);
    if !torrent.exists() {
        if let Err(e) = write_atomically(&torrent, &meta.to_bytes()) {
            warn!(path = %torrent.display(), error = %e, "cannot keep the torrent in the state folder");
        }
    }
    let data = ResumeData {
        info_hash: meta.info_hash,
        pieces: have,
        files,
        save_path: folder
            .and_then(|f| std::path::absolute(f).ok())
            .and_then(|f| f.to_str().map(str::to_string)),
    };
    if let Err(e) = store.save(&data) {
        warn!(dir = %store.dir.display(), error = %e, "cannot write resume data");
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// A torrent the state folder holds.
#[derive(Debug, Clone)]
pub struct SavedTorrent {
    /// Its info hash.
    pub info_hash: InfoHash,
    /// Its name.
    pub name: String,
    /// The torrent file.
    pub torrent: bytes::Bytes,
    /// Pieces verified when it was last recorded.
    pub pieces_had: u32,
    /// Its pieces.
    pub num_pieces: u32,
    /// Bytes in all.
    pub length: u64,
    /// The folder holding its content (`None`: not recorded).
    pub save_path: Option<PathBuf>,
}

impl SavedTorrent {
    /// Whether every piece was verified.
    pub fn complete(&self) -> bool {
        self.pieces_had == self.num_pieces
    }
}

/// The torrents recorded in the fast-resume folder `dir` (see
/// [`WebTorrentOptions::resume_dir`](crate::WebTorrentOptions::resume_dir)), by info hash.
/// Records that cannot be read are left out with a warning.
pub fn saved_torrents(dir: &Path) -> Vec<SavedTorrent> {
    let store = ResumeStore::new(dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".resume")) else {
            continue;
        };
        let Ok(info_hash) = InfoHash::from_hex_or_base32(hex) else {
            continue;
        };
        let Ok(torrent) = std::fs::read(store.torrent_path(info_hash)) else {
            debug!(%hex, "resume data without its torrent: left out");
            continue;
        };
        let meta = match Metainfo::from_bytes(&torrent) {
            Ok(m) if m.info_hash == info_hash => m,
            _ => {
                warn!(%hex, "the state folder's torrent file is damaged: left out");
                continue;
            }
        };
        let Some(r) = store.load(info_hash, &meta.info) else {
            continue;
        };
        out.push(SavedTorrent {
            info_hash,
            name: meta.info.name.clone(),
            torrent: torrent.into(),
            pieces_had: r.pieces.count(),
            num_pieces: meta.info.num_pieces(),
            length: meta.info.total_length(),
            save_path: r.save_path.map(PathBuf::from),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.info_hash.0.cmp(&b.info_hash.0)));
    out
}

/// Forgets a torrent in the fast-resume folder `dir` (its record and torrent file; its data
/// stays where it is). `false` when there was nothing to forget.
pub fn forget_torrent(dir: &Path, info_hash: InfoHash) -> io::Result<bool> {
    let store = ResumeStore::new(dir.to_path_buf());
    let mut found = false;
    for p in [store.path(info_hash), store.torrent_path(info_hash)] {
        match std::fs::remove_file(&p) {
            Ok(()) => found = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}
