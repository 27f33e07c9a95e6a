//! Announce planning: when to announce which event to which tracker (BEP 3, BEP 12, BEP 15).
//!
//! One [`Announcer`] per torrent. It never touches the network: it hands out abstract
//! [`AnnounceJob`]s ([`Announcer::poll_job`]) that a driver turns into HTTP, UDP or WebSocket
//! traffic, and takes the outcome back ([`Announcer::handle_reply`]). Time is an input; the only
//! randomness is a seeded [`Rng`], so a run is reproducible from its seed and its times.
//!
//! # Behaviour
//!
//! * **Tiers (BEP 12).** Each tier is shuffled once, at construction. Within a tier the first
//!   tracker is used; when it fails the next one in the tier is tried (at once, unless that
//!   tracker is itself backing off); a tracker that answers is moved to the front of its tier.
//! * **Across tiers.** With [`AnnounceConfig::announce_to_all_tiers`] (the default) one tracker of
//!   *every* tier is announced to, in parallel — WebTorrent bridge torrents put a WebSocket and
//!   an HTTP tracker in separate tiers and must be on both (libtorrent's and uTorrent's
//!   behaviour). With it off, BEP 12 is followed strictly: the next tier is tried only once
//!   every tracker of the current one failed, and each regular announce starts over at the first
//!   tracker of the first tier ("on the next announce, repeat in the same order").
//!   [`AnnounceConfig::announce_to_all_trackers`] announces to every tracker independently,
//!   like WebTorrent's bittorrent-tracker client; it overrides the tier logic.
//! * **Events (BEP 3).** `started` is the first announce a tracker sees in a session;
//!   `completed` goes to a tracker only if it took a `started` sent while we were still
//!   downloading (never when we started as a seed); `stopped` goes only to trackers that
//!   answered a `started` successfully. Events bypass `interval` and `min interval`, but not a
//!   failure back-off. `completed` goes to the tracker(s) currently in use, not to trackers a
//!   tier has failed over from.
//! * **Intervals.** Until a tracker answers, [`AnnounceConfig::default_interval`] (30 min, as
//!   bittorrent-tracker and libtorrent) applies. A reply's `interval` (or, if missing, its
//!   `min interval`, as bittorrent-tracker does) is clamped to
//!   [`interval_floor`](AnnounceConfig::interval_floor) (60 s) ..
//!   [`interval_cap`](AnnounceConfig::interval_cap) (2 h); `min interval` is clamped the
//!   same way and defaults to the floor. A regular announce to a tracker never comes sooner
//!   than its `min interval` after its last successful reply, even on
//!   [`Announcer::want_peers`] or when a tier fails over to it.
//! * **Failures.** A network error, a tracker's `failure reason` and a request without a reply
//!   within [`request_timeout`](AnnounceConfig::request_timeout) all count as a failure of that
//!   tracker and are reported distinctly ([`TrackerFailure`]). Each tracker backs off
//!   exponentially: 15 s, 30 s, 60 s … capped at 30 min, plus up to 12.5 % seeded jitter (the
//!   shape of bittorrent-tracker's WebSocket reconnect timer). `stopped` is tried once, with the
//!   shorter [`stop_timeout`](AnnounceConfig::stop_timeout), and never retried.
//!   Back-off state survives [`Announcer::pause`] / [`Announcer::resume`], so resuming does not
//!   hammer a dead tracker.
//! * **`left` unknown** (a magnet link before its metadata): reported as [`UNKNOWN_LEFT`]
//!   (16 KiB), libtorrent's convention — non-zero, so trackers count us as a leecher and still
//!   hand out seeds. (bittorrent-tracker omits `left` over HTTP and sends `u64::MAX` over UDP
//!   there; WebTorrent computes `NaN`.)
//! * **One job in flight per tracker**, matched to its reply by [`JobId`]; a reply that arrives
//!   after the job timed out is ignored.

mod scheme;
#[cfg(test)]
mod tests;

pub use scheme::{Scheme, SchemeSet};

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use crate::rng::Rng;
use crate::time::Time;

/// `left` reported while the torrent's size is unknown (magnet link without metadata).
pub const UNKNOWN_LEFT: u64 = 16 * 1024;

/// Most [`AnnouncerEvent`]s kept for [`Announcer::poll_event`]; older ones are dropped.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// A tracker of one [`Announcer`]: an index into its tracker list, stable for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackerId(u32);

impl TrackerId {
    /// The position of the tracker in the announcer's (deduplicated) list.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// One announce request handed out by [`Announcer::poll_job`]; unique within an announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl JobId {
    /// The raw sequence number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// The `event` of an announce (BEP 3; BEP 15 numbers them 0–3 in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceEvent {
    /// A regular announce.
    None,
    /// The first announce of a session.
    Started,
    /// The download finished.
    Completed,
    /// We are leaving the swarm.
    Stopped,
}

impl AnnounceEvent {
    /// The HTTP / WebSocket spelling; empty for a regular announce.
    pub const fn as_str(self) -> &'static str {
        match self {
            AnnounceEvent::None => "",
            AnnounceEvent::Started => "started",
            AnnounceEvent::Completed => "completed",
            AnnounceEvent::Stopped => "stopped",
        }
    }

    /// The `event` parameter of a tracker request; `None` for a regular announce.
    pub const fn tracker_event(self) -> Option<crate::tracker::Event> {
        match self {
            AnnounceEvent::None => None,
            AnnounceEvent::Started => Some(crate::tracker::Event::Started),
            AnnounceEvent::Completed => Some(crate::tracker::Event::Completed),
            AnnounceEvent::Stopped => Some(crate::tracker::Event::Stopped),
        }
    }
}

/// Tuning of an [`Announcer`]. Nonsensical values are raised to sane minimums by
/// [`Announcer::new`] (floors ≥ 1 s, caps ≥ floors, timeouts ≥ 1 ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Announce to one tracker of every tier, not only the first working tier (default true).
    pub announce_to_all_tiers: bool,
    /// Announce to every tracker in parallel, ignoring tiers (default false).
    pub announce_to_all_trackers: bool,
    /// Schemes the driver can reach; other trackers are skipped (default: all).
    pub schemes: SchemeSet,
    /// Peers asked for (`numwant`) on every announce but `stopped` (default 50).
    pub numwant: u32,
    /// Interval until a tracker states one (default 30 min).
    pub default_interval: Duration,
    /// Shortest interval and `min interval` accepted from a tracker (default 60 s).
    pub interval_floor: Duration,
    /// Longest interval and `min interval` accepted from a tracker (default 2 h).
    pub interval_cap: Duration,
    /// Time without a reply after which a job counts as failed (default 30 s, enough for one
    /// BEP 15 retransmission at 15 s).
    pub request_timeout: Duration,
    /// Time after which a `stopped` job is given up (default 5 s).
    pub stop_timeout: Duration,
    /// First back-off after a failure; doubles per consecutive failure (default 15 s).
    pub retry_base: Duration,
    /// Longest back-off, before jitter (default 30 min).
    pub retry_cap: Duration,
    /// `left` reported while it is unknown (default [`UNKNOWN_LEFT`]).
    pub unknown_left: u64,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            announce_to_all_tiers: true,
            announce_to_all_trackers: false,
            schemes: SchemeSet::ALL,
            numwant: 50,
            default_interval: Duration::from_secs(30 * 60),
            interval_floor: Duration::from_secs(60),
            interval_cap: Duration::from_secs(2 * 60 * 60),
            request_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            retry_base: Duration::from_secs(15),
            retry_cap: Duration::from_secs(30 * 60),
            unknown_left: UNKNOWN_LEFT,
        }
    }
}

impl AnnounceConfig {
    fn sanitized(mut self) -> Self {
        const SEC: Duration = Duration::from_secs(1);
        const MS: Duration = Duration::from_millis(1);
        self.interval_floor = self.interval_floor.max(SEC);
        self.interval_cap = self.interval_cap.max(self.interval_floor);
        self.default_interval = self
            .default_interval
            .clamp(self.interval_floor, self.interval_cap);
        self.request_timeout = self.request_timeout.max(MS);
        self.stop_timeout = self.stop_timeout.max(MS);
        self.retry_base = self.retry_base.max(SEC);
        self.retry_cap = self.retry_cap.max(self.retry_base);
        self
    }

    /// Effective `(interval, min interval)` for a reply, falling back to `previous`.
    fn intervals(&self, reply: &TrackerReply, previous: Option<Duration>) -> (Duration, Duration) {
        let (floor, cap) = (self.interval_floor, self.interval_cap);
        let min = reply
            .min_interval
            .unwrap_or(Duration::ZERO)
            .clamp(floor, cap);
        let interval = reply
            .interval
            .or(reply.min_interval)
            .or(previous)
            .unwrap_or(self.default_interval)
            .clamp(floor, cap)
            .max(min);
        (interval, min)
    }
}

/// An announce the driver should send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceJob {
    /// Pass back to [`Announcer::handle_reply`].
    pub id: JobId,
    /// The tracker announced to.
    pub tracker: TrackerId,
    /// Its announce URL, as listed in the torrent.
    pub url: String,
    /// The `event`.
    pub event: AnnounceEvent,
    /// Bytes uploaded, as last given to [`Announcer::update_stats`].
    pub uploaded: u64,
    /// Bytes downloaded, as last given to [`Announcer::update_stats`].
    pub downloaded: u64,
    /// Bytes left; [`AnnounceConfig::unknown_left`] when unknown.
    pub left: u64,
    /// Peers wanted; 0 for `stopped`.
    pub numwant: u32,
    /// The per-torrent random `key` (BEP 15; hex-encode it for HTTP).
    pub key: u32,
    /// The `tracker id` this tracker last sent, to echo as `trackerid`.
    pub tracker_id: Option<Vec<u8>>,
    /// How long the announcer waits for the reply ([`AnnounceConfig::request_timeout`], or
    /// [`AnnounceConfig::stop_timeout`] for `stopped`): the one owner of that timeout, so
    /// drivers give up on the request after it too.
    pub timeout: Duration,
}

/// What a tracker answered to an announce (peers go from the driver to the torrent directly).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerReply {
    /// `interval`, if the reply had one.
    pub interval: Option<Duration>,
    /// `min interval`, if the reply had one.
    pub min_interval: Option<Duration>,
    /// `complete`: seeders.
    pub complete: Option<u32>,
    /// `incomplete`: leechers.
    pub incomplete: Option<u32>,
    /// How many peers the reply carried.
    pub peers_count: usize,
    /// `tracker id`, to echo from now on; `None` keeps the previous one.
    pub tracker_id: Option<Vec<u8>>,
    /// `warning message`.
    pub warning: Option<String>,
}

/// Why an announce failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerFailure {
    /// The tracker answered with a `failure reason` (BEP 3) or a BEP 15 error.
    #[error("tracker refused the announce: {0}")]
    Failure(String),
    /// The tracker could not be reached or sent something unreadable.
    #[error("tracker unreachable: {0}")]
    Network(String),
    /// No reply within the request timeout.
    #[error("tracker did not answer in time")]
    Timeout,
}

/// Something the UI may want to know, from [`Announcer::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnouncerEvent {
    /// A tracker answered an announce.
    Reply {
        /// The tracker.
        tracker: TrackerId,
        /// The event of the job answered.
        event: AnnounceEvent,
        /// Effective interval until its next regular announce.
        interval: Duration,
        /// Effective min interval.
        min_interval: Duration,
        /// Seeders it reported.
        seeders: Option<u32>,
        /// Leechers it reported.
        leechers: Option<u32>,
        /// Peers the reply carried.
        peers: usize,
    },
    /// A tracker sent a `warning message`.
    Warning {
        /// The tracker.
        tracker: TrackerId,
        /// The message.
        message: String,
    },
    /// An announce failed.
    Failed {
        /// The tracker.
        tracker: TrackerId,
        /// The event of the job that failed.
        event: AnnounceEvent,
        /// Why.
        error: TrackerFailure,
        /// Consecutive failures of this tracker, this one included.
        consecutive_failures: u32,
        /// The tracker that will be tried next for this tier, if any.
        next_tracker: Option<TrackerId>,
        /// When that will happen.
        next_attempt: Option<Time>,
    },
    /// A tracker answered after others of its tier had failed and moved to the tier's front.
    Promoted {
        /// The tracker.
        tracker: TrackerId,
        /// Its tier (index in the torrent's tier list).
        tier: usize,
    },
    /// Every `stopped` announce has been answered or given up; nothing more will be sent.
    StopFinished,
}

/// Lifecycle of an [`Announcer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnouncerState {
    /// Not started yet.
    Idle,
    /// Announcing.
    Running,
    /// Stopped or paused; `stopped` announces still outstanding.
    Stopping,
    /// Stopped or paused; nothing outstanding.
    Stopped,
}

/// A read-only view of one tracker, for UIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerInfo<'a> {
    /// Its id.
    pub id: TrackerId,
    /// Its URL.
    pub url: &'a str,
    /// Its tier (index in the torrent's tier list).
    pub tier: usize,
    /// Its scheme, if recognised.
    pub scheme: Option<Scheme>,
    /// Whether the driver can reach it; unsupported trackers are never announced to.
    pub supported: bool,
    /// Whether it answered a `started` this session (and has not been sent `stopped`).
    pub started: bool,
    /// Whether a job to it is in flight.
    pub in_flight: bool,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// The last failure, cleared by a successful reply.
    pub last_error: Option<&'a TrackerFailure>,
    /// Seeders it last reported.
    pub seeders: Option<u32>,
    /// Leechers it last reported.
    pub leechers: Option<u32>,
    /// Its effective interval, once it answered.
    pub interval: Option<Duration>,
    /// When it is next announced to, if it is the one in use for its tier and idle.
    pub next_announce: Option<Time>,
}

#[derive(Debug, Clone)]
struct InFlight {
    job: JobId,
    event: AnnounceEvent,
    /// Whether we were still downloading when it was sent.
    leeching: bool,
    session: u64,
    deadline: Time,
}

#[derive(Debug, Clone)]
struct Tracker {
    url: String,
    tier: usize,
    scheme: Option<Scheme>,
    group: Option<usize>,
    // Per session.
    started: bool,
    started_leeching: bool,
    completed_sent: bool,
    stop_pending: bool,
    in_flight: Option<InFlight>,
    // Kept across sessions.
    tracker_id: Option<Vec<u8>>,
    fails: u32,
    retry_at: Time,
    last_error: Option<TrackerFailure>,
    seeders: Option<u32>,
    leechers: Option<u32>,
    interval: Option<Duration>,
    /// Time of its last successful reply.
    ok_at: Option<Time>,
    /// The effective `min interval` of that reply.
    min_interval: Duration,
}

/// Trackers scheduled together: one tracker of the group is in use at a time.
/// A tier (all-tiers mode), every tier (strict BEP 12) or a single tracker (all-trackers mode).
#[derive(Debug, Clone)]
struct Group {
    /// Non-empty tiers of supported trackers, each non-empty, front = preferred.
    tiers: Vec<Vec<TrackerId>>,
    tier: usize,
    pos: usize,
    /// When the group's next announce is planned; `None` while a job is out or when not
    /// running. The current tracker's own back-off and min interval may push it later
    /// ([`Announcer::due_at`]).
    due: Option<Time>,
    /// `due` is a failure back-off, not a regular interval.
    backoff: bool,
    /// Time of the group's last successful reply, this session (from whichever tracker).
    ok_at: Option<Time>,
    /// Min interval of that reply.
    min_interval: Duration,
    /// Our address changed: announce as soon as the tracker is free, min interval or not.
    reannounce: bool,
}

impl Group {
    fn new(tiers: Vec<Vec<TrackerId>>) -> Self {
        Group {
            tiers,
            tier: 0,
            pos: 0,
            due: None,
            backoff: false,
            reannounce: false,
            ok_at: None,
            min_interval: Duration::ZERO,
        }
    }

    fn current(&self) -> Option<TrackerId> {
        self.tiers.get(self.tier)?.get(self.pos).copied()
    }

    /// Moves to the next tracker of the tier, then of the next tier, wrapping around.
    fn advance(&mut self) {
        self.pos += 1;
        if self.pos >= self.tiers.get(self.tier).map_or(0, Vec::len) {
            self.pos = 0;
            self.tier = (self.tier + 1) % self.tiers.len().max(1);
        }
    }
}

/// Announce state machine of one torrent. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Announcer {
    config: AnnounceConfig,
    rng: Rng,
    key: u32,
    trackers: Vec<Tracker>,
    groups: Vec<Group>,
    state: AnnouncerState,
    session: u64,
    next_job: u64,
    uploaded: u64,
    downloaded: u64,
    left: Option<u64>,
    complete: bool,
    stop_at: Time,
    now: Time,
    events: VecDeque<AnnouncerEvent>,
}

impl Announcer {
    /// An idle announcer for `trackers` (BEP 12 tiers, e.g. from the metainfo's
    /// `announce-list`). Empty URLs and repeats are dropped; each tier is shuffled with the
    /// seeded RNG, which also draws the `key`.
    pub fn new(
        trackers: Vec<Vec<String>>,
        config: AnnounceConfig,
        rng_seed: u64,
        now: Time,
    ) -> Self {
        let config = config.sanitized();
        let mut rng = Rng::new(rng_seed);
        let key = (rng.next_u64() >> 32) as u32;
        let mut seen = BTreeSet::new();
        let mut list: Vec<Tracker> = Vec::new();
        let mut tiers: Vec<Vec<TrackerId>> = Vec::new();
        for (tier_index, tier) in trackers.into_iter().enumerate() {
            let mut ids = Vec::new();
            for url in tier {
                let url = url.trim().to_owned();
                let Ok(raw_id) = u32::try_from(list.len()) else {
                    break;
                };
                if url.is_empty() || !seen.insert(url.clone()) {
                    continue;
                }
                let scheme = Scheme::of(&url);
                if scheme.is_some_and(|s| config.schemes.contains(s)) {
                    ids.push(TrackerId(raw_id));
                }
                list.push(Tracker::new(url, tier_index, scheme));
            }
            rng.shuffle(&mut ids);
            if !ids.is_empty() {
                tiers.push(ids);
            }
        }
        let groups: Vec<Group> = if config.announce_to_all_trackers {
            tiers
                .into_iter()
                .flatten()
                .map(|id| Group::new(vec![vec![id]]))
                .collect()
        } else if config.announce_to_all_tiers {
            tiers.into_iter().map(|t| Group::new(vec![t])).collect()
        } else if tiers.is_empty() {
            Vec::new()
        } else {
            vec![Group::new(tiers)]
        };
        for (gi, group) in groups.iter().enumerate() {
            for id in group.tiers.iter().flatten() {
                if let Some(t) = list.get_mut(id.index()) {
                    t.group = Some(gi);
                }
            }
        }
        Announcer {
            config,
            rng,
            key,
            trackers: list,
            groups,
            state: AnnouncerState::Idle,
            session: 0,
            next_job: 0,
            uploaded: 0,
            downloaded: 0,
            left: None,
            complete: false,
            stop_at: now,
            now,
            events: VecDeque::new(),
        }
    }

    /// Starts a session: `started` to the tracker in use of each tier (per the mode).
    /// `left` of `Some(0)` means we start as a seed; `None` means unknown. While running this
    /// only updates `left`.
    pub fn start(&mut self, now: Time, left: Option<u64>) {
        let now = self.tick(now);
        self.left = left;
        if self.state == AnnouncerState::Running {
            return;
        }
        self.complete = left == Some(0);
        self.begin_session(now);
    }

    /// Ends the session: `stopped` to every tracker that answered a `started`, nothing else.
    pub fn stop(&mut self, now: Time) {
        let now = self.tick(now);
        if self.state != AnnouncerState::Running {
            return;
        }
        self.state = AnnouncerState::Stopping;
        self.stop_at = now;
        for t in &mut self.trackers {
            t.stop_pending = t.started;
        }
        for g in &mut self.groups {
            g.due = None;
        }
        self.check_stop_finished();
    }

    /// Pausing is stopping: `stopped` to the trackers, which forget us.
    pub fn pause(&mut self, now: Time) {
        self.stop(now);
    }

    /// Resumes after [`pause`](Self::pause) (or [`stop`](Self::stop)) with the current stats:
    /// a new session, `started` again. A download completed before stays complete.
    pub fn resume(&mut self, now: Time) {
        let now = self.tick(now);
        if self.state != AnnouncerState::Running {
            self.begin_session(now);
        }
    }

    /// The download finished: `left` becomes 0 and `completed` goes (now) to each tracker in use
    /// that took our `started` while we were downloading.
    pub fn completed(&mut self, now: Time) {
        let now = self.tick(now);
        if self.complete {
            return;
        }
        self.complete = true;
        self.left = Some(0);
        if self.state != AnnouncerState::Running {
            return;
        }
        for gi in 0..self.groups.len() {
            let g = &self.groups[gi];
            if g.backoff {
                continue;
            }
            let Some(t) = g.current().and_then(|id| self.trackers.get(id.index())) else {
                continue;
            };
            if t.in_flight.is_none() && self.needs_completed(t) {
                let due = self.groups[gi].due.map_or(now, |d| d.min(now));
                self.groups[gi].due = Some(due);
            }
        }
    }

    /// The torrent has too few peers: bring regular announces forward, but never sooner than
    /// `min interval` after the last successful one, and not during a failure back-off.
    pub fn want_peers(&mut self, now: Time) {
        let now = self.tick(now);
        if self.state != AnnouncerState::Running {
            return;
        }
        for gi in 0..self.groups.len() {
            let g = &self.groups[gi];
            let (Some(ok_at), Some(due)) = (g.ok_at, g.due) else {
                continue;
            };
            if g.backoff || self.current_busy(gi) {
                continue;
            }
            let earliest = (ok_at + g.min_interval).max(now);
            if earliest < due {
                self.groups[gi].due = Some(earliest);
            }
        }
    }

    /// Our address changed (a router mapped our port to another one): every tracker in use
    /// hears it now, min interval or not (it is news the tracker must have to hand us out).
    /// Trackers failing and backing off keep their back-off.
    pub fn reannounce(&mut self, now: Time) {
        let now = self.tick(now);
        if self.state != AnnouncerState::Running {
            return;
        }
        for gi in 0..self.groups.len() {
            let busy = self.current_busy(gi);
            let g = &mut self.groups[gi];
            if g.backoff || (g.ok_at.is_none() && !busy) {
                continue;
            }
            g.reannounce = true;
            if !busy {
                g.due = Some(now);
            }
        }
    }

    /// Current totals, reported in every job from now on. `left`: `None` while unknown.
    pub fn update_stats(&mut self, uploaded: u64, downloaded: u64, left: Option<u64>) {
        self.uploaded = uploaded;
        self.downloaded = downloaded;
        self.left = left;
    }

    /// The next announce to send, if one is due at `now`. Also times out unanswered jobs.
    pub fn poll_job(&mut self, now: Time) -> Option<AnnounceJob> {
        let now = self.tick(now);
        match self.state {
            AnnouncerState::Stopping => {
                let i = self
                    .trackers
                    .iter()
                    .position(|t| t.stop_pending && t.in_flight.is_none())?;
                let t = &mut self.trackers[i];
                t.stop_pending = false;
                t.started = false;
                Some(self.dispatch(i, AnnounceEvent::Stopped, now))
            }
            AnnouncerState::Running => {
                let gi = (0..self.groups.len()).find(|&gi| {
                    !self.current_busy(gi) && self.due_at(gi).is_some_and(|d| d <= now)
                })?;
                let id = self.groups[gi].current()?;
                self.groups[gi].due = None;
                self.groups[gi].reannounce = false;
                let event = self.event_for(&self.trackers[id.index()]);
                Some(self.dispatch(id.index(), event, now))
            }
            AnnouncerState::Idle | AnnouncerState::Stopped => None,
        }
    }

    /// Times out unanswered jobs; [`poll_job`](Self::poll_job) does this too.
    pub fn handle_timeout(&mut self, now: Time) {
        self.tick(now);
    }

    /// When to call [`poll_job`](Self::poll_job) next: the earliest due announce or job
    /// deadline (possibly already past, meaning "now"), or `None` if nothing is planned.
    pub fn poll_timeout(&self) -> Option<Time> {
        let deadlines = self
            .trackers
            .iter()
            .filter_map(|t| t.in_flight.as_ref().map(|f| f.deadline));
        let due: Option<Time> = match self.state {
            AnnouncerState::Running => (0..self.groups.len())
                .filter(|&gi| !self.current_busy(gi))
                .filter_map(|gi| self.due_at(gi))
                .min(),
            AnnouncerState::Stopping => self
                .trackers
                .iter()
                .any(|t| t.stop_pending && t.in_flight.is_none())
                .then_some(self.stop_at),
            AnnouncerState::Idle | AnnouncerState::Stopped => None,
        };
        deadlines.chain(due).min()
    }

    /// The outcome of job `job`. Returns false (and changes nothing) if the job is unknown,
    /// already answered, or already timed out.
    pub fn handle_reply(
        &mut self,
        now: Time,
        job: JobId,
        result: Result<TrackerReply, TrackerFailure>,
    ) -> bool {
        let now = self.tick(now);
        let Some(i) = self
            .trackers
            .iter()
            .position(|t| t.in_flight.as_ref().is_some_and(|f| f.job == job))
        else {
            return false;
        };
        let Some(flight) = self.trackers[i].in_flight.take() else {
            return false;
        };
        match result {
            Ok(reply) => self.on_success(i, flight, reply, now),
            Err(error) => self.on_failure(i, flight, error, now),
        }
        self.check_stop_finished();
        true
    }

    /// The next UI event, oldest first.
    pub fn poll_event(&mut self) -> Option<AnnouncerEvent> {
        self.events.pop_front()
    }

    /// Lifecycle state.
    pub fn state(&self) -> AnnouncerState {
        self.state
    }

    /// The per-torrent `key` sent with every announce.
    pub fn key(&self) -> u32 {
        self.key
    }

    /// Whether the download is complete (started as a seed, or [`completed`](Self::completed)).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Every tracker, supported or not, in id order.
    pub fn trackers(&self) -> impl Iterator<Item = TrackerInfo<'_>> + '_ {
        (0..self.trackers.len()).filter_map(|i| self.info(i))
    }

    /// One tracker.
    pub fn tracker(&self, id: TrackerId) -> Option<TrackerInfo<'_>> {
        self.info(id.index())
    }

    /// URLs skipped because their scheme is unknown or not in [`AnnounceConfig::schemes`].
    pub fn unsupported_trackers(&self) -> impl Iterator<Item = &str> + '_ {
        self.trackers
            .iter()
            .filter(|t| t.group.is_none())
            .map(|t| t.url.as_str())
    }

    // ---- internals ----

    /// Clamps `now` to be monotonic and times out overdue jobs (in tracker order).
    fn tick(&mut self, now: Time) -> Time {
        let now = now.max(self.now);
        self.now = now;
        for i in 0..self.trackers.len() {
            let expired = self.trackers[i]
                .in_flight
                .as_ref()
                .is_some_and(|f| f.deadline <= now);
            if expired {
                if let Some(flight) = self.trackers[i].in_flight.take() {
                    self.on_failure(i, flight, TrackerFailure::Timeout, now);
                }
            }
        }
        self.check_stop_finished();
        now
    }

    fn begin_session(&mut self, now: Time) {
        self.session += 1;
        self.state = AnnouncerState::Running;
        for t in &mut self.trackers {
            t.started = false;
            t.started_leeching = false;
            t.completed_sent = false;
            t.stop_pending = false;
        }
        for gi in 0..self.groups.len() {
            let g = &mut self.groups[gi];
            g.tier = 0;
            g.pos = 0;
            g.backoff = false;
            g.ok_at = None;
            let retry_at = g
                .current()
                .and_then(|id| self.trackers.get(id.index()))
                .map_or(Time::ZERO, |t| t.retry_at);
            g.due = Some(now.max(retry_at));
        }
    }

    fn current_busy(&self, gi: usize) -> bool {
        self.groups[gi]
            .current()
            .and_then(|id| self.trackers.get(id.index()))
            .is_none_or(|t| t.in_flight.is_some())
    }

    /// When the current tracker of group `gi` is next announced to: the group's planned
    /// [`due`](Group::due), but never during that tracker's failure back-off and, for a
    /// regular announce, never sooner than its own `min interval` after its last successful
    /// reply. (The group's plan can come from another tracker: in strict BEP 12 mode a
    /// success anywhere sends the group back to tier 0, and a failure moves it to a tracker
    /// that may have answered moments ago; `completed` and `want_peers` bring it forward.)
    fn due_at(&self, gi: usize) -> Option<Time> {
        let g = &self.groups[gi];
        let due = g.due?;
        let Some(t) = g.current().and_then(|id| self.trackers.get(id.index())) else {
            return Some(due);
        };
        let mut at = due.max(t.retry_at);
        if self.event_for(t) == AnnounceEvent::None && !g.reannounce {
            if let Some(ok_at) = t.ok_at {
                at = at.max(ok_at + t.min_interval);
            }
        }
        Some(at)
    }

    fn needs_completed(&self, t: &Tracker) -> bool {
        self.complete && t.started && t.started_leeching && !t.completed_sent
    }

    fn event_for(&self, t: &Tracker) -> AnnounceEvent {
        if !t.started {
            AnnounceEvent::Started
        } else if self.needs_completed(t) {
            AnnounceEvent::Completed
        } else {
            AnnounceEvent::None
        }
    }

    fn dispatch(&mut self, i: usize, event: AnnounceEvent, now: Time) -> AnnounceJob {
        let id = JobId(self.next_job);
        self.next_job += 1;
        let timeout = if event == AnnounceEvent::Stopped {
            self.config.stop_timeout
        } else {
            self.config.request_timeout
        };
        let t = &mut self.trackers[i];
        t.in_flight = Some(InFlight {
            job: id,
            event,
            leeching: !self.complete,
            session: self.session,
            deadline: now + timeout,
        });
        AnnounceJob {
            id,
            tracker: TrackerId(i as u32),
            url: t.url.clone(),
            event,
            uploaded: self.uploaded,
            downloaded: self.downloaded,
            left: self.left.unwrap_or(self.config.unknown_left),
            numwant: if event == AnnounceEvent::Stopped {
                0
            } else {
                self.config.numwant
            },
            key: self.key,
            tracker_id: t.tracker_id.clone(),
            timeout,
        }
    }

    fn on_success(&mut self, i: usize, flight: InFlight, reply: TrackerReply, now: Time) {
        let (interval, min_interval) = self.config.intervals(&reply, self.trackers[i].interval);
        let this_session = flight.session == self.session;
        let t = &mut self.trackers[i];
        t.fails = 0;
        t.retry_at = Time::ZERO;
        t.last_error = None;
        t.interval = Some(interval);
        t.ok_at = Some(now);
        t.min_interval = min_interval;
        if let Some(id) = reply.tracker_id.filter(|id| !id.is_empty()) {
            t.tracker_id = Some(id);
        }
        t.seeders = reply.complete.or(t.seeders);
        t.leechers = reply.incomplete.or(t.leechers);
        if this_session {
            match flight.event {
                AnnounceEvent::Started => {
                    t.started = true;
                    t.started_leeching = flight.leeching;
                }
                AnnounceEvent::Completed => t.completed_sent = true,
                AnnounceEvent::None | AnnounceEvent::Stopped => {}
            }
        }
        let tracker = TrackerId(i as u32);
        self.push_event(AnnouncerEvent::Reply {
            tracker,
            event: flight.event,
            interval,
            min_interval,
            seeders: reply.complete,
            leechers: reply.incomplete,
            peers: reply.peers_count,
        });
        if let Some(message) = reply.warning.filter(|w| !w.is_empty()) {
            self.push_event(AnnouncerEvent::Warning { tracker, message });
        }
        if !this_session || flight.event == AnnounceEvent::Stopped {
            return;
        }
        match self.state {
            AnnouncerState::Running => self.group_success(i, now, interval, min_interval),
            AnnouncerState::Stopping => {
                // A `started` answered after stop(): that tracker now knows us, tell it.
                let t = &mut self.trackers[i];
                t.stop_pending = t.started;
            }
            AnnouncerState::Idle | AnnouncerState::Stopped => {}
        }
    }

    fn group_success(&mut self, i: usize, now: Time, interval: Duration, min_interval: Duration) {
        let id = TrackerId(i as u32);
        let Some(gi) = self.trackers[i].group else {
            return;
        };
        let g = &mut self.groups[gi];
        if g.current() != Some(id) {
            return;
        }
        if g.pos > 0 {
            let tier = &mut g.tiers[g.tier];
            let promoted = tier.remove(g.pos);
            tier.insert(0, promoted);
            let tier_index = self.trackers[i].tier;
            self.push_event(AnnouncerEvent::Promoted {
                tracker: id,
                tier: tier_index,
            });
        }
        let g = &mut self.groups[gi];
        // BEP 12: the next announce starts over with the first tracker of the first tier.
        g.tier = 0;
        g.pos = 0;
        g.backoff = false;
        g.ok_at = Some(now);
        g.min_interval = min_interval;
        let Some(next) = g.current().and_then(|c| self.trackers.get(c.index())) else {
            return;
        };
        let due = if self.needs_completed(next) || self.groups[gi].reannounce {
            now
        } else {
            now + interval
        };
        self.groups[gi].due = Some(due.max(next.retry_at));
    }

    fn on_failure(&mut self, i: usize, flight: InFlight, error: TrackerFailure, now: Time) {
        let counts = flight.session == self.session && flight.event != AnnounceEvent::Stopped;
        if counts {
            let fails = self.trackers[i].fails.saturating_add(1);
            let delay = self.backoff(fails);
            let t = &mut self.trackers[i];
            t.fails = fails;
            t.retry_at = now + delay;
        }
        self.trackers[i].last_error = Some(error.clone());
        let mut next_tracker = None;
        let mut next_attempt = None;
        if counts && self.state == AnnouncerState::Running {
            if let Some(gi) = self.trackers[i].group {
                let g = &mut self.groups[gi];
                if g.current() == Some(TrackerId(i as u32)) {
                    g.advance();
                    if let Some(next) = g.current() {
                        let at = now.max(self.trackers[next.index()].retry_at);
                        let g = &mut self.groups[gi];
                        g.due = Some(at);
                        g.backoff = true;
                        next_tracker = Some(next);
                        next_attempt = Some(at);
                    }
                }
            }
        }
        self.push_event(AnnouncerEvent::Failed {
            tracker: TrackerId(i as u32),
            event: flight.event,
            error,
            consecutive_failures: self.trackers[i].fails,
            next_tracker,
            next_attempt,
        });
    }

    /// Back-off after the `fails`-th consecutive failure: base · 2^(fails−1), capped, plus up
    /// to 1/8 of that as jitter.
    fn backoff(&mut self, fails: u32) -> Duration {
        let shift = fails.saturating_sub(1).min(30);
        let delay = self
            .config
            .retry_base
            .saturating_mul(1u32 << shift)
            .min(self.config.retry_cap);
        let spread = u64::try_from(delay.as_micros() / 8).unwrap_or(u64::MAX);
        let jitter = if spread == 0 {
            0
        } else {
            self.rng.below(spread.saturating_add(1))
        };
        delay + Duration::from_micros(jitter)
    }

    fn check_stop_finished(&mut self) {
        if self.state == AnnouncerState::Stopping
            && self
                .trackers
                .iter()
                .all(|t| !t.stop_pending && t.in_flight.is_none())
        {
            self.state = AnnouncerState::Stopped;
            self.push_event(AnnouncerEvent::StopFinished);
        }
    }

    fn push_event(&mut self, event: AnnouncerEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn info(&self, i: usize) -> Option<TrackerInfo<'_>> {
        let t = self.trackers.get(i)?;
        let id = TrackerId(i as u32);
        let next_announce = match (self.state, t.group) {
            (AnnouncerState::Running, Some(gi)) if t.in_flight.is_none() => {
                if self.groups[gi].current() == Some(id) {
                    self.due_at(gi)
                } else {
                    None
                }
            }
            _ => None,
        };
        Some(TrackerInfo {
            id,
            url: &t.url,
            tier: t.tier,
            scheme: t.scheme,
            supported: t.group.is_some(),
            started: t.started,
            in_flight: t.in_flight.is_some(),
            consecutive_failures: t.fails,
            last_error: t.last_error.as_ref(),
            seeders: t.seeders,
            leechers: t.leechers,
            interval: t.interval,
            next_announce,
        })
    }
}

impl Tracker {
    fn new(url: String, tier: usize, scheme: Option<Scheme>) -> Self {
        Tracker {
            url,
            tier,
            scheme,
            group: None,
            started: false,
            started_leeching: false,
            completed_sent: false,
            stop_pending: false,
            in_flight: None,
            tracker_id: None,
            fails: 0,
            retry_at: Time::ZERO,
            last_error: None,
            seeders: None,
            leechers: None,
            interval: None,
            ok_at: None,
            min_interval: Duration::ZERO,
        }
    }
}
