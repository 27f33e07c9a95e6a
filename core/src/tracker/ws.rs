//! WebTorrent WebSocket tracker messages: JSON text frames, as bittorrent-tracker 11 sends and
//! accepts them.
//!
//! Ids (`info_hash`, `peer_id`, `to_peer_id`, `offer_id`) are 20-byte binary strings: JSON
//! strings of exactly 20 characters, each U+0000–U+00FF standing for one byte. A wider character
//! is refused with [`WsError::InvalidId`]. [`ClientMessage`] is what a client sends (a tracker
//! parses it), [`TrackerMessage`] what a tracker sends (a client parses it); both have
//! `from_json` and `to_json`.
//!
//! Bounds: a message longer than [`MAX_MESSAGE_LEN`] bytes is refused before parsing. bittorrent-
//! tracker clients send at most 5 offers (older webtorrent 10), each a non-trickle SDP of roughly
//! 0.5–3 KiB, so 128 KiB leaves room for [`MAX_OFFERS`] (50) typical offers while keeping a
//! hostile frame cheap. At most [`MAX_SCRAPE_HASHES`] hashes per scrape.
//!
//! Numbers are read leniently, as JavaScript's `Number()` would leave them usable: integers,
//! floats (truncated), numeric strings; negative values read as 0, values past the type's range
//! saturate, and `null` (what `JSON.stringify` makes of `NaN`/`Infinity`, e.g. `left` of a magnet
//! without metadata) reads as absent. Unknown fields are ignored.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::id::{Id20, IdError, InfoHash, PeerId};

use super::{Event, ScrapeFile, MAX_SCRAPE_HASHES};

/// Longest JSON text accepted, in bytes.
pub const MAX_MESSAGE_LEN: usize = 128 * 1024;

/// Longest SDP accepted in an offer or answer, in bytes (a non-trickle SDP is 0.5–10 KiB).
pub const MAX_SDP_LEN: usize = 32 * 1024;

/// Most offers accepted in one announce.
pub const MAX_OFFERS: usize = 50;

/// Errors from parsing WebSocket tracker messages.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The text is longer than [`MAX_MESSAGE_LEN`].
    #[error("message is {0} bytes, more than {MAX_MESSAGE_LEN}")]
    TooLarge(usize),
    /// An offer's or answer's SDP is longer than [`MAX_SDP_LEN`].
    #[error("`{field}` SDP is {len} bytes, more than {MAX_SDP_LEN}")]
    SdpTooLarge {
        /// `offer` or `answer`.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The text is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("message is not a JSON object")]
    NotAnObject,
    /// No `action` (and no `failure reason`).
    #[error("message has no `action`")]
    MissingAction,
    /// An `action` other than `announce` or `scrape`.
    #[error("unknown `action`")]
    UnknownAction,
    /// A required field is absent or `null`.
    #[error("field `{0}` is missing")]
    MissingField(&'static str),
    /// A field has the wrong JSON type or an unusable value.
    #[error("field `{0}` has the wrong type or an invalid value")]
    InvalidField(&'static str),
    /// An id field that is not a 20-character binary string.
    #[error("`{field}` is not a binary string of 20 chars in U+0000..=U+00FF: {source}")]
    InvalidId {
        /// The field.
        field: &'static str,
        /// What was wrong with it.
        source: IdError,
    },
    /// More than [`MAX_OFFERS`] offers.
    #[error("{0} offers, more than {MAX_OFFERS}")]
    TooManyOffers(usize),
    /// More than [`MAX_SCRAPE_HASHES`] info hashes.
    #[error("{0} info hashes, more than {MAX_SCRAPE_HASHES}")]
    TooManyHashes(usize),
}

/// The `type` of a WebRTC session description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    /// `"offer"`
    Offer,
    /// `"pranswer"`
    Pranswer,
    /// `"answer"`
    Answer,
    /// `"rollback"`
    Rollback,
}

/// A WebRTC session description as simple-peer signals it: `{"type": "offer", "sdp": "v=0…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// Offer or answer.
    #[serde(rename = "type")]
    pub kind: SdpType,
    /// The SDP text (non-trickle: candidates included).
    #[serde(default)]
    pub sdp: String,
}

/// One entry of an announce's `offers`: `{"offer": {…}, "offer_id": "<20 chars>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    /// The session description.
    pub offer: SessionDescription,
    /// Random id the answer will refer to.
    #[serde(serialize_with = "ser_id")]
    pub offer_id: Id20,
}

/// Client → tracker `{"action": "announce", …}` without `answer`: a regular announce carrying
/// offers for the tracker to hand to other peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnounceRequest {
    /// The torrent.
    #[serde(serialize_with = "ser_id")]
    pub info_hash: InfoHash,
    /// The announcing peer.
    #[serde(serialize_with = "ser_id")]
    pub peer_id: PeerId,
    /// Peers wanted (bittorrent-tracker sends as many offers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numwant: Option<u32>,
    /// Bytes uploaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<u64>,
    /// Bytes downloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloaded: Option<u64>,
    /// Bytes missing; `None` when unknown (sent as absent; read from absent or `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<u64>,
    /// `None` for a regular announce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// Offers for other peers; omitted when empty (stopped and completed announces send none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<Offer>,
    /// `tracker id` from an earlier reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trackerid: Option<String>,
}

/// Client → tracker `{"action": "announce", "answer": …}`: the answer to a forwarded offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerRequest {
    /// The torrent.
    #[serde(serialize_with = "ser_id")]
    pub info_hash: InfoHash,
    /// The answering peer.
    #[serde(serialize_with = "ser_id")]
    pub peer_id: PeerId,
    /// The peer that made the offer.
    #[serde(serialize_with = "ser_id")]
    pub to_peer_id: PeerId,
    /// The session description answering the offer.
    pub answer: SessionDescription,
    /// The offer's id, echoed.
    #[serde(serialize_with = "ser_id")]
    pub offer_id: Id20,
    /// `tracker id` from an earlier reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trackerid: Option<String>,
}

/// Client → tracker `{"action": "scrape", "info_hash": …}`: one hash is sent as a string,
/// several as an array, none (all torrents) by leaving the field out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeRequest {
    /// The torrents asked about.
    pub info_hashes: Vec<InfoHash>,
}

/// Any message a client sends to a WebSocket tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Announce, possibly with offers.
    Announce(AnnounceRequest),
    /// Answer to a forwarded offer (also `action: "announce"`).
    Answer(AnswerRequest),
    /// Scrape.
    Scrape(ScrapeRequest),
}

/// Tracker → client announce reply: counts and interval, no peers (peers arrive as offers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnounceReply {
    /// The torrent (a client sharing one socket between torrents dispatches on it).
    #[serde(serialize_with = "ser_id")]
    pub info_hash: InfoHash,
    /// Seconds between announces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    /// Minimum seconds between announces.
    #[serde(rename = "min interval", skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<u32>,
    /// Seeders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<u32>,
    /// Leechers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<u32>,
    /// A non-fatal message.
    #[serde(rename = "warning message", skip_serializing_if = "Option::is_none")]
    pub warning_message: Option<String>,
    /// To be echoed as `trackerid`.
    #[serde(rename = "tracker id", skip_serializing_if = "Option::is_none")]
    pub tracker_id: Option<String>,
}

/// Tracker → client: another peer's offer, forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferMessage {
    /// The torrent.
    #[serde(serialize_with = "ser_id")]
    pub info_hash: InfoHash,
    /// The offering peer (the answer goes back to it as `to_peer_id`).
    #[serde(serialize_with = "ser_id")]
    pub peer_id: PeerId,
    /// Its session description.
    pub offer: SessionDescription,
    /// To echo in the answer.
    #[serde(serialize_with = "ser_id")]
    pub offer_id: Id20,
}

/// Tracker → client: the answer to one of our offers, forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerMessage {
    /// The torrent.
    #[serde(serialize_with = "ser_id")]
    pub info_hash: InfoHash,
    /// The answering peer.
    #[serde(serialize_with = "ser_id")]
    pub peer_id: PeerId,
    /// Its session description.
    pub answer: SessionDescription,
    /// Which of our offers it answers.
    #[serde(serialize_with = "ser_id")]
    pub offer_id: Id20,
}

/// Tracker → client scrape reply: `files` keyed by binary info hash, optional `flags`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeReply {
    /// Counts per torrent. Keys that are not binary ids are skipped when parsing.
    pub files: BTreeMap<InfoHash, ScrapeFile>,
    /// `flags.min_request_interval`.
    pub min_request_interval: Option<u32>,
}

/// Which request a failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WsAction {
    /// `"announce"`
    Announce,
    /// `"scrape"`
    Scrape,
}

/// Tracker → client `failure reason`. bittorrent-tracker sends a bare
/// `{"failure reason": …}` when it cannot parse the request, and adds `action` and `info_hash`
/// when it refuses a parsed one; an `info_hash` that is not a valid id reads as `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The request's action, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<WsAction>,
    /// Why the request was refused.
    #[serde(rename = "failure reason")]
    pub reason: String,
    /// The torrent, when given.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_id")]
    pub info_hash: Option<InfoHash>,
}

/// Any message a WebSocket tracker sends, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerMessage {
    /// Reply to our announce.
    AnnounceReply(AnnounceReply),
    /// A forwarded offer to answer.
    Offer(OfferMessage),
    /// A forwarded answer to one of our offers.
    Answer(AnswerMessage),
    /// Reply to our scrape.
    ScrapeReply(ScrapeReply),
    /// The tracker refused a request.
    Failure(Failure),
}

impl ClientMessage {
    /// Parses a client message (tracker side). `answer` present makes it an
    /// [`Answer`](ClientMessage::Answer), which then needs `to_peer_id` and `offer_id`.
    pub fn from_json(text: &str) -> Result<Self, WsError> {
        let obj = parse_object(text)?;
        match action(&obj)? {
            "announce" => {
                let info_hash = req_id(&obj, "info_hash")?;
                let peer_id = req_id(&obj, "peer_id")?;
                let trackerid = opt_string(&obj, "trackerid")?;
                if present(&obj, "answer") {
                    return Ok(ClientMessage::Answer(AnswerRequest {
                        info_hash,
                        peer_id,
                        to_peer_id: req_id(&obj, "to_peer_id")?,
                        answer: req_sdp(&obj, "answer")?,
                        offer_id: req_id(&obj, "offer_id")?,
                        trackerid,
                    }));
                }
                let event = match opt_string(&obj, "event")? {
                    None => None,
                    Some(s) => Event::parse(&s).map_err(|_| WsError::InvalidField("event"))?,
                };
                Ok(ClientMessage::Announce(AnnounceRequest {
                    info_hash,
                    peer_id,
                    numwant: opt_u32(&obj, "numwant")?,
                    uploaded: opt_u64(&obj, "uploaded")?,
                    downloaded: opt_u64(&obj, "downloaded")?,
                    left: opt_u64(&obj, "left")?,
                    event,
                    offers: offers(&obj)?,
                    trackerid,
                }))
            }
            "scrape" => Ok(ClientMessage::Scrape(ScrapeRequest {
                info_hashes: hash_list(&obj)?,
            })),
            _ => Err(WsError::UnknownAction),
        }
    }

    /// The JSON text to send.
    pub fn to_json(&self) -> String {
        match self {
            ClientMessage::Announce(m) => tagged("announce", m),
            ClientMessage::Answer(m) => tagged("announce", m),
            ClientMessage::Scrape(m) => tagged("scrape", m),
        }
    }
}

impl TrackerMessage {
    /// Parses a tracker message (client side). `failure reason` wins over everything else; an
    /// announce with `offer` is an [`Offer`](TrackerMessage::Offer), with `answer` an
    /// [`Answer`](TrackerMessage::Answer), otherwise an announce reply.
    pub fn from_json(text: &str) -> Result<Self, WsError> {
        let obj = parse_object(text)?;
        if present(&obj, "failure reason") {
            let reason = opt_string(&obj, "failure reason")?.unwrap_or_default();
            let action = match obj.get("action").and_then(Value::as_str) {
                Some("announce") => Some(WsAction::Announce),
                Some("scrape") => Some(WsAction::Scrape),
                _ => None,
            };
            let info_hash = obj
                .get("info_hash")
                .and_then(Value::as_str)
                .and_then(|s| Id20::from_latin1_str(s).ok());
            return Ok(TrackerMessage::Failure(Failure {
                action,
                reason,
                info_hash,
            }));
        }
        match action(&obj)? {
            "announce" => {
                let info_hash = req_id(&obj, "info_hash")?;
                if present(&obj, "offer") {
                    Ok(TrackerMessage::Offer(OfferMessage {
                        info_hash,
                        peer_id: req_id(&obj, "peer_id")?,
                        offer: req_sdp(&obj, "offer")?,
                        offer_id: req_id(&obj, "offer_id")?,
                    }))
                } else if present(&obj, "answer") {
                    Ok(TrackerMessage::Answer(AnswerMessage {
                        info_hash,
                        peer_id: req_id(&obj, "peer_id")?,
                        answer: req_sdp(&obj, "answer")?,
                        offer_id: req_id(&obj, "offer_id")?,
                    }))
                } else {
                    Ok(TrackerMessage::AnnounceReply(AnnounceReply {
                        info_hash,
                        interval: opt_u32(&obj, "interval")?,
                        min_interval: opt_u32(&obj, "min interval")?,
                        complete: opt_u32(&obj, "complete")?,
                        incomplete: opt_u32(&obj, "incomplete")?,
                        warning_message: opt_string(&obj, "warning message")?,
                        tracker_id: opt_string(&obj, "tracker id")?,
                    }))
                }
            }
            "scrape" => Ok(TrackerMessage::ScrapeReply(scrape_reply(&obj)?)),
            _ => Err(WsError::UnknownAction),
        }
    }

    /// The JSON text to send.
    pub fn to_json(&self) -> String {
        match self {
            TrackerMessage::AnnounceReply(m) => tagged("announce", m),
            TrackerMessage::Offer(m) => tagged("announce", m),
            TrackerMessage::Answer(m) => tagged("announce", m),
            TrackerMessage::ScrapeReply(m) => tagged("scrape", m),
            TrackerMessage::Failure(m) => to_string(m),
        }
    }
}

impl Serialize for ScrapeRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self.info_hashes.as_slice() {
            [] => {}
            [one] => m.serialize_entry("info_hash", &one.to_latin1_string())?,
            many => {
                let list: Vec<String> = many.iter().map(Id20::to_latin1_string).collect();
                m.serialize_entry("info_hash", &list)?;
            }
        }
        m.end()
    }
}

impl Serialize for ScrapeReply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Files<'a>(&'a BTreeMap<InfoHash, ScrapeFile>);
        impl Serialize for Files<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k.to_latin1_string(), v)))
            }
        }
        #[derive(Serialize)]
        struct Flags {
            min_request_interval: u32,
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("files", &Files(&self.files))?;
        if let Some(min_request_interval) = self.min_request_interval {
            m.serialize_entry(
                "flags",
                &Flags {
                    min_request_interval,
                },
            )?;
        }
        m.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Serialization helpers.

fn ser_id<S: Serializer>(id: &Id20, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_latin1_string())
}

fn ser_opt_id<S: Serializer>(id: &Option<Id20>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => ser_id(id, s),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct Tagged<'a, T> {
    action: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

impl WsError {
    /// Whether the message was refused for its size (the whole text or an SDP in it): a
    /// tracker closes such a connection rather than answer it.
    pub fn is_too_large(&self) -> bool {
        matches!(self, WsError::TooLarge(_) | WsError::SdpTooLarge { .. })
    }
}

fn tagged<T: Serialize>(action: &'static str, body: &T) -> String {
    to_string(&Tagged { action, body })
}

fn to_string<T: Serialize>(value: &T) -> String {
    // These types only produce string-keyed maps, strings and numbers: serializing cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers.

fn parse_object(text: &str) -> Result<Map<String, Value>, WsError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(WsError::TooLarge(text.len()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(WsError::NotAnObject),
        Err(e) => Err(WsError::Json(e.to_string())),
    }
}

fn action(obj: &Map<String, Value>) -> Result<&str, WsError> {
    match obj.get("action") {
        None | Some(Value::Null) => Err(WsError::MissingAction),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(WsError::InvalidField("action")),
    }
}

/// Present and neither `null` nor `false` (bittorrent-tracker tests these fields for truth).
fn present(obj: &Map<String, Value>, key: &str) -> bool {
    !matches!(
        obj.get(key),
        None | Some(Value::Null) | Some(Value::Bool(false))
    )
}

fn id_from(v: &Value, field: &'static str) -> Result<Id20, WsError> {
    let s = v.as_str().ok_or(WsError::InvalidField(field))?;
    Id20::from_latin1_str(s).map_err(|source| WsError::InvalidId { field, source })
}

fn req_id(obj: &Map<String, Value>, field: &'static str) -> Result<Id20, WsError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(WsError::MissingField(field)),
        Some(v) => id_from(v, field),
    }
}

fn req_sdp(obj: &Map<String, Value>, field: &'static str) -> Result<SessionDescription, WsError> {
    let sd = match obj.get(field) {
        None | Some(Value::Null) => return Err(WsError::MissingField(field)),
        Some(v) => SessionDescription::deserialize(v).map_err(|_| WsError::InvalidField(field))?,
    };
    if sd.sdp.len() > MAX_SDP_LEN {
        return Err(WsError::SdpTooLarge {
            field,
            len: sd.sdp.len(),
        });
    }
    Ok(sd)
}

fn opt_string(obj: &Map<String, Value>, field: &'static str) -> Result<Option<String>, WsError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(WsError::InvalidField(field)),
    }
}

/// A JSON number (or numeric string) as `u64`: truncated, negative → 0, saturating.
fn lenient_u64(v: &Value) -> Option<Option<u64>> {
    let from_f64 = |f: f64| {
        if f.is_nan() || f <= 0.0 {
            0
        } else {
            // `as` saturates at u64::MAX for large and infinite values.
            f as u64
        }
    };
    match v {
        Value::Null => Some(None),
        Value::Number(n) => Some(Some(if let Some(u) = n.as_u64() {
            u
        } else if n.as_i64().is_some() {
            0
        } else {
            from_f64(n.as_f64().unwrap_or(0.0))
        })),
        Value::String(s) => {
            let t = s.trim();
            if let Ok(u) = t.parse::<u64>() {
                Some(Some(u))
            } else {
                t.parse::<f64>().ok().map(|f| Some(from_f64(f)))
            }
        }
        _ => None,
    }
}

fn opt_u64(obj: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, WsError> {
    match obj.get(field) {
        None => Ok(None),
        Some(v) => lenient_u64(v).ok_or(WsError::InvalidField(field)),
    }
}

fn opt_u32(obj: &Map<String, Value>, field: &'static str) -> Result<Option<u32>, WsError> {
    Ok(opt_u64(obj, field)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

fn offers(obj: &Map<String, Value>) -> Result<Vec<Offer>, WsError> {
    let list = match obj.get("offers") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(WsError::InvalidField("offers")),
    };
    if list.len() > MAX_OFFERS {
        return Err(WsError::TooManyOffers(list.len()));
    }
    list.iter()
        .map(|item| {
            let entry = item.as_object().ok_or(WsError::InvalidField("offers"))?;
            Ok(Offer {
                offer: req_sdp(entry, "offer")?,
                offer_id: req_id(entry, "offer_id")?,
            })
        })
        .collect()
}

fn hash_list(obj: &Map<String, Value>) -> Result<Vec<InfoHash>, WsError> {
    match obj.get("info_hash") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v @ Value::String(_)) => Ok(vec![id_from(v, "info_hash")?]),
        Some(Value::Array(list)) => {
            if list.len() > MAX_SCRAPE_HASHES {
                return Err(WsError::TooManyHashes(list.len()));
            }
            list.iter().map(|v| id_from(v, "info_hash")).collect()
        }
        Some(_) => Err(WsError::InvalidField("info_hash")),
    }
}

fn scrape_reply(obj: &Map<String, Value>) -> Result<ScrapeReply, WsError> {
    let mut files = BTreeMap::new();
    match obj.get("files") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            if map.len() > MAX_SCRAPE_HASHES {
                return Err(WsError::TooManyHashes(map.len()));
            }
            for (key, value) in map {
                let Ok(hash) = Id20::from_latin1_str(key) else {
                    continue;
                };
                let stats = value.as_object().ok_or(WsError::InvalidField("files"))?;
                files.insert(
                    hash,
                    ScrapeFile {
                        complete: opt_u32(stats, "complete")?.unwrap_or(0),
                        downloaded: opt_u32(stats, "downloaded")?.unwrap_or(0),
                        incomplete: opt_u32(stats, "incomplete")?.unwrap_or(0),
                        name: opt_string(stats, "name")?,
                    },
                );
            }
        }
        Some(_) => return Err(WsError::InvalidField("files")),
    }
    let min_request_interval = match obj.get("flags") {
        None | Some(Value::Null) => None,
        Some(Value::Object(flags)) => opt_u32(flags, "min_request_interval")?,
        Some(_) => return Err(WsError::InvalidField("flags")),
    };
    Ok(ScrapeReply {
        files,
        min_request_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::test_support::arb_event;
    use proptest::prelude::*;

    /// A binary id with bytes across the whole range, including control and ≥ 0x80 bytes.
    fn wide_id(seed: u8) -> Id20 {
        Id20(core::array::from_fn(|i| {
            (i as u8).wrapping_mul(53).wrapping_add(seed)
        }))
    }

    fn json_str(id: &Id20) -> String {
        serde_json::to_string(&id.to_latin1_string()).unwrap()
    }

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
        a=candidate:1 1 udp 2113937151 192.168.1.2 54321 typ host\r\na=sctp-port:5000\r\n";

    /// What bittorrent-tracker 11's client sends (lib/client/websocket-tracker.js `announce`):
    /// opts (numwant, uploaded, downloaded, left, event) + action, info_hash, peer_id, offers.
    #[test]
    fn parses_client_announce_with_offers() {
        let (ih, pid, o1, o2) = (wide_id(0), wide_id(7), wide_id(100), wide_id(200));
        let text = format!(
            r#"{{"numwant":2,"uploaded":0,"downloaded":0,"left":null,"event":"started",
                "action":"announce","info_hash":{},"peer_id":{},
                "offers":[{{"offer":{{"type":"offer","sdp":{sdp}}},"offer_id":{}}},
                          {{"offer":{{"type":"offer","sdp":{sdp}}},"offer_id":{}}}],
                "somethingElse":true}}"#,
            json_str(&ih),
            json_str(&pid),
            json_str(&o1),
            json_str(&o2),
            sdp = serde_json::to_string(SDP).unwrap(),
        );
        let ClientMessage::Announce(a) = ClientMessage::from_json(&text).unwrap() else {
            panic!("announce expected");
        };
        assert_eq!((a.info_hash, a.peer_id), (ih, pid));
        assert_eq!(a.numwant, Some(2));
        assert_eq!((a.uploaded, a.downloaded, a.left), (Some(0), Some(0), None));
        assert_eq!(a.event, Some(Event::Started));
        assert_eq!(a.offers.len(), 2);
        assert_eq!(a.offers[1].offer_id, o2);
        assert_eq!(a.offers[0].offer.kind, SdpType::Offer);
        assert_eq!(a.offers[0].offer.sdp, SDP);
        let again =
            ClientMessage::from_json(&ClientMessage::Announce(a.clone()).to_json()).unwrap();
        assert_eq!(again, ClientMessage::Announce(a));
    }

    /// The answer a bittorrent-tracker client sends back for a forwarded offer.
    #[test]
    fn parses_client_answer() {
        let text = format!(
            r#"{{"action":"announce","info_hash":{},"peer_id":{},"to_peer_id":{},
                "answer":{{"type":"answer","sdp":"v=0\r\n"}},"offer_id":{}}}"#,
            json_str(&wide_id(1)),
            json_str(&wide_id(2)),
            json_str(&wide_id(3)),
            json_str(&wide_id(4)),
        );
        let m = ClientMessage::from_json(&text).unwrap();
        let ClientMessage::Answer(a) = &m else {
            panic!("answer expected");
        };
        assert_eq!(a.to_peer_id, wide_id(3));
        assert_eq!(a.offer_id, wide_id(4));
        assert_eq!(a.answer.kind, SdpType::Answer);
        assert_eq!(ClientMessage::from_json(&m.to_json()).unwrap(), m);
        // `answer` without `to_peer_id` is refused, as bittorrent-tracker does.
        let text = text.replace("to_peer_id", "to_peer_idx");
        assert_eq!(
            ClientMessage::from_json(&text),
            Err(WsError::MissingField("to_peer_id"))
        );
    }

    #[test]
    fn scrape_request_string_or_array() {
        let one = format!(
            r#"{{"action":"scrape","info_hash":{}}}"#,
            json_str(&wide_id(9))
        );
        assert_eq!(
            ClientMessage::from_json(&one).unwrap(),
            ClientMessage::Scrape(ScrapeRequest {
                info_hashes: vec![wide_id(9)]
            })
        );
        let two = format!(
            r#"{{"action":"scrape","info_hash":[{},{}]}}"#,
            json_str(&wide_id(1)),
            json_str(&wide_id(2))
        );
        let m = ClientMessage::from_json(&two).unwrap();
        assert_eq!(
            m,
            ClientMessage::Scrape(ScrapeRequest {
                info_hashes: vec![wide_id(1), wide_id(2)]
            })
        );
        assert_eq!(ClientMessage::from_json(&m.to_json()).unwrap(), m);
        let single = ClientMessage::Scrape(ScrapeRequest {
            info_hashes: vec![wide_id(5)],
        })
        .to_json();
        assert_eq!(
            single,
            format!(
                r#"{{"action":"scrape","info_hash":{}}}"#,
                json_str(&wide_id(5))
            )
        );
        let all = ClientMessage::from_json(r#"{"action":"scrape"}"#).unwrap();
        assert_eq!(all, ClientMessage::Scrape(ScrapeRequest::default()));
        assert_eq!(all.to_json(), r#"{"action":"scrape"}"#);
    }

    /// Replies as bittorrent-tracker 11 server.js `_onWebSocketRequest` writes them.
    #[test]
    fn classifies_tracker_messages() {
        let ih = wide_id(0);
        let reply = format!(
            r#"{{"complete":3,"incomplete":5,"action":"announce","info_hash":{},"interval":120}}"#,
            json_str(&ih)
        );
        assert_eq!(
            TrackerMessage::from_json(&reply).unwrap(),
            TrackerMessage::AnnounceReply(AnnounceReply {
                info_hash: ih,
                interval: Some(120),
                min_interval: None,
                complete: Some(3),
                incomplete: Some(5),
                warning_message: None,
                tracker_id: None,
            })
        );
        let offer = format!(
            r#"{{"action":"announce","offer":{{"type":"offer","sdp":"x"}},"offer_id":{},"peer_id":{},"info_hash":{}}}"#,
            json_str(&wide_id(1)),
            json_str(&wide_id(2)),
            json_str(&ih)
        );
        let TrackerMessage::Offer(o) = TrackerMessage::from_json(&offer).unwrap() else {
            panic!("offer expected");
        };
        assert_eq!(
            (o.offer_id, o.peer_id, o.info_hash),
            (wide_id(1), wide_id(2), ih)
        );
        let answer = offer.replace(r#""offer":{"type":"offer""#, r#""answer":{"type":"answer""#);
        let TrackerMessage::Answer(a) = TrackerMessage::from_json(&answer).unwrap() else {
            panic!("answer expected");
        };
        assert_eq!(a.answer.kind, SdpType::Answer);
        let scrape = format!(
            r#"{{"action":"scrape","files":{{{}:{{"complete":1,"incomplete":2,"downloaded":1}}}},"flags":{{"min_request_interval":600}}}}"#,
            json_str(&ih)
        );
        let TrackerMessage::ScrapeReply(s) = TrackerMessage::from_json(&scrape).unwrap() else {
            panic!("scrape expected");
        };
        assert_eq!(s.min_request_interval, Some(600));
        assert_eq!(
            s.files[&ih],
            ScrapeFile {
                complete: 1,
                downloaded: 1,
                incomplete: 2,
                name: None
            }
        );
    }

    #[test]
    fn failures_with_and_without_context() {
        // Parse error: bare failure.
        assert_eq!(
            TrackerMessage::from_json(r#"{"failure reason":"invalid info_hash"}"#).unwrap(),
            TrackerMessage::Failure(Failure {
                action: None,
                reason: "invalid info_hash".into(),
                info_hash: None
            })
        );
        // Refused request: action and info_hash added.
        let text = format!(
            r#"{{"action":"announce","failure reason":"disallowed torrent","info_hash":{}}}"#,
            json_str(&wide_id(3))
        );
        let m = TrackerMessage::from_json(&text).unwrap();
        assert_eq!(
            m,
            TrackerMessage::Failure(Failure {
                action: Some(WsAction::Announce),
                reason: "disallowed torrent".into(),
                info_hash: Some(wide_id(3))
            })
        );
        assert_eq!(TrackerMessage::from_json(&m.to_json()).unwrap(), m);
        // A scrape failure's info_hash is not a usable id: dropped, not an error.
        let m = TrackerMessage::from_json(
            r#"{"action":"scrape","failure reason":"x","info_hash":"garbage"}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            TrackerMessage::Failure(Failure {
                info_hash: None,
                ..
            })
        ));
    }

    #[test]
    fn rejects_wide_chars_and_bad_shapes() {
        let wide = format!(
            r#"{{"action":"scrape","info_hash":"{}\u0100"}}"#,
            "a".repeat(19)
        );
        let err = ClientMessage::from_json(&wide).unwrap_err();
        assert_eq!(
            err,
            WsError::InvalidId {
                field: "info_hash",
                source: IdError::Char('\u{100}')
            }
        );
        assert!(err.to_string().contains("U+00FF"));
        let short = r#"{"action":"announce","info_hash":"abc","peer_id":"abc"}"#;
        assert!(matches!(
            ClientMessage::from_json(short),
            Err(WsError::InvalidId {
                field: "info_hash",
                ..
            })
        ));
        assert_eq!(ClientMessage::from_json("[1]"), Err(WsError::NotAnObject));
        assert_eq!(ClientMessage::from_json("{}"), Err(WsError::MissingAction));
        assert_eq!(
            ClientMessage::from_json(r#"{"action":"bogus"}"#),
            Err(WsError::UnknownAction)
        );
        assert!(matches!(
            ClientMessage::from_json("{"),
            Err(WsError::Json(_))
        ));
        let big = format!(
            r#"{{"action":"scrape","x":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_LEN)
        );
        assert_eq!(
            ClientMessage::from_json(&big),
            Err(WsError::TooLarge(big.len()))
        );
        let ids = format!(
            r#""action":"announce","info_hash":{},"peer_id":{}"#,
            json_str(&wide_id(0)),
            json_str(&wide_id(1))
        );
        let offer = format!(
            r#"{{"offer":{{"type":"offer","sdp":""}},"offer_id":{}}}"#,
            json_str(&wide_id(2))
        );
        let many = vec![offer.as_str(); MAX_OFFERS + 1].join(",");
        assert_eq!(
            ClientMessage::from_json(&format!("{{{ids},\"offers\":[{many}]}}")),
            Err(WsError::TooManyOffers(MAX_OFFERS + 1))
        );
        assert_eq!(
            ClientMessage::from_json(&format!(
                r#"{{{ids},"offers":[{{"offer":{{"type":"bogus","sdp":""}},"offer_id":{}}}]}}"#,
                json_str(&wide_id(2))
            )),
            Err(WsError::InvalidField("offer"))
        );
        assert_eq!(
            ClientMessage::from_json(&format!(r#"{{{ids},"event":"exploded"}}"#)),
            Err(WsError::InvalidField("event"))
        );
        assert_eq!(
            ClientMessage::from_json(&format!(r#"{{{ids},"numwant":"many"}}"#)),
            Err(WsError::InvalidField("numwant"))
        );
    }

    #[test]
    fn lenient_numbers() {
        let ids = format!(
            r#""action":"announce","info_hash":{},"peer_id":{}"#,
            json_str(&wide_id(0)),
            json_str(&wide_id(1))
        );
        let text = format!(
            r#"{{{ids},"numwant":1e20,"uploaded":-4,"downloaded":"12","left":1.9,"event":"update"}}"#
        );
        let ClientMessage::Announce(a) = ClientMessage::from_json(&text).unwrap() else {
            panic!("announce expected");
        };
        assert_eq!(a.numwant, Some(u32::MAX));
        assert_eq!(
            (a.uploaded, a.downloaded, a.left),
            (Some(0), Some(12), Some(1))
        );
        assert_eq!(a.event, None);
    }

    #[test]
    fn ids_serialize_one_char_per_byte() {
        let id = Id20([
            0x00, 0x7f, 0x80, 0xff, b'"', b'\\', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let m = ClientMessage::Scrape(ScrapeRequest {
            info_hashes: vec![id],
        });
        let text = m.to_json();
        let v: Value = serde_json::from_str(&text).unwrap();
        let s = v["info_hash"].as_str().unwrap();
        assert_eq!(s.chars().count(), 20);
        assert_eq!(s.chars().nth(3), Some('\u{ff}'));
        assert_eq!(ClientMessage::from_json(&text).unwrap(), m);
    }

    /// The exact key sets bittorrent-tracker 11 writes (server.js `_onWebSocketRequest`) and
    /// reads (lib/server/parse-websocket.js, lib/client/websocket-tracker.js).
    #[test]
    fn serialized_shapes_match_bittorrent_tracker() {
        use serde_json::json;
        let (ih, pid, to, oid) = (wide_id(0), wide_id(1), wide_id(2), wide_id(3));
        let s = |id: &Id20| id.to_latin1_string();
        let parse = |t: String| serde_json::from_str::<Value>(&t).unwrap();
        let sdp = |kind, sdp: &str| SessionDescription {
            kind,
            sdp: sdp.into(),
        };
        let reply = TrackerMessage::AnnounceReply(AnnounceReply {
            info_hash: ih,
            interval: Some(120),
            min_interval: None,
            complete: Some(3),
            incomplete: Some(5),
            warning_message: None,
            tracker_id: None,
        });
        assert_eq!(
            parse(reply.to_json()),
            json!({"action": "announce", "info_hash": s(&ih), "interval": 120,
                   "complete": 3, "incomplete": 5})
        );
        let offer = TrackerMessage::Offer(OfferMessage {
            info_hash: ih,
            peer_id: pid,
            offer: sdp(SdpType::Offer, "x"),
            offer_id: oid,
        });
        assert_eq!(
            parse(offer.to_json()),
            json!({"action": "announce", "offer": {"type": "offer", "sdp": "x"},
                   "offer_id": s(&oid), "peer_id": s(&pid), "info_hash": s(&ih)})
        );
        let scrape = TrackerMessage::ScrapeReply(ScrapeReply {
            files: [(
                ih,
                ScrapeFile {
                    complete: 1,
                    downloaded: 1,
                    incomplete: 2,
                    name: None,
                },
            )]
            .into(),
            min_request_interval: Some(600),
        });
        assert_eq!(
            parse(scrape.to_json()),
            json!({"action": "scrape",
                   "files": {s(&ih): {"complete": 1, "incomplete": 2, "downloaded": 1}},
                   "flags": {"min_request_interval": 600}})
        );
        let announce = ClientMessage::Announce(AnnounceRequest {
            info_hash: ih,
            peer_id: pid,
            numwant: Some(1),
            uploaded: Some(0),
            downloaded: Some(0),
            left: Some(10),
            event: Some(Event::Started),
            offers: vec![Offer {
                offer: sdp(SdpType::Offer, "x"),
                offer_id: oid,
            }],
            trackerid: None,
        });
        assert_eq!(
            parse(announce.to_json()),
            json!({"action": "announce", "info_hash": s(&ih), "peer_id": s(&pid), "numwant": 1,
                   "uploaded": 0, "downloaded": 0, "left": 10, "event": "started",
                   "offers": [{"offer": {"type": "offer", "sdp": "x"}, "offer_id": s(&oid)}]})
        );
        let answer = ClientMessage::Answer(AnswerRequest {
            info_hash: ih,
            peer_id: pid,
            to_peer_id: to,
            answer: sdp(SdpType::Answer, "y"),
            offer_id: oid,
            trackerid: Some("t".into()),
        });
        assert_eq!(
            parse(answer.to_json()),
            json!({"action": "announce", "info_hash": s(&ih), "peer_id": s(&pid),
                   "to_peer_id": s(&to), "answer": {"type": "answer", "sdp": "y"},
                   "offer_id": s(&oid), "trackerid": "t"})
        );
        let failure = TrackerMessage::Failure(Failure {
            action: None,
            reason: "invalid info_hash".into(),
            info_hash: None,
        });
        assert_eq!(
            parse(failure.to_json()),
            json!({"failure reason": "invalid info_hash"})
        );
    }

    fn arb_id() -> impl Strategy<Value = Id20> {
        any::<[u8; 20]>().prop_map(Id20)
    }

    fn arb_sdp() -> impl Strategy<Value = SessionDescription> {
        (
            prop_oneof![
                Just(SdpType::Offer),
                Just(SdpType::Answer),
                Just(SdpType::Pranswer),
                Just(SdpType::Rollback)
            ],
            ".{0,40}",
        )
            .prop_map(|(kind, sdp)| SessionDescription { kind, sdp })
    }

    fn arb_files() -> impl Strategy<Value = BTreeMap<InfoHash, ScrapeFile>> {
        proptest::collection::btree_map(
            arb_id(),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                proptest::option::of(".{0,8}"),
            )
                .prop_map(|(complete, downloaded, incomplete, name)| ScrapeFile {
                    complete,
                    downloaded,
                    incomplete,
                    name,
                }),
            0..5,
        )
    }

    fn arb_client() -> impl Strategy<Value = ClientMessage> {
        prop_oneof![
            (
                (arb_id(), arb_id(), proptest::option::of(any::<u32>())),
                (
                    proptest::option::of(any::<u64>()),
                    proptest::option::of(any::<u64>()),
                    proptest::option::of(any::<u64>()),
                ),
                arb_event(),
                proptest::collection::vec(
                    (arb_sdp(), arb_id()).prop_map(|(offer, offer_id)| Offer { offer, offer_id }),
                    0..4
                ),
                proptest::option::of(".{0,10}"),
            )
                .prop_map(
                    |(
                        (info_hash, peer_id, numwant),
                        (uploaded, downloaded, left),
                        event,
                        offers,
                        trackerid,
                    )| {
                        ClientMessage::Announce(AnnounceRequest {
                            info_hash,
                            peer_id,
                            numwant,
                            uploaded,
                            downloaded,
                            left,
                            event,
                            offers,
                            trackerid,
                        })
                    }
                ),
            (
                arb_id(),
                arb_id(),
                arb_id(),
                arb_sdp(),
                arb_id(),
                proptest::option::of(".{0,10}")
            )
                .prop_map(
                    |(info_hash, peer_id, to_peer_id, answer, offer_id, trackerid)| {
                        ClientMessage::Answer(AnswerRequest {
                            info_hash,
                            peer_id,
                            to_peer_id,
                            answer,
                            offer_id,
                            trackerid,
                        })
                    }
                ),
            proptest::collection::vec(arb_id(), 0..5)
                .prop_map(|info_hashes| ClientMessage::Scrape(ScrapeRequest { info_hashes })),
        ]
    }

    fn arb_tracker() -> impl Strategy<Value = TrackerMessage> {
        let opt32 = || proptest::option::of(any::<u32>());
        prop_oneof![
            (
                arb_id(),
                (opt32(), opt32(), opt32(), opt32()),
                proptest::option::of(".{0,10}"),
                proptest::option::of(".{0,10}"),
            )
                .prop_map(
                    |(
                        info_hash,
                        (interval, min_interval, complete, incomplete),
                        warning_message,
                        tracker_id,
                    )| {
                        TrackerMessage::AnnounceReply(AnnounceReply {
                            info_hash,
                            interval,
                            min_interval,
                            complete,
                            incomplete,
                            warning_message,
                            tracker_id,
                        })
                    }
                ),
            (arb_id(), arb_id(), arb_sdp(), arb_id()).prop_map(
                |(info_hash, peer_id, offer, offer_id)| {
                    TrackerMessage::Offer(OfferMessage {
                        info_hash,
                        peer_id,
                        offer,
                        offer_id,
                    })
                }
            ),
            (arb_id(), arb_id(), arb_sdp(), arb_id()).prop_map(
                |(info_hash, peer_id, answer, offer_id)| {
                    TrackerMessage::Answer(AnswerMessage {
                        info_hash,
                        peer_id,
                        answer,
                        offer_id,
                    })
                }
            ),
            (arb_files(), opt32()).prop_map(|(files, min_request_interval)| {
                TrackerMessage::ScrapeReply(ScrapeReply {
                    files,
                    min_request_interval,
                })
            }),
            (
                proptest::option::of(prop_oneof![
                    Just(WsAction::Announce),
                    Just(WsAction::Scrape)
                ]),
                ".{0,20}",
                proptest::option::of(arb_id()),
            )
                .prop_map(|(action, reason, info_hash)| {
                    TrackerMessage::Failure(Failure {
                        action,
                        reason,
                        info_hash,
                    })
                }),
        ]
    }

    proptest! {
        #[test]
        fn client_roundtrip(m in arb_client()) {
            prop_assert_eq!(ClientMessage::from_json(&m.to_json()), Ok(m));
        }

        #[test]
        fn tracker_roundtrip(m in arb_tracker()) {
            prop_assert_eq!(TrackerMessage::from_json(&m.to_json()), Ok(m));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = ClientMessage::from_json(&s);
            let _ = TrackerMessage::from_json(&s);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            keys in proptest::collection::vec(prop_oneof![
                Just("action"), Just("info_hash"), Just("peer_id"), Just("offer"), Just("answer"),
                Just("offers"), Just("offer_id"), Just("to_peer_id"), Just("files"), Just("flags"),
                Just("failure reason"), Just("numwant"), Just("left"), Just("event")
            ], 0..8),
            values in proptest::collection::vec(prop_oneof![
                Just("null"), Just("\"announce\""), Just("\"scrape\""), Just("1.5"), Just("-3"),
                Just("[]"), Just("{}"), Just("\"aaaaaaaaaaaaaaaaaaaa\""), Just("true"),
                Just("{\"type\":\"offer\",\"sdp\":\"\"}"), Just("[{\"offer\":null}]")
            ], 8),
        ) {
            let body: Vec<String> = keys
                .iter()
                .zip(values.iter())
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                .collect();
            let text = format!("{{{}}}", body.join(","));
            if let Ok(m) = ClientMessage::from_json(&text) {
                prop_assert_eq!(ClientMessage::from_json(&m.to_json()), Ok(m));
            }
            if let Ok(m) = TrackerMessage::from_json(&text) {
                prop_assert_eq!(TrackerMessage::from_json(&m.to_json()), Ok(m));
            }
        }
    }
}
