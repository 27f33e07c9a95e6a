//! RC4, the stream cipher of Message Stream Encryption (keyed with SHA-1 digests, its first
//! 1024 bytes of keystream discarded, as MSE prescribes).

/// One direction's RC4 keystream.
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state is a key: never printed.
        f.write_str("Rc4(..)")
    }
}

impl Rc4 {
    /// RC4 keyed with `key` (1 to 256 bytes; MSE's keys are 20), nothing discarded.
    pub fn new(key: &[u8]) -> Rc4 {
        let mut s = [0u8; 256];
        for (i, x) in s.iter_mut().enumerate() {
            *x = i as u8;
        }
        if !key.is_empty() {
            let mut j = 0u8;
            for i in 0..256 {
                j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
                s.swap(i, usize::from(j));
            }
        }
        Rc4 { s, i: 0, j: 0 }
    }

    /// RC4 keyed with `key`, its first 1024 keystream bytes discarded (MSE's keys).
    pub fn mse(key: &[u8]) -> Rc4 {
        let mut r = Rc4::new(key);
        r.apply(&mut [0u8; 1024]);
        r
    }

    /// XORs `data` with the next `data.len()` keystream bytes (encrypts or decrypts).
    pub fn apply(&mut self, data: &mut [u8]) {
        let (mut i, mut j) = (self.i, self.j);
        let s = &mut self.s;
        for b in data.iter_mut() {
            i = i.wrapping_add(1);
            let si = s[usize::from(i)];
            j = j.wrapping_add(si);
            let sj = s[usize::from(j)];
            s[usize::from(i)] = sj;
            s[usize::from(j)] = si;
            *b ^= s[usize::from(si.wrapping_add(sj))];
        }
        self.i = i;
        self.j = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // The classic test vectors (key, plaintext, ciphertext).
        let cases: [(&[u8], &[u8], &str); 3] = [
            (b"Key", b"Plaintext", "bbf316e8d940af0ad3"),
            (b"Wiki", b"pedia", "1021bf0420"),
            (b"Secret", b"Attack at dawn", "45a01f645fc35b383552544b9bf5"),
        ];
        for (key, plain, cipher) in cases {
            let mut data = plain.to_vec();
            Rc4::new(key).apply(&mut data);
            assert_eq!(hex::encode(&data), cipher);
            // Split across calls, the keystream continues where it stopped.
            let mut r = Rc4::new(key);
            let mut parts = plain.to_vec();
            let (a, b) = parts.split_at_mut(3);
            r.apply(a);
            r.apply(b);
            assert_eq!(hex::encode(&parts), cipher);
        }
    }

    #[test]
    fn mse_discards_the_first_kilobyte() {
        let mut plain = Rc4::new(b"k");
        let mut skip = [0u8; 1024];
        plain.apply(&mut skip);
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        plain.apply(&mut a);
        Rc4::mse(b"k").apply(&mut b);
        assert_eq!(a, b);
    }
}
