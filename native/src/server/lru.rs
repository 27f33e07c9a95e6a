//! A hash map that remembers the order in which its entries were last touched, with O(1)
//! insert, lookup, touch, removal, eviction of the oldest entry and access by position (for
//! random sampling).
//!
//! Entries live in one dense `Vec` (removal swaps the last entry into the hole) and are linked
//! into a doubly linked list by position, newest at the head.

use std::collections::HashMap;
use std::hash::Hash;

const NIL: usize = usize::MAX;

#[derive(Debug, Clone)]
struct Entry<K, V> {
    key: K,
    value: V,
    /// Towards the tail: the next older entry.
    older: usize,
    /// Towards the head: the next newer entry.
    newer: usize,
}

/// A map ordered by recency of [`insert`](LruMap::insert) / [`touch`](LruMap::touch).
#[derive(Debug, Clone)]
pub(crate) struct LruMap<K, V> {
    entries: Vec<Entry<K, V>>,
    index: HashMap<K, usize>,
    /// The newest entry.
    head: usize,
    /// The oldest entry.
    tail: usize,
}

impl<K: Hash + Eq + Clone, V> Default for LruMap<K, V> {
    fn default() -> Self {
        LruMap {
            entries: Vec::new(),
            index: HashMap::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

impl<K: Hash + Eq + Clone, V> LruMap<K, V> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value for `key`, without touching it.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let &i = self.index.get(key)?;
        self.entries.get(i).map(|e| &e.value)
    }

    /// The value for `key`, mutably, without touching it.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let &i = self.index.get(key)?;
        self.entries.get_mut(i).map(|e| &mut e.value)
    }

    /// The entry at position `i` (0..len, in no particular order).
    pub(crate) fn get_index(&self, i: usize) -> Option<(&K, &V)> {
        self.entries.get(i).map(|e| (&e.key, &e.value))
    }

    /// Inserts or replaces `key` and makes it the newest entry. Returns the old value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(&i) = self.index.get(&key) {
            self.move_to_head(i);
            return self
                .entries
                .get_mut(i)
                .map(|e| std::mem::replace(&mut e.value, value));
        }
        let i = self.entries.len();
        self.entries.push(Entry {
            key: key.clone(),
            value,
            older: NIL,
            newer: NIL,
        });
        self.index.insert(key, i);
        self.link_at_head(i);
        None
    }

    /// Makes `key` the newest entry; false when absent.
    pub(crate) fn touch(&mut self, key: &K) -> bool {
        match self.index.get(key) {
            Some(&i) => {
                self.move_to_head(i);
                true
            }
            None => false,
        }
    }

    /// Removes `key`.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.index.remove(key)?;
        Some(self.remove_at(i).1)
    }

    /// The oldest entry.
    pub(crate) fn oldest(&self) -> Option<(&K, &V)> {
        self.get_index(self.tail)
    }

    /// Removes and returns the oldest entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        if self.tail == NIL {
            return None;
        }
        let i = self.tail;
        let key = self.entries.get(i)?.key.clone();
        self.index.remove(&key);
        Some(self.remove_at(i))
    }

    /// All entries, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|e| (&e.key, &e.value))
    }

    /// All entries with mutable values, in no particular order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|e| (&e.key, &mut e.value))
    }

    /// Entries from the newest to the oldest.
    pub(crate) fn iter_newest_first(&self) -> impl Iterator<Item = (&K, &V)> {
        let mut i = self.head;
        std::iter::from_fn(move || {
            let e = self.entries.get(i)?;
            i = e.older;
            Some((&e.key, &e.value))
        })
    }

    /// Unlinks entry `i` (already gone from the index), moves the last entry into its slot and
    /// returns it.
    fn remove_at(&mut self, i: usize) -> (K, V) {
        self.unlink(i);
        let last = self.entries.len() - 1;
        let removed = self.entries.swap_remove(i);
        if i != last {
            // The entry formerly at `last` is now at `i`: repoint everything that named it.
            if let Some(moved) = self.entries.get(i) {
                let (older, newer) = (moved.older, moved.newer);
                if let Some(slot) = self.index.get_mut(&moved.key) {
                    *slot = i;
                }
                match self.entries.get_mut(older) {
                    Some(o) => o.newer = i,
                    None => self.tail = i,
                }
                match self.entries.get_mut(newer) {
                    Some(n) => n.older = i,
                    None => self.head = i,
                }
            }
        }
        (removed.key, removed.value)
    }

    fn unlink(&mut self, i: usize) {
        let Some(e) = self.entries.get(i) else {
            return;
        };
        let (older, newer) = (e.older, e.newer);
        match self.entries.get_mut(older) {
            Some(o) => o.newer = newer,
            None => self.tail = newer,
        }
        match self.entries.get_mut(newer) {
            Some(n) => n.older = older,
            None => self.head = older,
        }
        if let Some(e) = self.entries.get_mut(i) {
            e.older = NIL;
            e.newer = NIL;
        }
    }

    fn link_at_head(&mut self, i: usize) {
        let old_head = self.head;
        if let Some(e) = self.entries.get_mut(i) {
            e.older = old_head;
            e.newer = NIL;
        }
        match self.entries.get_mut(old_head) {
            Some(h) => h.newer = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    fn move_to_head(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.link_at_head(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(m: &LruMap<u32, u32>) -> Vec<u32> {
        m.iter_newest_first().map(|(k, _)| *k).collect()
    }

    /// Checks the links against the index after every step.
    fn check(m: &LruMap<u32, u32>) {
        assert_eq!(m.index.len(), m.entries.len());
        for (k, &i) in &m.index {
            assert_eq!(&m.entries[i].key, k);
        }
        let fwd = order(m);
        assert_eq!(fwd.len(), m.len());
        let mut back = Vec::new();
        let mut i = m.tail;
        while let Some(e) = m.entries.get(i) {
            back.push(e.key);
            i = e.newer;
        }
        back.reverse();
        assert_eq!(fwd, back);
    }

    #[test]
    fn insert_touch_remove_pop() {
        let mut m = LruMap::default();
        for k in 0..5 {
            assert_eq!(m.insert(k, k * 10), None);
            check(&m);
        }
        assert_eq!(order(&m), [4, 3, 2, 1, 0]);
        assert!(m.touch(&1));
        check(&m);
        assert_eq!(order(&m), [1, 4, 3, 2, 0]);
        assert_eq!(m.remove(&4), Some(40));
        check(&m);
        assert_eq!(order(&m), [1, 3, 2, 0]);
        assert_eq!(m.oldest(), Some((&0, &0)));
        assert_eq!(m.pop_oldest(), Some((0, 0)));
        check(&m);
        assert_eq!(m.insert(3, 33), Some(30));
        check(&m);
        assert_eq!(order(&m), [3, 1, 2]);
        assert_eq!(m.get(&3), Some(&33));
        assert!(!m.touch(&9));
        while m.pop_oldest().is_some() {
            check(&m);
        }
        assert_eq!(m.len(), 0);
        assert_eq!(m.oldest(), None);
    }

    #[test]
    fn random_operations_keep_links_consistent() {
        let mut rng = webtorrent_core::rng::Rng::new(3);
        let mut m = LruMap::default();
        let mut model: Vec<u32> = Vec::new(); // newest first
        for _ in 0..5000 {
            let k = rng.below(40) as u32;
            match rng.below(4) {
                0 => {
                    m.insert(k, k);
                    model.retain(|&x| x != k);
                    model.insert(0, k);
                }
                1 => {
                    if m.touch(&k) {
                        model.retain(|&x| x != k);
                        model.insert(0, k);
                    }
                }
                2 => {
                    m.remove(&k);
                    model.retain(|&x| x != k);
                }
                _ => {
                    m.pop_oldest();
                    model.pop();
                }
            }
            check(&m);
            assert_eq!(order(&m), model);
        }
    }
}
