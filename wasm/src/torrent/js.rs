//! The JavaScript `Torrent` and `TorrentFile` classes.

use std::sync::Arc;

use bytes::Bytes;
use js_sys::{Array, Function, Uint8Array};
use wasm_bindgen::prelude::*;
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;

use super::{destroy, drive, Handle};
use crate::store::{self, Store, StoreView};
use crate::util::now;

/// A torrent, as JavaScript sees it.
#[wasm_bindgen]
pub struct Torrent {
    pub(crate) h: Handle,
}

#[wasm_bindgen]
impl Torrent {
    /// The info hash, 40 hex digits.
    #[wasm_bindgen(getter, js_name = infoHash)]
    pub fn info_hash(&self) -> String {
        self.h.borrow().info_hash.to_hex()
    }

    /// A magnet link with the name and trackers.
    #[wasm_bindgen(getter, js_name = magnetURI)]
    pub fn magnet_uri(&self) -> String {
        let t = self.h.borrow();
        let mut m = Magnet::new(t.info_hash);
        m.name = t
            .meta()
            .map(|m| m.info.name.clone())
            .or_else(|| t.name_hint.clone());
        m.trackers = t.trackers.iter().flatten().cloned().collect();
        m.to_uri()
    }

    /// The `.torrent` file (undefined until the metadata is known).
    #[wasm_bindgen(getter, js_name = torrentFile)]
    pub fn torrent_file(&self) -> Option<Uint8Array> {
        self.h
            .borrow()
            .torrent_file
            .as_ref()
            .map(|b| Uint8Array::from(&b[..]))
    }

    /// Whether the torrent is kept for `client.restore()` after a reload (true once its record
    /// and, for copies, its data are stored).
    #[wasm_bindgen(getter)]
    pub fn kept(&self) -> bool {
        self.h.borrow().kept
    }

    /// The torrent's name (from the magnet link's `dn` until the metadata is known).
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> Option<String> {
        let t = self.h.borrow();
        t.meta()
            .map(|m| m.info.name.clone())
            .or_else(|| t.name_hint.clone())
    }

    /// Total size in bytes (0 until the metadata is known).
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.h
            .borrow()
            .meta()
            .map(|m| m.info.total_length() as f64)
            .unwrap_or(0.0)
    }

    /// The files (empty until the metadata is known).
    #[wasm_bindgen(getter)]
    pub fn files(&self) -> Array {
        let out = Array::new();
        let Some(meta) = self.h.borrow().meta() else {
            return out;
        };
        for (i, f) in meta.info.files.iter().enumerate() {
            if f.padding {
                continue;
            }
            out.push(&JsValue::from(TorrentFile {
                h: self.h.clone(),
                index: i,
            }));
        }
        out
    }

    /// Fraction verified, 0 to 1.
    #[wasm_bindgen(getter)]
    pub fn progress(&self) -> f64 {
        let mut t = self.h.borrow_mut();
        let s = t.session.stats(now());
        match s.total {
            Some(0) => 1.0,
            Some(total) => s.verified as f64 / total as f64,
            None => 0.0,
        }
    }

    /// Payload bytes received.
    #[wasm_bindgen(getter)]
    pub fn downloaded(&self) -> f64 {
        self.h.borrow_mut().session.stats(now()).downloaded as f64
    }

    /// Payload bytes sent.
    #[wasm_bindgen(getter)]
    pub fn uploaded(&self) -> f64 {
        self.h.borrow_mut().session.stats(now()).uploaded as f64
    }

    /// Receive rate in bytes per second.
    #[wasm_bindgen(getter, js_name = downloadSpeed)]
    pub fn download_speed(&self) -> f64 {
        self.h.borrow_mut().session.stats(now()).download_rate as f64
    }

    /// Send rate in bytes per second.
    #[wasm_bindgen(getter, js_name = uploadSpeed)]
    pub fn upload_speed(&self) -> f64 {
        self.h.borrow_mut().session.stats(now()).upload_rate as f64
    }

    /// Connected peers.
    #[wasm_bindgen(getter, js_name = numPeers)]
    pub fn num_peers(&self) -> usize {
        self.h.borrow().session.num_peers()
    }

    /// Whether every piece is verified.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> bool {
        let t = self.h.borrow();
        t.session.is_ready() && t.session.is_finished()
    }

    /// Whether the torrent is ready (metadata and storage known).
    #[wasm_bindgen(getter)]
    pub fn ready(&self) -> bool {
        self.h.borrow().ready
    }

    /// The last fatal error, if any.
    #[wasm_bindgen(getter)]
    pub fn error(&self) -> Option<String> {
        self.h.borrow().error.clone()
    }

    /// Adds a listener: `metadata`, `ready`, `wire`, `download`, `upload`, `done`, `warning`,
    /// `error`.
    pub fn on(&self, event: &str, listener: Function) {
        self.h
            .borrow_mut()
            .listeners
            .entry(event.to_string())
            .or_default()
            .push(listener);
    }

    /// Removes a listener.
    pub fn off(&self, event: &str, listener: &Function) {
        if let Some(v) = self.h.borrow_mut().listeners.get_mut(event) {
            v.retain(|f| f != listener);
        }
    }

    /// Chooses which files to download: one boolean per entry of `files`, in order. Pieces
    /// shared with a wanted file are still fetched; `done` fires once the wanted files are
    /// complete. Throws before the metadata is known or if the list has the wrong length.
    #[wasm_bindgen(js_name = selectFiles)]
    pub fn select_files(&self, wanted: Vec<u8>) -> Result<(), JsValue> {
        let wanted: Vec<bool> = wanted.iter().map(|b| *b != 0).collect();
        let res = self.h.borrow_mut().session.set_files_wanted(now(), &wanted);
        res.map_err(|e| JsValue::from(js_sys::Error::new(&e.to_string())))?;
        drive(&self.h);
        Ok(())
    }

    /// Fetches the bytes `start..end` of the torrent's content before anything else
    /// (streaming). Throws before the metadata is known or if the range is outside it.
    pub fn prioritize(&self, start: f64, end: f64) -> Result<(), JsValue> {
        if !(start >= 0.0 && end >= start) {
            return Err(
                js_sys::Error::new("prioritize(start, end) needs 0 <= start <= end").into(),
            );
        }
        let range = Some(start as u64..end as u64);
        let res = self.h.borrow_mut().session.set_priority_range(now(), range);
        res.map_err(|e| JsValue::from(js_sys::Error::new(&e.to_string())))?;
        drive(&self.h);
        Ok(())
    }

    /// Fetches pieces `start` to `end` (inclusive) whatever the file selection, as
    /// webtorrent's `torrent.select`; a `priority` above 0 also fetches them first. Throws
    /// before the metadata is known or for pieces the torrent lacks.
    pub fn select(&self, start: f64, end: f64, priority: Option<f64>) -> Result<(), JsValue> {
        let range = self.piece_range(start, end)?;
        {
            let mut t = self.h.borrow_mut();
            let mut sel = t.selections.clone();
            sel.push(range.clone());
            t.session
                .set_piece_ranges_wanted(now(), &sel)
                .map_err(|e| JsValue::from(js_sys::Error::new(&e.to_string())))?;
            t.selections = sel;
        }
        if priority.is_some_and(|p| p > 0.0) {
            self.critical(start, end)?;
        }
        drive(&self.h);
        Ok(())
    }

    /// Undoes [`select`](Self::select) of the same pieces, as webtorrent's
    /// `torrent.deselect`. `deselect(0, pieces - 1)` with no such selection deselects every
    /// file (webtorrent's way to fetch nothing until `file.select()`).
    pub fn deselect(&self, start: f64, end: f64) -> Result<(), JsValue> {
        let range = self.piece_range(start, end)?;
        let err = |e: String| JsValue::from(js_sys::Error::new(&e));
        {
            let mut t = self.h.borrow_mut();
            let before = t.selections.len();
            let sel: Vec<_> = t
                .selections
                .iter()
                .filter(|r| **r != range)
                .cloned()
                .collect();
            let all = t
                .meta()
                .is_some_and(|m| range.start == 0 && range.end == m.info.num_pieces());
            if sel.len() == before && all {
                let n = t.session.files_wanted().map_or(0, |w| w.len());
                t.session
                    .set_files_wanted(now(), &vec![false; n])
                    .map_err(|e| err(e.to_string()))?;
            }
            t.session
                .set_piece_ranges_wanted(now(), &sel)
                .map_err(|e| err(e.to_string()))?;
            t.selections = sel;
        }
        drive(&self.h);
        Ok(())
    }

    /// Fetches pieces `start` to `end` (inclusive) before anything else, as webtorrent's
    /// `torrent.critical` (the same as [`prioritize`](Self::prioritize) with their bytes).
    pub fn critical(&self, start: f64, end: f64) -> Result<(), JsValue> {
        let range = self.piece_range(start, end)?;
        let bytes = {
            let t = self.h.borrow();
            let m = t
                .meta()
                .ok_or_else(|| JsValue::from_str("no metadata yet"))?;
            let pl = u64::from(m.info.piece_length());
            let total = m.info.total_length();
            u64::from(range.start) * pl..(u64::from(range.end) * pl).min(total)
        };
        self.prioritize(bytes.start as f64, bytes.end as f64)
    }

    /// Pieces `start..=end` as an end-exclusive range, checked against the torrent.
    fn piece_range(&self, start: f64, end: f64) -> Result<std::ops::Range<u32>, JsValue> {
        let err = |m: String| JsValue::from(js_sys::Error::new(&m));
        let n = self
            .h
            .borrow()
            .meta()
            .map(|m| m.info.num_pieces())
            .ok_or_else(|| err("no metadata yet: wait for the `metadata` event".into()))?;
        let whole = |x: f64| x >= 0.0 && x.fract() == 0.0 && x < f64::from(n);
        if !(whole(start) && whole(end) && start <= end) {
            return Err(err(format!(
                "pieces {start} to {end}: give 0 <= start <= end < {n} (the torrent's piece count)"
            )));
        }
        Ok(start as u32..end as u32 + 1)
    }

    /// Undoes [`prioritize`](Self::prioritize).
    pub fn deprioritize(&self) -> Result<(), JsValue> {
        let res = self.h.borrow_mut().session.set_priority_range(now(), None);
        res.map_err(|e| JsValue::from(js_sys::Error::new(&e.to_string())))?;
        drive(&self.h);
        Ok(())
    }

    /// Uses a web seed (BEP 19): an `http://` or `https://` URL serving the torrent's files
    /// with Range requests and CORS headers. Returns false when it is known already or the
    /// torrent has as many as it takes.
    #[wasm_bindgen(js_name = addWebSeed)]
    pub fn add_web_seed(&self, url: &str) -> bool {
        let added = self.h.borrow_mut().session.add_web_seed(now(), url);
        drive(&self.h);
        added
    }

    /// Stops the torrent and forgets it.
    pub fn destroy(&self) {
        let client = self.h.borrow().client.clone();
        destroy(&self.h);
        client.forget(&self.h);
    }
}

/// One file of a torrent.
#[wasm_bindgen]
pub struct TorrentFile {
    h: Handle,
    index: usize,
}

#[wasm_bindgen]
impl TorrentFile {
    fn entry(&self) -> Option<(Arc<Metainfo>, usize)> {
        self.h.borrow().meta().map(|m| (m, self.index))
    }

    /// The file name (last path component).
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.entry()
            .and_then(|(m, i)| m.info.files.get(i).and_then(|f| f.path.last().cloned()))
            .unwrap_or_default()
    }

    /// The path inside the torrent, `/`-separated, starting with the torrent name for
    /// multi-file torrents.
    #[wasm_bindgen(getter)]
    pub fn path(&self) -> String {
        let Some((m, i)) = self.entry() else {
            return String::new();
        };
        let Some(f) = m.info.files.get(i) else {
            return String::new();
        };
        if m.info.single_file {
            f.path_string()
        } else {
            format!("{}/{}", m.info.name, f.path_string())
        }
    }

    /// Size in bytes.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.entry()
            .and_then(|(m, i)| m.info.files.get(i).map(|f| f.length as f64))
            .unwrap_or(0.0)
    }

    /// The file's index among the files users see (padding files left out).
    fn visible_index(&self) -> Option<usize> {
        let (m, i) = self.entry()?;
        Some(
            m.info.files[..i.min(m.info.files.len())]
                .iter()
                .filter(|f| !f.padding)
                .count(),
        )
    }

    fn set_wanted(&self, on: bool) -> Result<(), JsValue> {
        let err = |m: String| JsValue::from(js_sys::Error::new(&m));
        let i = self
            .visible_index()
            .ok_or_else(|| err("no metadata yet".into()))?;
        {
            let mut t = self.h.borrow_mut();
            let mut wanted = t
                .session
                .files_wanted()
                .ok_or_else(|| err("no metadata yet".into()))?;
            if let Some(w) = wanted.get_mut(i) {
                *w = on;
            }
            t.session
                .set_files_wanted(now(), &wanted)
                .map_err(|e| err(e.to_string()))?;
        }
        drive(&self.h);
        Ok(())
    }

    /// Downloads this file (pieces shared with other files are fetched in any case).
    pub fn select(&self) -> Result<(), JsValue> {
        self.set_wanted(true)
    }

    /// Stops downloading this file, apart from pieces it shares with selected files; a
    /// stream opened on it selects it again.
    pub fn deselect(&self) -> Result<(), JsValue> {
        self.set_wanted(false)
    }

    /// A `ReadableStream` of the file's bytes `start..=end` (both optional, `end` inclusive
    /// as in webtorrent's `createReadStream`), readable while the file downloads: each read
    /// waits for its piece, and the stream's position and 8 MiB ahead are fetched first.
    pub fn stream(&self, opts: JsValue) -> Result<web_sys::ReadableStream, JsValue> {
        let err = |m: String| JsValue::from(js_sys::Error::new(&m));
        let (m, i) = self.entry().ok_or_else(|| err("no metadata yet".into()))?;
        let f = m
            .info
            .files
            .get(i)
            .ok_or_else(|| err("no such file".into()))?;
        let num = |k: &str| -> Result<Option<u64>, JsValue> {
            if opts.is_undefined() || opts.is_null() {
                return Ok(None);
            }
            let v = js_sys::Reflect::get(&opts, &k.into())?;
            match v.as_f64() {
                None if v.is_undefined() => Ok(None),
                Some(x) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
                _ => Err(err(format!(
                    "stream({{ {k} }}) takes a whole number of bytes >= 0"
                ))),
            }
        };
        let start = num("start")?.unwrap_or(0);
        let end = num("end")?.map_or(f.length, |e| e.saturating_add(1).min(f.length));
        if start > end {
            return Err(err(format!(
                "stream({{ start: {start} }}) is past the end of the file ({} bytes)",
                f.length
            )));
        }
        super::stream::readable(self.h.clone(), f.offset + start..f.offset + end)
    }

    /// The file's bytes as a `Blob` (rejects until the download is complete).
    pub fn blob(&self) -> js_sys::Promise {
        let h = self.h.clone();
        let index = self.index;
        wasm_bindgen_futures::future_to_promise(async move {
            let (view, info, range) = {
                let t = h.borrow();
                let meta = t
                    .meta()
                    .ok_or_else(|| JsValue::from_str("no metadata yet"))?;
                let f = meta
                    .info
                    .files
                    .get(index)
                    .ok_or_else(|| JsValue::from_str("no such file"))?;
                let range = f.range();
                let have_all = t.session.have().is_some_and(|b| {
                    let layout = meta.info.layout;
                    layout.pieces().all(|p| {
                        let ps = layout.piece_offset(p);
                        let pe = ps + layout.piece_len(p) as u64;
                        pe <= range.start || ps >= range.end || b.get(p)
                    })
                });
                if !have_all {
                    return Err(JsValue::from_str("the file is not downloaded yet"));
                }
                let view = match &t.store {
                    Some(Store::Blobs(b)) => StoreView::Blobs(b.clone()),
                    Some(Store::Memory(buf)) => {
                        let bytes = usize::try_from(range.end - range.start)
                            .ok()
                            .and_then(|len| buf.read(range.start, len).ok())
                            .ok_or_else(|| JsValue::from_str("the file is too large for memory"))?;
                        StoreView::Memory(Bytes::from(bytes))
                    }
                    Some(Store::Opfs(d)) => StoreView::Opfs(d.clone()),
                    None => return Err(JsValue::from_str("no storage")),
                };
                (view, Arc::new(meta.info.clone()), range)
            };
            let blob = match &view {
                StoreView::Memory(b) => store::range_blob(&view, &info, 0, b.len() as u64).await,
                _ => store::range_blob(&view, &info, range.start, range.end).await,
            }
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
            Ok(blob.into())
        })
    }
}
