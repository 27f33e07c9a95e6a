//! MSE's Diffie-Hellman: generator 2 modulo a 768-bit prime, 160-bit private keys, public
//! keys and the shared secret as 96 big-endian bytes.

use num_bigint::BigUint;

/// Length of a public key and of the shared secret.
pub const PUBLIC_KEY_LEN: usize = 96;

/// The 768-bit prime P (the first Oakley group's).
const PRIME: [u8; PUBLIC_KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];

/// A private key (160 random bits).
#[derive(Clone)]
pub struct PrivateKey(BigUint);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

fn to_fixed(n: &BigUint) -> [u8; PUBLIC_KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; PUBLIC_KEY_LEN];
    // Values are below P, so at most 96 bytes.
    let skip = bytes.len().saturating_sub(PUBLIC_KEY_LEN);
    let bytes = &bytes[skip..];
    out[PUBLIC_KEY_LEN - bytes.len()..].copy_from_slice(bytes);
    out
}

impl PrivateKey {
    /// The key with these 160 bits (from a cryptographic source). An all-zero value is
    /// replaced by 1 so that the public key is never trivial.
    pub fn new(bits: [u8; 20]) -> PrivateKey {
        let x = BigUint::from_bytes_be(&bits);
        PrivateKey(if x == BigUint::ZERO {
            BigUint::from(1u8)
        } else {
            x
        })
    }

    /// `2^x mod P`, as 96 big-endian bytes.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let p = BigUint::from_bytes_be(&PRIME);
        to_fixed(&BigUint::from(2u8).modpow(&self.0, &p))
    }

    /// `peer^x mod P` as 96 big-endian bytes, or `None` when the peer's key is not in
    /// `2..P-1` (a key that would make the secret predictable).
    pub fn shared_secret(&self, peer_public: &[u8]) -> Option<[u8; PUBLIC_KEY_LEN]> {
        if peer_public.len() != PUBLIC_KEY_LEN {
            return None;
        }
        let p = BigUint::from_bytes_be(&PRIME);
        let y = BigUint::from_bytes_be(peer_public);
        let one = BigUint::from(1u8);
        if y <= one || y >= &p - &one {
            return None;
        }
        Some(to_fixed(&y.modpow(&self.0, &p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_compute_the_same_secret() {
        let a = PrivateKey::new([7; 20]);
        let b = PrivateKey::new([200; 20]);
        let (ya, yb) = (a.public_key(), b.public_key());
        assert_ne!(ya, yb);
        let s1 = a.shared_secret(&yb).unwrap();
        let s2 = b.shared_secret(&ya).unwrap();
        assert_eq!(s1, s2);
        assert_ne!(s1, [0; PUBLIC_KEY_LEN]);
    }

    #[test]
    fn small_private_key_gives_a_known_public_key() {
        // 2^1 = 2 and 2^10 = 1024: leading zeros kept to 96 bytes.
        let mut one = [0u8; 20];
        one[19] = 1;
        let y = PrivateKey::new(one).public_key();
        assert_eq!(y[95], 2);
        assert!(y[..95].iter().all(|b| *b == 0));
        let mut ten = [0u8; 20];
        ten[19] = 10;
        let y = PrivateKey::new(ten).public_key();
        assert_eq!(&y[94..], &[4, 0]);
        assert_eq!(PrivateKey::new([0; 20]).public_key()[95], 2);
    }

    #[test]
    fn trivial_peer_keys_are_refused() {
        let a = PrivateKey::new([9; 20]);
        let mut zero = [0u8; PUBLIC_KEY_LEN];
        assert!(a.shared_secret(&zero).is_none());
        zero[95] = 1;
        assert!(a.shared_secret(&zero).is_none());
        assert!(a.shared_secret(&PRIME).is_none());
        let mut p_minus_1 = PRIME;
        p_minus_1[95] -= 1;
        assert!(a.shared_secret(&p_minus_1).is_none());
        assert!(a.shared_secret(&[0xff; PUBLIC_KEY_LEN]).is_none());
        assert!(a.shared_secret(&[1; 10]).is_none());
        let mut two = [0u8; PUBLIC_KEY_LEN];
        two[95] = 2;
        assert!(a.shared_secret(&two).is_some());
    }
}
