//! WebSocket trackers: one socket per tracker URL, shared by the client's torrents, driven by
//! the core [`SignalMachine`]. This module only moves frames, creates peer connections and keeps
//! time; the machine decides everything else (offers, answers, reconnects, timeouts).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;
use web_sys::{MessageEvent, RtcPeerConnection, WebSocket};
use webtorrent_core::announce::AnnounceJob;
use webtorrent_core::signal::{AnnounceParams, Config, OfferId, Output, SignalMachine};
use webtorrent_core::{InfoHash, PeerId};

use crate::client::ClientShared;
use crate::torrent::{self, Handle, WeakHandle};
use crate::util::{self, now};

/// A live socket and the handlers that must outlive it.
struct Socket {
    ws: WebSocket,
    _handlers: Vec<Box<dyn std::any::Any>>,
}

impl Socket {
    fn close(self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
        // A handler may be running right now (this is often called from one): drop them on a
        // later turn of the event loop.
        let handlers = self._handlers;
        spawn_local(async move { drop(handlers) });
    }
}

/// One WebSocket tracker connection.
pub(crate) struct WsTracker {
    url: String,
    client: Weak<ClientShared>,
    machine: RefCell<SignalMachine>,
    socket: RefCell<Option<Socket>>,
    /// Incremented per socket so late events of an old socket are ignored.
    generation: Cell<u64>,
    torrents: RefCell<HashMap<InfoHash, WeakHandle>>,
    /// Remote offers whose answer the machine gave up on while we were still creating it.
    dropped_answers: RefCell<HashSet<(PeerId, OfferId)>>,
    closed: Cell<bool>,
}

fn tracker_for(client: &Rc<ClientShared>, url: &str) -> Rc<WsTracker> {
    if let Some(t) = client.trackers.borrow().get(url) {
        return t.clone();
    }
    let tr = Rc::new(WsTracker {
        url: url.to_string(),
        client: Rc::downgrade(client),
        machine: RefCell::new(SignalMachine::new(
            client.peer_id,
            Config::default(),
            util::random_u64(),
            now(),
        )),
        socket: RefCell::new(None),
        generation: Cell::new(0),
        torrents: RefCell::new(HashMap::new()),
        dropped_answers: RefCell::new(HashSet::new()),
        closed: Cell::new(false),
    });
    client
        .trackers
        .borrow_mut()
        .insert(url.to_string(), tr.clone());
    spawn_ticker(&tr);
    tr
}

/// Sends an announce to a WebSocket tracker (opening its socket if needed).
pub(crate) fn announce(client: &Rc<ClientShared>, h: &Handle, job: AnnounceJob) {
    if client.destroyed.get()
        && !matches!(job.event, webtorrent_core::announce::AnnounceEvent::Stopped)
    {
        return;
    }
    let tr = tracker_for(client, &job.url);
    let ih = h.borrow().info_hash;
    {
        let mut torrents = tr.torrents.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(e) = torrents.entry(ih) {
            e.insert(Rc::downgrade(h));
            tr.machine.borrow_mut().add_torrent(now(), ih);
        }
    }
    tr.machine
        .borrow_mut()
        .announce(now(), AnnounceParams::from_job(ih, &job));
    pump(&tr);
}

/// Forgets a torrent on every tracker (after its `stopped`).
pub(crate) fn remove_torrent(client: &Rc<ClientShared>, ih: InfoHash) {
    let trackers: Vec<Rc<WsTracker>> = client.trackers.borrow().values().cloned().collect();
    for tr in trackers {
        if tr.torrents.borrow_mut().remove(&ih).is_some() {
            tr.machine.borrow_mut().remove_torrent(now(), ih);
            pump(&tr);
        }
    }
}

/// Closes every tracker socket.
pub(crate) fn close_all(client: &Rc<ClientShared>) {
    let trackers: Vec<Rc<WsTracker>> = client
        .trackers
        .borrow_mut()
        .drain()
        .map(|(_, t)| t)
        .collect();
    for tr in trackers {
        tr.closed.set(true);
        tr.torrents.borrow_mut().clear();
        // Let queued `stopped` frames go out first: close on the next turn of the event loop.
        let tr2 = tr.clone();
        spawn_local(async move {
            util::sleep(50).await;
            if let Some(s) = tr2.socket.borrow_mut().take() {
                s.close();
            }
        });
    }
}

fn spawn_ticker(tr: &Rc<WsTracker>) {
    let w = Rc::downgrade(tr);
    spawn_local(async move {
        loop {
            let wait = {
                let Some(tr) = w.upgrade() else { return };
                if tr.closed.get() {
                    return;
                }
                let n = now();
                let next = tr.machine.borrow().poll_timeout();
                match next {
                    Some(t) => t.saturating_since(n).as_millis().clamp(10, 1000) as u32,
                    None => 1000,
                }
            };
            util::sleep(wait).await;
            let Some(tr) = w.upgrade() else { return };
            if tr.closed.get() {
                return;
            }
            tr.machine.borrow_mut().handle_timeout(now());
            pump(&tr);
        }
    });
}

fn torrent_of(tr: &WsTracker, ih: &InfoHash) -> Option<Handle> {
    tr.torrents.borrow().get(ih).and_then(|w| w.upgrade())
}

fn ice_servers(tr: &WsTracker) -> JsValue {
    tr.client
        .upgrade()
        .map(|c| c.ice_servers.clone())
        .unwrap_or(JsValue::UNDEFINED)
}

/// Carries out the machine's outputs.
fn pump(tr: &Rc<WsTracker>) {
    loop {
        let out = tr.machine.borrow_mut().poll_output();
        let Some(out) = out else { break };
        match out {
            Output::Connect => connect(tr),
            Output::Disconnect => {
                tr.generation.set(tr.generation.get() + 1);
                if let Some(s) = tr.socket.borrow_mut().take() {
                    s.close();
                }
            }
            Output::Send(text) => {
                let sent = tr
                    .socket
                    .borrow()
                    .as_ref()
                    .map(|s| s.ws.send_with_str(&text).is_ok())
                    .unwrap_or(false);
                if !sent {
                    util::warn(&format!("{}: could not send a tracker message", tr.url));
                }
            }
            Output::CreateOffer {
                info_hash,
                offer_id,
            } => {
                let Some(h) = torrent_of(tr, &info_hash) else {
                    tr.machine.borrow_mut().offer_failed(now(), offer_id);
                    continue;
                };
                let ice = ice_servers(tr);
                let w = Rc::downgrade(tr);
                spawn_local(async move {
                    let label = hex::encode(util::random_bytes::<20>());
                    let res = crate::rtc::create_offer(&ice, &label).await;
                    let Some(tr) = w.upgrade() else {
                        if let Ok((pc, _, _)) = res {
                            crate::rtc::close(&pc);
                        }
                        return;
                    };
                    match res {
                        Ok((pc, dc, sdp)) => {
                            torrent::keep_offer(&h, offer_id, pc, dc);
                            tr.machine.borrow_mut().offer_created(now(), offer_id, sdp);
                        }
                        Err(e) => {
                            util::warn(&format!("creating a WebRTC offer: {e}"));
                            tr.machine.borrow_mut().offer_failed(now(), offer_id);
                        }
                    }
                    pump(&tr);
                });
            }
            Output::DropOffer {
                info_hash,
                offer_id,
            } => {
                if let Some(h) = torrent_of(tr, &info_hash) {
                    torrent::drop_offer(&h, offer_id);
                }
            }
            Output::ApplyAnswer {
                info_hash,
                peer_id,
                offer_id,
                sdp,
            } => {
                if let Some(h) = torrent_of(tr, &info_hash) {
                    torrent::apply_answer(&h, offer_id, peer_id, sdp);
                }
            }
            Output::AcceptOffer {
                info_hash,
                peer_id,
                offer_id,
                sdp,
            } => {
                let Some(h) =
                    torrent_of(tr, &info_hash).filter(|h| torrent::wants_peer(h, peer_id))
                else {
                    tr.machine
                        .borrow_mut()
                        .answer_failed(now(), info_hash, peer_id, offer_id);
                    continue;
                };
                let ice = ice_servers(tr);
                let w = Rc::downgrade(tr);
                spawn_local(async move {
                    let res = crate::rtc::answer_offer(&ice, &sdp).await;
                    let Some(tr) = w.upgrade() else {
                        if let Ok((pc, _)) = res {
                            crate::rtc::close(&pc);
                        }
                        return;
                    };
                    match res {
                        Ok((pc, answer)) => {
                            if tr.dropped_answers.borrow_mut().remove(&(peer_id, offer_id)) {
                                crate::rtc::close(&pc);
                            } else {
                                torrent::accept_channel(&h, pc.clone(), peer_id);
                                tr.machine.borrow_mut().answer_created(
                                    now(),
                                    info_hash,
                                    peer_id,
                                    offer_id,
                                    answer,
                                );
                                pump_with_answer(&tr, &pc, peer_id, offer_id);
                                return;
                            }
                        }
                        Err(e) => {
                            util::warn(&format!("answering a WebRTC offer: {e}"));
                            tr.machine.borrow_mut().answer_failed(
                                now(),
                                info_hash,
                                peer_id,
                                offer_id,
                            );
                        }
                    }
                    pump(&tr);
                });
            }
            Output::DropAnswer {
                peer_id, offer_id, ..
            } => {
                let mut d = tr.dropped_answers.borrow_mut();
                if d.len() < 1024 {
                    d.insert((peer_id, offer_id));
                }
            }
            Output::AnnounceDone {
                job,
                info_hash,
                reply,
            } => {
                if let (Some(job), Some(h)) = (job, torrent_of(tr, &info_hash)) {
                    torrent::announce_result(&h, job, Ok(reply));
                }
            }
            Output::AnnounceFailed {
                job,
                info_hash,
                failure,
            } => {
                if let (Some(job), Some(h)) = (job, torrent_of(tr, &info_hash)) {
                    torrent::announce_result(&h, job, Err(failure));
                }
            }
            Output::ScrapeDone(_) | Output::ScrapeFailed(_) => {}
            Output::Warning(w) => util::warn(&format!("{}: {w}", tr.url)),
        }
    }
}

/// Pumps right after an answer was handed to the machine: if it refuses to send it
/// ([`Output::DropAnswer`]), the connection made for it is closed.
fn pump_with_answer(
    tr: &Rc<WsTracker>,
    pc: &RtcPeerConnection,
    peer_id: PeerId,
    offer_id: OfferId,
) {
    pump(tr);
    if tr.dropped_answers.borrow_mut().remove(&(peer_id, offer_id)) {
        crate::rtc::close(pc);
    }
}

fn connect(tr: &Rc<WsTracker>) {
    if let Some(s) = tr.socket.borrow_mut().take() {
        s.close();
    }
    let gen = tr.generation.get() + 1;
    tr.generation.set(gen);
    let ws = match WebSocket::new(&tr.url) {
        Ok(ws) => ws,
        Err(e) => {
            util::warn(&format!("{}: {}", tr.url, util::js_error_message(&e)));
            let tr2 = tr.clone();
            // Report the failure outside this pump.
            spawn_local(async move {
                tr2.machine.borrow_mut().closed(now());
                pump(&tr2);
            });
            return;
        }
    };
    let w = Rc::downgrade(tr);
    let live = move |w: &Weak<WsTracker>| -> Option<Rc<WsTracker>> {
        w.upgrade()
            .filter(|t| t.generation.get() == gen && !t.closed.get())
    };
    let on_open = Closure::<dyn FnMut()>::new({
        let w = w.clone();
        move || {
            if let Some(tr) = live(&w) {
                tr.machine.borrow_mut().connected(now());
                pump(&tr);
            }
        }
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let w = w.clone();
        move |ev: MessageEvent| {
            let Some(tr) = live(&w) else { return };
            let Some(text) = ev.data().as_string() else {
                util::warn(&format!("{}: ignored a binary frame", tr.url));
                return;
            };
            tr.machine.borrow_mut().handle_message(now(), &text);
            pump(&tr);
        }
    });
    let on_close = Closure::<dyn FnMut(JsValue)>::new({
        let w = w.clone();
        move |_ev: JsValue| {
            let Some(tr) = live(&w) else { return };
            // Only the first of error/close counts.
            tr.generation.set(tr.generation.get() + 1);
            if let Some(s) = tr.socket.borrow_mut().take() {
                s.close();
            }
            tr.machine.borrow_mut().closed(now());
            pump(&tr);
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    ws.set_onerror(Some(on_close.as_ref().unchecked_ref()));
    *tr.socket.borrow_mut() = Some(Socket {
        ws,
        _handlers: vec![Box::new(on_open), Box::new(on_message), Box::new(on_close)],
    });
}
