//! The picker's self-check for tests: every derived structure recomputed from scratch.

use std::collections::BTreeMap;

use crate::id::PeerKey;
use crate::piece::{Block, BLOCK_SIZE};

use super::{Picker, NONE, RECEIVED};

impl Picker {
    /// Checks every derived structure against a recomputation (tests only).
    pub(crate) fn check_invariants(&self) {
        self.order.check(|p| self.avail[p as usize]);
        let mut free_blocks = 0u64;
        let mut wanted_missing = 0u32;
        let mut missing = 0u64;
        let mut open = 0;
        let mut finished = 0;
        let mut requests: BTreeMap<PeerKey, Vec<Block>> = BTreeMap::new();
        for p in 0..self.num_pieces() {
            let have = self.have.get_raw(p);
            let want = self.wanted.get(p) && !have;
            assert_eq!(self.want.get(p), want, "want bit {p}");
            if !have {
                missing += u64::from(self.piece_len(p));
            }
            wanted_missing += u32::from(want);
            let s = self.slot_of[p as usize];
            let free = if s == NONE {
                self.num_blocks(p)
            } else {
                open += 1;
                let op = &self.open[s as usize];
                assert!(!have, "had piece {p} is open");
                assert_eq!(op.piece, p);
                assert_eq!(op.slots.len() as u32, self.num_blocks(p));
                let (mut f, mut q, mut r) = (0, 0, 0);
                for (i, sl) in op.slots.iter().enumerate() {
                    match sl.n {
                        0 => {
                            f += 1;
                            assert!(i as u32 >= op.hint, "free block below hint");
                        }
                        RECEIVED => r += 1,
                        n => {
                            q += 1;
                            let ps = &sl.peers[..usize::from(n)];
                            for (j, a) in ps.iter().enumerate() {
                                assert!(
                                    !ps[j + 1..].contains(a),
                                    "block requested twice from one peer"
                                );
                                requests.entry(*a).or_default().push(Block {
                                    piece: self.index(p),
                                    begin: i as u32 * BLOCK_SIZE,
                                    length: (self.piece_len(p) - i as u32 * BLOCK_SIZE)
                                        .min(BLOCK_SIZE),
                                });
                            }
                        }
                    }
                }
                assert_eq!(
                    (op.free, op.requested, op.received),
                    (f, q, r),
                    "piece {p} counts"
                );
                assert!(
                    op.requested + op.received > 0 || op.owner.is_some(),
                    "untouched piece {p} open"
                );
                if op.is_complete() {
                    finished += 1;
                }
                let in_partial = op.partial_pos != NONE;
                assert_eq!(in_partial, want && f > 0, "partial membership {p}");
                if in_partial {
                    assert_eq!(self.partial[op.partial_pos as usize], p);
                }
                if let Some(o) = op.owner {
                    assert!(self.peers.get(&o).is_some_and(|st| st.owned.contains(&p)));
                }
                f
            };
            if want {
                free_blocks += u64::from(free);
            }
            assert_eq!(self.pickable.get(p), want && free > 0, "pickable {p}");
            let in_order = want && s == NONE && !self.in_range(p);
            assert_eq!(self.order.contains(p), in_order, "order membership {p}");
            assert_eq!(self.fresh.get(p), in_order, "fresh bit {p}");
        }
        assert_eq!(self.free_blocks, free_blocks);
        assert_eq!(self.wanted_missing, wanted_missing);
        assert_eq!(self.missing_bytes, missing);
        assert_eq!(self.num_open, open);
        assert_eq!(self.num_finished, finished);
        assert_eq!(
            self.partial.len(),
            self.open.iter().filter(|o| o.partial_pos != NONE).count()
        );
        let mut total = 0;
        for (peer, st) in &self.peers {
            assert!(
                !st.outstanding.is_empty() || !st.owned.is_empty(),
                "empty peer entry"
            );
            let mut mine = st.outstanding.clone();
            mine.sort();
            let mut expect = requests.remove(peer).unwrap_or_default();
            expect.sort();
            assert_eq!(mine, expect, "outstanding of {peer:?}");
            total += mine.len();
        }
        assert!(
            requests.is_empty(),
            "requests without peer entry: {requests:?}"
        );
        assert_eq!(self.num_requests, total);
    }
}
