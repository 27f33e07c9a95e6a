//! Piece storage: in memory or in files below a folder.
//!
//! Offsets are positions in the torrent's byte stream; file storage maps them to files with
//! [`Info::file_slices`]. Reads and writes are positional, so they can run on any thread.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use webtorrent_core::memory::MemoryBuffer;
use webtorrent_core::metainfo::Info;
use webtorrent_core::piece::{sha1, Bitfield};
use webtorrent_core::resume::FileStamp;

/// Where a torrent's bytes live.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Reads `len` bytes at torrent offset `offset`.
    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes>;
    /// Like [`read`](Self::read), into `spare` if it is given and the storage copies (a
    /// buffer from an earlier read, to save allocating and zeroing a new one).
    fn read_reusing(&self, offset: u64, len: usize, spare: Option<BytesMut>) -> io::Result<Bytes> {
        let _ = spare;
        self.read(offset, len)
    }
    /// Writes `data` at torrent offset `offset`.
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes written data durable (no-op in memory).
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    /// Each file's size and modification time, in torrent order (`None`: missing, or a
    /// padding file), for fast resume; `None` for storage that is not files.
    fn stamps(&self) -> Option<Vec<Option<FileStamp>>> {
        None
    }
}

/// A file's stamp, `None` when it cannot be read.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(FileStamp {
        size: m.len(),
        mtime_ns: u64::try_from(mtime.as_nanos()).unwrap_or(u64::MAX),
    })
}

/// A torrent held in memory: either seeded from bytes (zero-copy reads) or downloaded.
#[derive(Debug)]
pub struct MemoryStorage {
    data: RwLock<MemoryData>,
}

#[derive(Debug)]
enum MemoryData {
    Shared(Bytes),
    Owned(MemoryBuffer),
}

impl MemoryStorage {
    /// Storage for seeding `data`; reads are slices of it.
    pub fn from_bytes(data: Bytes) -> Self {
        MemoryStorage {
            data: RwLock::new(MemoryData::Shared(data)),
        }
    }

    /// Empty storage of `len` bytes for a download; memory is taken as pieces are written.
    pub fn new(len: u64) -> Self {
        MemoryStorage {
            data: RwLock::new(MemoryData::Owned(MemoryBuffer::new(len))),
        }
    }

    /// Storage for downloading a torrent of `len` bytes into memory, or why not: a torrent
    /// above `limit` ([`WebTorrentOptions::memory_limit`](crate::WebTorrentOptions)) needs a
    /// download folder.
    pub(crate) fn for_download(len: u64, limit: u64) -> Result<Self, String> {
        if len > limit {
            return Err(format!(
                "the torrent is {} and downloads without a folder are kept in memory, up to {}: \
                 give the client a download folder (WebTorrentOptions::download_dir, or --out \
                 on the command line) or raise WebTorrentOptions::memory_limit",
                crate::human_bytes(len),
                crate::human_bytes(limit)
            ));
        }
        Ok(Self::new(len))
    }

    /// A copy of the whole content.
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        match &*self.data.read().unwrap_or_else(|e| e.into_inner()) {
            MemoryData::Shared(b) => Ok(b.clone()),
            MemoryData::Owned(m) => {
                let len = usize::try_from(m.len()).map_err(|_| out_of_range())?;
                Ok(Bytes::from(m.read(0, len).map_err(|_| out_of_range())?))
            }
        }
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "range outside the torrent")
}

impl Storage for MemoryStorage {
    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(len).ok_or_else(out_of_range)?;
        match &*self.data.read().unwrap_or_else(|e| e.into_inner()) {
            MemoryData::Shared(b) if end <= b.len() => Ok(b.slice(start..end)),
            MemoryData::Owned(m) => m
                .read(offset, len)
                .map(Bytes::from)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e)),
            _ => Err(out_of_range()),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(data.len()).ok_or_else(out_of_range)?;
        let mut guard = self.data.write().unwrap_or_else(|e| e.into_inner());
        if let MemoryData::Shared(b) = &*guard {
            // Seeded data is immutable; a write means a re-download: switch to owned bytes.
            if end > b.len() {
                return Err(out_of_range());
            }
            let mut owned = MemoryBuffer::new(b.len() as u64);
            owned.write(0, b).map_err(|_| out_of_range())?;
            *guard = MemoryData::Owned(owned);
        }
        match &mut *guard {
            MemoryData::Owned(m) => m
                .write(offset, data)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e)),
            MemoryData::Shared(_) => Err(out_of_range()),
        }
    }
}

/// A torrent stored as files below a folder: `folder/name` for single-file torrents,
/// `folder/name/path…` for multi-file ones.
#[derive(Debug)]
pub struct FileStorage {
    info: Arc<Info>,
    paths: Vec<PathBuf>,
    open: Mutex<HashMap<usize, Arc<File>>>,
    /// Descriptors opened with `O_DIRECT` for page-aligned writes (`None`: not possible there).
    direct: Mutex<HashMap<usize, Option<Arc<File>>>>,
    /// Cleared when a direct write is refused: everything goes through the page cache then.
    direct_ok: AtomicBool,
    writable: bool,
}

/// Alignment (memory address, file offset and length) that direct writes need; a page
/// satisfies every common file system and device.
#[cfg(target_os = "linux")]
const DIRECT_ALIGN: usize = 4096;

impl FileStorage {
    /// Storage for `info` below `folder`. Files are created on first write (and pre-sized).
    pub fn new(folder: &Path, info: Arc<Info>) -> Self {
        let paths = info
            .files
            .iter()
            .map(|f| {
                let mut p = folder.to_path_buf();
                if !info.single_file {
                    p.push(&info.name);
                }
                for c in &f.path {
                    p.push(c);
                }
                p
            })
            .collect();
        FileStorage {
            info,
            paths,
            open: Mutex::new(HashMap::new()),
            direct: Mutex::new(HashMap::new()),
            direct_ok: AtomicBool::new(true),
            writable: true,
        }
    }

    /// Storage over existing files that are only read (seeding files the user gave us).
    pub fn read_only(folder: &Path, info: Arc<Info>) -> Self {
        let mut s = Self::new(folder, info);
        s.writable = false;
        s
    }

    /// Read-only storage for a single-file torrent whose content is the file at `file`,
    /// whatever its name. Fails with `InvalidInput` for a multi-file torrent.
    pub fn read_only_file(file: &Path, info: Arc<Info>) -> io::Result<Self> {
        if !info.single_file {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a multi-file torrent is stored in a folder, not in one file",
            ));
        }
        let paths = info.files.iter().map(|_| file.to_path_buf()).collect();
        Ok(FileStorage {
            info,
            paths,
            open: Mutex::new(HashMap::new()),
            direct: Mutex::new(HashMap::new()),
            direct_ok: AtomicBool::new(true),
            writable: false,
        })
    }

    /// Creates the folders and every empty file (files with data are created on first write).
    pub fn prepare(&self) -> io::Result<()> {
        for (i, f) in self.info.files.iter().enumerate() {
            if f.padding {
                continue;
            }
            if let Some(parent) = self.paths[i].parent() {
                std::fs::create_dir_all(parent)?;
            }
            if f.length == 0 {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&self.paths[i])?;
            }
        }
        Ok(())
    }

    /// The path of each file.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn file(&self, idx: usize, create: bool) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(&idx) {
            return Ok(f.clone());
        }
        let path = &self.paths[idx];
        let f = if self.writable {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(path)?
                }
                Err(e) => return Err(e),
            }
        } else {
            File::open(path)?
        };
        if self.writable && create {
            let want = self.info.files[idx].length;
            if f.metadata()?.len() < want {
                f.set_len(want)?;
            }
        }
        let f = Arc::new(f);
        // Bound the number of open descriptors.
        if open.len() >= 128 {
            open.clear();
        }
        open.insert(idx, f.clone());
        Ok(f)
    }

    /// Writes `chunk` at `off` of file `idx` with direct I/O if everything is page-aligned and
    /// the file system takes it: the bytes go to the disk without a copy into the page cache,
    /// and the final flush has nothing left to write back. `Ok(false)`: not written, use the
    /// page cache. The file exists (and has its size) already.
    #[cfg(target_os = "linux")]
    fn write_direct(&self, idx: usize, chunk: &[u8], off: u64) -> io::Result<bool> {
        use std::os::unix::fs::OpenOptionsExt;
        if chunk.is_empty()
            || !self.direct_ok.load(Ordering::Relaxed)
            || chunk.as_ptr().align_offset(DIRECT_ALIGN) != 0
            || chunk.len() % DIRECT_ALIGN != 0
            || off % DIRECT_ALIGN as u64 != 0
        {
            return Ok(false);
        }
        let f = {
            let mut direct = self.direct.lock().unwrap_or_else(|e| e.into_inner());
            if direct.len() >= 128 && !direct.contains_key(&idx) {
                direct.clear();
            }
            direct
                .entry(idx)
                .or_insert_with(|| {
                    OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_DIRECT)
                        .open(&self.paths[idx])
                        .ok()
                        .map(Arc::new)
                })
                .clone()
        };
        let Some(f) = f else {
            return Ok(false);
        };
        match f.write_all_at(chunk, off) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct_ok.store(false, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn write_direct(&self, _idx: usize, _chunk: &[u8], _off: u64) -> io::Result<bool> {
        Ok(false)
    }
}

impl Storage for FileStorage {
    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.read_reusing(offset, len, None)
    }

    fn read_reusing(&self, offset: u64, len: usize, spare: Option<BytesMut>) -> io::Result<Bytes> {
        let mut buf = match spare {
            // Only the bytes beyond its current length are zeroed (none for a piece buffer
            // reused for a piece of the same size); all of them are overwritten below.
            Some(mut b) if b.len() >= len => {
                b.truncate(len);
                b
            }
            Some(mut b) => {
                b.resize(len, 0);
                b
            }
            None => BytesMut::zeroed(len),
        };
        let mut pos = 0usize;
        for (idx, file_off, n) in self.info.file_slices(offset..offset + len as u64) {
            let n = n as usize;
            let Some(dst) = buf.get_mut(pos..pos + n) else {
                return Err(out_of_range());
            };
            if self.info.files[idx].padding {
                // A reused buffer holds old bytes.
                dst.fill(0);
            } else {
                let f = self.file(idx, false)?;
                f.read_exact_at(dst, file_off)?;
            }
            pos += n;
        }
        if pos != len {
            return Err(out_of_range());
        }
        Ok(buf.freeze())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only storage",
            ));
        }
        let mut pos = 0usize;
        for (idx, file_off, n) in self.info.file_slices(offset..offset + data.len() as u64) {
            let n = n as usize;
            if !self.info.files[idx].padding {
                let chunk = data.get(pos..pos + n).ok_or_else(out_of_range)?;
                let f = self.file(idx, true)?;
                if !self.write_direct(idx, chunk, file_off)? {
                    f.write_all_at(chunk, file_off)?;
                }
            }
            pos += n;
        }
        Ok(())
    }

    fn stamps(&self) -> Option<Vec<Option<FileStamp>>> {
        Some(
            self.info
                .files
                .iter()
                .zip(&self.paths)
                .map(|(f, p)| if f.padding { None } else { file_stamp(p) })
                .collect(),
        )
    }

    fn flush(&self) -> io::Result<()> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for f in open.values() {
            f.sync_data()?;
        }
        Ok(())
    }
}

/// Hashes every piece present in `storage` and returns the ones that match, using all cores
/// and reading one piece at a time per thread (resume of a partial download).
pub fn verify_existing(info: &Info, storage: &dyn Storage) -> Bitfield {
    verify_pieces(info, storage, None)
}

/// [`verify_existing`] for the pieces in `only` (all when `None`).
pub fn verify_pieces(info: &Info, storage: &dyn Storage, only: Option<&Bitfield>) -> Bitfield {
    let layout = info.layout;
    let n = layout.num_pieces();
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let next = std::sync::atomic::AtomicU32::new(0);
    let found = Mutex::new(Bitfield::new(n));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Ok(p) = layout.piece(i) else {
                    break;
                };
                if only.is_some_and(|o| !o.get(p)) {
                    continue;
                }
                let off = layout.piece_offset(p);
                let len = layout.piece_len(p) as usize;
                if let Ok(data) = storage.read(off, len) {
                    if sha1(&data) == info.piece_hash(p) {
                        found.lock().unwrap_or_else(|e| e.into_inner()).set(p);
                    }
                }
            });
        }
    });
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use webtorrent_core::creator::TorrentCreator;

    #[test]
    fn file_storage_spans_files_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let files = vec![
            (vec!["a".to_string()], 30_000u64, &data[..30_000]),
            (
                vec!["d".to_string(), "b".to_string()],
                0,
                &data[30_000..30_000],
            ),
            (
                vec!["d".to_string(), "c".to_string()],
                70_000,
                &data[30_000..],
            ),
        ];
        let t = TorrentCreator::new()
            .with_piece_length(16384)
            .create_multi("multi", files)
            .unwrap();
        let info = Arc::new(t.metainfo.info.clone());
        let st = FileStorage::new(dir.path(), info.clone());
        assert_eq!(verify_existing(&info, &st).count(), 0);
        st.prepare().unwrap();
        // Write everything but piece 3.
        for p in info.layout.pieces() {
            if p.get() == 3 {
                continue;
            }
            let off = info.layout.piece_offset(p) as usize;
            let len = info.layout.piece_len(p) as usize;
            st.write(off as u64, &data[off..off + len]).unwrap();
        }
        st.flush().unwrap();
        let have = verify_existing(&info, &st);
        assert_eq!(have.count(), info.num_pieces() - 1);
        assert!(!have.get_raw(3));
        assert_eq!(
            std::fs::read(dir.path().join("multi/a")).unwrap(),
            &data[..30_000]
        );
        assert_eq!(st.read(29_000, 2000).unwrap(), &data[29_000..31_000]);
        assert!(dir.path().join("multi/d/b").exists());
    }

    #[test]
    fn a_single_file_torrent_reads_from_a_file_of_any_name_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let t = TorrentCreator::new()
            .with_piece_length(16384)
            .create_single_from_reader("name.bin", data.len() as u64, &data[..])
            .unwrap();
        let info = Arc::new(t.metainfo.info.clone());
        let file = dir.path().join("other name.dat");
        std::fs::write(&file, &data).unwrap();
        let st = FileStorage::read_only_file(&file, info.clone()).unwrap();
        assert_eq!(st.paths(), std::slice::from_ref(&file));
        assert_eq!(verify_existing(&info, &st).count(), info.num_pieces());
        assert_eq!(st.read(40_000, 100).unwrap(), &data[40_000..40_100]);
        assert_eq!(
            st.write(0, b"x").unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(std::fs::read(&file).unwrap(), data);
        assert!(!dir.path().join("name.bin").exists());

        // A missing file verifies nothing and is not created.
        let gone = dir.path().join("gone.bin");
        let st = FileStorage::read_only_file(&gone, info.clone()).unwrap();
        assert_eq!(verify_existing(&info, &st).count(), 0);
        assert!(!gone.exists());

        let multi = TorrentCreator::new()
            .create_multi("multi", vec![(vec!["a".to_string()], 1u64, &b"a"[..])])
            .unwrap();
        let err = FileStorage::read_only_file(&file, Arc::new(multi.metainfo.info.clone()));
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn aligned_writes_read_back_whatever_path_they_take() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..65_536u32 + 5000).map(|i| (i % 251) as u8).collect();
        let t = TorrentCreator::new()
            .with_piece_length(16384)
            .create_single_from_reader("f", data.len() as u64, &data[..])
            .unwrap();
        let info = Arc::new(t.metainfo.info.clone());
        let st = FileStorage::new(dir.path(), info.clone());
        st.prepare().unwrap();
        // Page-aligned copies of each piece (direct I/O where the file system allows it);
        // the short last piece goes through the page cache.
        let mut backing = vec![0u8; 16384 + 4096];
        let skip = backing.as_ptr().align_offset(4096);
        for p in info.layout.pieces() {
            let off = info.layout.piece_offset(p) as usize;
            let len = info.layout.piece_len(p) as usize;
            let buf = &mut backing[skip..skip + len];
            buf.copy_from_slice(&data[off..off + len]);
            st.write(off as u64, buf).unwrap();
        }
        st.flush().unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), data);
        assert_eq!(st.read(16000, 1000).unwrap(), &data[16000..17000]);
        assert_eq!(verify_existing(&info, &st).count(), info.num_pieces());
    }

    #[test]
    fn memory_storage_bounds() {
        let m = MemoryStorage::from_bytes(Bytes::from_static(b"hello world"));
        assert_eq!(m.read(6, 5).unwrap(), "world");
        assert!(m.read(8, 5).is_err());
        let w = MemoryStorage::new(4);
        w.write(1, b"ab").unwrap();
        assert!(w.write(3, b"ab").is_err());
        assert_eq!(w.to_bytes().unwrap(), &b"\0ab\0"[..]);
    }
}
