//! A torrent's WebRTC side in the browser: carries out the session's [`RtcAction`]s with
//! `RTCPeerConnection`s, wires open data channels to the session and keeps them fed without
//! overfilling their buffers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use js_sys::Uint8Array;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{
    MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType, RtcPeerConnection,
};
use webtorrent_core::peer::Direction;
use webtorrent_core::session::{Input, RtcAction, Transport};
use webtorrent_core::signal::OfferId;
use webtorrent_core::{PeerId, PeerKey};

use super::{drive, feed, Handle, Inner};
use crate::util::{self, now};

/// Bytes queued in a data channel before we stop handing it more. Chromium drops packets
/// when its transport is handed more than its socket takes, and a deep queue turns that into
/// seconds-long SCTP retransmission stalls at the start of a transfer: with 1 MiB queued a
/// bare channel stalled about 2 s in every run and moved 100 MiB in 5.6-6 s; with 256 KiB
/// it did not stall and took 3.5-4 s (`tests/browser/bench.mjs`, ceiling rows).
const CHANNEL_HIGH_WATER: u32 = 256 * 1024;
/// `bufferedamountlow` fires below this.
const CHANNEL_LOW_WATER: u32 = 64 * 1024;
/// The largest message we send (smaller when the channel's peer allows less): large enough
/// to make `send()` and message events rare, small enough to keep the queue above fed.
const MESSAGE_TARGET: usize = 64 * 1024;
/// A data channel that has not opened after this long is abandoned.
const CHANNEL_OPEN_TIMEOUT_MS: u32 =
    webtorrent_core::signal::CHANNEL_OPEN_TIMEOUT.as_millis() as u32;

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

impl PendingOffer {
    fn close(self) {
        self.dc.close();
        crate::rtc::close(&self.pc);
    }
}

/// The torrent's peer connections.
#[derive(Default)]
pub(super) struct Channels {
    peers: HashMap<PeerKey, Peer>,
    offers: HashMap<OfferId, PendingOffer>,
    /// Connections being set up, by remote peer id (the connection once it exists).
    connecting: HashMap<PeerId, Option<RtcPeerConnection>>,
}

impl Channels {
    /// Closes everything.
    pub(super) fn close_all(&mut self) {
        for (_, p) in self.peers.drain() {
            p.close();
        }
        for (_, o) in self.offers.drain() {
            o.close();
        }
        for (_, pc) in self.connecting.drain() {
            if let Some(pc) = pc {
                crate::rtc::close(&pc);
            }
        }
    }
}

impl Inner {
    pub(super) fn close_peer(&mut self, key: PeerKey) {
        if let Some(p) = self.rtc.peers.remove(&key) {
            p.close();
        }
    }

    /// Hands queued wire bytes to a peer's data channel while it has room, gathered into
    /// messages of up to [`MESSAGE_TARGET`]: the wire is a byte stream, and each
    /// `send()` and each message event costs far more than copying a block (a block's header
    /// and payload would otherwise be two messages, each request another).
    pub(super) fn flush_peer(&mut self, key: PeerKey) {
        let Some(peer) = self.rtc.peers.get(&key) else {
            return;
        };
        if peer.dc.ready_state() != RtcDataChannelState::Open {
            return;
        }
        let (dc, max) = (peer.dc.clone(), peer.max_msg.clamp(1, MESSAGE_TARGET));
        let high = CHANNEL_HIGH_WATER as usize;
        let mut buf = BytesMut::new();
        let mut ok = true;
        while ok && dc.buffered_amount() as usize + buf.len() < high {
            let Some(bytes) = self.session.poll_transmit_to(key) else {
                break;
            };
            if !buf.is_empty() && buf.len() + bytes.len() > max {
                ok = dc.send_with_u8_array(&buf).is_ok();
                buf.clear();
            }
            if bytes.len() >= max {
                ok = ok && bytes.chunks(max).all(|c| dc.send_with_u8_array(c).is_ok());
            } else {
                buf.extend_from_slice(&bytes);
            }
        }
        if ok && !buf.is_empty() {
            ok = dc.send_with_u8_array(&buf).is_ok();
        }
        if !ok {
            self.close_peer(key);
            self.input(Input::PeerClosed { key });
        }
    }
}

fn ice_servers(h: &Handle) -> JsValue {
    h.borrow().client.ice_servers.clone()
}

/// Carries out one action (called with no borrow held).
pub(super) fn act(h: &Handle, action: RtcAction) {
    let client = h.borrow().client.clone();
    let w = Rc::downgrade(h);
    match action {
        RtcAction::Announce { url, params } => crate::ws::announce(&client, h, &url, params),
        RtcAction::Leave { url } => {
            let ih = h.borrow().info_hash;
            crate::ws::leave(&client, &url, ih);
        }
        RtcAction::CreateOffer { url, offer_id } => {
            let ice = ice_servers(h);
            spawn_local(async move {
                let label = hex::encode(util::random_bytes::<20>());
                let res = crate::rtc::create_offer(&ice, &label).await;
                let alive = w.upgrade().filter(|h| !h.borrow().destroyed);
                match (res, alive) {
                    (Ok((pc, dc, sdp)), Some(h)) => {
                        h.borrow_mut()
                            .rtc
                            .offers
                            .insert(offer_id, PendingOffer { pc, dc });
                        crate::ws::offer_created(&client, &url, offer_id, sdp);
                    }
                    (res, _) => {
                        match res {
                            Ok((pc, _, _)) => crate::rtc::close(&pc),
                            Err(e) => util::warn(&format!("creating a WebRTC offer: {e}")),
                        }
                        crate::ws::offer_failed(&client, &url, offer_id);
                    }
                }
            });
        }
        RtcAction::DropOffer { offer_id } => {
            if let Some(o) = h.borrow_mut().rtc.offers.remove(&offer_id) {
                o.close();
            }
        }
        RtcAction::ApplyAnswer {
            offer_id,
            peer_id,
            sdp,
        } => {
            let Some(o) = h.borrow_mut().rtc.offers.remove(&offer_id) else {
                feed(&w, Input::RtcFailed { peer_id });
                return;
            };
            h.borrow_mut()
                .rtc
                .connecting
                .insert(peer_id, Some(o.pc.clone()));
            spawn_local(async move {
                match crate::rtc::apply_answer(&o.pc, &sdp).await {
                    Ok(()) => match w.upgrade() {
                        Some(h) => attach_channel(&h, o.pc, o.dc, peer_id),
                        None => o.close(),
                    },
                    Err(e) => {
                        util::warn(&format!("answer from {}: {e}", peer_id.to_hex()));
                        o.close();
                        failed(&w, peer_id);
                    }
                }
            });
        }
        RtcAction::AnswerOffer {
            url,
            peer_id,
            offer_id,
            sdp,
        } => {
            let ice = ice_servers(h);
            let ih = h.borrow().info_hash;
            h.borrow_mut().rtc.connecting.insert(peer_id, None);
            spawn_local(async move {
                let res = crate::rtc::answer_offer(&ice, &sdp).await;
                let h = w.upgrade();
                // Still wanted: not given up (`Abort`) while the answer was being made.
                let wanted = h.as_ref().is_some_and(|h| {
                    let t = h.borrow();
                    !t.destroyed && t.rtc.connecting.contains_key(&peer_id)
                });
                match (res, h) {
                    (Ok((pc, answer)), Some(h)) if wanted => {
                        h.borrow_mut()
                            .rtc
                            .connecting
                            .insert(peer_id, Some(pc.clone()));
                        accept_channel(&h, pc, peer_id);
                        crate::ws::answer_created(&client, &url, ih, peer_id, offer_id, answer);
                    }
                    (res, _) => {
                        match res {
                            Ok((pc, _)) => crate::rtc::close(&pc),
                            Err(e) => util::warn(&format!("answering a WebRTC offer: {e}")),
                        }
                        crate::ws::answer_failed(&client, &url, ih, peer_id, offer_id);
                        failed(&w, peer_id);
                    }
                }
            });
        }
        RtcAction::RefuseOffer {
            url,
            peer_id,
            offer_id,
        } => {
            let ih = h.borrow().info_hash;
            crate::ws::answer_failed(&client, &url, ih, peer_id, offer_id);
        }
        RtcAction::Abort { peer_id } => {
            if let Some(Some(pc)) = h.borrow_mut().rtc.connecting.remove(&peer_id) {
                crate::rtc::close(&pc);
            }
        }
    }
}

/// A connection attempt with `peer_id` failed.
fn failed(w: &super::WeakHandle, peer_id: PeerId) {
    if let Some(h) = w.upgrade() {
        h.borrow_mut().rtc.connecting.remove(&peer_id);
    }
    feed(w, Input::RtcFailed { peer_id });
}

/// Holds the `ondatachannel` handler until it has run (or timed out).
type ChannelSlot = Rc<RefCell<Option<Closure<dyn FnMut(web_sys::RtcDataChannelEvent)>>>>;

/// A peer connection we answered: its data channel arrives through `ondatachannel`.
fn accept_channel(h: &Handle, pc: RtcPeerConnection, peer_id: PeerId) {
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
            failed(&w, peer_id);
        }
    });
}

/// Wires a data channel to the torrent; the peer joins the session once the channel opens.
fn attach_channel(h: &Handle, pc: RtcPeerConnection, dc: RtcDataChannel, peer_id: PeerId) {
    let key = {
        let mut t = h.borrow_mut();
        if t.destroyed || t.rtc.connecting.remove(&peer_id).is_none() {
            // Given up meanwhile.
            dc.close();
            crate::rtc::close(&pc);
            return;
        }
        t.client.next_key()
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
                let a = Uint8Array::new(&data);
                let mut b = BytesMut::zeroed(a.length() as usize);
                a.copy_to(&mut b);
                b
            } else if let Some(s) = data.as_string() {
                BytesMut::from(s.as_bytes())
            } else {
                return;
            };
            super::peer_data(&h, key, bytes);
        }
    });
    let on_close = Closure::<dyn FnMut()>::new({
        let w = w.clone();
        move || {
            let Some(h) = w.upgrade() else { return };
            {
                let mut t = h.borrow_mut();
                t.close_peer(key);
                t.input(Input::PeerClosed { key });
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
    let opened = Rc::new(Cell::new(false));
    let on_open = Closure::<dyn FnMut()>::new({
        let w = w.clone();
        let opened = opened.clone();
        move || {
            if opened.replace(true) {
                return;
            }
            let Some(h) = w.upgrade() else { return };
            peer_open(&h, key, peer_id);
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
    h.borrow_mut().rtc.peers.insert(key, peer);
    if dc.ready_state() == RtcDataChannelState::Open && !opened.replace(true) {
        peer_open(h, key, peer_id);
    }
    spawn_local(async move {
        util::sleep(CHANNEL_OPEN_TIMEOUT_MS).await;
        if !opened.get() {
            if let Some(h) = w.upgrade() {
                h.borrow_mut().close_peer(key);
            }
            feed(&w, Input::RtcFailed { peer_id });
        }
    });
}

fn peer_open(h: &Handle, key: PeerKey, peer_id: PeerId) {
    {
        let mut t = h.borrow_mut();
        let Some(p) = t.rtc.peers.get_mut(&key) else {
            return;
        };
        p.max_msg = crate::rtc::max_message_size(&p.pc);
        t.session.handle_input(
            now(),
            Input::PeerConnected {
                key,
                addr: None,
                direction: Direction::Outgoing,
                transport: Transport::WebRtc { peer_id },
            },
        );
    }
    drive(h);
}
