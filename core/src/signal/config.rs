//! [`Config`]: the tuning of a [`SignalMachine`], its defaults and how [`SignalMachine::new`]
//! sanitizes it.

use std::time::Duration;

use crate::tracker::ws::MAX_OFFERS;

/// How long a driver waits for ICE gathering before it sends the SDP with the candidates it
/// has (5 s, as simple-peer). Both drivers use this value.
pub const ICE_GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a WebRTC data channel may take to open once both descriptions are set (30 s).
/// Both drivers give up on the connection after it and report it failed.
pub const CHANNEL_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(doc)]
use super::{Output, SignalMachine};

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
    /// How long the driver may take to open the socket (TCP, TLS and the WebSocket handshake)
    /// before the attempt counts as failed (default 15 s). Drivers bound their own connect
    /// with this value rather than a constant of their own.
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
    pub(super) fn sanitized(mut self) -> Self {
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
