//! Torrent files (BEP 3, 12, 19, 27): parsing with validation, and writing.
//!
//! The info hash is the SHA-1 of the `info` dictionary's bytes exactly as they appear in the
//! file, so unknown keys and non-canonical ordering are kept. Parsing is bounded by
//! [`MetainfoLimits`] so a hostile file cannot exhaust memory or the stack.

use std::collections::HashSet;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_bytes::ByteBuf;

use crate::bencode::{self, BencodeError, Limits};
use crate::id::InfoHash;
use crate::piece::{self, Layout, PieceError, PieceIndex};

/// Bounds applied when reading a torrent file or received metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetainfoLimits {
    /// Largest accepted `.torrent` file.
    pub max_torrent_bytes: usize,
    /// Largest accepted `info` dictionary (metadata).
    pub max_info_bytes: usize,
    /// Most files in one torrent.
    pub max_files: usize,
    /// Most components in one file path.
    pub max_path_depth: usize,
    /// Bencode nesting and value-count bounds.
    pub bencode: Limits,
}

impl Default for MetainfoLimits {
    fn default() -> Self {
        MetainfoLimits {
            max_torrent_bytes: 64 * 1024 * 1024,
            max_info_bytes: 48 * 1024 * 1024,
            max_files: 500_000,
            max_path_depth: 64,
            bencode: Limits {
                max_depth: 64,
                max_values: 4_000_000,
            },
        }
    }
}

/// Errors from reading a torrent.
#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    /// The input is larger than allowed.
    #[error("torrent is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Malformed bencode or beyond the bencode limits.
    #[error("invalid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// Well-formed bencode with the wrong shape for a torrent.
    #[error("invalid torrent structure: {0}")]
    Structure(String),
    /// No `info` dictionary.
    #[error("torrent has no info dictionary")]
    MissingInfo,
    /// A required key is missing or has the wrong type.
    #[error("info dictionary: {0}")]
    Field(&'static str),
    /// The name is empty.
    #[error("torrent name is empty")]
    EmptyName,
    /// A file path that could escape the download folder or is otherwise unusable.
    #[error("unsafe file path {path:?}: {reason}")]
    UnsafePath {
        /// The path, joined with `/`.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Two files that would occupy the same place.
    #[error("file path {0:?} is used twice or is both a file and a folder")]
    PathConflict(String),
    /// A negative file length or one that overflows the total.
    #[error("invalid file length")]
    Length,
    /// Both or neither of `length` and `files`, or an empty `files` list.
    #[error("info must have exactly one of `length` or a non-empty `files`")]
    FileMode,
    /// Too many files or path components.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// The `pieces` string is not a multiple of 20 bytes.
    #[error("pieces length {0} is not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    /// The number of piece hashes does not match the total length.
    #[error("{got} piece hashes, but {expected} pieces are needed for the total length")]
    PieceCount {
        /// Hashes present.
        got: usize,
        /// Pieces implied by the lengths.
        expected: u32,
    },
    /// Bad piece length or geometry.
    #[error(transparent)]
    Piece(#[from] PieceError),
}

/// One file of a torrent, with its position in the torrent's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's folder (for a single-file torrent: just the name).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Offset of the file's first byte in the torrent.
    pub offset: u64,
    /// BEP 47 padding file (`attr` contains `p`): no real data, never written to disk.
    pub padding: bool,
}

impl FileEntry {
    /// The path joined with `/`.
    pub fn path_string(&self) -> String {
        self.path.join("/")
    }

    /// The file's byte range within the torrent.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.length
    }
}

/// The parsed `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Suggested name: file name for single-file torrents, folder name otherwise.
    pub name: String,
    /// Piece geometry.
    pub layout: Layout,
    /// Concatenated 20-byte piece hashes.
    pub pieces: Bytes,
    /// Files in torrent order. A single-file torrent has one entry whose path is `[name]`.
    pub files: Vec<FileEntry>,
    /// True for a single-file torrent (`length` instead of `files`).
    pub single_file: bool,
    /// BEP 27 private flag: peers only from the tracker, no PEX or DHT.
    pub private: bool,
}

impl Info {
    /// Nominal piece length.
    pub fn piece_length(&self) -> u32 {
        self.layout.piece_length()
    }

    /// Total content length.
    pub fn total_length(&self) -> u64 {
        self.layout.total_length()
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.layout.num_pieces()
    }

    /// The expected SHA-1 of a piece.
    pub fn piece_hash(&self, piece: PieceIndex) -> [u8; 20] {
        let start = piece.as_usize() * 20;
        let mut out = [0u8; 20];
        out.copy_from_slice(&self.pieces[start..start + 20]);
        out
    }

    /// Checks piece data against its hash.
    pub fn verify_piece(&self, piece: PieceIndex, data: &[u8]) -> bool {
        piece::verify_piece(data, &self.piece_hash(piece))
    }

    /// The parts of files covered by a byte range of the torrent, as
    /// `(file index, offset within the file, length)`, skipping empty files.
    pub fn file_slices(&self, range: Range<u64>) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= range.start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < range.end)
            .filter(|(_, f)| f.length > 0)
            .map(move |(i, f)| {
                let start = range.start.max(f.offset);
                let end = range.end.min(f.offset + f.length);
                (first + i, start - f.offset, end - start)
            })
    }
}

/// A parsed torrent: the info dictionary plus the optional outer keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The parsed info dictionary.
    pub info: Info,
    /// SHA-1 of the original info bytes.
    pub info_hash: InfoHash,
    /// The original bytes of the info dictionary, served to peers by `ut_metadata`.
    pub info_bytes: Bytes,
    /// `announce`: the primary tracker.
    pub announce: Option<String>,
    /// `announce-list` (BEP 12): tiers of trackers.
    pub announce_list: Vec<Vec<String>>,
    /// `url-list` (BEP 19): web seeds.
    pub url_list: Vec<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

#[derive(Deserialize)]
struct RawTorrent {
    announce: Option<ByteBuf>,
    #[serde(rename = "announce-list")]
    announce_list: Option<bencode_any::Any>,
    #[serde(rename = "url-list")]
    url_list: Option<bencode_any::Any>,
    comment: Option<ByteBuf>,
    #[serde(rename = "comment.utf-8")]
    comment_utf8: Option<ByteBuf>,
    #[serde(rename = "created by")]
    created_by: Option<ByteBuf>,
    #[serde(rename = "creation date")]
    creation_date: Option<bencode_any::Any>,
}

#[derive(Deserialize)]
struct RawInfo {
    name: Option<ByteBuf>,
    #[serde(rename = "name.utf-8")]
    name_utf8: Option<ByteBuf>,
    #[serde(rename = "piece length")]
    piece_length: Option<i64>,
    pieces: Option<ByteBuf>,
    length: Option<i64>,
    files: Option<Vec<RawFile>>,
    private: Option<bencode_any::Any>,
}

#[derive(Deserialize)]
struct RawFile {
    length: Option<i64>,
    path: Option<Vec<ByteBuf>>,
    #[serde(rename = "path.utf-8")]
    path_utf8: Option<Vec<ByteBuf>>,
    attr: Option<ByteBuf>,
}

/// `serde_bencode::value::Value`, aliased for fields whose type varies between clients.
mod bencode_any {
    pub type Any = serde_bencode::value::Value;
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn list_of_strings(v: &bencode_any::Any) -> Vec<String> {
    use serde_bencode::value::Value as V;
    match v {
        V::Bytes(b) => vec![text(b)],
        V::List(items) => items
            .iter()
            .filter_map(|i| match i {
                V::Bytes(b) => Some(text(b)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn check_component(c: &str, full: &[String]) -> Result<(), MetainfoError> {
    let reason = if c.is_empty() {
        "empty component"
    } else if c == "." || c == ".." {
        "`.` or `..` component"
    } else if c.contains('/') || c.contains('\\') {
        "component contains a path separator"
    } else if c.contains('\0') {
        "component contains NUL"
    } else {
        return Ok(());
    };
    Err(MetainfoError::UnsafePath {
        path: full.join("/"),
        reason,
    })
}

fn to_string_utf8(preferred: Option<ByteBuf>, fallback: Option<ByteBuf>) -> Option<String> {
    preferred
        .and_then(|b| String::from_utf8(b.into_vec()).ok())
        .or_else(|| fallback.map(|b| text(&b)))
}

impl Info {
    /// Parses and validates an `info` dictionary's bytes.
    pub fn from_bytes(bytes: &[u8], limits: &MetainfoLimits) -> Result<Info, MetainfoError> {
        if bytes.len() > limits.max_info_bytes {
            return Err(MetainfoError::TooLarge {
                size: bytes.len(),
                limit: limits.max_info_bytes,
            });
        }
        bencode::validate(bytes, limits.bencode)?;
        if bytes.first() != Some(&b'd') {
            return Err(MetainfoError::Structure("info is not a dictionary".into()));
        }
        let raw: RawInfo = serde_bencode::from_bytes(bytes)
            .map_err(|e| MetainfoError::Structure(e.to_string()))?;
        let name = to_string_utf8(raw.name_utf8, raw.name).ok_or(MetainfoError::Field("name"))?;
        if name.is_empty() {
            return Err(MetainfoError::EmptyName);
        }
        check_component(&name, std::slice::from_ref(&name))?;
        let piece_length = raw
            .piece_length
            .ok_or(MetainfoError::Field("piece length"))?;
        let pieces = raw.pieces.ok_or(MetainfoError::Field("pieces"))?;
        if pieces.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultipleOf20(pieces.len()));
        }
        let (files, single_file) = match (raw.length, raw.files) {
            (Some(len), None) => {
                let length = u64::try_from(len).map_err(|_| MetainfoError::Length)?;
                let f = FileEntry {
                    path: vec![name.clone()],
                    length,
                    offset: 0,
                    padding: false,
                };
                (vec![f], true)
            }
            (None, Some(raw_files)) if !raw_files.is_empty() => {
                if raw_files.len() > limits.max_files {
                    return Err(MetainfoError::TooMany("files"));
                }
                (Self::build_files(raw_files, limits)?, false)
            }
            _ => return Err(MetainfoError::FileMode),
        };
        let total = files.last().map_or(0, |f| f.offset + f.length);
        let piece_length = u64::try_from(piece_length).map_err(|_| PieceError::PieceLength(0))?;
        let layout = Layout::new(piece_length, total)?;
        if pieces.len() / 20 != layout.num_pieces() as usize {
            return Err(MetainfoError::PieceCount {
                got: pieces.len() / 20,
                expected: layout.num_pieces(),
            });
        }
        let private = matches!(raw.private, Some(serde_bencode::value::Value::Int(1)));
        Ok(Info {
            name,
            layout,
            pieces: Bytes::from(pieces.into_vec()),
            files,
            single_file,
            private,
        })
    }

    fn build_files(
        raw_files: Vec<RawFile>,
        limits: &MetainfoLimits,
    ) -> Result<Vec<FileEntry>, MetainfoError> {
        let mut files = Vec::with_capacity(raw_files.len());
        let mut offset: u64 = 0;
        let mut file_paths: HashSet<Vec<String>> = HashSet::new();
        let mut dir_paths: HashSet<Vec<String>> = HashSet::new();
        for rf in raw_files {
            let length = rf
                .length
                .and_then(|l| u64::try_from(l).ok())
                .ok_or(MetainfoError::Length)?;
            let utf8 = rf.path_utf8.and_then(|p| {
                p.into_iter()
                    .map(|c| String::from_utf8(c.into_vec()).ok())
                    .collect::<Option<Vec<String>>>()
            });
            let path: Vec<String> = match utf8 {
                Some(p) => p,
                None => rf
                    .path
                    .ok_or(MetainfoError::Field("files: path"))?
                    .iter()
                    .map(|c| text(c))
                    .collect(),
            };
            if path.is_empty() {
                return Err(MetainfoError::UnsafePath {
                    path: String::new(),
                    reason: "empty path",
                });
            }
            if path.len() > limits.max_path_depth {
                return Err(MetainfoError::TooMany("path components"));
            }
            for c in &path {
                check_component(c, &path)?;
            }
            let padding = rf.attr.is_some_and(|a| a.contains(&b'p'));
            if !padding {
                for depth in 1..path.len() {
                    dir_paths.insert(path[..depth].to_vec());
                }
                if dir_paths.contains(&path) || !file_paths.insert(path.clone()) {
                    return Err(MetainfoError::PathConflict(path.join("/")));
                }
            }
            let entry = FileEntry {
                path,
                length,
                offset,
                padding,
            };
            offset = offset.checked_add(length).ok_or(MetainfoError::Length)?;
            files.push(entry);
        }
        if let Some(p) = file_paths.iter().find(|p| dir_paths.contains(*p)) {
            return Err(MetainfoError::PathConflict(p.join("/")));
        }
        Ok(files)
    }
}

impl Metainfo {
    /// Parses a `.torrent` file with default limits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        Self::from_bytes_with(bytes, &MetainfoLimits::default())
    }

    /// Parses a `.torrent` file.
    pub fn from_bytes_with(
        bytes: &[u8],
        limits: &MetainfoLimits,
    ) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > limits.max_torrent_bytes {
            return Err(MetainfoError::TooLarge {
                size: bytes.len(),
                limit: limits.max_torrent_bytes,
            });
        }
        bencode::validate(bytes, limits.bencode)?;
        if bytes.first() != Some(&b'd') {
            return Err(MetainfoError::Structure(
                "torrent is not a dictionary".into(),
            ));
        }
        let span = bencode::raw_dict_value(bytes, b"info")?.ok_or(MetainfoError::MissingInfo)?;
        let info_bytes = &bytes[span];
        let info = Info::from_bytes(info_bytes, limits)?;
        let raw: RawTorrent = serde_bencode::from_bytes(bytes)
            .map_err(|e| MetainfoError::Structure(e.to_string()))?;
        let announce_list = match &raw.announce_list {
            Some(serde_bencode::value::Value::List(tiers)) => tiers
                .iter()
                .map(list_of_strings)
                .filter(|t| !t.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        let creation_date = match raw.creation_date {
            Some(serde_bencode::value::Value::Int(d)) => Some(d),
            _ => None,
        };
        Ok(Metainfo {
            info_hash: InfoHash::new(piece::sha1(info_bytes)),
            info_bytes: Bytes::copy_from_slice(info_bytes),
            info,
            announce: raw.announce.map(|b| text(&b)).filter(|s| !s.is_empty()),
            announce_list,
            url_list: raw
                .url_list
                .as_ref()
                .map(list_of_strings)
                .unwrap_or_default(),
            comment: to_string_utf8(raw.comment_utf8, raw.comment),
            created_by: raw.created_by.map(|b| text(&b)),
            creation_date,
        })
    }

    /// Builds a torrent from metadata received from peers (`ut_metadata`), which must hash to
    /// `info_hash`, plus trackers known from elsewhere (e.g. a magnet link).
    pub fn from_info_bytes(
        info_bytes: Bytes,
        info_hash: InfoHash,
        trackers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        if piece::sha1(&info_bytes) != info_hash.0 {
            return Err(MetainfoError::Structure(
                "metadata does not match the info hash".into(),
            ));
        }
        let info = Info::from_bytes(&info_bytes, &MetainfoLimits::default())?;
        Ok(Metainfo {
            info,
            info_hash,
            info_bytes,
            announce: trackers.first().and_then(|t| t.first()).cloned(),
            announce_list: trackers,
            url_list: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }

    /// Trackers in BEP 12 tiers: `announce-list` when present, else `[[announce]]`.
    pub fn trackers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else {
            self.announce.iter().map(|a| vec![a.clone()]).collect()
        }
    }

    /// Writes the torrent file: canonical outer dictionary, original info bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        write_torrent(
            &self.info_bytes,
            self.announce.as_deref(),
            &self.announce_list,
            &self.url_list,
            self.comment.as_deref(),
            self.created_by.as_deref(),
            self.creation_date,
        )
    }
}

/// Writes an outer torrent dictionary around already-encoded info bytes, keys in sorted order.
pub(crate) fn write_torrent(
    info_bytes: &[u8],
    announce: Option<&str>,
    announce_list: &[Vec<String>],
    url_list: &[String],
    comment: Option<&str>,
    created_by: Option<&str>,
    creation_date: Option<i64>,
) -> Vec<u8> {
    use bencode::{write_bytes, write_int};
    let mut out = Vec::with_capacity(info_bytes.len() + 256);
    out.push(b'd');
    if let Some(a) = announce {
        write_bytes(&mut out, b"announce");
        write_bytes(&mut out, a.as_bytes());
    }
    if !announce_list.is_empty() {
        write_bytes(&mut out, b"announce-list");
        out.push(b'l');
        for tier in announce_list {
            out.push(b'l');
            for url in tier {
                write_bytes(&mut out, url.as_bytes());
            }
            out.push(b'e');
        }
        out.push(b'e');
    }
    if let Some(c) = comment {
        write_bytes(&mut out, b"comment");
        write_bytes(&mut out, c.as_bytes());
    }
    if let Some(c) = created_by {
        write_bytes(&mut out, b"created by");
        write_bytes(&mut out, c.as_bytes());
    }
    if let Some(d) = creation_date {
        write_bytes(&mut out, b"creation date");
        write_int(&mut out, d);
    }
    write_bytes(&mut out, b"info");
    out.extend_from_slice(info_bytes);
    if !url_list.is_empty() {
        write_bytes(&mut out, b"url-list");
        out.push(b'l');
        for u in url_list {
            write_bytes(&mut out, u.as_bytes());
        }
        out.push(b'e');
    }
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::write_bytes;

    /// Builds `d…e` from raw key/value pieces in the order given.
    fn dict(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![b'd'];
        for (k, v) in entries {
            write_bytes(&mut out, k.as_bytes());
            out.extend_from_slice(v);
        }
        out.push(b'e');
        out
    }

    fn s(v: &str) -> Vec<u8> {
        let mut o = Vec::new();
        write_bytes(&mut o, v.as_bytes());
        o
    }

    fn bytes(v: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        write_bytes(&mut o, v);
        o
    }

    fn int(i: i64) -> Vec<u8> {
        format!("i{i}e").into_bytes()
    }

    fn list(items: &[Vec<u8>]) -> Vec<u8> {
        let mut o = vec![b'l'];
        for i in items {
            o.extend_from_slice(i);
        }
        o.push(b'e');
        o
    }

    fn single_info(name: &str, len: i64, pl: i64) -> Vec<u8> {
        let n = (len.max(1) as u64).div_ceil(pl as u64) as usize;
        dict(&[
            ("length", int(len)),
            ("name", s(name)),
            ("piece length", int(pl)),
            ("pieces", bytes(&vec![7u8; n * 20])),
        ])
    }

    fn torrent(info: Vec<u8>) -> Vec<u8> {
        dict(&[("announce", s("http://t/announce")), ("info", info)])
    }

    #[test]
    fn single_file_parses() {
        let info = single_info("a.txt", 40000, 16384);
        let t = torrent(info.clone());
        let m = Metainfo::from_bytes(&t).unwrap();
        assert_eq!(m.info.name, "a.txt");
        assert_eq!(m.info.num_pieces(), 3);
        assert!(m.info.single_file);
        assert_eq!(m.info.files[0].path, ["a.txt"]);
        assert_eq!(m.info_hash.0, crate::piece::sha1(&info));
        assert_eq!(m.announce.as_deref(), Some("http://t/announce"));
        assert_eq!(m.trackers(), vec![vec!["http://t/announce".to_string()]]);
        assert_eq!(&m.info_bytes[..], &info[..]);
        assert_eq!(Metainfo::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn info_hash_uses_original_bytes() {
        // Unsorted keys and an unknown key: a re-encoding would hash differently.
        let info = dict(&[
            ("x-unknown", list(&[int(1), s("y")])),
            ("pieces", bytes(&[1u8; 20])),
            ("name", s("n")),
            ("piece length", int(16384)),
            ("length", int(5)),
        ]);
        let m = Metainfo::from_bytes(&torrent(info.clone())).unwrap();
        assert_eq!(m.info_hash.0, crate::piece::sha1(&info));
        assert_eq!(&m.info_bytes[..], &info[..]);
        let reparsed = Metainfo::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(reparsed.info_hash, m.info_hash);
    }

    #[test]
    fn outer_fields() {
        let t = dict(&[
            ("announce", s("http://a")),
            (
                "announce-list",
                list(&[
                    list(&[s("http://a"), s("udp://b:1")]),
                    list(&[]),
                    list(&[s("wss://c")]),
                ]),
            ),
            ("comment", s("hi")),
            ("created by", s("me")),
            ("creation date", int(1_700_000_000)),
            ("info", single_info("f", 10, 16384)),
            ("url-list", s("http://seed/")),
        ]);
        let m = Metainfo::from_bytes(&t).unwrap();
        assert_eq!(m.announce_list.len(), 2, "empty tier dropped");
        assert_eq!(m.trackers()[0], ["http://a", "udp://b:1"]);
        assert_eq!(m.url_list, ["http://seed/"]);
        assert_eq!(m.comment.as_deref(), Some("hi"));
        assert_eq!(m.created_by.as_deref(), Some("me"));
        assert_eq!(m.creation_date, Some(1_700_000_000));
        let again = Metainfo::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn multi_file_and_slices() {
        let f = |len: i64, path: &[&str]| {
            dict(&[
                ("length", int(len)),
                ("path", list(&path.iter().map(|p| s(p)).collect::<Vec<_>>())),
            ])
        };
        let info = dict(&[
            (
                "files",
                list(&[
                    f(10, &["a"]),
                    f(0, &["e"]),
                    f(30000, &["d", "b"]),
                    f(5, &["d", "c"]),
                ]),
            ),
            ("name", s("root")),
            ("piece length", int(16384)),
            ("pieces", bytes(&[0u8; 40])),
            ("private", int(1)),
        ]);
        let m = Metainfo::from_bytes(&torrent(info)).unwrap();
        assert!(!m.info.single_file);
        assert!(m.info.private);
        assert_eq!(m.info.total_length(), 30015);
        assert_eq!(m.info.files[2].offset, 10);
        assert_eq!(m.info.files[2].path_string(), "d/b");
        let slices: Vec<_> = m.info.file_slices(5..16384).collect();
        assert_eq!(slices, [(0, 5, 5), (2, 0, 16374)]);
        let slices: Vec<_> = m.info.file_slices(16384..30015).collect();
        assert_eq!(slices, [(2, 16374, 13626), (3, 0, 5)]);
    }

    fn err_of(t: &[u8]) -> MetainfoError {
        Metainfo::from_bytes(t).unwrap_err()
    }

    #[test]
    fn validation_errors() {
        let info = |entries: &[(&str, Vec<u8>)]| torrent(dict(entries));
        // pieces not a multiple of 20
        let t = info(&[
            ("length", int(5)),
            ("name", s("n")),
            ("piece length", int(16384)),
            ("pieces", bytes(&[0; 21])),
        ]);
        assert!(matches!(
            err_of(&t),
            MetainfoError::PiecesNotMultipleOf20(21)
        ));
        // piece count inconsistent with length
        let t = info(&[
            ("length", int(20000)),
            ("name", s("n")),
            ("piece length", int(16384)),
            ("pieces", bytes(&[0; 20])),
        ]);
        assert!(matches!(
            err_of(&t),
            MetainfoError::PieceCount {
                got: 1,
                expected: 2
            }
        ));
        // piece length not a power of two, or too small
        for pl in [16385, 8192, 0, -16384] {
            let t = info(&[
                ("length", int(5)),
                ("name", s("n")),
                ("piece length", int(pl)),
                ("pieces", bytes(&[0; 20])),
            ]);
            assert!(matches!(err_of(&t), MetainfoError::Piece(_)), "{pl}");
        }
        // empty name
        assert!(matches!(
            err_of(&torrent(single_info("", 5, 16384))),
            MetainfoError::EmptyName
        ));
        for bad in ["..", "a/b", "a\0b", "."] {
            assert!(
                matches!(
                    err_of(&torrent(single_info(bad, 5, 16384))),
                    MetainfoError::UnsafePath { .. }
                ),
                "{bad:?}"
            );
        }
        // no info
        assert!(matches!(
            err_of(&dict(&[("announce", s("x"))])),
            MetainfoError::MissingInfo
        ));
        // negative length
        assert!(matches!(
            err_of(&torrent(single_info("n", -1, 16384))),
            MetainfoError::Length
        ));
        // both length and files
        let t = info(&[
            (
                "files",
                list(&[dict(&[("length", int(1)), ("path", list(&[s("a")]))])]),
            ),
            ("length", int(1)),
            ("name", s("n")),
            ("piece length", int(16384)),
            ("pieces", bytes(&[0; 20])),
        ]);
        assert!(matches!(err_of(&t), MetainfoError::FileMode));
        // not a torrent at all
        assert!(matches!(err_of(b"i1e"), MetainfoError::Structure(_)));
        assert!(matches!(err_of(b"d4:info"), MetainfoError::Bencode(_)));
    }

    #[test]
    fn unsafe_multi_file_paths() {
        let with = |paths: &[&[&str]]| {
            let files: Vec<Vec<u8>> = paths
                .iter()
                .map(|p| {
                    dict(&[
                        ("length", int(1)),
                        ("path", list(&p.iter().map(|c| s(c)).collect::<Vec<_>>())),
                    ])
                })
                .collect();
            torrent(dict(&[
                ("files", list(&files)),
                ("name", s("root")),
                ("piece length", int(16384)),
                ("pieces", bytes(&[0; 20])),
            ]))
        };
        for bad in [&["..", "etc"][..], &["a", ""], &["/abs"], &["a\0"], &[]] {
            assert!(
                matches!(err_of(&with(&[bad])), MetainfoError::UnsafePath { .. }),
                "{bad:?}"
            );
        }
        assert!(matches!(
            err_of(&with(&[&["a"], &["a"]])),
            MetainfoError::PathConflict(_)
        ));
        assert!(matches!(
            err_of(&with(&[&["a"], &["a", "b"]])),
            MetainfoError::PathConflict(_)
        ));
        assert!(matches!(
            err_of(&with(&[&["a", "b"], &["a"]])),
            MetainfoError::PathConflict(_)
        ));
        assert!(Metainfo::from_bytes(&with(&[&["a", "b"], &["a", "c"]])).is_ok());
    }

    #[test]
    fn limits_are_enforced() {
        let t = torrent(single_info("n", 5, 16384));
        let tight = MetainfoLimits {
            max_torrent_bytes: 10,
            ..MetainfoLimits::default()
        };
        assert!(matches!(
            Metainfo::from_bytes_with(&t, &tight),
            Err(MetainfoError::TooLarge { .. })
        ));
        let deep = format!("d4:infod1:x{}{}ee", "l".repeat(200), "e".repeat(200));
        assert!(matches!(
            err_of(deep.as_bytes()),
            MetainfoError::Bencode(BencodeError::TooDeep(_))
        ));
        // A declared string length far beyond the input is refused before allocating.
        assert!(matches!(
            err_of(b"d4:info99999999999:xe"),
            MetainfoError::Bencode(BencodeError::StringTooLong { .. })
        ));
    }

    #[test]
    fn from_info_bytes_checks_hash() {
        let info = single_info("n", 5, 16384);
        let hash = InfoHash::new(crate::piece::sha1(&info));
        let m =
            Metainfo::from_info_bytes(Bytes::from(info.clone()), hash, vec![vec!["ws://t".into()]])
                .unwrap();
        assert_eq!(m.announce.as_deref(), Some("ws://t"));
        assert!(Metainfo::from_info_bytes(Bytes::from(info), InfoHash::default(), vec![]).is_err());
    }
}
