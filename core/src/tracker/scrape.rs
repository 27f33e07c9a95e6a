//! HTTP scrape (BEP 48): the scrape URL convention, the request query and the bencoded response.
//!
//! Response keys under `files` that are exactly 20 bytes are info hashes. bittorrent-tracker
//! (its HTTP scrape) writes the key as the UTF-8 encoding of a 20-character binary string, which
//! turns every byte ≥ 0x80 into two bytes; such a key (valid UTF-8, 20 characters, all
//! ≤ U+00FF) is mapped back to the hash. Any other key is skipped without error.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bencode::{self, write_bytes, Limits, Value};
use crate::id::{Id20, InfoHash};

use super::http::{
    check_failure, opt_text, opt_u32, parse_id, put_u32, query_pairs, start_url, HttpError,
};
use super::MAX_SCRAPE_HASHES;
use crate::percent::{self, Keep};

const SCRAPE_LIMITS: Limits = Limits {
    max_depth: 8,
    max_values: 8 * MAX_SCRAPE_HASHES + 64,
};

/// The scrape URL for an announce URL, or `None` when the tracker has none by convention.
///
/// The last component of the URL's path must start with `announce`; that prefix becomes
/// `scrape` and everything after it (rest of the component, query, fragment) is kept verbatim.
/// Only the path is examined (BEP 48), so `announce` in the host or the query does not count;
/// the scheme is not checked (UDP trackers scrape with [`udp`](super::udp) packets instead).
pub fn scrape_url(announce_url: &str) -> Option<String> {
    let path_end = announce_url.find(['?', '#']).unwrap_or(announce_url.len());
    let (before, tail) = announce_url.split_at(path_end);
    let path_start = match before.find("://") {
        Some(i) => {
            let authority = i + 3;
            authority + before.get(authority..)?.find('/')?
        }
        None => before.find('/')?,
    };
    let (origin, path) = before.split_at(path_start);
    let slash = path.rfind('/')?;
    let (dir, last) = path.split_at(slash + 1);
    let rest = last.strip_prefix("announce")?;
    Some(format!("{origin}{dir}scrape{rest}{tail}"))
}

/// A scrape request: one `info_hash` parameter per torrent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeRequest {
    /// The torrents asked about; empty asks for all (trackers may refuse).
    pub info_hashes: Vec<InfoHash>,
}

impl ScrapeRequest {
    /// The query string (without `?`): `info_hash=…&info_hash=…`.
    pub fn to_query(&self) -> String {
        let mut q = String::with_capacity(self.info_hashes.len() * 72);
        for (i, h) in self.info_hashes.iter().enumerate() {
            if i > 0 {
                q.push('&');
            }
            q.push_str("info_hash=");
            percent::encode_into(&mut q, h.as_bytes(), Keep::Unreserved);
        }
        q
    }

    /// The request URL for `scrape_url` (see [`scrape_url`]); an existing query is kept.
    pub fn to_url(&self, scrape_url: &str) -> String {
        if self.info_hashes.is_empty() {
            return scrape_url
                .split_once('#')
                .map_or(scrape_url, |(b, _)| b)
                .to_string();
        }
        let mut url = start_url(scrape_url);
        url.push_str(&self.to_query());
        url
    }

    /// Parses a scrape query string, keeping every `info_hash` (each exactly 20 bytes) in order
    /// and ignoring other parameters. At most [`MAX_SCRAPE_HASHES`].
    pub fn from_query(query: &str) -> Result<Self, HttpError> {
        let mut info_hashes = Vec::new();
        for (name, value) in query_pairs(query)? {
            if name == b"info_hash" {
                if info_hashes.len() == MAX_SCRAPE_HASHES {
                    return Err(HttpError::TooManyHashes);
                }
                info_hashes.push(parse_id(&value, "info_hash")?);
            }
        }
        Ok(ScrapeRequest { info_hashes })
    }
}

/// Swarm statistics for one torrent, as in BEP 48 (and the WebSocket scrape reply).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ScrapeFile {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads the tracker has registered.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
    /// The torrent's name, when the tracker sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A successful scrape response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    /// Statistics per info hash.
    pub files: BTreeMap<InfoHash, ScrapeFile>,
    /// `flags.min_request_interval`: seconds before the next scrape.
    pub min_request_interval: Option<u32>,
}

impl ScrapeResponse {
    /// Decodes a response body; `failure reason` becomes [`HttpError::Failure`].
    ///
    /// Missing counters read as 0. `files` may also be spelled `host` (seen in the wild).
    pub fn decode(body: &[u8]) -> Result<Self, HttpError> {
        let v = bencode::decode_with(body, SCRAPE_LIMITS)?;
        if v.as_dict().is_none() {
            return Err(HttpError::NotADict);
        }
        check_failure(&v)?;
        let mut files = BTreeMap::new();
        match v.get(b"files").or_else(|| v.get(b"host")) {
            None => {}
            Some(Value::Dict(entries)) => {
                if entries.len() > MAX_SCRAPE_HASHES {
                    return Err(HttpError::TooManyHashes);
                }
                for (key, value) in entries {
                    if let Some(hash) = key_to_hash(key) {
                        files.insert(hash, file_from(value)?);
                    }
                }
            }
            Some(_) => return Err(HttpError::InvalidField("files")),
        }
        let min_request_interval = match v.get(b"flags") {
            None => None,
            Some(flags @ Value::Dict(_)) => opt_u32(flags, "min_request_interval")?,
            Some(_) => return Err(HttpError::InvalidField("flags")),
        };
        Ok(ScrapeResponse {
            files,
            min_request_interval,
        })
    }

    /// Encodes the response as canonical bencode (info hashes are raw 20-byte keys).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.files.len() * 96);
        out.push(b'd');
        write_bytes(&mut out, b"files");
        out.push(b'd');
        for (hash, f) in &self.files {
            write_bytes(&mut out, hash.as_bytes());
            out.push(b'd');
            put_u32(&mut out, "complete", Some(f.complete));
            put_u32(&mut out, "downloaded", Some(f.downloaded));
            put_u32(&mut out, "incomplete", Some(f.incomplete));
            if let Some(name) = &f.name {
                write_bytes(&mut out, b"name");
                write_bytes(&mut out, name.as_bytes());
            }
            out.push(b'e');
        }
        out.push(b'e');
        if self.min_request_interval.is_some() {
            write_bytes(&mut out, b"flags");
            out.push(b'd');
            put_u32(&mut out, "min_request_interval", self.min_request_interval);
            out.push(b'e');
        }
        out.push(b'e');
        out
    }
}

/// A raw 20-byte key, or bittorrent-tracker's UTF-8 re-encoding of a 20-char binary string.
pub(super) fn key_to_hash(key: &[u8]) -> Option<InfoHash> {
    if key.len() == 20 {
        return Id20::from_slice(key).ok();
    }
    if key.len() > 40 {
        return None;
    }
    std::str::from_utf8(key)
        .ok()
        .and_then(|s| Id20::from_latin1_str(s).ok())
}

fn file_from(v: &Value<'_>) -> Result<ScrapeFile, HttpError> {
    if v.as_dict().is_none() {
        return Err(HttpError::InvalidField("files"));
    }
    Ok(ScrapeFile {
        complete: opt_u32(v, "complete")?.unwrap_or(0),
        downloaded: opt_u32(v, "downloaded")?.unwrap_or(0),
        incomplete: opt_u32(v, "incomplete")?.unwrap_or(0),
        name: opt_text(v, "name")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scrape_url_convention_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "http://example.com/announce",
                Some("http://example.com/scrape"),
            ),
            (
                "http://example.com/x/announce",
                Some("http://example.com/x/scrape"),
            ),
            (
                "http://example.com/announce.php",
                Some("http://example.com/scrape.php"),
            ),
            ("http://example.com/a", None),
            (
                "http://example.com/announce?x2%0644",
                Some("http://example.com/scrape?x2%0644"),
            ),
            (
                "http://example.com/announce?x=2%0644",
                Some("http://example.com/scrape?x=2%0644"),
            ),
            ("http://example.com/x%064announce", None),
            // Only the path counts: not the host, not the query.
            ("http://announce.example.com", None),
            ("http://announce.example.com/", None),
            ("http://example.com/a?announce", None),
            ("https://t.example:443/pk/announce/", None),
            (
                "http://example.com/announce#frag",
                Some("http://example.com/scrape#frag"),
            ),
            ("/announce", Some("/scrape")),
            ("", None),
        ];
        for (announce, want) in cases {
            assert_eq!(scrape_url(announce).as_deref(), *want, "{announce}");
        }
    }

    #[test]
    fn request_url_repeats_info_hash() {
        let req = ScrapeRequest {
            info_hashes: vec![Id20([b'a'; 20]), Id20([0xff; 20])],
        };
        let url = req.to_url("http://t.example/scrape?pk=1");
        assert_eq!(
            url,
            format!(
                "http://t.example/scrape?pk=1&info_hash={}&info_hash={}",
                "a".repeat(20),
                "%FF".repeat(20)
            )
        );
        let q = url.split_once('?').unwrap().1;
        assert_eq!(ScrapeRequest::from_query(q).unwrap(), req);
        assert_eq!(
            ScrapeRequest::default().to_url("http://t.example/scrape#x"),
            "http://t.example/scrape"
        );
        assert_eq!(
            ScrapeRequest::from_query("info_hash=abc"),
            Err(HttpError::InvalidParam("info_hash"))
        );
        let many = "info_hash=aaaaaaaaaaaaaaaaaaaa&".repeat(MAX_SCRAPE_HASHES + 1);
        assert!(ScrapeRequest::from_query(&many).is_err());
    }

    #[test]
    fn decodes_bep48_example_and_flags() {
        let body =
            b"d5:filesd20:....................d8:completei5e10:downloadedi50e10:incompletei10eee\
                     5:flagsd20:min_request_intervali900eee";
        let r = ScrapeResponse::decode(body).unwrap();
        let f = &r.files[&Id20([b'.'; 20])];
        assert_eq!((f.complete, f.downloaded, f.incomplete), (5, 50, 10));
        assert_eq!(f.name, None);
        assert_eq!(r.min_request_interval, Some(900));
        assert_eq!(r.encode(), body.to_vec());
    }

    #[test]
    fn failure_and_bad_keys() {
        assert_eq!(
            ScrapeResponse::decode(b"d14:failure reason6:no waye"),
            Err(HttpError::Failure("no way".into()))
        );
        // A 3-byte key and a 21-byte non-UTF-8 key are skipped; the good one stays.
        let mut body = b"d5:filesd3:abcd8:completei1ee21:".to_vec();
        body.extend_from_slice(&[0xff; 21]);
        body.extend_from_slice(b"d8:completei2ee20:bbbbbbbbbbbbbbbbbbbbd4:name1:xeee");
        let r = ScrapeResponse::decode(&body).unwrap();
        assert_eq!(r.files.len(), 1);
        assert_eq!(r.files[&Id20([b'b'; 20])].name.as_deref(), Some("x"));
        assert_eq!(
            ScrapeResponse::decode(b"d5:filesli1eee"),
            Err(HttpError::InvalidField("files"))
        );
        assert_eq!(
            ScrapeResponse::decode(b"d5:filesd20:bbbbbbbbbbbbbbbbbbbbi1eee"),
            Err(HttpError::InvalidField("files"))
        );
    }

    /// bittorrent-tracker's HTTP scrape writes a binary key as UTF-8 text: recover it.
    #[test]
    fn recovers_utf8_mangled_key_from_bittorrent_tracker() {
        let hash = Id20(core::array::from_fn(|i| (i as u8).wrapping_mul(37) | 0x80));
        let mangled = hash.to_latin1_string();
        assert!(mangled.len() > 20);
        let mut body = b"d5:filesd".to_vec();
        write_bytes(&mut body, mangled.as_bytes());
        body.extend_from_slice(b"d8:completei1e10:downloadedi1e10:incompletei0eee5:flagsd20:min_request_intervali600eee");
        let r = ScrapeResponse::decode(&body).unwrap();
        assert_eq!(r.files.keys().copied().collect::<Vec<_>>(), vec![hash]);
    }

    fn arb_response() -> impl Strategy<Value = ScrapeResponse> {
        (
            proptest::collection::btree_map(
                any::<[u8; 20]>().prop_map(Id20),
                (
                    any::<u32>(),
                    any::<u32>(),
                    any::<u32>(),
                    proptest::option::of(".{0,12}"),
                )
                    .prop_map(|(complete, downloaded, incomplete, name)| {
                        ScrapeFile {
                            complete,
                            downloaded,
                            incomplete,
                            name,
                        }
                    }),
                0..8,
            ),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(files, min_request_interval)| ScrapeResponse {
                files,
                min_request_interval,
            })
    }

    proptest! {
        #[test]
        fn response_roundtrip(r in arb_response()) {
            prop_assert_eq!(ScrapeResponse::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn request_roundtrip(hashes in proptest::collection::vec(any::<[u8; 20]>(), 0..10)) {
            let req = ScrapeRequest { info_hashes: hashes.into_iter().map(Id20).collect() };
            prop_assert_eq!(ScrapeRequest::from_query(&req.to_query()).unwrap(), req);
        }

        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256), s in ".{0,100}") {
            let _ = ScrapeResponse::decode(&data);
            let _ = ScrapeRequest::from_query(&s);
            let _ = scrape_url(&s);
        }
    }
}
