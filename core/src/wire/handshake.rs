//! The 68-byte BitTorrent handshake.

use bytes::{BufMut, BytesMut};

use super::WireError;
use crate::id::Id20;

/// The protocol string sent after its length byte.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of a complete handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// Length of the handshake up to and including the info hash (everything but the peer id).
pub const HANDSHAKE_HEADER_LEN: usize = 48;

/// The 8 reserved handshake bytes, used as capability bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    const FAST: (usize, u8) = (7, 0x04);
    const DHT: (usize, u8) = (7, 0x01);

    fn bit(&self, (byte, mask): (usize, u8)) -> bool {
        self.0[byte] & mask != 0
    }

    fn set_bit(&mut self, (byte, mask): (usize, u8), on: bool) {
        if on {
            self.0[byte] |= mask;
        } else {
            self.0[byte] &= !mask;
        }
    }

    /// BEP 10 extension protocol support (`reserved[5] & 0x10`).
    pub fn extension_protocol(&self) -> bool {
        self.bit(Self::EXTENSION_PROTOCOL)
    }

    /// Sets or clears the BEP 10 extension protocol bit.
    pub fn set_extension_protocol(&mut self, on: bool) {
        self.set_bit(Self::EXTENSION_PROTOCOL, on);
    }

    /// BEP 6 fast extension support (`reserved[7] & 0x04`).
    pub fn fast_extension(&self) -> bool {
        self.bit(Self::FAST)
    }

    /// Sets or clears the BEP 6 fast extension bit.
    pub fn set_fast_extension(&mut self, on: bool) {
        self.set_bit(Self::FAST, on);
    }

    /// BEP 5 DHT support (`reserved[7] & 0x01`).
    pub fn dht(&self) -> bool {
        self.bit(Self::DHT)
    }

    /// Sets or clears the BEP 5 DHT bit.
    pub fn set_dht(&mut self, on: bool) {
        self.set_bit(Self::DHT, on);
    }
}

/// The first 48 bytes of a handshake: enough for an accepting side to pick the torrent before
/// the remote's peer id arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakeHeader {
    /// Capability bits.
    pub reserved: Reserved,
    /// The torrent the remote wants.
    pub info_hash: Id20,
}

impl HandshakeHeader {
    /// Checks a (possibly incomplete) handshake prefix: the length byte and as much of the
    /// protocol string as is present. Lets a receiver reject non-BitTorrent streams early.
    pub fn check_prefix(bytes: &[u8]) -> Result<(), WireError> {
        if let Some(&len) = bytes.first() {
            if usize::from(len) != PROTOCOL.len() {
                return Err(WireError::ProtocolLength(len));
            }
        }
        let name = bytes.get(1..).unwrap_or_default();
        let n = name.len().min(PROTOCOL.len());
        if name[..n] != PROTOCOL[..n] {
            return Err(WireError::ProtocolName);
        }
        Ok(())
    }

    /// Decodes exactly [`HANDSHAKE_HEADER_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let bytes: &[u8; HANDSHAKE_HEADER_LEN] =
            bytes.try_into().map_err(|_| WireError::HandshakeLength {
                expected: HANDSHAKE_HEADER_LEN,
                got: bytes.len(),
            })?;
        Self::check_prefix(bytes)?;
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&bytes[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&bytes[28..48]);
        Ok(HandshakeHeader {
            reserved: Reserved(reserved),
            info_hash: Id20(info_hash),
        })
    }
}

/// The handshake each side sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Capability bits.
    pub reserved: Reserved,
    /// The torrent's info hash.
    pub info_hash: Id20,
    /// The sender's peer id.
    pub peer_id: Id20,
}

impl Handshake {
    /// A handshake with no reserved bits set.
    pub fn new(info_hash: Id20, peer_id: Id20) -> Self {
        Handshake {
            reserved: Reserved::default(),
            info_hash,
            peer_id,
        }
    }

    /// The reserved bits and info hash.
    pub fn header(&self) -> HandshakeHeader {
        HandshakeHeader {
            reserved: self.reserved,
            info_hash: self.info_hash,
        }
    }

    /// The 68 bytes on the wire.
    pub fn to_bytes(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PROTOCOL.len() as u8;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved.0);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Appends the 68 bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.to_bytes());
    }

    /// Decodes exactly [`HANDSHAKE_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() != HANDSHAKE_LEN {
            return Err(WireError::HandshakeLength {
                expected: HANDSHAKE_LEN,
                got: bytes.len(),
            });
        }
        let header = HandshakeHeader::decode(&bytes[..HANDSHAKE_HEADER_LEN])?;
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&bytes[HANDSHAKE_HEADER_LEN..]);
        Ok(header.with_peer_id(Id20(peer_id)))
    }
}

impl HandshakeHeader {
    /// Completes the header with the remote's peer id.
    pub fn with_peer_id(self, peer_id: Id20) -> Handshake {
        Handshake {
            reserved: self.reserved,
            info_hash: self.info_hash,
            peer_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handshake {
        let mut h = Handshake::new(Id20([0x11; 20]), Id20(*b"-WW0001-abcdefghijkl"));
        h.reserved.set_extension_protocol(true);
        h.reserved.set_fast_extension(true);
        h
    }

    #[test]
    fn layout_matches_bep3() {
        let b = sample().to_bytes();
        assert_eq!(b[0], 19);
        assert_eq!(&b[1..20], b"BitTorrent protocol");
        assert_eq!(&b[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(&b[28..48], &[0x11; 20]);
        assert_eq!(&b[48..68], b"-WW0001-abcdefghijkl");
        assert_eq!(Handshake::decode(&b).unwrap(), sample());
        let mut out = BytesMut::new();
        sample().encode(&mut out);
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn reserved_bits_are_independent() {
        let mut r = Reserved::default();
        assert!(!r.extension_protocol() && !r.fast_extension() && !r.dht());
        r.set_dht(true);
        assert!(r.dht() && !r.fast_extension());
        assert_eq!(r.0, [0, 0, 0, 0, 0, 0, 0, 0x01]);
        r.set_fast_extension(true);
        r.set_extension_protocol(true);
        assert_eq!(r.0, [0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        r.set_dht(false);
        assert!(!r.dht() && r.fast_extension() && r.extension_protocol());
        r.set_extension_protocol(false);
        r.set_fast_extension(false);
        assert_eq!(r, Reserved::default());
    }

    #[test]
    fn rejects_bad_handshakes() {
        let good = sample().to_bytes();
        let mut b = good;
        b[0] = 18;
        assert_eq!(Handshake::decode(&b), Err(WireError::ProtocolLength(18)));
        let mut b = good;
        b[5] = b'X';
        assert_eq!(Handshake::decode(&b), Err(WireError::ProtocolName));
        assert_eq!(
            Handshake::decode(&good[..67]),
            Err(WireError::HandshakeLength {
                expected: 68,
                got: 67
            })
        );
        assert!(Handshake::decode(&[]).is_err());
        assert_eq!(
            HandshakeHeader::decode(&good[..48]).unwrap(),
            sample().header()
        );
        assert!(HandshakeHeader::decode(&good[..47]).is_err());
    }

    #[test]
    fn prefix_check_is_incremental() {
        let good = sample().to_bytes();
        for n in 0..=good.len() {
            assert_eq!(HandshakeHeader::check_prefix(&good[..n]), Ok(()));
        }
        assert_eq!(
            HandshakeHeader::check_prefix(b"GET / HTTP/1.1"),
            Err(WireError::ProtocolLength(b'G'))
        );
        assert_eq!(
            HandshakeHeader::check_prefix(b"\x13BitTorrent pr0"),
            Err(WireError::ProtocolName)
        );
    }
}
