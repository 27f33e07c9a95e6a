//! What survives a reload: a registry of kept torrents in IndexedDB (database `webtorrent-rs`,
//! store `torrents`, one record per info hash) and the data they come back from:
//!
//! - `handles`: the user's own files, through File System Access handles kept in the record
//!   (nothing copied; the browser may ask the user again for permission to read them);
//! - `copy`: a copy of the files in the Origin Private File System (`webtorrent-copy-<hex>/`,
//!   one file per torrent file, named by its index);
//! - `pieces`: a download's verified pieces in the OPFS (`webtorrent-<hex>/`, see
//!   [`crate::store`]).
//!
//! A record is a plain object: `{ infoHash, name, kind: 'seed' | 'download', data, length,
//! addedAt, torrentFile?, magnet?, files?: [{ path, length, lastModified }], handles? }`.

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::store::StoreError;
use crate::util::{js_error_message, prop};

const DB_NAME: &str = "webtorrent-rs";
const DB_STORE: &str = "torrents";

/// Where a kept torrent's bytes come back from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataSource {
    /// File System Access handles to the user's files.
    Handles,
    /// A copy in the OPFS.
    Copy,
    /// A download's pieces in the OPFS.
    Pieces,
}

impl DataSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DataSource::Handles => "handles",
            DataSource::Copy => "copy",
            DataSource::Pieces => "pieces",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DataSource> {
        match s {
            "handles" => Some(DataSource::Handles),
            "copy" => Some(DataSource::Copy),
            "pieces" => Some(DataSource::Pieces),
            _ => None,
        }
    }
}

/// Sets `obj[key] = value` (plain objects cannot refuse).
pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// A promise settled by an IndexedDB request's `success` (with its result) or `error`.
fn request_done(req: &web_sys::IdbRequest) -> Promise {
    let req = req.clone();
    Promise::new(&mut |resolve: Function, reject: Function| {
        let r = req.clone();
        let ok = Closure::once_into_js(move |_e: JsValue| {
            let _ = resolve.call1(&JsValue::NULL, &r.result().unwrap_or(JsValue::UNDEFINED));
        });
        let r = req.clone();
        let err = Closure::once_into_js(move |_e: JsValue| {
            let e = r
                .error()
                .ok()
                .flatten()
                .map(JsValue::from)
                .unwrap_or_else(|| JsValue::from_str("IndexedDB request failed"));
            let _ = reject.call1(&JsValue::NULL, &e);
        });
        req.set_onsuccess(Some(ok.unchecked_ref()));
        req.set_onerror(Some(err.unchecked_ref()));
    })
}

/// A promise settled when a transaction commits (or fails or aborts).
fn transaction_done(tx: &web_sys::IdbTransaction) -> Promise {
    let tx = tx.clone();
    Promise::new(&mut |resolve: Function, reject: Function| {
        let ok = Closure::once_into_js(move |_e: JsValue| {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let reject2 = reject.clone();
        let t = tx.clone();
        let err = Closure::once_into_js(move |_e: JsValue| {
            let e = t
                .error()
                .map(JsValue::from)
                .unwrap_or_else(|| JsValue::from_str("IndexedDB transaction failed"));
            let _ = reject.call1(&JsValue::NULL, &e);
        });
        let abort = Closure::once_into_js(move |_e: JsValue| {
            let _ = reject2.call1(
                &JsValue::NULL,
                &JsValue::from_str("IndexedDB transaction aborted (storage full?)"),
            );
        });
        tx.set_oncomplete(Some(ok.unchecked_ref()));
        tx.set_onerror(Some(err.unchecked_ref()));
        tx.set_onabort(Some(abort.unchecked_ref()));
    })
}

/// The registry: opened once per client, on first use.
#[derive(Default)]
pub(crate) struct Registry {
    db: std::cell::RefCell<Option<web_sys::IdbDatabase>>,
}

impl Registry {
    async fn db(&self) -> Result<web_sys::IdbDatabase, StoreError> {
        if let Some(db) = self.db.borrow().as_ref() {
            return Ok(db.clone());
        }
        let factory: web_sys::IdbFactory = prop(&js_sys::global(), "indexedDB")
            .ok_or_else(|| {
                StoreError("this environment has no IndexedDB: torrents cannot be kept".into())
            })?
            .unchecked_into();
        let open = factory.open_with_u32(DB_NAME, 1)?;
        let upgrade = Closure::once_into_js({
            let open = open.clone();
            move |_e: JsValue| {
                if let Ok(db) = open.result() {
                    let db: web_sys::IdbDatabase = db.unchecked_into();
                    if !db.object_store_names().contains(DB_STORE) {
                        let opts = web_sys::IdbObjectStoreParameters::new();
                        opts.set_key_path(&JsValue::from_str("infoHash"));
                        let _ = db.create_object_store_with_optional_parameters(DB_STORE, &opts);
                    }
                }
            }
        });
        open.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
        let db: web_sys::IdbDatabase = JsFuture::from(request_done(&open)).await?.unchecked_into();
        *self.db.borrow_mut() = Some(db.clone());
        Ok(db)
    }

    async fn store(
        &self,
        mode: web_sys::IdbTransactionMode,
    ) -> Result<(web_sys::IdbTransaction, web_sys::IdbObjectStore), StoreError> {
        let db = self.db().await?;
        let tx = db.transaction_with_str_and_mode(DB_STORE, mode)?;
        let store = tx.object_store(DB_STORE)?;
        Ok((tx, store))
    }

    /// Every record.
    pub(crate) async fn all(&self) -> Result<Vec<Object>, StoreError> {
        let (_tx, store) = self.store(web_sys::IdbTransactionMode::Readonly).await?;
        let list = JsFuture::from(request_done(&store.get_all()?)).await?;
        Ok(Array::from(&list)
            .iter()
            .filter(|v| v.is_object())
            .map(|v| v.unchecked_into())
            .collect())
    }

    /// The record of one torrent.
    pub(crate) async fn get(&self, info_hash: &str) -> Result<Option<Object>, StoreError> {
        let (_tx, store) = self.store(web_sys::IdbTransactionMode::Readonly).await?;
        let v = JsFuture::from(request_done(&store.get(&JsValue::from_str(info_hash))?)).await?;
        Ok(v.is_object().then(|| v.unchecked_into()))
    }

    /// Writes a record (replacing the one with its info hash), committed when this returns.
    pub(crate) async fn put(&self, record: &Object) -> Result<(), StoreError> {
        let (tx, store) = self.store(web_sys::IdbTransactionMode::Readwrite).await?;
        store.put(record)?;
        JsFuture::from(transaction_done(&tx)).await?;
        Ok(())
    }

    /// Changes some fields of a record, if there is one.
    pub(crate) async fn update(&self, info_hash: &str, fields: &[(&str, JsValue)]) {
        let Ok(Some(rec)) = self.get(info_hash).await else {
            return;
        };
        for (k, v) in fields {
            set(&rec, k, v);
        }
        if let Err(e) = self.put(&rec).await {
            crate::util::warn(&format!("cannot update the kept torrent {info_hash}: {e}"));
        }
    }

    /// Deletes a record.
    pub(crate) async fn delete(&self, info_hash: &str) -> Result<(), StoreError> {
        let (tx, store) = self.store(web_sys::IdbTransactionMode::Readwrite).await?;
        store.delete(&JsValue::from_str(info_hash))?;
        JsFuture::from(transaction_done(&tx)).await?;
        Ok(())
    }
}

/// Asks the browser not to evict this origin's storage (best effort; no prompt in Chromium).
pub(crate) async fn request_persistence() {
    let Some(storage) = storage_manager() else {
        return;
    };
    if let Ok(p) = storage.persisted() {
        if JsFuture::from(p).await.ok().and_then(|v| v.as_bool()) == Some(true) {
            return;
        }
    }
    if let Ok(p) = storage.persist() {
        let _ = JsFuture::from(p).await;
    }
}

pub(crate) fn storage_manager() -> Option<web_sys::StorageManager> {
    let nav = prop(&js_sys::global(), "navigator")?;
    prop(&nav, "storage").map(|s| s.unchecked_into())
}

/// The OPFS root folder.
pub(crate) async fn opfs_root() -> Result<web_sys::FileSystemDirectoryHandle, StoreError> {
    let storage = storage_manager().ok_or_else(|| StoreError("no navigator.storage".into()))?;
    Ok(JsFuture::from(storage.get_directory())
        .await?
        .unchecked_into())
}

/// Opens a folder of the OPFS root, creating it if asked.
pub(crate) async fn opfs_folder(
    name: &str,
    create: bool,
) -> Result<web_sys::FileSystemDirectoryHandle, StoreError> {
    let root = opfs_root().await?;
    let opts = web_sys::FileSystemGetDirectoryOptions::new();
    opts.set_create(create);
    Ok(
        JsFuture::from(root.get_directory_handle_with_options(name, &opts))
            .await?
            .unchecked_into(),
    )
}

/// Removes a folder of the OPFS root with everything in it (best effort).
pub(crate) async fn opfs_remove_folder(name: &str) {
    let Ok(root) = opfs_root().await else {
        return;
    };
    let opts = web_sys::FileSystemRemoveOptions::new();
    opts.set_recursive(true);
    let _ = JsFuture::from(root.remove_entry_with_options(name, &opts)).await;
}

/// The folder of a kept copy.
pub(crate) fn copy_folder(info_hash_hex: &str) -> String {
    format!("webtorrent-copy-{info_hash_hex}")
}

/// Copies blobs into a new OPFS folder, one file per blob named by its index. The browser
/// streams each blob to disk; nothing is loaded into memory.
pub(crate) async fn copy_to_opfs(folder: &str, blobs: &[web_sys::Blob]) -> Result<(), StoreError> {
    let dir = opfs_folder(folder, true).await?;
    for (i, blob) in blobs.iter().enumerate() {
        let opts = web_sys::FileSystemGetFileOptions::new();
        opts.set_create(true);
        let h: web_sys::FileSystemFileHandle =
            JsFuture::from(dir.get_file_handle_with_options(&i.to_string(), &opts))
                .await?
                .unchecked_into();
        let w: web_sys::FileSystemWritableFileStream =
            JsFuture::from(h.create_writable()).await?.unchecked_into();
        if let Err(e) = JsFuture::from(w.write_with_blob(blob)?).await {
            let _ = JsFuture::from(w.abort()).await;
            return Err(e.into());
        }
        JsFuture::from(w.close()).await?;
    }
    Ok(())
}

/// The files of a kept copy, in torrent order, checked against the expected sizes.
pub(crate) async fn copied_files(
    folder: &str,
    lengths: &[u64],
) -> Result<Vec<web_sys::Blob>, StoreError> {
    let dir = opfs_folder(folder, false)
        .await
        .map_err(|e| StoreError(format!("the kept copy is gone ({e})")))?;
    let mut out = Vec::with_capacity(lengths.len());
    for (i, len) in lengths.iter().enumerate() {
        let h: web_sys::FileSystemFileHandle = JsFuture::from(dir.get_file_handle(&i.to_string()))
            .await
            .map_err(|e| {
                StoreError(format!(
                    "file {i} of the kept copy is gone ({})",
                    js_error_message(&e)
                ))
            })?
            .unchecked_into();
        let f: web_sys::File = JsFuture::from(h.get_file()).await?.unchecked_into();
        if f.size() as u64 != *len {
            return Err(StoreError(format!(
                "file {i} of the kept copy has {} bytes, expected {len}",
                f.size()
            )));
        }
        out.push(f.into());
    }
    Ok(out)
}

/// Whether a value is a File System Access file handle.
pub(crate) fn is_file_handle(v: &JsValue) -> bool {
    prop(v, "kind").and_then(|k| k.as_string()).as_deref() == Some("file")
        && prop(v, "getFile").is_some_and(|f| f.is_function())
}

/// Whether a value is a File System Access folder handle.
pub(crate) fn is_dir_handle(v: &JsValue) -> bool {
    prop(v, "kind").and_then(|k| k.as_string()).as_deref() == Some("directory")
        && prop(v, "values").is_some_and(|f| f.is_function())
}

/// Calls `obj.method(arg)` and awaits the promise it returns.
async fn call_async(obj: &JsValue, method: &str, arg: &JsValue) -> Result<JsValue, JsValue> {
    let f: Function = prop(obj, method)
        .filter(|f| f.is_function())
        .ok_or_else(|| JsValue::from_str(&format!("{method} is not supported here")))?
        .unchecked_into();
    let p = f.call1(obj, arg)?;
    JsFuture::from(Promise::resolve(&p)).await
}

/// The handles of every file under a folder handle, with their paths below it, sorted by path.
pub(crate) async fn walk_dir(dir: &JsValue) -> Result<Vec<(Vec<String>, JsValue)>, JsValue> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<String>, JsValue)> = vec![(Vec::new(), dir.clone())];
    while let Some((prefix, d)) = stack.pop() {
        let values: Function = prop(&d, "values")
            .ok_or_else(|| JsValue::from_str("not a folder handle"))?
            .unchecked_into();
        let it = values.call0(&d)?;
        loop {
            let step = call_async(&it, "next", &JsValue::UNDEFINED).await?;
            if prop(&step, "done").and_then(|d| d.as_bool()) == Some(true) {
                break;
            }
            let Some(entry) = prop(&step, "value") else {
                break;
            };
            let name = prop(&entry, "name")
                .and_then(|n| n.as_string())
                .unwrap_or_default();
            let mut path = prefix.clone();
            path.push(name);
            if is_dir_handle(&entry) {
                stack.push((path, entry));
            } else if is_file_handle(&entry) {
                out.push((path, entry));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The file behind a handle.
pub(crate) async fn handle_file(handle: &JsValue) -> Result<web_sys::File, JsValue> {
    Ok(call_async(handle, "getFile", &JsValue::UNDEFINED)
        .await?
        .unchecked_into())
}

/// Read permission for a handle: `granted`, `prompt` or `denied` (`granted` where the
/// browser has no permission API for handles).
pub(crate) async fn query_permission(handle: &JsValue) -> String {
    let desc = Object::new();
    set(&desc, "mode", &"read".into());
    match call_async(handle, "queryPermission", &desc).await {
        Ok(v) => v.as_string().unwrap_or_else(|| "granted".into()),
        Err(_) => "granted".into(),
    }
}

/// Asks the user for read permission (needs a user gesture, such as the click that calls
/// `restore()`); the answer as for [`query_permission`].
pub(crate) async fn request_permission(handle: &JsValue) -> String {
    let desc = Object::new();
    set(&desc, "mode", &"read".into());
    match call_async(handle, "requestPermission", &desc).await {
        Ok(v) => v.as_string().unwrap_or_else(|| "denied".into()),
        Err(e) => format!("denied ({})", js_error_message(&e)),
    }
}

/// `[{ path, length, lastModified }]` for the record's `files`.
pub(crate) fn file_stamps(files: &[(Vec<String>, u64, f64)]) -> Array {
    files
        .iter()
        .map(|(path, len, modified)| {
            let o = Object::new();
            set(
                &o,
                "path",
                &path.iter().map(JsValue::from).collect::<Array>(),
            );
            set(&o, "length", &JsValue::from_f64(*len as f64));
            set(&o, "lastModified", &JsValue::from_f64(*modified));
            JsValue::from(o)
        })
        .collect()
}

/// A record's `files`: `(length, lastModified)` per file.
pub(crate) fn read_stamps(rec: &JsValue) -> Vec<(u64, f64)> {
    prop(rec, "files")
        .map(|f| Array::from(&f))
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        prop(&f, "length").and_then(|v| v.as_f64()).unwrap_or(-1.0) as u64,
                        prop(&f, "lastModified")
                            .and_then(|v| v.as_f64())
                            .unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A record's `torrentFile` bytes.
pub(crate) fn record_torrent_file(rec: &JsValue) -> Option<Vec<u8>> {
    prop(rec, "torrentFile")
        .filter(|v| v.is_instance_of::<Uint8Array>())
        .map(|v| Uint8Array::new(&v).to_vec())
}
