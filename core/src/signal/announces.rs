//! Our announces: asking the driver for offers, gathering them, sending the announce (or
//! failing it), and dropping a torrent's offers and answers.

use std::collections::BTreeSet;

use crate::announce::{AnnounceEvent, JobId, TrackerFailure};
use crate::id::{Id20, InfoHash, PeerId};
use crate::tracker::ws::{AnnounceRequest, ClientMessage};

use super::{
    Conn, OfferId, OfferState, OurOffer, Output, PendingAnnounce, QueuedKind, Sending,
    SignalMachine, Stage, Stats,
};

impl SignalMachine {
    /// Sends every announce whose offers are all resolved or whose gathering time is up.
    pub(super) fn progress_gathering(&mut self) {
        let now = self.now;
        let done: Vec<u64> = self
            .announces
            .iter()
            .filter(|a| match &a.stage {
                Stage::Gathering { waiting, until, .. } => waiting.is_empty() || *until <= now,
                Stage::Queued | Stage::Sent => false,
            })
            .map(|a| a.seq)
            .collect();
        for seq in done {
            self.dispatch(seq);
        }
    }

    /// Creates announce `seq`, asking for its offers.
    pub(super) fn start_announce(
        &mut self,
        job: Option<JobId>,
        info_hash: InfoHash,
        event: AnnounceEvent,
        stats: Stats,
        trackerid: Option<String>,
    ) {
        if matches!(self.conn, Conn::Backoff { .. }) {
            self.push(Output::AnnounceFailed {
                job,
                info_hash,
                failure: TrackerFailure::Network(match &self.last_error {
                    Some(e) => format!("not connected to the tracker; waiting to reconnect ({e})"),
                    None => "not connected to the tracker; waiting to reconnect".into(),
                }),
            });
            return;
        }
        if self.announces.len() >= self.config.max_pending_announces {
            self.push(Output::AnnounceFailed {
                job,
                info_hash,
                failure: TrackerFailure::Network("too many announces outstanding".into()),
            });
            return;
        }
        self.ensure_connection();
        let seq = self.seq();
        let wants_offers = matches!(event, AnnounceEvent::None | AnnounceEvent::Started);
        let count = if wants_offers {
            let per_torrent = self
                .config
                .max_offers_per_torrent
                .saturating_sub(self.pending_offers_for(&info_hash));
            let total = self
                .config
                .max_pending_offers
                .saturating_sub(self.offers.len());
            usize::try_from(stats.numwant)
                .unwrap_or(usize::MAX)
                .min(self.config.max_offers)
                .min(per_torrent)
                .min(total)
        } else {
            0
        };
        let mut waiting = BTreeSet::new();
        for _ in 0..count {
            let offer_id = self.new_offer_id();
            self.offers.insert(
                offer_id,
                OurOffer {
                    info_hash,
                    state: OfferState::Creating { seq },
                    expires: self.now + self.config.offer_timeout,
                },
            );
            waiting.insert(offer_id);
            self.push(Output::CreateOffer {
                info_hash,
                offer_id,
            });
        }
        self.announces.push(PendingAnnounce {
            seq,
            job,
            info_hash,
            event,
            stats,
            trackerid,
            deadline: self.now + self.config.announce_timeout,
            stage: Stage::Gathering {
                waiting,
                ready: Vec::new(),
                until: self.now + self.config.offer_gather_timeout,
            },
            sent_offers: Vec::new(),
        });
        self.progress_gathering();
    }

    fn new_offer_id(&mut self) -> OfferId {
        loop {
            let mut id = [0u8; 20];
            self.rng.fill(&mut id);
            let id = Id20(id);
            if !self.offers.contains_key(&id) {
                return id;
            }
        }
    }

    /// Builds and sends (or queues) announce `seq`, which is gathering; offers not created by
    /// now are dropped.
    fn dispatch(&mut self, seq: u64) {
        let Some(i) = self.announces.iter().position(|a| a.seq == seq) else {
            return;
        };
        let a = &mut self.announces[i];
        let Stage::Gathering { waiting, ready, .. } = std::mem::replace(&mut a.stage, Stage::Sent)
        else {
            return;
        };
        let info_hash = a.info_hash;
        let event = a.event;
        a.sent_offers = ready.iter().map(|o| o.offer_id).collect();
        let message = AnnounceRequest {
            info_hash,
            peer_id: self.peer_id,
            numwant: Some(
                if matches!(event, AnnounceEvent::None | AnnounceEvent::Started) {
                    u32::try_from(ready.len()).unwrap_or(u32::MAX)
                } else {
                    a.stats.numwant
                },
            ),
            uploaded: Some(a.stats.uploaded),
            downloaded: Some(a.stats.downloaded),
            left: Some(a.stats.left),
            event: event.tracker_event(),
            offers: ready,
            trackerid: a.trackerid.clone(),
        };
        for offer_id in waiting {
            if self.offers.remove(&offer_id).is_some() {
                self.push(Output::DropOffer {
                    info_hash,
                    offer_id,
                });
            }
        }
        let offer_ids: Vec<OfferId> = message.offers.iter().map(|o| o.offer_id).collect();
        let sending = self.send(ClientMessage::Announce(message), QueuedKind::Announce(seq));
        for offer_id in offer_ids {
            if let Sending::Refused(_) = sending {
                if self.offers.remove(&offer_id).is_some() {
                    self.push(Output::DropOffer {
                        info_hash,
                        offer_id,
                    });
                }
            } else if let Some(o) = self.offers.get_mut(&offer_id) {
                o.state = OfferState::Announced;
            }
        }
        match sending {
            Sending::Sent => {}
            Sending::Queued => {
                if let Some(a) = self.announces.iter_mut().find(|a| a.seq == seq) {
                    a.stage = Stage::Queued;
                }
            }
            Sending::Refused(why) => {
                self.fail_announce(seq, TrackerFailure::Network(why.into()));
            }
        }
    }

    /// Removes a created-or-not offer from the announce that is gathering it.
    pub(super) fn forget_creating(&mut self, seq: u64, offer_id: OfferId) {
        if let Some(a) = self.announces.iter_mut().find(|a| a.seq == seq) {
            if let Stage::Gathering { waiting, ready, .. } = &mut a.stage {
                waiting.remove(&offer_id);
                ready.retain(|o| o.offer_id != offer_id);
            }
        }
    }

    /// Fails announce `seq`, dropping offers still being gathered for it.
    pub(super) fn fail_announce(&mut self, seq: u64, failure: TrackerFailure) {
        let Some(i) = self.announces.iter().position(|a| a.seq == seq) else {
            return;
        };
        let a = self.announces.remove(i);
        if matches!(a.stage, Stage::Queued) {
            self.unqueue(QueuedKind::Announce(seq));
        }
        let creating: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| o.state == OfferState::Creating { seq })
            .map(|(id, _)| *id)
            .collect();
        for offer_id in creating {
            self.offers.remove(&offer_id);
            self.push(Output::DropOffer {
                info_hash: a.info_hash,
                offer_id,
            });
        }
        self.push(Output::AnnounceFailed {
            job: a.job,
            info_hash: a.info_hash,
            failure,
        });
    }

    /// Drops a torrent's offers and answers and fails its announces still gathering offers.
    pub(super) fn clear_torrent(&mut self, info_hash: InfoHash, why: &str) {
        let gathering: Vec<u64> = self
            .announces
            .iter()
            .filter(|a| a.info_hash == info_hash && matches!(a.stage, Stage::Gathering { .. }))
            .map(|a| a.seq)
            .collect();
        for seq in gathering {
            self.fail_announce(seq, TrackerFailure::Network(why.into()));
        }
        let offers: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, o)| o.info_hash == info_hash)
            .map(|(id, _)| *id)
            .collect();
        for offer_id in offers {
            self.offers.remove(&offer_id);
            self.push(Output::DropOffer {
                info_hash,
                offer_id,
            });
        }
        let answering: Vec<(PeerId, OfferId)> = self
            .answering
            .iter()
            .filter(|(_, a)| a.info_hash == info_hash)
            .map(|(k, _)| *k)
            .collect();
        for (peer_id, offer_id) in answering {
            self.answering.remove(&(peer_id, offer_id));
            self.push(Output::DropAnswer {
                info_hash,
                peer_id,
                offer_id,
            });
        }
        let queued: Vec<QueuedKind> = self
            .queue
            .iter()
            .map(|q| q.kind)
            .filter(|k| matches!(k, QueuedKind::Answer { info_hash: ih, .. } if *ih == info_hash))
            .collect();
        for kind in queued {
            self.unqueue(kind);
            if let QueuedKind::Answer {
                info_hash,
                peer_id,
                offer_id,
            } = kind
            {
                self.push(Output::DropAnswer {
                    info_hash,
                    peer_id,
                    offer_id,
                });
            }
        }
    }
}
