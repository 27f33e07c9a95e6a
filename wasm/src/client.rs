//! The JavaScript `WebTorrent` class: creates, seeds and adds torrents.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use webtorrent_core::creator::{auto_piece_length, FileSpec, TorrentCreator};
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::{InfoHash, PeerId, PeerKey};

use crate::keep::{keep_download, keep_seed};
use crate::persist::{self, Registry};
use crate::store::Store;
use crate::torrent::{self, Handle, Source, Torrent};
use crate::util::{self, prop, string_list};
use wasm_bindgen_futures::spawn_local;

/// Downloads up to this size stay in memory by default; larger ones go to the OPFS.
const DEFAULT_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

/// State shared by a client's torrents.
pub(crate) struct ClientShared {
    pub(crate) peer_id: PeerId,
    pub(crate) announce: Vec<String>,
    pub(crate) ice_servers: JsValue,
    pub(crate) max_conns: usize,
    pub(crate) memory_limit: u64,
    next_key: Cell<u64>,
    pub(crate) torrents: RefCell<Vec<Handle>>,
    pub(crate) trackers: RefCell<HashMap<String, Rc<crate::ws::WsTracker>>>,
    pub(crate) destroyed: Cell<bool>,
    /// Whether `seed()` and `add()` keep torrents for `restore()` unless told otherwise.
    pub(crate) keep: bool,
    /// Kept torrents (IndexedDB).
    pub(crate) registry: Registry,
}

impl ClientShared {
    /// A fresh connection key.
    pub(crate) fn next_key(&self) -> PeerKey {
        let k = self.next_key.get();
        self.next_key.set(k + 1);
        PeerKey(k)
    }

    /// Forgets a destroyed torrent.
    pub(crate) fn forget(&self, h: &Handle) {
        self.torrents.borrow_mut().retain(|t| !Rc::ptr_eq(t, h));
    }

    /// The torrent with this info hash.
    pub(crate) fn find(&self, info_hash: InfoHash) -> Option<Handle> {
        self.torrents
            .borrow()
            .iter()
            .find(|t| t.borrow().info_hash == info_hash)
            .cloned()
    }
}

#[wasm_bindgen(typescript_custom_section)]
const KEEP_TYPES: &str = r#"
/** A torrent kept for `restore()` (see `keep`). */
export interface SavedTorrent {
  infoHash: string;
  name: string;
  kind: 'seed' | 'download';
  /** Where its bytes come back from: the user's files through handles, a copy in the OPFS, or downloaded pieces in the OPFS. */
  data: 'handles' | 'copy' | 'pieces';
  length: number;
  addedAt: number;
  /** For `handles`: the browser's read permission (`prompt`: `restore()` asks the user). */
  permission: 'granted' | 'prompt' | 'denied' | null;
  /** Whether it runs in this client now. */
  active: boolean;
}
/** One kept torrent `restore()` tried: its torrent, or why it could not start. */
export interface RestoreResult {
  infoHash: string;
  name: string | null;
  torrent?: Torrent;
  error?: string;
}
"#;

/// A WebTorrent client (`new WebTorrent({ announce, peerId, maxConns })`).
#[wasm_bindgen]
pub struct WebTorrent {
    shared: Rc<ClientShared>,
}

pub(crate) fn js_err(msg: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&msg.to_string()).into()
}

/// One input file for seeding: path components, the blob, its size, and where it came from
/// (a File System Access handle and the file's modification time, when known).
pub(crate) struct InputFile {
    pub(crate) path: Vec<String>,
    pub(crate) blob: web_sys::Blob,
    pub(crate) len: u64,
    pub(crate) handle: Option<JsValue>,
    pub(crate) modified: f64,
}

fn file_of(v: &JsValue) -> Option<InputFile> {
    if let Some(f) = v.dyn_ref::<web_sys::File>() {
        let rel = prop(v, "webkitRelativePath")
            .and_then(|r| r.as_string())
            .unwrap_or_default();
        let path: Vec<String> = if rel.is_empty() {
            vec![f.name()]
        } else {
            rel.split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        };
        return Some(InputFile {
            path,
            blob: f.clone().into(),
            len: f.size() as u64,
            handle: None,
            modified: f.last_modified(),
        });
    }
    if let Some(b) = v.dyn_ref::<web_sys::Blob>() {
        return Some(InputFile {
            path: Vec::new(),
            blob: b.clone(),
            len: b.size() as u64,
            handle: None,
            modified: f64::NAN,
        });
    }
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        let parts = Array::of1(a);
        let blob = web_sys::Blob::new_with_u8_array_sequence(&parts).ok()?;
        return Some(InputFile {
            path: Vec::new(),
            blob,
            len: a.length() as u64,
            handle: None,
            modified: f64::NAN,
        });
    }
    if let Some(buf) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        let a = Uint8Array::new(buf);
        return file_of(&a.into());
    }
    None
}

/// The file behind a File System Access file handle, as an input with that handle.
async fn file_of_handle(handle: &JsValue, path: Vec<String>) -> Result<InputFile, JsValue> {
    let f = persist::handle_file(handle).await.map_err(|e| {
        js_err(format!(
            "cannot read the file: {}",
            util::js_error_message(&e)
        ))
    })?;
    let path = if path.is_empty() {
        vec![f.name()]
    } else {
        path
    };
    Ok(InputFile {
        path,
        len: f.size() as u64,
        modified: f.last_modified(),
        blob: f.into(),
        handle: Some(handle.clone()),
    })
}

async fn inputs(input: &JsValue) -> Result<Vec<InputFile>, JsValue> {
    let list: Vec<JsValue> = if Array::is_array(input) {
        Array::from(input).iter().collect()
    } else if let Some(fl) = input.dyn_ref::<web_sys::FileList>() {
        (0..fl.length())
            .filter_map(|i| fl.get(i))
            .map(JsValue::from)
            .collect()
    } else {
        vec![input.clone()]
    };
    let mut out = Vec::new();
    for v in list {
        if persist::is_file_handle(&v) {
            out.push(file_of_handle(&v, Vec::new()).await?);
            continue;
        }
        if persist::is_dir_handle(&v) {
            let top = prop(&v, "name")
                .and_then(|n| n.as_string())
                .unwrap_or_default();
            for (mut path, h) in persist::walk_dir(&v).await? {
                path.insert(0, top.clone());
                out.push(file_of_handle(&h, path).await?);
            }
            continue;
        }
        out.push(file_of(&v).ok_or_else(|| {
            js_err("seed() takes a File, a Blob, a Uint8Array, a FileSystemFileHandle, a FileSystemDirectoryHandle or an array of them")
        })?);
    }
    if out.is_empty() {
        return Err(js_err("nothing to seed"));
    }
    Ok(out)
}

#[wasm_bindgen]
impl WebTorrent {
    /// A client. Options: `announce` (tracker URLs added to every torrent), `peerId` (40 hex
    /// digits), `maxConns`, `iceServers` (as for `RTCPeerConnection`), `memoryLimit` (bytes
    /// of downloads kept in memory before the OPFS is used), `keep` (the default of `seed()`
    /// and `add()`'s `keep` option).
    #[wasm_bindgen(constructor)]
    pub fn new(opts: JsValue) -> Result<WebTorrent, JsValue> {
        let announce = prop(&opts, "announce")
            .map(|v| string_list(&v))
            .unwrap_or_default();
        let peer_id = match prop(&opts, "peerId").and_then(|v| v.as_string()) {
            Some(hex) => PeerId::from_hex(&hex).map_err(|e| js_err(format!("peerId: {e}")))?,
            None => {
                let mut id = util::random_bytes::<20>();
                id[..8].copy_from_slice(b"-WR0001-");
                // Printable tail, as other clients do.
                const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
                for b in id[8..].iter_mut() {
                    *b = ALPHABET[*b as usize % ALPHABET.len()];
                }
                PeerId::new(id)
            }
        };
        let max_conns = prop(&opts, "maxConns")
            .and_then(|v| v.as_f64())
            .map(|n| n.max(1.0) as usize)
            .unwrap_or(55);
        let memory_limit = prop(&opts, "memoryLimit")
            .and_then(|v| v.as_f64())
            .map(|n| n.max(0.0) as u64)
            .unwrap_or(DEFAULT_MEMORY_LIMIT);
        let ice_servers = prop(&opts, "iceServers").unwrap_or(JsValue::UNDEFINED);
        Ok(WebTorrent {
            shared: Rc::new(ClientShared {
                peer_id,
                announce,
                ice_servers,
                max_conns,
                memory_limit,
                next_key: Cell::new(1),
                torrents: RefCell::new(Vec::new()),
                trackers: RefCell::new(HashMap::new()),
                destroyed: Cell::new(false),
                keep: prop(&opts, "keep")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                registry: Registry::default(),
            }),
        })
    }

    /// Our peer id, hex.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.shared.peer_id.to_hex()
    }

    /// The torrents of this client.
    #[wasm_bindgen(getter)]
    pub fn torrents(&self) -> Array {
        self.shared
            .torrents
            .borrow()
            .iter()
            .map(|h| JsValue::from(Torrent { h: h.clone() }))
            .collect()
    }

    /// The torrent with this info hash (hex), if any.
    pub fn get(&self, info_hash: &str) -> Option<Torrent> {
        let ih = InfoHash::from_hex(info_hash).ok()?;
        self.shared.find(ih).map(|h| Torrent { h })
    }

    /// Seeds files: resolves to a `Torrent` once every piece is hashed. `input` is a `File`,
    /// `Blob`, `Uint8Array`, `FileSystemFileHandle`, `FileSystemDirectoryHandle` or an array of
    /// them; options `name`, `announce`, `pieceLength`, `keep` (seed again after a reload with
    /// `restore()`: from the handles when given, else from a copy in the Origin Private File
    /// System).
    pub fn seed(&self, input: JsValue, opts: JsValue) -> js_sys::Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            if shared.destroyed.get() {
                return Err(js_err("client is destroyed"));
            }
            let files = inputs(&input).await?;
            let keep = prop(&opts, "keep")
                .and_then(|v| v.as_bool())
                .unwrap_or(shared.keep);
            let total: u64 = files.iter().map(|f| f.len).sum();
            let name = prop(&opts, "name")
                .and_then(|v| v.as_string())
                .or_else(|| {
                    if files.len() == 1 {
                        files[0].path.last().cloned()
                    } else {
                        let first = files[0].path.first()?;
                        files
                            .iter()
                            .all(|f| f.path.len() > 1 && f.path.first() == Some(first))
                            .then(|| first.clone())
                    }
                })
                .unwrap_or_else(|| "Unnamed Torrent".to_string());
            let announce = prop(&opts, "announce")
                .map(|v| string_list(&v))
                .unwrap_or_else(|| shared.announce.clone());
            let mut creator = TorrentCreator::new()
                .with_announce(announce)
                .with_created_by("webtorrent-rs")
                .with_creation_date((js_sys::Date::now() / 1000.0) as i64);
            let piece_length = match prop(&opts, "pieceLength").and_then(|v| v.as_f64()) {
                Some(p) => p as u32,
                None => auto_piece_length(total),
            };
            creator = creator.with_piece_length(piece_length);
            // Lay the blobs out in torrent order and hash piece by piece.
            let mut blobs = Vec::new();
            let mut off = 0u64;
            for f in &files {
                blobs.push((f.blob.clone(), off, f.len));
                off += f.len;
            }
            let pieces = crate::hash::hash_blobs(&blobs, total, piece_length).await?;
            let created = if files.len() == 1 {
                creator.create_single_with_hashes(&name, total, piece_length, pieces)
            } else {
                let specs: Vec<FileSpec> = files
                    .iter()
                    .map(|f| {
                        let mut path = f.path.clone();
                        if path.len() > 1 && path.first() == Some(&name) {
                            path.remove(0);
                        }
                        FileSpec {
                            path,
                            length: f.len,
                        }
                    })
                    .collect();
                creator.create_multi_with_hashes(&name, &specs, piece_length, pieces)
            }
            .map_err(|e| js_err(format!("cannot create the torrent: {e}")))?;
            if shared.find(created.info_hash).is_some() {
                return Err(js_err(format!(
                    "torrent {} is already added",
                    created.info_hash.to_hex()
                )));
            }
            let meta = Arc::new(created.metainfo);
            let torrent_file = created.torrent_file.clone();
            let h = torrent::start(
                shared.clone(),
                Source::Seed {
                    meta: meta.clone(),
                    torrent_file: created.torrent_file,
                    store: Store::Blobs(blobs),
                },
                Vec::new(),
                keep,
            )
            .map_err(js_err)?;
            shared.torrents.borrow_mut().push(h.clone());
            if keep {
                let (shared, h) = (shared.clone(), h.clone());
                spawn_local(async move {
                    keep_seed(&shared, &h, &meta, &torrent_file, &files).await;
                });
            }
            Ok(Torrent { h }.into())
        })
    }

    /// Adds a torrent by magnet link, info hash (hex or base32) or `.torrent` bytes
    /// (`Uint8Array`/`ArrayBuffer`). Options: `announce` (extra tracker URLs), `keep` (store
    /// the download in the Origin Private File System and continue it after a reload with
    /// `restore()`).
    pub fn add(&self, input: JsValue, opts: JsValue) -> js_sys::Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            if shared.destroyed.get() {
                return Err(js_err("client is destroyed"));
            }
            let keep = prop(&opts, "keep")
                .and_then(|v| v.as_bool())
                .unwrap_or(shared.keep);
            let mut extra = prop(&opts, "announce")
                .map(|v| string_list(&v))
                .unwrap_or_default();
            extra.extend(shared.announce.iter().cloned());
            let source = if let Some(s) = input.as_string() {
                let s = s.trim();
                if s.starts_with("magnet:") {
                    Source::Magnet(
                        Magnet::parse(s).map_err(|e| js_err(format!("bad magnet link: {e}")))?,
                    )
                } else {
                    let ih = InfoHash::from_hex_or_base32(s)
                        .map_err(|e| js_err(format!("not a magnet link or info hash: {e}")))?;
                    Source::Magnet(Magnet::new(ih))
                }
            } else {
                let bytes = if let Some(a) = input.dyn_ref::<Uint8Array>() {
                    a.to_vec()
                } else if let Some(b) = input.dyn_ref::<js_sys::ArrayBuffer>() {
                    Uint8Array::new(b).to_vec()
                } else {
                    return Err(js_err(
                        "add() takes a magnet link, an info hash or .torrent bytes",
                    ));
                };
                let meta = Metainfo::from_bytes(&bytes)
                    .map_err(|e| js_err(format!("bad .torrent file: {e}")))?;
                Source::Torrent {
                    meta: Arc::new(meta),
                    torrent_file: Bytes::from(bytes),
                }
            };
            let ih = match &source {
                Source::Magnet(m) => m.info_hash,
                Source::Torrent { meta, .. } | Source::Seed { meta, .. } => meta.info_hash,
            };
            if let Some(h) = shared.find(ih) {
                return Ok(Torrent { h }.into());
            }
            // A kept download of this torrent continues where it was, with its metadata.
            let source = match source {
                Source::Magnet(m) => match crate::keep::kept_metainfo(&shared, ih).await {
                    Some((meta, torrent_file)) => Source::Torrent { meta, torrent_file },
                    None => Source::Magnet(m),
                },
                other => other,
            };
            let h = torrent::start(shared.clone(), source, extra, keep).map_err(js_err)?;
            shared.torrents.borrow_mut().push(h.clone());
            if keep {
                let (shared, h) = (shared.clone(), h.clone());
                let magnet = Torrent { h: h.clone() }.magnet_uri();
                spawn_local(async move { keep_download(&shared, &h, magnet).await });
            }
            Ok(Torrent { h }.into())
        })
    }

    /// The torrents kept for `restore()`: `[{ infoHash, name, kind: 'seed' | 'download',
    /// data: 'handles' | 'copy' | 'pieces', length, addedAt, permission, active }]`.
    /// `permission` is the browser's answer for handles (`granted`, `prompt`, `denied`);
    /// `active` says the torrent runs in this client now.
    #[wasm_bindgen(unchecked_return_type = "Promise<SavedTorrent[]>")]
    pub fn saved(&self) -> js_sys::Promise {
        let shared = self.shared.clone();
        future_to_promise(async move { crate::keep::saved(&shared).await })
    }

    /// Starts kept torrents again (all of them, or those whose info hashes are given):
    /// resolves to `[{ infoHash, name, torrent?, error? }]`, one per kept torrent tried.
    /// Call it from a user's click: files opened through handles may need the user's
    /// permission again, which the browser asks for only then.
    #[wasm_bindgen(unchecked_return_type = "Promise<RestoreResult[]>")]
    pub fn restore(&self, which: Option<Vec<String>>) -> js_sys::Promise {
        let shared = self.shared.clone();
        future_to_promise(async move { crate::keep::restore(&shared, which).await })
    }

    /// Stops a torrent if it runs, and forgets it: its record and the data stored for it in
    /// the Origin Private File System (never the user's own files) are deleted.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn forget(&self, info_hash: String) -> js_sys::Promise {
        let shared = self.shared.clone();
        if let Some(t) = self.get(&info_hash) {
            t.destroy();
        }
        future_to_promise(async move {
            crate::keep::forget(&shared, &info_hash.to_ascii_lowercase()).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Removes a torrent by info hash (hex).
    pub fn remove(&self, info_hash: &str) {
        if let Some(t) = self.get(info_hash) {
            t.destroy();
        }
    }

    /// Stops every torrent and closes tracker connections.
    pub fn destroy(&self) {
        if self.shared.destroyed.replace(true) {
            return;
        }
        let all: Vec<Handle> = self.shared.torrents.borrow_mut().drain(..).collect();
        for h in all {
            torrent::destroy(&h);
        }
        crate::ws::close_all(&self.shared);
    }
}
