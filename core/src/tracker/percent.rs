//! RFC 3986 percent-encoding of binary query values (`info_hash`, `peer_id`, ...).
//!
//! [`encode`] keeps only the unreserved characters (`A-Z a-z 0-9 - . _ ~`) and writes every other
//! byte as `%XX` with upper-case hex digits, so any byte string survives a trip through a URL.
//! [`decode`] accepts either hex case, copies every other byte through unchanged and treats `+`
//! as a literal plus sign (RFC 3986, as opentracker does; not form-encoding's space). A `%` not
//! followed by two hex digits is an error rather than being guessed at.

/// Errors from [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// A `%` at this byte offset is not followed by two hexadecimal digits.
    #[error("invalid percent escape at byte {0}")]
    BadEscape(usize),
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether RFC 3986 lists `b` as unreserved (`ALPHA / DIGIT / "-" / "." / "_" / "~"`).
pub const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes `bytes`, keeping unreserved characters and writing all others as `%XX`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    encode_into(&mut out, bytes);
    out
}

/// Appends the percent-encoding of `bytes` to `out`.
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
        }
    }
}

/// Decodes `%XX` escapes (either case); all other characters are copied as their UTF-8 bytes.
pub fn decode(s: &str) -> Result<Vec<u8>, PercentError> {
    decode_bytes(s.as_bytes())
}

/// [`decode`] over raw bytes.
pub fn decode_bytes(input: &[u8]) -> Result<Vec<u8>, PercentError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let hi = input.get(i + 1).copied().and_then(hex_value);
            let lo = input.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                _ => return Err(PercentError::BadEscape(i)),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn all_256_bytes_roundtrip_and_match_rfc3986() {
        let all: Vec<u8> = (0..=255u8).collect();
        let enc = encode(&all);
        assert_eq!(decode(&enc).unwrap(), all);
        // Each byte on its own: unreserved stay literal, the rest become upper-case %XX.
        for b in 0..=255u8 {
            let e = encode(&[b]);
            let unreserved = b.is_ascii_uppercase()
                || b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b"-._~".contains(&b);
            if unreserved {
                assert_eq!(e, char::from(b).to_string());
            } else {
                assert_eq!(e, format!("%{b:02X}"));
            }
            assert_eq!(decode(&e).unwrap(), vec![b]);
            if !unreserved {
                assert_eq!(decode(&e.to_lowercase()).unwrap(), vec![b]);
            }
        }
        // 66 unreserved characters, 190 escapes of 3 characters.
        assert_eq!(enc.len(), 66 + 190 * 3);
    }

    #[test]
    fn known_vector_from_bep3_wiki() {
        let hash = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
            0xef, 0x12, 0x34, 0x56, 0x78, 0x9a,
        ];
        assert_eq!(
            encode(&hash),
            "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"
        );
    }

    #[test]
    fn plus_is_literal_and_bad_escapes_fail() {
        assert_eq!(decode("a+b").unwrap(), b"a+b");
        assert_eq!(encode(b"+ "), "%2B%20");
        assert_eq!(decode("%"), Err(PercentError::BadEscape(0)));
        assert_eq!(decode("ab%4"), Err(PercentError::BadEscape(2)));
        assert_eq!(decode("%G0"), Err(PercentError::BadEscape(0)));
        assert_eq!(decode("é").unwrap(), "é".as_bytes());
    }

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(s in ".{0,64}") {
            let _ = decode(&s);
        }
    }
}
