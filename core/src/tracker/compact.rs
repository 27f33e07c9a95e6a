//! Compact peer formats (BEP 23, BEP 7): 4-byte IPv4 or 16-byte IPv6 address, then a big-endian
//! port. Private to the tracker module; `wire::compact` covers the same formats for PEX and the
//! two could share one implementation later.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::AddressFamily;

/// Why a compact peer string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CompactError {
    /// The length is not a multiple of the entry size.
    Length { len: usize, stride: usize },
    /// More entries than allowed.
    TooMany { count: usize },
}

/// Bytes per entry for `family`.
pub(super) const fn stride(family: AddressFamily) -> usize {
    match family {
        AddressFamily::V4 => 6,
        AddressFamily::V6 => 18,
    }
}

/// Decodes a whole compact string of one family, refusing ragged lengths and more than `max`
/// entries (checked before allocating).
pub(super) fn decode(
    bytes: &[u8],
    family: AddressFamily,
    max: usize,
) -> Result<Vec<SocketAddr>, CompactError> {
    let stride = stride(family);
    if bytes.len() % stride != 0 {
        return Err(CompactError::Length {
            len: bytes.len(),
            stride,
        });
    }
    let count = bytes.len() / stride;
    if count > max {
        return Err(CompactError::TooMany { count });
    }
    let mut out = Vec::with_capacity(count);
    match family {
        AddressFamily::V4 => {
            for chunk in bytes.chunks_exact(6) {
                if let Ok(&[a, b, c, d, p0, p1]) = <&[u8; 6]>::try_from(chunk) {
                    let ip = Ipv4Addr::new(a, b, c, d);
                    let port = u16::from_be_bytes([p0, p1]);
                    out.push(SocketAddr::V4(SocketAddrV4::new(ip, port)));
                }
            }
        }
        AddressFamily::V6 => {
            for chunk in bytes.chunks_exact(18) {
                let (ip, port) = chunk.split_at(16);
                if let (Ok(ip), Ok(port)) = (<[u8; 16]>::try_from(ip), <[u8; 2]>::try_from(port)) {
                    let ip = Ipv6Addr::from(ip);
                    let port = u16::from_be_bytes(port);
                    out.push(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)));
                }
            }
        }
    }
    Ok(out)
}

/// Appends one peer in its family's compact form.
pub(super) fn encode_one(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Compact string of every peer in `addrs` that belongs to `family`, in order.
pub(super) fn encode_family<'a>(
    addrs: impl IntoIterator<Item = &'a SocketAddr>,
    family: AddressFamily,
) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addrs {
        if AddressFamily::of(a) == family {
            encode_one(&mut out, a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_vectors() {
        // 192.168.24.52:2001 => C0 A8 18 34 07 D1 (BEP 23 / wiki example).
        let v4 = decode(&[0xC0, 0xA8, 0x18, 0x34, 0x07, 0xD1], AddressFamily::V4, 10).unwrap();
        assert_eq!(v4, vec!["192.168.24.52:2001".parse().unwrap()]);
        let mut b = vec![0u8; 15];
        b.push(1);
        b.extend_from_slice(&6881u16.to_be_bytes());
        let v6 = decode(&b, AddressFamily::V6, 10).unwrap();
        assert_eq!(v6, vec!["[::1]:6881".parse().unwrap()]);
        assert_eq!(encode_family(&v6, AddressFamily::V6), b);
        assert!(encode_family(&v6, AddressFamily::V4).is_empty());
    }

    #[test]
    fn rejects_ragged_and_too_many() {
        assert_eq!(
            decode(&[0; 7], AddressFamily::V4, 10),
            Err(CompactError::Length { len: 7, stride: 6 })
        );
        assert_eq!(
            decode(&[0; 36], AddressFamily::V4, 5),
            Err(CompactError::TooMany { count: 6 })
        );
        assert_eq!(decode(&[], AddressFamily::V6, 0), Ok(vec![]));
    }
}
