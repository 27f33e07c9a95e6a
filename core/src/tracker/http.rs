//! HTTP tracker announce (BEP 3, with BEP 7 `peers6` and BEP 23 compact peer lists).
//!
//! A client builds an [`AnnounceRequest`], appends it to the announce URL with
//! [`AnnounceRequest::to_url`] and decodes the body of the reply with
//! [`AnnounceResponse::decode`]. A tracker does the reverse with
//! [`AnnounceRequest::from_query`], [`AnnounceResponse::encode`] and [`encode_failure`].
//!
//! Peers in the dictionary model whose `ip` is not an IP literal (a DNS name) are skipped without
//! error: resolving names is the driver's business, and no tracker in use sends them.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::bencode::{self, write_bytes, write_int, BencodeError, Limits, Value};
use crate::id::{Id20, InfoHash, PeerId};

use super::compact::{self, CompactError};
use super::{saturate_u32, AddressFamily, Event, Peer, MAX_PEERS, MAX_SCRAPE_HASHES};
use crate::percent::{self, Keep, PercentError};

/// Longest query string [`AnnounceRequest::from_query`] and
/// [`ScrapeRequest::from_query`](super::ScrapeRequest::from_query) accept, in bytes.
pub const MAX_QUERY_LEN: usize = 32 * 1024;

/// Most `name=value` pairs accepted in one query string.
pub const MAX_QUERY_PARAMS: usize = MAX_SCRAPE_HASHES + 64;

/// Bencode bounds for tracker responses: shallow documents with at most a few values per peer.
pub(super) const RESPONSE_LIMITS: Limits = Limits {
    max_depth: 8,
    max_values: 8 * MAX_PEERS + 256,
};

/// Errors from the HTTP announce and scrape codecs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The tracker answered with `failure reason`; the request was refused.
    #[error("tracker failure: {0}")]
    Failure(String),
    /// The body is not valid bencode (or exceeds the decoding limits).
    #[error("invalid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The body is bencode but not a dictionary.
    #[error("response is not a bencoded dictionary")]
    NotADict,
    /// A known field has the wrong type or an impossible value.
    #[error("field `{0}` has the wrong type or an invalid value")]
    InvalidField(&'static str),
    /// A compact peer string whose length is not a multiple of its entry size.
    #[error("`{key}` is {len} bytes, not a multiple of {stride}")]
    CompactLength {
        /// `peers` or `peers6`.
        key: &'static str,
        /// Length of the string.
        len: usize,
        /// 6 or 18.
        stride: usize,
    },
    /// More peers than [`MAX_PEERS`].
    #[error("response lists {0} peers, more than {MAX_PEERS}")]
    TooManyPeers(usize),
    /// More info hashes than [`MAX_SCRAPE_HASHES`].
    #[error("more than {MAX_SCRAPE_HASHES} info hashes")]
    TooManyHashes,
    /// A query string longer than [`MAX_QUERY_LEN`].
    #[error("query string is {0} bytes, more than {MAX_QUERY_LEN}")]
    QueryTooLong(usize),
    /// A query string with more than [`MAX_QUERY_PARAMS`] parameters.
    #[error("query string has more than {MAX_QUERY_PARAMS} parameters")]
    TooManyParams,
    /// A malformed `%` escape in the query string.
    #[error("query string: {0}")]
    Percent(#[from] PercentError),
    /// A required query parameter is absent.
    #[error("query parameter `{0}` is missing")]
    MissingParam(&'static str),
    /// A query parameter that may appear once appears again.
    #[error("query parameter `{0}` appears more than once")]
    DuplicateParam(&'static str),
    /// A query parameter whose value cannot be parsed.
    #[error("query parameter `{0}` is invalid")]
    InvalidParam(&'static str),
}

/// How [`AnnounceResponse::encode`] writes the peer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerEncoding {
    /// BEP 23 / BEP 7: IPv4 peers in the `peers` string (always present), IPv6 peers in `peers6`
    /// (present when there are any). Peer ids are dropped.
    Compact,
    /// BEP 3 dictionary model: one `peers` list of `{ip, peer id, port}` for both families; the
    /// `peer id` key is left out for peers without one (clear the ids to honour `no_peer_id`).
    Dictionary,
}

/// An announce request: the query parameters of `GET /announce?…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// The port the peer listens on.
    pub port: u16,
    /// Bytes uploaded since `started` (0 when the query leaves it out).
    pub uploaded: u64,
    /// Bytes downloaded since `started` (0 when the query leaves it out).
    pub downloaded: u64,
    /// Bytes still missing; 0 for a seeder. Required.
    pub left: u64,
    /// `None` for a regular announce.
    pub event: Option<Event>,
    /// `compact=1`: the client prefers BEP 23 compact peer lists.
    pub compact: bool,
    /// `no_peer_id=1`: the client does not want peer ids in a dictionary list.
    pub no_peer_id: bool,
    /// Peers wanted; `None` leaves it to the tracker (negative values parse as `None`).
    pub numwant: Option<u32>,
    /// The client's private `key`, opaque bytes.
    pub key: Option<Vec<u8>>,
    /// The `tracker id` from an earlier response, echoed back.
    pub trackerid: Option<Vec<u8>>,
    /// The `ip` parameter: an address or DNS name the client asks the tracker to use.
    pub ip: Option<String>,
}

impl AnnounceRequest {
    /// A regular compact announce with zero counters and no optional parameters.
    pub fn new(info_hash: InfoHash, peer_id: PeerId, port: u16) -> Self {
        AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: None,
            compact: true,
            no_peer_id: false,
            numwant: None,
            key: None,
            trackerid: None,
            ip: None,
        }
    }

    /// The request for a job of the [`Announcer`](crate::announce::Announcer): its counters,
    /// event, `numwant`, `trackerid` and key (as 8 upper-case hex digits, as libtorrent sends
    /// it).
    pub fn from_job(
        job: &crate::announce::AnnounceJob,
        info_hash: InfoHash,
        peer_id: PeerId,
        port: u16,
    ) -> Self {
        AnnounceRequest {
            uploaded: job.uploaded,
            downloaded: job.downloaded,
            left: job.left,
            event: job.event.tracker_event(),
            numwant: Some(job.numwant),
            key: Some(format!("{:08X}", job.key).into_bytes()),
            trackerid: job.tracker_id.clone(),
            ..AnnounceRequest::new(info_hash, peer_id, port)
        }
    }

    /// The query string (without `?`), binary values percent-encoded per RFC 3986.
    pub fn to_query(&self) -> String {
        let mut q = String::with_capacity(200);
        q.push_str("info_hash=");
        percent::encode_into(&mut q, self.info_hash.as_bytes(), Keep::Unreserved);
        q.push_str("&peer_id=");
        percent::encode_into(&mut q, self.peer_id.as_bytes(), Keep::Unreserved);
        // Writing to a String cannot fail.
        let _ = write!(
            q,
            "&port={}&uploaded={}&downloaded={}&left={}",
            self.port, self.uploaded, self.downloaded, self.left
        );
        if let Some(event) = self.event {
            q.push_str("&event=");
            q.push_str(event.as_str());
        }
        q.push_str(if self.compact {
            "&compact=1"
        } else {
            "&compact=0"
        });
        if self.no_peer_id {
            q.push_str("&no_peer_id=1");
        }
        if let Some(n) = self.numwant {
            let _ = write!(q, "&numwant={n}");
        }
        if let Some(key) = &self.key {
            q.push_str("&key=");
            percent::encode_into(&mut q, key, Keep::Unreserved);
        }
        if let Some(id) = &self.trackerid {
            q.push_str("&trackerid=");
            percent::encode_into(&mut q, id, Keep::Unreserved);
        }
        if let Some(ip) = &self.ip {
            q.push_str("&ip=");
            percent::encode_into(&mut q, ip.as_bytes(), Keep::Unreserved);
        }
        q
    }

    /// The full request URL: `announce_url` plus the query, joined with `?` or, when the URL
    /// already has a query, `&`. A `#fragment` on the announce URL is dropped.
    pub fn to_url(&self, announce_url: &str) -> String {
        let mut url = start_url(announce_url);
        url.push_str(&self.to_query());
        url
    }

    /// Parses the query string of an announce (with or without the leading `?`).
    ///
    /// `info_hash`, `peer_id`, `port` and `left` are required; `uploaded` and `downloaded`
    /// default to 0. Unknown parameters are ignored; a known one given twice is an error.
    pub fn from_query(query: &str) -> Result<Self, HttpError> {
        let mut info_hash = None;
        let mut peer_id = None;
        let mut port = None;
        let mut uploaded = None;
        let mut downloaded = None;
        let mut left = None;
        let mut event = None;
        let mut compact = None;
        let mut no_peer_id = None;
        let mut numwant = None;
        let mut key = None;
        let mut trackerid = None;
        let mut ip = None;
        for (name, value) in query_pairs(query)? {
            match name.as_slice() {
                b"info_hash" => {
                    set_once(&mut info_hash, "info_hash", parse_id(&value, "info_hash")?)?
                }
                b"peer_id" => set_once(&mut peer_id, "peer_id", parse_id(&value, "peer_id")?)?,
                b"port" => {
                    let p = u16::try_from(parse_u64(&value, "port")?)
                        .map_err(|_| HttpError::InvalidParam("port"))?;
                    set_once(&mut port, "port", p)?;
                }
                b"uploaded" => set_once(&mut uploaded, "uploaded", parse_u64(&value, "uploaded")?)?,
                b"downloaded" => set_once(
                    &mut downloaded,
                    "downloaded",
                    parse_u64(&value, "downloaded")?,
                )?,
                b"left" => set_once(&mut left, "left", parse_u64(&value, "left")?)?,
                b"event" => {
                    let s = std::str::from_utf8(&value)
                        .map_err(|_| HttpError::InvalidParam("event"))?;
                    let e = Event::parse(s).map_err(|_| HttpError::InvalidParam("event"))?;
                    set_once(&mut event, "event", e)?;
                }
                b"compact" => set_once(&mut compact, "compact", parse_flag(&value, "compact")?)?,
                b"no_peer_id" => set_once(
                    &mut no_peer_id,
                    "no_peer_id",
                    parse_flag(&value, "no_peer_id")?,
                )?,
                b"numwant" => set_once(&mut numwant, "numwant", parse_numwant(&value)?)?,
                b"key" => set_once(&mut key, "key", value)?,
                b"trackerid" => set_once(&mut trackerid, "trackerid", value)?,
                b"ip" => {
                    let s = String::from_utf8(value).map_err(|_| HttpError::InvalidParam("ip"))?;
                    set_once(&mut ip, "ip", s)?;
                }
                _ => {}
            }
        }
        Ok(AnnounceRequest {
            info_hash: info_hash.ok_or(HttpError::MissingParam("info_hash"))?,
            peer_id: peer_id.ok_or(HttpError::MissingParam("peer_id"))?,
            port: port.ok_or(HttpError::MissingParam("port"))?,
            uploaded: uploaded.unwrap_or(0),
            downloaded: downloaded.unwrap_or(0),
            left: left.ok_or(HttpError::MissingParam("left"))?,
            event: event.flatten(),
            compact: compact.unwrap_or(false),
            no_peer_id: no_peer_id.unwrap_or(false),
            numwant: numwant.flatten(),
            key,
            trackerid,
            ip,
        })
    }
}

/// A successful announce response.
///
/// Counts and intervals are seconds / peers as sent; negative values from a buggy tracker read
/// as 0 and values past `u32::MAX` saturate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    /// Seconds the client should wait between regular announces.
    pub interval: Option<u32>,
    /// Seconds the client must wait at least.
    pub min_interval: Option<u32>,
    /// A non-fatal message from the tracker.
    pub warning_message: Option<String>,
    /// Opaque id to send back as `trackerid`.
    pub tracker_id: Option<Vec<u8>>,
    /// Seeders.
    pub complete: Option<u32>,
    /// Leechers.
    pub incomplete: Option<u32>,
    /// BEP 24 `external ip`: the client's address as the tracker sees it (4 or 16 bytes).
    pub external_ip: Option<IpAddr>,
    /// Peers from `peers` then `peers6`, in the order sent.
    pub peers: Vec<Peer>,
}

impl AnnounceResponse {
    /// Decodes a response body. A `failure reason` becomes [`HttpError::Failure`].
    ///
    /// `peers` may be a compact string (6 bytes per peer, empty allowed) or a list of
    /// dictionaries; `peers6` likewise with 18-byte entries. Unknown keys are ignored.
    pub fn decode(body: &[u8]) -> Result<Self, HttpError> {
        let v = bencode::decode_with(body, RESPONSE_LIMITS)?;
        if v.as_dict().is_none() {
            return Err(HttpError::NotADict);
        }
        check_failure(&v)?;
        let mut r = AnnounceResponse {
            interval: opt_u32(&v, "interval")?,
            min_interval: opt_u32(&v, "min interval")?,
            warning_message: opt_text(&v, "warning message")?,
            tracker_id: opt_bytes(&v, "tracker id")?.map(<[u8]>::to_vec),
            complete: opt_u32(&v, "complete")?,
            incomplete: opt_u32(&v, "incomplete")?,
            external_ip: opt_bytes(&v, "external ip")?.and_then(ip_from_octets),
            peers: Vec::new(),
        };
        read_peers(&v, "peers", AddressFamily::V4, &mut r.peers)?;
        read_peers(&v, "peers6", AddressFamily::V6, &mut r.peers)?;
        Ok(r)
    }

    /// Encodes the response as canonical bencode with the peers written as `peers` says.
    pub fn encode(&self, peers: PeerEncoding) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.peers.len() * 40);
        out.push(b'd');
        // Keys in sorted order.
        put_u32(&mut out, "complete", self.complete);
        if let Some(ip) = self.external_ip {
            write_bytes(&mut out, b"external ip");
            match ip {
                IpAddr::V4(a) => write_bytes(&mut out, &a.octets()),
                IpAddr::V6(a) => write_bytes(&mut out, &a.octets()),
            }
        }
        put_u32(&mut out, "incomplete", self.incomplete);
        put_u32(&mut out, "interval", self.interval);
        put_u32(&mut out, "min interval", self.min_interval);
        let addrs = || self.peers.iter().map(|p| &p.addr);
        match peers {
            PeerEncoding::Compact => {
                write_bytes(&mut out, b"peers");
                write_bytes(
                    &mut out,
                    &compact::encode_family(addrs(), AddressFamily::V4),
                );
                let v6 = compact::encode_family(addrs(), AddressFamily::V6);
                if !v6.is_empty() {
                    write_bytes(&mut out, b"peers6");
                    write_bytes(&mut out, &v6);
                }
            }
            PeerEncoding::Dictionary => {
                write_bytes(&mut out, b"peers");
                out.push(b'l');
                for p in &self.peers {
                    out.push(b'd');
                    write_bytes(&mut out, b"ip");
                    write_bytes(&mut out, p.addr.ip().to_string().as_bytes());
                    if let Some(id) = &p.peer_id {
                        write_bytes(&mut out, b"peer id");
                        write_bytes(&mut out, id.as_bytes());
                    }
                    write_bytes(&mut out, b"port");
                    write_int(&mut out, i64::from(p.addr.port()));
                    out.push(b'e');
                }
                out.push(b'e');
            }
        }
        if let Some(id) = &self.tracker_id {
            write_bytes(&mut out, b"tracker id");
            write_bytes(&mut out, id);
        }
        if let Some(w) = &self.warning_message {
            write_bytes(&mut out, b"warning message");
            write_bytes(&mut out, w.as_bytes());
        }
        out.push(b'e');
        out
    }
}

/// A failure response body: `d14:failure reason<len>:<reason>e`.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 24);
    out.push(b'd');
    write_bytes(&mut out, b"failure reason");
    write_bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with `scrape`.

/// `announce_url` without its fragment, followed by `?` or `&` ready for parameters.
pub(super) fn start_url(announce_url: &str) -> String {
    let base = announce_url
        .split_once('#')
        .map_or(announce_url, |(b, _)| b);
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    if base.contains('?') {
        if !(base.ends_with('?') || base.ends_with('&')) {
            url.push('&');
        }
    } else {
        url.push('?');
    }
    url
}

/// A decoded query parameter: `(name, value)`.
pub(super) type QueryPair = (Vec<u8>, Vec<u8>);

/// Splits and percent-decodes a query string into `(name, value)` pairs, bounded.
pub(super) fn query_pairs(query: &str) -> Result<Vec<QueryPair>, HttpError> {
    let q = query.strip_prefix('?').unwrap_or(query);
    if q.len() > MAX_QUERY_LEN {
        return Err(HttpError::QueryTooLong(q.len()));
    }
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_QUERY_PARAMS {
            return Err(HttpError::TooManyParams);
        }
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        out.push((
            percent::decode(name, false)?,
            percent::decode(value, false)?,
        ));
    }
    Ok(out)
}

/// A 20-byte binary id from a decoded query value.
pub(super) fn parse_id(value: &[u8], name: &'static str) -> Result<Id20, HttpError> {
    Id20::from_slice(value).map_err(|_| HttpError::InvalidParam(name))
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(HttpError::DuplicateParam(name));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_u64(value: &[u8], name: &'static str) -> Result<u64, HttpError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::InvalidParam(name));
    }
    value.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(d - b'0')))
            .ok_or(HttpError::InvalidParam(name))
    })
}

fn parse_flag(value: &[u8], name: &'static str) -> Result<bool, HttpError> {
    match value {
        b"1" => Ok(true),
        b"0" => Ok(false),
        _ => Err(HttpError::InvalidParam(name)),
    }
}

/// `numwant`: a decimal, possibly negative (negative means "tracker's default").
fn parse_numwant(value: &[u8]) -> Result<Option<u32>, HttpError> {
    match value.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits, "numwant").map(|_| None),
        None => parse_u64(value, "numwant").map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX))),
    }
}

/// Returns `Err(Failure)` when the response carries a `failure reason`.
pub(super) fn check_failure(v: &Value<'_>) -> Result<(), HttpError> {
    match v.get(b"failure reason") {
        None => Ok(()),
        Some(Value::Bytes(b)) => Err(HttpError::Failure(String::from_utf8_lossy(b).into_owned())),
        Some(_) => Err(HttpError::InvalidField("failure reason")),
    }
}

pub(super) fn opt_u32(v: &Value<'_>, key: &'static str) -> Result<Option<u32>, HttpError> {
    match v.get(key.as_bytes()) {
        None => Ok(None),
        Some(Value::Int(i)) => Ok(Some(saturate_u32(*i))),
        Some(_) => Err(HttpError::InvalidField(key)),
    }
}

fn opt_bytes<'a>(v: &Value<'a>, key: &'static str) -> Result<Option<&'a [u8]>, HttpError> {
    match v.get(key.as_bytes()) {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(HttpError::InvalidField(key)),
    }
}

pub(super) fn opt_text(v: &Value<'_>, key: &'static str) -> Result<Option<String>, HttpError> {
    Ok(opt_bytes(v, key)?.map(|b| String::from_utf8_lossy(b).into_owned()))
}

pub(super) fn put_u32(out: &mut Vec<u8>, key: &str, value: Option<u32>) {
    if let Some(n) = value {
        write_bytes(out, key.as_bytes());
        write_int(out, i64::from(n));
    }
}

fn ip_from_octets(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        Some(IpAddr::V4(Ipv4Addr::from(a)))
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        Some(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        None
    }
}

/// Appends the peers stored under `key`: a compact string of `family` or a dictionary list.
fn read_peers(
    v: &Value<'_>,
    key: &'static str,
    family: AddressFamily,
    out: &mut Vec<Peer>,
) -> Result<(), HttpError> {
    let room = MAX_PEERS - out.len().min(MAX_PEERS);
    match v.get(key.as_bytes()) {
        None => {}
        Some(Value::Bytes(b)) => {
            let addrs = compact::decode(b, family, room).map_err(|e| match e {
                CompactError::Length { len, stride } => {
                    HttpError::CompactLength { key, len, stride }
                }
                CompactError::TooMany { count } => HttpError::TooManyPeers(out.len() + count),
            })?;
            out.extend(addrs.into_iter().map(Peer::from));
        }
        Some(Value::List(items)) => {
            if items.len() > room {
                return Err(HttpError::TooManyPeers(out.len() + items.len()));
            }
            for item in items {
                if let Some(p) = dict_peer(item)? {
                    out.push(p);
                }
            }
        }
        Some(_) => return Err(HttpError::InvalidField(key)),
    }
    Ok(())
}

/// One dictionary-model peer; `Ok(None)` when `ip` is not an IP literal (a DNS name).
fn dict_peer(item: &Value<'_>) -> Result<Option<Peer>, HttpError> {
    if item.as_dict().is_none() {
        return Err(HttpError::InvalidField("peers"));
    }
    let ip = item
        .get(b"ip")
        .and_then(Value::as_bytes)
        .ok_or(HttpError::InvalidField("ip"))?;
    let port = item
        .get(b"port")
        .and_then(Value::as_int)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(HttpError::InvalidField("port"))?;
    let peer_id = item
        .get(b"peer id")
        .and_then(Value::as_bytes)
        .and_then(|b| Id20::from_slice(b).ok());
    let Some(ip) = parse_ip_text(ip) else {
        return Ok(None);
    };
    Ok(Some(Peer {
        addr: SocketAddr::new(ip, port),
        peer_id,
    }))
}

/// An IPv4 or IPv6 literal, IPv6 optionally in brackets.
fn parse_ip_text(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?;
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> Id20 {
        Id20([b; 20])
    }

    #[test]
    fn from_job_takes_the_announcers_figures() {
        use crate::announce::{AnnounceConfig, Announcer};
        use crate::time::Time;
        let mut a = Announcer::new(
            vec![vec!["http://tracker.example/announce".into()]],
            AnnounceConfig::default(),
            3,
            Time::ZERO,
        );
        a.start(Time::ZERO, Some(99));
        a.update_stats(5, 6, Some(99));
        let job = a.poll_job(Time::ZERO).expect("started is due");
        let r = AnnounceRequest::from_job(&job, id(1), id(2), 6881);
        assert_eq!(
            (r.uploaded, r.downloaded, r.left, r.event, r.numwant),
            (5, 6, 99, Some(Event::Started), Some(50))
        );
        assert_eq!(r.key, Some(format!("{:08X}", a.key()).into_bytes()));
        assert!(r.compact && r.trackerid.is_none() && r.port == 6881);
    }

    #[test]
    fn to_url_encodes_binary_and_respects_existing_query() {
        let mut req = AnnounceRequest::new(
            Id20::from_hex("123456789abcdef123456789abcdef123456789a").unwrap(),
            Id20(*b"-WW0001-abcdefghij+ "),
            6881,
        );
        req.left = 1000;
        req.event = Some(Event::Started);
        req.numwant = Some(50);
        req.key = Some(b"k3y".to_vec());
        let url = req.to_url("http://tracker.example/announce");
        assert_eq!(
            url,
            "http://tracker.example/announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A\
             &peer_id=-WW0001-abcdefghij%2B%20&port=6881&uploaded=0&downloaded=0&left=1000\
             &event=started&compact=1&numwant=50&key=k3y"
        );
        let with_q = req.to_url("http://t.example/announce?passkey=abc");
        assert!(with_q.starts_with("http://t.example/announce?passkey=abc&info_hash="));
        let trailing = req.to_url("http://t.example/announce?passkey=abc&");
        assert!(trailing.starts_with("http://t.example/announce?passkey=abc&info_hash="));
        let frag = req.to_url("http://t.example/announce#frag");
        assert!(frag.starts_with("http://t.example/announce?info_hash="));
        assert!(!frag.contains("frag"));
        // The query parses back to the same request.
        let q = url.split_once('?').unwrap().1;
        assert_eq!(AnnounceRequest::from_query(q).unwrap(), req);
    }

    #[test]
    fn from_query_real_client_shape() {
        // Shape of a libtorrent-style announce, with lower-case escapes and unknown params.
        let q = "?info_hash=%12%34Vx%9a%bc%de%f1%23Eg%89%ab%cd%ef%124Vx%9A&peer_id=-qB4650-abcdefghijkl\
                 &port=51413&uploaded=10&downloaded=20&left=0&corrupt=0&key=4A3B2C1D&event=completed\
                 &numwant=-1&compact=1&no_peer_id=1&supportcrypto=1&redundant=0&ip=10.0.0.1";
        let r = AnnounceRequest::from_query(q).unwrap();
        assert_eq!(
            r.info_hash.to_hex(),
            "123456789abcdef123456789abcdef123456789a"
        );
        assert_eq!(r.peer_id.as_bytes(), b"-qB4650-abcdefghijkl");
        assert_eq!(
            (r.port, r.uploaded, r.downloaded, r.left),
            (51413, 10, 20, 0)
        );
        assert_eq!(r.event, Some(Event::Completed));
        assert_eq!(r.numwant, None);
        assert!(r.compact && r.no_peer_id);
        assert_eq!(r.key.as_deref(), Some(&b"4A3B2C1D"[..]));
        assert_eq!(r.ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn from_query_errors() {
        let good = "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0";
        assert!(AnnounceRequest::from_query(good).is_ok());
        let cases: &[(&str, HttpError)] = &[
            ("peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0", HttpError::MissingParam("info_hash")),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&left=0", HttpError::MissingParam("port")),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1", HttpError::MissingParam("left")),
            ("info_hash=short&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0", HttpError::InvalidParam("info_hash")),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=65536&left=0", HttpError::InvalidParam("port")),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=-1", HttpError::InvalidParam("left")),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&event=x", HttpError::InvalidParam("event")),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&left=1", HttpError::DuplicateParam("left")),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&x=%zz", HttpError::Percent(PercentError::BadEscape(0))),
            ("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=99999999999999999999", HttpError::InvalidParam("left")),
        ];
        for (q, want) in cases {
            assert_eq!(AnnounceRequest::from_query(q).as_ref(), Err(want), "{q}");
        }
        let long = "a".repeat(MAX_QUERY_LEN + 1);
        assert_eq!(
            AnnounceRequest::from_query(&long),
            Err(HttpError::QueryTooLong(MAX_QUERY_LEN + 1))
        );
        let many = "x=1&".repeat(MAX_QUERY_PARAMS + 1);
        assert_eq!(
            AnnounceRequest::from_query(&many),
            Err(HttpError::TooManyParams)
        );
    }

    /// bittorrent-tracker 11 compact reply: `peers6` is always present, here empty; the
    /// announcing peer itself is in the list.
    #[test]
    fn bittorrent_tracker_compact_reply_with_empty_peers6() {
        let mut body = b"d8:completei1e10:incompletei0e8:intervali600e5:peers6:".to_vec();
        body.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
        body.extend_from_slice(b"6:peers60:e");
        let r = AnnounceResponse::decode(&body).unwrap();
        assert_eq!(r.interval, Some(600));
        assert_eq!((r.complete, r.incomplete), (Some(1), Some(0)));
        assert_eq!(
            r.peers,
            vec![Peer::from("127.0.0.1:6881".parse::<SocketAddr>().unwrap())]
        );
        assert_eq!(r.warning_message, None);
    }

    #[test]
    fn compact_reply_with_ipv6_peers() {
        let mut body = b"d8:intervali1800e12:min intervali900e5:peers0:6:peers636:".to_vec();
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "::ffff:1.2.3.4".parse().unwrap();
        for (ip, port) in [(a, 1u16), (b, 65535)] {
            body.extend_from_slice(&ip.octets());
            body.extend_from_slice(&port.to_be_bytes());
        }
        body.extend_from_slice(b"10:tracker id3:xyze");
        let r = AnnounceResponse::decode(&body).unwrap();
        assert_eq!(r.min_interval, Some(900));
        assert_eq!(r.tracker_id.as_deref(), Some(&b"xyz"[..]));
        let addrs: Vec<String> = r.peers.iter().map(|p| p.addr.to_string()).collect();
        assert_eq!(addrs, ["[2001:db8::1]:1", "[::ffff:1.2.3.4]:65535"]);
        assert_eq!(r.encode(PeerEncoding::Compact), body);
    }

    #[test]
    fn failure_reason_is_a_distinct_error() {
        let body = b"d14:failure reason17:invalid info_hashe";
        assert_eq!(
            AnnounceResponse::decode(body),
            Err(HttpError::Failure("invalid info_hash".into()))
        );
        assert_eq!(encode_failure("invalid info_hash"), body);
        // Even with other keys present, failure wins.
        let body = b"d14:failure reason3:bad8:intervali5ee";
        assert_eq!(
            AnnounceResponse::decode(body),
            Err(HttpError::Failure("bad".into()))
        );
    }

    /// Dictionary model as bittorrent-tracker sends for compact=0: ip text for both families,
    /// binary `peer id`. A DNS-name peer is skipped; a warning message is kept.
    #[test]
    fn dictionary_model_reply() {
        let body: &[u8] = b"d8:completei2e10:incompletei1e8:intervali600e5:peersl\
            d2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881ee\
            d2:ip7:::1:2:37:peer id20:bbbbbbbbbbbbbbbbbbbb4:porti51413ee\
            d2:ip13:[2001:db8::2]4:porti80ee\
            d2:ip19:tracker.example.org4:porti6881ee\
            e15:warning message4:hey!e";
        let r = AnnounceResponse::decode(body).unwrap();
        assert_eq!(r.warning_message.as_deref(), Some("hey!"));
        assert_eq!(r.peers.len(), 3);
        assert_eq!(r.peers[0].addr, "127.0.0.1:6881".parse().unwrap());
        assert_eq!(r.peers[0].peer_id, Some(id(b'a')));
        assert_eq!(r.peers[1].addr, "[::1:2:3]:51413".parse().unwrap());
        assert_eq!(r.peers[1].peer_id, Some(id(b'b')));
        assert_eq!(r.peers[2].addr, "[2001:db8::2]:80".parse().unwrap());
        assert_eq!(r.peers[2].peer_id, None);
        let enc = r.encode(PeerEncoding::Dictionary);
        assert_eq!(AnnounceResponse::decode(&enc).unwrap(), r);
    }

    #[test]
    fn empty_peers_forms() {
        for body in [
            &b"d8:intervali60e5:peers0:e"[..],
            b"d8:intervali60e5:peerslee",
            b"d8:intervali60ee",
        ] {
            let r = AnnounceResponse::decode(body).unwrap();
            assert!(r.peers.is_empty());
            assert_eq!(r.interval, Some(60));
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert_eq!(
            AnnounceResponse::decode(b"d5:peers7:abcdefge"),
            Err(HttpError::CompactLength {
                key: "peers",
                len: 7,
                stride: 6
            })
        );
        assert_eq!(
            AnnounceResponse::decode(b"d6:peers66:abcdefe"),
            Err(HttpError::CompactLength {
                key: "peers6",
                len: 6,
                stride: 18
            })
        );
        assert_eq!(AnnounceResponse::decode(b"li1ee"), Err(HttpError::NotADict));
        assert_eq!(
            AnnounceResponse::decode(b"d8:interval3:abce"),
            Err(HttpError::InvalidField("interval"))
        );
        assert_eq!(
            AnnounceResponse::decode(b"d5:peersli1eee"),
            Err(HttpError::InvalidField("peers"))
        );
        assert_eq!(
            AnnounceResponse::decode(b"d5:peersld2:ip9:127.0.0.14:porti70000eeee"),
            Err(HttpError::InvalidField("port"))
        );
        assert!(matches!(
            AnnounceResponse::decode(b"d5:peers"),
            Err(HttpError::Bencode(_))
        ));
        let too_many = {
            let mut b = format!("d5:peers{}:", 6 * (MAX_PEERS + 1)).into_bytes();
            b.extend_from_slice(&vec![1u8; 6 * (MAX_PEERS + 1)]);
            b.push(b'e');
            b
        };
        assert_eq!(
            AnnounceResponse::decode(&too_many),
            Err(HttpError::TooManyPeers(MAX_PEERS + 1))
        );
    }

    #[test]
    fn negative_counts_saturate_and_external_ip() {
        let r =
            AnnounceResponse::decode(b"d8:completei-3e11:external ip4:\x0a\x00\x00\x01e").unwrap();
        assert_eq!(r.complete, Some(0));
        assert_eq!(r.external_ip, Some("10.0.0.1".parse().unwrap()));
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
        ]
    }

    fn arb_peer() -> impl Strategy<Value = Peer> {
        (arb_addr(), proptest::option::of(any::<[u8; 20]>())).prop_map(|(addr, id)| Peer {
            addr,
            peer_id: id.map(Id20),
        })
    }

    fn arb_response() -> impl Strategy<Value = AnnounceResponse> {
        (
            (
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(".{0,20}"),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
            ),
            (
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(arb_addr().prop_map(|a| a.ip())),
                proptest::collection::vec(arb_peer(), 0..20),
            ),
        )
            .prop_map(
                |(
                    (interval, min_interval, warning_message, tracker_id),
                    (complete, incomplete, external_ip, peers),
                )| {
                    AnnounceResponse {
                        interval,
                        min_interval,
                        warning_message,
                        tracker_id,
                        complete,
                        incomplete,
                        external_ip,
                        peers,
                    }
                },
            )
    }

    fn arb_request() -> impl Strategy<Value = AnnounceRequest> {
        (
            (
                any::<[u8; 20]>(),
                any::<[u8; 20]>(),
                any::<u16>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            ),
            (
                proptest::option::of(prop_oneof![
                    Just(Event::Started),
                    Just(Event::Completed),
                    Just(Event::Stopped),
                    Just(Event::Paused)
                ]),
                any::<bool>(),
                any::<bool>(),
                proptest::option::of(any::<u32>()),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
                proptest::option::of(".{0,16}"),
            ),
        )
            .prop_map(
                |(
                    (ih, pid, port, up, down, left),
                    (event, compact, no_peer_id, numwant, key, trackerid, ip),
                )| {
                    AnnounceRequest {
                        info_hash: Id20(ih),
                        peer_id: Id20(pid),
                        port,
                        uploaded: up,
                        downloaded: down,
                        left,
                        event,
                        compact,
                        no_peer_id,
                        numwant,
                        key,
                        trackerid,
                        ip,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn request_roundtrip(req in arb_request()) {
            prop_assert_eq!(AnnounceRequest::from_query(&req.to_query()).unwrap(), req.clone());
            let url = req.to_url("https://t.example:8443/a/announce.php?pk=1");
            let q = url.split_once('?').unwrap().1;
            prop_assert_eq!(AnnounceRequest::from_query(q).unwrap(), req);
        }

        #[test]
        fn response_roundtrip_dictionary(r in arb_response()) {
            let enc = r.encode(PeerEncoding::Dictionary);
            prop_assert_eq!(AnnounceResponse::decode(&enc).unwrap(), r);
        }

        #[test]
        fn response_roundtrip_compact(r in arb_response()) {
            let enc = r.encode(PeerEncoding::Compact);
            let mut want = r.clone();
            let (v4, v6): (Vec<Peer>, Vec<Peer>) = r
                .peers
                .iter()
                .map(|p| Peer::from(p.addr))
                .partition(|p| p.addr.is_ipv4());
            want.peers = v4.into_iter().chain(v6).collect();
            prop_assert_eq!(AnnounceResponse::decode(&enc).unwrap(), want);
        }

        #[test]
        fn failure_roundtrip(reason in ".{0,40}") {
            prop_assert_eq!(
                AnnounceResponse::decode(&encode_failure(&reason)),
                Err(HttpError::Failure(reason))
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = AnnounceResponse::decode(&data);
        }

        #[test]
        fn arbitrary_queries_never_panic(q in ".{0,200}") {
            let _ = AnnounceRequest::from_query(&q);
        }
    }
}
