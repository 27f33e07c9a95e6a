//! A bounded, zero-copy bencode reader and a small writer.
//!
//! [`decode`] borrows strings from the input and refuses input deeper or larger than its
//! [`Limits`], so hostile data cannot exhaust the stack or memory. [`raw_dict_value`] finds the
//! exact bytes of a dictionary entry (used for the info hash). The writer functions produce
//! canonical bencode (dictionary keys sorted).

use std::ops::Range;

/// Bounds applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest allowed nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries) in one document.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_values: 2_000_000,
        }
    }
}

/// Errors from decoding bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("unexpected end of input at byte {0}")]
    Eof(usize),
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{byte:02x} at byte {offset}")]
    Unexpected {
        /// Offset of the byte.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// An integer or string length that is not canonical (leading zeros, `-0`, empty) or overflows.
    #[error("invalid number at byte {0}")]
    Number(usize),
    /// A string whose declared length runs past the end of the input.
    #[error("string at byte {offset} declares {len} bytes, only {available} remain")]
    StringTooLong {
        /// Offset of the length prefix.
        offset: usize,
        /// Declared length.
        len: u64,
        /// Bytes left in the input.
        available: usize,
    },
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// More values than [`Limits::max_values`].
    #[error("more than {0} values")]
    TooManyValues(usize),
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    /// A key that appears twice in one dictionary.
    #[error("duplicate dictionary key at byte {0}")]
    DuplicateKey(usize),
    /// Bytes left after a complete value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// A decoded bencode value borrowing its strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i…e`
    Int(i64),
    /// `N:…`
    Bytes(&'a [u8]),
    /// `l…e`
    List(Vec<Value<'a>>),
    /// `d…e`, in input order.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// Looks up `key` if this is a dictionary.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The bytes, if this is a string.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string, if this is a UTF-8 byte string.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Appends the canonical encoding (dictionary keys sorted) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => write_int(out, *i),
            Value::Bytes(b) => write_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                let mut sorted: Vec<&(&[u8], Value)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                out.push(b'd');
                for (k, v) in sorted {
                    write_bytes(out, k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Appends `i<n>e`.
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

/// Appends `<len>:<bytes>`.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Decodes exactly one value spanning the whole input, with default [`Limits`].
pub fn decode(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    decode_with(input, Limits::default())
}

/// Decodes exactly one value spanning the whole input.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>, BencodeError> {
    let (v, used) = decode_prefix_with(input, limits)?;
    if used != input.len() {
        return Err(BencodeError::Trailing(input.len() - used));
    }
    Ok(v)
}

/// Decodes one value at the start of `input`, returning it and the number of bytes it used.
/// Bytes after it are left alone (as in `ut_metadata` data messages).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    decode_prefix_with(input, Limits::default())
}

/// [`decode_prefix`] with explicit limits.
pub fn decode_prefix_with(
    input: &[u8],
    limits: Limits,
) -> Result<(Value<'_>, usize), BencodeError> {
    let mut p = Parser {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// Checks that `input` is exactly one well-formed value within `limits`, without allocating.
pub fn validate(input: &[u8], limits: Limits) -> Result<(), BencodeError> {
    let mut p = Parser {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    p.skip(0)?;
    if p.pos != input.len() {
        return Err(BencodeError::Trailing(input.len() - p.pos));
    }
    Ok(())
}

/// Finds the byte range of the value stored under `key` in the dictionary that spans `input`.
///
/// Returns `Ok(None)` when the key is absent. The range covers the value's original bytes, so
/// hashing them gives e.g. the info hash without re-encoding.
pub fn raw_dict_value(input: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, BencodeError> {
    let mut p = Parser {
        input,
        pos: 0,
        limits: Limits::default(),
        values: 0,
    };
    if p.peek()? != b'd' {
        return Err(BencodeError::Unexpected {
            offset: 0,
            byte: input[0],
        });
    }
    p.pos += 1;
    let mut found = None;
    loop {
        if p.peek()? == b'e' {
            p.pos += 1;
            break;
        }
        let key_at = p.pos;
        let k = p.string().map_err(|e| match e {
            BencodeError::Unexpected { offset, .. } => BencodeError::KeyNotString(offset),
            e => e,
        })?;
        let start = p.pos;
        p.skip(1)?;
        if k == key {
            if found.is_some() {
                return Err(BencodeError::DuplicateKey(key_at));
            }
            found = Some(start..p.pos);
        }
    }
    if p.pos != input.len() {
        return Err(BencodeError::Trailing(input.len() - p.pos));
    }
    Ok(found)
}

/// Detects duplicate dictionary keys in O(n): keys in canonical (sorted) order only need a
/// comparison with the previous one; the first out-of-order key switches to a hash set.
#[derive(Default)]
struct KeySet<'a> {
    last: Option<&'a [u8]>,
    seen: Vec<&'a [u8]>,
    set: Option<std::collections::HashSet<&'a [u8]>>,
}

impl<'a> KeySet<'a> {
    fn insert(&mut self, k: &'a [u8], at: usize) -> Result<(), BencodeError> {
        if let Some(set) = &mut self.set {
            return if set.insert(k) {
                Ok(())
            } else {
                Err(BencodeError::DuplicateKey(at))
            };
        }
        match self.last {
            Some(prev) if k <= prev => {
                let mut set: std::collections::HashSet<&'a [u8]> =
                    std::mem::take(&mut self.seen).into_iter().collect();
                if !set.insert(k) {
                    return Err(BencodeError::DuplicateKey(at));
                }
                self.set = Some(set);
            }
            _ => {
                self.seen.push(k);
                self.last = Some(k);
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    values: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Eof(self.pos))
    }

    fn count(&mut self, depth: usize) -> Result<(), BencodeError> {
        if depth > self.limits.max_depth {
            return Err(BencodeError::TooDeep(self.limits.max_depth));
        }
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(BencodeError::TooManyValues(self.limits.max_values));
        }
        Ok(())
    }

    /// Parses digits up to `end`, canonical form only.
    fn number(&mut self, end: u8, allow_negative: bool) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = &self.input[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(BencodeError::Eof(self.input.len()))?;
        let digits = &rest[..len];
        let (neg, body) = match digits.split_first() {
            Some((b'-', body)) if allow_negative => (true, body),
            _ => (false, digits),
        };
        if body.is_empty()
            || !body.iter().all(u8::is_ascii_digit)
            || (body[0] == b'0' && (body.len() > 1 || neg))
        {
            return Err(BencodeError::Number(start));
        }
        let mut v: i64 = 0;
        for &d in body {
            v = v
                .checked_mul(10)
                .and_then(|v| {
                    let d = i64::from(d - b'0');
                    if neg {
                        v.checked_sub(d)
                    } else {
                        v.checked_add(d)
                    }
                })
                .ok_or(BencodeError::Number(start))?;
        }
        self.pos += len + 1;
        Ok(v)
    }

    fn string(&mut self) -> Result<&'a [u8], BencodeError> {
        let offset = self.pos;
        let b = self.peek()?;
        if !b.is_ascii_digit() {
            return Err(BencodeError::Unexpected { offset, byte: b });
        }
        let len = self.number(b':', false)? as u64;
        let available = self.input.len() - self.pos;
        if len > available as u64 {
            return Err(BencodeError::StringTooLong {
                offset,
                len,
                available,
            });
        }
        let s = &self.input[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.count(depth)?;
        let offset = self.pos;
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                Ok(Value::Int(self.number(b'e', true)?))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.string()?)),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                let mut keys = KeySet::default();
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString(key_at));
                    }
                    let k = self.string()?;
                    keys.insert(k, key_at)?;
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            byte => Err(BencodeError::Unexpected { offset, byte }),
        }
    }

    fn skip(&mut self, depth: usize) -> Result<(), BencodeError> {
        self.count(depth)?;
        let offset = self.pos;
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                self.number(b'e', true)?;
            }
            b'0'..=b'9' => {
                self.string()?;
            }
            b'l' => {
                self.pos += 1;
                while self.peek()? != b'e' {
                    self.skip(depth + 1)?;
                }
                self.pos += 1;
            }
            b'd' => {
                self.pos += 1;
                let mut keys = KeySet::default();
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString(key_at));
                    }
                    let k = self.string()?;
                    keys.insert(k, key_at)?;
                    self.skip(depth + 1)?;
                }
                self.pos += 1;
            }
            byte => return Err(BencodeError::Unexpected { offset, byte }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_each_kind() {
        assert_eq!(decode(b"i42e").unwrap(), Value::Int(42));
        assert_eq!(decode(b"i-7e").unwrap(), Value::Int(-7));
        assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(decode(b"4:spam").unwrap(), Value::Bytes(b"spam"));
        assert_eq!(decode(b"0:").unwrap(), Value::Bytes(b""));
        let v = decode(b"d3:cow3:moo4:spaml1:a1:bee").unwrap();
        assert_eq!(v.get(b"cow").and_then(Value::as_str), Some("moo"));
        assert_eq!(
            v.get(b"spam").and_then(Value::as_list).map(|l| l.len()),
            Some(2)
        );
        assert_eq!(v.encode(), b"d3:cow3:moo4:spaml1:a1:bee");
    }

    #[test]
    fn rejects_non_canonical_numbers() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i1x2e",
            b"01:a",
            b"i9223372036854775808e",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap(),
            Value::Int(i64::MIN)
        );
    }

    #[test]
    fn rejects_structural_errors() {
        assert_eq!(decode(b"l"), Err(BencodeError::Eof(1)));
        assert_eq!(decode(b"i1ei2e"), Err(BencodeError::Trailing(3)));
        assert!(matches!(
            decode(b"5:abc"),
            Err(BencodeError::StringTooLong { len: 5, .. })
        ));
        assert_eq!(decode(b"di1e1:ae"), Err(BencodeError::KeyNotString(1)));
        assert_eq!(
            decode(b"d1:ai1e1:ai2ee"),
            Err(BencodeError::DuplicateKey(7))
        );
        assert!(matches!(
            decode(b"x"),
            Err(BencodeError::Unexpected { byte: b'x', .. })
        ));
        assert_eq!(
            decode(b"99999999999999999999:a"),
            Err(BencodeError::Number(0))
        );
    }

    #[test]
    fn enforces_limits() {
        let deep = format!("{}{}", "l".repeat(100), "e".repeat(100));
        assert_eq!(decode(deep.as_bytes()), Err(BencodeError::TooDeep(64)));
        assert_eq!(
            validate(deep.as_bytes(), Limits::default()),
            Err(BencodeError::TooDeep(64))
        );
        let many = format!("l{}e", "i1e".repeat(20));
        let limits = Limits {
            max_depth: 4,
            max_values: 10,
        };
        assert_eq!(
            decode_with(many.as_bytes(), limits),
            Err(BencodeError::TooManyValues(10))
        );
    }

    #[test]
    fn raw_value_span_keeps_original_bytes() {
        // Unsorted keys inside info must be preserved exactly.
        let doc = b"d8:announce3:url4:infod4:zzzzi1e4:aaaai2ee1:zi0ee";
        let r = raw_dict_value(doc, b"info").unwrap().unwrap();
        assert_eq!(&doc[r], b"d4:zzzzi1e4:aaaai2ee");
        assert_eq!(raw_dict_value(doc, b"nope").unwrap(), None);
        assert!(raw_dict_value(b"d4:infoi1e4:infoi2ee", b"info").is_err());
        assert!(raw_dict_value(b"li1ee", b"info").is_err());
    }

    #[test]
    fn fuzz_regression_duplicate_keys_agree() {
        // Found by the `bencode` fuzz target: validate accepted what decode refused.
        for doc in [&b"d0:le0:lee"[..], b"d1:bi1e1:ai1e1:bi2ee"] {
            assert!(matches!(decode(doc), Err(BencodeError::DuplicateKey(_))));
            assert!(matches!(
                validate(doc, Limits::default()),
                Err(BencodeError::DuplicateKey(_))
            ));
        }
        // Unsorted but distinct keys are accepted by both.
        assert!(decode(b"d1:bi1e1:ai1ee").is_ok());
        assert!(validate(b"d1:bi1e1:ai1ee", Limits::default()).is_ok());
    }

    #[test]
    fn fuzz_regression_unsorted_dict_reencodes_canonically() {
        // Found by the `bencode` fuzz target: an unsorted dictionary decodes in input order
        // and re-encodes sorted; the canonical form is a fixed point.
        let doc = b"d1:`0:0:0:2:dllee";
        let v = decode(doc).unwrap();
        let canonical = v.encode();
        assert_eq!(canonical, b"d0:0:1:`0:2:dllee");
        assert_eq!(decode(&canonical).unwrap().encode(), canonical);
    }

    #[test]
    fn prefix_leaves_trailing_bytes() {
        let (v, used) = decode_prefix(b"d8:msg_typei1e5:piecei0eeRAWDATA").unwrap();
        assert_eq!(used, 25);
        assert_eq!(v.get(b"piece").and_then(Value::as_int), Some(0));
    }

    fn arb_value() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(|m| OwnedValue::Dict(m.into_iter().collect())),
            ]
        })
    }

    #[derive(Debug, Clone)]
    enum OwnedValue {
        Int(i64),
        Bytes(Vec<u8>),
        List(Vec<OwnedValue>),
        Dict(Vec<(Vec<u8>, OwnedValue)>),
    }

    impl OwnedValue {
        fn borrow(&self) -> Value<'_> {
            match self {
                OwnedValue::Int(i) => Value::Int(*i),
                OwnedValue::Bytes(b) => Value::Bytes(b),
                OwnedValue::List(l) => Value::List(l.iter().map(|v| v.borrow()).collect()),
                OwnedValue::Dict(d) => {
                    Value::Dict(d.iter().map(|(k, v)| (k.as_slice(), v.borrow())).collect())
                }
            }
        }
    }

    proptest! {
        #[test]
        fn roundtrip(v in arb_value()) {
            let b = v.borrow();
            let enc = b.encode();
            prop_assert_eq!(decode(&enc).unwrap(), b);
            prop_assert!(validate(&enc, Limits::default()).is_ok());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let a = decode(&data).is_ok();
            let b = validate(&data, Limits::default()).is_ok();
            prop_assert_eq!(a, b);
            let _ = raw_dict_value(&data, b"info");
        }
    }
}
