//! The client side of the UDP tracker protocol (BEP 15, with BEP 41 URL data) as a sans-IO
//! state machine.
//!
//! [`UdpTrackerClient`] serves any number of trackers at once. The driver owns the sockets and
//! the clock; the machine owns everything else:
//!
//! * the connect handshake, and a cache of connection ids by tracker address (a minute each,
//!   from their arrival; at most [`UdpClientConfig::max_cached_connections`] trackers);
//! * random transaction ids, unique among the requests in flight, and matching every datagram
//!   to its request by transaction id **and** source address;
//! * retransmission after `base * 2^n` (BEP 15: 15 s · 2^n), giving up after
//!   [`UdpClientConfig::max_retries`] retransmissions;
//! * splitting scrapes into requests of at most [`MAX_SCRAPE_HASHES`] hashes, sent one after
//!   the other, and joining their answers.
//!
//! Requests start with [`announce`](UdpTrackerClient::announce) or
//! [`scrape`](UdpTrackerClient::scrape), which return a [`RequestId`]. The driver then loops:
//! send every [`poll_transmit`](UdpTrackerClient::poll_transmit) datagram, hand the outcome of
//! every [`poll_event`](UdpTrackerClient::poll_event) to whoever asked, wait for a datagram
//! ([`handle_datagram`](UdpTrackerClient::handle_datagram)) or until
//! [`poll_timeout`](UdpTrackerClient::poll_timeout)
//! ([`handle_timeout`](UdpTrackerClient::handle_timeout)). Every request ends with exactly one
//! [`UdpClientEvent::Announced`], [`UdpClientEvent::Scraped`] or [`UdpClientEvent::Failed`],
//! unless it is [`cancel`](UdpTrackerClient::cancel)led first.
//!
//! # Retransmission
//!
//! One request is one *exchange* (for a scrape: one exchange per batch of hashes). Every wait
//! for a reply that expires counts as one retransmission `n` of the exchange; connect and
//! request share the count, and the next wait is `base * 2^n`. A transaction id stays valid
//! across the retransmissions of its packet, so a late reply to an earlier copy is still taken.
//! When a request sent with a connection id from the cache (not one obtained during this
//! exchange) goes unanswered, the id is dropped and the next attempt connects again: a tracker
//! that restarted ignores ids it does not know. An error reply to a request drops the id too.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::id::{InfoHash, PeerId};
use crate::rng::Rng;
use crate::time::Time;

use super::udp::{
    Action, AnnounceRequest, AnnounceResponse, ConnectRequest, Response, ScrapeRequest,
    ScrapeStats, UdpError, MAX_SCRAPE_HASHES,
};
use super::{AddressFamily, Event};

/// How long a connection id may be used, from its arrival (BEP 15: one minute for a client).
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// Most retransmissions [`UdpClientConfig::max_retries`] may ask for (BEP 15: n goes up to 8).
pub const MAX_RETRIES: u32 = 8;

/// Shortest [`UdpClientConfig::base_timeout`]; shorter ones are raised to it.
pub const MIN_BASE_TIMEOUT: Duration = Duration::from_millis(1);

/// Tuning of a [`UdpTrackerClient`].
///
/// [`UdpTrackerClient::new`] raises a `base_timeout` below [`MIN_BASE_TIMEOUT`], caps
/// `max_retries` at [`MAX_RETRIES`] and raises zero limits to 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpClientConfig {
    /// Wait for the first reply before retransmitting; doubles after every retransmission
    /// (default 4 s; BEP 15 suggests 15 s, whose schedule outlasts every announce deadline).
    pub base_timeout: Duration,
    /// Retransmissions of an exchange before it fails with [`RequestError::Timeout`] (default
    /// 2: waits of 4, 8 and 16 s, 28 s in all, inside the announcer's 30 s
    /// [`request_timeout`](crate::announce::AnnounceConfig::request_timeout)).
    pub max_retries: u32,
    /// Most requests in flight at once, across all trackers (default 4096); more are refused
    /// with [`StartError::TooManyRequests`].
    pub max_pending: usize,
    /// Most tracker addresses whose connection id is remembered (default 1024); the oldest id
    /// makes room for a new one.
    pub max_cached_connections: usize,
}

impl Default for UdpClientConfig {
    fn default() -> Self {
        UdpClientConfig {
            base_timeout: Duration::from_secs(4),
            max_retries: 2,
            max_pending: 4096,
            max_cached_connections: 1024,
        }
    }
}

impl UdpClientConfig {
    fn sanitized(mut self) -> Self {
        self.base_timeout = self.base_timeout.max(MIN_BASE_TIMEOUT);
        self.max_retries = self.max_retries.min(MAX_RETRIES);
        self.max_pending = self.max_pending.max(1);
        self.max_cached_connections = self.max_cached_connections.max(1);
        self
    }

    /// The wait after the `attempt`-th transmission of an exchange: `base * 2^attempt`.
    pub fn wait(&self, attempt: u32) -> Duration {
        self.base_timeout.saturating_mul(1 << attempt.min(16))
    }
}

/// Names one request of a [`UdpTrackerClient`]; never reused by the same machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The number behind the id (in start order, from 0).
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What to announce: an [`AnnounceRequest`] without the ids the machine fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// Bytes uploaded.
    pub uploaded: u64,
    /// `None` for a regular announce.
    pub event: Option<Event>,
    /// IPv4 address to use instead of the source address.
    pub ip: Option<Ipv4Addr>,
    /// The client's key.
    pub key: u32,
    /// Peers wanted; `None` leaves it to the tracker.
    pub num_want: Option<u32>,
    /// The port the peer listens on.
    pub port: u16,
    /// BEP 41 URL data (see [`super::udp::url_data`]), empty for none.
    pub url_data: Vec<u8>,
}

impl Announce {
    fn to_request(&self, connection_id: u64, transaction_id: u32) -> AnnounceRequest {
        AnnounceRequest {
            connection_id,
            transaction_id,
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            downloaded: self.downloaded,
            left: self.left,
            uploaded: self.uploaded,
            event: self.event,
            ip: self.ip,
            key: self.key,
            num_want: self.num_want,
            port: self.port,
            url_data: self.url_data.clone(),
        }
    }
}

/// Which packet of an exchange: the connect handshake or the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// A connect request (asking for a connection id).
    Connect,
    /// An announce request.
    Announce,
    /// A scrape request (one batch).
    Scrape,
}

impl Phase {
    /// `connect`, `announce` or `scrape`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Announce => "announce",
            Phase::Scrape => "scrape",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The tracker.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
    /// The request it belongs to.
    pub request: RequestId,
    /// What it is.
    pub phase: Phase,
    /// Its transaction id.
    pub transaction_id: u32,
    /// Retransmissions of this exchange before it (0 for the first transmission).
    pub attempt: u32,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Every transmission went unanswered.
    #[error("no reply after {retries} retransmissions")]
    Timeout {
        /// Retransmissions made (the configured maximum).
        retries: u32,
    },
    /// The tracker answered with an error reply (action 3).
    #[error("tracker error: {0}")]
    Tracker(String),
    /// A reply with our transaction id from the tracker's address could not be decoded.
    #[error("malformed reply: {0}")]
    Malformed(#[source] UdpError),
    /// A reply of the wrong kind (say, a scrape reply to a connect request).
    #[error("{} reply to a {expected} request", action_name(.got))]
    Unexpected {
        /// The packet that was answered.
        expected: Phase,
        /// The action of the reply.
        got: Action,
    },
}

/// Why a request could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// [`UdpClientConfig::max_pending`] requests are in flight already.
    #[error("too many UDP tracker requests in flight")]
    TooManyRequests,
}

/// What [`UdpTrackerClient::poll_event`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpClientEvent {
    /// An announce succeeded (final).
    Announced {
        /// The request.
        id: RequestId,
        /// The tracker.
        tracker: SocketAddr,
        /// The tracker's reply, peers of the tracker's address family.
        response: AnnounceResponse,
    },
    /// A scrape succeeded (final): the counters of every hash the tracker answered for, in the
    /// order asked. A batch answered with fewer entries leaves its last hashes out.
    Scraped {
        /// The request.
        id: RequestId,
        /// The tracker.
        tracker: SocketAddr,
        /// Hash and counters.
        stats: Vec<(InfoHash, ScrapeStats)>,
    },
    /// A request failed (final).
    Failed {
        /// The request.
        id: RequestId,
        /// The tracker.
        tracker: SocketAddr,
        /// Why.
        error: RequestError,
    },
    /// Informational: a wait for a reply expired. A retransmission follows, or, after the last
    /// one, [`UdpClientEvent::Failed`] with [`RequestError::Timeout`].
    TimedOut {
        /// The request.
        id: RequestId,
        /// The tracker.
        tracker: SocketAddr,
        /// The packet that went unanswered.
        phase: Phase,
        /// Retransmissions counted so far, this one included.
        attempt: u32,
    },
    /// Informational: a scrape batch was answered with a different number of entries than it
    /// asked for.
    ScrapeMismatch {
        /// The request.
        id: RequestId,
        /// The tracker.
        tracker: SocketAddr,
        /// Hashes in the batch.
        asked: usize,
        /// Entries in the reply.
        answered: usize,
    },
}

impl UdpClientEvent {
    /// The request the event is about.
    pub fn id(&self) -> RequestId {
        match self {
            UdpClientEvent::Announced { id, .. }
            | UdpClientEvent::Scraped { id, .. }
            | UdpClientEvent::Failed { id, .. }
            | UdpClientEvent::TimedOut { id, .. }
            | UdpClientEvent::ScrapeMismatch { id, .. } => *id,
        }
    }

    /// Whether the event ends its request.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            UdpClientEvent::Announced { .. }
                | UdpClientEvent::Scraped { .. }
                | UdpClientEvent::Failed { .. }
        )
    }
}

/// What [`UdpTrackerClient::handle_datagram`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// It answered a request in flight (which may have completed or failed).
    Accepted,
    /// Dropped: too short to hold a transaction id.
    TooShort,
    /// Dropped: no request in flight has its transaction id, or the request's tracker is not
    /// its source.
    Stray {
        /// The transaction id it carried.
        transaction_id: u32,
    },
}

/// A request in flight.
#[derive(Debug, Clone)]
struct Pending {
    tracker: SocketAddr,
    kind: Kind,
    /// Retransmissions of the current exchange.
    attempt: u32,
    /// Whether `connection_id` was obtained during the current exchange.
    fresh_connection: bool,
    /// The connection id the request is (to be) sent with; `None` while connecting.
    connection_id: Option<u64>,
    /// Transaction id of the connect request, while one is registered.
    connect_tid: Option<u32>,
    /// Transaction id of the request, while one is registered (kept across reconnects).
    request_tid: Option<u32>,
    /// When the current wait expires.
    deadline: Time,
    /// Whether the id is in the transmit queue.
    queued: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    Announce(Box<Announce>),
    Scrape {
        hashes: Vec<InfoHash>,
        /// Start of the current batch in `hashes`.
        next: usize,
        stats: Vec<(InfoHash, ScrapeStats)>,
    },
}

impl Kind {
    fn phase(&self) -> Phase {
        match self {
            Kind::Announce(_) => Phase::Announce,
            Kind::Scrape { .. } => Phase::Scrape,
        }
    }
}

/// The owner of a transaction id.
#[derive(Debug, Clone, Copy)]
struct Transaction {
    request: RequestId,
    connect: bool,
}

/// The UDP tracker client state machine. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct UdpTrackerClient {
    config: UdpClientConfig,
    rng: Rng,
    next_id: u64,
    requests: BTreeMap<RequestId, Pending>,
    transactions: HashMap<u32, Transaction>,
    /// Connection ids by tracker address, with their arrival.
    connections: HashMap<SocketAddr, (u64, Time)>,
    transmits: VecDeque<RequestId>,
    events: VecDeque<UdpClientEvent>,
}

impl UdpTrackerClient {
    /// An idle machine; `rng_seed` draws the transaction ids (seed it from real entropy: the
    /// ids are what keeps off-path attackers from forging replies).
    pub fn new(config: UdpClientConfig, rng_seed: u64) -> Self {
        UdpTrackerClient {
            config: config.sanitized(),
            rng: Rng::new(rng_seed),
            next_id: 0,
            requests: BTreeMap::new(),
            transactions: HashMap::new(),
            connections: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration in use (after sanitizing).
    pub fn config(&self) -> &UdpClientConfig {
        &self.config
    }

    // ---- inputs ----

    /// Starts an announce to the tracker at `tracker` (an IPv4-mapped IPv6 address counts as
    /// IPv4). It ends with [`UdpClientEvent::Announced`] or [`UdpClientEvent::Failed`].
    pub fn announce(
        &mut self,
        now: Time,
        tracker: SocketAddr,
        announce: Announce,
    ) -> Result<RequestId, StartError> {
        self.start(now, tracker, Kind::Announce(Box::new(announce)))
    }

    /// Starts a scrape of `info_hashes` at `tracker`, [`MAX_SCRAPE_HASHES`] per datagram. It
    /// ends with [`UdpClientEvent::Scraped`] or [`UdpClientEvent::Failed`]; an empty list is
    /// answered at once (with an empty [`UdpClientEvent::Scraped`]) without using a slot.
    pub fn scrape(
        &mut self,
        now: Time,
        tracker: SocketAddr,
        info_hashes: Vec<InfoHash>,
    ) -> Result<RequestId, StartError> {
        if info_hashes.is_empty() {
            let id = self.new_id();
            self.events.push_back(UdpClientEvent::Scraped {
                id,
                tracker: canonical(tracker),
                stats: Vec::new(),
            });
            return Ok(id);
        }
        self.start(
            now,
            tracker,
            Kind::Scrape {
                hashes: info_hashes,
                next: 0,
                stats: Vec::new(),
            },
        )
    }

    /// Forgets a request: nothing more is sent for it, replies to it are dropped and no event
    /// reports it any more (informational ones already queued stay). Returns whether it was in
    /// flight.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        self.remove(id).is_some()
    }

    /// A datagram from `from`. Replies are matched by transaction id and source address (IP
    /// and port; an IPv6 scope id or flow label may differ); anything else is dropped.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &[u8],
    ) -> DatagramOutcome {
        let Some(transaction_id) = datagram
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
        else {
            return DatagramOutcome::TooShort;
        };
        let stray = DatagramOutcome::Stray { transaction_id };
        let Some(tx) = self.transactions.get(&transaction_id).copied() else {
            return stray;
        };
        let Some(req) = self.requests.get_mut(&tx.request) else {
            // Unreachable by construction; heal rather than trust it.
            self.transactions.remove(&transaction_id);
            return stray;
        };
        let from = canonical(from);
        if req.tracker.ip() != from.ip() || req.tracker.port() != from.port() {
            return stray;
        }
        self.transactions.remove(&transaction_id);
        if tx.connect {
            req.connect_tid = None;
        } else {
            req.request_tid = None;
        }
        let reply = Response::decode(datagram, AddressFamily::of(&req.tracker));
        if tx.connect {
            self.on_connect_reply(now, tx.request, reply);
        } else {
            self.on_reply(now, tx.request, reply);
        }
        DatagramOutcome::Accepted
    }

    /// Runs what is due at `now`: expired waits retransmit or fail.
    pub fn handle_timeout(&mut self, now: Time) {
        let due: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.expire(now, id);
        }
    }

    // ---- outputs and queries ----

    /// The next datagram to send, in the order they became due.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(id) = self.transmits.pop_front() {
            let Some(req) = self.requests.get_mut(&id) else {
                continue;
            };
            if !std::mem::take(&mut req.queued) {
                continue;
            }
            let (phase, transaction_id, payload) = match req.connection_id {
                None => {
                    let Some(tid) = req.connect_tid else { continue };
                    let packet = ConnectRequest {
                        transaction_id: tid,
                    }
                    .encode();
                    (Phase::Connect, tid, packet)
                }
                Some(connection_id) => {
                    let Some(tid) = req.request_tid else { continue };
                    let packet = match &req.kind {
                        Kind::Announce(a) => a.to_request(connection_id, tid).encode(),
                        Kind::Scrape { hashes, next, .. } => ScrapeRequest {
                            connection_id,
                            transaction_id: tid,
                            info_hashes: batch(hashes, *next).to_vec(),
                        }
                        .encode(),
                    };
                    (req.kind.phase(), tid, packet)
                }
            };
            return Some(Transmit {
                destination: req.tracker,
                payload,
                request: id,
                phase,
                transaction_id,
                attempt: req.attempt,
            });
        }
        None
    }

    /// The next event, oldest first. Drivers should drain these after every input.
    pub fn poll_event(&mut self) -> Option<UdpClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (possibly already past), or
    /// `None` with no request in flight.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.requests.values().map(|r| r.deadline).min()
    }

    /// Requests in flight.
    pub fn pending(&self) -> usize {
        self.requests.len()
    }

    /// The connection id cached for `tracker`, if it is still fresh at `now`.
    pub fn connection_id(&self, now: Time, tracker: SocketAddr) -> Option<u64> {
        let &(id, since) = self.connections.get(&canonical(tracker))?;
        (now.saturating_since(since) < CONNECTION_ID_LIFETIME).then_some(id)
    }

    /// Trackers with a connection id in the cache (fresh or not).
    pub fn cached_connections(&self) -> usize {
        self.connections.len()
    }

    // ---- internals ----

    fn new_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn start(
        &mut self,
        now: Time,
        tracker: SocketAddr,
        kind: Kind,
    ) -> Result<RequestId, StartError> {
        if self.requests.len() >= self.config.max_pending {
            return Err(StartError::TooManyRequests);
        }
        let id = self.new_id();
        self.requests.insert(
            id,
            Pending {
                tracker: canonical(tracker),
                kind,
                attempt: 0,
                fresh_connection: false,
                connection_id: None,
                connect_tid: None,
                request_tid: None,
                deadline: now,
                queued: false,
            },
        );
        self.send(now, id, None);
        Ok(id)
    }

    /// (Re)transmits the current packet of `id`: the request when a connection id is at hand
    /// (`fresh`, just obtained, or a cached one), else a connect. Starts the wait.
    fn send(&mut self, now: Time, id: RequestId, fresh: Option<u64>) {
        let Some(tracker) = self.requests.get(&id).map(|r| r.tracker) else {
            return;
        };
        let connection_id = fresh.or_else(|| self.cached(now, tracker));
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        req.deadline = now + self.config.wait(req.attempt);
        req.connection_id = connection_id;
        if connection_id.is_some() {
            if let Some(tid) = req.connect_tid.take() {
                self.transactions.remove(&tid);
            }
            if req.request_tid.is_none() {
                req.request_tid = Some(new_transaction(
                    &mut self.rng,
                    &mut self.transactions,
                    Transaction {
                        request: id,
                        connect: false,
                    },
                ));
            }
        } else if req.connect_tid.is_none() {
            req.connect_tid = Some(new_transaction(
                &mut self.rng,
                &mut self.transactions,
                Transaction {
                    request: id,
                    connect: true,
                },
            ));
        }
        if !req.queued {
            req.queued = true;
            self.transmits.push_back(id);
        }
    }

    fn expire(&mut self, now: Time, id: RequestId) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        req.attempt = req.attempt.saturating_add(1);
        let (tracker, attempt) = (req.tracker, req.attempt);
        let phase = match req.connection_id {
            Some(_) => req.kind.phase(),
            None => Phase::Connect,
        };
        let stale = req.connection_id.filter(|_| !req.fresh_connection);
        self.events.push_back(UdpClientEvent::TimedOut {
            id,
            tracker,
            phase,
            attempt,
        });
        if let Some(stale) = stale {
            // The tracker may have forgotten the id (restart); opentracker drops such requests
            // silently. Connect again on the next attempt.
            self.forget(tracker, Some(stale));
        }
        if attempt > self.config.max_retries {
            let retries = self.config.max_retries;
            self.fail(id, RequestError::Timeout { retries });
        } else {
            self.send(now, id, None);
        }
    }

    fn on_connect_reply(&mut self, now: Time, id: RequestId, reply: Result<Response, UdpError>) {
        match reply {
            Ok(Response::Connect(c)) => {
                let Some(req) = self.requests.get_mut(&id) else {
                    return;
                };
                req.fresh_connection = true;
                let tracker = req.tracker;
                self.remember(now, tracker, c.connection_id);
                // The request goes out at once, with the wait of the current attempt.
                self.send(now, id, Some(c.connection_id));
            }
            Ok(Response::Error(e)) => self.fail(id, RequestError::Tracker(e.message)),
            Ok(other) => self.fail(
                id,
                RequestError::Unexpected {
                    expected: Phase::Connect,
                    got: action_of(&other),
                },
            ),
            Err(e) => self.fail(id, RequestError::Malformed(e)),
        }
    }

    fn on_reply(&mut self, now: Time, id: RequestId, reply: Result<Response, UdpError>) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        let tracker = req.tracker;
        match (reply, &mut req.kind) {
            (Err(e), _) => self.fail(id, RequestError::Malformed(e)),
            (Ok(Response::Error(e)), _) => {
                // Possibly a stale connection id: do not reuse it.
                self.forget(tracker, None);
                self.fail(id, RequestError::Tracker(e.message));
            }
            (Ok(Response::Announce(response)), Kind::Announce(_)) => {
                self.remove(id);
                self.events.push_back(UdpClientEvent::Announced {
                    id,
                    tracker,
                    response,
                });
            }
            (
                Ok(Response::Scrape(s)),
                Kind::Scrape {
                    hashes,
                    next,
                    stats,
                },
            ) => {
                let asked = batch(hashes, *next);
                if asked.len() != s.stats.len() {
                    self.events.push_back(UdpClientEvent::ScrapeMismatch {
                        id,
                        tracker,
                        asked: asked.len(),
                        answered: s.stats.len(),
                    });
                }
                stats.extend(asked.iter().copied().zip(s.stats));
                *next = next.saturating_add(asked.len());
                if *next < hashes.len() {
                    // The next batch is a new exchange.
                    req.attempt = 0;
                    req.fresh_connection = false;
                    if let Some(tid) = req.connect_tid.take() {
                        self.transactions.remove(&tid);
                    }
                    self.send(now, id, None);
                } else {
                    let stats = std::mem::take(stats);
                    self.remove(id);
                    self.events
                        .push_back(UdpClientEvent::Scraped { id, tracker, stats });
                }
            }
            (Ok(other), kind) => {
                let expected = kind.phase();
                self.fail(
                    id,
                    RequestError::Unexpected {
                        expected,
                        got: action_of(&other),
                    },
                );
            }
        }
    }

    fn fail(&mut self, id: RequestId, error: RequestError) {
        if let Some(req) = self.remove(id) {
            self.events.push_back(UdpClientEvent::Failed {
                id,
                tracker: req.tracker,
                error,
            });
        }
    }

    /// Drops a request with its transaction ids and queued transmission.
    fn remove(&mut self, id: RequestId) -> Option<Pending> {
        let req = self.requests.remove(&id)?;
        for tid in [req.connect_tid, req.request_tid].into_iter().flatten() {
            self.transactions.remove(&tid);
        }
        if req.queued {
            self.transmits.retain(|&queued| queued != id);
        }
        Some(req)
    }

    /// The fresh cached connection id of `tracker`; an expired one is dropped.
    fn cached(&mut self, now: Time, tracker: SocketAddr) -> Option<u64> {
        let &(id, since) = self.connections.get(&tracker)?;
        if now.saturating_since(since) < CONNECTION_ID_LIFETIME {
            Some(id)
        } else {
            self.connections.remove(&tracker);
            None
        }
    }

    fn remember(&mut self, now: Time, tracker: SocketAddr, id: u64) {
        if self.connections.len() >= self.config.max_cached_connections
            && !self.connections.contains_key(&tracker)
        {
            self.connections
                .retain(|_, (_, since)| now.saturating_since(*since) < CONNECTION_ID_LIFETIME);
            while self.connections.len() >= self.config.max_cached_connections {
                let oldest = self
                    .connections
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(addr, _)| *addr);
                match oldest {
                    Some(addr) => self.connections.remove(&addr),
                    None => break,
                };
            }
        }
        self.connections.insert(tracker, (id, now));
    }

    /// Drops the cached connection id of `tracker`: any, or only `id`.
    fn forget(&mut self, tracker: SocketAddr, id: Option<u64>) {
        if let Some(&(cached, _)) = self.connections.get(&tracker) {
            if id.is_none_or(|id| id == cached) {
                self.connections.remove(&tracker);
            }
        }
    }
}

/// A transaction id no request in flight uses, registered for `owner`.
fn new_transaction(
    rng: &mut Rng,
    transactions: &mut HashMap<u32, Transaction>,
    owner: Transaction,
) -> u32 {
    // At most two ids per request and a bounded number of requests: a free random id is found
    // at the first try but for astronomically rare collisions. Probing from the last draw
    // always ends, as far fewer than 2^32 ids are taken.
    let mut id = (rng.next_u64() >> 32) as u32;
    for _ in 0..8 {
        if !transactions.contains_key(&id) {
            break;
        }
        id = (rng.next_u64() >> 32) as u32;
    }
    while transactions.contains_key(&id) {
        id = id.wrapping_add(1);
    }
    transactions.insert(id, owner);
    id
}

/// The hashes of the batch starting at `next`.
fn batch(hashes: &[InfoHash], next: usize) -> &[InfoHash] {
    let end = next.saturating_add(MAX_SCRAPE_HASHES).min(hashes.len());
    hashes.get(next..end).unwrap_or(&[])
}

/// `addr` with an IPv4-mapped IPv6 address turned into IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn action_of(response: &Response) -> Action {
    match response {
        Response::Connect(_) => Action::Connect,
        Response::Announce(_) => Action::Announce,
        Response::Scrape(_) => Action::Scrape,
        Response::Error(_) => Action::Error,
    }
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Connect => "connect",
        Action::Announce => "announce",
        Action::Scrape => "scrape",
        Action::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id20;
    use crate::tracker::udp::{
        ConnectResponse, ErrorResponse, Request, ScrapeResponse, ANNOUNCE_REQUEST_LEN,
    };
    use proptest::prelude::*;

    fn tracker() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 6969))
    }

    fn ms(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn secs(s: u64) -> Time {
        Time::from_millis(s * 1000)
    }

    fn machine(base: Duration, max_retries: u32) -> UdpTrackerClient {
        UdpTrackerClient::new(
            UdpClientConfig {
                base_timeout: base,
                max_retries,
                ..UdpClientConfig::default()
            },
            42,
        )
    }

    /// BEP 15's own schedule (15 s doubling, 3 retries), which these tests were written for.
    fn default_machine() -> UdpTrackerClient {
        UdpTrackerClient::new(
            UdpClientConfig {
                base_timeout: Duration::from_secs(15),
                max_retries: 3,
                ..UdpClientConfig::default()
            },
            7,
        )
    }

    fn params(n: u8) -> Announce {
        Announce {
            info_hash: Id20([n; 20]),
            peer_id: Id20([0xaa; 20]),
            downloaded: 2,
            left: 12_345,
            uploaded: 1,
            event: Some(Event::Started),
            ip: None,
            key: 0xdead_beef,
            num_want: Some(25),
            port: 6881,
            url_data: b"/announce?passkey=s3cret".to_vec(),
        }
    }

    /// The next datagram, decoded as the tracker would.
    fn sent(m: &mut UdpTrackerClient) -> (Transmit, Request) {
        let t = m.poll_transmit().expect("a datagram to send");
        let r = Request::decode(&t.payload).expect("a valid request");
        assert_eq!(r.transaction_id(), t.transaction_id);
        (t, r)
    }

    fn events(m: &mut UdpTrackerClient) -> Vec<UdpClientEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    fn connect_reply(tid: u32, connection_id: u64) -> Vec<u8> {
        Response::Connect(ConnectResponse {
            transaction_id: tid,
            connection_id,
        })
        .encode(AddressFamily::V4)
    }

    fn announce_reply(tid: u32, peers: Vec<SocketAddr>, family: AddressFamily) -> Vec<u8> {
        Response::Announce(AnnounceResponse {
            transaction_id: tid,
            interval: 1234,
            leechers: 3,
            seeders: 4,
            peers,
        })
        .encode(family)
    }

    fn error_reply(tid: u32, message: &str) -> Vec<u8> {
        Response::Error(ErrorResponse {
            transaction_id: tid,
            message: message.into(),
        })
        .encode(AddressFamily::V4)
    }

    /// Runs the connect handshake of the request whose connect was just queued; returns the
    /// request datagram that follows.
    fn connect(m: &mut UdpTrackerClient, now: Time, connection_id: u64) -> (Transmit, Request) {
        let (t, r) = sent(m);
        assert_eq!(t.phase, Phase::Connect);
        assert!(matches!(r, Request::Connect(_)));
        let reply = connect_reply(t.transaction_id, connection_id);
        assert_eq!(
            m.handle_datagram(now, t.destination, &reply),
            DatagramOutcome::Accepted
        );
        sent(m)
    }

    #[test]
    fn connect_then_announce() {
        let mut m = default_machine();
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        assert_eq!(m.pending(), 1);
        let (t, r) = sent(&mut m);
        assert_eq!(
            (t.destination, t.phase, t.attempt),
            (tracker(), Phase::Connect, 0)
        );
        assert_eq!(t.request, id);
        assert_eq!(t.payload.len(), 16);
        assert!(matches!(r, Request::Connect(_)));
        assert!(m.poll_transmit().is_none(), "one datagram at a time");
        assert_eq!(m.poll_timeout(), Some(secs(15)));

        let connect_tid = t.transaction_id;
        let reply = connect_reply(connect_tid, 0x1122_3344_5566_7788);
        assert_eq!(
            m.handle_datagram(ms(300), tracker(), &reply),
            DatagramOutcome::Accepted
        );
        let (t, r) = sent(&mut m);
        assert_eq!((t.phase, t.attempt), (Phase::Announce, 0));
        assert_ne!(t.transaction_id, connect_tid);
        assert_eq!(t.payload.len(), ANNOUNCE_REQUEST_LEN + 2 + 24);
        let Request::Announce(a) = r else {
            panic!("not an announce: {r:?}")
        };
        assert_eq!(a.connection_id, 0x1122_3344_5566_7788);
        let p = params(1);
        assert_eq!(
            (a.info_hash, a.peer_id, a.downloaded, a.left, a.uploaded),
            (p.info_hash, p.peer_id, 2, 12_345, 1)
        );
        assert_eq!(
            (a.event, a.key, a.num_want, a.port),
            (Some(Event::Started), 0xdead_beef, Some(25), 6881)
        );
        assert_eq!(a.url_data, p.url_data);
        // The wait restarts with the request.
        assert_eq!(m.poll_timeout(), Some(ms(15_300)));
        // A second copy of the connect reply is stray now.
        assert_eq!(
            m.handle_datagram(ms(301), tracker(), &reply),
            DatagramOutcome::Stray {
                transaction_id: connect_tid
            }
        );

        let peer = SocketAddr::from(([10, 0, 0, 1], 6881));
        let reply = announce_reply(t.transaction_id, vec![peer], AddressFamily::V4);
        assert_eq!(
            m.handle_datagram(ms(400), tracker(), &reply),
            DatagramOutcome::Accepted
        );
        let evs = events(&mut m);
        assert_eq!(evs.len(), 1);
        let UdpClientEvent::Announced {
            id: got,
            tracker: from,
            response,
        } = &evs[0]
        else {
            panic!("{evs:?}")
        };
        assert_eq!((*got, *from), (id, tracker()));
        assert_eq!(
            (response.interval, response.leechers, response.seeders),
            (1234, 3, 4)
        );
        assert_eq!(response.peers, vec![peer]);
        assert!(evs[0].is_final());
        assert_eq!(m.pending(), 0);
        assert_eq!(m.poll_timeout(), None);
        assert!(m.poll_transmit().is_none());
        assert!(m.transactions.is_empty());
    }

    #[test]
    fn connection_id_is_reused_within_a_minute_and_refreshed_after() {
        let mut m = default_machine();
        m.announce(ms(0), tracker(), params(1)).expect("start");
        let (t, _) = connect(&mut m, ms(1000), 77);
        m.handle_datagram(
            ms(1100),
            tracker(),
            &announce_reply(t.transaction_id, vec![], AddressFamily::V4),
        );
        assert_eq!(m.connection_id(ms(1100), tracker()), Some(77));

        // Within 60 s of the id's arrival (t = 1 s): straight to the announce, and to the scrape.
        m.announce(ms(60_999), tracker(), params(2)).expect("start");
        let (t, r) = sent(&mut m);
        assert_eq!(t.phase, Phase::Announce);
        assert_eq!(r.connection_id(), Some(77));
        m.scrape(ms(60_999), tracker(), vec![Id20([5; 20])])
            .expect("start");
        let (t2, r2) = sent(&mut m);
        assert_eq!(t2.phase, Phase::Scrape);
        assert_eq!(r2.connection_id(), Some(77));
        assert_ne!(t.transaction_id, t2.transaction_id);

        // From 60 s on, a new connect.
        assert_eq!(m.connection_id(ms(61_000), tracker()), None);
        m.announce(ms(61_000), tracker(), params(3)).expect("start");
        let (t, r) = connect(&mut m, ms(61_000), 78);
        assert_eq!(t.phase, Phase::Announce);
        assert_eq!(r.connection_id(), Some(78));
        assert_eq!(m.connection_id(ms(61_000), tracker()), Some(78));
        // Another tracker has its own id.
        let other = SocketAddr::from(([127, 0, 0, 1], 6970));
        m.announce(ms(61_000), other, params(4)).expect("start");
        assert_eq!(sent(&mut m).0.phase, Phase::Connect);
    }

    #[test]
    fn the_default_schedule_gives_up_inside_an_announce_deadline() {
        let c = UdpClientConfig::default();
        let total: Duration = (0..=c.max_retries).map(|n| c.wait(n)).sum();
        assert_eq!(total, Duration::from_secs(4 + 8 + 16));
        assert!(total < crate::announce::AnnounceConfig::default().request_timeout);
    }

    #[test]
    fn retransmits_after_base_times_two_to_the_n_then_gives_up() {
        // BEP 15's schedule: 15 s, then 30, 60 and 120 s.
        let mut m = default_machine();
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        let (first, _) = sent(&mut m);
        let mut deadline = secs(15);
        for n in 1..=3u32 {
            assert_eq!(m.poll_timeout(), Some(deadline));
            m.handle_timeout(Time::from_micros(deadline.as_micros() - 1000));
            assert!(
                m.poll_transmit().is_none(),
                "nothing is due before the deadline"
            );
            m.handle_timeout(deadline);
            assert_eq!(
                events(&mut m),
                vec![UdpClientEvent::TimedOut {
                    id,
                    tracker: tracker(),
                    phase: Phase::Connect,
                    attempt: n
                }]
            );
            let (t, _) = sent(&mut m);
            // The same transaction: a late reply to an earlier copy is still taken.
            assert_eq!((t.transaction_id, t.attempt), (first.transaction_id, n));
            deadline += Duration::from_secs(15 << n);
        }
        assert_eq!(deadline, secs(15 + 30 + 60 + 120));
        m.handle_timeout(deadline);
        assert!(m.poll_transmit().is_none());
        assert_eq!(
            events(&mut m),
            vec![
                UdpClientEvent::TimedOut {
                    id,
                    tracker: tracker(),
                    phase: Phase::Connect,
                    attempt: 4
                },
                UdpClientEvent::Failed {
                    id,
                    tracker: tracker(),
                    error: RequestError::Timeout { retries: 3 }
                }
            ]
        );
        assert_eq!(m.pending(), 0);
        assert_eq!(m.poll_timeout(), None);
        assert!(m.transactions.is_empty());
    }

    #[test]
    fn configurable_base_and_retries() {
        // 100 ms base, 2 retries: 100 + 200 + 400 ms, three datagrams.
        let mut m = machine(Duration::from_millis(100), 2);
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        let mut sends = vec![ms(0)];
        sent(&mut m);
        let mut now = ms(0);
        while let Some(t) = m.poll_timeout() {
            now = t;
            m.handle_timeout(now);
            while m.poll_transmit().is_some() {
                sends.push(now);
            }
        }
        assert_eq!(sends, vec![ms(0), ms(100), ms(300)]);
        assert_eq!(now, ms(700));
        assert!(events(&mut m).contains(&UdpClientEvent::Failed {
            id,
            tracker: tracker(),
            error: RequestError::Timeout { retries: 2 }
        }));

        // No retries: one datagram, one wait.
        let mut m = machine(Duration::from_secs(2), 0);
        m.announce(ms(0), tracker(), params(1)).expect("start");
        sent(&mut m);
        m.handle_timeout(secs(2));
        assert!(m.poll_transmit().is_none());
        assert!(matches!(
            events(&mut m).last(),
            Some(UdpClientEvent::Failed {
                error: RequestError::Timeout { retries: 0 },
                ..
            })
        ));

        // Sanitizing.
        let m = machine(Duration::ZERO, 100);
        assert_eq!(m.config().base_timeout, MIN_BASE_TIMEOUT);
        assert_eq!(m.config().max_retries, MAX_RETRIES);
    }

    #[test]
    fn connect_and_request_share_the_retransmission_count() {
        let mut m = machine(Duration::from_secs(1), 3);
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        sent(&mut m);
        m.handle_timeout(secs(1)); // connect lost: attempt 1, waits 2 s
        let (t, _) = connect(&mut m, ms(1500), 9);
        assert_eq!((t.phase, t.attempt), (Phase::Announce, 1));
        assert_eq!(m.poll_timeout(), Some(ms(3500)));
        m.handle_timeout(ms(3500)); // announce lost: attempt 2, same transaction, waits 4 s
        let (t2, r2) = sent(&mut m);
        assert_eq!(
            (t2.phase, t2.attempt, t2.transaction_id),
            (Phase::Announce, 2, t.transaction_id)
        );
        // The id was obtained during this exchange, so it is kept.
        assert_eq!(r2.connection_id(), Some(9));
        assert_eq!(m.poll_timeout(), Some(ms(7500)));
        assert!(events(&mut m).iter().all(|e| e.id() == id && !e.is_final()));
    }

    #[test]
    fn unanswered_request_with_a_cached_id_reconnects_with_the_same_transaction() {
        let mut m = machine(Duration::from_secs(1), 3);
        m.announce(ms(0), tracker(), params(1)).expect("start");
        let (t, _) = connect(&mut m, ms(0), 5);
        m.handle_datagram(
            ms(0),
            tracker(),
            &announce_reply(t.transaction_id, vec![], AddressFamily::V4),
        );
        events(&mut m);

        // The tracker restarted and ignores id 5.
        let id = m.announce(ms(10), tracker(), params(1)).expect("start");
        let (t, r) = sent(&mut m);
        assert_eq!((t.phase, r.connection_id()), (Phase::Announce, Some(5)));
        m.handle_timeout(ms(1010));
        assert_eq!(
            events(&mut m),
            vec![UdpClientEvent::TimedOut {
                id,
                tracker: tracker(),
                phase: Phase::Announce,
                attempt: 1
            }]
        );
        assert_eq!(
            m.connection_id(ms(1010), tracker()),
            None,
            "stale id dropped"
        );
        let (t2, r2) = connect(&mut m, ms(1020), 6);
        assert_eq!(
            (t2.transaction_id, r2.connection_id()),
            (t.transaction_id, Some(6))
        );
        // A late answer to the first copy is as good as any.
        m.handle_datagram(
            ms(1030),
            tracker(),
            &announce_reply(t.transaction_id, vec![], AddressFamily::V4),
        );
        assert!(matches!(
            events(&mut m).as_slice(),
            [UdpClientEvent::Announced { id: got, .. }] if *got == id
        ));
    }

    #[test]
    fn late_reply_to_the_request_during_a_reconnect_is_taken() {
        let mut m = machine(Duration::from_secs(1), 3);
        m.announce(ms(0), tracker(), params(1)).expect("start");
        let (t, _) = connect(&mut m, ms(0), 5);
        m.handle_datagram(
            ms(0),
            tracker(),
            &announce_reply(t.transaction_id, vec![], AddressFamily::V4),
        );
        let id = m.announce(ms(10), tracker(), params(1)).expect("start");
        let (t, _) = sent(&mut m);
        m.handle_timeout(ms(1010));
        let (c, _) = sent(&mut m);
        assert_eq!(c.phase, Phase::Connect);
        events(&mut m);
        m.handle_datagram(
            ms(1020),
            tracker(),
            &announce_reply(t.transaction_id, vec![], AddressFamily::V4),
        );
        assert!(
            matches!(events(&mut m).as_slice(), [UdpClientEvent::Announced { id: got, .. }] if *got == id)
        );
        // The connect is forgotten with the request.
        assert_eq!(
            m.handle_datagram(ms(1030), tracker(), &connect_reply(c.transaction_id, 8)),
            DatagramOutcome::Stray {
                transaction_id: c.transaction_id
            }
        );
        assert!(m.transactions.is_empty());
    }

    #[test]
    fn replies_from_elsewhere_or_with_other_ids_are_ignored() {
        let mut m = default_machine();
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        let (t, _) = sent(&mut m);
        let reply = connect_reply(t.transaction_id, 9);
        let tid = t.transaction_id;
        let stray = DatagramOutcome::Stray {
            transaction_id: tid,
        };
        // Short.
        assert_eq!(
            m.handle_datagram(ms(1), tracker(), &reply[..7]),
            DatagramOutcome::TooShort
        );
        assert_eq!(
            m.handle_datagram(ms(1), tracker(), &[]),
            DatagramOutcome::TooShort
        );
        // Right id, wrong port or address.
        assert_eq!(
            m.handle_datagram(ms(1), SocketAddr::from(([127, 0, 0, 1], 6970)), &reply),
            stray
        );
        assert_eq!(
            m.handle_datagram(ms(1), SocketAddr::from(([127, 0, 0, 2], 6969)), &reply),
            stray
        );
        assert_eq!(
            m.handle_datagram(ms(1), "[::1]:6969".parse().expect("addr"), &reply),
            stray
        );
        // Wrong id (and an error reply with a wrong id fails nothing).
        let mut other = reply.clone();
        other[7] ^= 1;
        assert_eq!(
            m.handle_datagram(ms(1), tracker(), &other),
            DatagramOutcome::Stray {
                transaction_id: tid ^ 1
            }
        );
        assert!(matches!(
            m.handle_datagram(ms(1), tracker(), &error_reply(tid ^ 2, "forged")),
            DatagramOutcome::Stray { .. }
        ));
        assert!(events(&mut m).is_empty());
        assert_eq!(m.pending(), 1);
        // An IPv4-mapped source is the same tracker.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:6969".parse().expect("addr");
        assert_eq!(
            m.handle_datagram(ms(2), mapped, &reply),
            DatagramOutcome::Accepted
        );
        let (t, _) = sent(&mut m);
        assert_eq!(t.phase, Phase::Announce);
        assert!(events(&mut m).iter().all(|e| e.id() == id && !e.is_final()));
    }

    #[test]
    fn mapped_tracker_address_is_canonical() {
        let mut m = default_machine();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:6969".parse().expect("addr");
        m.announce(ms(0), mapped, params(1)).expect("start");
        let (t, _) = sent(&mut m);
        assert_eq!(t.destination, tracker());
    }

    #[test]
    fn tracker_error_replies_fail_the_request() {
        // To the connect.
        let mut m = default_machine();
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        let (t, _) = sent(&mut m);
        m.handle_datagram(ms(1), tracker(), &error_reply(t.transaction_id, "go away"));
        let failed = UdpClientEvent::Failed {
            id,
            tracker: tracker(),
            error: RequestError::Tracker("go away".into()),
        };
        assert_eq!(events(&mut m), vec![failed]);
        assert_eq!(m.pending(), 0);

        // To the announce: the connection id is not trusted any more.
        let id = m.announce(ms(10), tracker(), params(1)).expect("start");
        let (t, _) = connect(&mut m, ms(10), 3);
        m.handle_datagram(
            ms(11),
            tracker(),
            &error_reply(t.transaction_id, "torrent not registered"),
        );
        let evs = events(&mut m);
        assert_eq!(
            evs,
            vec![UdpClientEvent::Failed {
                id,
                tracker: tracker(),
                error: RequestError::Tracker("torrent not registered".into()),
            }]
        );
        assert_eq!(m.connection_id(ms(12), tracker()), None);
        m.announce(ms(12), tracker(), params(1)).expect("start");
        assert_eq!(sent(&mut m).0.phase, Phase::Connect);
        assert_eq!(
            RequestError::Tracker("x".into()).to_string(),
            "tracker error: x"
        );
    }

    #[test]
    fn malformed_and_unexpected_replies_fail_the_request() {
        let mut m = default_machine();
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        let (t, _) = sent(&mut m);
        // A scrape reply to the connect.
        let reply = Response::Scrape(ScrapeResponse {
            transaction_id: t.transaction_id,
            stats: vec![],
        })
        .encode(AddressFamily::V4);
        m.handle_datagram(ms(1), tracker(), &reply);
        let error = RequestError::Unexpected {
            expected: Phase::Connect,
            got: Action::Scrape,
        };
        assert_eq!(error.to_string(), "scrape reply to a connect request");
        assert_eq!(
            events(&mut m),
            vec![UdpClientEvent::Failed {
                id,
                tracker: tracker(),
                error
            }]
        );

        // A connect reply cut short.
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        let (t, _) = sent(&mut m);
        let reply = connect_reply(t.transaction_id, 1);
        m.handle_datagram(ms(1), tracker(), &reply[..12]);
        assert_eq!(
            events(&mut m),
            vec![UdpClientEvent::Failed {
                id,
                tracker: tracker(),
                error: RequestError::Malformed(UdpError::TooShort {
                    needed: 16,
                    got: 12
                })
            }]
        );

        // Announce peers that are not whole entries; an unknown action.
        for (port, bad) in [
            (7000, {
                let mut r = announce_reply(0, vec![], AddressFamily::V4);
                r.extend_from_slice(&[1, 2, 3]);
                r
            }),
            (7001, vec![0, 0, 0, 9, 0, 0, 0, 0]),
        ] {
            let to = SocketAddr::from(([127, 0, 0, 1], port));
            let id = m.announce(ms(0), to, params(1)).expect("start");
            let (t, _) = connect(&mut m, ms(0), 1);
            let mut bad = bad;
            bad[4..8].copy_from_slice(&t.transaction_id.to_be_bytes());
            assert_eq!(
                m.handle_datagram(ms(1), to, &bad),
                DatagramOutcome::Accepted
            );
            assert!(matches!(
                events(&mut m).as_slice(),
                [UdpClientEvent::Failed { id: got, error: RequestError::Malformed(_), .. }] if *got == id
            ));
        }

        // An announce reply to a scrape.
        let id = m
            .scrape(ms(0), tracker(), vec![Id20([1; 20])])
            .expect("start");
        let (t, _) = connect(&mut m, ms(0), 1);
        m.handle_datagram(
            ms(1),
            tracker(),
            &announce_reply(t.transaction_id, vec![], AddressFamily::V4),
        );
        assert_eq!(
            events(&mut m),
            vec![UdpClientEvent::Failed {
                id,
                tracker: tracker(),
                error: RequestError::Unexpected {
                    expected: Phase::Scrape,
                    got: Action::Announce
                }
            }]
        );
    }

    #[test]
    fn ipv6_trackers_get_18_byte_peers() {
        let mut m = default_machine();
        let v6: SocketAddr = "[::1]:6969".parse().expect("addr");
        let id = m.announce(ms(0), v6, params(1)).expect("start");
        let (t, _) = sent(&mut m);
        assert_eq!(t.destination, v6);
        m.handle_datagram(ms(0), v6, &connect_reply(t.transaction_id, 4));
        let (t, _) = sent(&mut m);
        let peers: Vec<SocketAddr> = vec!["[2001:db8::7]:7000".parse().expect("addr")];
        m.handle_datagram(
            ms(1),
            v6,
            &announce_reply(t.transaction_id, peers.clone(), AddressFamily::V6),
        );
        assert!(matches!(
            events(&mut m).as_slice(),
            [UdpClientEvent::Announced { id: got, response, .. }] if *got == id && response.peers == peers
        ));
    }

    #[test]
    fn scrapes_are_batched() {
        let mut m = default_machine();
        let hashes: Vec<InfoHash> = (0..100u8).map(|i| Id20([i; 20])).collect();
        let id = m.scrape(ms(0), tracker(), hashes.clone()).expect("start");
        let (t, r) = connect(&mut m, ms(0), 11);
        let Request::Scrape(s) = r else {
            panic!("{r:?}")
        };
        assert_eq!(s.info_hashes, hashes[..MAX_SCRAPE_HASHES]);
        assert!(m.poll_transmit().is_none(), "one batch at a time");
        let stats = |hs: &[InfoHash]| -> Vec<ScrapeStats> {
            hs.iter()
                .map(|h| ScrapeStats {
                    seeders: u32::from(h.0[0]),
                    completed: 10 * u32::from(h.0[0]),
                    leechers: 100,
                })
                .collect()
        };
        let reply = Response::Scrape(ScrapeResponse {
            transaction_id: t.transaction_id,
            stats: stats(&s.info_hashes),
        })
        .encode(AddressFamily::V4);
        // The first batch took its time: the second starts its own count and wait.
        m.handle_timeout(secs(15));
        let (retry, _) = sent(&mut m);
        assert_eq!((retry.attempt, retry.transaction_id), (1, t.transaction_id));
        assert_eq!(
            m.handle_datagram(secs(20), tracker(), &reply),
            DatagramOutcome::Accepted
        );
        let (t2, r2) = sent(&mut m);
        assert_eq!((t2.phase, t2.attempt), (Phase::Scrape, 0));
        assert_ne!(t2.transaction_id, t.transaction_id);
        assert_eq!(m.poll_timeout(), Some(secs(35)));
        let Request::Scrape(s2) = r2 else {
            panic!("{r2:?}")
        };
        assert_eq!(s2.connection_id, 11, "the cached id");
        assert_eq!(s2.info_hashes, hashes[MAX_SCRAPE_HASHES..]);
        // The tracker leaves the last one out.
        let reply = Response::Scrape(ScrapeResponse {
            transaction_id: t2.transaction_id,
            stats: stats(&s2.info_hashes[..25]),
        })
        .encode(AddressFamily::V4);
        m.handle_datagram(secs(21), tracker(), &reply);
        let evs = events(&mut m);
        assert_eq!(evs.len(), 3, "{evs:?}");
        assert!(matches!(
            evs[0],
            UdpClientEvent::TimedOut {
                phase: Phase::Scrape,
                ..
            }
        ));
        assert_eq!(
            evs[1],
            UdpClientEvent::ScrapeMismatch {
                id,
                tracker: tracker(),
                asked: 26,
                answered: 25
            }
        );
        let UdpClientEvent::Scraped { stats: got, .. } = &evs[2] else {
            panic!("{evs:?}")
        };
        assert_eq!(got.len(), 99);
        assert!(got
            .iter()
            .zip(&hashes)
            .all(|((h, s), want)| h == want && s.seeders == u32::from(h.0[0])));
        assert_eq!(m.pending(), 0);

        // Nothing to scrape: done at once.
        let id = m.scrape(ms(0), tracker(), Vec::new()).expect("start");
        assert!(m.poll_transmit().is_none());
        assert_eq!(
            events(&mut m),
            vec![UdpClientEvent::Scraped {
                id,
                tracker: tracker(),
                stats: vec![]
            }]
        );
        assert_eq!(m.pending(), 0);
    }

    #[test]
    fn cancel_forgets_the_request() {
        let mut m = default_machine();
        let id = m.announce(ms(0), tracker(), params(1)).expect("start");
        let keep = m.announce(ms(0), tracker(), params(2)).expect("start");
        assert!(m.cancel(id));
        assert!(!m.cancel(id));
        // Its queued connect is not sent.
        let (t, _) = sent(&mut m);
        assert_eq!(t.request, keep);
        assert!(m.poll_transmit().is_none());
        assert!(m.cancel(keep));
        assert_eq!(m.poll_timeout(), None);
        m.handle_timeout(secs(1000));
        assert!(m.poll_transmit().is_none());
        assert_eq!(
            m.handle_datagram(secs(1000), tracker(), &connect_reply(t.transaction_id, 1)),
            DatagramOutcome::Stray {
                transaction_id: t.transaction_id
            }
        );
        assert!(events(&mut m).is_empty());
        assert!(m.transactions.is_empty() && m.transmits.is_empty());

        // Cancelled mid-scrape, after the first batch.
        let hashes: Vec<InfoHash> = (0..80u8).map(|i| Id20([i; 20])).collect();
        let id = m.scrape(ms(0), tracker(), hashes).expect("start");
        let (t, _) = connect(&mut m, ms(0), 3);
        let reply = Response::Scrape(ScrapeResponse {
            transaction_id: t.transaction_id,
            stats: vec![ScrapeStats::default(); MAX_SCRAPE_HASHES],
        })
        .encode(AddressFamily::V4);
        m.handle_datagram(ms(1), tracker(), &reply);
        assert!(m.cancel(id));
        assert!(m.poll_transmit().is_none());
        assert!(events(&mut m).is_empty());
        assert!(!m.cancel(RequestId(12345)));
    }

    #[test]
    fn concurrent_requests_are_matched_by_transaction_id() {
        let mut m = default_machine();
        let a = tracker();
        let b = SocketAddr::from(([127, 0, 0, 1], 7000));
        let mut ids = Vec::new();
        for i in 0..10u8 {
            let to = if i % 2 == 0 { a } else { b };
            ids.push((m.announce(ms(0), to, params(i)).expect("start"), i));
        }
        // Answer the connects in reverse order, then the announces.
        let connects: Vec<Transmit> = std::iter::from_fn(|| m.poll_transmit()).collect();
        assert_eq!(connects.len(), 10);
        for t in connects.iter().rev() {
            let reply = connect_reply(t.transaction_id, u64::from(t.transaction_id));
            assert_eq!(
                m.handle_datagram(ms(1), t.destination, &reply),
                DatagramOutcome::Accepted
            );
        }
        let announces: Vec<(Transmit, Request)> = std::iter::from_fn(|| {
            m.poll_transmit().map(|t| {
                let r = Request::decode(&t.payload).expect("request");
                (t, r)
            })
        })
        .collect();
        assert_eq!(announces.len(), 10);
        for (t, r) in &announces {
            let Request::Announce(a) = r else { panic!() };
            let peer = SocketAddr::from(([10, a.info_hash.0[0], 0, 1], 1));
            let reply = announce_reply(t.transaction_id, vec![peer], AddressFamily::V4);
            // To the wrong tracker first.
            let wrong = if t.destination == tracker() {
                b
            } else {
                tracker()
            };
            assert!(matches!(
                m.handle_datagram(ms(2), wrong, &reply),
                DatagramOutcome::Stray { .. }
            ));
            assert_eq!(
                m.handle_datagram(ms(2), t.destination, &reply),
                DatagramOutcome::Accepted
            );
        }
        let evs = events(&mut m);
        assert_eq!(evs.len(), 10);
        for (id, i) in ids {
            assert!(evs.iter().any(|e| matches!(
                e,
                UdpClientEvent::Announced { id: got, response, .. }
                    if *got == id && response.peers == [SocketAddr::from(([10, i, 0, 1], 1))]
            )));
        }
    }

    #[test]
    fn pending_requests_and_cached_connections_are_bounded() {
        let mut m = UdpTrackerClient::new(
            UdpClientConfig {
                max_pending: 2,
                max_cached_connections: 3,
                ..UdpClientConfig::default()
            },
            1,
        );
        let first = m.announce(ms(0), tracker(), params(1)).expect("start");
        m.scrape(ms(0), tracker(), vec![Id20([1; 20])])
            .expect("start");
        assert_eq!(
            m.announce(ms(0), tracker(), params(1)),
            Err(StartError::TooManyRequests)
        );
        assert_eq!(
            m.scrape(ms(0), tracker(), vec![Id20([1; 20])]),
            Err(StartError::TooManyRequests)
        );
        assert!(m.cancel(first));
        m.announce(ms(0), tracker(), params(1)).expect("room again");
        while m.poll_transmit().is_some() {}
        for id in m.requests.keys().copied().collect::<Vec<_>>() {
            m.cancel(id);
        }

        // Five trackers connect, 1 ms apart: the oldest ids make room.
        for port in 0..5u16 {
            let to = SocketAddr::from(([10, 0, 0, 1], 1000 + port));
            let now = ms(u64::from(port));
            m.announce(now, to, params(1)).expect("start");
            let (t, _) = sent(&mut m);
            m.handle_datagram(now, to, &connect_reply(t.transaction_id, u64::from(port)));
            let (t, _) = sent(&mut m);
            m.handle_datagram(
                now,
                to,
                &announce_reply(t.transaction_id, vec![], AddressFamily::V4),
            );
        }
        assert_eq!(m.cached_connections(), 3);
        for port in 0..5u16 {
            let to = SocketAddr::from(([10, 0, 0, 1], 1000 + port));
            assert_eq!(m.connection_id(ms(10), to).is_some(), port >= 2, "{port}");
        }
        // Expired ids go before fresh ones.
        let late = SocketAddr::from(([10, 0, 0, 2], 1));
        let now = ms(2) + CONNECTION_ID_LIFETIME;
        m.announce(now, late, params(1)).expect("start");
        let (t, _) = sent(&mut m);
        m.handle_datagram(now, late, &connect_reply(t.transaction_id, 99));
        assert_eq!(m.cached_connections(), 3);
        assert_eq!(m.connection_id(now, late), Some(99));
    }

    #[test]
    fn transaction_ids_are_unique_even_when_the_generator_repeats() {
        let mut transactions = HashMap::new();
        let owner = Transaction {
            request: RequestId(0),
            connect: false,
        };
        let mut ids = std::collections::HashSet::new();
        for _ in 0..50 {
            // Same seed every time: the same draws, so probing must find free ids.
            let mut rng = crate::rng::Rng::new(3);
            assert!(ids.insert(new_transaction(&mut rng, &mut transactions, owner)));
        }
    }

    /// One step of the never-panics property test.
    #[derive(Debug, Clone)]
    enum Op {
        Announce(u8),
        Scrape(u8, u8),
        Cancel(u8),
        Advance(u16),
        Poll,
        /// A datagram from tracker `n % 3` (2 is a stranger); `aim` copies the transaction id
        /// of a recent datagram into it and picks its action.
        Datagram {
            from: u8,
            aim: Option<(u8, u8)>,
            bytes: Vec<u8>,
        },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u8>().prop_map(Op::Announce),
            (any::<u8>(), 0u8..200).prop_map(|(t, n)| Op::Scrape(t, n)),
            any::<u8>().prop_map(Op::Cancel),
            any::<u16>().prop_map(Op::Advance),
            Just(Op::Poll),
            (
                any::<u8>(),
                proptest::option::of((any::<u8>(), 0u8..5)),
                proptest::collection::vec(any::<u8>(), 0..120)
            )
                .prop_map(|(from, aim, bytes)| Op::Datagram { from, aim, bytes }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn arbitrary_datagrams_never_panic(ops in proptest::collection::vec(arb_op(), 1..80)) {
            let trackers = [
                tracker(),
                "[2001:db8::1]:6969".parse::<SocketAddr>().expect("addr"),
                SocketAddr::from(([192, 0, 2, 1], 1)),
            ];
            let mut m = UdpTrackerClient::new(
                UdpClientConfig {
                    base_timeout: Duration::from_millis(500),
                    max_retries: 2,
                    max_pending: 6,
                    max_cached_connections: 1,
                },
                9,
            );
            let mut now = Time::ZERO;
            let mut started = Vec::new();
            let mut live = std::collections::HashSet::new();
            let mut recent: Vec<Transmit> = Vec::new();
            for op in ops {
                match op {
                    Op::Announce(t) => {
                        if let Ok(id) = m.announce(now, trackers[usize::from(t % 2)], params(t)) {
                            started.push(id);
                            live.insert(id);
                        }
                    }
                    Op::Scrape(t, n) => {
                        let hashes = (0..n).map(|i| Id20([i; 20])).collect();
                        if let Ok(id) = m.scrape(now, trackers[usize::from(t % 2)], hashes) {
                            started.push(id);
                            live.insert(id);
                        }
                    }
                    Op::Cancel(i) => {
                        if let Some(&id) = started.get(usize::from(i) % started.len().max(1)) {
                            prop_assert_eq!(m.cancel(id), live.remove(&id));
                        }
                    }
                    Op::Advance(d) => {
                        now += Duration::from_millis(u64::from(d));
                        m.handle_timeout(now);
                    }
                    Op::Poll => {
                        while let Some(t) = m.poll_transmit() {
                            prop_assert!(live.contains(&t.request));
                            prop_assert!(Request::decode(&t.payload).is_ok());
                            recent.push(t);
                        }
                        if recent.len() > 16 {
                            recent.drain(..recent.len() - 16);
                        }
                    }
                    Op::Datagram { from, aim, mut bytes } => {
                        let mut to = trackers[usize::from(from % 3)];
                        if let Some((pick, action)) = aim {
                            if let Some(t) = recent.get(usize::from(pick) % recent.len().max(1)) {
                                bytes.resize(bytes.len().max(8), 0);
                                bytes[..4].copy_from_slice(&u32::from(action).to_be_bytes());
                                bytes[4..8].copy_from_slice(&t.transaction_id.to_be_bytes());
                                if from % 3 != 2 {
                                    to = t.destination;
                                }
                            }
                        }
                        let _ = m.handle_datagram(now, to, &bytes);
                    }
                }
                while let Some(ev) = m.poll_event() {
                    if ev.is_final() {
                        prop_assert!(live.remove(&ev.id()), "one final event per live request: {:?}", ev);
                    }
                }
                prop_assert!(m.pending() <= 6);
                prop_assert_eq!(m.pending(), live.len());
                prop_assert!(m.transactions.len() <= 2 * m.pending());
                prop_assert!(m.transmits.len() <= m.pending());
                prop_assert!(m.cached_connections() <= 1);
                prop_assert_eq!(m.poll_timeout().is_some(), m.pending() > 0);
            }
        }
    }
}
