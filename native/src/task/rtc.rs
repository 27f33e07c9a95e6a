//! Carries out a torrent session's [`RtcAction`]s: announces on the shared WebSocket tracker
//! tasks, WebRTC offers kept until answered, answers to remote offers, and the connection
//! attempts in between. Which offers and answers are worth it is the session's call.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::debug;
use webtorrent_core::session::RtcAction;
use webtorrent_core::signal::OfferId;
use webtorrent_core::{InfoHash, PeerId};

use super::TaskMsg;
use crate::client::Shared;
use crate::rtc::{self, PendingOffer};
use crate::signal::{send_cmd, Cmd, CmdTx};

/// What a connection attempt came to, for the task.
fn opened(peer_id: PeerId, res: Result<rtc::DataChannelStream, rtc::RtcError>) -> TaskMsg {
    match res {
        Ok(stream) => TaskMsg::RtcConnected {
            peer_id,
            stream: Box::new(stream),
        },
        Err(e) => {
            debug!(%peer_id, "WebRTC connection failed: {e}");
            TaskMsg::RtcFailed { peer_id }
        }
    }
}

/// A torrent's WebRTC side.
#[derive(Default)]
pub(super) struct RtcPeers {
    /// WebSocket trackers this torrent is registered with.
    trackers: HashMap<Arc<str>, CmdTx>,
    /// Our offers waiting for answers.
    offers: HashMap<OfferId, PendingOffer>,
    /// Connections being set up, by remote peer id, with the task doing it.
    connecting: HashMap<PeerId, tokio::task::JoinHandle<()>>,
}

impl RtcPeers {
    /// The tracker task of `url`, registering this torrent with it first.
    fn tracker(
        &mut self,
        shared: &Shared,
        tx: &mpsc::Sender<TaskMsg>,
        info_hash: InfoHash,
        url: &Arc<str>,
    ) -> Option<CmdTx> {
        if let Some(t) = self.trackers.get(url).filter(|t| !t.is_closed()) {
            return Some(t.clone());
        }
        let pool = shared.signals.as_ref()?;
        let t = pool.tracker(url);
        send_cmd(
            &t,
            Cmd::Register {
                info_hash,
                tx: tx.clone(),
            },
        );
        self.trackers.insert(url.clone(), t.clone());
        Some(t)
    }

    /// Carries out `action`; returns the peer whose connection cannot even start.
    pub(super) fn act(
        &mut self,
        shared: &Shared,
        tx: &mpsc::Sender<TaskMsg>,
        info_hash: InfoHash,
        action: RtcAction,
    ) -> Option<PeerId> {
        match action {
            RtcAction::Announce { url, params } => {
                if let Some(t) = self.tracker(shared, tx, info_hash, &url) {
                    debug!(%url, event = params.event.as_str(), "announcing (WebSocket)");
                    send_cmd(&t, Cmd::Announce(params));
                }
            }
            RtcAction::Leave { url } => {
                if let Some(t) = self.trackers.remove(&url) {
                    send_cmd(&t, Cmd::Unregister { info_hash });
                }
            }
            RtcAction::CreateOffer { url, offer_id } => {
                // Only asked for by a tracker we joined; nothing to answer otherwise.
                let tracker = self.trackers.get(&url).cloned()?;
                let cfg = shared.rtc.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match rtc::create_offer(&cfg).await {
                        Ok((pending, sdp)) => {
                            let msg = TaskMsg::OfferReady {
                                url,
                                offer_id,
                                pending: Box::new(pending),
                                sdp,
                            };
                            if tx.send(msg).await.is_err() {
                                send_cmd(&tracker, Cmd::OfferFailed { offer_id });
                            }
                        }
                        Err(e) => {
                            debug!("creating a WebRTC offer failed: {e}");
                            send_cmd(&tracker, Cmd::OfferFailed { offer_id });
                        }
                    }
                });
            }
            RtcAction::DropOffer { offer_id } => {
                self.offers.remove(&offer_id);
            }
            RtcAction::ApplyAnswer {
                offer_id,
                peer_id,
                sdp,
            } => {
                let Some(pending) = self.offers.remove(&offer_id) else {
                    // The offer is gone (dropped or failed): nothing to connect.
                    return Some(peer_id);
                };
                let tx = tx.clone();
                let h = tokio::spawn(async move {
                    let msg = opened(peer_id, pending.accept_answer(&sdp).await);
                    let _ = tx.send(msg).await;
                });
                self.connecting.insert(peer_id, h);
            }
            RtcAction::AnswerOffer {
                url,
                peer_id,
                offer_id,
                sdp,
            } => {
                let Some(tracker) = self.trackers.get(&url).cloned() else {
                    return Some(peer_id);
                };
                let cfg = shared.rtc.clone();
                let tx = tx.clone();
                let h = tokio::spawn(async move {
                    let pending = match rtc::answer_offer(&cfg, &sdp).await {
                        Ok((pending, answer)) => {
                            send_cmd(
                                &tracker,
                                Cmd::AnswerCreated {
                                    info_hash,
                                    peer_id,
                                    offer_id,
                                    sdp: answer,
                                },
                            );
                            pending
                        }
                        Err(e) => {
                            debug!(%peer_id, "answering a WebRTC offer failed: {e}");
                            send_cmd(
                                &tracker,
                                Cmd::AnswerFailed {
                                    info_hash,
                                    peer_id,
                                    offer_id,
                                },
                            );
                            let _ = tx.send(TaskMsg::RtcFailed { peer_id }).await;
                            return;
                        }
                    };
                    let _ = tx.send(opened(peer_id, pending.wait_open().await)).await;
                });
                self.connecting.insert(peer_id, h);
            }
            RtcAction::RefuseOffer {
                url,
                peer_id,
                offer_id,
            } => {
                if let Some(t) = self.trackers.get(&url) {
                    send_cmd(
                        t,
                        Cmd::AnswerFailed {
                            info_hash,
                            peer_id,
                            offer_id,
                        },
                    );
                }
            }
            RtcAction::Abort { peer_id } => {
                if let Some(h) = self.connecting.remove(&peer_id) {
                    debug!(%peer_id, "WebRTC connection attempt given up");
                    h.abort();
                }
            }
        }
        None
    }

    /// Keeps a created offer and hands its SDP to the tracker.
    pub(super) fn offer_ready(
        &mut self,
        url: Arc<str>,
        offer_id: OfferId,
        pending: Box<PendingOffer>,
        sdp: String,
    ) {
        if let Some(t) = self.trackers.get(&url) {
            self.offers.insert(offer_id, *pending);
            send_cmd(t, Cmd::OfferCreated { offer_id, sdp });
        }
    }

    /// A connection attempt ended (opened or failed).
    pub(super) fn connected(&mut self, peer_id: PeerId) {
        self.connecting.remove(&peer_id);
    }

    /// Ends everything: trackers forget the torrent, offers and attempts are dropped.
    pub(super) fn close(&mut self, info_hash: InfoHash) {
        for (_, t) in self.trackers.drain() {
            send_cmd(&t, Cmd::Unregister { info_hash });
        }
        self.offers.clear();
        for (_, h) in self.connecting.drain() {
            h.abort();
        }
    }
}
