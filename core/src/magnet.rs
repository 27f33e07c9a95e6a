//! Magnet links (BEP 9): `xt=urn:btih:` in hex or base32, `dn`, `tr`, `ws`, `x.pe` and `xl`.

use std::fmt;
use std::str::FromStr;

use crate::id::{IdError, InfoHash};
use crate::percent::{self, Keep};

/// Longest magnet link accepted.
pub const MAX_MAGNET_LEN: usize = 64 * 1024;
/// Most `tr`, `ws` or `x.pe` entries kept from one link.
pub const MAX_ENTRIES: usize = 256;

/// Errors from parsing a magnet link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// Does not start with `magnet:?`.
    #[error("not a magnet link (expected `magnet:?`)")]
    NotMagnet,
    /// Longer than [`MAX_MAGNET_LEN`].
    #[error("magnet link longer than {MAX_MAGNET_LEN} bytes")]
    TooLong,
    /// No `xt=urn:btih:` parameter.
    #[error("magnet link has no `xt=urn:btih:` info hash")]
    MissingInfoHash,
    /// Only a BitTorrent v2 (`urn:btmh:`) hash, which this client does not support.
    #[error("magnet link has only a BitTorrent v2 hash (urn:btmh), which is not supported")]
    OnlyV2,
    /// The info hash is not 40 hex or 32 base32 characters.
    #[error("invalid info hash in magnet link: {0}")]
    InfoHash(#[from] IdError),
    /// Two different `btih` hashes.
    #[error("magnet link names two different info hashes")]
    ConflictingInfoHash,
    /// A parameter with a malformed escape or invalid UTF-8.
    #[error("parameter `{0}` is not valid percent-encoded UTF-8")]
    Encoding(String),
    /// An `xl` that is not a number.
    #[error("`xl` is not a length: {0:?}")]
    Length(String),
}

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The torrent's v1 info hash.
    pub info_hash: InfoHash,
    /// `dn`: display name.
    pub name: Option<String>,
    /// `tr`: tracker URLs, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `ws`: web seed URLs.
    pub web_seeds: Vec<String>,
    /// `x.pe`: peer addresses as `host:port`.
    pub peers: Vec<String>,
    /// `xl`: exact length in bytes.
    pub length: Option<u64>,
}

impl Magnet {
    /// A link holding just the info hash.
    pub fn new(info_hash: InfoHash) -> Self {
        Magnet {
            info_hash,
            name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            peers: Vec::new(),
            length: None,
        }
    }

    /// Parses a magnet link.
    pub fn parse(uri: &str) -> Result<Self, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong);
        }
        let query = uri
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &uri[8..])
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut saw_v2 = false;
        let mut m = Magnet::new(InfoHash::default());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            // Keys may carry an index suffix such as `tr.1` or `xt.2`.
            let key = match raw_key.rsplit_once('.') {
                Some((k, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => k,
                _ => raw_key,
            };
            let value = || -> Result<String, MagnetError> {
                let bytes = percent::decode(raw_value, key == "dn")
                    .map_err(|_| MagnetError::Encoding(key.to_string()))?;
                String::from_utf8(bytes).map_err(|_| MagnetError::Encoding(key.to_string()))
            };
            match key {
                "xt" => {
                    let v = value()?;
                    if let Some(h) = strip_prefix_ci(&v, "urn:btih:") {
                        let h = InfoHash::from_hex_or_base32(h)?;
                        match info_hash {
                            Some(prev) if prev != h => {
                                return Err(MagnetError::ConflictingInfoHash)
                            }
                            _ => info_hash = Some(h),
                        }
                    } else if strip_prefix_ci(&v, "urn:btmh:").is_some() {
                        saw_v2 = true;
                    }
                }
                "dn" => m.name = Some(value()?).filter(|n| !n.is_empty()),
                "tr" => push_unique(&mut m.trackers, value()?),
                "ws" => push_unique(&mut m.web_seeds, value()?),
                "x.pe" => push_unique(&mut m.peers, value()?),
                "xl" => {
                    let v = value()?;
                    m.length = Some(v.parse().map_err(|_| MagnetError::Length(v))?);
                }
                _ => {}
            }
        }
        m.info_hash = match (info_hash, saw_v2) {
            (Some(h), _) => h,
            (None, true) => return Err(MagnetError::OnlyV2),
            (None, false) => return Err(MagnetError::MissingInfoHash),
        };
        Ok(m)
    }

    /// The link as text: `magnet:?xt=urn:btih:<hex>&dn=…&xl=…&tr=…&ws=…&x.pe=…`.
    pub fn to_uri(&self) -> String {
        let mut s = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        let mut add = |k: &str, v: &str| {
            s.push('&');
            s.push_str(k);
            s.push('=');
            percent::encode_into(&mut s, v.as_bytes(), Keep::Component);
        };
        if let Some(n) = &self.name {
            add("dn", n);
        }
        if let Some(l) = self.length {
            add("xl", &l.to_string());
        }
        for t in &self.trackers {
            add("tr", t);
        }
        for w in &self.web_seeds {
            add("ws", w);
        }
        for p in &self.peers {
            add("x.pe", p);
        }
        s
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

fn push_unique(list: &mut Vec<String>, v: String) {
    if !v.is_empty() && list.len() < MAX_ENTRIES && !list.contains(&v) {
        list.push(v);
    }
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Magnet::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_webtorrent_style_link() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Sintel&tr=udp%3A%2F%2Fexplodie.org%3A6969&tr=wss%3A%2F%2Ftracker.btorrent.xyz&ws=https%3A%2F%2Fexample.com%2F&xl=129302391&x.pe=127.0.0.1:6881"
        );
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("Sintel"));
        assert_eq!(
            m.trackers,
            ["udp://explodie.org:6969", "wss://tracker.btorrent.xyz"]
        );
        assert_eq!(m.web_seeds, ["https://example.com/"]);
        assert_eq!(m.peers, ["127.0.0.1:6881"]);
        assert_eq!(m.length, Some(129302391));
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
    }

    #[test]
    fn base32_and_case_and_indexed_keys() {
        let m = Magnet::parse(
            "MAGNET:?xt.1=URN:BTIH:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&dn=a+b%20c&tr.1=x&tr.2=x",
        )
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("a b c"));
        assert_eq!(m.trackers, ["x"]);
    }

    #[test]
    fn clear_errors() {
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x"),
            Err(MagnetError::MissingInfoHash)
        );
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btmh:1220abcd"),
            Err(MagnetError::OnlyV2)
        );
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:1234"),
            Err(MagnetError::InfoHash(_))
        ));
        assert_eq!(
            Magnet::parse(&format!(
                "magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}",
                "0".repeat(40)
            )),
            Err(MagnetError::ConflictingInfoHash)
        );
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%ff")),
            Err(MagnetError::Encoding("dn".into()))
        );
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xl=-1")),
            Err(MagnetError::Length("-1".into()))
        );
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&tr=%zz")),
            Err(MagnetError::Encoding("tr".into()))
        );
        let long = format!(
            "magnet:?xt=urn:btih:{HEX}&dn={}",
            "a".repeat(MAX_MAGNET_LEN)
        );
        assert_eq!(Magnet::parse(&long), Err(MagnetError::TooLong));
    }

    proptest! {
        #[test]
        fn roundtrip(hash in proptest::array::uniform20(any::<u8>()),
                     name in proptest::option::of("\\PC{1,20}"),
                     trackers in proptest::collection::vec("[a-z]{1,5}://[ -~]{1,20}", 0..4),
                     length in proptest::option::of(any::<u64>())) {
            let mut m = Magnet::new(InfoHash::new(hash));
            m.name = name;
            for t in trackers { push_unique(&mut m.trackers, t); }
            m.length = length;
            prop_assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
        }

        #[test]
        fn never_panics(s in "magnet:\\?[ -~]{0,120}") {
            let _ = Magnet::parse(&s);
        }
    }
}
