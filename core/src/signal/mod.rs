//! WebTorrent signaling over a WebSocket tracker, as a sans-IO state machine.
//!
//! One [`SignalMachine`] per WebSocket tracker URL per client; it serves every torrent that lists
//! that tracker, over one socket (bittorrent-tracker's client shares one socket per URL too). It
//! decides what to send and when; the driver only moves text frames, creates WebRTC peer
//! connections and keeps time:
//!
//! * **Socket.** [`Output::Connect`] when there is work and no socket; the driver reports
//!   [`connected`](SignalMachine::connected) or [`closed`](SignalMachine::closed) (also for a
//!   failed attempt). Frames to send come out as [`Output::Send`], frames received go in through
//!   [`handle_message`](SignalMachine::handle_message). [`Output::Disconnect`] asks the driver
//!   to close the socket (no torrent left, or the connect attempt took longer than
//!   [`Config::connect_timeout`]); after it, the driver reports nothing more about that socket.
//! * **Reconnecting.** After a close or a failed attempt the machine waits
//!   `min(2^retries · 10 s, 60 min) + random(0 .. 5 min)` (bittorrent-tracker's
//!   `RECONNECT_MINIMUM`, `RECONNECT_MAXIMUM`, `RECONNECT_VARIANCE`) and reconnects only if a
//!   torrent is still registered; `retries` counts consecutive failed attempts and resets once a
//!   connection opens. A closed socket fails every outstanding announce and scrape (so the
//!   [`Announcer`](crate::announce::Announcer) backs off) and drops every pending offer and
//!   answer (the tracker forgets a peer whose socket closes). While waiting to reconnect,
//!   announces and scrapes fail at once. Once the socket reopens, every torrent that had
//!   announced (and not `stopped`) announces again at once with fresh offers, as
//!   bittorrent-tracker does, reported with `job: None`.
//! * **Announces.** Every announce but `stopped` and `completed` carries offers (as in
//!   bittorrent-tracker 11): the machine asks for `min(numwant, max_offers)` of them
//!   ([`Output::CreateOffer`], each with a random 20-byte offer id); the driver creates a peer
//!   connection with a data channel, waits for ICE gathering to complete (non-trickle) and calls
//!   [`offer_created`](SignalMachine::offer_created) or
//!   [`offer_failed`](SignalMachine::offer_failed). Once every asked offer is resolved, or after
//!   [`Config::offer_gather_timeout`], exactly one announce goes out with the offers that are
//!   ready. Frames made while the socket is still opening wait in a bounded queue. The reply
//!   (bittorrent-tracker's has counts and an interval, never peers) comes out as
//!   [`Output::AnnounceDone`]; a `failure reason`, a closed socket or no reply within
//!   [`Config::announce_timeout`] as [`Output::AnnounceFailed`]. `stopped` carries no offers and
//!   drops the torrent's pending offers and answers. A `tracker id` from a reply is echoed as
//!   `trackerid` from then on.
//! * **Our offers.** An answer forwarded by the tracker that matches one of our announced offers
//!   (same offer id and torrent) comes out as [`Output::ApplyAnswer`] and consumes the offer;
//!   anything else is ignored. An offer without an answer 50 s after it was asked for
//!   (`OFFER_TIMEOUT`) comes out as [`Output::DropOffer`]: the driver closes that connection.
//! * **Remote offers.** An offer forwarded by the tracker, for a torrent that has announced, not
//!   from our own peer id, comes out as [`Output::AcceptOffer`]: the driver creates the
//!   answering connection and calls [`answer_created`](SignalMachine::answer_created) (the
//!   machine sends the answer to the offering peer) or
//!   [`answer_failed`](SignalMachine::answer_failed) (also the way to refuse a peer, e.g. one
//!   already connected). At most [`Config::max_answering`] offers are being answered at once;
//!   more are ignored. An answer not created within [`Config::answer_timeout`], or that cannot
//!   be sent, comes out as [`Output::DropAnswer`].
//! * **Lifecycle of a peer connection the machine asked for.** After [`Output::CreateOffer`]:
//!   exactly one of [`Output::ApplyAnswer`] (the connection is the driver's from then on),
//!   [`Output::DropOffer`] (close it), or the driver's own [`offer_failed`]. After
//!   [`Output::AcceptOffer`]: exactly one of the answer being sent (the connection is the
//!   driver's; give it a connect timeout), [`Output::DropAnswer`] (close it), or the driver's
//!   [`answer_failed`]. Calls about ids already resolved are ignored.
//! * **Robustness.** Malformed frames from the tracker are counted and reported as
//!   [`Output::Warning`]; nothing a tracker or peer sends can panic the machine, and every
//!   collection is bounded by [`Config`].
//!
//! Time is an input (a decreasing `now` is treated as the latest time seen); the only randomness
//! is a seeded [`Rng`].
//!
//! [`offer_failed`]: SignalMachine::offer_failed
//! [`answer_failed`]: SignalMachine::answer_failed

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::announce::{AnnounceEvent, AnnounceJob, JobId, TrackerFailure, TrackerReply};
use crate::id::{Id20, InfoHash, PeerId};
use crate::rng::Rng;
use crate::time::Time;
use crate::tracker::ws::{
    AnnounceReply, AnnounceRequest, AnswerMessage, AnswerRequest, ClientMessage, Failure, Offer,
    OfferMessage, ScrapeReply, ScrapeRequest, SdpType, SessionDescription, TrackerMessage,
    WsAction, MAX_OFFERS,
};
use crate::tracker::MAX_SCRAPE_HASHES;

/// The random 20-byte id of an offer, chosen by the peer that made it.
pub type OfferId = Id20;

/// Tuning of a [`SignalMachine`]. Defaults follow bittorrent-tracker 11's WebSocket client
/// (`lib/client/websocket-tracker.js`) where it has a value. [`SignalMachine::new`] raises
/// nonsensical values: durations to at least 1 ms, `reconnect_maximum` to at least
/// `reconnect_minimum`, and caps `max_offers` at [`MAX_OFFERS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most offers per announce; an announce carries `min(numwant, max_offers)` (default 5, as
    /// bittorrent-tracker 11: "limit the number of offers that are generated, since it can be
    /// slow").
    pub max_offers: usize,
    /// How long one of our offers waits for an answer, counted from [`Output::CreateOffer`]
    /// (default 50 s, `OFFER_TIMEOUT`).
    pub offer_timeout: Duration,
    /// How long an announce waits for the driver to create its offers before it goes out with
    /// those that are ready (default 10 s: simple-peer gives ICE gathering 5 s, plus slack).
    pub offer_gather_timeout: Duration,
    /// How long an announce may take, from [`SignalMachine::announce`] to the tracker's reply,
    /// offer creation and connecting included (default 25 s; keep it below the
    /// [`Announcer`](crate::announce::Announcer)'s `request_timeout`, 30 s).
    pub announce_timeout: Duration,
    /// How long the driver may take to create an answer after [`Output::AcceptOffer`] (default
    /// 20 s; the offering peer drops its offer 50 s after creating it).
    pub answer_timeout: Duration,
    /// How long a scrape may wait for its reply (default 15 s, bittorrent-tracker's
    /// `REQUEST_TIMEOUT`).
    pub scrape_timeout: Duration,
    /// How long the driver may take to open the socket before the attempt counts as failed
    /// (default 15 s).
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per consecutive failed attempt (default 10 s,
    /// `RECONNECT_MINIMUM`).
    pub reconnect_minimum: Duration,
    /// Longest reconnect delay before the random variance (default 60 min,
    /// `RECONNECT_MAXIMUM`).
    pub reconnect_maximum: Duration,
    /// Upper bound of the random delay added to each reconnect delay (default 5 min,
    /// `RECONNECT_VARIANCE`).
    pub reconnect_variance: Duration,
    /// Most remote offers being answered at once; more are ignored (default 20).
    pub max_answering: usize,
    /// Most of our offers pending (being created or awaiting an answer) per torrent (default 20).
    pub max_offers_per_torrent: usize,
    /// Most of our offers pending over all torrents (default 200).
    pub max_pending_offers: usize,
    /// Most frames queued while the socket opens; more fail at once (default 64).
    pub max_queued_messages: usize,
    /// Most announces outstanding over all torrents; more fail at once (default 256).
    pub max_pending_announces: usize,
    /// Most scrapes outstanding; more fail at once (default 16).
    pub max_pending_scrapes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_offers: 5,
            offer_timeout: Duration::from_secs(50),
            offer_gather_timeout: Duration::from_secs(10),
            announce_timeout: Duration::from_secs(25),
            answer_timeout: Duration::from_secs(20),
            scrape_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(15),
            reconnect_minimum: Duration::from_secs(10),
            reconnect_maximum: Duration::from_secs(60 * 60),
            reconnect_variance: Duration::from_secs(5 * 60),
            max_answering: 20,
            max_offers_per_torrent: 20,
            max_pending_offers: 200,
            max_queued_messages: 64,
            max_pending_announces: 256,
            max_pending_scrapes: 16,
        }
    }
}

impl Config {
    fn sanitized(mut self) -> Self {
        const MS: Duration = Duration::from_millis(1);
        for d in [
            &mut self.offer_timeout,
            &mut self.offer_gather_timeout,
            &mut self.announce_timeout,
            &mut self.answer_timeout,
            &mut self.scrape_timeout,
            &mut self.connect_timeout,
            &mut self.reconnect_minimum,
        ] {
            *d = (*d).max(MS);
        }
        self.reconnect_maximum = self.reconnect_maximum.max(self.reconnect_minimum);
        self.max_offers = self.max_offers.min(MAX_OFFERS);
        self
    }
}

/// One announce to send, as [`SignalMachine::announce`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The [`Announcer`](crate::announce::Announcer)'s job, echoed in the outcome.
    pub job: JobId,
    /// The torrent.
    pub info_hash: InfoHash,
    /// The `event`.
    pub event: AnnounceEvent,
    /// Bytes uploaded.
    pub uploaded: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes left.
    pub left: u64,
    /// Peers wanted; the announce carries `min(numwant, max_offers)` offers.
    pub numwant: u32,
    /// `tracker id` to echo as `trackerid`; `None` uses the one this tracker last sent.
    pub tracker_id: Option<Vec<u8>>,
}

impl AnnounceParams {
    /// The parameters of an [`AnnounceJob`] for torrent `info_hash`.
    pub fn from_job(info_hash: InfoHash, job: &AnnounceJob) -> Self {
        AnnounceParams {
            job: job.id,
            info_hash,
            event: job.event,
            uploaded: job.uploaded,
            downloaded: job.downloaded,
            left: job.left,
            numwant: job.numwant,
            tracker_id: job.tracker_id.clone(),
        }
    }
}

/// What the driver should do, from [`SignalMachine::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a WebSocket to the tracker, then call [`SignalMachine::connected`] or
    /// [`SignalMachine::closed`].
    Connect,
    /// Close the socket; report nothing more about it.
    Disconnect,
    /// Send this JSON text frame on the open socket.
    Send(String),
    /// Create an initiating peer connection with a data channel for `info_hash`, gather ICE
    /// candidates completely, then call [`SignalMachine::offer_created`] with the offer's SDP (or
    /// [`SignalMachine::offer_failed`]). Keep it under `offer_id`.
    CreateOffer {
        /// The torrent.
        info_hash: InfoHash,
        /// The offer's id.
        offer_id: OfferId,
    },
    /// Close the peer connection of our offer `offer_id`: it is expired, unused or its torrent
    /// is gone.
    DropOffer {
        /// The torrent.
        info_hash: InfoHash,
        /// The offer's id.
        offer_id: OfferId,
    },
    /// A remote peer answered our offer `offer_id`: set `sdp` as the remote answer on that
    /// connection. The connection is the driver's from now on.
    ApplyAnswer {
        /// The torrent.
        info_hash: InfoHash,
        /// The answering peer.
        peer_id: PeerId,
        /// Our offer's id.
        offer_id: OfferId,
        /// The answer's SDP.
        sdp: String,
    },
    /// A remote peer offers a connection: create an answering peer connection from `sdp` (an
    /// offer), gather ICE candidates completely, then call [`SignalMachine::answer_created`] (or
    /// [`SignalMachine::answer_failed`], also to refuse the peer).
    AcceptOffer {
        /// The torrent.
        info_hash: InfoHash,
        /// The offering peer.
        peer_id: PeerId,
        /// Its offer's id.
        offer_id: OfferId,
        /// The offer's SDP.
        sdp: String,
    },
    /// Close the answering connection made for this remote offer: the answer was not created in
    /// time or cannot be sent.
    DropAnswer {
        /// The torrent.
        info_hash: InfoHash,
        /// The offering peer.
        peer_id: PeerId,
        /// Its offer's id.
        offer_id: OfferId,
    },
    /// The tracker answered an announce. `job` is `None` for the machine's own announce after a
    /// reconnect.
    AnnounceDone {
        /// The job from [`AnnounceParams::job`].
        job: Option<JobId>,
        /// The torrent.
        info_hash: InfoHash,
        /// What the tracker said (`peers_count` is always 0: peers come as offers).
        reply: TrackerReply,
    },
    /// An announce failed. `job` is `None` for the machine's own announce after a reconnect.
    AnnounceFailed {
        /// The job from [`AnnounceParams::job`].
        job: Option<JobId>,
        /// The torrent.
        info_hash: InfoHash,
        /// Why.
        failure: TrackerFailure,
    },
    /// The tracker answered a scrape (the oldest outstanding one).
    ScrapeDone(ScrapeReply),
    /// A scrape failed (the oldest outstanding one, for a refusal or a timeout).
    ScrapeFailed(TrackerFailure),
    /// Something unexpected from the tracker, for logs; nothing to do.
    Warning(String),
}

/// The socket as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// No socket and none wanted.
    Idle,
    /// [`Output::Connect`] was given; waiting for [`SignalMachine::connected`].
    Connecting,
    /// The socket is open.
    Open,
    /// The socket closed; the next attempt is due at `until` (if a torrent still wants it).
    Backoff {
        /// When the next attempt is due.
        until: Time,
    },
}

/// Counters of what the machine ignored or refused, for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalStats {
    /// Frames from the tracker that did not parse.
    pub invalid_messages: u64,
    /// Well-formed frames that matched nothing: replies to no outstanding request, answers to
    /// unknown offers, offers for unknown torrents or from ourselves, frames while not open.
    pub ignored_messages: u64,
    /// Remote offers refused because [`Config::max_answering`] were being answered.
    pub refused_offers: u64,
    /// Successful connections.
    pub connections: u64,
    /// Closed sockets and failed attempts.
    pub disconnections: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stats {
    uploaded: u64,
    downloaded: u64,
    left: u64,
    numwant: u32,
}

#[derive(Debug, Clone, Default)]
struct TorrentState {
    /// Announced (not `stopped`) since it was added: the tracker may know us, offers for it are
    /// accepted, and it announces again after a reconnect.
    active: bool,
    /// Stats of its last announce, reused after a reconnect.
    last: Option<Stats>,
    /// The tracker's `tracker id` for it.
    tracker_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfferState {
    /// Asked of the driver for announce `seq` (possibly already created, not yet sent).
    Creating { seq: u64 },
    /// In an announce; waiting for an answer.
    Announced,
}

#[derive(Debug, Clone)]
struct OurOffer {
    info_hash: InfoHash,
    state: OfferState,
    expires: Time,
}

#[derive(Debug, Clone)]
enum Stage {
    /// Waiting for offers.
    Gathering {
        waiting: BTreeSet<OfferId>,
        ready: Vec<Offer>,
        until: Time,
    },
    /// In the queue, waiting for the socket to open.
    Queued,
    /// Sent; waiting for the reply.
    Sent,
}

#[derive(Debug, Clone)]
struct PendingAnnounce {
    seq: u64,
    job: Option<JobId>,
    info_hash: InfoHash,
    event: AnnounceEvent,
    stats: Stats,
    trackerid: Option<String>,
    deadline: Time,
    stage: Stage,
    /// The offers the announce carried, in order (trackers forward the first ones, one per
    /// other peer).
    sent_offers: Vec<OfferId>,
}

#[derive(Debug, Clone, Copy)]
struct Answering {
    info_hash: InfoHash,
    deadline: Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueuedKind {
    Announce(u64),
    Scrape(u64),
    Answer {
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: OfferId,
    },
}

#[derive(Debug, Clone)]
struct Queued {
    /// Serialized when sent, so offers dropped meanwhile are left out.
    message: ClientMessage,
    kind: QueuedKind,
}

#[derive(Debug, Clone, Copy)]
struct PendingScrape {
    seq: u64,
    deadline: Time,
    sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting { deadline: Time },
    Open,
    Backoff { until: Time },
}

/// Where a frame went.
enum Sending {
    Sent,
    Queued,
    Refused(&'static str),
}

/// WebSocket tracker signaling for one tracker URL. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct SignalMachine {
    config: Config,
    peer_id: PeerId,
    rng: Rng,
    now: Time,
    conn: Conn,
    /// Consecutive failed attempts, as bittorrent-tracker's `retries`.
    retries: u32,
    /// A socket closed since the last successful connection: re-announce on the next one.
    reconnecting: bool,
    /// Why the last connection ended or could not be made (until the next one opens).
    last_error: Option<String>,
    torrents: BTreeMap<InfoHash, TorrentState>,
    offers: BTreeMap<OfferId, OurOffer>,
    /// Outstanding announces, oldest first.
    announces: Vec<PendingAnnounce>,
    answering: BTreeMap<(PeerId, OfferId), Answering>,
    queue: VecDeque<Queued>,
    scrapes: VecDeque<PendingScrape>,
    next_seq: u64,
    outputs: VecDeque<Output>,
    stats: SignalStats,
}

impl SignalMachine {
    /// An idle machine announcing as `peer_id`; `rng_seed` draws offer ids and reconnect jitter.
    pub fn new(peer_id: PeerId, config: Config, rng_seed: u64, now: Time) -> Self {
        SignalMachine {
            config: config.sanitized(),
            peer_id,
            rng: Rng::new(rng_seed),
            now,
            conn: Conn::Idle,
            retries: 0,
            reconnecting: false,
            last_error: None,
            torrents: BTreeMap::new(),
            offers: BTreeMap::new(),
            announces: Vec::new(),
            answering: BTreeMap::new(),
            queue: VecDeque::new(),
            scrapes: VecDeque::new(),
            next_seq: 0,
            outputs: VecDeque::new(),
            stats: SignalStats::default(),
        }
    }

    // ---- inputs ----

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

    // ---- outputs and queries ----

    /// The next thing for the driver to do, oldest first.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (possibly already past), or
    /// `None` if nothing is planned.
    pub fn poll_timeout(&self) -> Option<Time> {
        let conn = match self.conn {
            Conn::Connecting { deadline } => Some(deadline),
            Conn::Backoff { until } => Some(until),
            Conn::Idle | Conn::Open => None,
        };
        let announces = self.announces.iter().map(|a| match &a.stage {
            Stage::Gathering { until, .. } => a.deadline.min(*until),
            Stage::Queued | Stage::Sent => a.deadline,
        });
        let offers = self.offers.values().map(|o| o.expires);
        let answering = self.answering.values().map(|a| a.deadline);
        let scrapes = self.scrapes.iter().map(|s| s.deadline);
        conn.into_iter()
            .chain(announces)
            .chain(offers)
            .chain(answering)
            .chain(scrapes)
            .min()
    }

    /// The socket state.
    pub fn connection_state(&self) -> ConnectionState {
        match self.conn {
            Conn::Idle => ConnectionState::Idle,
            Conn::Connecting { .. } => ConnectionState::Connecting,
            Conn::Open => ConnectionState::Open,
            Conn::Backoff { until } => ConnectionState::Backoff { until },
        }
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The tuning in effect (after sanitizing).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `info_hash` is registered.
    pub fn has_torrent(&self, info_hash: &InfoHash) -> bool {
        self.torrents.contains_key(info_hash)
    }

    /// Our offers pending (being created or awaiting an answer), over all torrents.
    pub fn pending_offers(&self) -> usize {
        self.offers.len()
    }

    /// Our offers pending for one torrent.
    pub fn pending_offers_for(&self, info_hash: &InfoHash) -> usize {
        self.offers
            .values()
            .filter(|o| o.info_hash == *info_hash)
            .count()
    }

    /// Remote offers the driver is answering.
    pub fn answering(&self) -> usize {
        self.answering.len()
    }

    /// Announces without an outcome yet.
    pub fn pending_announces(&self) -> usize {
        self.announces.len()
    }

    /// Scrapes without an outcome yet.
    pub fn pending_scrapes(&self) -> usize {
        self.scrapes.len()
    }

    /// Frames waiting for the socket to open.
    pub fn queued_messages(&self) -> usize {
        self.queue.len()
    }

    /// Diagnostic counters.
    pub fn stats(&self) -> SignalStats {
        self.stats
    }

    // ---- internals ----

    fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn wants_connection(&self) -> bool {
        !self.torrents.is_empty()
            || !self.announces.is_empty()
            || !self.scrapes.is_empty()
            || !self.queue.is_empty()
    }

    /// From idle, start connecting.
    fn ensure_connection(&mut self) {
        if self.conn == Conn::Idle {
            self.conn = Conn::Connecting {
                deadline: self.now + self.config.connect_timeout,
            };
            self.push(Output::Connect);
        }
    }

    /// Opens the socket when there is work, closes it when there is none.
    fn drive(&mut self) {
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
    fn advance(&mut self, now: Time) {
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

    /// Sends every announce whose offers are all resolved or whose gathering time is up.
    fn progress_gathering(&mut self) {
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
    fn start_announce(
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

    /// Sends a frame if the socket is open, queues it while it opens.
    fn send(&mut self, message: ClientMessage, kind: QueuedKind) -> Sending {
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

    fn unqueue(&mut self, kind: QueuedKind) {
        self.queue.retain(|q| q.kind != kind);
    }

    /// Removes a created-or-not offer from the announce that is gathering it.
    fn forget_creating(&mut self, seq: u64, offer_id: OfferId) {
        if let Some(a) = self.announces.iter_mut().find(|a| a.seq == seq) {
            if let Stage::Gathering { waiting, ready, .. } = &mut a.stage {
                waiting.remove(&offer_id);
                ready.retain(|o| o.offer_id != offer_id);
            }
        }
    }

    /// Fails announce `seq`, dropping offers still being gathered for it.
    fn fail_announce(&mut self, seq: u64, failure: TrackerFailure) {
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
    fn clear_torrent(&mut self, info_hash: InfoHash, why: &str) {
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

    /// The socket is gone: fail and drop everything tied to it, plan a reconnect.
    fn lost(&mut self, why: &str) {
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

    fn on_reply(&mut self, r: AnnounceReply) {
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

    fn on_offer(&mut self, o: OfferMessage) {
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

    fn on_answer(&mut self, a: AnswerMessage) {
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

    fn on_scrape_reply(&mut self, r: ScrapeReply) {
        match self.scrapes.iter().position(|s| s.sent) {
            Some(pos) => {
                self.scrapes.remove(pos);
                self.push(Output::ScrapeDone(r));
            }
            None => self.stats.ignored_messages += 1,
        }
    }

    fn on_failure(&mut self, f: Failure) {
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
