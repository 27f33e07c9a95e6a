//! Compact peer addresses: 6 bytes for IPv4 (address, port) and 18 for IPv6, big-endian.
//!
//! Used by tracker responses (BEP 23, BEP 7), PEX (BEP 11) and the DHT.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

/// Bytes of one compact IPv4 peer.
pub const V4_LEN: usize = 6;
/// Bytes of one compact IPv6 peer.
pub const V6_LEN: usize = 18;

/// Errors from parsing a compact peer list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// The list's length is not a multiple of the entry size.
    #[error("compact peer list of {len} bytes is not a multiple of {entry} bytes")]
    Length {
        /// Length of the list.
        len: usize,
        /// Size of one entry (6 or 18).
        entry: usize,
    },
}

/// Parses one 6-byte IPv4 entry.
pub fn parse_v4(b: &[u8; V4_LEN]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// Parses one 18-byte IPv6 entry (flow info and scope id are zero).
pub fn parse_v6(b: &[u8; V6_LEN]) -> SocketAddrV6 {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&b[..16]);
    SocketAddrV6::new(Ipv6Addr::from(ip), u16::from_be_bytes([b[16], b[17]]), 0, 0)
}

/// Appends one 6-byte IPv4 entry.
pub fn write_v4(addr: &SocketAddrV4, out: &mut Vec<u8>) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends one 18-byte IPv6 entry (flow info and scope id are dropped).
pub fn write_v6(addr: &SocketAddrV6, out: &mut Vec<u8>) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn check(len: usize, entry: usize) -> Result<usize, CompactError> {
    if len % entry == 0 {
        Ok(len / entry)
    } else {
        Err(CompactError::Length { len, entry })
    }
}

/// Iterates a list of 6-byte IPv4 entries; the length must be a multiple of 6.
pub fn iter_peers_v4(
    bytes: &[u8],
) -> Result<impl ExactSizeIterator<Item = SocketAddrV4> + '_, CompactError> {
    check(bytes.len(), V4_LEN)?;
    Ok(bytes
        .chunks_exact(V4_LEN)
        .map(|c| parse_v4(c.try_into().unwrap_or(&[0; V4_LEN]))))
}

/// Iterates a list of 18-byte IPv6 entries; the length must be a multiple of 18.
pub fn iter_peers_v6(
    bytes: &[u8],
) -> Result<impl ExactSizeIterator<Item = SocketAddrV6> + '_, CompactError> {
    check(bytes.len(), V6_LEN)?;
    Ok(bytes
        .chunks_exact(V6_LEN)
        .map(|c| parse_v6(c.try_into().unwrap_or(&[0; V6_LEN]))))
}

/// Parses a list of 6-byte IPv4 entries; the length must be a multiple of 6.
pub fn parse_peers_v4(bytes: &[u8]) -> Result<Vec<SocketAddrV4>, CompactError> {
    Ok(iter_peers_v4(bytes)?.collect())
}

/// Parses a list of 18-byte IPv6 entries; the length must be a multiple of 18.
pub fn parse_peers_v6(bytes: &[u8]) -> Result<Vec<SocketAddrV6>, CompactError> {
    Ok(iter_peers_v6(bytes)?.collect())
}

/// Appends 6-byte entries for each address.
pub fn write_peers_v4<'a>(peers: impl IntoIterator<Item = &'a SocketAddrV4>, out: &mut Vec<u8>) {
    for p in peers {
        write_v4(p, out);
    }
}

/// Appends 18-byte entries for each address.
pub fn write_peers_v6<'a>(peers: impl IntoIterator<Item = &'a SocketAddrV6>, out: &mut Vec<u8>) {
    for p in peers {
        write_v6(p, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        let v4 = parse_peers_v4(&[10, 0, 0, 1, 0x1a, 0xe1, 192, 168, 1, 2, 0, 80]).unwrap();
        assert_eq!(
            v4,
            vec![
                "10.0.0.1:6881".parse::<SocketAddrV4>().unwrap(),
                "192.168.1.2:80".parse().unwrap()
            ]
        );
        let mut b = vec![0u8; 15];
        b.push(1);
        b.extend_from_slice(&[0x1f, 0x90]);
        assert_eq!(
            parse_peers_v6(&b).unwrap(),
            vec!["[::1]:8080".parse::<SocketAddrV6>().unwrap()]
        );
        let mut out = Vec::new();
        write_peers_v6(&parse_peers_v6(&b).unwrap(), &mut out);
        assert_eq!(out, b);
        assert_eq!(parse_peers_v4(&[]).unwrap(), vec![]);
    }

    #[test]
    fn ragged_lists_are_errors() {
        assert_eq!(
            parse_peers_v4(&[1, 2, 3, 4, 5, 6, 7]),
            Err(CompactError::Length { len: 7, entry: 6 })
        );
        assert_eq!(
            parse_peers_v6(&[0; 17]),
            Err(CompactError::Length { len: 17, entry: 18 })
        );
        assert!(parse_peers_v6(&[0; 36]).is_ok());
    }

    proptest! {
        #[test]
        fn roundtrip(
            v4 in proptest::collection::vec((any::<[u8; 4]>(), any::<u16>()), 0..20),
            v6 in proptest::collection::vec((any::<[u8; 16]>(), any::<u16>()), 0..20),
        ) {
            let v4: Vec<SocketAddrV4> = v4.into_iter().map(|(ip, p)| SocketAddrV4::new(ip.into(), p)).collect();
            let v6: Vec<SocketAddrV6> = v6.into_iter().map(|(ip, p)| SocketAddrV6::new(ip.into(), p, 0, 0)).collect();
            let mut a = Vec::new();
            write_peers_v4(&v4, &mut a);
            prop_assert_eq!(a.len(), v4.len() * V4_LEN);
            prop_assert_eq!(parse_peers_v4(&a).unwrap(), v4);
            let mut b = Vec::new();
            write_peers_v6(&v6, &mut b);
            prop_assert_eq!(b.len(), v6.len() * V6_LEN);
            prop_assert_eq!(parse_peers_v6(&b).unwrap(), v6);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(parse_peers_v4(&data).is_ok(), data.len() % 6 == 0);
            prop_assert_eq!(parse_peers_v6(&data).is_ok(), data.len() % 18 == 0);
        }
    }
}
