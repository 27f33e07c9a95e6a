//! The socket and the clock: opening and closing the connection, sending frames or queueing
//! them while it opens, losing it (with the reconnect backoff), and advancing time, which runs
//! every timeout.

use std::time::Duration;

use crate::announce::TrackerFailure;
use crate::id::{InfoHash, PeerId};
use crate::time::Time;
use crate::tracker::ws::ClientMessage;

use super::{
    Conn, OfferId, OfferState, OurOffer, Output, Queued, QueuedKind, Sending, SignalMachine,
};

impl SignalMachine {
    fn wants_connection(&self) -> bool {
        !self.torrents.is_empty()
            || !self.announces.is_empty()
            || !self.scrapes.is_empty()
            || !self.queue.is_empty()
    }

    /// From idle, start connecting.
    pub(super) fn ensure_connection(&mut self) {
        if self.conn == Conn::Idle {
            self.conn = Conn::Connecting {
                deadline: self.now + self.config.connect_timeout,
            };
            self.push(Output::Connect);
        }
    }

    /// Opens the socket when there is work, closes it when there is none.
    pub(super) fn drive(&mut self) {
        let wants = self.wants_connection();
        match self.conn {
            Conn::Idle if wants => self.ensure_connection(),
            Conn::Connecting { .. } | Conn::Open if !wants => {
                self.conn = Conn::Idle;
                self.push(Output::Disconnect);
            }
            _ => {}
        }
    }

    /// Clamps time and runs everything due.
    pub(super) fn advance(&mut self, now: Time) {
        let now = now.max(self.now);
        self.now = now;
        match self.conn {
            Conn::Connecting { deadline } if deadline <= now => {
                self.push(Output::Disconnect);
                self.lost("timed out connecting to the tracker");
            }
            Conn::Backoff { until } if until <= now => {
                self.conn = Conn::Idle;
                if self.wants_connection() {
                    self.retries = self.retries.saturating_add(1);
                    self.ensure_connection();
                }
            }
            _ => {}
        }
        // Announces past their deadline.
        let expired: Vec<u64> = self
            .announces
            .iter()
            .filter(|a| a.deadline <= now)
            .map(|a| a.seq)
            .collect();
        for seq in expired {
            self.fail_announce(seq, TrackerFailure::Timeout);
        }
        // Offers past their expiry.
        let expired: Vec<(OfferId, OurOffer)> = self
            .offers
            .iter()
            .filter(|(_, o)| o.expires <= now)
            .map(|(id, o)| (*id, o.clone()))
            .collect();
        for (offer_id, offer) in expired {
            self.offers.remove(&offer_id);
            if let OfferState::Creating { seq } = offer.state {
                self.forget_creating(seq, offer_id);
            }
            self.push(Output::DropOffer {
                info_hash: offer.info_hash,
                offer_id,
            });
        }
        // Answers not created in time.
        let expired: Vec<((PeerId, OfferId), InfoHash)> = self
            .answering
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(k, a)| (*k, a.info_hash))
            .collect();
        for ((peer_id, offer_id), info_hash) in expired {
            self.answering.remove(&(peer_id, offer_id));
            self.push(Output::DropAnswer {
                info_hash,
                peer_id,
                offer_id,
            });
        }
        // Scrapes past their deadline.
        while let Some(pos) = self.scrapes.iter().position(|s| s.deadline <= now) {
            if let Some(s) = self.scrapes.remove(pos) {
                self.unqueue(QueuedKind::Scrape(s.seq));
            }
            self.push(Output::ScrapeFailed(TrackerFailure::Timeout));
        }
        self.progress_gathering();
    }

    /// Sends a frame if the socket is open, queues it while it opens.
    pub(super) fn send(&mut self, message: ClientMessage, kind: QueuedKind) -> Sending {
        match self.conn {
            Conn::Open => {
                self.push(Output::Send(message.to_json()));
                Sending::Sent
            }
            Conn::Connecting { .. } => {
                if self.queue.len() >= self.config.max_queued_messages {
                    Sending::Refused("too many messages queued while connecting")
                } else {
                    self.queue.push_back(Queued { message, kind });
                    Sending::Queued
                }
            }
            Conn::Idle | Conn::Backoff { .. } => Sending::Refused("not connected to the tracker"),
        }
    }

    pub(super) fn unqueue(&mut self, kind: QueuedKind) {
        self.queue.retain(|q| q.kind != kind);
    }

    /// The socket is gone: fail and drop everything tied to it, plan a reconnect.
    pub(super) fn lost(&mut self, why: &str) {
        self.last_error = Some(why.to_string());
        self.stats.disconnections += 1;
        self.reconnecting = true;
        self.conn = Conn::Idle;
        for q in std::mem::take(&mut self.queue) {
            if let QueuedKind::Answer {
                info_hash,
                peer_id,
                offer_id,
            } = q.kind
            {
                self.push(Output::DropAnswer {
                    info_hash,
                    peer_id,
                    offer_id,
                });
            }
        }
        for (offer_id, offer) in std::mem::take(&mut self.offers) {
            self.push(Output::DropOffer {
                info_hash: offer.info_hash,
                offer_id,
            });
        }
        for a in std::mem::take(&mut self.announces) {
            self.push(Output::AnnounceFailed {
                job: a.job,
                info_hash: a.info_hash,
                failure: TrackerFailure::Network(why.into()),
            });
        }
        for ((peer_id, offer_id), a) in std::mem::take(&mut self.answering) {
            self.push(Output::DropAnswer {
                info_hash: a.info_hash,
                peer_id,
                offer_id,
            });
        }
        for _ in std::mem::take(&mut self.scrapes) {
            self.push(Output::ScrapeFailed(TrackerFailure::Network(why.into())));
        }
        if !self.torrents.is_empty() {
            let delay = self.reconnect_delay();
            self.conn = Conn::Backoff {
                until: self.now + delay,
            };
        }
    }

    /// `min(2^retries · minimum, maximum) + random(0 .. variance)`.
    fn reconnect_delay(&mut self) -> Duration {
        let factor = 1u32 << self.retries.min(31);
        let base = self
            .config
            .reconnect_minimum
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.config.reconnect_maximum);
        let variance =
            u64::try_from(self.config.reconnect_variance.as_micros()).unwrap_or(u64::MAX);
        let jitter = if variance == 0 {
            0
        } else {
            self.rng.below(variance)
        };
        base.saturating_add(Duration::from_micros(jitter))
    }
}
