//! The per-torrent driver: a thin loop around the core [`TorrentSession`] that carries out
//! its outputs with browser APIs. [`channels`] holds the WebRTC side, [`js`] the JavaScript
//! `Torrent` and `TorrentFile` classes.
//!
//! Everything runs on the page's single thread. State lives in an `Rc<RefCell<Inner>>`; no
//! borrow is ever held across an `await` or while user callbacks run: work that must wait
//! (reads, hashing, WebRTC, fetch, tracker sockets) is collected while borrowed, started once
//! the borrow is released, and re-enters through [`drive`].

mod channels;
mod js;
mod stream;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use webtorrent_core::announce::{AnnounceConfig, AnnounceJob, Scheme, SchemeSet, TrackerReply};
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::piece::{Bitfield, PieceIndex};
use webtorrent_core::session::{
    CheckOutcome, Event, Input, Output, RtcAction, SessionSettings, Start, TorrentSession,
    Transport,
};
use webtorrent_core::InfoHash;

pub use js::{Torrent, TorrentFile};

use crate::client::ClientShared;
use crate::http::{self, HttpOutcome};
use crate::store::{self, Reader, Store};
use crate::util::{self, now};

/// Pieces being hashed and stored at once.
const MAX_VERIFYING: usize = 8;

pub(crate) type Handle = Rc<RefCell<Inner>>;

/// A weak reference for the WebSocket layer.
pub(crate) type WeakHandle = Weak<RefCell<Inner>>;

/// The driver's state.
pub(crate) struct Inner {
    pub(crate) client: Rc<ClientShared>,
    pub(crate) info_hash: InfoHash,
    pub(crate) session: TorrentSession,
    store: Option<Store>,
    pub(crate) torrent_file: Option<Bytes>,
    pub(crate) name_hint: Option<String>,
    trackers: Vec<Vec<String>>,
    rtc: channels::Channels,
    listeners: HashMap<String, Vec<Function>>,
    queued: Vec<(&'static str, JsValue)>,
    last_uploaded: u64,
    pub(crate) destroyed: bool,
    ready: bool,
    done: bool,
    error: Option<String>,
    /// Stream readers waiting for a piece.
    piece_waiters: HashMap<u32, Vec<futures::channel::oneshot::Sender<()>>>,
    /// The last stream reader id given out.
    next_reader: u64,
    /// Piece ranges selected with `torrent.select(start, end)` (end exclusive).
    selections: Vec<std::ops::Range<u32>>,
    /// Kept across reloads: a download's pieces go to the OPFS and stay there when it stops.
    pub(crate) keep: bool,
    /// The registry holds this torrent (it comes back with `client.restore()`).
    pub(crate) kept: bool,
}

/// How a torrent starts.
pub(crate) enum Source {
    /// We have the metainfo and the data (seeding).
    Seed {
        meta: Arc<Metainfo>,
        torrent_file: Bytes,
        store: Store,
    },
    /// We have the metainfo, not the data.
    Torrent {
        meta: Arc<Metainfo>,
        torrent_file: Bytes,
    },
    /// A magnet link.
    Magnet(Magnet),
}

impl Inner {
    fn emit(&mut self, event: &'static str, arg: JsValue) {
        self.queued.push((event, arg));
    }

    fn meta(&self) -> Option<Arc<Metainfo>> {
        self.session.metainfo().cloned()
    }

    fn input(&mut self, input: Input) {
        self.session.handle_input(now(), input);
    }
}

/// Starts a torrent driver.
pub(crate) fn start(
    client: Rc<ClientShared>,
    source: Source,
    extra_trackers: Vec<String>,
    keep: bool,
) -> Result<Handle, String> {
    let t0 = now();
    let mut settings = SessionSettings::new(client.peer_id);
    settings.torrent.max_peers = client.max_conns;
    // Browsers cannot dial addresses: peers come from WebSocket trackers only.
    settings.torrent.max_connecting = 0;
    settings.max_verifying = MAX_VERIFYING;
    settings.announce = AnnounceConfig {
        schemes: SchemeSet::NONE
            .with(Scheme::Http)
            .with(Scheme::Https)
            .with(Scheme::Ws)
            .with(Scheme::Wss),
        ..AnnounceConfig::default()
    };
    // A magnet link's `ws=` web seeds (a .torrent's `url-list` the session reads itself).
    let mut web_seeds: Vec<String> = Vec::new();
    let (start, store, torrent_file, mut trackers, name_hint, info_hash) = match source {
        Source::Seed {
            meta,
            torrent_file,
            store,
        } => {
            let start = Start::Metainfo {
                have: Bitfield::full(meta.info.num_pieces()),
                meta: meta.clone(),
                storage_ready: true,
            };
            let tr = meta.trackers();
            (
                start,
                Some(store),
                Some(torrent_file),
                tr,
                None,
                meta.info_hash,
            )
        }
        Source::Torrent { meta, torrent_file } => {
            let start = Start::Metainfo {
                have: Bitfield::new(meta.info.num_pieces()),
                meta: meta.clone(),
                storage_ready: false,
            };
            let tr = meta.trackers();
            (start, None, Some(torrent_file), tr, None, meta.info_hash)
        }
        Source::Magnet(m) => {
            web_seeds.clone_from(&m.web_seeds);
            let tr: Vec<Vec<String>> = m.trackers.iter().map(|t| vec![t.clone()]).collect();
            (
                Start::InfoHash(m.info_hash),
                None,
                None,
                tr,
                m.name.clone(),
                m.info_hash,
            )
        }
    };
    for url in extra_trackers {
        if !trackers.iter().flatten().any(|t| *t == url) {
            trackers.push(vec![url]);
        }
    }
    let mut session =
        TorrentSession::new(settings, start, trackers.clone(), util::random_u64(), t0)
            .map_err(|e| e.to_string())?;
    for url in &web_seeds {
        session.add_web_seed(t0, url);
    }
    for url in session.unsupported_trackers() {
        util::warn(&format!(
            "tracker {url}: not reachable from a browser, skipped"
        ));
    }
    let h = Rc::new(RefCell::new(Inner {
        client,
        info_hash,
        session,
        store,
        torrent_file,
        name_hint,
        trackers,
        rtc: channels::Channels::default(),
        listeners: HashMap::new(),
        queued: Vec::new(),
        last_uploaded: 0,
        destroyed: false,
        ready: false,
        done: false,
        error: None,
        piece_waiters: HashMap::new(),
        next_reader: 0,
        selections: Vec::new(),
        keep,
        kept: false,
    }));
    // The first events wait for the caller to add listeners.
    let w = Rc::downgrade(&h);
    spawn_local(async move {
        util::sleep(0).await;
        if let Some(h) = w.upgrade() {
            drive(&h);
            spawn_ticker(&h);
        }
    });
    Ok(h)
}

fn spawn_ticker(h: &Handle) {
    let w = Rc::downgrade(h);
    spawn_local(async move {
        loop {
            let wait = {
                let Some(h) = w.upgrade() else { return };
                let t = h.borrow();
                if t.destroyed {
                    return;
                }
                let next = t.session.poll_timeout();
                next.saturating_since(now()).as_millis().clamp(10, 500) as u32
            };
            util::sleep(wait).await;
            let Some(h) = w.upgrade() else { return };
            {
                let mut t = h.borrow_mut();
                if t.destroyed {
                    return;
                }
                t.input(Input::Timeout);
            }
            drive(&h);
        }
    });
}

/// Async work a drive pass decided on, started once the borrow is released.
enum Work {
    Load {
        piece: PieceIndex,
        reader: Reader,
        start: u64,
        len: u64,
    },
    Verify {
        piece: PieceIndex,
        offset: u64,
        data: Bytes,
        expected: [u8; 20],
    },
    OpenStore(Arc<Metainfo>),
    Announce(AnnounceJob),
    Rtc(RtcAction),
    Fetch {
        key: webtorrent_core::PeerKey,
        fetch: webtorrent_core::webseed::Fetch,
    },
}

/// Carries out everything the session asks for, then runs listeners.
pub(crate) fn drive(h: &Handle) {
    let mut work = Vec::new();
    {
        let mut t = h.borrow_mut();
        if t.destroyed {
            return;
        }
        for _ in 0..16 {
            let mut progressed = false;
            while let Some(out) = t.session.poll_output() {
                progressed = true;
                on_output(&mut t, out, &mut work);
            }
            for key in t.session.pending_transmits() {
                t.flush_peer(key);
            }
            if !progressed {
                break;
            }
        }
        let up = t.session.stats(now()).uploaded;
        if up > t.last_uploaded {
            let d = up - t.last_uploaded;
            t.last_uploaded = up;
            t.emit("upload", JsValue::from_f64(d as f64));
        }
    }
    for w in work {
        run_work(h, w);
    }
    dispatch(h);
}

/// Calls the user's listeners for queued events, without holding the borrow.
fn dispatch(h: &Handle) {
    loop {
        let batch: Vec<(&'static str, JsValue, Vec<Function>)> = {
            let mut t = h.borrow_mut();
            let q = std::mem::take(&mut t.queued);
            q.into_iter()
                .map(|(e, a)| {
                    let fs = t.listeners.get(e).cloned().unwrap_or_default();
                    (e, a, fs)
                })
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        for (event, arg, fns) in batch {
            for f in fns {
                if let Err(e) = f.call1(&JsValue::NULL, &arg) {
                    util::warn(&format!(
                        "'{event}' listener threw: {}",
                        util::js_error_message(&e)
                    ));
                }
            }
        }
    }
}

fn on_output(t: &mut Inner, out: Output, work: &mut Vec<Work>) {
    match out {
        // A TCP address (from PEX): unreachable from a page.
        Output::Connect(addr) => t.input(Input::ConnectFailed { addr }),
        Output::Disconnect(key) => t.close_peer(key),
        Output::ReadPiece {
            piece,
            offset,
            length,
            ..
        } => match &t.store {
            Some(Store::Memory(buf)) => {
                let data = buf.read(offset, length as usize).ok().map(Bytes::from);
                t.input(Input::PieceRead { piece, data });
            }
            Some(store) => work.push(Work::Load {
                piece,
                reader: store.reader(),
                start: offset,
                len: u64::from(length),
            }),
            None => t.input(Input::PieceRead { piece, data: None }),
        },
        Output::VerifyPiece {
            piece,
            offset,
            data,
            expected,
        } => work.push(Work::Verify {
            piece,
            offset,
            data,
            expected,
        }),
        Output::OpenStorage(meta) => work.push(Work::OpenStore(meta)),
        Output::Announce(job) => work.push(Work::Announce(job)),
        Output::Rtc(action) => work.push(Work::Rtc(action)),
        Output::Fetch { key, fetch } => work.push(Work::Fetch { key, fetch }),
        Output::Event(e) => on_event(t, e),
        Output::Stopped => {}
    }
}

fn on_event(t: &mut Inner, e: Event) {
    if let Some(w) = e.warning() {
        t.emit("warning", JsValue::from_str(&w));
    }
    match e {
        Event::PeerConnected {
            peer_id, transport, ..
        } => {
            let o = Object::new();
            let _ = Reflect::set(&o, &"peerId".into(), &JsValue::from_str(&peer_id.to_hex()));
            let kind = match transport {
                Transport::WebSeed => "webSeed",
                _ => "webrtc",
            };
            let _ = Reflect::set(&o, &"type".into(), &kind.into());
            t.emit("wire", o.into());
        }
        Event::PeerDisconnected { key, .. } => t.close_peer(key),
        Event::Ready => {
            t.ready = true;
            if t.torrent_file.is_none() {
                if let Some(m) = t.meta() {
                    let file = Bytes::from(m.to_bytes());
                    t.torrent_file = Some(file.clone());
                    if t.keep {
                        // A kept magnet download comes back with its metadata.
                        let client = t.client.clone();
                        let hex = t.info_hash.to_hex();
                        let (name, len) = (m.info.name.clone(), m.info.total_length());
                        spawn_local(async move {
                            let fields = [
                                ("torrentFile", js_sys::Uint8Array::from(&file[..]).into()),
                                ("name", JsValue::from_str(&name)),
                                ("length", JsValue::from_f64(len as f64)),
                            ];
                            client.registry.update(&hex, &fields).await;
                        });
                    }
                }
            }
            t.emit("metadata", JsValue::UNDEFINED);
            t.emit("ready", JsValue::UNDEFINED);
        }
        Event::PieceVerified(p) => {
            t.piece_arrived(p.get());
            if let Some(m) = t.session.metainfo() {
                let len = m.info.layout.piece_len(p);
                t.emit("download", JsValue::from_f64(len as f64));
            }
        }
        Event::Done { .. } if !t.done => {
            t.done = true;
            t.emit("done", JsValue::UNDEFINED);
        }
        Event::Refused(reason) => {
            t.error = Some(reason.clone());
            t.emit("error", JsValue::from_str(&reason));
        }
        _ => {}
    }
}

/// Emits an event from outside the driver (the client's keep and restore work).
pub(crate) fn notify(h: &Handle, event: &'static str, arg: JsValue) {
    {
        let mut t = h.borrow_mut();
        if t.destroyed {
            return;
        }
        t.emit(event, arg);
    }
    dispatch(h);
}

/// Feeds one input (from async work or a tracker) and drives.
pub(crate) fn feed(w: &WeakHandle, input: Input) {
    let Some(h) = w.upgrade() else { return };
    {
        let mut t = h.borrow_mut();
        if t.destroyed {
            return;
        }
        t.input(input);
    }
    drive(&h);
}

fn run_work(h: &Handle, w: Work) {
    let weak = Rc::downgrade(h);
    match w {
        Work::OpenStore(meta) => {
            let (hex, limit, keep) = {
                let t = h.borrow();
                (t.info_hash.to_hex(), t.client.memory_limit, t.keep)
            };
            spawn_local(async move {
                let res = Store::for_download(&meta.info, &hex, limit, keep).await;
                let Some(h) = weak.upgrade() else { return };
                {
                    let mut t = h.borrow_mut();
                    match res {
                        Ok((s, have)) => {
                            t.store = Some(s);
                            t.input(Input::StorageReady { have });
                        }
                        Err(e) => t.input(Input::Refuse(format!("cannot store the torrent: {e}"))),
                    }
                }
                drive(&h);
            });
        }
        Work::Load {
            piece,
            reader,
            start,
            len,
        } => spawn_local(async move {
            let data = match reader.read(piece, start, len).await {
                Ok(d) => d,
                Err(e) => {
                    util::warn(&format!("reading piece {piece}: {e}"));
                    None
                }
            };
            feed(&weak, Input::PieceRead { piece, data });
        }),
        Work::Verify {
            piece,
            offset,
            data,
            expected,
        } => spawn_local(async move {
            let outcome = verify(&weak, piece, offset, &data, expected).await;
            feed(
                &weak,
                Input::PieceChecked {
                    piece,
                    outcome,
                    data,
                },
            );
        }),
        Work::Fetch { key, fetch } => spawn_local(async move {
            let result = http::web_seed(&fetch).await;
            feed(
                &weak,
                Input::Fetched {
                    key,
                    id: fetch.id,
                    result,
                },
            );
        }),
        Work::Announce(job) => {
            let (info_hash, peer_id) = {
                let t = h.borrow();
                (t.info_hash, t.client.peer_id)
            };
            spawn_local(async move {
                let res = http::announce(&job, info_hash, peer_id).await;
                let result = match res {
                    Ok(HttpOutcome::Reply(r)) => Ok(r),
                    Ok(HttpOutcome::Opaque) => {
                        util::warn(&format!(
                            "tracker {}: announced, but the reply is unreadable (the tracker sends no CORS headers)",
                            job.url
                        ));
                        Ok(TrackerReply::default())
                    }
                    Err(e) => Err(e),
                };
                feed(
                    &weak,
                    Input::Announced {
                        job: job.id,
                        result,
                        peers: Vec::new(),
                    },
                );
            });
        }
        Work::Rtc(action) => channels::act(h, action),
    }
}

/// Hashes a piece and stores it if it matches.
async fn verify(
    w: &WeakHandle,
    piece: PieceIndex,
    offset: u64,
    data: &Bytes,
    expected: [u8; 20],
) -> CheckOutcome {
    if util::sha1(data).await != expected {
        return CheckOutcome::HashMismatch;
    }
    let dir = {
        let Some(h) = w.upgrade() else {
            return CheckOutcome::StoreFailed;
        };
        let mut t = h.borrow_mut();
        match &mut t.store {
            Some(Store::Memory(buf)) => {
                return match buf.write(offset, data) {
                    Ok(()) => CheckOutcome::Stored,
                    Err(_) => CheckOutcome::StoreFailed,
                };
            }
            Some(Store::Opfs(dir)) => dir.clone(),
            // Seeds never download; nothing else can hold a piece.
            _ => return CheckOutcome::StoreFailed,
        }
    };
    match store::opfs_write(dir, piece, data.clone()).await {
        Ok(()) => CheckOutcome::Stored,
        Err(e) => {
            util::warn(&format!("storing piece {piece}: {e}"));
            CheckOutcome::StoreFailed
        }
    }
}

/// Bytes from a data channel.
fn peer_data(h: &Handle, key: webtorrent_core::PeerKey, bytes: BytesMut) {
    feed(&Rc::downgrade(h), Input::PeerData { key, data: bytes });
}

/// Stops the torrent: `stopped` to trackers (best effort), channels closed.
pub(crate) fn destroy(h: &Handle) {
    let mut work = Vec::new();
    {
        let mut t = h.borrow_mut();
        if t.destroyed {
            return;
        }
        t.input(Input::Stop);
        while let Some(out) = t.session.poll_output() {
            match out {
                Output::Announce(job) => work.push(Work::Announce(job)),
                Output::Rtc(a @ RtcAction::Announce { .. }) => work.push(Work::Rtc(a)),
                _ => {}
            }
        }
        t.rtc.close_all();
        // A kept download's pieces stay for `restore()`; `forget()` removes them.
        if let (Some(Store::Opfs(_)), false) = (t.store.take(), t.keep) {
            let hex = t.info_hash.to_hex();
            spawn_local(async move { store::opfs_remove(&hex).await });
        }
        t.destroyed = true;
        t.listeners.clear();
        // Streams waiting for pieces end with an error.
        t.piece_waiters.clear();
    }
    for w in work {
        run_work(h, w);
    }
    let (client, ih) = {
        let t = h.borrow();
        (t.client.clone(), t.info_hash)
    };
    crate::ws::remove_torrent(&client, ih);
}
