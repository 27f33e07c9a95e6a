//! uTP packets (BEP 29): the 20-byte header, the extension chain (selective acks kept, the
//! rest skipped), and the payload.

use thiserror::Error;

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The protocol version every packet carries.
pub const VERSION: u8 = 1;
/// The selective-ack extension's type.
const EXT_SACK: u8 = 1;
/// Most extensions one packet may chain (more is refused, not walked).
const MAX_EXTENSIONS: usize = 8;

/// A packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Payload bytes (consumes a sequence number).
    Data = 0,
    /// The sender's last packet (consumes a sequence number).
    Fin = 1,
    /// An acknowledgement without payload.
    State = 2,
    /// The connection is aborted.
    Reset = 3,
    /// Opens a connection (consumes a sequence number).
    Syn = 4,
}

impl PacketType {
    fn from_u8(v: u8) -> Option<PacketType> {
        Some(match v {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }
}

/// The fixed header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The packet's type.
    pub ty: PacketType,
    /// The receiving side's connection id (the initiator's own id in a SYN).
    pub connection_id: u16,
    /// The sender's clock when sending, in microseconds (wrapping).
    pub timestamp_us: u32,
    /// The sender's last one-way delay sample of our packets, in microseconds (wrapping).
    pub timestamp_diff_us: u32,
    /// Bytes the sender can still receive.
    pub wnd_size: u32,
    /// The packet's sequence number (the next one to be used, in a STATE).
    pub seq_nr: u16,
    /// The last sequence number the sender received in order.
    pub ack_nr: u16,
}

/// A decoded packet borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The selective-ack bitmask, if the packet has one: bit `i` (byte `i / 8`, least
    /// significant bit first) acknowledges `ack_nr + 2 + i`.
    pub sack: Option<&'a [u8]>,
    /// What follows the header and extensions.
    pub payload: &'a [u8],
}

/// Why a datagram is not a uTP packet.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than the header.
    #[error("uTP packet of {0} bytes, shorter than the 20-byte header")]
    Short(usize),
    /// Not version 1, or a type above 4.
    #[error("not a uTP version 1 packet (first byte {0:#04x})")]
    NotUtp(u8),
    /// An extension runs past the end.
    #[error("uTP extension runs past the end of the packet")]
    Truncated,
    /// Too many chained extensions.
    #[error("uTP packet chains more than {MAX_EXTENSIONS} extensions")]
    TooManyExtensions,
}

/// True when `datagram` starts like a uTP packet (version 1, a known type): how a UDP port
/// shared with the DHT (whose messages start with `d`) tells the two apart.
pub fn looks_like_utp(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN
        && datagram[0] & 0x0f == VERSION
        && PacketType::from_u8(datagram[0] >> 4).is_some()
}

/// Decodes one datagram.
pub fn decode(data: &[u8]) -> Result<Packet<'_>, PacketError> {
    if data.len() < HEADER_LEN {
        return Err(PacketError::Short(data.len()));
    }
    let ty = match (data[0] & 0x0f, PacketType::from_u8(data[0] >> 4)) {
        (VERSION, Some(ty)) => ty,
        _ => return Err(PacketError::NotUtp(data[0])),
    };
    let u16_at = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let header = Header {
        ty,
        connection_id: u16_at(2),
        timestamp_us: u32_at(4),
        timestamp_diff_us: u32_at(8),
        wnd_size: u32_at(12),
        seq_nr: u16_at(16),
        ack_nr: u16_at(18),
    };
    let mut ext = data[1];
    let mut at = HEADER_LEN;
    let mut sack = None;
    let mut n = 0;
    while ext != 0 {
        n += 1;
        if n > MAX_EXTENSIONS {
            return Err(PacketError::TooManyExtensions);
        }
        let (next, len) = match data.get(at..at + 2) {
            Some(&[next, len]) => (next, usize::from(len)),
            _ => return Err(PacketError::Truncated),
        };
        let body = data
            .get(at + 2..at + 2 + len)
            .ok_or(PacketError::Truncated)?;
        if ext == EXT_SACK && !body.is_empty() {
            sack = Some(body);
        }
        at += 2 + len;
        ext = next;
    }
    Ok(Packet {
        header,
        sack,
        payload: &data[at..],
    })
}

/// Appends the encoded packet to `out`.
pub fn encode(header: &Header, sack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
    let sack = sack.filter(|s| !s.is_empty() && s.len() <= 255);
    out.reserve(HEADER_LEN + sack.map_or(0, |s| s.len() + 2) + payload.len());
    out.push(((header.ty as u8) << 4) | VERSION);
    out.push(if sack.is_some() { EXT_SACK } else { 0 });
    out.extend_from_slice(&header.connection_id.to_be_bytes());
    out.extend_from_slice(&header.timestamp_us.to_be_bytes());
    out.extend_from_slice(&header.timestamp_diff_us.to_be_bytes());
    out.extend_from_slice(&header.wnd_size.to_be_bytes());
    out.extend_from_slice(&header.seq_nr.to_be_bytes());
    out.extend_from_slice(&header.ack_nr.to_be_bytes());
    if let Some(s) = sack {
        out.push(0);
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ty: PacketType) -> Header {
        Header {
            ty,
            connection_id: 0x1234,
            timestamp_us: 0xdead_beef,
            timestamp_diff_us: 7,
            wnd_size: 1 << 20,
            seq_nr: 65535,
            ack_nr: 3,
        }
    }

    #[test]
    fn round_trip_with_and_without_sack() {
        for ty in [
            PacketType::Data,
            PacketType::Fin,
            PacketType::State,
            PacketType::Reset,
            PacketType::Syn,
        ] {
            let h = header(ty);
            let mut out = Vec::new();
            encode(&h, None, b"payload", &mut out);
            assert!(looks_like_utp(&out));
            let p = decode(&out).unwrap();
            assert_eq!((p.header, p.sack, p.payload), (h, None, &b"payload"[..]));
            out.clear();
            encode(&h, Some(&[1, 2, 3, 4]), b"", &mut out);
            let p = decode(&out).unwrap();
            assert_eq!(
                (p.header, p.sack, p.payload),
                (h, Some(&[1u8, 2, 3, 4][..]), &b""[..])
            );
        }
    }

    #[test]
    fn known_bytes() {
        // A SYN as libtorrent and libutp send it: type 4, version 1, no extension.
        let mut out = Vec::new();
        let h = Header {
            ty: PacketType::Syn,
            connection_id: 0xabcd,
            timestamp_us: 1,
            timestamp_diff_us: 0,
            wnd_size: 0x0010_0000,
            seq_nr: 1,
            ack_nr: 0,
        };
        encode(&h, None, &[], &mut out);
        assert_eq!(
            hex::encode(&out),
            "4100abcd00000001000000000010000000010000"
        );
    }

    #[test]
    fn bad_packets_are_refused() {
        assert_eq!(decode(&[0x41; 19]), Err(PacketError::Short(19)));
        let mut p = vec![0u8; 20];
        p[0] = 0x51;
        assert_eq!(decode(&p), Err(PacketError::NotUtp(0x51)));
        assert!(!looks_like_utp(&p));
        p[0] = 0x42;
        assert!(decode(&p).is_err());
        // The DHT's messages are bencoded dictionaries.
        assert!(!looks_like_utp(
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"
        ));
        // An extension whose length runs past the end.
        let mut p = vec![0x21, 1];
        p.extend_from_slice(&[0; 18]);
        p.extend_from_slice(&[0, 8, 1, 2]);
        assert_eq!(decode(&p), Err(PacketError::Truncated));
        // A chain that never ends within the packet.
        let mut p = vec![0x21, 9];
        p.extend_from_slice(&[0; 18]);
        for _ in 0..20 {
            p.extend_from_slice(&[9, 0]);
        }
        assert_eq!(decode(&p), Err(PacketError::TooManyExtensions));
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        let mut p = vec![0x01, 2];
        p.extend_from_slice(&[0; 18]);
        p.extend_from_slice(&[1, 3, 9, 9, 9]); // type 2, then a sack
        p.extend_from_slice(&[0, 4, 0xff, 0, 0, 1]);
        p.extend_from_slice(b"data");
        let d = decode(&p).unwrap();
        assert_eq!(d.sack, Some(&[0xff, 0, 0, 1][..]));
        assert_eq!(d.payload, b"data");
    }
}
