//! The BEP 10 extension handshake.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use super::{ExtError, HANDSHAKE_ID, LIMITS, MAX_METADATA_SIZE};
use crate::bencode::{decode_with, write_bytes, write_int, Value};
use crate::wire::Message;

/// Most entries accepted in `m`; more is an error.
pub const MAX_EXTENSIONS: usize = 256;
/// Longest extension name kept from `m`; longer names are ignored.
pub const MAX_EXTENSION_NAME_LEN: usize = 64;
/// Longest client name (`v`) kept; a longer one is ignored.
pub const MAX_CLIENT_NAME_LEN: usize = 256;

/// The dictionary sent as extended message 0.
///
/// Decoding ignores unknown keys and drops optional fields with the wrong type or range (real
/// clients send oddities), but fails on bounds: more than [`MAX_EXTENSIONS`] entries in `m`,
/// or a `metadata_size` that is negative or above [`MAX_METADATA_SIZE`]. A `metadata_size` of
/// 0 is read as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// Extension name to the message id the sender wants to receive it as; 0 means disabled.
    /// Entries with non-UTF-8 or overlong names or ids outside 0..=255 are dropped.
    pub m: BTreeMap<String, u8>,
    /// Client name and version (lossy UTF-8).
    pub v: Option<String>,
    /// The sender's listen port (1..=65535).
    pub p: Option<u16>,
    /// How many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// Size of the info dictionary in bytes (BEP 9), if the sender has it.
    pub metadata_size: Option<u32>,
    /// The receiver's address as the sender sees it (4 or 16 raw bytes on the wire).
    pub yourip: Option<IpAddr>,
    /// The sender's own IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// The sender's own IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// Seconds since the sender completed the torrent (libtorrent extension).
    pub complete_ago: Option<i64>,
    /// The sender only uploads (BEP 21).
    pub upload_only: Option<bool>,
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        Some(IpAddr::from(a))
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        Some(IpAddr::from(a))
    } else {
        None
    }
}

fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => write_bytes(out, &a.octets()),
        IpAddr::V6(a) => write_bytes(out, &a.octets()),
    }
}

impl ExtendedHandshake {
    /// Decodes a handshake payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ExtError> {
        let value = decode_with(payload, LIMITS)?;
        if value.as_dict().is_none() {
            return Err(ExtError::NotADict);
        }
        let int = |k: &[u8]| value.get(k).and_then(Value::as_int);
        let bytes = |k: &[u8]| value.get(k).and_then(Value::as_bytes);

        let mut m = BTreeMap::new();
        if let Some(entries) = value.get(b"m").and_then(Value::as_dict) {
            if entries.len() > MAX_EXTENSIONS {
                return Err(ExtError::TooManyExtensions {
                    count: entries.len(),
                    max: MAX_EXTENSIONS,
                });
            }
            for (name, id) in entries {
                let Ok(name) = std::str::from_utf8(name) else {
                    continue;
                };
                let Some(id) = id.as_int().and_then(|i| u8::try_from(i).ok()) else {
                    continue;
                };
                if name.len() <= MAX_EXTENSION_NAME_LEN {
                    m.insert(name.to_owned(), id);
                }
            }
        }

        let metadata_size = match int(b"metadata_size") {
            None | Some(0) => None,
            Some(size) => match u32::try_from(size) {
                Ok(s) if s <= MAX_METADATA_SIZE => Some(s),
                _ => {
                    return Err(ExtError::MetadataSize {
                        size,
                        max: MAX_METADATA_SIZE,
                    })
                }
            },
        };

        Ok(ExtendedHandshake {
            m,
            v: bytes(b"v")
                .filter(|v| v.len() <= MAX_CLIENT_NAME_LEN)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            p: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0),
            reqq: int(b"reqq").and_then(|r| u32::try_from(r).ok()),
            metadata_size,
            yourip: bytes(b"yourip").and_then(ip_from),
            ipv4: bytes(b"ipv4")
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(Ipv4Addr::from),
            ipv6: bytes(b"ipv6")
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(Ipv6Addr::from),
            complete_ago: int(b"complete_ago"),
            upload_only: int(b"upload_only").map(|u| u != 0),
        })
    }

    /// Canonical bencode (keys sorted); absent fields are omitted, `m` is always present.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 24 * self.m.len());
        out.push(b'd');
        if let Some(c) = self.complete_ago {
            write_bytes(&mut out, b"complete_ago");
            write_int(&mut out, c);
        }
        if let Some(ip) = self.ipv4 {
            write_bytes(&mut out, b"ipv4");
            write_ip(&mut out, IpAddr::V4(ip));
        }
        if let Some(ip) = self.ipv6 {
            write_bytes(&mut out, b"ipv6");
            write_ip(&mut out, IpAddr::V6(ip));
        }
        write_bytes(&mut out, b"m");
        out.push(b'd');
        // `String` ordering is byte ordering, as bencode requires.
        for (name, id) in &self.m {
            write_bytes(&mut out, name.as_bytes());
            write_int(&mut out, i64::from(*id));
        }
        out.push(b'e');
        if let Some(s) = self.metadata_size {
            write_bytes(&mut out, b"metadata_size");
            write_int(&mut out, i64::from(s));
        }
        if let Some(p) = self.p {
            write_bytes(&mut out, b"p");
            write_int(&mut out, i64::from(p));
        }
        if let Some(r) = self.reqq {
            write_bytes(&mut out, b"reqq");
            write_int(&mut out, i64::from(r));
        }
        if let Some(u) = self.upload_only {
            write_bytes(&mut out, b"upload_only");
            write_int(&mut out, i64::from(u));
        }
        if let Some(v) = &self.v {
            write_bytes(&mut out, b"v");
            write_bytes(&mut out, v.as_bytes());
        }
        if let Some(ip) = self.yourip {
            write_bytes(&mut out, b"yourip");
            write_ip(&mut out, ip);
        }
        out.push(b'e');
        out
    }

    /// The wire message carrying this handshake (extended id 0).
    pub fn to_message(&self) -> Message {
        Message::Extended {
            id: HANDSHAKE_ID,
            payload: Bytes::from(self.encode()),
        }
    }

    /// The id the sender wants `name` messages sent with; `None` if absent or disabled (0).
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_real_looking_handshake() {
        let payload = b"d12:complete_agoi1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31235e4:reqqi500e11:upload_onlyi0e1:v17:qBittorrent/4.5.26:yourip4:\x0a\x00\x00\x01e";
        let h = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(h.extension_id("ut_metadata"), Some(2));
        assert_eq!(h.extension_id("ut_pex"), Some(1));
        assert_eq!(h.extension_id("nope"), None);
        assert_eq!(h.m.len(), 6);
        assert_eq!(h.metadata_size, Some(31235));
        assert_eq!(h.reqq, Some(500));
        assert_eq!(h.v.as_deref(), Some("qBittorrent/4.5.2"));
        assert_eq!(h.yourip, Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(h.complete_ago, Some(1));
        assert_eq!(h.upload_only, Some(false));
        assert_eq!(h.p, None);
        // Canonical input re-encodes byte for byte.
        assert_eq!(h.encode(), payload.to_vec());
    }

    #[test]
    fn tolerates_odd_optional_fields() {
        let payload = b"d1:md6:ut_pexi300e11:ut_metadatai-1e2:\xff\xfei3e7:lt_testi0ee1:pi70000e4:reqq3:abc6:yourip3:abc4:ipv41:x1:vi5e5:extrald1:ai1eeee";
        let h = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(h.m.len(), 1);
        assert_eq!(h.m.get("lt_test"), Some(&0));
        assert_eq!(h.extension_id("lt_test"), None, "0 means disabled");
        assert_eq!(
            (h.p, h.reqq, h.yourip, h.ipv4, h.v.clone()),
            (None, None, None, None, None)
        );
        // `m` of the wrong type is just empty.
        let h = ExtendedHandshake::decode(b"d1:mi1ee").unwrap();
        assert!(h.m.is_empty());
        assert_eq!(
            ExtendedHandshake::decode(b"de").unwrap(),
            ExtendedHandshake::default()
        );
        // Overlong client name is ignored; invalid UTF-8 is kept lossily.
        let long = format!("d1:v300:{}e", "x".repeat(300));
        assert_eq!(ExtendedHandshake::decode(long.as_bytes()).unwrap().v, None);
        let h = ExtendedHandshake::decode(b"d1:v2:a\xffe").unwrap();
        assert_eq!(h.v.as_deref(), Some("a\u{fffd}"));
        // IPv6 yourip and own addresses.
        let mut p = b"d4:ipv616:".to_vec();
        p.extend_from_slice(&[0; 15]);
        p.extend_from_slice(b"\x011:mde6:yourip16:");
        p.extend_from_slice(&[0xfe, 0x80]);
        p.extend_from_slice(&[0; 14]);
        p.push(b'e');
        let h = ExtendedHandshake::decode(&p).unwrap();
        assert_eq!(h.ipv6, Some(Ipv6Addr::LOCALHOST));
        assert_eq!(h.yourip, Some("fe80::".parse().unwrap()));
        assert_eq!(h.encode(), p);
    }

    #[test]
    fn enforces_bounds() {
        let mut many = b"d1:md".to_vec();
        for i in 0..=MAX_EXTENSIONS {
            let name = format!("x{i:04}");
            write_bytes(&mut many, name.as_bytes());
            write_int(&mut many, 1);
        }
        many.extend_from_slice(b"ee");
        assert_eq!(
            ExtendedHandshake::decode(&many),
            Err(ExtError::TooManyExtensions {
                count: MAX_EXTENSIONS + 1,
                max: MAX_EXTENSIONS
            })
        );
        assert_eq!(
            ExtendedHandshake::decode(b"d13:metadata_sizei16777217ee"),
            Err(ExtError::MetadataSize {
                size: 16_777_217,
                max: MAX_METADATA_SIZE
            })
        );
        assert!(matches!(
            ExtendedHandshake::decode(b"d13:metadata_sizei-5ee"),
            Err(ExtError::MetadataSize { size: -5, .. })
        ));
        assert_eq!(
            ExtendedHandshake::decode(b"d13:metadata_sizei16777216ee")
                .unwrap()
                .metadata_size,
            Some(MAX_METADATA_SIZE)
        );
        assert_eq!(
            ExtendedHandshake::decode(b"d13:metadata_sizei0ee")
                .unwrap()
                .metadata_size,
            None
        );
        assert_eq!(ExtendedHandshake::decode(b"li1ee"), Err(ExtError::NotADict));
        assert!(matches!(
            ExtendedHandshake::decode(b"d1:m"),
            Err(ExtError::Bencode(_))
        ));
        assert!(matches!(
            ExtendedHandshake::decode(b"dee"),
            Err(ExtError::Bencode(_))
        ));
        let deep = format!("d1:x{}{}e", "l".repeat(20), "e".repeat(20));
        assert!(matches!(
            ExtendedHandshake::decode(deep.as_bytes()),
            Err(ExtError::Bencode(_))
        ));
    }

    #[test]
    fn message_uses_id_zero() {
        let mut h = ExtendedHandshake::default();
        h.m.insert("ut_metadata".into(), 3);
        h.p = Some(6881);
        match h.to_message() {
            Message::Extended { id, payload } => {
                assert_eq!(id, 0);
                assert_eq!(&payload[..], b"d1:md11:ut_metadatai3ee1:pi6881ee");
            }
            other => panic!("{other:?}"),
        }
    }
}
