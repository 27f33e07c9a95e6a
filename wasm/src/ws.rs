//! WebSocket trackers: one socket per tracker URL, shared by the client's torrents, driven by
//! the core [`SignalMachine`]. This module only moves frames, keeps time and routes each torrent's
//! messages to its session; the machine decides the rest (offers, answers, reconnects,
//! timeouts), the session which peers to connect (see `torrent::channels`).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::spawn_local;
use web_sys::{MessageEvent, WebSocket};
use webtorrent_core::session::{Endpoint, Routed};
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
    machine: RefCell<SignalMachine>,
    socket: RefCell<Option<Socket>>,
    /// Incremented per socket so late events of an old socket are ignored.
    generation: Cell<u64>,
    torrents: RefCell<Endpoint<WeakHandle>>,
    /// Remote offers whose answer the machine gave up on while we were still creating it.
    closed: Cell<bool>,
}

fn tracker_for(client: &Rc<ClientShared>, url: &str) -> Rc<WsTracker> {
    if let Some(t) = client.trackers.borrow().get(url) {
        return t.clone();
    }
    let tr = Rc::new(WsTracker {
        url: url.to_string(),
        machine: RefCell::new(SignalMachine::new(
            client.peer_id,
            Config::default(),
            util::random_u64(),
            now(),
        )),
        socket: RefCell::new(None),
        generation: Cell::new(0),
        torrents: RefCell::new(Endpoint::new()),
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
pub(crate) fn announce(client: &Rc<ClientShared>, h: &Handle, url: &str, params: AnnounceParams) {
    if client.destroyed.get()
        && !matches!(
            params.event,
            webtorrent_core::announce::AnnounceEvent::Stopped
        )
    {
        return;
    }
    let tr = tracker_for(client, url);
    let ih = h.borrow().info_hash;
    {
        let mut torrents = tr.torrents.borrow_mut();
        if !torrents.contains(&ih) {
            torrents.insert(ih, Rc::downgrade(h));
            tr.machine.borrow_mut().add_torrent(now(), ih);
        }
    }
    tr.machine.borrow_mut().announce(now(), params);
    pump(&tr);
}

/// The tracker at `url`, if the client has one.
fn existing(client: &Rc<ClientShared>, url: &str) -> Option<Rc<WsTracker>> {
    client.trackers.borrow().get(url).cloned()
}

/// Forgets a torrent on one tracker.
pub(crate) fn leave(client: &Rc<ClientShared>, url: &str, ih: InfoHash) {
    if let Some(tr) = existing(client, url) {
        if tr.torrents.borrow_mut().remove(&ih).is_some() {
            tr.machine.borrow_mut().remove_torrent(now(), ih);
            pump(&tr);
        }
    }
}

/// One of our offers is ready: the tracker sends it.
pub(crate) fn offer_created(client: &Rc<ClientShared>, url: &str, offer_id: OfferId, sdp: String) {
    if let Some(tr) = existing(client, url) {
        tr.machine.borrow_mut().offer_created(now(), offer_id, sdp);
        pump(&tr);
    }
}

/// One of our offers could not be made.
pub(crate) fn offer_failed(client: &Rc<ClientShared>, url: &str, offer_id: OfferId) {
    if let Some(tr) = existing(client, url) {
        tr.machine.borrow_mut().offer_failed(now(), offer_id);
        pump(&tr);
    }
}

/// Our answer to a remote offer is ready: the tracker relays it.
pub(crate) fn answer_created(
    client: &Rc<ClientShared>,
    url: &str,
    ih: InfoHash,
    peer_id: PeerId,
    offer_id: OfferId,
    sdp: String,
) {
    if let Some(tr) = existing(client, url) {
        tr.machine
            .borrow_mut()
            .answer_created(now(), ih, peer_id, offer_id, sdp);
        pump(&tr);
    }
}

/// A remote offer is refused or could not be answered.
pub(crate) fn answer_failed(
    client: &Rc<ClientShared>,
    url: &str,
    ih: InfoHash,
    peer_id: PeerId,
    offer_id: OfferId,
) {
    if let Some(tr) = existing(client, url) {
        tr.machine
            .borrow_mut()
            .answer_failed(now(), ih, peer_id, offer_id);
        pump(&tr);
    }
}

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

/// Carries out the machine's outputs.
fn pump(tr: &Rc<WsTracker>) {
    let url: Arc<str> = Arc::from(tr.url.as_str());
    loop {
        let out = tr.machine.borrow_mut().poll_output();
        let Some(out) = out else { break };
        let routed = tr
            .torrents
            .borrow()
            .route(&url, &mut tr.machine.borrow_mut(), now(), out);
        let out = match routed {
            // Torrents leave their trackers before their handles go (`torrent::destroy`).
            Routed::Torrent(w, input) => {
                torrent::feed(&w, input);
                continue;
            }
            Routed::Handled => continue,
            Routed::Driver(out) => out,
        };
        match out {
            Output::Connect => connect(tr),
            Output::Disconnect => {
                tr.generation.set(tr.generation.get() + 1);
                if let Some(s) = tr.socket.borrow_mut().take() {
                    s.close();
                }
            }
            Output::Send(text) => {
                let socket = tr.socket.borrow();
                let stalled = socket
                    .as_ref()
                    .is_some_and(|s| s.ws.buffered_amount() > MAX_UNSENT);
                let sent = !stalled
                    && socket
                        .as_ref()
                        .is_some_and(|s| s.ws.send_with_str(&text).is_ok());
                drop(socket);
                if stalled {
                    // The tracker stopped reading: start over rather than queue without end.
                    util::warn(&format!(
                        "{}: the tracker is not reading; reconnecting",
                        tr.url
                    ));
                    tr.generation.set(tr.generation.get() + 1);
                    if let Some(s) = tr.socket.borrow_mut().take() {
                        s.close();
                    }
                    tr.machine.borrow_mut().closed(now());
                } else if !sent {
                    util::warn(&format!("{}: could not send a tracker message", tr.url));
                }
            }
            Output::Warning(w) => util::warn(&format!("{}: {w}", tr.url)),
            _ => {}
        }
    }
}

/// Bytes a tracker socket may hold unsent before the tracker counts as stalled.
const MAX_UNSENT: u32 = 1 << 20;

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
