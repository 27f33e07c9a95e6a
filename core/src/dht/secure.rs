//! BEP 42: node ids tied to the node's IP address, so that one host cannot place itself
//! next to any id it likes. The first 21 bits of the id are a CRC-32C of the masked address
//! and three random bits, which are also the id's last byte.

use std::net::IpAddr;

use crate::id::Id20;

const V4_MASK: [u8; 4] = [0x03, 0x0f, 0x3f, 0xff];
const V6_MASK: [u8; 8] = [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff];

/// CRC-32C (Castagnoli), bitwise: only a few bytes are hashed per id.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The CRC BEP 42 derives from `ip` and the 3 bits `r`.
fn ip_crc(ip: IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match ip {
        IpAddr::V4(a) => {
            let mut b = a.octets();
            for (x, m) in b.iter_mut().zip(V4_MASK) {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
        IpAddr::V6(a) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&a.octets()[..8]);
            for (x, m) in b.iter_mut().zip(V6_MASK) {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
    }
}

/// Addresses BEP 42 does not apply to (private, loopback, link-local).
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_private() || a.is_loopback() || a.is_link_local(),
        IpAddr::V6(a) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// A node id for `ip`; `random` supplies the free bits (its last byte's low 3 bits pick r).
pub fn secure_id(ip: IpAddr, random: [u8; 20]) -> Id20 {
    let mut id = random;
    let r = random[19] & 7;
    let crc = ip_crc(ip, r);
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (random[2] & 7);
    Id20(id)
}

/// Whether `id` is a valid BEP 42 id for `ip` (always true for exempt addresses).
pub fn is_secure(id: &Id20, ip: IpAddr) -> bool {
    if is_exempt(ip) {
        return true;
    }
    let crc = ip_crc(ip, id.0[19]);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bep42_test_vectors() {
        // (IP, rand, the id's first three bytes (21 bits checked) and last byte) from BEP 42.
        let vectors = [
            ("124.31.75.21", 1u8, [0x5f, 0xbf, 0xbf]),
            ("21.75.31.124", 86, [0x5a, 0x3c, 0xe9]),
            ("65.23.51.170", 22, [0xa5, 0xd4, 0x32]),
            ("84.124.73.14", 65, [0x1b, 0x03, 0x21]),
            ("43.213.53.83", 90, [0xe5, 0x6f, 0x6c]),
        ];
        for (ip, rand, head) in vectors {
            let ip: IpAddr = ip.parse().unwrap();
            let mut random = [0u8; 20];
            random[19] = rand;
            random[2] = head[2] & 7;
            let id = secure_id(ip, random);
            assert_eq!(&id.0[..3], &head, "{ip}");
            assert_eq!(id.0[19], rand);
            assert!(is_secure(&id, ip));
            let mut wrong = id;
            wrong.0[0] ^= 0x80;
            assert!(!is_secure(&wrong, ip));
        }
        assert!(is_secure(&Id20([0; 20]), "192.168.1.1".parse().unwrap()));
        assert!(is_secure(&Id20([0; 20]), "127.0.0.2".parse().unwrap()));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let id = secure_id(v6, [7; 20]);
        assert!(is_secure(&id, v6));
    }
}
