//! Web seeds (BEP 19): an HTTP(S) server in a torrent's `url-list` serves pieces through
//! Range requests. A [`WebSeedPeer`] stands in for such a server on the peer wire: the
//! torrent talks to it as to any peer (handshake, requests, cancels), and it answers with a
//! handshake, "have all", unchoke and the blocks it fetched. The torrent machinery is thus
//! unchanged for web seeds: the picker spreads requests over peers and web seeds, blocks are
//! verified by piece hash, and a web seed that sends wrong data is banned like a peer.
//!
//! The adapter never performs IO: [`poll_fetch`](WebSeedPeer::poll_fetch) gives HTTP GETs
//! (URL and byte range, several when a span crosses files), and the driver answers with
//! [`fetched`](WebSeedPeer::fetched). The session ([`crate::session`]) runs the adapters and
//! their retry schedule, so a driver only carries out [`Fetch`]es.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::id::Id20;
use crate::metainfo::Metainfo;
use crate::percent::{self, Keep};
use std::time::Duration;

use crate::time::Time;
use crate::wire::{BlockRequest, Decoder, Event, Handshake, Message, Reserved};

/// Largest span of the torrent fetched in one [`Fetch`].
pub const MAX_FETCH_BYTES: u64 = 4 << 20;
/// Most fetches one web seed has in flight.
pub const MAX_FETCHES: usize = 8;
/// With this many fetches in flight, a fetch waits until its span is [`MIN_FETCH_BYTES`].
pub const BUSY_FETCHES: usize = 2;
/// Smallest span fetched while the web seed is busy (see [`WebSeedPeer::poll_fetch`]).
pub const MIN_FETCH_BYTES: u64 = 1 << 20;
/// Most block requests queued for one web seed (more are refused).
pub const MAX_QUEUED: usize = 2048;
/// The first retry of a web seed that failed comes after this long; it doubles with each
/// failure in a row, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(15);
/// The longest wait before retrying a web seed.
pub const RETRY_MAX: Duration = Duration::from_secs(600);
/// Failures in a row after which a web seed is dropped for the torrent's lifetime.
pub const MAX_FAILURES: u32 = 6;
/// How long a driver lets one HTTP request of a [`Fetch`] take (connect and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a web seed cannot be used or stopped working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebSeedError {
    /// The URL is not `http://` or `https://`.
    #[error("web seed {0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// The HTTP request failed (status, connection, timeout), in the driver's words.
    #[error("web seed request failed: {0}")]
    Http(String),
    /// The server sent another number of bytes than the range asked for.
    #[error("web seed sent {got} bytes for a range of {want}")]
    WrongLength {
        /// Bytes asked for.
        want: u64,
        /// Bytes received.
        got: u64,
    },
    /// The torrent sent something a peer could not make sense of (a bug, not the server's).
    #[error("web seed adapter: {0}")]
    Protocol(String),
}

/// One HTTP GET of a [`Fetch`]: `Range: bytes=start-(end-1)` on `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRange {
    /// The file's URL.
    pub url: String,
    /// Bytes of that file.
    pub range: Range<u64>,
}

impl HttpRange {
    /// Whether a reply with this HTTP status answers the request: 206, or 200 from a server
    /// that ignores `Range` when the range starts at 0 (its first bytes are the range: keep
    /// only those). [`WebSeedPeer::fetched`] checks the body's length.
    pub fn check_status(&self, status: u16) -> Result<(), String> {
        match status {
            206 => Ok(()),
            200 if self.range.start == 0 => Ok(()),
            s => Err(format!("{}: HTTP {s}", self.url)),
        }
    }

    /// The `Range` header value.
    pub fn header(&self) -> String {
        format!(
            "bytes={}-{}",
            self.range.start,
            self.range.end.saturating_sub(1)
        )
    }
}

/// HTTP GETs to carry out; answer with [`WebSeedPeer::fetched`] (one body per request, in
/// order). A driver may run a fetch's requests one after another or at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Names the fetch in the answer.
    pub id: u64,
    /// The requests, in the torrent's byte order.
    pub requests: Vec<HttpRange>,
}

/// Part of a fetched span: bytes from HTTP, or a BEP 47 padding file (zeros, never fetched).
#[derive(Debug, Clone)]
enum Segment {
    Http(HttpRange),
    Zeros(u64),
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    segments: Vec<Segment>,
    blocks: Vec<BlockRequest>,
}

/// The URL of each file of a torrent on a web seed (BEP 19): a single-file torrent's URL is
/// the web seed's URL, with the name appended when it ends in `/`; a multi-file torrent's
/// files are at `URL/NAME/PATH...` (each component percent-encoded).
pub fn file_urls(base: &str, meta: &Metainfo) -> Result<Vec<String>, WebSeedError> {
    let lower = base.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(WebSeedError::BadUrl(base.to_string()));
    }
    let info = &meta.info;
    if info.single_file {
        let url = if base.ends_with('/') {
            format!(
                "{base}{}",
                percent::encode(info.name.as_bytes(), Keep::Component)
            )
        } else {
            base.to_string()
        };
        return Ok(vec![url; info.files.len()]);
    }
    let mut root = base.to_string();
    if !root.ends_with('/') {
        root.push('/');
    }
    percent::encode_into(&mut root, info.name.as_bytes(), Keep::Component);
    Ok(info
        .files
        .iter()
        .map(|f| {
            let mut u = root.clone();
            for c in &f.path {
                u.push('/');
                percent::encode_into(&mut u, c.as_bytes(), Keep::Component);
            }
            u
        })
        .collect())
}

/// A web seed on the peer wire; see the [module docs](self).
#[derive(Debug)]
pub struct WebSeedPeer {
    meta: Arc<Metainfo>,
    urls: Vec<String>,
    peer_id: Id20,
    /// Decodes what the torrent sends.
    decoder: Decoder,
    /// Bytes for the torrent.
    out: BytesMut,
    fast: bool,
    greeted: bool,
    /// Requests waiting for a fetch, by their torrent byte offset (one per offset).
    queue: BTreeMap<u64, BlockRequest>,
    inflight: Vec<InFlight>,
    next_id: u64,
    /// No queued run is [`MIN_FETCH_BYTES`] long (until the queue or the fetches change).
    small_runs_only: bool,
    /// Bytes delivered, for the driver's figures.
    delivered: u64,
}

impl WebSeedPeer {
    /// An adapter for the web seed at `url`, for a torrent whose metadata is known.
    pub fn new(url: &str, meta: Arc<Metainfo>) -> Result<WebSeedPeer, WebSeedError> {
        let urls = file_urls(url, &meta)?;
        // A peer id of its own, stable per URL: "-WS0000-" and a hash of the URL.
        let mut id = *b"-WS0000-000000000000";
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in url.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        for (i, slot) in id[8..].iter_mut().enumerate() {
            *slot = b"0123456789abcdef"[((h >> ((i % 16) * 4)) & 0xf) as usize];
        }
        Ok(WebSeedPeer {
            meta,
            urls,
            peer_id: Id20(id),
            decoder: Decoder::new(),
            out: BytesMut::new(),
            fast: false,
            greeted: false,
            queue: BTreeMap::new(),
            inflight: Vec::new(),
            next_id: 1,
            small_runs_only: false,
            delivered: 0,
        })
    }

    /// The peer id the adapter announces.
    pub fn peer_id(&self) -> Id20 {
        self.peer_id
    }

    /// Block bytes handed to the torrent so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Whether requests wait or fetches are in flight.
    pub fn is_busy(&self) -> bool {
        !self.queue.is_empty() || !self.inflight.is_empty()
    }

    /// Feeds bytes the torrent sent to this "peer".
    pub fn handle_transmit(&mut self, bytes: &[u8]) -> Result<(), WebSeedError> {
        self.decoder.extend(bytes);
        loop {
            let ev = self
                .decoder
                .next_event()
                .map_err(|e| WebSeedError::Protocol(e.to_string()))?;
            match ev {
                None => return Ok(()),
                Some(Event::HandshakeHeader(h)) => {
                    if h.info_hash != self.meta.info_hash {
                        return Err(WebSeedError::Protocol("another torrent's handshake".into()));
                    }
                    self.fast = h.reserved.fast_extension();
                    self.greet();
                }
                Some(Event::Handshake(_)) => {}
                Some(Event::Message(m)) => self.on_message(m),
            }
        }
    }

    fn greet(&mut self) {
        if self.greeted {
            return;
        }
        self.greeted = true;
        let mut reserved = Reserved::default();
        reserved.set_fast_extension(self.fast);
        reserved.set_extension_protocol(true);
        let mut hs = Handshake::new(self.meta.info_hash, self.peer_id);
        hs.reserved = reserved;
        hs.encode(&mut self.out);
        if self.fast {
            Message::HaveAll.encode(&mut self.out);
        } else {
            let n = self.meta.info.num_pieces() as usize;
            let mut bits = vec![0xffu8; n.div_ceil(8)];
            if n % 8 != 0 {
                if let Some(last) = bits.last_mut() {
                    *last = 0xff << (8 - n % 8);
                }
            }
            Message::Bitfield(Bytes::from(bits)).encode(&mut self.out);
        }
        // No extensions; only `reqq`: an HTTP server takes a deep queue of requests.
        let ext = crate::ext::ExtendedHandshake {
            v: Some("web seed".into()),
            reqq: Some(MAX_QUEUED as u32),
            upload_only: Some(true),
            ..Default::default()
        };
        Message::Extended {
            id: 0,
            payload: Bytes::from(ext.encode()),
        }
        .encode(&mut self.out);
        Message::Unchoke.encode(&mut self.out);
    }

    fn on_message(&mut self, m: Message) {
        self.small_runs_only = false;
        match m {
            Message::Request(r) => {
                let at = self.block_offset(&r);
                let Some(at) =
                    at.filter(|at| self.queue.len() < MAX_QUEUED && !self.queue.contains_key(at))
                else {
                    if self.fast {
                        Message::RejectRequest(r).encode(&mut self.out);
                    }
                    return;
                };
                self.queue.insert(at, r);
            }
            Message::Cancel(r) => {
                let at = self.block_offset(&r);
                if let Some(at) = at.filter(|at| self.queue.get(at) == Some(&r)) {
                    self.queue.remove(&at);
                    if self.fast {
                        Message::RejectRequest(r).encode(&mut self.out);
                    }
                }
            }
            // Interest, haves, keep-alives, extension messages: nothing to answer.
            _ => {}
        }
    }

    /// The torrent byte offset of a request, if it lies inside one piece of the torrent.
    fn block_offset(&self, r: &BlockRequest) -> Option<u64> {
        let info = &self.meta.info;
        if r.index >= info.num_pieces() || r.length == 0 {
            return None;
        }
        let pl = u64::from(info.piece_length());
        let piece_start = u64::from(r.index) * pl;
        let piece_len = info.total_length().saturating_sub(piece_start).min(pl);
        let end = u64::from(r.begin).checked_add(u64::from(r.length))?;
        (end <= piece_len).then_some(piece_start + u64::from(r.begin))
    }

    /// Bytes for the torrent (feed them as that peer's data).
    pub fn poll_to_torrent(&mut self) -> Option<BytesMut> {
        (!self.out.is_empty()).then(|| self.out.split())
    }

    /// The next HTTP work, if requests wait and fewer than [`MAX_FETCHES`] are in flight:
    /// queued blocks that follow each other in the torrent, up to [`MAX_FETCH_BYTES`]. While
    /// [`BUSY_FETCHES`] or more are in flight, only a run of at least [`MIN_FETCH_BYTES`] goes
    /// out: smaller ones wait to grow (the torrent adds requests as blocks arrive), so the
    /// server gets few large ranges instead of many small ones.
    pub fn poll_fetch(&mut self) -> Option<Fetch> {
        if self.inflight.len() >= MAX_FETCHES || self.queue.is_empty() {
            return None;
        }
        let busy = self.inflight.len() >= BUSY_FETCHES;
        if busy && self.small_runs_only {
            return None;
        }
        // The first run (lowest offset) when idle, else the first run that is large enough.
        let mut run: Option<(u64, u64)> = None;
        let mut cur: Option<(u64, u64)> = None;
        for (&at, r) in &self.queue {
            let len = u64::from(r.length);
            cur = match cur {
                Some((start, end)) if at == end && end - start + len <= MAX_FETCH_BYTES => {
                    Some((start, end + len))
                }
                Some(done) => {
                    if !busy || done.1 - done.0 >= MIN_FETCH_BYTES {
                        run = Some(done);
                        break;
                    }
                    Some((at, at + len))
                }
                None => Some((at, at + len)),
            };
        }
        let Some((start, end)) = run.or(cur.filter(|c| !busy || c.1 - c.0 >= MIN_FETCH_BYTES))
        else {
            self.small_runs_only = true;
            return None;
        };
        let mut blocks = Vec::new();
        let mut at = start;
        while at < end {
            let Some(r) = self.queue.remove(&at) else {
                break;
            };
            at += u64::from(r.length);
            blocks.push(r);
        }
        let segments = self.segments(start..end);
        let id = self.next_id;
        self.next_id += 1;
        let requests = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Http(h) => Some(h.clone()),
                Segment::Zeros(_) => None,
            })
            .collect();
        self.inflight.push(InFlight {
            id,
            segments,
            blocks,
        });
        Some(Fetch { id, requests })
    }

    /// A torrent byte span as per-file HTTP ranges (and zeros for padding files).
    fn segments(&self, span: Range<u64>) -> Vec<Segment> {
        let mut out = Vec::new();
        for (f, url) in self.meta.info.files.iter().zip(&self.urls) {
            let fend = f.offset + f.length;
            let s = span.start.max(f.offset);
            let e = span.end.min(fend);
            if s >= e {
                continue;
            }
            if f.padding {
                out.push(Segment::Zeros(e - s));
            } else {
                out.push(Segment::Http(HttpRange {
                    url: url.clone(),
                    range: s - f.offset..e - f.offset,
                }));
            }
        }
        out
    }

    /// The answer to fetch `id`: one body per request, in order, or the error that ended
    /// it. Wrong lengths and errors end the web seed's connection (the driver closes it and
    /// the torrent fetches its blocks elsewhere); an unknown id is ignored.
    pub fn fetched(
        &mut self,
        id: u64,
        result: Result<Vec<Bytes>, String>,
    ) -> Result<(), WebSeedError> {
        let Some(i) = self.inflight.iter().position(|f| f.id == id) else {
            return Ok(());
        };
        let f = self.inflight.swap_remove(i);
        self.small_runs_only = false;
        let bodies = result.map_err(WebSeedError::Http)?;
        let mut parts = Vec::with_capacity(f.segments.len());
        let mut bodies = bodies.into_iter();
        for s in &f.segments {
            match s {
                Segment::Zeros(n) => parts.push(Bytes::from(vec![0u8; *n as usize])),
                Segment::Http(h) => {
                    let want = h.range.end - h.range.start;
                    let body = bodies.next().unwrap_or_default();
                    if body.len() as u64 != want {
                        return Err(WebSeedError::WrongLength {
                            want,
                            got: body.len() as u64,
                        });
                    }
                    parts.push(body);
                }
            }
        }
        // One body (a span inside one file, the common case) is used as it is.
        let mut data = if parts.len() == 1 {
            parts.pop().unwrap_or_default()
        } else {
            let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in &parts {
                all.extend_from_slice(p);
            }
            all.freeze()
        };
        for b in f.blocks {
            let len = b.length as usize;
            if data.len() < len {
                return Err(WebSeedError::Protocol(
                    "span shorter than its blocks".into(),
                ));
            }
            let block = data.split_to(len);
            self.delivered += len as u64;
            Message::Piece {
                index: b.index,
                begin: b.begin,
                data: block,
            }
            .encode(&mut self.out);
        }
        Ok(())
    }
}

/// When to try a web seed again after `failures` failures in a row (`None`: give it up).
pub fn retry_at(now: Time, failures: u32) -> Option<Time> {
    if failures >= MAX_FAILURES {
        return None;
    }
    let shift = failures.saturating_sub(1).min(10);
    let wait = RETRY_FIRST.saturating_mul(1u32 << shift).min(RETRY_MAX);
    Some(now + wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::creator::TorrentCreator;

    fn meta_of(files: &[(&str, usize)], piece: u32) -> (Arc<Metainfo>, Vec<u8>) {
        let mut all = Vec::new();
        let mut list = Vec::new();
        for (i, (name, len)) in files.iter().enumerate() {
            let d: Vec<u8> = (0..*len).map(|j| (j * 7 + i * 13) as u8).collect();
            all.extend_from_slice(&d);
            list.push((vec![name.to_string()], d));
        }
        let c = TorrentCreator::new().with_piece_length(piece);
        let m = if files.len() == 1 {
            c.create_single_from_reader("one.bin", all.len() as u64, &all[..])
                .unwrap()
                .metainfo
        } else {
            let specs = list
                .iter()
                .map(|(p, d)| (p.clone(), d.len() as u64, &d[..]))
                .collect();
            c.create_multi("dir x", specs).unwrap().metainfo
        };
        (Arc::new(m), all)
    }

    #[test]
    fn urls_follow_bep19() {
        let (single, _) = meta_of(&[("a", 10)], 16384);
        assert_eq!(
            file_urls("http://h/f.bin", &single).unwrap(),
            ["http://h/f.bin"]
        );
        assert_eq!(
            file_urls("http://h/d/", &single).unwrap(),
            ["http://h/d/one.bin"]
        );
        let (multi, _) = meta_of(&[("a b", 10), ("c", 5)], 16384);
        assert_eq!(
            file_urls("https://h/seed", &multi).unwrap(),
            ["https://h/seed/dir%20x/a%20b", "https://h/seed/dir%20x/c"]
        );
        assert!(matches!(
            file_urls("ftp://h/", &multi),
            Err(WebSeedError::BadUrl(_))
        ));
    }

    /// Runs a torrent-side script against the adapter with a server holding `data`.
    #[test]
    fn requests_become_ranges_and_blocks_come_back() {
        let (meta, data) = meta_of(&[("a", 20000), ("b", 30000)], 16384);
        let mut ws = WebSeedPeer::new("http://h/", meta.clone()).unwrap();
        let mut out = BytesMut::new();
        let mut hs = Handshake::new(meta.info_hash, Id20([9; 20]));
        hs.reserved.set_fast_extension(true);
        hs.encode(&mut out);
        for (index, begin, length) in [
            (0, 0, 16384),
            (1, 0, 3616 + 12768),
            (2, 0, 1232),
            (0, 100, 5),
        ] {
            Message::Request(BlockRequest {
                index,
                begin,
                length,
            })
            .encode(&mut out);
        }
        // Out of range: rejected at once.
        Message::Request(BlockRequest {
            index: 9,
            begin: 0,
            length: 1,
        })
        .encode(&mut out);
        ws.handle_transmit(&out).unwrap();
        let mut reply = Decoder::new();
        reply.extend(&ws.poll_to_torrent().unwrap());
        assert!(matches!(
            reply.next_event(),
            Ok(Some(Event::HandshakeHeader(_)))
        ));
        assert!(matches!(reply.next_event(), Ok(Some(Event::Handshake(_)))));
        let mut msgs = Vec::new();
        while let Ok(Some(Event::Message(m))) = reply.next_event() {
            msgs.push(m);
        }
        assert_eq!(msgs[0], Message::HaveAll);
        assert!(matches!(&msgs[1], Message::Extended { id: 0, .. }));
        assert_eq!(msgs[2], Message::Unchoke);
        assert!(matches!(msgs[3], Message::RejectRequest(r) if r.index == 9));

        // The first fetch: the overlapping block at 100 goes alone after the contiguous run.
        let f = ws.poll_fetch().unwrap();
        assert_eq!(
            f.requests,
            [HttpRange {
                url: "http://h/dir%20x/a".into(),
                range: 0..16384
            },]
        );
        let body = |r: &HttpRange| {
            let base = if r.url.ends_with("/a") { 0 } else { 20000 };
            Bytes::copy_from_slice(
                &data[base + r.range.start as usize..base + r.range.end as usize],
            )
        };
        let g = ws.poll_fetch().unwrap();
        let bodies: Vec<Bytes> = g.requests.iter().map(body).collect();
        ws.fetched(g.id, Ok(bodies)).unwrap();
        let bodies: Vec<Bytes> = f.requests.iter().map(body).collect();
        ws.fetched(f.id, Ok(bodies)).unwrap();
        while let Some(h) = ws.poll_fetch() {
            let bodies: Vec<Bytes> = h.requests.iter().map(body).collect();
            ws.fetched(h.id, Ok(bodies)).unwrap();
        }
        assert!(!ws.is_busy());
        let mut got = Decoder::messages_only();
        got.extend(&ws.poll_to_torrent().unwrap());
        let mut blocks = 0;
        while let Ok(Some(Message::Piece {
            index,
            begin,
            data: d,
        })) = got.next_message()
        {
            let at = index as usize * 16384 + begin as usize;
            assert_eq!(&d[..], &data[at..at + d.len()]);
            blocks += 1;
        }
        assert_eq!(blocks, 4);
        assert_eq!(ws.delivered(), 16384 + 3616 + 12768 + 1232 + 5);
    }

    #[test]
    fn a_span_across_files_is_several_ranges_and_short_bodies_fail() {
        let (meta, _) = meta_of(&[("a", 20000), ("b", 30000)], 16384);
        let mut ws = WebSeedPeer::new("http://h", meta.clone()).unwrap();
        let mut out = BytesMut::new();
        Handshake::new(meta.info_hash, Id20([9; 20])).encode(&mut out);
        Message::Request(BlockRequest {
            index: 1,
            begin: 0,
            length: 16384,
        })
        .encode(&mut out);
        ws.handle_transmit(&out).unwrap();
        let f = ws.poll_fetch().unwrap();
        assert_eq!(f.requests.len(), 2);
        assert_eq!(f.requests[0].range, 16384..20000);
        assert_eq!(f.requests[1].range, 0..12768);
        assert_eq!(f.requests[1].header(), "bytes=0-12767");
        let err = ws
            .fetched(
                f.id,
                Ok(vec![Bytes::from(vec![0; 3616]), Bytes::from(vec![0; 5])]),
            )
            .unwrap_err();
        assert_eq!(
            err,
            WebSeedError::WrongLength {
                want: 12768,
                got: 5
            }
        );
    }

    #[test]
    fn a_busy_web_seed_holds_small_runs_until_a_fetch_returns() {
        let (meta, data) = meta_of(&[("a", 4 << 20)], 1 << 20);
        let mut ws = WebSeedPeer::new("http://h/a", meta.clone()).unwrap();
        let mut out = BytesMut::new();
        Handshake::new(meta.info_hash, Id20([9; 20])).encode(&mut out);
        let blocks = |index: u32, from: u32, to: u32| {
            (from..to).map(move |b| BlockRequest {
                index,
                begin: b * 16384,
                length: 16384,
            })
        };
        // Piece 0 whole, piece 2 whole, four blocks in the middle of piece 3.
        for r in blocks(0, 0, 64)
            .chain(blocks(2, 0, 64))
            .chain(blocks(3, 10, 14))
        {
            Message::Request(r).encode(&mut out);
        }
        ws.handle_transmit(&out).unwrap();
        let f1 = ws.poll_fetch().unwrap();
        assert_eq!(f1.requests[0].range, 0..1 << 20);
        let f2 = ws.poll_fetch().unwrap();
        assert_eq!(f2.requests[0].range, 2 << 20..3 << 20);
        // Two in flight: the 64 KiB run waits.
        assert_eq!(ws.poll_fetch(), None);
        assert_eq!(ws.poll_fetch(), None);
        let body = |f: &Fetch| {
            let r = &f.requests[0].range;
            vec![Bytes::copy_from_slice(
                &data[r.start as usize..r.end as usize],
            )]
        };
        ws.fetched(f1.id, Ok(body(&f1))).unwrap();
        let f3 = ws.poll_fetch().unwrap();
        let at = (3 << 20) + 10 * 16384;
        assert_eq!(f3.requests[0].range, at..at + 4 * 16384);
        ws.fetched(f2.id, Ok(body(&f2))).unwrap();
        ws.fetched(f3.id, Ok(body(&f3))).unwrap();
        assert!(!ws.is_busy());
        assert_eq!(ws.delivered(), (2 << 20) + 4 * 16384);
    }

    #[test]
    fn retries_back_off_then_give_up() {
        let t0 = Time::ZERO;
        assert_eq!(retry_at(t0, 1), Some(t0 + RETRY_FIRST));
        assert_eq!(retry_at(t0, 2), Some(t0 + RETRY_FIRST * 2));
        assert_eq!(retry_at(t0, 5), Some(t0 + RETRY_MAX.min(RETRY_FIRST * 16)));
        assert_eq!(retry_at(t0, MAX_FAILURES), None);
    }
}
