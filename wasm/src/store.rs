//! Where a torrent's bytes live in the browser: the user's own `File`s when seeding (sliced on
//! demand, never loaded whole), memory for small downloads, and the Origin Private File System
//! (one file per piece) for large ones.

use std::sync::Arc;

use bytes::Bytes;
use js_sys::{Array, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use webtorrent_core::memory::MemoryBuffer;
use webtorrent_core::metainfo::Info;
use webtorrent_core::piece::{Bitfield, PieceIndex};

use crate::util::js_error_message;

/// A storage failure, with the browser's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl From<JsValue> for StoreError {
    fn from(e: JsValue) -> Self {
        StoreError(js_error_message(&e))
    }
}

/// A torrent's storage.
pub(crate) enum Store {
    /// Seeding the user's blobs: `(blob, offset in the torrent, length)` in torrent order.
    Blobs(Vec<(web_sys::Blob, u64, u64)>),
    /// A download held in wasm memory (taken as pieces arrive).
    Memory(MemoryBuffer),
    /// A download in the Origin Private File System: a folder named after the info hash with
    /// one file per piece.
    Opfs(web_sys::FileSystemDirectoryHandle),
}

/// Reads a blob range into a JS byte array on this thread.
pub(crate) async fn read_blob(
    blob: &web_sys::Blob,
    start: u64,
    end: u64,
) -> Result<Uint8Array, StoreError> {
    let part = blob.slice_with_f64_and_f64(start as f64, end as f64)?;
    let buf = JsFuture::from(part.array_buffer()).await?;
    Ok(Uint8Array::new(&buf))
}

impl Store {
    /// Memory for downloads up to `memory_limit` bytes, the OPFS beyond or when the download
    /// is kept (or if the OPFS is missing, memory anyway: the caller checked the size fits in
    /// wasm memory). With the OPFS, the pieces already in its folder (from an earlier visit)
    /// come back as the bitfield.
    pub async fn for_download(
        info: &Info,
        info_hash_hex: &str,
        memory_limit: u64,
        keep: bool,
    ) -> Result<(Store, Option<Bitfield>), StoreError> {
        let total = info.total_length();
        if total <= memory_limit && !keep {
            return Ok((Store::Memory(MemoryBuffer::new(total)), None));
        }
        match opfs_dir(info_hash_hex).await {
            Ok(dir) => {
                let have = opfs_scan(&dir, info).await;
                Ok((Store::Opfs(dir), Some(have)))
            }
            Err(e) if total <= 1 << 30 => {
                crate::util::warn(&format!("OPFS unavailable ({e}); keeping the download in memory"));
                Ok((Store::Memory(MemoryBuffer::new(total)), None))
            }
            Err(e) => Err(StoreError(format!("the download is too large for memory and the Origin Private File System is unavailable: {e}"))),
        }
    }

    /// Reads a whole piece as a JS byte array.
    pub async fn read_js(
        blobs: &[(web_sys::Blob, u64, u64)],
        start: u64,
        len: u64,
    ) -> Result<Uint8Array, StoreError> {
        let end = start + len;
        let mut parts: Vec<Uint8Array> = Vec::new();
        for (blob, off, blen) in blobs {
            if off + blen <= start || *off >= end || *blen == 0 {
                continue;
            }
            let s = start.max(*off) - off;
            let e = end.min(off + blen) - off;
            // The user's files are read in the worker (`Blob.slice` blocks this thread).
            parts.push(crate::read_worker::read(blob, s, e).await?);
        }
        if parts.len() == 1 {
            return Ok(parts
                .pop()
                .unwrap_or_else(|| Uint8Array::new_with_length(0)));
        }
        let out = Uint8Array::new_with_length(len as u32);
        let mut at = 0u32;
        for p in parts {
            out.set(&p, at);
            at += p.length();
        }
        if at as u64 != len {
            return Err(StoreError(
                "the file is shorter than the torrent says".into(),
            ));
        }
        Ok(out)
    }

    /// Clones the handles needed to read a piece without borrowing the store across awaits.
    pub fn reader(&self) -> Reader {
        match self {
            Store::Blobs(b) => Reader::Blobs(b.clone()),
            Store::Memory(_) => Reader::Memory,
            Store::Opfs(d) => Reader::Opfs(d.clone()),
        }
    }
}

/// A cloneable handle that reads pieces asynchronously.
#[derive(Clone)]
pub(crate) enum Reader {
    /// See [`Store::Blobs`].
    Blobs(Vec<(web_sys::Blob, u64, u64)>),
    /// Memory reads are synchronous: the caller reads the store directly.
    Memory,
    /// See [`Store::Opfs`].
    Opfs(web_sys::FileSystemDirectoryHandle),
}

impl Reader {
    /// Reads bytes `start..start+len` of piece `piece`.
    pub async fn read(
        &self,
        piece: PieceIndex,
        start: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        match self {
            Reader::Blobs(b) => Ok(Some(Bytes::from(
                Store::read_js(b, start, len).await?.to_vec(),
            ))),
            Reader::Memory => Ok(None),
            Reader::Opfs(dir) => {
                let blob = opfs_piece_file(dir, piece).await?;
                let arr = read_blob(&blob, 0, len).await?;
                if arr.length() as u64 != len {
                    return Err(StoreError(format!("stored piece {piece} is truncated")));
                }
                Ok(Some(Bytes::from(arr.to_vec())))
            }
        }
    }
}

/// The download folder of a torrent in the OPFS.
pub(crate) fn pieces_folder(info_hash_hex: &str) -> String {
    format!("webtorrent-{info_hash_hex}")
}

/// Opens (creating) the download folder of a torrent in the OPFS.
async fn opfs_dir(info_hash_hex: &str) -> Result<web_sys::FileSystemDirectoryHandle, StoreError> {
    crate::persist::opfs_folder(&pieces_folder(info_hash_hex), true).await
}

/// The pieces stored in a download's folder: files named by piece index with the piece's
/// length. A piece file is written only after its hash matched, and the browser commits a
/// writable file only when it is closed, so a file of the right length holds a verified piece.
async fn opfs_scan(dir: &web_sys::FileSystemDirectoryHandle, info: &Info) -> Bitfield {
    let layout = info.layout;
    let mut have = Bitfield::new(info.num_pieces());
    let entries = match crate::persist::walk_dir(dir).await {
        Ok(e) => e,
        Err(e) => {
            crate::util::warn(&format!(
                "cannot list the stored pieces ({}); downloading them again",
                js_error_message(&e)
            ));
            return have;
        }
    };
    for (path, handle) in entries {
        let [name] = &path[..] else { continue };
        if name.len() != 8 || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(n) = name.parse::<u32>() else { continue };
        let Ok(piece) = layout.piece(n) else {
            continue;
        };
        let Ok(file) = crate::persist::handle_file(&handle).await else {
            continue;
        };
        if file.size() as u64 == u64::from(layout.piece_len(piece)) {
            have.set(piece);
        }
    }
    have
}

fn piece_name(piece: PieceIndex) -> String {
    format!("{:08}", piece.get())
}

/// Piece files opened at once when a range of an OPFS download becomes a blob.
const OPFS_OPEN_BATCH: usize = 64;

async fn opfs_piece_file(
    dir: &web_sys::FileSystemDirectoryHandle,
    piece: PieceIndex,
) -> Result<web_sys::Blob, StoreError> {
    let h: web_sys::FileSystemFileHandle = JsFuture::from(dir.get_file_handle(&piece_name(piece)))
        .await?
        .unchecked_into();
    Ok(JsFuture::from(h.get_file()).await?.unchecked_into())
}

/// Writes one verified piece to the OPFS.
pub(crate) async fn opfs_write(
    dir: web_sys::FileSystemDirectoryHandle,
    piece: PieceIndex,
    data: Bytes,
) -> Result<(), StoreError> {
    let opts = web_sys::FileSystemGetFileOptions::new();
    opts.set_create(true);
    let h: web_sys::FileSystemFileHandle =
        JsFuture::from(dir.get_file_handle_with_options(&piece_name(piece), &opts))
            .await?
            .unchecked_into();
    let w: web_sys::FileSystemWritableFileStream =
        JsFuture::from(h.create_writable()).await?.unchecked_into();
    JsFuture::from(w.write_with_u8_array(&data)?).await?;
    JsFuture::from(w.close()).await?;
    Ok(())
}

/// The blob of bytes `start..end` of the torrent, built lazily from the store without copying
/// when the store is made of blobs or OPFS files.
pub(crate) async fn range_blob(
    store: &StoreView,
    info: &Arc<Info>,
    start: u64,
    end: u64,
) -> Result<web_sys::Blob, StoreError> {
    let parts = Array::new();
    match store {
        StoreView::Blobs(blobs) => {
            for (blob, off, blen) in blobs {
                if off + blen <= start || *off >= end || *blen == 0 {
                    continue;
                }
                let s = start.max(*off) - off;
                let e = end.min(off + blen) - off;
                parts.push(&JsValue::from(
                    blob.slice_with_f64_and_f64(s as f64, e as f64)?,
                ));
            }
        }
        StoreView::Memory(bytes) => {
            let s = start as usize;
            let e = (end as usize).min(bytes.len());
            let arr = Uint8Array::new_with_length((e.saturating_sub(s)) as u32);
            if e > s {
                arr.copy_from(&bytes[s..e]);
            }
            parts.push(&arr);
        }
        StoreView::Opfs(dir) => {
            let layout = info.layout;
            let wanted: Vec<PieceIndex> = layout
                .pieces()
                .filter(|&p| {
                    let ps = layout.piece_offset(p);
                    ps < end && ps + layout.piece_len(p) as u64 > start
                })
                .collect();
            // Each file is two round trips to the browser's storage: ask for many at once.
            for batch in wanted.chunks(OPFS_OPEN_BATCH) {
                let files =
                    futures::future::join_all(batch.iter().map(|&p| opfs_piece_file(dir, p))).await;
                for (&p, file) in batch.iter().zip(files) {
                    let file = file?;
                    let ps = layout.piece_offset(p);
                    let len = u64::from(layout.piece_len(p));
                    let s = start.max(ps) - ps;
                    let e = end.min(ps + len) - ps;
                    if s == 0 && e == len {
                        parts.push(&file);
                    } else {
                        parts.push(&JsValue::from(
                            file.slice_with_f64_and_f64(s as f64, e as f64)?,
                        ));
                    }
                }
            }
        }
    }
    Ok(web_sys::Blob::new_with_blob_sequence(&parts)?)
}

/// What [`range_blob`] reads from (a snapshot taken without holding a borrow across awaits).
pub(crate) enum StoreView {
    /// Blobs with their torrent offsets.
    Blobs(Vec<(web_sys::Blob, u64, u64)>),
    /// A copy of the relevant bytes (memory store).
    Memory(Bytes),
    /// The OPFS folder.
    Opfs(web_sys::FileSystemDirectoryHandle),
}

/// Removes a download's OPFS folder (best effort).
pub(crate) async fn opfs_remove(info_hash_hex: &str) {
    crate::persist::opfs_remove_folder(&pieces_folder(info_hash_hex)).await
}
