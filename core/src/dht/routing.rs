//! The routing table (BEP 5): k-buckets by XOR distance from our own id, the bucket holding
//! our id split when it fills, a replacement cache per bucket, and node liveness.
//!
//! Bucket `i` (for `i` below the last) holds nodes whose id shares exactly `i` leading bits
//! with ours; the last bucket holds every node sharing more, and splits when it is full and a
//! new node arrives. That is BEP 5's split of the bucket whose range contains our id.

use std::net::SocketAddr;
use std::time::Duration;

use super::krpc::NodeInfo;
use crate::id::Id20;
use crate::time::Time;

/// Nodes per bucket (BEP 5's K).
pub const K: usize = 8;
/// Replacement candidates kept per bucket.
pub const REPLACEMENTS: usize = 8;
/// A node that answered within this long is good (BEP 5: 15 minutes).
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);
/// A bucket untouched this long is refreshed by a lookup of a random id in it.
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// Failed queries in a row after which a node is bad and replaced.
pub const MAX_FAILS: u32 = 2;

/// A node in the table.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Id and address.
    pub node: NodeInfo,
    /// When it last answered one of our queries (`None`: never).
    pub last_response: Option<Time>,
    /// When we last heard anything from it.
    pub last_seen: Time,
    /// Queries it failed to answer in a row.
    pub fails: u32,
}

impl Entry {
    fn new(node: NodeInfo, now: Time, responded: bool) -> Entry {
        Entry {
            node,
            last_response: responded.then_some(now),
            last_seen: now,
            fails: 0,
        }
    }

    /// Answered within [`GOOD_FOR`] and has not failed since.
    pub fn is_good(&self, now: Time) -> bool {
        self.fails == 0
            && self
                .last_response
                .is_some_and(|t| now.saturating_since(t) < GOOD_FOR)
    }

    /// Failed [`MAX_FAILS`] queries in a row.
    pub fn is_bad(&self) -> bool {
        self.fails >= MAX_FAILS
    }
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    nodes: Vec<Entry>,
    replacements: Vec<Entry>,
    last_changed: Time,
}

/// What happened to a node offered to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Already there: refreshed.
    Updated,
    /// Added to a bucket.
    Added,
    /// The bucket is full of live nodes: kept as a replacement. Ping the bucket's
    /// questionable nodes so that a dead one makes room.
    Replacement,
    /// Our own id, or an address already in the table under another id: ignored.
    Refused,
}

/// A routing table for one address family.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: Id20,
    buckets: Vec<Bucket>,
}

/// Leading bits `a` and `b` share (160 if equal).
pub fn common_prefix(a: &Id20, b: &Id20) -> usize {
    for i in 0..20 {
        let x = a.0[i] ^ b.0[i];
        if x != 0 {
            return i * 8 + x.leading_zeros() as usize;
        }
    }
    160
}

/// XOR distance, comparable as bytes.
pub fn distance(a: &Id20, b: &Id20) -> [u8; 20] {
    let mut d = [0u8; 20];
    for (i, x) in d.iter_mut().enumerate() {
        *x = a.0[i] ^ b.0[i];
    }
    d
}

impl RoutingTable {
    /// An empty table around our id.
    pub fn new(own: Id20, now: Time) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket {
                last_changed: now,
                ..Bucket::default()
            }],
        }
    }

    /// Our id.
    pub fn own_id(&self) -> Id20 {
        self.own
    }

    fn bucket_of(&self, id: &Id20) -> usize {
        common_prefix(&self.own, id).min(self.buckets.len() - 1)
    }

    /// Nodes in the buckets.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of buckets.
    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Every node in the buckets.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// Whether the table holds a node with this address.
    pub fn contains_addr(&self, addr: SocketAddr) -> bool {
        self.entries().any(|e| e.node.addr == addr)
    }

    /// Offers a node we heard from (`responded`: it answered our query).
    pub fn insert(&mut self, now: Time, node: NodeInfo, responded: bool) -> Insert {
        if node.id == self.own {
            return Insert::Refused;
        }
        let i = self.bucket_of(&node.id);
        let b = &mut self.buckets[i];
        if let Some(e) = b.nodes.iter_mut().find(|e| e.node.id == node.id) {
            if e.node.addr != node.addr {
                // Another address claims a known id: keep the one we know.
                return Insert::Refused;
            }
            e.last_seen = now;
            if responded {
                e.last_response = Some(now);
                e.fails = 0;
                b.last_changed = now;
            }
            return Insert::Updated;
        }
        if self.contains_addr(node.addr) {
            return Insert::Refused;
        }
        let b = &mut self.buckets[i];
        if b.nodes.len() < K {
            b.nodes.push(Entry::new(node, now, responded));
            b.last_changed = now;
            return Insert::Added;
        }
        if let Some(bad) = b.nodes.iter().position(Entry::is_bad) {
            b.nodes[bad] = Entry::new(node, now, responded);
            b.last_changed = now;
            return Insert::Added;
        }
        if i == self.buckets.len() - 1 && self.buckets.len() < 160 {
            self.split();
            return self.insert(now, node, responded);
        }
        let b = &mut self.buckets[i];
        b.replacements.retain(|e| e.node.id != node.id);
        if b.replacements.len() >= REPLACEMENTS {
            b.replacements.remove(0);
        }
        b.replacements.push(Entry::new(node, now, responded));
        Insert::Replacement
    }

    /// Splits the last bucket: nodes sharing more bits with our id move to a new last one.
    fn split(&mut self) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let last = self.buckets.last_mut().expect("at least one bucket");
        let (stay, go): (Vec<Entry>, Vec<Entry>) = last
            .nodes
            .drain(..)
            .partition(|e| common_prefix(&own, &e.node.id) == depth);
        let (rstay, rgo): (Vec<Entry>, Vec<Entry>) = last
            .replacements
            .drain(..)
            .partition(|e| common_prefix(&own, &e.node.id) == depth);
        last.nodes = stay;
        last.replacements = rstay;
        let changed = last.last_changed;
        self.buckets.push(Bucket {
            nodes: go,
            replacements: rgo,
            last_changed: changed,
        });
        // Fill the room the split made from the replacements.
        for b in self.buckets.iter_mut().rev().take(2) {
            while b.nodes.len() < K {
                let Some(r) = b.replacements.pop() else { break };
                b.nodes.push(r);
            }
        }
    }

    /// A query to the node at `addr` (with id `id`, if known) timed out. A node that fails
    /// [`MAX_FAILS`] times in a row is replaced by its bucket's newest replacement.
    pub fn failed(&mut self, id: Option<Id20>, addr: SocketAddr) {
        let i = match id {
            Some(id) => self.bucket_of(&id),
            None => match self
                .buckets
                .iter()
                .position(|b| b.nodes.iter().any(|e| e.node.addr == addr))
            {
                Some(i) => i,
                None => return,
            },
        };
        let b = &mut self.buckets[i];
        let Some(pos) = b.nodes.iter().position(|e| e.node.addr == addr) else {
            b.replacements.retain(|e| e.node.addr != addr);
            return;
        };
        b.nodes[pos].fails += 1;
        if b.nodes[pos].is_bad() {
            if let Some(r) = b.replacements.pop() {
                b.nodes[pos] = r;
            }
        }
    }

    /// Up to `n` nodes closest to `target`, closest first, bad ones left out.
    pub fn closest(&self, target: &Id20, n: usize) -> Vec<NodeInfo> {
        // Each distance computed once; only the `n` closest are sorted.
        let mut all: Vec<([u8; 20], NodeInfo)> = self
            .entries()
            .filter(|e| !e.is_bad())
            .map(|e| (distance(&e.node.id, target), e.node))
            .collect();
        if n == 0 {
            return Vec::new();
        }
        if all.len() > n {
            all.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, node)| node).collect()
    }

    /// Nodes not known to be good that are due a ping: questionable ones in full buckets
    /// with replacements waiting, oldest first, at most `max`.
    pub fn to_ping(&self, now: Time, max: usize) -> Vec<NodeInfo> {
        let mut out: Vec<&Entry> = self
            .buckets
            .iter()
            .filter(|b| !b.replacements.is_empty() || b.nodes.len() < K)
            .flat_map(|b| b.nodes.iter())
            .filter(|e| !e.is_good(now))
            .collect();
        out.sort_by_key(|e| e.last_seen);
        out.into_iter().take(max).map(|e| e.node).collect()
    }

    /// Buckets untouched for [`REFRESH_AFTER`]: for each, an id inside it to look up
    /// (`random` supplies the bits below the bucket's prefix). Marks them refreshed.
    pub fn due_refresh(&mut self, now: Time, mut random: impl FnMut() -> Id20) -> Vec<Id20> {
        let n = self.buckets.len();
        let own = self.own;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_since(b.last_changed) < REFRESH_AFTER {
                continue;
            }
            b.last_changed = now;
            let mut id = random();
            // Share exactly i bits with our id (any number ≥ i for the last bucket).
            for bit in 0..i.min(160) {
                set_bit(&mut id, bit, get_bit(&own, bit));
            }
            if i < n - 1 {
                set_bit(&mut id, i, !get_bit(&own, i));
            }
            out.push(id);
        }
        out
    }

    /// Marks the bucket holding `id` as changed (a lookup went through it).
    pub fn touch(&mut self, now: Time, id: &Id20) {
        let i = self.bucket_of(id);
        self.buckets[i].last_changed = now;
    }
}

fn get_bit(id: &Id20, bit: usize) -> bool {
    id.0[bit / 8] & (0x80 >> (bit % 8)) != 0
}

fn set_bit(id: &mut Id20, bit: usize, on: bool) {
    let mask = 0x80 >> (bit % 8);
    if on {
        id.0[bit / 8] |= mask;
    } else {
        id.0[bit / 8] &= !mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn node(rng: &mut Rng, n: u16) -> NodeInfo {
        let mut id = [0u8; 20];
        rng.fill(&mut id);
        NodeInfo {
            id: Id20(id),
            addr: SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 6881)),
        }
    }

    #[test]
    fn buckets_split_and_hold_the_closest() {
        let mut rng = Rng::new(7);
        let mut own = [0u8; 20];
        rng.fill(&mut own);
        let t0 = Time::ZERO;
        let mut t = RoutingTable::new(Id20(own), t0);
        let nodes: Vec<NodeInfo> = (0..2000).map(|n| node(&mut rng, n)).collect();
        for n in &nodes {
            t.insert(t0, *n, true);
        }
        // Every bucket holds at most K; the table grew by splitting.
        assert!(t.buckets.iter().all(|b| b.nodes.len() <= K));
        assert!(t.num_buckets() > 5, "{} buckets", t.num_buckets());
        for (i, b) in t.buckets.iter().enumerate() {
            for e in &b.nodes {
                let cp = common_prefix(&t.own, &e.node.id);
                assert!(cp == i || (i == t.num_buckets() - 1 && cp >= i));
            }
        }
        // The closest nodes to our id are all kept: the table is densest near us.
        let mut sorted = nodes.clone();
        sorted.sort_by_key(|n| distance(&n.id, &t.own));
        let closest = t.closest(&t.own, K);
        assert_eq!(closest, sorted[..K].to_vec());
    }

    #[test]
    fn bad_nodes_make_room_for_replacements() {
        let mut rng = Rng::new(1);
        let t0 = Time::ZERO;
        // Our id is all ones; nodes starting with a 0 bit all land in bucket 0 once split.
        let mut t = RoutingTable::new(Id20([0xff; 20]), t0);
        let mut far = Vec::new();
        let mut n = 0;
        while far.len() < K + 3 {
            let mut x = node(&mut rng, n);
            n += 1;
            x.id.0[0] &= 0x7f;
            far.push(x);
        }
        // Force a split first with a near node, so bucket 0 cannot split again.
        let mut near = node(&mut rng, 999);
        near.id.0[0] |= 0x80;
        t.insert(t0, near, true);
        for x in &far {
            t.insert(t0, *x, true);
        }
        let in_table: Vec<Id20> = t.entries().map(|e| e.node.id).collect();
        let extra = far.iter().find(|x| !in_table.contains(&x.id)).unwrap();
        assert_eq!(t.insert(t0, *extra, true), Insert::Replacement);
        let victim = far[0];
        t.failed(Some(victim.id), victim.addr);
        assert!(t.entries().any(|e| e.node.id == victim.id));
        t.failed(Some(victim.id), victim.addr);
        assert!(!t.entries().any(|e| e.node.id == victim.id));
        // The newest replacement (the one offered last) took its place.
        assert!(t.entries().any(|e| e.node.id == extra.id));
        // Our own id and a second id on a known address are refused.
        assert_eq!(
            t.insert(
                t0,
                NodeInfo {
                    id: Id20([0xff; 20]),
                    addr: near.addr
                },
                true
            ),
            Insert::Refused
        );
        let mut clash = near;
        clash.id.0[19] ^= 1;
        assert_eq!(t.insert(t0, clash, true), Insert::Refused);
    }

    #[test]
    fn refresh_targets_fall_in_their_buckets() {
        let mut rng = Rng::new(3);
        let mut own = [0u8; 20];
        rng.fill(&mut own);
        let t0 = Time::ZERO;
        let mut t = RoutingTable::new(Id20(own), t0);
        for n in 0..500 {
            let x = node(&mut rng, n);
            t.insert(t0, x, true);
        }
        assert!(t.due_refresh(t0, || Id20([0; 20])).is_empty());
        let later = t0 + REFRESH_AFTER;
        let targets = t.due_refresh(later, || {
            let mut id = [0u8; 20];
            rng.fill(&mut id);
            Id20(id)
        });
        assert_eq!(targets.len(), t.num_buckets());
        for (i, id) in targets.iter().enumerate() {
            assert_eq!(t.bucket_of(id), i);
        }
        assert!(t.due_refresh(later, || Id20([0; 20])).is_empty());
    }
}
