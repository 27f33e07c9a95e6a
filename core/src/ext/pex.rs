//! BEP 11 `ut_pex`: peer exchange.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::{BitOr, BitOrAssign};

use bytes::Bytes;

use super::{ExtError, LIMITS};
use crate::bencode::{decode_with, write_bytes, Value};
use crate::wire::compact::{iter_peers_v4, iter_peers_v6, write_v4, write_v6};
use crate::wire::Message;

/// Most peers kept from each of the four address lists of one message (`added`, `added6`,
/// `dropped`, `dropped6`). BEP 11 asks senders for at most 50 added and 50 dropped per
/// message; extra entries beyond this bound are silently ignored (the list's length must still
/// be a whole number of entries).
pub const MAX_PEX_PEERS: usize = 200;

/// Per-peer flags of `added.f` / `added6.f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// The peer prefers encrypted connections.
    pub const PREFERS_ENCRYPTION: PexFlags = PexFlags(0x01);
    /// The peer is a seed / upload-only.
    pub const SEED: PexFlags = PexFlags(0x02);
    /// The peer supports uTP.
    pub const UTP: PexFlags = PexFlags(0x04);
    /// The peer supports `ut_holepunch`.
    pub const HOLEPUNCH: PexFlags = PexFlags(0x08);
    /// The peer is reachable: the sender connected to it (outgoing connection).
    pub const REACHABLE: PexFlags = PexFlags(0x10);

    /// No flags.
    pub const fn empty() -> Self {
        PexFlags(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: PexFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: PexFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: PexFlags) {
        self.0 &= !other.0;
    }
}

impl BitOr for PexFlags {
    type Output = PexFlags;
    fn bitor(self, rhs: PexFlags) -> PexFlags {
        PexFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for PexFlags {
    fn bitor_assign(&mut self, rhs: PexFlags) {
        self.0 |= rhs.0;
    }
}

/// A `ut_pex` message: peers connected and disconnected since the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// New peers with their flags (IPv4 from `added`, then IPv6 from `added6`).
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers gone (IPv4 from `dropped`, then IPv6 from `dropped6`).
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    /// Decodes an extension payload.
    ///
    /// Every key is optional and unknown keys are ignored. An address list that is not a byte
    /// string or whose length is not a multiple of 6 (IPv4) / 18 (IPv6) is an error. A missing
    /// or short flags string gives [`PexFlags::empty`] to the peers it does not cover. Each list
    /// is cut at [`MAX_PEX_PEERS`].
    pub fn decode(payload: &[u8]) -> Result<Self, ExtError> {
        let value = decode_with(payload, LIMITS)?;
        if value.as_dict().is_none() {
            return Err(ExtError::NotADict);
        }
        let list = |key: &'static str| -> Result<&[u8], ExtError> {
            match value.get(key.as_bytes()) {
                None => Ok(&[]),
                Some(v) => v.as_bytes().ok_or(ExtError::Field(key)),
            }
        };
        let flags = |key: &str| value.get(key.as_bytes()).and_then(Value::as_bytes);
        let flag =
            |f: Option<&[u8]>, i: usize| PexFlags(f.and_then(|f| f.get(i)).copied().unwrap_or(0));

        let added4 = iter_peers_v4(list("added")?)?;
        let added6 = iter_peers_v6(list("added6")?)?;
        let dropped4 = iter_peers_v4(list("dropped")?)?;
        let dropped6 = iter_peers_v6(list("dropped6")?)?;

        let (f4, f6) = (flags("added.f"), flags("added6.f"));
        let mut added =
            Vec::with_capacity(added4.len().min(MAX_PEX_PEERS) + added6.len().min(MAX_PEX_PEERS));
        added.extend(
            added4
                .take(MAX_PEX_PEERS)
                .enumerate()
                .map(|(i, a)| (SocketAddr::V4(a), flag(f4, i))),
        );
        added.extend(
            added6
                .take(MAX_PEX_PEERS)
                .enumerate()
                .map(|(i, a)| (SocketAddr::V6(a), flag(f6, i))),
        );
        let mut dropped = Vec::with_capacity(
            dropped4.len().min(MAX_PEX_PEERS) + dropped6.len().min(MAX_PEX_PEERS),
        );
        dropped.extend(dropped4.take(MAX_PEX_PEERS).map(SocketAddr::V4));
        dropped.extend(dropped6.take(MAX_PEX_PEERS).map(SocketAddr::V6));
        Ok(PexMessage { added, dropped })
    }

    /// Canonical bencode with all six keys (empty strings for empty lists). IPv6 flow info and
    /// scope ids are dropped. Lists are written whole: keep them within BEP 11's 50 entries.
    pub fn encode(&self) -> Vec<u8> {
        let (mut a4, mut f4, mut a6, mut f6, mut d4, mut d6) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (addr, flags) in &self.added {
            match addr {
                SocketAddr::V4(a) => {
                    write_v4(a, &mut a4);
                    f4.push(flags.0);
                }
                SocketAddr::V6(a) => {
                    write_v6(a, &mut a6);
                    f6.push(flags.0);
                }
            }
        }
        for addr in &self.dropped {
            match addr {
                SocketAddr::V4(a) => write_v4(a, &mut d4),
                SocketAddr::V6(a) => write_v6(a, &mut d6),
            }
        }
        let mut out = Vec::with_capacity(
            80 + a4.len() + f4.len() + a6.len() + f6.len() + d4.len() + d6.len(),
        );
        out.push(b'd');
        for (key, val) in [
            (&b"added"[..], &a4),
            (b"added.f", &f4),
            (b"added6", &a6),
            (b"added6.f", &f6),
            (b"dropped", &d4),
            (b"dropped6", &d6),
        ] {
            write_bytes(&mut out, key);
            write_bytes(&mut out, val);
        }
        out.push(b'e');
        out
    }

    /// The wire message, sent with the receiver's `ut_pex` id.
    pub fn to_message(&self, id: u8) -> Message {
        Message::Extended {
            id,
            payload: Bytes::from(self.encode()),
        }
    }

    /// Whether the message carries no peer.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }
}

/// Convenience for building messages: an IPv4 peer.
impl From<SocketAddrV4> for PexMessage {
    fn from(a: SocketAddrV4) -> Self {
        PexMessage {
            added: vec![(SocketAddr::V4(a), PexFlags::empty())],
            dropped: Vec::new(),
        }
    }
}

/// Convenience for building messages: an IPv6 peer.
impl From<SocketAddrV6> for PexMessage {
    fn from(a: SocketAddrV6) -> Self {
        PexMessage {
            added: vec![(SocketAddr::V6(a), PexFlags::empty())],
            dropped: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::compact::CompactError;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn decodes_added_with_flags_and_dropped() {
        let mut p = b"d5:added12:".to_vec();
        p.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
        p.extend_from_slice(b"7:added.f2:\x12\x01");
        p.extend_from_slice(b"6:added618:");
        p.extend_from_slice(&[0; 15]);
        p.extend_from_slice(&[1, 0x1f, 0x90]);
        p.extend_from_slice(b"7:dropped6:");
        p.extend_from_slice(&[1, 2, 3, 4, 0, 1]);
        p.extend_from_slice(b"e");
        let m = PexMessage::decode(&p).unwrap();
        assert_eq!(
            m.added,
            vec![
                (v4("10.0.0.1:6881"), PexFlags::SEED | PexFlags::REACHABLE),
                (v4("10.0.0.2:80"), PexFlags::PREFERS_ENCRYPTION),
                (v4("[::1]:8080"), PexFlags::empty()),
            ]
        );
        assert_eq!(m.dropped, vec![v4("1.2.3.4:1")]);
        assert!(m.added[0].1.contains(PexFlags::SEED));
        assert!(!m.added[0].1.contains(PexFlags::UTP));
        let again = PexMessage::decode(&m.encode()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn errors_and_tolerance() {
        assert_eq!(
            PexMessage::decode(b"d5:added5:abcdee"),
            Err(ExtError::Compact(CompactError::Length { len: 5, entry: 6 }))
        );
        assert_eq!(
            PexMessage::decode(b"d8:dropped66:abcdefe"),
            Err(ExtError::Compact(CompactError::Length {
                len: 6,
                entry: 18
            }))
        );
        assert_eq!(
            PexMessage::decode(b"d5:addedi1ee"),
            Err(ExtError::Field("added"))
        );
        assert_eq!(PexMessage::decode(b"le"), Err(ExtError::NotADict));
        // Flags of the wrong type are ignored; unknown keys are fine.
        let m = PexMessage::decode(b"d5:added6:\x01\x02\x03\x04\x00\x017:added.fi9e3:foo3:bare")
            .unwrap();
        assert_eq!(m.added, vec![(v4("1.2.3.4:1"), PexFlags::empty())]);
        assert!(PexMessage::decode(b"de").unwrap().is_empty());
    }

    #[test]
    fn huge_lists_are_cut() {
        let n = MAX_PEX_PEERS + 50;
        let mut p = format!("d5:added{}:", n * 6).into_bytes();
        p.extend(std::iter::repeat_n(7u8, n * 6));
        p.extend_from_slice(format!("7:dropped{}:", n * 6).as_bytes());
        p.extend(std::iter::repeat_n(8u8, n * 6));
        p.push(b'e');
        let m = PexMessage::decode(&p).unwrap();
        assert_eq!(m.added.len(), MAX_PEX_PEERS);
        assert_eq!(m.dropped.len(), MAX_PEX_PEERS);
    }

    #[test]
    fn encoding_is_canonical() {
        let m = PexMessage::from("1.2.3.4:258".parse::<SocketAddrV4>().unwrap());
        assert_eq!(
            m.encode(),
            b"d5:added6:\x01\x02\x03\x04\x01\x027:added.f1:\x006:added60:8:added6.f0:7:dropped0:8:dropped60:e".to_vec()
        );
        assert_eq!(
            crate::bencode::decode(&m.encode()).unwrap().encode(),
            m.encode()
        );
        let msg = m.to_message(5);
        assert!(matches!(msg, Message::Extended { id: 5, .. }));
        let mut f = PexFlags::empty();
        f |= PexFlags::UTP;
        f.insert(PexFlags::HOLEPUNCH);
        assert_eq!(f.bits(), 0x0c);
        f.remove(PexFlags::UTP);
        assert_eq!(f, PexFlags::HOLEPUNCH);
    }
}
