//! Percent-encoding (RFC 3986) for URLs, magnet links and tracker queries.

/// Which bytes stay unescaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// RFC 3986 unreserved characters: `A-Z a-z 0-9 - . _ ~`. Used for binary query values.
    Unreserved,
    /// What JavaScript's `encodeURIComponent` keeps: unreserved plus `! * ' ( )`.
    Component,
}

impl Keep {
    fn keeps(self, b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (self == Keep::Component && matches!(b, b'!' | b'*' | b'\'' | b'(' | b')'))
    }
}

/// Errors from percent-decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("bad percent escape at byte {0}")]
    BadEscape(usize),
}

/// Appends `bytes` to `out`, escaping every byte `keep` does not keep as `%XX` (upper case).
pub fn encode_into(out: &mut String, bytes: &[u8], keep: Keep) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if keep.keeps(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Percent-encodes `bytes`.
pub fn encode(bytes: &[u8], keep: Keep) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    encode_into(&mut s, bytes, keep);
    s
}

/// Decodes `%XX` escapes; with `plus_is_space`, `+` becomes a space (form encoding).
pub fn decode(s: &str, plus_is_space: bool) -> Result<Vec<u8>, PercentError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).and_then(|c| (*c as char).to_digit(16));
                let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(PercentError::BadEscape(i)),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_like_rfc3986_and_js() {
        assert_eq!(encode(b"a b/c~", Keep::Unreserved), "a%20b%2Fc~");
        assert_eq!(encode(b"(x)!*'", Keep::Component), "(x)!*'");
        assert_eq!(encode(b"(x)", Keep::Unreserved), "%28x%29");
        assert_eq!(encode(&[0x00, 0xff], Keep::Unreserved), "%00%FF");
        assert_eq!(decode("a+b%2fc", true).unwrap(), b"a b/c");
        assert_eq!(decode("a+b", false).unwrap(), b"a+b");
        assert_eq!(decode("%zz", false), Err(PercentError::BadEscape(0)));
        assert_eq!(decode("ab%4", false), Err(PercentError::BadEscape(2)));
    }

    #[test]
    fn every_byte_value_follows_rfc3986() {
        for b in 0..=255u8 {
            let e = encode(&[b], Keep::Unreserved);
            let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            if unreserved {
                assert_eq!(e, (b as char).to_string());
            } else {
                assert_eq!(e, format!("%{b:02X}"));
            }
            assert_eq!(decode(&e, false).unwrap(), [b]);
            assert_eq!(decode(&format!("%{b:02x}"), false).unwrap(), [b]);
        }
    }

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for keep in [Keep::Unreserved, Keep::Component] {
                let e = encode(&bytes, keep);
                prop_assert!(e.is_ascii());
                prop_assert_eq!(decode(&e, false).unwrap(), bytes.clone());
            }
        }

        #[test]
        fn decode_never_panics(s in ".{0,40}") {
            let _ = decode(&s, true);
        }
    }
}
