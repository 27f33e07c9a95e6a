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
//! The machine is split by concern: `inputs` (what the driver reports), `messages` (frames
//! from the tracker), `announces` (gathering offers, sending and failing announces),
//! `connection` (the socket, the frame queue, reconnecting and timeouts), `config` and `types`
//! (the public types); this file holds the internal state, construction and queries.
//!
//! [`offer_failed`]: SignalMachine::offer_failed
//! [`answer_failed`]: SignalMachine::answer_failed

mod announces;
mod config;
mod connection;
mod inputs;
mod messages;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::announce::{AnnounceEvent, JobId};
use crate::id::{Id20, InfoHash, PeerId};
use crate::rng::Rng;
use crate::time::Time;
use crate::tracker::ws::{ClientMessage, Offer};

pub use config::{Config, CHANNEL_OPEN_TIMEOUT, ICE_GATHER_TIMEOUT};
pub use types::{AnnounceParams, ConnectionState, Output, SignalStats};

/// The random 20-byte id of an offer, chosen by the peer that made it.
pub type OfferId = Id20;

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
}
