//! 20-byte identifiers: info hashes and peer ids.

use std::fmt;
use std::str::FromStr;

/// A 20-byte identifier, used for info hashes (SHA-1 of the info dictionary) and peer ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id20(pub [u8; 20]);

/// The SHA-1 of a torrent's bencoded `info` dictionary.
pub type InfoHash = Id20;
/// A peer's self-chosen 20-byte id.
pub type PeerId = Id20;

/// Errors from parsing an [`Id20`] from text.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The text had the wrong length for the encoding.
    #[error("expected {expected} characters, got {got}")]
    Length {
        /// Expected number of characters.
        expected: usize,
        /// Number of characters found.
        got: usize,
    },
    /// A character was not valid for the encoding.
    #[error("invalid character {0:?}")]
    Char(char),
    /// A byte string was not exactly 20 bytes long.
    #[error("expected 20 bytes, got {0}")]
    ByteLength(usize),
}

/// A driver-local handle for one peer connection, whatever its transport (TCP, WebRTC, a
/// simulated link). Assigned by the driver, unique among live connections of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl Id20 {
    /// Wraps 20 raw bytes.
    pub const fn new(bytes: [u8; 20]) -> Self {
        Id20(bytes)
    }

    /// Copies an id from a slice that must be exactly 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        <[u8; 20]>::try_from(bytes)
            .map(Id20)
            .map_err(|_| IdError::ByteLength(bytes.len()))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Lower-case hexadecimal, 40 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 40 hexadecimal digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, IdError> {
        if s.len() != 40 {
            return Err(IdError::Length {
                expected: 40,
                got: s.chars().count(),
            });
        }
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).map_err(|_| {
            let bad = s.chars().find(|c| !c.is_ascii_hexdigit()).unwrap_or('?');
            IdError::Char(bad)
        })?;
        Ok(Id20(out))
    }

    /// RFC 4648 base32 (upper case, no padding), 32 characters, as used in old magnet links.
    pub fn to_base32(&self) -> String {
        let mut out = String::with_capacity(32);
        for chunk in self.0.chunks(5) {
            let mut v: u64 = 0;
            for &b in chunk {
                v = (v << 8) | u64::from(b);
            }
            for i in (0..8).rev() {
                out.push(BASE32[((v >> (i * 5)) & 31) as usize] as char);
            }
        }
        out
    }

    /// Parses 32 base32 characters (either case).
    pub fn from_base32(s: &str) -> Result<Self, IdError> {
        if s.len() != 32 {
            return Err(IdError::Length {
                expected: 32,
                got: s.chars().count(),
            });
        }
        let mut out = [0u8; 20];
        for (chunk_idx, chunk) in s.as_bytes().chunks(8).enumerate() {
            let mut v: u64 = 0;
            for &c in chunk {
                let d = match c {
                    b'A'..=b'Z' => c - b'A',
                    b'a'..=b'z' => c - b'a',
                    b'2'..=b'7' => c - b'2' + 26,
                    _ => return Err(IdError::Char(c as char)),
                };
                v = (v << 5) | u64::from(d);
            }
            for i in 0..5 {
                out[chunk_idx * 5 + i] = (v >> (8 * (4 - i))) as u8;
            }
        }
        Ok(Id20(out))
    }

    /// Parses 40 hex digits or 32 base32 characters.
    pub fn from_hex_or_base32(s: &str) -> Result<Self, IdError> {
        match s.len() {
            40 => Self::from_hex(s),
            32 => Self::from_base32(s),
            n => Err(IdError::Length {
                expected: 40,
                got: n,
            }),
        }
    }

    /// The id as a "binary string" with one char per byte (U+0000–U+00FF), the form used in
    /// WebTorrent tracker JSON messages.
    pub fn to_latin1_string(&self) -> String {
        self.0.iter().map(|&b| b as char).collect()
    }

    /// Parses a "binary string" of exactly 20 chars, each U+0000–U+00FF.
    pub fn from_latin1_str(s: &str) -> Result<Self, IdError> {
        let mut out = [0u8; 20];
        let mut n = 0;
        for c in s.chars() {
            if n == 20 {
                return Err(IdError::ByteLength(s.chars().count()));
            }
            let v = u32::from(c);
            if v > 0xff {
                return Err(IdError::Char(c));
            }
            out[n] = v as u8;
            n += 1;
        }
        if n != 20 {
            return Err(IdError::ByteLength(n));
        }
        Ok(Id20(out))
    }
}

impl fmt::Debug for Id20 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id20({})", self.to_hex())
    }
}

impl fmt::Display for Id20 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Id20 {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex_or_base32(s)
    }
}

impl From<[u8; 20]> for Id20 {
    fn from(b: [u8; 20]) -> Self {
        Id20(b)
    }
}

impl AsRef<[u8]> for Id20 {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_roundtrip_and_errors() {
        let id = Id20([0xab; 20]);
        assert_eq!(id.to_hex(), "ab".repeat(20));
        assert_eq!(Id20::from_hex(&"AB".repeat(20)).unwrap(), id);
        assert!(matches!(Id20::from_hex("abc"), Err(IdError::Length { .. })));
        assert_eq!(
            Id20::from_hex(&format!("{}zz", "a".repeat(38))),
            Err(IdError::Char('z'))
        );
    }

    #[test]
    fn base32_known_value() {
        // 20 zero bytes encode to 32 'A's; 0xff.. to '7's.
        assert_eq!(Id20([0; 20]).to_base32(), "A".repeat(32));
        assert_eq!(Id20([0xff; 20]).to_base32(), "7".repeat(32));
        let id = Id20::from_hex("c12fe1c06bba254a9dc9f519b335aa7c1367a88a").unwrap();
        assert_eq!(id.to_base32(), "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK");
        assert_eq!(
            Id20::from_base32("yex6dqdlxisuvhoj6um3gnnkpqjwpkek").unwrap(),
            id
        );
        assert_eq!(Id20::from_base32(&"1".repeat(32)), Err(IdError::Char('1')));
    }

    #[test]
    fn latin1_rejects_wide_chars() {
        let id = Id20(core::array::from_fn(|i| (i * 13) as u8 | 0x80));
        let s = id.to_latin1_string();
        assert_eq!(Id20::from_latin1_str(&s).unwrap(), id);
        assert!(Id20::from_latin1_str(&format!("{}\u{100}", "a".repeat(19))).is_err());
        assert!(Id20::from_latin1_str("short").is_err());
        assert!(Id20::from_latin1_str(&"a".repeat(21)).is_err());
    }

    proptest! {
        #[test]
        fn encodings_roundtrip(bytes in proptest::array::uniform20(any::<u8>())) {
            let id = Id20(bytes);
            prop_assert_eq!(Id20::from_hex(&id.to_hex()).unwrap(), id);
            prop_assert_eq!(Id20::from_base32(&id.to_base32()).unwrap(), id);
            prop_assert_eq!(Id20::from_latin1_str(&id.to_latin1_string()).unwrap(), id);
        }
    }
}
