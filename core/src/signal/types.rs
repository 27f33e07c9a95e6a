//! The public types a [`SignalMachine`] takes and gives: the parameters of an announce, the
//! driver's instructions ([`Output`]), the socket state and the diagnostic counters.

use crate::announce::{AnnounceEvent, AnnounceJob, JobId, TrackerFailure, TrackerReply};
use crate::id::{InfoHash, PeerId};
use crate::time::Time;
use crate::tracker::ws::ScrapeReply;

use super::OfferId;
#[cfg(doc)]
use super::{Config, SignalMachine};

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
