//! A torrent's WebRTC signaling routes: which WebSocket trackers it joined, which WebRTC
//! connections are being set up, and which offers and answers are worth acting on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::id::PeerId;
use crate::signal::{AnnounceParams, OfferId, Output as SignalOutput, SignalMachine};
use crate::time::Time;
use crate::torrent::Torrent;
use crate::InfoHash;

/// Most WebRTC connections being set up that a torrent tracks at once.
const MAX_CONNECTING: usize = 256;

/// A WebSocket tracker's message for one torrent (the per-torrent part of
/// [`crate::signal::Output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentSignal {
    /// The tracker wants an offer from us: the session answers with
    /// [`RtcAction::CreateOffer`].
    CreateOffer {
        /// The offer's id.
        offer_id: OfferId,
    },
    /// Our offer expired or went unused.
    DropOffer {
        /// The offer's id.
        offer_id: OfferId,
    },
    /// A peer answered our offer.
    Answer {
        /// The answering peer.
        peer_id: PeerId,
        /// Our offer.
        offer_id: OfferId,
        /// The answer's SDP.
        sdp: String,
    },
    /// A peer offers a connection.
    Offer {
        /// The offering peer.
        peer_id: PeerId,
        /// Its offer.
        offer_id: OfferId,
        /// The offer's SDP.
        sdp: String,
    },
    /// The answer made for this remote offer is not needed any more.
    DropAnswer {
        /// The offering peer.
        peer_id: PeerId,
        /// Its offer.
        offer_id: OfferId,
    },
}

impl TorrentSignal {
    /// Splits a signal machine output addressed to one torrent into its info hash and
    /// message; everything else (socket work, announce results, scrapes, warnings) comes back
    /// unchanged.
    #[allow(clippy::result_large_err)]
    pub fn from_output(out: SignalOutput) -> Result<(InfoHash, TorrentSignal), SignalOutput> {
        Ok(match out {
            SignalOutput::CreateOffer {
                info_hash,
                offer_id,
            } => (info_hash, TorrentSignal::CreateOffer { offer_id }),
            SignalOutput::DropOffer {
                info_hash,
                offer_id,
            } => (info_hash, TorrentSignal::DropOffer { offer_id }),
            SignalOutput::ApplyAnswer {
                info_hash,
                peer_id,
                offer_id,
                sdp,
            } => (
                info_hash,
                TorrentSignal::Answer {
                    peer_id,
                    offer_id,
                    sdp,
                },
            ),
            SignalOutput::AcceptOffer {
                info_hash,
                peer_id,
                offer_id,
                sdp,
            } => (
                info_hash,
                TorrentSignal::Offer {
                    peer_id,
                    offer_id,
                    sdp,
                },
            ),
            SignalOutput::DropAnswer {
                info_hash,
                peer_id,
                offer_id,
            } => (info_hash, TorrentSignal::DropAnswer { peer_id, offer_id }),
            other => return Err(other),
        })
    }
}

impl TorrentSignal {
    /// Answers for a torrent the driver no longer has: the tracker is told that it makes no
    /// offer and answers no offer (nothing is needed for the other messages).
    pub fn refuse(self, machine: &mut SignalMachine, now: Time, info_hash: InfoHash) {
        match self {
            TorrentSignal::CreateOffer { offer_id } => machine.offer_failed(now, offer_id),
            TorrentSignal::Offer {
                peer_id, offer_id, ..
            } => machine.answer_failed(now, info_hash, peer_id, offer_id),
            _ => {}
        }
    }
}

/// What a session asks of the WebSocket trackers and the WebRTC layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcAction {
    /// Announce on this WebSocket tracker (join it for this torrent first if needed); the
    /// outcome comes back as [`super::Input::Announced`].
    Announce {
        /// The tracker.
        url: Arc<str>,
        /// The announce.
        params: AnnounceParams,
    },
    /// The session is over: forget this torrent on the tracker.
    Leave {
        /// The tracker.
        url: Arc<str>,
    },
    /// Make an offer (peer connection, data channel, complete SDP), keep it under `offer_id`
    /// and give the tracker its SDP, or tell the tracker it failed.
    CreateOffer {
        /// The tracker that asked.
        url: Arc<str>,
        /// The offer's id.
        offer_id: OfferId,
    },
    /// Close the connection kept for our offer, if it is still there.
    DropOffer {
        /// The offer's id.
        offer_id: OfferId,
    },
    /// Apply this answer to our offer's connection (if it is still there); when its channel
    /// opens feed [`super::Input::PeerConnected`], if it fails [`super::Input::RtcFailed`].
    ApplyAnswer {
        /// Our offer.
        offer_id: OfferId,
        /// The answering peer.
        peer_id: PeerId,
        /// The answer's SDP.
        sdp: String,
    },
    /// Answer this remote offer: give the tracker the answer (or tell it answering failed),
    /// then as for [`RtcAction::ApplyAnswer`].
    AnswerOffer {
        /// The tracker it came through.
        url: Arc<str>,
        /// The offering peer.
        peer_id: PeerId,
        /// Its offer.
        offer_id: OfferId,
        /// The offer's SDP.
        sdp: String,
    },
    /// Tell the tracker we do not answer this offer.
    RefuseOffer {
        /// The tracker it came through.
        url: Arc<str>,
        /// The offering peer.
        peer_id: PeerId,
        /// Its offer.
        offer_id: OfferId,
    },
    /// Give up the connection being set up with this peer.
    Abort {
        /// The remote peer.
        peer_id: PeerId,
    },
}

/// The routes of one torrent.
#[derive(Debug)]
pub(super) struct Routes {
    our_id: PeerId,
    /// WebSocket trackers this torrent announced on.
    joined: HashSet<Arc<str>>,
    /// Connections being set up, by remote peer id, with when they started.
    connecting: HashMap<PeerId, Time>,
    timeout: std::time::Duration,
}

impl Routes {
    pub(super) fn new(our_id: PeerId) -> Self {
        Routes {
            our_id,
            joined: HashSet::new(),
            connecting: HashMap::new(),
            timeout: crate::signal::ICE_GATHER_TIMEOUT + crate::signal::CHANNEL_OPEN_TIMEOUT,
        }
    }

    pub(super) fn set_timeout(&mut self, timeout: std::time::Duration) {
        self.timeout = timeout;
    }

    pub(super) fn joined(&mut self, url: Arc<str>) {
        self.joined.insert(url);
    }

    /// Trackers to leave at the end.
    pub(super) fn leave_all(&mut self) -> Vec<Arc<str>> {
        self.joined.drain().collect()
    }

    /// Every connection being set up is given up.
    pub(super) fn abort_all(&mut self) -> Vec<RtcAction> {
        self.connecting
            .drain()
            .map(|(peer_id, _)| RtcAction::Abort { peer_id })
            .collect()
    }

    /// A connection being set up opened or failed.
    pub(super) fn connect_ended(&mut self, peer_id: PeerId) {
        self.connecting.remove(&peer_id);
    }

    /// Connections being set up.
    pub(super) fn num_connecting(&self) -> usize {
        self.connecting.len()
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        self.connecting.values().min().map(|t| *t + self.timeout)
    }

    /// Forgets connections that took too long (the driver gives them up on its own).
    pub(super) fn handle_timeout(&mut self, now: Time) -> Vec<RtcAction> {
        let timeout = self.timeout;
        let stale: Vec<PeerId> = self
            .connecting
            .iter()
            .filter(|(_, t)| now.saturating_since(**t) >= timeout)
            .map(|(p, _)| *p)
            .collect();
        stale
            .into_iter()
            .map(|peer_id| {
                self.connecting.remove(&peer_id);
                RtcAction::Abort { peer_id }
            })
            .collect()
    }

    /// Whether a WebRTC connection to `peer_id` is wanted now. A connection still being set up
    /// with that peer does not count against it: when both sides' offers cross, each keeps a
    /// different one of the two connections (webtorrent keeps the first it registered), so
    /// both go ahead and the torrent drops the duplicate once both handshakes are done.
    /// If so, the attempt starts counting now.
    fn want(&mut self, now: Time, peer_id: PeerId, room: usize, torrent: &Torrent) -> bool {
        let wanted = peer_id != self.our_id
            && self.connecting.len() < room.min(MAX_CONNECTING)
            && !torrent.has_peer_id(peer_id);
        if wanted {
            self.connecting.insert(peer_id, now);
        }
        wanted
    }

    /// What to do about a tracker's message. `running` is false while paused or stopping;
    /// `room` is how many more peers fit.
    pub(super) fn handle_signal(
        &mut self,
        now: Time,
        url: Arc<str>,
        signal: TorrentSignal,
        running: bool,
        room: usize,
        torrent: &Torrent,
    ) -> Vec<RtcAction> {
        match signal {
            // Offers are asked for by our own announces; making one is cheap to undo.
            TorrentSignal::CreateOffer { offer_id } => {
                vec![RtcAction::CreateOffer { url, offer_id }]
            }
            TorrentSignal::DropOffer { offer_id } => vec![RtcAction::DropOffer { offer_id }],
            TorrentSignal::Answer {
                peer_id,
                offer_id,
                sdp,
            } => {
                if !(running && self.want(now, peer_id, room, torrent)) {
                    return vec![RtcAction::DropOffer { offer_id }];
                }
                vec![RtcAction::ApplyAnswer {
                    offer_id,
                    peer_id,
                    sdp,
                }]
            }
            TorrentSignal::Offer {
                peer_id,
                offer_id,
                sdp,
            } => {
                if !(running && self.want(now, peer_id, room, torrent)) {
                    return vec![RtcAction::RefuseOffer {
                        url,
                        peer_id,
                        offer_id,
                    }];
                }
                vec![RtcAction::AnswerOffer {
                    url,
                    peer_id,
                    offer_id,
                    sdp,
                }]
            }
            TorrentSignal::DropAnswer { peer_id, .. } => {
                self.connecting.remove(&peer_id);
                vec![RtcAction::Abort { peer_id }]
            }
        }
    }
}
