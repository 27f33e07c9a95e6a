//! The choker: which interested peers are unchoked (tit-for-tat with an optimistic
//! unchoke while downloading, round robin while seeding).

use std::collections::VecDeque;
use std::time::Duration;

use super::Torrent;
use crate::id::PeerKey;
use crate::time::Time;
use crate::wire::BlockRequest;

impl Torrent {
    pub(super) fn run_choker(&mut self, now: Time) {
        // With nothing left to download (all of it, or all that is selected), rank by upload.
        let seeding = self.is_finished();
        let rotate = now >= self.next_optimistic;
        if rotate {
            self.next_optimistic = now + self.config.optimistic_interval;
        }
        let mut interested: Vec<(PeerKey, u64, Time, bool, bool)> = Vec::new();
        for (k, p) in self.peers.iter_mut() {
            if p.session.is_active() && p.session.peer_interested() {
                let rate = if seeding {
                    p.session.upload.rate(now)
                } else {
                    p.session.download.rate(now)
                };
                interested.push((
                    *k,
                    rate,
                    p.last_unchoked,
                    !p.session.am_choking(),
                    p.optimistic,
                ));
            }
        }
        interested.sort_by_key(|e| e.0);
        let slots = self.config.unchoke_slots.max(1);
        let mut chosen: Vec<PeerKey> = Vec::new();
        if seeding {
            // Round robin: a peer keeps its slot for one optimistic interval, then the
            // peers that waited longest get their turn.
            let turn = self.config.optimistic_interval;
            // Order: peers still in their turn, then choked peers by how long they have
            // waited, then peers whose turn is over.
            interested.sort_by_key(|(_, rate, last, unchoked, _)| {
                let keeps = *unchoked && now.saturating_since(*last) < turn;
                (!keeps, *unchoked, *last, u64::MAX - rate)
            });
            chosen.extend(interested.iter().take(slots).map(|e| e.0));
        } else {
            // Tit-for-tat: the fastest uploaders to us, plus one optimistic unchoke.
            let mut by_rate = interested.clone();
            by_rate.sort_by_key(|e| std::cmp::Reverse(e.1));
            chosen.extend(by_rate.iter().take(slots - 1).map(|e| e.0));
            let current_opt = interested.iter().find(|e| e.4).map(|e| e.0);
            let opt = match current_opt {
                Some(k) if !rotate && !chosen.contains(&k) => Some(k),
                _ => {
                    // Newly connected peers get the optimistic slot first: they have nothing
                    // to trade yet and this is how they get started.
                    let mut rest: Vec<PeerKey> = interested
                        .iter()
                        .map(|e| e.0)
                        .filter(|k| !chosen.contains(k))
                        .collect();
                    let fresh: Vec<PeerKey> = rest
                        .iter()
                        .copied()
                        .filter(|k| {
                            self.peers.get(k).is_some_and(|p| {
                                now.saturating_since(p.connected_at) < Duration::from_secs(60)
                            })
                        })
                        .collect();
                    if !fresh.is_empty() {
                        rest = fresh;
                    }
                    if rest.is_empty() {
                        None
                    } else {
                        Some(rest[self.rng.below(rest.len() as u64) as usize])
                    }
                }
            };
            for p in self.peers.values_mut() {
                p.optimistic = false;
            }
            if let Some(k) = opt {
                chosen.push(k);
                if let Some(p) = self.peers.get_mut(&k) {
                    p.optimistic = true;
                }
            }
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let Some(p) = self.peers.get_mut(&k) else {
                continue;
            };
            if chosen.contains(&k) {
                if p.session.am_choking() {
                    p.last_unchoked = now;
                }
                p.session.unchoke(now);
            } else if !p.session.am_choking() {
                p.session.choke(now);
                // Pending requests die with the choke (rejected explicitly under BEP 6), but
                // for pieces in the peer's allowed-fast set.
                let fast = &p.fast_for_peer;
                let (keep, drop): (VecDeque<BlockRequest>, VecDeque<BlockRequest>) = p
                    .upload_queue
                    .drain(..)
                    .partition(|r| fast.contains(&r.index));
                p.upload_queue = keep;
                for r in drop {
                    p.session.reject(now, r);
                }
            }
            self.mark_dirty(k);
        }
    }
}
