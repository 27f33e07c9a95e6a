//! Frames from the tracker, once parsed: announce replies, remote offers, answers to our
//! offers, scrape replies and failures.

use std::time::Duration;

use crate::announce::{TrackerFailure, TrackerReply};
use crate::tracker::ws::{
    AnnounceReply, AnswerMessage, Failure, OfferMessage, ScrapeReply, SdpType, WsAction,
};

use super::{Answering, OfferState, Output, SignalMachine, Stage};

impl SignalMachine {
    pub(super) fn on_reply(&mut self, r: AnnounceReply) {
        if let Some(id) = r.tracker_id.as_ref().filter(|id| !id.is_empty()) {
            if let Some(t) = self.torrents.get_mut(&r.info_hash) {
                t.tracker_id = Some(id.clone());
            }
        }
        let Some(i) = self
            .announces
            .iter()
            .position(|a| a.info_hash == r.info_hash && matches!(a.stage, Stage::Sent))
        else {
            self.stats.ignored_messages += 1;
            return;
        };
        let a = self.announces.remove(i);
        // A tracker forwards an announce's offers in order, one to each other peer of the
        // swarm, and drops the rest: offers past the swarm's size (it counts us too) can never
        // be answered, so their connections are closed now rather than after the timeout.
        if let (Some(c), Some(n)) = (r.complete, r.incomplete) {
            let others =
                usize::try_from(c.saturating_add(n).saturating_sub(1)).unwrap_or(usize::MAX);
            for offer_id in a.sent_offers.iter().skip(others) {
                if self
                    .offers
                    .get(offer_id)
                    .is_some_and(|o| matches!(o.state, OfferState::Announced))
                {
                    self.offers.remove(offer_id);
                    self.push(Output::DropOffer {
                        info_hash: a.info_hash,
                        offer_id: *offer_id,
                    });
                }
            }
        }
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        self.push(Output::AnnounceDone {
            job: a.job,
            info_hash: a.info_hash,
            reply: TrackerReply {
                interval: r.interval.map(secs),
                min_interval: r.min_interval.map(secs),
                complete: r.complete,
                incomplete: r.incomplete,
                peers_count: 0,
                tracker_id: r.tracker_id.map(String::into_bytes),
                warning: r.warning_message,
            },
        });
    }

    pub(super) fn on_offer(&mut self, o: OfferMessage) {
        let known = self.torrents.get(&o.info_hash).is_some_and(|t| t.active);
        let key = (o.peer_id, o.offer_id);
        if o.peer_id == self.peer_id
            || !known
            || o.offer.kind != SdpType::Offer
            || self.answering.contains_key(&key)
        {
            self.stats.ignored_messages += 1;
            return;
        }
        if self.answering.len() >= self.config.max_answering {
            self.stats.refused_offers += 1;
            return;
        }
        self.answering.insert(
            key,
            Answering {
                info_hash: o.info_hash,
                deadline: self.now + self.config.answer_timeout,
            },
        );
        self.push(Output::AcceptOffer {
            info_hash: o.info_hash,
            peer_id: o.peer_id,
            offer_id: o.offer_id,
            sdp: o.offer.sdp,
        });
    }

    pub(super) fn on_answer(&mut self, a: AnswerMessage) {
        let matches = self
            .offers
            .get(&a.offer_id)
            .is_some_and(|o| o.info_hash == a.info_hash && o.state == OfferState::Announced);
        if a.peer_id == self.peer_id || a.answer.kind != SdpType::Answer || !matches {
            self.stats.ignored_messages += 1;
            return;
        }
        self.offers.remove(&a.offer_id);
        self.push(Output::ApplyAnswer {
            info_hash: a.info_hash,
            peer_id: a.peer_id,
            offer_id: a.offer_id,
            sdp: a.answer.sdp,
        });
    }

    pub(super) fn on_scrape_reply(&mut self, r: ScrapeReply) {
        match self.scrapes.iter().position(|s| s.sent) {
            Some(pos) => {
                self.scrapes.remove(pos);
                self.push(Output::ScrapeDone(r));
            }
            None => self.stats.ignored_messages += 1,
        }
    }

    pub(super) fn on_failure(&mut self, f: Failure) {
        if f.action == Some(WsAction::Scrape) {
            if let Some(pos) = self.scrapes.iter().position(|s| s.sent) {
                self.scrapes.remove(pos);
                self.push(Output::ScrapeFailed(TrackerFailure::Failure(f.reason)));
                return;
            }
        } else if let Some(info_hash) = f.info_hash {
            let seq = self
                .announces
                .iter()
                .find(|a| a.info_hash == info_hash && matches!(a.stage, Stage::Sent))
                .map(|a| a.seq);
            if let Some(seq) = seq {
                self.fail_announce(seq, TrackerFailure::Failure(f.reason));
                return;
            }
        }
        self.push(Output::Warning(format!("tracker failure: {}", f.reason)));
    }
}
