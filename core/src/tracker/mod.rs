//! Tracker message formats: HTTP announce and scrape, UDP (BEP 15) and WebTorrent WebSocket JSON.
//!
//! Codecs for both sides (client and tracker) and the UDP client's state machine; nothing here
//! opens a connection or reads a clock. Every decoder bounds what it allocates and reports
//! malformed input as an error.
//!
//! * [`http`]: announce URL query building and parsing (BEP 3, 7, 23) and bencoded announce
//!   responses in compact and dictionary forms.
//! * [`scrape`]: the scrape URL convention and bencoded scrape responses (BEP 48).
//! * [`udp`]: every BEP 15 packet, both directions, with BEP 41 URL data.
//! * [`udp_client`]: the client side of BEP 15 as a sans-IO state machine
//!   ([`UdpTrackerClient`]): connect handshake, connection-id cache, transaction ids,
//!   retransmission and scrape batching. Time is an input; the driver owns the sockets.
//! * [`ws`]: the JSON messages of WebTorrent WebSocket trackers, as bittorrent-tracker 11 sends and
//!   accepts them.

mod compact;
pub mod http;
pub mod scrape;
pub mod udp;
pub mod udp_client;
pub mod ws;

use std::fmt;
use std::net::SocketAddr;

use crate::id::PeerId;

pub use http::{AnnounceRequest, AnnounceResponse, HttpError, PeerEncoding};
pub use scrape::{scrape_url, ScrapeFile, ScrapeRequest, ScrapeResponse};
pub use udp_client::UdpTrackerClient;

/// Most peers accepted in one announce response (all lists together); more is an error.
pub const MAX_PEERS: usize = 1000;

/// Most info hashes in one HTTP or WebSocket scrape request or response.
pub const MAX_SCRAPE_HASHES: usize = 1000;

/// The `event` of an announce. "No event" (a regular announce) is `None` wherever one is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The first announce of a download.
    Started,
    /// The download has just finished.
    Completed,
    /// The client is leaving the swarm.
    Stopped,
    /// BEP 21 partial seed ("paused"); UDP code 4 as bittorrent-tracker numbers it.
    Paused,
}

/// An `event` value that is not one of the known names or numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown announce event")]
pub struct UnknownEvent;

impl Event {
    /// The HTTP / WebSocket spelling: `started`, `completed`, `stopped`, `paused`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
            Event::Paused => "paused",
        }
    }

    /// Parses an HTTP / WebSocket event; `""`, `"empty"` and `"update"` mean a regular announce.
    pub fn parse(s: &str) -> Result<Option<Event>, UnknownEvent> {
        match s {
            "" | "empty" | "update" => Ok(None),
            "started" => Ok(Some(Event::Started)),
            "completed" => Ok(Some(Event::Completed)),
            "stopped" => Ok(Some(Event::Stopped)),
            "paused" => Ok(Some(Event::Paused)),
            _ => Err(UnknownEvent),
        }
    }

    /// The BEP 15 number: 0 none, 1 completed, 2 started, 3 stopped (4 paused).
    pub const fn to_udp(event: Option<Event>) -> u32 {
        match event {
            None => 0,
            Some(Event::Completed) => 1,
            Some(Event::Started) => 2,
            Some(Event::Stopped) => 3,
            Some(Event::Paused) => 4,
        }
    }

    /// Inverse of [`Event::to_udp`].
    pub const fn from_udp(code: u32) -> Result<Option<Event>, UnknownEvent> {
        match code {
            0 => Ok(None),
            1 => Ok(Some(Event::Completed)),
            2 => Ok(Some(Event::Started)),
            3 => Ok(Some(Event::Stopped)),
            4 => Ok(Some(Event::Paused)),
            _ => Err(UnknownEvent),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IPv4 or IPv6: selects the compact entry size (6 or 18 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// 4-byte addresses, 6-byte compact entries.
    V4,
    /// 16-byte addresses, 18-byte compact entries.
    V6,
}

impl AddressFamily {
    /// The family of `addr`.
    pub const fn of(addr: &SocketAddr) -> AddressFamily {
        match addr {
            SocketAddr::V4(_) => AddressFamily::V4,
            SocketAddr::V6(_) => AddressFamily::V6,
        }
    }
}

/// A peer from a tracker: its address and, in the dictionary model, its peer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The peer id, when the tracker sent one (never in compact form).
    pub peer_id: Option<PeerId>,
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer {
            addr,
            peer_id: None,
        }
    }
}

/// Saturating conversion of a bencode or JSON integer to `u32` (negative becomes 0).
fn saturate_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_and_numbers() {
        for e in [
            Event::Started,
            Event::Completed,
            Event::Stopped,
            Event::Paused,
        ] {
            assert_eq!(Event::parse(e.as_str()), Ok(Some(e)));
            assert_eq!(Event::from_udp(Event::to_udp(Some(e))), Ok(Some(e)));
        }
        assert_eq!(Event::to_udp(None), 0);
        assert_eq!(Event::to_udp(Some(Event::Completed)), 1);
        assert_eq!(Event::to_udp(Some(Event::Started)), 2);
        assert_eq!(Event::to_udp(Some(Event::Stopped)), 3);
        assert_eq!(Event::parse(""), Ok(None));
        assert_eq!(Event::parse("empty"), Ok(None));
        assert_eq!(Event::parse("bogus"), Err(UnknownEvent));
        assert_eq!(Event::from_udp(5), Err(UnknownEvent));
    }

    #[test]
    fn saturation() {
        assert_eq!(saturate_u32(-5), 0);
        assert_eq!(saturate_u32(7), 7);
        assert_eq!(saturate_u32(i64::MAX), u32::MAX);
    }
}

/// Property-test strategies shared by the tracker codecs' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Event;
    use proptest::prelude::*;

    /// Any announce event, or none.
    pub(crate) fn arb_event() -> impl Strategy<Value = Option<Event>> {
        proptest::option::of(prop_oneof![
            Just(Event::Started),
            Just(Event::Completed),
            Just(Event::Stopped),
            Just(Event::Paused)
        ])
    }
}
