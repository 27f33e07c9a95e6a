//! Creating torrents: info dictionaries identical to those of other tools for the same name,
//! content and piece length, so info hashes match across clients.

use std::io::Read;

use bytes::Bytes;

use crate::bencode::{write_bytes, write_int};
use crate::id::InfoHash;
use crate::metainfo::{write_torrent, Metainfo, MetainfoError};
use crate::piece::{PieceHasher, MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};

/// Largest piece length chosen automatically.
pub const MAX_AUTO_PIECE_LENGTH: u32 = 16 * 1024 * 1024;

/// Errors from creating a torrent.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The name or a path component is empty or could escape the download folder.
    #[error("invalid name or path component {0:?}")]
    InvalidPath(String),
    /// The piece length is not a power of two within range.
    #[error("piece length {0} is not a power of two between 16 KiB and 64 MiB")]
    PieceLength(u32),
    /// A multi-file torrent needs at least one file.
    #[error("no files given")]
    NoFiles,
    /// A data source yielded a different number of bytes than declared.
    #[error("file {path:?} declared {declared} bytes but its data source gave {actual}")]
    LengthMismatch {
        /// The file.
        path: String,
        /// Declared length.
        declared: u64,
        /// Bytes actually read (capped at declared + 1).
        actual: u64,
    },
    /// Reading a data source failed.
    #[error("reading {path:?}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The piece hashes given do not fit the lengths.
    #[error("{got} bytes of piece hashes, expected {expected}")]
    PieceHashes {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        expected: u64,
    },
    /// The result failed validation (e.g. duplicate file paths).
    #[error(transparent)]
    Invalid(#[from] MetainfoError),
}

/// The automatic piece length: about 1024 pieces, between 16 KiB and 16 MiB.
///
/// Up to 16 GiB this equals the choice of webtorrent's `create-torrent`, so torrents made
/// without an explicit piece length get the same info hash from both.
pub fn auto_piece_length(total_length: u64) -> u32 {
    // The power of two nearest to total/1024 (log2 rounded half up), as create-torrent does.
    let per_piece = if total_length < 1024 {
        1.0
    } else {
        total_length as f64 / 1024.0
    };
    let exp = (per_piece.log2() + 0.5).floor().clamp(0.0, 40.0) as u32;
    (1u64 << exp).clamp(
        u64::from(MIN_PIECE_LENGTH),
        u64::from(MAX_AUTO_PIECE_LENGTH),
    ) as u32
}

/// One file of a multi-file torrent: its path below the torrent folder and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Path components, e.g. `["sub", "b.bin"]`.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
}

/// A freshly created torrent.
#[derive(Debug, Clone)]
pub struct CreatedTorrent {
    /// The `.torrent` file.
    pub torrent_file: Bytes,
    /// Its info hash.
    pub info_hash: InfoHash,
    /// The parsed form.
    pub metainfo: Metainfo,
}

/// Builds `.torrent` files.
///
/// ```
/// use webtorrent_core::creator::TorrentCreator;
/// let (file, hash) = TorrentCreator::new()
///     .with_announce(vec!["http://127.0.0.1:8000/announce".into()])
///     .create_from_data("hello.txt", b"Hello")
///     .unwrap();
/// assert_eq!(hash.to_hex().len(), 40);
/// assert!(file.starts_with(b"d8:announce"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TorrentCreator {
    trackers: Vec<Vec<String>>,
    piece_length: Option<u32>,
    url_list: Vec<String>,
    private: bool,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
}

fn check_component(c: &str) -> Result<(), CreateError> {
    if c.is_empty() || c == "." || c == ".." || c.contains(['/', '\\', '\0']) {
        return Err(CreateError::InvalidPath(c.to_string()));
    }
    Ok(())
}

impl TorrentCreator {
    /// A creator with no trackers, automatic piece length and no creation date.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trackers: the first URL becomes `announce`, and each URL its own tier of `announce-list`.
    pub fn with_announce(mut self, urls: Vec<String>) -> Self {
        self.trackers = urls.into_iter().map(|u| vec![u]).collect();
        self
    }

    /// Trackers as explicit BEP 12 tiers.
    pub fn with_announce_tiers(mut self, tiers: Vec<Vec<String>>) -> Self {
        self.trackers = tiers.into_iter().filter(|t| !t.is_empty()).collect();
        self
    }

    /// A fixed piece length instead of the automatic one.
    pub fn with_piece_length(mut self, piece_length: u32) -> Self {
        self.piece_length = Some(piece_length);
        self
    }

    /// BEP 19 web seeds.
    pub fn with_url_list(mut self, urls: Vec<String>) -> Self {
        self.url_list = urls;
        self
    }

    /// BEP 27 private flag (part of the info dictionary, so it changes the info hash).
    pub fn with_private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// A free-form comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// The `created by` string.
    pub fn with_created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }

    /// The creation date in seconds since the Unix epoch. Without it the output is
    /// deterministic.
    pub fn with_creation_date(mut self, secs: i64) -> Self {
        self.creation_date = Some(secs);
        self
    }

    /// The piece length used for content of `total_length` bytes.
    pub fn piece_length_for(&self, total_length: u64) -> Result<u32, CreateError> {
        match self.piece_length {
            Some(p)
                if !p.is_power_of_two() || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&p) =>
            {
                Err(CreateError::PieceLength(p))
            }
            Some(p) => Ok(p),
            None => Ok(auto_piece_length(total_length)),
        }
    }

    /// A single-file torrent from bytes in memory: returns the `.torrent` file and info hash.
    pub fn create_from_data(
        &self,
        name: &str,
        data: &[u8],
    ) -> Result<(Bytes, InfoHash), CreateError> {
        let piece_length = self.piece_length_for(data.len() as u64)?;
        let mut h = PieceHasher::new(piece_length);
        h.update(data);
        let t =
            self.create_single_with_hashes(name, data.len() as u64, piece_length, h.finish())?;
        Ok((t.torrent_file, t.info_hash))
    }

    /// A single-file torrent whose content is read from `reader`, which must yield exactly
    /// `length` bytes.
    pub fn create_single_from_reader(
        &self,
        name: &str,
        length: u64,
        reader: impl Read,
    ) -> Result<CreatedTorrent, CreateError> {
        let piece_length = self.piece_length_for(length)?;
        let mut h = PieceHasher::new(piece_length);
        hash_reader(&mut h, name, length, reader)?;
        self.create_single_with_hashes(name, length, piece_length, h.finish())
    }

    /// A multi-file torrent named `name` (the folder) from `(path, length, data source)` in
    /// torrent order; each source must yield exactly its length.
    pub fn create_multi<R: Read>(
        &self,
        name: &str,
        files: Vec<(Vec<String>, u64, R)>,
    ) -> Result<CreatedTorrent, CreateError> {
        let total = files
            .iter()
            .try_fold(0u64, |a, f| a.checked_add(f.1))
            .ok_or(CreateError::Invalid(MetainfoError::Length))?;
        let piece_length = self.piece_length_for(total)?;
        let mut h = PieceHasher::new(piece_length);
        let mut specs = Vec::with_capacity(files.len());
        for (path, length, reader) in files {
            hash_reader(&mut h, &path.join("/"), length, reader)?;
            specs.push(FileSpec { path, length });
        }
        self.create_multi_with_hashes(name, &specs, piece_length, h.finish())
    }

    /// A single-file torrent from piece hashes computed elsewhere (e.g. in parallel).
    pub fn create_single_with_hashes(
        &self,
        name: &str,
        length: u64,
        piece_length: u32,
        pieces: Vec<u8>,
    ) -> Result<CreatedTorrent, CreateError> {
        check_component(name)?;
        check_hashes(&pieces, length, piece_length)?;
        let mut info = Vec::with_capacity(pieces.len() + name.len() + 64);
        info.push(b'd');
        write_bytes(&mut info, b"length");
        write_int(&mut info, length as i64);
        self.write_info_tail(&mut info, name, piece_length, &pieces);
        self.finish(info)
    }

    /// A multi-file torrent from piece hashes computed elsewhere.
    pub fn create_multi_with_hashes(
        &self,
        name: &str,
        files: &[FileSpec],
        piece_length: u32,
        pieces: Vec<u8>,
    ) -> Result<CreatedTorrent, CreateError> {
        check_component(name)?;
        if files.is_empty() {
            return Err(CreateError::NoFiles);
        }
        let mut total = 0u64;
        for f in files {
            if f.path.is_empty() {
                return Err(CreateError::InvalidPath(String::new()));
            }
            for c in &f.path {
                check_component(c)?;
            }
            total = total
                .checked_add(f.length)
                .ok_or(CreateError::Invalid(MetainfoError::Length))?;
        }
        check_hashes(&pieces, total, piece_length)?;
        let mut info = Vec::with_capacity(pieces.len() + files.len() * 64 + 64);
        info.push(b'd');
        write_bytes(&mut info, b"files");
        info.push(b'l');
        for f in files {
            info.push(b'd');
            write_bytes(&mut info, b"length");
            write_int(&mut info, f.length as i64);
            write_bytes(&mut info, b"path");
            info.push(b'l');
            for c in &f.path {
                write_bytes(&mut info, c.as_bytes());
            }
            info.extend_from_slice(b"ee");
        }
        info.push(b'e');
        self.write_info_tail(&mut info, name, piece_length, &pieces);
        self.finish(info)
    }

    fn write_info_tail(&self, info: &mut Vec<u8>, name: &str, piece_length: u32, pieces: &[u8]) {
        write_bytes(info, b"name");
        write_bytes(info, name.as_bytes());
        write_bytes(info, b"piece length");
        write_int(info, i64::from(piece_length));
        write_bytes(info, b"pieces");
        write_bytes(info, pieces);
        if self.private {
            write_bytes(info, b"private");
            write_int(info, 1);
        }
        info.push(b'e');
    }

    fn finish(&self, info: Vec<u8>) -> Result<CreatedTorrent, CreateError> {
        let bytes = write_torrent(
            &info,
            self.trackers
                .first()
                .and_then(|t| t.first())
                .map(String::as_str),
            &self.trackers,
            &self.url_list,
            self.comment.as_deref(),
            self.created_by.as_deref(),
            self.creation_date,
        );
        let metainfo = Metainfo::from_bytes(&bytes)?;
        Ok(CreatedTorrent {
            torrent_file: Bytes::from(bytes),
            info_hash: metainfo.info_hash,
            metainfo,
        })
    }
}

fn check_hashes(pieces: &[u8], total: u64, piece_length: u32) -> Result<(), CreateError> {
    let expected = total.div_ceil(u64::from(piece_length)) * 20;
    if pieces.len() as u64 != expected {
        return Err(CreateError::PieceHashes {
            got: pieces.len(),
            expected,
        });
    }
    Ok(())
}

fn hash_reader(
    h: &mut PieceHasher,
    path: &str,
    length: u64,
    reader: impl Read,
) -> Result<(), CreateError> {
    let mut limited = reader.take(length.saturating_add(1));
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(CreateError::Io {
                    path: path.to_string(),
                    source,
                })
            }
        };
        read += n as u64;
        if read > length {
            break;
        }
        h.update(&buf[..n]);
    }
    if read != length {
        return Err(CreateError::LengthMismatch {
            path: path.to_string(),
            declared: length,
            actual: read,
        });
    }
    Ok(())
}
