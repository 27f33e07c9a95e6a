//! `RTCPeerConnection` helpers: non-trickle offers and answers (the SDP carries every ICE
//! candidate, as WebTorrent trackers expect) and data channels.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    RtcConfiguration, RtcDataChannel, RtcIceGatheringState, RtcPeerConnection, RtcSdpType,
    RtcSessionDescriptionInit,
};

use crate::util::js_error_message;

/// How long ICE gathering may take before the offer or answer goes out with what it has.
const ICE_GATHER_TIMEOUT_MS: u32 = webtorrent_core::signal::ICE_GATHER_TIMEOUT.as_millis() as u32;

/// A WebRTC failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("WebRTC: {0}")]
pub struct RtcError(pub String);

impl From<JsValue> for RtcError {
    fn from(e: JsValue) -> Self {
        RtcError(js_error_message(&e))
    }
}

/// A new peer connection with the given ICE servers (a JS array, or undefined for none).
pub(crate) fn new_pc(ice_servers: &JsValue) -> Result<RtcPeerConnection, RtcError> {
    let cfg = RtcConfiguration::new();
    if Array::is_array(ice_servers) {
        cfg.set_ice_servers(ice_servers);
    } else {
        cfg.set_ice_servers(&Array::new());
    }
    Ok(RtcPeerConnection::new_with_configuration(&cfg)?)
}

/// Waits until ICE gathering completes (or a timeout) so the local SDP is complete.
async fn gathered(pc: &RtcPeerConnection) {
    if pc.ice_gathering_state() == RtcIceGatheringState::Complete {
        return;
    }
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let tx = std::cell::RefCell::new(Some(tx));
    let pc2 = pc.clone();
    let cb = Closure::<dyn FnMut()>::new(move || {
        if pc2.ice_gathering_state() == RtcIceGatheringState::Complete {
            if let Some(t) = tx.borrow_mut().take() {
                let _ = t.send(());
            }
        }
    });
    pc.set_onicegatheringstatechange(Some(cb.as_ref().unchecked_ref()));
    let timeout = crate::util::sleep(ICE_GATHER_TIMEOUT_MS);
    futures::pin_mut!(timeout);
    let _ = futures::future::select(rx, timeout).await;
    pc.set_onicegatheringstatechange(None);
    drop(cb);
}

fn local_sdp(pc: &RtcPeerConnection) -> Result<String, RtcError> {
    pc.local_description()
        .map(|d| d.sdp())
        .ok_or_else(|| RtcError("no local description".into()))
}

/// Creates a peer connection with one data channel and returns it with a complete SDP offer.
pub(crate) async fn create_offer(
    ice_servers: &JsValue,
    label: &str,
) -> Result<(RtcPeerConnection, RtcDataChannel, String), RtcError> {
    let pc = new_pc(ice_servers)?;
    let dc = pc.create_data_channel(label);
    let res: Result<String, RtcError> = async {
        let offer = JsFuture::from(pc.create_offer()).await?;
        let sdp = Reflect::get(&offer, &"sdp".into())?
            .as_string()
            .ok_or_else(|| RtcError("offer without sdp".into()))?;
        let init = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        init.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&init)).await?;
        gathered(&pc).await;
        local_sdp(&pc)
    }
    .await;
    match res {
        Ok(sdp) => Ok((pc, dc, sdp)),
        Err(e) => {
            pc.close();
            Err(e)
        }
    }
}

/// Applies the remote answer to one of our offers.
pub(crate) async fn apply_answer(pc: &RtcPeerConnection, sdp: &str) -> Result<(), RtcError> {
    let init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    init.set_sdp(sdp);
    JsFuture::from(pc.set_remote_description(&init)).await?;
    Ok(())
}

/// Answers a remote offer: returns the new peer connection and a complete SDP answer. The
/// remote's data channel arrives later through `ondatachannel`.
pub(crate) async fn answer_offer(
    ice_servers: &JsValue,
    offer_sdp: &str,
) -> Result<(RtcPeerConnection, String), RtcError> {
    let pc = new_pc(ice_servers)?;
    let res: Result<String, RtcError> = async {
        let init = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        init.set_sdp(offer_sdp);
        JsFuture::from(pc.set_remote_description(&init)).await?;
        let answer = JsFuture::from(pc.create_answer()).await?;
        let sdp = Reflect::get(&answer, &"sdp".into())?
            .as_string()
            .ok_or_else(|| RtcError("answer without sdp".into()))?;
        let init = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        init.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&init)).await?;
        gathered(&pc).await;
        local_sdp(&pc)
    }
    .await;
    match res {
        Ok(sdp) => Ok((pc, sdp)),
        Err(e) => {
            pc.close();
            Err(e)
        }
    }
}

/// The largest message the remote accepts (`pc.sctp.maxMessageSize`), capped at 64 KiB.
pub(crate) fn max_message_size(pc: &RtcPeerConnection) -> usize {
    const CAP: usize = 64 * 1024;
    let v = Reflect::get(pc.as_ref(), &"sctp".into())
        .ok()
        .filter(|s| s.is_object())
        .and_then(|s| Reflect::get(&s, &"maxMessageSize".into()).ok())
        .and_then(|m| m.as_f64());
    match v {
        Some(m) if m >= 1024.0 => (m as usize).min(CAP),
        _ => 16 * 1024,
    }
}

/// Closes a peer connection and its handlers.
pub(crate) fn close(pc: &RtcPeerConnection) {
    pc.set_ondatachannel(None);
    pc.set_onconnectionstatechange(None);
    pc.close();
}

/// An empty JS object (for option bags).
#[allow(dead_code)]
pub(crate) fn obj() -> Object {
    Object::new()
}
