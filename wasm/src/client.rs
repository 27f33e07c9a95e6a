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

use crate::store::Store;
use crate::torrent::{self, Handle, Source, Torrent};
use crate::util::{self, prop, string_list};

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

/// A WebTorrent client (`new WebTorrent({ announce, peerId, maxConns })`).
#[wasm_bindgen]
pub struct WebTorrent {
    shared: Rc<ClientShared>,
}

pub(crate) fn js_err(msg: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&msg.to_string()).into()
}

/// One input file for seeding: path components, the blob, its size.
struct InputFile {
    path: Vec<String>,
    blob: web_sys::Blob,
    len: u64,
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
        });
    }
    if let Some(b) = v.dyn_ref::<web_sys::Blob>() {
        return Some(InputFile {
            path: Vec::new(),
            blob: b.clone(),
            len: b.size() as u64,
        });
    }
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        let parts = Array::of1(a);
        let blob = web_sys::Blob::new_with_u8_array_sequence(&parts).ok()?;
        return Some(InputFile {
            path: Vec::new(),
            blob,
            len: a.length() as u64,
        });
    }
    if let Some(buf) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        let a = Uint8Array::new(buf);
        return file_of(&a.into());
    }
    None
}

fn inputs(input: &JsValue) -> Result<Vec<InputFile>, JsValue> {
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
        out.push(file_of(&v).ok_or_else(|| {
            js_err("seed() takes a File, a Blob, a Uint8Array or an array of Files")
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
    /// of downloads kept in memory before the OPFS is used).
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
    /// `Blob`, `Uint8Array` or an array of `File`s; options `name`, `announce`, `pieceLength`.
    pub fn seed(&self, input: JsValue, opts: JsValue) -> js_sys::Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            if shared.destroyed.get() {
                return Err(js_err("client is destroyed"));
            }
            let files = inputs(&input)?;
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
            let h = torrent::start(
                shared.clone(),
                Source::Seed {
                    meta,
                    torrent_file: created.torrent_file,
                    store: Store::Blobs(blobs),
                },
                Vec::new(),
            )
            .map_err(js_err)?;
            shared.torrents.borrow_mut().push(h.clone());
            Ok(Torrent { h }.into())
        })
    }

    /// Adds a torrent by magnet link, info hash (hex or base32) or `.torrent` bytes
    /// (`Uint8Array`/`ArrayBuffer`). Options: `announce` (extra tracker URLs).
    pub fn add(&self, input: JsValue, opts: JsValue) -> js_sys::Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            if shared.destroyed.get() {
                return Err(js_err("client is destroyed"));
            }
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
            let h = torrent::start(shared.clone(), source, extra).map_err(js_err)?;
            shared.torrents.borrow_mut().push(h.clone());
            Ok(Torrent { h }.into())
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
