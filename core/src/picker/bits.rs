//! A fixed-size bit set laid out like a wire bitfield read as big-endian 64-bit words, so
//! that a peer's [`Bitfield`] can be combined with it a word at a time.

use crate::piece::Bitfield;

/// One bit per piece; piece `i` is bit `63 - i % 64` of word `i / 64` (high bit first, as in
/// the wire format).
#[derive(Debug, Clone, Default)]
pub(crate) struct Bits {
    words: Vec<u64>,
    len: u32,
}

#[inline]
const fn mask(i: u32) -> u64 {
    1u64 << (63 - (i % 64))
}

impl Bits {
    /// All bits clear.
    pub(crate) fn new(len: u32) -> Self {
        Bits {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
        }
    }

    /// Number of words.
    #[inline]
    pub(crate) fn num_words(&self) -> usize {
        self.words.len()
    }

    /// Word `w`.
    #[inline]
    pub(crate) fn word(&self, w: usize) -> u64 {
        self.words[w]
    }

    /// Whether bit `i` is set (`false` past the end).
    #[inline]
    pub(crate) fn get(&self, i: u32) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & mask(i) != 0)
    }

    /// Sets or clears bit `i` (ignored past the end).
    #[inline]
    pub(crate) fn put(&mut self, i: u32, on: bool) {
        if i >= self.len {
            return;
        }
        let w = &mut self.words[(i / 64) as usize];
        if on {
            *w |= mask(i);
        } else {
            *w &= !mask(i);
        }
    }

    /// True when any bit is set in both `self` and the peer's pieces.
    pub(crate) fn intersects(&self, peer: &PeerBits<'_>) -> bool {
        (0..self.words.len()).any(|w| self.words[w] & peer.word(w) != 0)
    }
}

/// A peer's pieces as words in the same layout as [`Bits`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum PeerBits<'a> {
    /// The peer has every piece.
    All,
    /// The peer's wire bitfield bytes and how many bits are set.
    Some(&'a [u8], u32),
}

impl<'a> PeerBits<'a> {
    /// The bits of a bitfield.
    pub(crate) fn of(bf: &'a Bitfield) -> Self {
        PeerBits::Some(bf.as_bytes(), bf.count())
    }

    /// Word `w` (pieces `64 w .. 64 w + 64`); missing bytes read as zero.
    #[inline]
    pub(crate) fn word(&self, w: usize) -> u64 {
        match self {
            PeerBits::All => u64::MAX,
            PeerBits::Some(bytes, _) => {
                let start = w * 8;
                match bytes.get(start..start + 8) {
                    Some(chunk) => {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(chunk);
                        u64::from_be_bytes(a)
                    }
                    None => {
                        let mut a = [0u8; 8];
                        if let Some(rest) = bytes.get(start..) {
                            a[..rest.len()].copy_from_slice(rest);
                        }
                        u64::from_be_bytes(a)
                    }
                }
            }
        }
    }

    /// How many pieces the peer has (`u32::MAX` for all).
    #[inline]
    pub(crate) fn count(&self) -> u32 {
        match self {
            PeerBits::All => u32::MAX,
            PeerBits::Some(_, n) => *n,
        }
    }

    /// Whether the peer has piece `i`.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> bool {
        match self {
            PeerBits::All => true,
            PeerBits::Some(bytes, _) => bytes
                .get((i / 8) as usize)
                .is_some_and(|b| b & (0x80 >> (i % 8)) != 0),
        }
    }
}

/// The first piece in `lo..hi` whose bit is set in `word(w)` (the combined word `w`).
#[inline]
pub(crate) fn next_in(lo: u32, hi: u32, word: impl Fn(usize) -> u64) -> Option<u32> {
    if lo >= hi {
        return None;
    }
    let (first, last) = ((lo / 64) as usize, ((hi - 1) / 64) as usize);
    for w in first..=last {
        let mut bits = word(w);
        if bits == 0 {
            continue;
        }
        if w == first {
            bits &= u64::MAX >> (lo % 64);
        }
        if w == last {
            let keep = hi - (w as u32) * 64; // 1..=64 bits kept from the top
            bits &= u64::MAX << (64 - keep);
        }
        if bits != 0 {
            return Some(w as u32 * 64 + bits.leading_zeros());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::piece::Layout;

    #[test]
    fn layout_matches_wire_bitfield() {
        let l = Layout::new(16384, 130 * 16384).unwrap();
        let mut bf = Bitfield::new(130);
        let mut bits = Bits::new(130);
        for i in [0u32, 7, 8, 63, 64, 65, 127, 128, 129] {
            bf.set(l.piece(i).unwrap());
            bits.put(i, true);
        }
        let peer = PeerBits::of(&bf);
        for w in 0..bits.num_words() {
            assert_eq!(peer.word(w), bits.word(w), "word {w}");
        }
        let mut seen = Vec::new();
        let mut from = 1;
        while let Some(i) = next_in(from, 129, |w| peer.word(w)) {
            seen.push(i);
            from = i + 1;
        }
        assert_eq!(seen, [7, 8, 63, 64, 65, 127, 128]);
        assert_eq!(next_in(64, 65, |w| bits.word(w)), Some(64));
        assert_eq!(next_in(66, 127, |w| bits.word(w)), None);
        assert_eq!(next_in(5, 5, |w| bits.word(w)), None);
        assert!(bits.intersects(&peer));
        assert!(!Bits::new(130).intersects(&PeerBits::All));
        assert!(!bits.get(130) && bits.get(129));
    }
}
