//! The UDP tracker protocol (BEP 15), both directions, with the BEP 41 URL-data option.
//!
//! Clients encode [`Request`]s and decode [`Response`]s; a tracker does the reverse. Matching
//! transaction ids and keeping connection ids fresh is the caller's job;
//! [`Response::check_transaction_id`] helps with the former.
//!
//! An announce response carries 6-byte IPv4 peers when the tracker was reached over IPv4 and
//! 18-byte IPv6 peers when it was reached over IPv6, so decoding and encoding it takes the
//! [`AddressFamily`] of the socket. Packets longer than their fixed part are accepted (BEP 15
//! asks for this); the extra bytes of an announce request are read as BEP 41 options.

use std::net::{Ipv4Addr, SocketAddr};

use crate::id::{Id20, InfoHash, PeerId};

use super::compact::{self, CompactError};
use super::{AddressFamily, Event, MAX_PEERS};

/// The magic `connection_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Most info hashes in one scrape request or response (about what fits in a 1500-byte MTU).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Length of an announce request without BEP 41 options.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;

/// BEP 41 option types.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_URL_DATA: u8 = 2;

/// Errors from decoding UDP tracker packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// The packet ends before its fixed fields do.
    #[error("packet is {got} bytes, needs at least {needed}")]
    TooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A connect request whose `connection_id` is not [`PROTOCOL_ID`].
    #[error("connect request with protocol id {0:#x}")]
    ProtocolId(u64),
    /// An action number this side does not accept.
    #[error("unknown action {0}")]
    UnknownAction(u32),
    /// An announce event number outside 0..=4.
    #[error("unknown announce event {0}")]
    UnknownEvent(u32),
    /// Peer bytes that are not a whole number of 6- or 18-byte entries.
    #[error("peer list of {len} bytes is not a multiple of {stride}")]
    PeersLength {
        /// Length of the peer part.
        len: usize,
        /// 6 or 18.
        stride: usize,
    },
    /// Scrape bytes that are not a whole number of entries (20 bytes per request hash, 12 per
    /// response entry).
    #[error("scrape body of {0} bytes is not a whole number of entries")]
    ScrapeLength(usize),
    /// More than [`MAX_SCRAPE_HASHES`] entries in a scrape.
    #[error("scrape with {0} entries, more than {MAX_SCRAPE_HASHES}")]
    TooManyHashes(usize),
    /// More than [`MAX_PEERS`] peers in an announce response.
    #[error("announce response with {0} peers, more than {MAX_PEERS}")]
    TooManyPeers(usize),
    /// A response whose transaction id is not the one expected.
    #[error("transaction id {got:#010x}, expected {expected:#010x}")]
    TransactionId {
        /// The id of the request.
        expected: u32,
        /// The id in the response.
        got: u32,
    },
}

/// The action field of every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// 0
    Connect,
    /// 1
    Announce,
    /// 2
    Scrape,
    /// 3 (responses only)
    Error,
}

impl Action {
    /// The number on the wire.
    pub const fn code(self) -> u32 {
        match self {
            Action::Connect => 0,
            Action::Announce => 1,
            Action::Scrape => 2,
            Action::Error => 3,
        }
    }

    /// The action for a wire number.
    pub const fn from_code(code: u32) -> Option<Action> {
        match code {
            0 => Some(Action::Connect),
            1 => Some(Action::Announce),
            2 => Some(Action::Scrape),
            3 => Some(Action::Error),
            _ => None,
        }
    }
}

/// Connect request (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Chosen at random by the client.
    pub transaction_id: u32,
}

/// Connect response (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Echo of the request's.
    pub transaction_id: u32,
    /// To be sent with announce and scrape requests.
    pub connection_id: u64,
}

/// Announce request (98 bytes plus BEP 41 options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// From the connect response.
    pub connection_id: u64,
    /// Chosen at random by the client.
    pub transaction_id: u32,
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
    /// `None` for a regular announce (event 0).
    pub event: Option<Event>,
    /// IPv4 address to use instead of the source address; `None` is 0 on the wire.
    pub ip: Option<Ipv4Addr>,
    /// The client's key.
    pub key: u32,
    /// Peers wanted; `None` is -1 (tracker default). Values above `i32::MAX` are sent as
    /// `i32::MAX`; any negative value reads as `None`.
    pub num_want: Option<u32>,
    /// The port the peer listens on.
    pub port: u16,
    /// BEP 41 URL data: the path and query of the `udp://` URL (see [`url_data`]), empty for none.
    pub url_data: Vec<u8>,
}

/// Announce response: header and peers of the socket's family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Echo of the request's.
    pub transaction_id: u32,
    /// Seconds until the next regular announce.
    pub interval: u32,
    /// Leechers.
    pub leechers: u32,
    /// Seeders.
    pub seeders: u32,
    /// Peers; on encoding, only those of the requested family are written.
    pub peers: Vec<SocketAddr>,
}

/// Scrape request: up to [`MAX_SCRAPE_HASHES`] info hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    /// From the connect response.
    pub connection_id: u64,
    /// Chosen at random by the client.
    pub transaction_id: u32,
    /// The torrents, in the order the response will follow.
    pub info_hashes: Vec<InfoHash>,
}

/// One torrent's counters in a scrape response, in BEP 15 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Seeders.
    pub seeders: u32,
    /// Completed downloads.
    pub completed: u32,
    /// Leechers.
    pub leechers: u32,
}

/// Scrape response: one [`ScrapeStats`] per requested hash, same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeResponse {
    /// Echo of the request's.
    pub transaction_id: u32,
    /// The counters.
    pub stats: Vec<ScrapeStats>,
}

/// Error response: action 3 and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Echo of the request's (0 when the tracker could not read it).
    pub transaction_id: u32,
    /// Human-readable text (decoded lossily as UTF-8).
    pub message: String,
}

/// Any client-to-tracker packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Action 0.
    Connect(ConnectRequest),
    /// Action 1.
    Announce(AnnounceRequest),
    /// Action 2.
    Scrape(ScrapeRequest),
}

/// Any tracker-to-client packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Action 0.
    Connect(ConnectResponse),
    /// Action 1.
    Announce(AnnounceResponse),
    /// Action 2.
    Scrape(ScrapeResponse),
    /// Action 3.
    Error(ErrorResponse),
}

impl ConnectRequest {
    /// Appends the packet to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
        out.extend_from_slice(&Action::Connect.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
    }

    /// The packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        self.encode_into(&mut out);
        out
    }
}

impl ConnectResponse {
    /// Appends the packet to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Action::Connect.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.connection_id.to_be_bytes());
    }

    /// The packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        self.encode_into(&mut out);
        out
    }
}

impl AnnounceRequest {
    /// Appends the packet to `out`, URL data split into 255-byte BEP 41 options.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&Action::Announce.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(self.info_hash.as_bytes());
        out.extend_from_slice(self.peer_id.as_bytes());
        out.extend_from_slice(&self.downloaded.to_be_bytes());
        out.extend_from_slice(&self.left.to_be_bytes());
        out.extend_from_slice(&self.uploaded.to_be_bytes());
        out.extend_from_slice(&Event::to_udp(self.event).to_be_bytes());
        out.extend_from_slice(&self.ip.map_or([0; 4], |ip| ip.octets()));
        out.extend_from_slice(&self.key.to_be_bytes());
        let num_want = self
            .num_want
            .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
        out.extend_from_slice(&num_want.to_be_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
        for chunk in self.url_data.chunks(255) {
            out.push(OPT_URL_DATA);
            // chunks(255) never yields more than 255 bytes.
            out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(chunk);
        }
    }

    /// The packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ANNOUNCE_REQUEST_LEN + self.url_data.len() + 8);
        self.encode_into(&mut out);
        out
    }
}

impl AnnounceResponse {
    /// Appends the packet to `out`, with only the peers of `family`.
    pub fn encode_into(&self, out: &mut Vec<u8>, family: AddressFamily) {
        out.extend_from_slice(&Action::Announce.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(&self.interval.to_be_bytes());
        out.extend_from_slice(&self.leechers.to_be_bytes());
        out.extend_from_slice(&self.seeders.to_be_bytes());
        for addr in &self.peers {
            if AddressFamily::of(addr) == family {
                compact::encode_one(out, addr);
            }
        }
    }

    /// The packet for a socket of `family`.
    pub fn encode(&self, family: AddressFamily) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.peers.len() * compact::stride(family));
        self.encode_into(&mut out, family);
        out
    }
}

impl ScrapeRequest {
    /// Appends the packet to `out` (every hash, even past [`MAX_SCRAPE_HASHES`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&Action::Scrape.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        for h in &self.info_hashes {
            out.extend_from_slice(h.as_bytes());
        }
    }

    /// The packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 20 * self.info_hashes.len());
        self.encode_into(&mut out);
        out
    }
}

impl ScrapeResponse {
    /// Appends the packet to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Action::Scrape.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        for s in &self.stats {
            out.extend_from_slice(&s.seeders.to_be_bytes());
            out.extend_from_slice(&s.completed.to_be_bytes());
            out.extend_from_slice(&s.leechers.to_be_bytes());
        }
    }

    /// The packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 12 * self.stats.len());
        self.encode_into(&mut out);
        out
    }
}

impl ErrorResponse {
    /// Appends the packet to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Action::Error.code().to_be_bytes());
        out.extend_from_slice(&self.transaction_id.to_be_bytes());
        out.extend_from_slice(self.message.as_bytes());
    }

    /// The packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.message.len());
        self.encode_into(&mut out);
        out
    }
}

impl Request {
    /// Decodes a client packet (tracker side).
    pub fn decode(packet: &[u8]) -> Result<Request, UdpError> {
        let mut r = Reader::new(packet);
        r.need(16)?;
        let connection_id = r.u64()?;
        let action = r.u32()?;
        let transaction_id = r.u32()?;
        match Action::from_code(action) {
            Some(Action::Connect) => {
                if connection_id != PROTOCOL_ID {
                    return Err(UdpError::ProtocolId(connection_id));
                }
                Ok(Request::Connect(ConnectRequest { transaction_id }))
            }
            Some(Action::Announce) => {
                r.need(ANNOUNCE_REQUEST_LEN)?;
                let info_hash = Id20(r.array()?);
                let peer_id = Id20(r.array()?);
                let downloaded = r.u64()?;
                let left = r.u64()?;
                let uploaded = r.u64()?;
                let event_code = r.u32()?;
                let event =
                    Event::from_udp(event_code).map_err(|_| UdpError::UnknownEvent(event_code))?;
                let ip = Ipv4Addr::from(r.array::<4>()?);
                let key = r.u32()?;
                let num_want = i32::from_be_bytes(r.array()?);
                let port = u16::from_be_bytes(r.array()?);
                Ok(Request::Announce(AnnounceRequest {
                    connection_id,
                    transaction_id,
                    info_hash,
                    peer_id,
                    downloaded,
                    left,
                    uploaded,
                    event,
                    ip: (!ip.is_unspecified()).then_some(ip),
                    key,
                    num_want: u32::try_from(num_want).ok(),
                    port,
                    url_data: read_options(r.rest()),
                }))
            }
            Some(Action::Scrape) => {
                let body = r.rest();
                if body.len() % 20 != 0 {
                    return Err(UdpError::ScrapeLength(body.len()));
                }
                let count = body.len() / 20;
                if count > MAX_SCRAPE_HASHES {
                    return Err(UdpError::TooManyHashes(count));
                }
                let info_hashes = body
                    .chunks_exact(20)
                    .filter_map(|c| Id20::from_slice(c).ok())
                    .collect();
                Ok(Request::Scrape(ScrapeRequest {
                    connection_id,
                    transaction_id,
                    info_hashes,
                }))
            }
            Some(Action::Error) | None => Err(UdpError::UnknownAction(action)),
        }
    }

    /// Encodes the packet.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Connect(r) => r.encode(),
            Request::Announce(r) => r.encode(),
            Request::Scrape(r) => r.encode(),
        }
    }

    /// The transaction id to echo.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Request::Connect(r) => r.transaction_id,
            Request::Announce(r) => r.transaction_id,
            Request::Scrape(r) => r.transaction_id,
        }
    }

    /// The connection id to validate; `None` for a connect request.
    pub fn connection_id(&self) -> Option<u64> {
        match self {
            Request::Connect(_) => None,
            Request::Announce(r) => Some(r.connection_id),
            Request::Scrape(r) => Some(r.connection_id),
        }
    }
}

impl Response {
    /// Decodes a tracker packet (client side); `family` is that of the socket it arrived on.
    pub fn decode(packet: &[u8], family: AddressFamily) -> Result<Response, UdpError> {
        let mut r = Reader::new(packet);
        r.need(8)?;
        let action = r.u32()?;
        let transaction_id = r.u32()?;
        match Action::from_code(action) {
            Some(Action::Connect) => {
                r.need(16)?;
                Ok(Response::Connect(ConnectResponse {
                    transaction_id,
                    connection_id: r.u64()?,
                }))
            }
            Some(Action::Announce) => {
                r.need(20)?;
                let interval = r.u32()?;
                let leechers = r.u32()?;
                let seeders = r.u32()?;
                let peers = compact::decode(r.rest(), family, MAX_PEERS).map_err(|e| match e {
                    CompactError::Length { len, stride } => UdpError::PeersLength { len, stride },
                    CompactError::TooMany { count } => UdpError::TooManyPeers(count),
                })?;
                Ok(Response::Announce(AnnounceResponse {
                    transaction_id,
                    interval,
                    leechers,
                    seeders,
                    peers,
                }))
            }
            Some(Action::Scrape) => {
                let body = r.rest();
                if body.len() % 12 != 0 {
                    return Err(UdpError::ScrapeLength(body.len()));
                }
                let count = body.len() / 12;
                if count > MAX_SCRAPE_HASHES {
                    return Err(UdpError::TooManyHashes(count));
                }
                let mut stats = Vec::with_capacity(count);
                for _ in 0..count {
                    stats.push(ScrapeStats {
                        seeders: r.u32()?,
                        completed: r.u32()?,
                        leechers: r.u32()?,
                    });
                }
                Ok(Response::Scrape(ScrapeResponse {
                    transaction_id,
                    stats,
                }))
            }
            Some(Action::Error) => Ok(Response::Error(ErrorResponse {
                transaction_id,
                message: String::from_utf8_lossy(r.rest()).into_owned(),
            })),
            None => Err(UdpError::UnknownAction(action)),
        }
    }

    /// Encodes the packet for a socket of `family` (which selects the announce peer format).
    pub fn encode(&self, family: AddressFamily) -> Vec<u8> {
        match self {
            Response::Connect(r) => r.encode(),
            Response::Announce(r) => r.encode(family),
            Response::Scrape(r) => r.encode(),
            Response::Error(r) => r.encode(),
        }
    }

    /// The echoed transaction id.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect(r) => r.transaction_id,
            Response::Announce(r) => r.transaction_id,
            Response::Scrape(r) => r.transaction_id,
            Response::Error(r) => r.transaction_id,
        }
    }

    /// `Ok` when the response answers the request with transaction id `expected`.
    pub fn check_transaction_id(&self, expected: u32) -> Result<(), UdpError> {
        let got = self.transaction_id();
        if got == expected {
            Ok(())
        } else {
            Err(UdpError::TransactionId { expected, got })
        }
    }
}

/// The BEP 41 URL data of a `udp://` tracker URL: its path and query (`/announce?k=v`), without
/// the fragment. Empty when the URL has neither.
pub fn url_data(udp_url: &str) -> &str {
    let after_scheme = udp_url
        .find("://")
        .and_then(|i| udp_url.get(i + 3..))
        .unwrap_or(udp_url);
    let start = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let rest = after_scheme.get(start..).unwrap_or("");
    rest.split_once('#').map_or(rest, |(r, _)| r)
}

/// Reads BEP 41 options, returning the concatenated URL data. Parsing stops at EndOfOptions, at
/// the end of the packet or at a truncated option; unknown options are skipped by their length.
fn read_options(mut opts: &[u8]) -> Vec<u8> {
    let mut url = Vec::new();
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            OPT_END => break,
            OPT_NOP => opts = rest,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let Some((data, rest)) = rest.split_at_checked(usize::from(len)) else {
                    break;
                };
                if kind == OPT_URL_DATA {
                    url.extend_from_slice(data);
                }
                opts = rest;
            }
        }
    }
    url
}

/// Big-endian cursor that reports short packets as [`UdpError::TooShort`].
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn need(&self, total: usize) -> Result<(), UdpError> {
        if self.buf.len() < total {
            Err(UdpError::TooShort {
                needed: total,
                got: self.buf.len(),
            })
        } else {
            Ok(())
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UdpError> {
        let end = self.pos + N;
        self.need(end)?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(UdpError::TooShort {
                needed: end,
                got: self.buf.len(),
            })?;
        self.pos = end;
        Ok(bytes)
    }

    fn u32(&mut self) -> Result<u32, UdpError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, UdpError> {
        self.array().map(u64::from_be_bytes)
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::test_support::arb_event;
    use proptest::prelude::*;
    use std::net::{Ipv6Addr, SocketAddrV4};

    #[test]
    fn connect_roundtrip_and_bytes() {
        let req = ConnectRequest {
            transaction_id: 0xdead_beef,
        };
        let bytes = req.encode();
        assert_eq!(
            bytes,
            [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(Request::decode(&bytes), Ok(Request::Connect(req)));
        let mut bad = bytes.clone();
        bad[0] = 1;
        assert_eq!(
            Request::decode(&bad),
            Err(UdpError::ProtocolId(0x0100_0417_2710_1980))
        );
        let resp = Response::Connect(ConnectResponse {
            transaction_id: 7,
            connection_id: 0x0102_0304_0506_0708,
        });
        let enc = resp.encode(AddressFamily::V4);
        assert_eq!(enc.len(), 16);
        assert_eq!(Response::decode(&enc, AddressFamily::V4), Ok(resp.clone()));
        assert_eq!(resp.check_transaction_id(7), Ok(()));
        assert_eq!(
            resp.check_transaction_id(8),
            Err(UdpError::TransactionId {
                expected: 8,
                got: 7
            })
        );
    }

    fn sample_announce() -> AnnounceRequest {
        AnnounceRequest {
            connection_id: 42,
            transaction_id: 9,
            info_hash: Id20([1; 20]),
            peer_id: Id20([2; 20]),
            downloaded: 3,
            left: 4,
            uploaded: 5,
            event: Some(Event::Started),
            ip: None,
            key: 0x1234_5678,
            num_want: None,
            port: 6881,
            url_data: Vec::new(),
        }
    }

    #[test]
    fn announce_request_layout() {
        let a = sample_announce();
        let b = a.encode();
        assert_eq!(b.len(), ANNOUNCE_REQUEST_LEN);
        assert_eq!(&b[8..12], &[0, 0, 0, 1]);
        assert_eq!(&b[80..84], &[0, 0, 0, 2]); // started
        assert_eq!(&b[84..88], &[0, 0, 0, 0]); // ip default
        assert_eq!(&b[92..96], &[0xff; 4]); // num_want -1
        assert_eq!(&b[96..98], &6881u16.to_be_bytes());
        assert_eq!(Request::decode(&b), Ok(Request::Announce(a)));
        assert_eq!(
            Request::decode(&b[..97]),
            Err(UdpError::TooShort {
                needed: 98,
                got: 97
            })
        );
        let mut bad_event = b.clone();
        bad_event[83] = 9;
        assert_eq!(Request::decode(&bad_event), Err(UdpError::UnknownEvent(9)));
    }

    #[test]
    fn bep41_url_data_options() {
        assert_eq!(url_data("udp://tracker.example:1337"), "");
        assert_eq!(
            url_data("udp://tracker.example:1337/announce?passkey=x#f"),
            "/announce?passkey=x"
        );
        assert_eq!(url_data("udp://t:1?a=b"), "?a=b");
        let mut a = sample_announce();
        a.url_data = vec![b'x'; 300];
        let b = a.encode();
        // Two options: 255 bytes then 45 bytes.
        assert_eq!(b.len(), ANNOUNCE_REQUEST_LEN + 2 + 255 + 2 + 45);
        assert_eq!(&b[98..100], &[2, 255]);
        assert_eq!(Request::decode(&b), Ok(Request::Announce(a.clone())));
        // NOP, unknown option 7 (skipped by length), URL data, EndOfOptions, trailing garbage.
        let mut b = sample_announce().encode();
        b.extend_from_slice(&[1, 7, 2, 0xaa, 0xbb, 2, 3, b'/', b'a', b'b', 0, 2, 1, b'z']);
        let Ok(Request::Announce(d)) = Request::decode(&b) else {
            panic!("announce expected")
        };
        assert_eq!(d.url_data, b"/ab");
        // A truncated option ends parsing without error.
        let mut b = sample_announce().encode();
        b.extend_from_slice(&[2, 3, b'/', b'a', b'b', 2, 9, b'x']);
        let Ok(Request::Announce(d)) = Request::decode(&b) else {
            panic!("announce expected")
        };
        assert_eq!(d.url_data, b"/ab");
    }

    #[test]
    fn announce_response_families() {
        let v4 = AnnounceResponse {
            transaction_id: 1,
            interval: 1800,
            leechers: 2,
            seeders: 3,
            peers: vec![SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(10, 0, 0, 1),
                6881,
            ))],
        };
        let enc = v4.encode(AddressFamily::V4);
        assert_eq!(enc.len(), 26);
        assert_eq!(
            Response::decode(&enc, AddressFamily::V4),
            Ok(Response::Announce(v4.clone()))
        );
        // Read as IPv6, 6 bytes of peers are a ragged list.
        assert_eq!(
            Response::decode(&enc, AddressFamily::V6),
            Err(UdpError::PeersLength { len: 6, stride: 18 })
        );
        let v6 = AnnounceResponse {
            peers: vec![SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 51413)],
            ..v4.clone()
        };
        let enc = v6.encode(AddressFamily::V6);
        assert_eq!(enc.len(), 38);
        assert_eq!(
            Response::decode(&enc, AddressFamily::V6),
            Ok(Response::Announce(v6.clone()))
        );
        // Peers of the other family are left out.
        assert_eq!(v6.encode(AddressFamily::V4).len(), 20);
        assert_eq!(
            Response::decode(&enc[..19], AddressFamily::V6),
            Err(UdpError::TooShort {
                needed: 20,
                got: 19
            })
        );
    }

    #[test]
    fn scrape_both_ways() {
        let req = ScrapeRequest {
            connection_id: 5,
            transaction_id: 6,
            info_hashes: vec![Id20([7; 20]), Id20([8; 20])],
        };
        let enc = req.encode();
        assert_eq!(enc.len(), 56);
        assert_eq!(Request::decode(&enc), Ok(Request::Scrape(req.clone())));
        assert_eq!(Request::decode(&enc[..55]), Err(UdpError::ScrapeLength(39)));
        let too_many = ScrapeRequest {
            info_hashes: vec![Id20([0; 20]); MAX_SCRAPE_HASHES + 1],
            ..req
        };
        assert_eq!(
            Request::decode(&too_many.encode()),
            Err(UdpError::TooManyHashes(MAX_SCRAPE_HASHES + 1))
        );
        let resp = Response::Scrape(ScrapeResponse {
            transaction_id: 6,
            stats: vec![
                ScrapeStats {
                    seeders: 1,
                    completed: 2,
                    leechers: 3,
                };
                2
            ],
        });
        let enc = resp.encode(AddressFamily::V4);
        assert_eq!(&enc[8..20], &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
        assert_eq!(Response::decode(&enc, AddressFamily::V4), Ok(resp));
        assert_eq!(
            Response::decode(&enc[..31], AddressFamily::V4),
            Err(UdpError::ScrapeLength(23))
        );
    }

    #[test]
    fn error_response_and_unknown_actions() {
        // As bittorrent-tracker sends it: action 3, transaction id, UTF-8 text.
        let mut b = vec![0, 0, 0, 3, 0, 0, 0, 9];
        b.extend_from_slice(b"invalid event");
        let r = Response::decode(&b, AddressFamily::V4).unwrap();
        assert_eq!(
            r,
            Response::Error(ErrorResponse {
                transaction_id: 9,
                message: "invalid event".into()
            })
        );
        assert_eq!(r.encode(AddressFamily::V4), b);
        assert_eq!(
            Response::decode(&[0, 0, 0, 4, 0, 0, 0, 0], AddressFamily::V4),
            Err(UdpError::UnknownAction(4))
        );
        let mut req = ConnectRequest { transaction_id: 1 }.encode();
        req[11] = 3;
        assert_eq!(Request::decode(&req), Err(UdpError::UnknownAction(3)));
        assert_eq!(
            Response::decode(&[0, 0, 0], AddressFamily::V4),
            Err(UdpError::TooShort { needed: 8, got: 3 })
        );
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            any::<u32>().prop_map(|t| Request::Connect(ConnectRequest { transaction_id: t })),
            (
                (
                    any::<u64>(),
                    any::<u32>(),
                    any::<[u8; 20]>(),
                    any::<[u8; 20]>()
                ),
                (any::<u64>(), any::<u64>(), any::<u64>(), arb_event()),
                (
                    proptest::option::of(
                        any::<[u8; 4]>().prop_filter("nonzero", |ip| *ip != [0; 4])
                    ),
                    any::<u32>(),
                    proptest::option::of(0..=i32::MAX as u32),
                    any::<u16>(),
                    proptest::collection::vec(any::<u8>(), 0..600),
                ),
            )
                .prop_map(
                    |((c, t, ih, pid), (down, left, up, event), (ip, key, num_want, port, url))| {
                        Request::Announce(AnnounceRequest {
                            connection_id: c,
                            transaction_id: t,
                            info_hash: Id20(ih),
                            peer_id: Id20(pid),
                            downloaded: down,
                            left,
                            uploaded: up,
                            event,
                            ip: ip.map(Ipv4Addr::from),
                            key,
                            num_want,
                            port,
                            url_data: url,
                        })
                    }
                ),
            (
                any::<u64>(),
                any::<u32>(),
                proptest::collection::vec(any::<[u8; 20]>(), 0..=MAX_SCRAPE_HASHES)
            )
                .prop_map(|(c, t, hs)| Request::Scrape(ScrapeRequest {
                    connection_id: c,
                    transaction_id: t,
                    info_hashes: hs.into_iter().map(Id20).collect(),
                })),
        ]
    }

    fn arb_response(family: AddressFamily) -> impl Strategy<Value = Response> {
        let addr = match family {
            AddressFamily::V4 => (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(Ipv4Addr::from(ip).into(), p))
                .boxed(),
            AddressFamily::V6 => (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(Ipv6Addr::from(ip).into(), p))
                .boxed(),
        };
        prop_oneof![
            (any::<u32>(), any::<u64>()).prop_map(|(t, c)| Response::Connect(ConnectResponse {
                transaction_id: t,
                connection_id: c
            })),
            (any::<[u32; 4]>(), proptest::collection::vec(addr, 0..50)).prop_map(
                |([t, i, l, s], peers)| {
                    Response::Announce(AnnounceResponse {
                        transaction_id: t,
                        interval: i,
                        leechers: l,
                        seeders: s,
                        peers,
                    })
                }
            ),
            (
                any::<u32>(),
                proptest::collection::vec(any::<[u32; 3]>(), 0..=MAX_SCRAPE_HASHES)
            )
                .prop_map(|(t, st)| {
                    Response::Scrape(ScrapeResponse {
                        transaction_id: t,
                        stats: st
                            .into_iter()
                            .map(|[seeders, completed, leechers]| ScrapeStats {
                                seeders,
                                completed,
                                leechers,
                            })
                            .collect(),
                    })
                }),
            (any::<u32>(), ".{0,40}").prop_map(|(t, m)| Response::Error(ErrorResponse {
                transaction_id: t,
                message: m
            })),
        ]
    }

    proptest! {
        #[test]
        fn request_roundtrip(req in arb_request()) {
            prop_assert_eq!(Request::decode(&req.encode()), Ok(req));
        }

        #[test]
        fn response_roundtrip_v4(resp in arb_response(AddressFamily::V4)) {
            let enc = resp.encode(AddressFamily::V4);
            prop_assert_eq!(Response::decode(&enc, AddressFamily::V4), Ok(resp));
        }

        #[test]
        fn response_roundtrip_v6(resp in arb_response(AddressFamily::V6)) {
            let enc = resp.encode(AddressFamily::V6);
            prop_assert_eq!(Response::decode(&enc, AddressFamily::V6), Ok(resp));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&data);
            let _ = Response::decode(&data, AddressFamily::V4);
            let _ = Response::decode(&data, AddressFamily::V6);
        }
    }
}
