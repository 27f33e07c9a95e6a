//! BEP 6 allowed-fast sets: the pieces a peer may download from us while we choke it, so a
//! newcomer gets its first pieces without waiting for an unchoke slot.

use std::net::{IpAddr, Ipv4Addr};

use crate::id::InfoHash;
use crate::piece::sha1;

/// Pieces in the sets we hand out (BEP 6 suggests 10).
pub const ALLOWED_FAST_COUNT: u32 = 10;

/// BEP 6's canonical set of `k` pieces for a peer at `ip` (its /24 counts, so peers behind one
/// NAT get one set) in a torrent of `num_pieces` pieces. All pieces when there are no more
/// than `k`.
pub fn allowed_fast_set(ip: Ipv4Addr, info_hash: &InfoHash, num_pieces: u32, k: u32) -> Vec<u32> {
    let k = k.min(num_pieces) as usize;
    let mut set = Vec::with_capacity(k);
    if k == 0 {
        return set;
    }
    let masked = u32::from(ip) & 0xFFFF_FF00;
    let mut x = Vec::with_capacity(24);
    x.extend_from_slice(&masked.to_be_bytes());
    x.extend_from_slice(&info_hash.0);
    // Each round yields five candidates; repeats are rare, so this ends after a few rounds.
    // The bound only guards against a degenerate hash sequence.
    for _ in 0..64 * k {
        let digest = sha1(&x);
        for chunk in digest.chunks_exact(4) {
            let y = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let index = y % num_pieces;
            if !set.contains(&index) {
                set.push(index);
                if set.len() == k {
                    return set;
                }
            }
        }
        x.clear();
        x.extend_from_slice(&digest);
    }
    set
}

/// The IPv4 address BEP 6 works with: IPv4 as is, IPv4-mapped IPv6 unwrapped; `None` for
/// other IPv6 addresses (the BEP defines no set for them).
pub fn fast_set_ip(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id20;

    #[test]
    fn bep6_vectors() {
        let ih = Id20([0xaa; 20]);
        let ip = Ipv4Addr::new(80, 4, 4, 200);
        assert_eq!(
            allowed_fast_set(ip, &ih, 1313, 7),
            [1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(ip, &ih, 1313, 9),
            [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
        // The /24 decides.
        assert_eq!(
            allowed_fast_set(Ipv4Addr::new(80, 4, 4, 1), &ih, 1313, 7),
            allowed_fast_set(ip, &ih, 1313, 7)
        );
    }

    #[test]
    fn small_torrents_get_every_piece() {
        let ih = Id20([3; 20]);
        let mut s = allowed_fast_set(Ipv4Addr::LOCALHOST, &ih, 4, 10);
        s.sort_unstable();
        assert_eq!(s, [0, 1, 2, 3]);
        assert!(allowed_fast_set(Ipv4Addr::LOCALHOST, &ih, 0, 10).is_empty());
        assert_eq!(allowed_fast_set(Ipv4Addr::LOCALHOST, &ih, 1, 10), [0]);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            fast_set_ip("::ffff:1.2.3.4".parse().unwrap()),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(fast_set_ip("2001:db8::1".parse().unwrap()), None);
    }
}
