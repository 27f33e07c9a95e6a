//! What the driver tells a [`SignalMachine`]: torrents added and removed, announces and
//! scrapes, offers and answers created or failed, the socket opening and closing, frames
//! from the tracker and timeouts.

use crate::announce::{AnnounceEvent, TrackerFailure};
use crate::id::{InfoHash, PeerId};
use crate::time::Time;
use crate::tracker::ws::{
    AnswerRequest, ClientMessage, Offer, ScrapeRequest, SdpType, SessionDescription, TrackerMessage,
};
use crate::tracker::MAX_SCRAPE_HASHES;

use super::{
    AnnounceParams, Conn, OfferId, OfferState, Output, PendingScrape, QueuedKind, Sending,
    SignalMachine, Stage, Stats,
};

impl SignalMachine {
    /// Registers a torrent that uses this tracker. While any torrent is registered the machine
    /// keeps (or reconnects) the socket.
    pub fn add_torrent(&mut self, now: Time, info_hash: InfoHash) {
        self.advance(now);
        self.torrents.entry(info_hash).or_default();
        self.drive();
    }

    /// Forgets a torrent: its pending offers and answers are dropped ([`Output::DropOffer`],
    /// [`Output::DropAnswer`]) and an announce of it still waiting for offers fails. Announces
    /// already queued or sent (say, its `stopped`) still get their outcome. With no torrent
    /// left and nothing outstanding the socket is closed.
    pub fn remove_torrent(&mut self, now: Time, info_hash: InfoHash) {
        self.advance(now);
        if self.torrents.remove(&info_hash).is_some() {
            self.clear_torrent(info_hash, "torrent removed");
        }
        self.drive();
    }

    /// Announces a torrent (registering it unless the event is `stopped`). The outcome comes
    /// out as [`Output::AnnounceDone`] or [`Output::AnnounceFailed`], exactly once.
    pub fn announce(&mut self, now: Time, params: AnnounceParams) {
        self.advance(now);
        let info_hash = params.info_hash;
        let stats = Stats {
            uploaded: params.uploaded,
            downloaded: params.downloaded,
            left: params.left,
            numwant: params.numwant,
        };
        let given_id = params
            .tracker_id
            .filter(|id| !id.is_empty())
            .map(|id| String::from_utf8_lossy(&id).into_owned());
        let stored_id = self
            .torrents
            .get(&info_hash)
            .and_then(|t| t.tracker_id.clone());
        let trackerid = given_id.or(stored_id);
        let job = Some(params.job);
        if params.event == AnnounceEvent::Stopped {
            if let Some(t) = self.torrents.get_mut(&info_hash) {
                t.active = false;
            }
            self.clear_torrent(info_hash, "superseded by a stopped announce");
            if matches!(self.conn, Conn::Idle | Conn::Backoff { .. }) {
                // The tracker forgot us when the socket closed: nothing to tell it.
                self.push(Output::AnnounceFailed {
                    job,
                    info_hash,
                    failure: TrackerFailure::Network("not connected to the tracker".into()),
                });
                self.drive();
                return;
            }
        } else {
            let t = self.torrents.entry(info_hash).or_default();
            t.active = true;
            t.last = Some(stats);
        }
        self.start_announce(job, info_hash, params.event, stats, trackerid);
        self.drive();
    }

    /// The driver created offer `offer_id`: `sdp` is its complete (non-trickle) SDP. Ignored
    /// if the offer is no longer wanted (the driver was told with [`Output::DropOffer`]).
    pub fn offer_created(&mut self, now: Time, offer_id: OfferId, sdp: String) {
        self.advance(now);
        let Some(OfferState::Creating { seq }) = self.offers.get(&offer_id).map(|o| o.state) else {
            self.drive();
            return;
        };
        if let Some(a) = self.announces.iter_mut().find(|a| a.seq == seq) {
            if let Stage::Gathering { waiting, ready, .. } = &mut a.stage {
                if waiting.remove(&offer_id) {
                    ready.push(Offer {
                        offer: SessionDescription {
                            kind: SdpType::Offer,
                            sdp,
                        },
                        offer_id,
                    });
                }
            }
        }
        self.progress_gathering();
        self.drive();
    }

    /// The driver could not create offer `offer_id` (or its connection died): the machine
    /// forgets it, with no [`Output::DropOffer`].
    pub fn offer_failed(&mut self, now: Time, offer_id: OfferId) {
        self.advance(now);
        if let Some(offer) = self.offers.remove(&offer_id) {
            if let OfferState::Creating { seq } = offer.state {
                self.forget_creating(seq, offer_id);
            }
        }
        self.progress_gathering();
        self.drive();
    }

    /// The driver answered the remote offer from [`Output::AcceptOffer`]: `sdp` is the complete
    /// answer SDP, which the machine sends to the offering peer. Ignored if the offer is no
    /// longer being answered (the driver was told with [`Output::DropAnswer`]).
    pub fn answer_created(
        &mut self,
        now: Time,
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: OfferId,
        sdp: String,
    ) {
        self.advance(now);
        let key = (peer_id, offer_id);
        if self
            .answering
            .get(&key)
            .is_some_and(|a| a.info_hash == info_hash)
        {
            self.answering.remove(&key);
            let trackerid = self
                .torrents
                .get(&info_hash)
                .and_then(|t| t.tracker_id.clone());
            let message = ClientMessage::Answer(AnswerRequest {
                info_hash,
                peer_id: self.peer_id,
                to_peer_id: peer_id,
                answer: SessionDescription {
                    kind: SdpType::Answer,
                    sdp,
                },
                offer_id,
                trackerid,
            });
            let kind = QueuedKind::Answer {
                info_hash,
                peer_id,
                offer_id,
            };
            if let Sending::Refused(_) = self.send(message, kind) {
                self.push(Output::DropAnswer {
                    info_hash,
                    peer_id,
                    offer_id,
                });
            }
        }
        self.drive();
    }

    /// The driver could not (or would not) answer the remote offer: the machine forgets it,
    /// with no [`Output::DropAnswer`].
    pub fn answer_failed(
        &mut self,
        now: Time,
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: OfferId,
    ) {
        self.advance(now);
        let key = (peer_id, offer_id);
        if self
            .answering
            .get(&key)
            .is_some_and(|a| a.info_hash == info_hash)
        {
            self.answering.remove(&key);
        }
        self.drive();
    }

    /// Scrapes `info_hashes` (all the tracker's torrents if empty; at most
    /// [`MAX_SCRAPE_HASHES`] are sent). The outcome comes out as [`Output::ScrapeDone`] or
    /// [`Output::ScrapeFailed`]. bittorrent-tracker answers scrapes in order, so replies are
    /// matched oldest first.
    pub fn scrape(&mut self, now: Time, mut info_hashes: Vec<InfoHash>) {
        self.advance(now);
        if matches!(self.conn, Conn::Backoff { .. }) {
            self.push(Output::ScrapeFailed(TrackerFailure::Network(
                "not connected to the tracker".into(),
            )));
            return;
        }
        if self.scrapes.len() >= self.config.max_pending_scrapes {
            self.push(Output::ScrapeFailed(TrackerFailure::Network(
                "too many scrapes outstanding".into(),
            )));
            return;
        }
        info_hashes.truncate(MAX_SCRAPE_HASHES);
        self.ensure_connection();
        let seq = self.seq();
        let message = ClientMessage::Scrape(ScrapeRequest { info_hashes });
        let sent = match self.send(message, QueuedKind::Scrape(seq)) {
            Sending::Sent => true,
            Sending::Queued => false,
            Sending::Refused(why) => {
                self.push(Output::ScrapeFailed(TrackerFailure::Network(why.into())));
                self.drive();
                return;
            }
        };
        self.scrapes.push_back(PendingScrape {
            seq,
            deadline: self.now + self.config.scrape_timeout,
            sent,
        });
        self.drive();
    }

    /// The socket asked for with [`Output::Connect`] is open: queued frames go out, and after a
    /// reconnect every announced torrent announces again.
    pub fn connected(&mut self, now: Time) {
        self.advance(now);
        if !matches!(self.conn, Conn::Connecting { .. }) {
            return;
        }
        self.conn = Conn::Open;
        self.retries = 0;
        self.last_error = None;
        self.stats.connections += 1;
        while let Some(mut q) = self.queue.pop_front() {
            if let ClientMessage::Announce(a) = &mut q.message {
                // Offers failed or expired while the socket was opening are left out.
                if !a.offers.is_empty() {
                    a.offers.retain(|o| self.offers.contains_key(&o.offer_id));
                    a.numwant = Some(u32::try_from(a.offers.len()).unwrap_or(u32::MAX));
                }
            }
            match q.kind {
                QueuedKind::Announce(seq) => {
                    if let Some(a) = self.announces.iter_mut().find(|a| a.seq == seq) {
                        a.stage = Stage::Sent;
                    }
                }
                QueuedKind::Scrape(seq) => {
                    if let Some(s) = self.scrapes.iter_mut().find(|s| s.seq == seq) {
                        s.sent = true;
                    }
                }
                QueuedKind::Answer { .. } => {}
            }
            self.push(Output::Send(q.message.to_json()));
        }
        if std::mem::take(&mut self.reconnecting) {
            let rejoin: Vec<(InfoHash, Stats, Option<String>)> = self
                .torrents
                .iter()
                .filter(|(ih, t)| t.active && !self.announces.iter().any(|a| a.info_hash == **ih))
                .filter_map(|(ih, t)| t.last.map(|s| (*ih, s, t.tracker_id.clone())))
                .collect();
            for (info_hash, stats, trackerid) in rejoin {
                self.start_announce(None, info_hash, AnnounceEvent::None, stats, trackerid);
            }
        }
        self.drive();
    }

    /// The socket closed, or the attempt to open it failed. Outstanding announces and scrapes
    /// fail, pending offers and answers are dropped, and a reconnect is planned if a torrent
    /// still wants this tracker.
    pub fn closed(&mut self, now: Time) {
        self.advance(now);
        if matches!(self.conn, Conn::Connecting { .. } | Conn::Open) {
            self.lost("connection to the tracker closed");
        }
        self.drive();
    }

    /// The attempt to open the socket asked for with [`Output::Connect`] failed, for `reason`
    /// (a refused connection, a DNS or TLS error): as [`closed`](Self::closed), with the
    /// reason in the failures reported.
    pub fn connect_failed(&mut self, now: Time, reason: &str) {
        self.advance(now);
        if matches!(self.conn, Conn::Connecting { .. }) {
            // Bounded: a peer-controlled TLS alert or DNS answer must not grow our messages.
            let reason: String = reason.chars().take(200).collect();
            self.lost(&format!("cannot connect to the tracker: {reason}"));
        } else if self.conn == Conn::Open {
            self.lost("connection to the tracker closed");
        }
        self.drive();
    }

    /// A text frame from the tracker. Malformed frames are counted and reported as
    /// [`Output::Warning`]; frames arriving while the socket is not open are ignored.
    pub fn handle_message(&mut self, now: Time, text: &str) {
        self.advance(now);
        if self.conn != Conn::Open {
            self.stats.ignored_messages += 1;
            return;
        }
        match TrackerMessage::from_json(text) {
            Err(e) => {
                self.stats.invalid_messages += 1;
                self.push(Output::Warning(format!("invalid tracker message: {e}")));
            }
            Ok(TrackerMessage::AnnounceReply(r)) => self.on_reply(r),
            Ok(TrackerMessage::Offer(o)) => self.on_offer(o),
            Ok(TrackerMessage::Answer(a)) => self.on_answer(a),
            Ok(TrackerMessage::ScrapeReply(r)) => self.on_scrape_reply(r),
            Ok(TrackerMessage::Failure(f)) => self.on_failure(f),
        }
        self.drive();
    }

    /// Runs what is due at `now`: timeouts, offer deadlines, reconnects.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        self.drive();
    }
}
