//! Creating torrents from memory or from disk, hashing on every core.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use webtorrent_core::creator::{CreatedTorrent, FileSpec, TorrentCreator as CoreCreator};
use webtorrent_core::piece::sha1;
use webtorrent_core::InfoHash;

use crate::{Error, Result};

/// Builds `.torrent` files. Hashing runs on all cores and reads files piece by piece.
#[derive(Debug, Clone)]
pub struct TorrentCreator {
    core: CoreCreator,
    piece_length: Option<u32>,
    progress: Option<Arc<AtomicU64>>,
}

impl Default for TorrentCreator {
    fn default() -> Self {
        Self::new()
    }
}

impl TorrentCreator {
    /// A creator with no trackers, automatic piece length, `created by` set to this library
    /// and the current time as creation date.
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        TorrentCreator {
            core: CoreCreator::new()
                .with_created_by(concat!("webtorrent-rs/", env!("CARGO_PKG_VERSION")))
                .with_creation_date(now),
            piece_length: None,
            progress: None,
        }
    }

    /// Trackers: the first URL becomes `announce`, each URL a tier of `announce-list`.
    pub fn with_announce(mut self, urls: Vec<String>) -> Self {
        self.core = self.core.with_announce(urls);
        self
    }

    /// A fixed piece length (a power of two, 16 KiB – 64 MiB).
    pub fn with_piece_length(mut self, len: u32) -> Self {
        self.core = self.core.with_piece_length(len);
        self.piece_length = Some(len);
        self
    }

    /// The private flag (BEP 27).
    pub fn with_private(mut self, private: bool) -> Self {
        self.core = self.core.with_private(private);
        self
    }

    /// A comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.core = self.core.with_comment(comment);
        self
    }

    /// Web seeds (BEP 19).
    pub fn with_url_list(mut self, urls: Vec<String>) -> Self {
        self.core = self.core.with_url_list(urls);
        self
    }

    /// The creation date, seconds since the Unix epoch.
    pub fn with_creation_date(mut self, secs: i64) -> Self {
        self.core = self.core.with_creation_date(secs);
        self
    }

    /// Counts hashed bytes into `counter` (for progress bars).
    pub fn with_progress(mut self, counter: Arc<AtomicU64>) -> Self {
        self.progress = Some(counter);
        self
    }

    /// A single-file torrent from bytes: returns the `.torrent` file and its info hash.
    pub async fn create_from_data(
        &self,
        name: String,
        data: impl Into<Bytes>,
    ) -> Result<(Bytes, InfoHash)> {
        let t = self.create(&name, data.into()).await?;
        Ok((t.torrent_file, t.info_hash))
    }

    /// A single-file torrent from bytes, with the parsed result.
    pub async fn create(&self, name: &str, data: Bytes) -> Result<CreatedTorrent> {
        let this = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let len = data.len() as u64;
            let pl = this.core.piece_length_for(len)?;
            let progress = this.progress.clone();
            let pieces = hash_parallel(len, pl, progress, |off, buf| {
                let start = off as usize;
                buf.copy_from_slice(&data[start..start + buf.len()]);
                Ok(())
            })?;
            Ok(this
                .core
                .create_single_with_hashes(&name, len, pl, pieces)?)
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
    }

    /// A torrent from a file or a folder on disk. Folders become multi-file torrents whose
    /// files are ordered by path, component by component (as webtorrent does).
    pub async fn create_from_path(&self, path: &Path) -> Result<CreatedTorrent> {
        let this = self.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || this.create_from_path_blocking(&path))
            .await
            .map_err(|e| Error::Storage(e.to_string()))?
    }

    fn create_from_path_blocking(&self, path: &Path) -> Result<CreatedTorrent> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::UnknownSource(path.display().to_string()))?
            .to_string();
        let meta = std::fs::metadata(path)?;
        if meta.is_file() {
            let len = meta.len();
            let pl = self.core.piece_length_for(len)?;
            let file = File::open(path)?;
            let pieces = hash_parallel(len, pl, self.progress.clone(), |off, buf| {
                file.read_exact_at(buf, off)
            })?;
            return Ok(self
                .core
                .create_single_with_hashes(&name, len, pl, pieces)?);
        }
        let mut files = Vec::new();
        walk(path, &mut Vec::new(), &mut files)?;
        if files.is_empty() {
            return Err(Error::UnknownSource(format!(
                "{}: folder has no files",
                path.display()
            )));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let specs = file_specs(&files);
        let total: u64 = specs.iter().map(|f| f.length).sum();
        let pl = self.core.piece_length_for(total)?;
        let mut offsets = Vec::with_capacity(files.len());
        let mut off = 0u64;
        for (_, len, _) in &files {
            offsets.push(off);
            off += len;
        }
        let handles: Vec<Option<File>> = files
            .iter()
            .map(|(_, len, p)| {
                if *len > 0 {
                    File::open(p).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<std::io::Result<_>>()?;
        let pieces = hash_parallel(total, pl, self.progress.clone(), |start, buf| {
            // Copy the range [start, start + buf.len()) from the files it spans.
            let end = start + buf.len() as u64;
            let first = offsets.partition_point(|&o| o <= start).saturating_sub(1);
            let mut pos = 0usize;
            for i in first..files.len() {
                let (fo, fl) = (offsets[i], files[i].1);
                if fo >= end {
                    break;
                }
                let s = start.max(fo);
                let e = end.min(fo + fl);
                if s >= e {
                    continue;
                }
                let n = (e - s) as usize;
                if let Some(f) = &handles[i] {
                    f.read_exact_at(&mut buf[pos..pos + n], s - fo)?;
                }
                pos += n;
            }
            Ok(())
        })?;
        Ok(self
            .core
            .create_multi_with_hashes(&name, &specs, pl, pieces)?)
    }
}

/// What a cached hashing result records of the files it hashed: each one's path in the
/// torrent, size and modification time (ns), in torrent order.
type SourceStamps = Vec<(String, u64, u64)>;

fn source_stamps(files: &[(Vec<String>, u64, PathBuf)]) -> Option<SourceStamps> {
    files
        .iter()
        .map(|(p, _, full)| {
            let st = crate::storage::file_stamp(full)?;
            Some((p.join("/"), st.size, st.mtime_ns))
        })
        .collect()
}

fn encode_cache(piece_length: u32, stamps: &SourceStamps, pieces: &[u8]) -> Vec<u8> {
    use webtorrent_core::bencode::{write_bytes, write_int};
    let mut out = Vec::with_capacity(pieces.len() + 64 * stamps.len() + 64);
    out.push(b'd');
    write_bytes(&mut out, b"files");
    out.push(b'l');
    for (p, size, mtime) in stamps {
        out.push(b'l');
        write_bytes(&mut out, p.as_bytes());
        write_int(&mut out, i64::try_from(*size).unwrap_or(i64::MAX));
        write_int(&mut out, i64::try_from(*mtime).unwrap_or(i64::MAX));
        out.push(b'e');
    }
    out.push(b'e');
    write_bytes(&mut out, b"piece length");
    write_int(&mut out, i64::from(piece_length));
    write_bytes(&mut out, b"pieces");
    write_bytes(&mut out, pieces);
    out.push(b'e');
    out
}

/// The piece hashes in a cache file, if it was written for exactly these files and piece
/// length.
fn decode_cache(b: &[u8], piece_length: u32, stamps: &SourceStamps) -> Option<Vec<u8>> {
    use webtorrent_core::bencode::{decode_with, Limits};
    let v = decode_with(
        b,
        Limits {
            max_depth: 4,
            max_values: 16 + 4 * stamps.len(),
        },
    )
    .ok()?;
    if v.get(b"piece length")?.as_int()? != i64::from(piece_length) {
        return None;
    }
    let files = v.get(b"files")?.as_list()?;
    if files.len() != stamps.len() {
        return None;
    }
    for (f, (p, size, mtime)) in files.iter().zip(stamps) {
        match f.as_list()? {
            [fp, fs, fm]
                if fp.as_bytes()? == p.as_bytes()
                    && fs.as_int()? == i64::try_from(*size).ok()?
                    && fm.as_int()? == i64::try_from(*mtime).ok()? => {}
            _ => return None,
        }
    }
    Some(v.get(b"pieces")?.as_bytes()?.to_vec())
}

impl TorrentCreator {
    /// [`create_from_path`](Self::create_from_path), reusing the piece hashes kept in
    /// `cache_dir` when the files (names, sizes, modification times) and the piece length
    /// are those they were computed for: a restarted seeder then reads nothing. Fresh hashes
    /// are kept there for next time.
    pub(crate) async fn create_from_path_cached(
        &self,
        path: &Path,
        cache_dir: Option<PathBuf>,
    ) -> Result<CreatedTorrent> {
        let this = self.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || match cache_dir {
            Some(dir) => this.create_cached_blocking(&path, &dir),
            None => this.create_from_path_blocking(&path),
        })
        .await
        .map_err(|e| Error::Storage(e.to_string()))?
    }

    fn create_cached_blocking(&self, path: &Path, dir: &Path) -> Result<CreatedTorrent> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::UnknownSource(path.display().to_string()))?
            .to_string();
        let single = std::fs::metadata(path)?.is_file();
        let mut files = Vec::new();
        if single {
            files.push((
                vec![name.clone()],
                std::fs::metadata(path)?.len(),
                path.to_path_buf(),
            ));
        } else {
            walk(path, &mut Vec::new(), &mut files)?;
            files.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let Some(before) = source_stamps(&files) else {
            return self.create_from_path_blocking(path);
        };
        let total: u64 = files.iter().map(|f| f.1).sum();
        let pl = self.core.piece_length_for(total)?;
        let key = {
            use std::os::unix::ffi::OsStrExt;
            let canon = path.canonicalize()?;
            hex::encode(sha1(canon.as_os_str().as_bytes()))
        };
        let cache = dir.join(format!("{key}.hashes"));
        if let Some(pieces) = std::fs::read(&cache)
            .ok()
            .and_then(|b| decode_cache(&b, pl, &before))
        {
            tracing::debug!(path = %path.display(), "piece hashes reused: files unchanged since they were hashed");
            let built = if single {
                self.core
                    .create_single_with_hashes(&name, total, pl, pieces)
            } else {
                let specs = file_specs(&files);
                self.core
                    .create_multi_with_hashes(&name, &specs, pl, pieces)
            };
            // A cache that does not fit (hand-edited, say) is recomputed below.
            if let Ok(t) = built {
                return Ok(t);
            }
        }
        let created = self.create_from_path_blocking(path)?;
        // Kept only if nothing changed while hashing.
        if source_stamps(&files).as_ref() == Some(&before) {
            let bytes = encode_cache(pl, &before, &created.metainfo.info.pieces);
            let tmp = cache.with_extension("hashes.tmp");
            let written = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&tmp, &bytes))
                .and_then(|()| std::fs::rename(&tmp, &cache));
            if let Err(e) = written {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot keep the piece hashes for next time");
            }
        }
        Ok(created)
    }
}

/// The torrent's view of files found by [`walk`].
fn file_specs(files: &[(Vec<String>, u64, PathBuf)]) -> Vec<FileSpec> {
    files
        .iter()
        .map(|(p, len, _)| FileSpec {
            path: p.clone(),
            length: *len,
        })
        .collect()
}

/// Collects regular files below `dir` as (path components, length, full path).
fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, u64, PathBuf)>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| Error::UnknownSource(format!("file name is not UTF-8: {n:?}")))?;
        let path = entry.path();
        let meta = std::fs::metadata(&path)?;
        prefix.push(name);
        if meta.is_dir() {
            walk(&path, prefix, out)?;
        } else if meta.is_file() {
            out.push((prefix.clone(), meta.len(), path));
        }
        prefix.pop();
    }
    Ok(())
}

/// Hashes `total` bytes in pieces of `piece_length` on every core; `read(offset, buf)` fills
/// `buf` with the content at `offset`.
fn hash_parallel<F>(
    total: u64,
    piece_length: u32,
    progress: Option<Arc<AtomicU64>>,
    read: F,
) -> Result<Vec<u8>>
where
    F: Fn(u64, &mut [u8]) -> std::io::Result<()> + Sync,
{
    let n = total.div_ceil(u64::from(piece_length)) as usize;
    let mut out = vec![0u8; n * 20];
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .clamp(1, 32)
        .min(n.max(1));
    let next = AtomicU32::new(0);
    let chunks = std::sync::Mutex::new(Vec::<(usize, [u8; 20])>::new());
    let error = std::sync::Mutex::new(None::<std::io::Error>);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; piece_length as usize];
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        break;
                    }
                    let off = i as u64 * u64::from(piece_length);
                    let len = (total - off).min(u64::from(piece_length)) as usize;
                    if let Err(e) = read(off, &mut buf[..len]) {
                        *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        next.store(n as u32, Ordering::Relaxed);
                        break;
                    }
                    local.push((i, sha1(&buf[..len])));
                    if let Some(p) = &progress {
                        p.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    if local.len() >= 64 {
                        chunks
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .append(&mut local);
                    }
                }
                chunks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .append(&mut local);
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(Error::Io(e));
    }
    for (i, h) in chunks.into_inner().unwrap_or_else(|e| e.into_inner()) {
        out[i * 20..i * 20 + 20].copy_from_slice(&h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn path_and_memory_creation_agree_with_core() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("album");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let a: Vec<u8> = (0..70_000u32).map(|i| (i % 13) as u8).collect();
        let b: Vec<u8> = (0..5u8).collect();
        std::fs::write(root.join("sub/b.bin"), &b).unwrap();
        std::fs::write(root.join("a.txt"), &a).unwrap();
        std::fs::write(root.join("sub.txt"), b"").unwrap();
        let c = TorrentCreator::new()
            .with_piece_length(16384)
            .with_creation_date(1);
        let t = c.create_from_path(&root).await.unwrap();
        let paths: Vec<String> = t
            .metainfo
            .info
            .files
            .iter()
            .map(|f| f.path_string())
            .collect();
        // Component-wise order: "sub" < "sub.txt" because the shorter component sorts first.
        assert_eq!(paths, ["a.txt", "sub/b.bin", "sub.txt"]);
        let core = CoreCreator::new().with_piece_length(16384);
        let expect = core
            .create_multi(
                "album",
                vec![
                    (vec!["a.txt".to_string()], 70_000, &a[..]),
                    (vec!["sub".to_string(), "b.bin".to_string()], 5, &b[..]),
                    (vec!["sub.txt".to_string()], 0, &b""[..]),
                ],
            )
            .unwrap();
        assert_eq!(t.info_hash, expect.info_hash);
        let single = c.create_from_path(&root.join("a.txt")).await.unwrap();
        let (_, mem_hash) = c.create_from_data("a.txt".into(), a.clone()).await.unwrap();
        assert_eq!(single.info_hash, mem_hash);
    }
}
