//! The per-torrent driver: owns the core [`Torrent`](CoreTorrent) and [`Announcer`] state
//! machines and carries out what they ask with browser APIs, plus the JavaScript `Torrent`
//! class.
//!
//! Everything runs on the page's single thread. State lives in an `Rc<RefCell<Inner>>`; no
//! borrow is ever held across an `await` or while user callbacks run: work that must wait
//! (reads, hashing, WebRTC, fetch) is spawned and re-enters through [`drive`].

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::Bytes;
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{
    MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType, RtcPeerConnection,
};
use webtorrent_core::announce::{
    AnnounceConfig, AnnounceJob, Announcer, AnnouncerEvent, Scheme, SchemeSet, TrackerFailure,
    TrackerReply,
};
use webtorrent_core::magnet::Magnet;
use webtorrent_core::metainfo::Metainfo;
use webtorrent_core::peer::Direction;
use webtorrent_core::piece::{Bitfield, PieceIndex};
use webtorrent_core::torrent::{Output, Torrent as CoreTorrent, TorrentConfig, TorrentEvent};
use webtorrent_core::{Id20, InfoHash, PeerId, PeerKey};

use crate::client::ClientShared;
use crate::http::{self, HttpOutcome};
use crate::store::{self, Reader, Store, StoreView};
use crate::util::{self, now};

/// Bytes queued in a data channel before we stop handing it more.
const CHANNEL_HIGH_WATER: u32 = 1024 * 1024;
/// `bufferedamountlow` fires below this.
const CHANNEL_LOW_WATER: u32 = 256 * 1024;
/// A data channel that has not opened after this long is abandoned.
const CHANNEL_OPEN_TIMEOUT_MS: u32 = 30_000;
/// Pieces being hashed at once before new ones wait.
const MAX_VERIFYING: usize = 8;

pub(crate) type Handle = Rc<RefCell<Inner>>;

/// A connected (or connecting) WebRTC peer.
struct Peer {
    pc: RtcPeerConnection,
    dc: RtcDataChannel,
    max_msg: usize,
    _handlers: Vec<Box<dyn std::any::Any>>,
}

impl Peer {
    fn close(self) {
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onbufferedamountlow(None);
        self.dc.set_onopen(None);
        self.dc.close();
        crate::rtc::close(&self.pc);
        // This often runs inside one of the handlers: drop them on a later turn.
        let handlers = self._handlers;
        spawn_local(async move { drop(handlers) });
    }
}

/// One of our offers waiting for an answer.
struct PendingOffer {
    pc: RtcPeerConnection,
    dc: RtcDataChannel,
}

/// The driver's state.
pub(crate) struct Inner {
    pub(crate) client: Rc<ClientShared>,
    pub(crate) info_hash: InfoHash,
    core: CoreTorrent,
    announcer: Announcer,
    store: Option<Store>,
    store_pending: bool,
    torrent_file: Option<Bytes>,
    name_hint: Option<String>,
    trackers: Vec<Vec<String>>,
    peers: HashMap<PeerKey, Peer>,
    /// Peer ids we have a channel with (or are opening one with).
    peer_ids: HashMap<PeerId, PeerKey>,
    offers: HashMap<Id20, PendingOffer>,
    listeners: HashMap<String, Vec<Function>>,
    queued: Vec<(&'static str, JsValue)>,
    verifying: usize,
    verify_queue: VecDeque<(PieceIndex, Bytes, [u8; 20])>,
    last_uploaded: u64,
    pub(crate) destroyed: bool,
    ready: bool,
    done: bool,
    seeding_from_start: bool,
    error: Option<String>,
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

fn weak_drive(w: &Weak<RefCell<Inner>>) {
    if let Some(h) = w.upgrade() {
        drive(&h);
    }
}

impl Inner {
    fn emit(&mut self, event: &'static str, arg: JsValue) {
        self.queued.push((event, arg));
    }

    fn meta(&self) -> Option<Arc<Metainfo>> {
        self.core.metainfo().cloned()
    }

    fn close_peer(&mut self, key: PeerKey) {
        if let Some(p) = self.peers.remove(&key) {
            p.close();
        }
        self.peer_ids.retain(|_, k| *k != key);
    }

    /// Hands queued wire bytes to a peer's data channel while it has room.
    fn flush_peer(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.dc.ready_state() != RtcDataChannelState::Open {
            return;
        }
        let mut failed = false;
        while peer.dc.buffered_amount() < CHANNEL_HIGH_WATER {
            let Some(bytes) = self.core.poll_transmit_to(key) else {
                break;
            };
            for chunk in bytes.chunks(peer.max_msg) {
                if peer.dc.send_with_u8_array(chunk).is_err() {
                    failed = true;
                    break;
                }
            }
            if failed {
                break;
            }
        }
        if failed {
            self.close_peer(key);
            self.core.peer_closed(now(), key);
        }
    }
}

/// Starts a torrent driver.
pub(crate) fn start(
    client: Rc<ClientShared>,
    source: Source,
    extra_trackers: Vec<String>,
) -> Result<Handle, String> {
    let t0 = now();
    let mut cfg = TorrentConfig::new(client.peer_id);
    cfg.max_peers = client.max_conns;
    // Browsers cannot dial addresses: peers come from WebSocket trackers only.
    cfg.max_connecting = 0;
    let seed = util::random_u64();
    let (core, store, torrent_file, trackers, name_hint, info_hash) = match source {
        Source::Seed {
            meta,
            torrent_file,
            store,
        } => {
            let n = meta.info.num_pieces();
            let core = CoreTorrent::new(cfg, meta.clone(), Bitfield::full(n), seed, t0)
                .map_err(|e| e.to_string())?;
            let trackers = meta.trackers();
            (
                core,
                Some(store),
                Some(torrent_file),
                trackers,
                None,
                meta.info_hash,
            )
        }
        Source::Torrent { meta, torrent_file } => {
            let n = meta.info.num_pieces();
            let core = CoreTorrent::new(cfg, meta.clone(), Bitfield::new(n), seed, t0)
                .map_err(|e| e.to_string())?;
            let trackers = meta.trackers();
            (
                core,
                None,
                Some(torrent_file),
                trackers,
                None,
                meta.info_hash,
            )
        }
        Source::Magnet(m) => {
            let trackers: Vec<Vec<String>> = m.trackers.iter().map(|t| vec![t.clone()]).collect();
            let core = CoreTorrent::from_info_hash(cfg, m.info_hash, trackers.clone(), seed, t0);
            (core, None, None, trackers, m.name.clone(), m.info_hash)
        }
    };
    let mut trackers = trackers;
    for url in extra_trackers {
        if !trackers.iter().flatten().any(|t| *t == url) {
            trackers.push(vec![url]);
        }
    }
    let schemes = SchemeSet::NONE
        .with(Scheme::Http)
        .with(Scheme::Https)
        .with(Scheme::Ws)
        .with(Scheme::Wss);
    let announcer = Announcer::new(
        trackers.clone(),
        AnnounceConfig {
            schemes,
            ..AnnounceConfig::default()
        },
        util::random_u64(),
        t0,
    );
    let complete = core.is_complete();
    let has_meta = core.metainfo().is_some();
    let inner = Inner {
        client,
        info_hash,
        core,
        announcer,
        store,
        store_pending: false,
        torrent_file,
        name_hint,
        trackers,
        peers: HashMap::new(),
        peer_ids: HashMap::new(),
        offers: HashMap::new(),
        listeners: HashMap::new(),
        queued: Vec::new(),
        verifying: 0,
        verify_queue: VecDeque::new(),
        last_uploaded: 0,
        destroyed: false,
        ready: false,
        done: complete,
        seeding_from_start: complete,
        error: None,
    };
    let h = Rc::new(RefCell::new(inner));
    {
        let mut t = h.borrow_mut();
        for url in t.announcer.unsupported_trackers() {
            util::warn(&format!(
                "tracker {url}: not reachable from a browser, skipped"
            ));
        }
        let left = t.core.stats(t0).left;
        t.announcer.start(t0, left);
    }
    if has_meta {
        if h.borrow().store.is_some() {
            // Seeding: ready right away (after the caller had a chance to add listeners).
            let w = Rc::downgrade(&h);
            spawn_local(async move {
                util::sleep(0).await;
                if let Some(h) = w.upgrade() {
                    {
                        let mut t = h.borrow_mut();
                        t.ready = true;
                        t.emit("metadata", JsValue::UNDEFINED);
                        t.emit("ready", JsValue::UNDEFINED);
                        if t.done {
                            t.emit("done", JsValue::UNDEFINED);
                        }
                    }
                    drive(&h);
                }
            });
        } else {
            open_store(&h);
        }
    }
    spawn_ticker(&h);
    drive(&h);
    Ok(h)
}

/// Creates download storage once the metainfo is known.
fn open_store(h: &Handle) {
    let (info, hex, limit) = {
        let mut t = h.borrow_mut();
        let Some(meta) = t.meta() else { return };
        if t.store.is_some() || t.store_pending {
            return;
        }
        t.store_pending = true;
        (
            meta.info.clone(),
            t.info_hash.to_hex(),
            t.client.memory_limit,
        )
    };
    let w = Rc::downgrade(h);
    spawn_local(async move {
        let res = Store::for_download(&info, &hex, limit).await;
        let Some(h) = w.upgrade() else { return };
        {
            let mut t = h.borrow_mut();
            t.store_pending = false;
            match res {
                Ok(s) => {
                    t.store = Some(s);
                    t.ready = true;
                    if t.torrent_file.is_none() {
                        if let Some(m) = t.meta() {
                            t.torrent_file = Some(Bytes::from(m.to_bytes()));
                        }
                    }
                    t.emit("metadata", JsValue::UNDEFINED);
                    t.emit("ready", JsValue::UNDEFINED);
                }
                Err(e) => {
                    t.error = Some(e.to_string());
                    t.emit("error", JsValue::from_str(&e.to_string()));
                }
            }
        }
        drive(&h);
    });
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
                let n = now();
                let mut next = t.core.poll_timeout();
                if let Some(a) = t.announcer.poll_timeout() {
                    next = next.min(a);
                }
                next.saturating_since(n).as_millis().clamp(10, 500) as u32
            };
            util::sleep(wait).await;
            let Some(h) = w.upgrade() else { return };
            {
                let mut t = h.borrow_mut();
                if t.destroyed {
                    return;
                }
                let n = now();
                t.core.handle_timeout(n);
                t.announcer.handle_timeout(n);
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
        data: Bytes,
        expected: [u8; 20],
    },
    Announce(AnnounceJob),
    OpenStore,
}

/// Carries out everything the state machines ask for, then runs listeners.
pub(crate) fn drive(h: &Handle) {
    let mut work = Vec::new();
    {
        let mut t = h.borrow_mut();
        if t.destroyed {
            return;
        }
        let n = now();
        for _ in 0..16 {
            let mut progressed = false;
            while let Some(out) = t.core.poll_output() {
                progressed = true;
                on_output(&mut t, out, &mut work);
            }
            for key in t.core.pending_transmits() {
                t.flush_peer(key);
            }
            while t.verifying < MAX_VERIFYING {
                let Some((piece, data, expected)) = t.verify_queue.pop_front() else {
                    break;
                };
                t.verifying += 1;
                work.push(Work::Verify {
                    piece,
                    data,
                    expected,
                });
            }
            let stats = t.core.stats(n);
            t.announcer
                .update_stats(stats.uploaded, stats.downloaded, stats.left);
            while let Some(job) = t.announcer.poll_job(n) {
                progressed = true;
                work.push(Work::Announce(job));
            }
            while let Some(ev) = t.announcer.poll_event() {
                on_announcer_event(&mut t, ev);
            }
            if !progressed {
                break;
            }
        }
        let up = t.core.stats(n).uploaded;
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
    let n = now();
    match out {
        Output::Connect(addr) => {
            // A TCP address (from PEX): unreachable from a page.
            t.core.connect_failed(n, addr);
        }
        Output::Disconnect(key) => t.close_peer(key),
        Output::ReadPiece {
            piece,
            offset,
            length,
        } => read_piece(t, piece, offset, length, work),
        Output::VerifyPiece {
            piece,
            data,
            expected,
        } => {
            t.verify_queue.push_back((piece, data, expected));
        }
        Output::Event(e) => match e {
            TorrentEvent::PeerConnected { peer_id, .. } => {
                let o = Object::new();
                let _ = Reflect::set(&o, &"peerId".into(), &JsValue::from_str(&peer_id.to_hex()));
                let _ = Reflect::set(&o, &"type".into(), &"webrtc".into());
                t.emit("wire", o.into());
            }
            TorrentEvent::PeerDisconnected { peer, .. } => t.close_peer(peer),
            TorrentEvent::PeerBanned { .. } => {
                t.emit(
                    "warning",
                    JsValue::from_str("banned a peer that sent corrupt data"),
                );
            }
            TorrentEvent::MetadataReceived => work.push(Work::OpenStore),
            TorrentEvent::PieceVerified(p) => {
                if let Some(m) = t.core.metainfo() {
                    let len = m.info.layout.piece_len(p);
                    t.emit("download", JsValue::from_f64(len as f64));
                }
            }
            TorrentEvent::HashFailed(p) => {
                t.emit(
                    "warning",
                    JsValue::from_str(&format!("piece {p} failed verification; fetching it again")),
                );
            }
            TorrentEvent::Done => {
                if !t.seeding_from_start {
                    t.announcer.completed(n);
                }
                if !t.done {
                    t.done = true;
                    t.emit("done", JsValue::UNDEFINED);
                }
            }
        },
    }
}

/// Reads a whole piece for uploading: at once from memory, or from the File / OPFS later.
fn read_piece(t: &mut Inner, piece: PieceIndex, offset: u64, length: u32, work: &mut Vec<Work>) {
    let n = now();
    match &t.store {
        Some(Store::Memory(buf)) => {
            let s = offset as usize;
            let data = buf.get(s..s + length as usize).map(Bytes::copy_from_slice);
            t.core.piece_read(n, piece, data);
        }
        Some(store) => work.push(Work::Load {
            piece,
            reader: store.reader(),
            start: offset,
            len: u64::from(length),
        }),
        None => t.core.piece_read(n, piece, None),
    }
}

fn on_announcer_event(t: &mut Inner, ev: AnnouncerEvent) {
    match ev {
        AnnouncerEvent::Warning { tracker, message } => {
            let url = t
                .announcer
                .tracker(tracker)
                .map(|x| x.url.to_string())
                .unwrap_or_default();
            t.emit("warning", JsValue::from_str(&format!("{url}: {message}")));
        }
        AnnouncerEvent::Failed { tracker, error, .. } => {
            let url = t
                .announcer
                .tracker(tracker)
                .map(|x| x.url.to_string())
                .unwrap_or_default();
            t.emit(
                "warning",
                JsValue::from_str(&format!("tracker {url}: {error}")),
            );
        }
        _ => {}
    }
}

fn run_work(h: &Handle, w: Work) {
    let weak = Rc::downgrade(h);
    match w {
        Work::OpenStore => open_store(h),
        Work::Load {
            piece,
            reader,
            start,
            len,
        } => spawn_local(async move {
            let res = reader.read(piece, start, len).await;
            let Some(h) = weak.upgrade() else { return };
            {
                let mut t = h.borrow_mut();
                let n = now();
                let data = match res {
                    Ok(d) => d,
                    Err(e) => {
                        util::warn(&format!("reading piece {piece}: {e}"));
                        None
                    }
                };
                t.core.piece_read(n, piece, data);
            }
            drive(&h);
        }),
        Work::Verify {
            piece,
            data,
            expected,
        } => spawn_local(async move {
            let ok = util::sha1(&data).await == expected;
            let mut stored = Ok(());
            if ok {
                let target = {
                    let Some(h) = weak.upgrade() else { return };
                    let mut t = h.borrow_mut();
                    let offset = t.core.metainfo().map(|m| m.info.layout.piece_offset(piece));
                    match (&mut t.store, offset) {
                        (Some(Store::Memory(buf)), Some(off)) => {
                            let s = off as usize;
                            match buf.get_mut(s..s + data.len()) {
                                Some(dst) => dst.copy_from_slice(&data),
                                None => stored = Err("piece outside the store".to_string()),
                            }
                            None
                        }
                        (Some(Store::Opfs(dir)), _) => Some(dir.clone()),
                        _ => None,
                    }
                };
                if let Some(dir) = target {
                    stored = store::opfs_write(dir, piece, data.clone())
                        .await
                        .map_err(|e| e.to_string());
                }
            }
            let Some(h) = weak.upgrade() else { return };
            {
                let mut t = h.borrow_mut();
                t.verifying = t.verifying.saturating_sub(1);
                let n = now();
                match (ok, stored) {
                    (true, Ok(())) => t.core.piece_checked(n, piece, true),
                    (false, _) => t.core.piece_checked(n, piece, false),
                    (true, Err(e)) => {
                        t.emit(
                            "warning",
                            JsValue::from_str(&format!("storing piece {piece}: {e}")),
                        );
                        t.core.piece_store_failed(n, piece);
                    }
                }
                t.core.recycle(data);
            }
            drive(&h);
        }),
        Work::Announce(job) => {
            let scheme = Scheme::of(&job.url);
            match scheme {
                Some(Scheme::Ws) | Some(Scheme::Wss) => {
                    let client = h.borrow().client.clone();
                    crate::ws::announce(&client, h, job);
                }
                _ => {
                    let (info_hash, peer_id) = {
                        let t = h.borrow();
                        (t.info_hash, t.client.peer_id)
                    };
                    spawn_local(async move {
                        let res = http::announce(&job, info_hash, peer_id).await;
                        let Some(h) = weak.upgrade() else { return };
                        {
                            let mut t = h.borrow_mut();
                            let n = now();
                            let result = match res {
                                Ok(HttpOutcome::Reply(r)) => Ok(r),
                                Ok(HttpOutcome::Opaque) => {
                                    t.emit(
                                        "warning",
                                        JsValue::from_str(&format!(
                                            "tracker {}: announced, but the reply is unreadable (the tracker sends no CORS headers)",
                                            job.url
                                        )),
                                    );
                                    Ok(TrackerReply::default())
                                }
                                Err(e) => Err(e),
                            };
                            t.announcer.handle_reply(n, job.id, result);
                        }
                        drive(&h);
                    });
                }
            }
        }
    }
}

/// A WebSocket tracker answered (or failed) an announce of ours.
pub(crate) fn announce_result(
    h: &Handle,
    job: webtorrent_core::announce::JobId,
    result: Result<TrackerReply, TrackerFailure>,
) {
    {
        let mut t = h.borrow_mut();
        let n = now();
        t.announcer.handle_reply(n, job, result);
    }
    drive(h);
}

/// Whether this torrent wants another peer connection with `peer_id`.
pub(crate) fn wants_peer(h: &Handle, peer_id: PeerId) -> bool {
    let t = h.borrow();
    !t.destroyed
        && peer_id != t.client.peer_id
        && !t.peer_ids.contains_key(&peer_id)
        && t.peers.len() < t.client.max_conns
}

/// Keeps one of our offers until its answer comes (or it is dropped).
pub(crate) fn keep_offer(h: &Handle, offer_id: Id20, pc: RtcPeerConnection, dc: RtcDataChannel) {
    let mut t = h.borrow_mut();
    if t.destroyed {
        crate::rtc::close(&pc);
        return;
    }
    t.offers.insert(offer_id, PendingOffer { pc, dc });
}

/// Closes one of our offers that got no answer.
pub(crate) fn drop_offer(h: &Handle, offer_id: Id20) {
    if let Some(o) = h.borrow_mut().offers.remove(&offer_id) {
        o.dc.close();
        crate::rtc::close(&o.pc);
    }
}

/// The remote answered one of our offers: apply the answer and wait for the channel.
pub(crate) fn apply_answer(h: &Handle, offer_id: Id20, peer_id: PeerId, sdp: String) {
    let Some(o) = h.borrow_mut().offers.remove(&offer_id) else {
        return;
    };
    if !wants_peer(h, peer_id) {
        o.dc.close();
        crate::rtc::close(&o.pc);
        return;
    }
    let w = Rc::downgrade(h);
    spawn_local(async move {
        match crate::rtc::apply_answer(&o.pc, &sdp).await {
            Ok(()) => {
                if let Some(h) = w.upgrade() {
                    attach_channel(&h, o.pc, o.dc, peer_id);
                } else {
                    crate::rtc::close(&o.pc);
                }
            }
            Err(e) => {
                util::warn(&format!("answer from {}: {e}", peer_id.to_hex()));
                crate::rtc::close(&o.pc);
            }
        }
    });
}

/// Holds the `ondatachannel` handler until it has run (or timed out).
type ChannelSlot = Rc<RefCell<Option<Closure<dyn FnMut(web_sys::RtcDataChannelEvent)>>>>;

/// A peer connection we answered: its data channel arrives through `ondatachannel`.
pub(crate) fn accept_channel(h: &Handle, pc: RtcPeerConnection, peer_id: PeerId) {
    let w = Rc::downgrade(h);
    let pc2 = pc.clone();
    let slot: ChannelSlot = Rc::new(RefCell::new(None));
    let slot2 = slot.clone();
    let cb = Closure::<dyn FnMut(web_sys::RtcDataChannelEvent)>::new(
        move |ev: web_sys::RtcDataChannelEvent| {
            pc2.set_ondatachannel(None);
            if let Some(h) = w.upgrade() {
                attach_channel(&h, pc2.clone(), ev.channel(), peer_id);
            } else {
                crate::rtc::close(&pc2);
            }
            // Free this closure after it has returned.
            let slot3 = slot2.clone();
            spawn_local(async move {
                slot3.borrow_mut().take();
            });
        },
    );
    pc.set_ondatachannel(Some(cb.as_ref().unchecked_ref()));
    *slot.borrow_mut() = Some(cb);
    // If no channel arrives in time, give up on this connection.
    let w = Rc::downgrade(h);
    spawn_local(async move {
        util::sleep(CHANNEL_OPEN_TIMEOUT_MS).await;
        if slot.borrow_mut().take().is_some() {
            crate::rtc::close(&pc);
            if let Some(h) = w.upgrade() {
                let mut t = h.borrow_mut();
                if t.peer_ids
                    .get(&peer_id)
                    .is_some_and(|k| !t.peers.contains_key(k))
                {
                    t.peer_ids.remove(&peer_id);
                }
            }
        }
    });
    h.borrow_mut().peer_ids.insert(peer_id, PeerKey(u64::MAX));
}

/// Wires a data channel to the torrent; the peer joins the swarm once the channel opens.
fn attach_channel(h: &Handle, pc: RtcPeerConnection, dc: RtcDataChannel, peer_id: PeerId) {
    let key = {
        let mut t = h.borrow_mut();
        if t.destroyed {
            dc.close();
            crate::rtc::close(&pc);
            return;
        }
        let key = t.client.next_key();
        t.peer_ids.insert(peer_id, key);
        key
    };
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    dc.set_buffered_amount_low_threshold(CHANNEL_LOW_WATER);
    let w = Rc::downgrade(h);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let w = w.clone();
        move |ev: MessageEvent| {
            let Some(h) = w.upgrade() else { return };
            let data = ev.data();
            let bytes = if data.is_instance_of::<js_sys::ArrayBuffer>() {
                Uint8Array::new(&data).to_vec()
            } else if let Some(s) = data.as_string() {
                s.into_bytes()
            } else {
                return;
            };
            {
                let mut t = h.borrow_mut();
                if t.destroyed {
                    return;
                }
                t.core.peer_data(now(), key, &bytes);
            }
            drive(&h);
        }
    });
    let on_close = Closure::<dyn FnMut()>::new({
        let w = w.clone();
        move || {
            let Some(h) = w.upgrade() else { return };
            {
                let mut t = h.borrow_mut();
                t.close_peer(key);
                t.core.peer_closed(now(), key);
            }
            drive(&h);
        }
    });
    let on_low = Closure::<dyn FnMut()>::new({
        let w = w.clone();
        move || {
            let Some(h) = w.upgrade() else { return };
            h.borrow_mut().flush_peer(key);
            drive(&h);
        }
    });
    let opened = Rc::new(std::cell::Cell::new(false));
    let on_open = Closure::<dyn FnMut()>::new({
        let w = w.clone();
        let opened = opened.clone();
        move || {
            if opened.replace(true) {
                return;
            }
            let Some(h) = w.upgrade() else { return };
            peer_open(&h, key);
        }
    });
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    let max_msg = crate::rtc::max_message_size(&pc);
    let peer = Peer {
        pc,
        dc: dc.clone(),
        max_msg,
        _handlers: vec![
            Box::new(on_message),
            Box::new(on_close),
            Box::new(on_low),
            Box::new(on_open),
        ],
    };
    h.borrow_mut().peers.insert(key, peer);
    if dc.ready_state() == RtcDataChannelState::Open && !opened.replace(true) {
        peer_open(h, key);
    }
    spawn_local(async move {
        util::sleep(CHANNEL_OPEN_TIMEOUT_MS).await;
        if !opened.get() {
            if let Some(h) = w.upgrade() {
                h.borrow_mut().close_peer(key);
            }
        }
    });
}

fn peer_open(h: &Handle, key: PeerKey) {
    {
        let mut t = h.borrow_mut();
        if !t.peers.contains_key(&key) {
            return;
        }
        if let Some(p) = t.peers.get_mut(&key) {
            p.max_msg = crate::rtc::max_message_size(&p.pc);
        }
        let n = now();
        if let Err(e) = t.core.add_peer(n, key, None, Direction::Outgoing) {
            util::log(&format!("refused WebRTC peer: {e}"));
            t.close_peer(key);
            return;
        }
    }
    drive(h);
}

/// Stops the torrent: `stopped` to trackers (best effort), channels closed.
pub(crate) fn destroy(h: &Handle) {
    let jobs = {
        let mut t = h.borrow_mut();
        if t.destroyed {
            return;
        }
        let n = now();
        let stats = t.core.stats(n);
        t.announcer
            .update_stats(stats.uploaded, stats.downloaded, stats.left);
        t.announcer.stop(n);
        t.core.shutdown(n);
        let mut jobs = Vec::new();
        while let Some(j) = t.announcer.poll_job(n) {
            jobs.push(j);
        }
        let keys: Vec<PeerKey> = t.peers.keys().copied().collect();
        for k in keys {
            t.close_peer(k);
        }
        for (_, o) in t.offers.drain() {
            o.dc.close();
            crate::rtc::close(&o.pc);
        }
        if let Some(Store::Opfs(_)) = t.store.take() {
            let hex = t.info_hash.to_hex();
            spawn_local(async move { store::opfs_remove(&hex).await });
        }
        t.destroyed = true;
        t.listeners.clear();
        jobs
    };
    let client = h.borrow().client.clone();
    for job in jobs {
        match Scheme::of(&job.url) {
            Some(Scheme::Ws) | Some(Scheme::Wss) => crate::ws::announce(&client, h, job),
            _ => {
                let (ih, pid) = {
                    let t = h.borrow();
                    (t.info_hash, t.client.peer_id)
                };
                spawn_local(async move {
                    let _ = http::announce(&job, ih, pid).await;
                });
            }
        }
    }
    crate::ws::remove_torrent(&client, h.borrow().info_hash);
}

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
        let s = t.core.stats(now());
        match s.total {
            Some(0) => 1.0,
            Some(total) => s.verified as f64 / total as f64,
            None => 0.0,
        }
    }

    /// Payload bytes received.
    #[wasm_bindgen(getter)]
    pub fn downloaded(&self) -> f64 {
        self.h.borrow_mut().core.stats(now()).downloaded as f64
    }

    /// Payload bytes sent.
    #[wasm_bindgen(getter)]
    pub fn uploaded(&self) -> f64 {
        self.h.borrow_mut().core.stats(now()).uploaded as f64
    }

    /// Receive rate in bytes per second.
    #[wasm_bindgen(getter, js_name = downloadSpeed)]
    pub fn download_speed(&self) -> f64 {
        self.h.borrow_mut().core.stats(now()).download_rate as f64
    }

    /// Send rate in bytes per second.
    #[wasm_bindgen(getter, js_name = uploadSpeed)]
    pub fn upload_speed(&self) -> f64 {
        self.h.borrow_mut().core.stats(now()).upload_rate as f64
    }

    /// Connected peers.
    #[wasm_bindgen(getter, js_name = numPeers)]
    pub fn num_peers(&self) -> usize {
        self.h.borrow().core.num_peers()
    }

    /// Whether every piece is verified.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> bool {
        let t = self.h.borrow();
        t.done && t.store.is_some()
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
                let have_all = t.core.have().is_some_and(|b| {
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
                        let s = range.start as usize;
                        let e = range.end as usize;
                        let slice = buf.get(s..e).unwrap_or(&[]);
                        StoreView::Memory(Bytes::copy_from_slice(slice))
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

/// A weak reference for the WebSocket layer.
pub(crate) type WeakHandle = Weak<RefCell<Inner>>;

/// Drives a torrent through a weak handle, if it is still alive.
#[allow(dead_code)]
pub(crate) fn drive_weak(w: &WeakHandle) {
    weak_drive(w)
}
