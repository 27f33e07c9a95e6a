//! Keeping torrents across reloads: what `seed()` and `add()` record with `keep`, and
//! `saved()`, `restore()` and `forget()` (see [`crate::persist`] for the records and data).

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use js_sys::{Array, Object, Uint8Array};
use wasm_bindgen::prelude::*;
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::InfoHash;

use crate::client::{js_err, ClientShared, InputFile};
use crate::persist::{self, set, DataSource};
use crate::store::{self, Store};
use crate::torrent::{self, Handle, Source, Torrent};
use crate::util::{self, prop};

fn base_record(info_hash: &str, name: &str, kind: &str, data: DataSource, length: u64) -> Object {
    let rec = Object::new();
    set(&rec, "infoHash", &info_hash.into());
    set(&rec, "name", &name.into());
    set(&rec, "kind", &kind.into());
    set(&rec, "data", &data.as_str().into());
    set(&rec, "length", &JsValue::from_f64(length as f64));
    set(&rec, "addedAt", &JsValue::from_f64(js_sys::Date::now()));
    rec
}

/// Writes a torrent's record; once stored the torrent is `kept` (and persistent storage is
/// asked for), else the torrent warns.
async fn record(shared: &Rc<ClientShared>, h: &Handle, rec: &Object) {
    match shared.registry.put(rec).await {
        Ok(()) => {
            h.borrow_mut().kept = true;
            torrent::notify(h, "kept", JsValue::UNDEFINED);
            persist::request_persistence().await;
        }
        Err(e) => warn_torrent(
            h,
            format!("cannot keep the torrent for after a reload: {e}"),
        ),
    }
}

fn warn_torrent(h: &Handle, msg: String) {
    util::warn(&msg);
    torrent::notify(h, "warning", JsValue::from_str(&msg));
}

/// Records a new seed: by its handles when every file came with one, else by a copy in the
/// OPFS (written while the seed already runs from the user's files).
pub(crate) async fn keep_seed(
    shared: &Rc<ClientShared>,
    h: &Handle,
    meta: &Arc<Metainfo>,
    torrent_file: &Bytes,
    files: &[InputFile],
) {
    let hex = meta.info_hash.to_hex();
    let by_handles = files.iter().all(|f| f.handle.is_some());
    let data = if by_handles {
        DataSource::Handles
    } else {
        DataSource::Copy
    };
    let rec = base_record(
        &hex,
        &meta.info.name,
        "seed",
        data,
        meta.info.total_length(),
    );
    set(
        &rec,
        "torrentFile",
        &Uint8Array::from(&torrent_file[..]).into(),
    );
    let stamps: Vec<(Vec<String>, u64, f64)> = files
        .iter()
        .map(|f| (f.path.clone(), f.len, f.modified))
        .collect();
    set(&rec, "files", &persist::file_stamps(&stamps).into());
    if by_handles {
        let handles: Array = files.iter().filter_map(|f| f.handle.clone()).collect();
        set(&rec, "handles", &handles.into());
    } else {
        let blobs: Vec<web_sys::Blob> = files.iter().map(|f| f.blob.clone()).collect();
        let folder = persist::copy_folder(&hex);
        if let Err(e) = persist::copy_to_opfs(&folder, &blobs).await {
            persist::opfs_remove_folder(&folder).await;
            warn_torrent(
                h,
                format!("cannot keep a copy to seed after a reload: {e}; the seed stops when the page closes"),
            );
            return;
        }
    }
    if h.borrow().destroyed {
        // Removed while the copy was written.
        if !by_handles {
            persist::opfs_remove_folder(&persist::copy_folder(&hex)).await;
        }
        return;
    }
    record(shared, h, &rec).await;
}

/// Records a download kept in the OPFS (its metadata is added when it arrives). An existing
/// record keeps its metadata.
pub(crate) async fn keep_download(shared: &Rc<ClientShared>, h: &Handle, magnet: String) {
    let (hex, name, len, file) = {
        let t = h.borrow();
        let meta = t.session.metainfo().cloned();
        (
            t.info_hash.to_hex(),
            meta.as_ref()
                .map(|m| m.info.name.clone())
                .or_else(|| t.name_hint.clone())
                .unwrap_or_default(),
            meta.as_ref().map(|m| m.info.total_length()).unwrap_or(0),
            t.torrent_file.clone(),
        )
    };
    let rec = base_record(&hex, &name, "download", DataSource::Pieces, len);
    set(&rec, "magnet", &magnet.into());
    match (file, shared.registry.get(&hex).await) {
        (Some(f), _) => set(&rec, "torrentFile", &Uint8Array::from(&f[..]).into()),
        (None, Ok(Some(old))) => {
            if let Some(f) = prop(&old, "torrentFile") {
                set(&rec, "torrentFile", &f);
            }
        }
        _ => {}
    }
    record(shared, h, &rec).await;
}

/// The metadata of a kept torrent, if its record has it.
pub(crate) async fn kept_metainfo(
    shared: &Rc<ClientShared>,
    ih: InfoHash,
) -> Option<(Arc<Metainfo>, Bytes)> {
    let rec = shared.registry.get(&ih.to_hex()).await.ok()??;
    let bytes = persist::record_torrent_file(&rec)?;
    let meta = Metainfo::from_bytes(&bytes).ok()?;
    (meta.info_hash == ih).then(|| (Arc::new(meta), Bytes::from(bytes)))
}

/// `client.saved()`.
pub(crate) async fn saved(shared: &Rc<ClientShared>) -> Result<JsValue, JsValue> {
    let records = shared.registry.all().await.map_err(js_err)?;
    let out = Array::new();
    for rec in records {
        let o = Object::new();
        for key in ["infoHash", "name", "kind", "data", "length", "addedAt"] {
            if let Some(v) = prop(&rec, key) {
                set(&o, key, &v);
            }
        }
        let permission = match prop(&rec, "handles") {
            Some(handles) => {
                let mut worst = "granted".to_string();
                for h in Array::from(&handles).iter() {
                    let p = persist::query_permission(&h).await;
                    if p != "granted" {
                        worst = p;
                        break;
                    }
                }
                JsValue::from_str(&worst)
            }
            None => JsValue::NULL,
        };
        set(&o, "permission", &permission);
        let active = prop(&rec, "infoHash")
            .and_then(|v| v.as_string())
            .and_then(|hex| InfoHash::from_hex(&hex).ok())
            .is_some_and(|ih| shared.find(ih).is_some());
        set(&o, "active", &JsValue::from_bool(active));
        out.push(&o);
    }
    Ok(out.into())
}

/// `client.restore(which)`.
pub(crate) async fn restore(
    shared: &Rc<ClientShared>,
    which: Option<Vec<String>>,
) -> Result<JsValue, JsValue> {
    if shared.destroyed.get() {
        return Err(js_err("client is destroyed"));
    }
    let wanted: Option<Vec<String>> =
        which.map(|w| w.into_iter().map(|s| s.to_ascii_lowercase()).collect());
    let records = shared.registry.all().await.map_err(js_err)?;
    let out = Array::new();
    for rec in records {
        let Some(hex) = prop(&rec, "infoHash").and_then(|v| v.as_string()) else {
            continue;
        };
        if wanted.as_ref().is_some_and(|w| !w.contains(&hex)) {
            continue;
        }
        let result = Object::new();
        set(&result, "infoHash", &hex.as_str().into());
        set(
            &result,
            "name",
            &prop(&rec, "name").unwrap_or(JsValue::NULL),
        );
        match restore_one(shared, &hex, &rec).await {
            Ok(h) => set(&result, "torrent", &Torrent { h }.into()),
            Err(e) => set(&result, "error", &JsValue::from_str(&e)),
        }
        out.push(&result);
    }
    Ok(out.into())
}

async fn restore_one(
    shared: &Rc<ClientShared>,
    hex: &str,
    rec: &JsValue,
) -> Result<Handle, String> {
    let ih = InfoHash::from_hex(hex).map_err(|e| format!("bad record: {e}"))?;
    if let Some(h) = shared.find(ih) {
        return Ok(h);
    }
    let data = prop(rec, "data")
        .and_then(|v| v.as_string())
        .and_then(|s| DataSource::parse(&s))
        .ok_or("bad record: unknown data source")?;
    let meta = match persist::record_torrent_file(rec) {
        Some(bytes) => {
            let meta = Metainfo::from_bytes(&bytes)
                .map_err(|e| format!("the kept .torrent is damaged: {e}"))?;
            if meta.info_hash != ih {
                return Err("the kept .torrent belongs to another torrent".into());
            }
            Some((Arc::new(meta), Bytes::from(bytes)))
        }
        None => None,
    };
    let source = match (data, meta) {
        (DataSource::Pieces, Some((meta, torrent_file))) => Source::Torrent { meta, torrent_file },
        (DataSource::Pieces, None) => {
            let magnet = prop(rec, "magnet")
                .and_then(|v| v.as_string())
                .and_then(|m| Magnet::parse(&m).ok())
                .unwrap_or_else(|| Magnet::new(ih));
            Source::Magnet(magnet)
        }
        (_, None) => return Err("bad record: a seed without its .torrent".into()),
        (DataSource::Copy, Some((meta, torrent_file))) => {
            let lengths: Vec<u64> = data_files(&meta).map(|f| f.length).collect();
            let blobs = persist::copied_files(&persist::copy_folder(hex), &lengths)
                .await
                .map_err(|e| e.to_string())?;
            Source::Seed {
                store: Store::Blobs(lay_out(&meta, blobs)),
                meta,
                torrent_file,
            }
        }
        (DataSource::Handles, Some((meta, torrent_file))) => {
            let blobs = reopen_handles(rec, &meta).await?;
            Source::Seed {
                store: Store::Blobs(lay_out(&meta, blobs)),
                meta,
                torrent_file,
            }
        }
    };
    let h = torrent::start(shared.clone(), source, shared.announce.clone(), true)?;
    h.borrow_mut().kept = true;
    shared.torrents.borrow_mut().push(h.clone());
    Ok(h)
}

/// The files that hold data (padding files aside), in torrent order.
fn data_files(meta: &Metainfo) -> impl Iterator<Item = &webtorrent_core::metainfo::FileEntry> {
    meta.info.files.iter().filter(|f| !f.padding)
}

/// Blobs at their torrent offsets.
fn lay_out(meta: &Metainfo, blobs: Vec<web_sys::Blob>) -> Vec<(web_sys::Blob, u64, u64)> {
    data_files(meta)
        .zip(blobs)
        .map(|(f, b)| (b, f.offset, f.length))
        .collect()
}

/// The user's files again, through their handles: read permission (asked for when needed),
/// sizes checked, and files modified since they were seeded rechecked against the torrent.
async fn reopen_handles(rec: &JsValue, meta: &Arc<Metainfo>) -> Result<Vec<web_sys::Blob>, String> {
    let handles: Vec<JsValue> = prop(rec, "handles")
        .map(|h| Array::from(&h).iter().collect())
        .unwrap_or_default();
    let expected: Vec<&webtorrent_core::metainfo::FileEntry> = data_files(meta).collect();
    if handles.len() != expected.len() {
        return Err("bad record: the file handles do not match the torrent".into());
    }
    let stamps = persist::read_stamps(rec);
    let mut blobs = Vec::with_capacity(handles.len());
    let mut changed = false;
    for (i, (handle, entry)) in handles.iter().zip(&expected).enumerate() {
        let name = entry.path_string();
        let mut permission = persist::query_permission(handle).await;
        if permission != "granted" {
            permission = persist::request_permission(handle).await;
        }
        if permission != "granted" {
            return Err(format!(
                "no permission to read “{name}” ({permission}): allow it when the browser asks, or drop the file again"
            ));
        }
        let file = persist::handle_file(handle).await.map_err(|e| {
            format!(
                "cannot open “{name}” ({}): it may have been moved or deleted; drop it again to share it",
                util::js_error_message(&e)
            )
        })?;
        if file.size() as u64 != entry.length {
            return Err(format!(
                "“{name}” changed since it was shared ({} bytes, the torrent has {}): drop it again to share the new version",
                file.size(),
                entry.length
            ));
        }
        if stamps.get(i).map(|s| s.1) != Some(file.last_modified()) {
            changed = true;
        }
        blobs.push(web_sys::Blob::from(file));
    }
    if changed {
        // Same sizes, newer dates: seed only if every piece still matches.
        let laid = lay_out(meta, blobs.clone());
        let total = meta.info.total_length();
        let pieces = crate::hash::hash_blobs(&laid, total, meta.info.piece_length())
            .await
            .map_err(|e| format!("cannot recheck the files: {}", util::js_error_message(&e)))?;
        if pieces[..] != meta.info.pieces[..] {
            return Err(
                "the files changed since they were shared: drop them again to share the new version"
                    .into(),
            );
        }
    }
    Ok(blobs)
}

/// `client.forget(infoHash)` once the torrent is stopped.
pub(crate) async fn forget(shared: &Rc<ClientShared>, hex: &str) -> Result<(), JsValue> {
    shared.registry.delete(hex).await.map_err(js_err)?;
    persist::opfs_remove_folder(&persist::copy_folder(hex)).await;
    store::opfs_remove(hex).await;
    Ok(())
}
