//! Pieces ordered by availability, with O(1) moves for ±1 availability changes.
//!
//! The pieces live in one vector partitioned into buckets, bucket `k` holding the pieces whose
//! availability is `k`, in random order within a bucket. `pos` maps a piece to its place, so
//! moving a piece to the next bucket is one swap with the bucket's edge and one boundary
//! shift (the libtorrent layout). Inserting or removing a piece costs one swap per bucket
//! above it.

use crate::rng::Rng;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Order {
    order: Vec<u32>,
    pos: Vec<u32>,
    /// Bucket starts; bucket `k` is `starts[k]..starts[k + 1]`, the last entry is `order.len()`.
    starts: Vec<u32>,
}

impl Order {
    /// An empty order over `n` pieces.
    pub(crate) fn new(n: u32) -> Self {
        Order {
            order: Vec::new(),
            pos: vec![NONE; n as usize],
            starts: vec![0],
        }
    }

    /// Number of pieces in the order.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// The piece at `i`.
    #[inline]
    pub(crate) fn at(&self, i: usize) -> u32 {
        self.order[i]
    }

    /// The place of `p`, if present.
    #[inline]
    pub(crate) fn pos(&self, p: u32) -> Option<u32> {
        match self.pos[p as usize] {
            NONE => None,
            i => Some(i),
        }
    }

    /// Whether `p` is present.
    #[inline]
    pub(crate) fn contains(&self, p: u32) -> bool {
        self.pos[p as usize] != NONE
    }

    /// Where the pieces with availability `k` or more begin.
    #[inline]
    pub(crate) fn start_of(&self, k: u32) -> usize {
        self.starts
            .get(k as usize)
            .map_or(self.order.len(), |&s| s as usize)
    }

    fn ensure_buckets(&mut self, k: u32) {
        // Buckets 0..=k must exist: starts.len() >= k + 2.
        while self.starts.len() < k as usize + 2 {
            self.starts.push(self.order.len() as u32);
        }
    }

    #[inline]
    fn swap(&mut self, a: u32, b: u32) {
        if a != b {
            self.order.swap(a as usize, b as usize);
            self.pos[self.order[a as usize] as usize] = a;
            self.pos[self.order[b as usize] as usize] = b;
        }
    }

    /// Inserts `p` with availability `k` at a random place in its bucket.
    pub(crate) fn insert(&mut self, p: u32, k: u32, rng: &mut Rng) {
        if self.contains(p) {
            return;
        }
        self.ensure_buckets(k);
        let last = self.starts.len() - 1;
        let mut i = self.order.len() as u32;
        self.order.push(p);
        self.pos[p as usize] = i;
        self.starts[last] += 1;
        // Now the last element of the top bucket; walk it down to bucket k.
        for j in (k as usize + 1..last).rev() {
            let first = self.starts[j];
            self.swap(i, first);
            i = first;
            self.starts[j] += 1;
        }
        let (lo, hi) = (self.starts[k as usize], self.starts[k as usize + 1]);
        let r = lo + rng.below(u64::from(hi - lo)) as u32;
        self.swap(i, r);
    }

    /// Removes `p`, whose availability is `k`.
    pub(crate) fn remove(&mut self, p: u32, k: u32) {
        let Some(mut i) = self.pos(p) else {
            return;
        };
        debug_assert!(self.starts[k as usize] <= i && i < self.starts[k as usize + 1]);
        for j in k as usize + 1..self.starts.len() {
            let last = self.starts[j] - 1;
            self.swap(i, last);
            i = last;
            self.starts[j] -= 1;
        }
        self.order.pop();
        self.pos[p as usize] = NONE;
    }

    /// Moves `p` from bucket `k` to bucket `k + 1`.
    pub(crate) fn inc(&mut self, p: u32, k: u32) {
        let Some(i) = self.pos(p) else {
            return;
        };
        self.ensure_buckets(k + 1);
        let edge = self.starts[k as usize + 1] - 1;
        self.swap(i, edge);
        self.starts[k as usize + 1] -= 1;
    }

    /// Moves `p` from bucket `k` (> 0) to bucket `k - 1`.
    pub(crate) fn dec(&mut self, p: u32, k: u32) {
        let Some(i) = self.pos(p) else {
            return;
        };
        if k == 0 {
            return;
        }
        let edge = self.starts[k as usize];
        self.swap(i, edge);
        self.starts[k as usize] += 1;
    }

    /// Replaces the contents with `items` (piece, availability), shuffled within buckets.
    pub(crate) fn rebuild(&mut self, items: &[(u32, u32)], rng: &mut Rng) {
        for &p in &self.order {
            self.pos[p as usize] = NONE;
        }
        let max_k = items.iter().map(|&(_, k)| k).max().unwrap_or(0);
        let mut counts = vec![0u32; max_k as usize + 2];
        for &(_, k) in items {
            counts[k as usize + 1] += 1;
        }
        for k in 1..counts.len() {
            counts[k] += counts[k - 1];
        }
        self.starts = counts.clone();
        self.order.clear();
        self.order.resize(items.len(), 0);
        for &(p, k) in items {
            let at = &mut counts[k as usize];
            self.order[*at as usize] = p;
            *at += 1;
        }
        for k in 0..self.starts.len() - 1 {
            let (lo, hi) = (self.starts[k] as usize, self.starts[k + 1] as usize);
            rng.shuffle(&mut self.order[lo..hi]);
        }
        for (i, &p) in self.order.iter().enumerate() {
            self.pos[p as usize] = i as u32;
        }
    }

    /// Checks the layout against each piece's availability (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self, avail: impl Fn(u32) -> u32) {
        assert_eq!(*self.starts.last().unwrap() as usize, self.order.len());
        assert_eq!(self.starts[0], 0);
        for k in 0..self.starts.len() - 1 {
            assert!(self.starts[k] <= self.starts[k + 1]);
            for i in self.starts[k]..self.starts[k + 1] {
                let p = self.order[i as usize];
                assert_eq!(self.pos[p as usize], i);
                assert_eq!(avail(p), k as u32, "piece {p} in bucket {k}");
            }
        }
        let present = self.pos.iter().filter(|&&x| x != NONE).count();
        assert_eq!(present, self.order.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_keep_buckets_sorted() {
        let mut rng = Rng::new(3);
        let mut avail = [0u32; 50];
        let mut o = Order::new(50);
        let items: Vec<(u32, u32)> = (0..40).map(|p| (p, 0)).collect();
        o.rebuild(&items, &mut rng);
        let mut inside: Vec<bool> = (0..50).map(|p| p < 40).collect();
        for step in 0..5000u32 {
            let p = rng.below(50) as u32;
            match rng.below(4) {
                0 => {
                    if inside[p as usize] {
                        o.remove(p, avail[p as usize]);
                    } else {
                        o.insert(p, avail[p as usize], &mut rng);
                    }
                    inside[p as usize] = !inside[p as usize];
                }
                1 if avail[p as usize] > 0 => {
                    o.dec(p, avail[p as usize]);
                    avail[p as usize] -= 1;
                }
                _ => {
                    o.inc(p, avail[p as usize]);
                    avail[p as usize] += 1;
                }
            }
            if step % 97 == 0 {
                o.check(|p| avail[p as usize]);
            }
            assert_eq!(o.contains(p), inside[p as usize]);
        }
        o.check(|p| avail[p as usize]);
        let keys: Vec<u32> = (0..o.len()).map(|i| avail[o.at(i) as usize]).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        let items: Vec<(u32, u32)> = (0..50).map(|p| (p, avail[p as usize])).collect();
        o.rebuild(&items, &mut rng);
        o.check(|p| avail[p as usize]);
    }
}
