//! Peer exchange (`ut_pex`, BEP 11): telling peers which others we are connected to.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Has, PeerSource, Torrent};
use crate::ext::{PexFlags, PexMessage};
use crate::id::PeerKey;
use crate::time::Time;

/// Least time between two PEX messages taken from one peer (BEP 11 asks for at most one a
/// minute; some slack for timers).
pub const PEX_MIN_INTERVAL: Duration = Duration::from_secs(45);
/// Addresses in one PEX message, taken or sent (BEP 11's limit on `added` and `dropped`).
pub const PEX_MAX_ADDED: usize = 50;
/// Addresses taken from one peer's PEX messages over its whole connection.
pub const PEX_MAX_PER_PEER: usize = 200;

impl Torrent {
    /// A PEX message: its new addresses become candidates, within the per-message, per-peer
    /// and per-minute limits; more frequent messages are ignored.
    pub(super) fn on_pex(&mut self, now: Time, key: PeerKey, m: &PexMessage) {
        if !self.config.session.pex {
            return;
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.pex_last
            .is_some_and(|t| now.saturating_since(t) < PEX_MIN_INTERVAL)
        {
            return;
        }
        p.pex_last = Some(now);
        let take = PEX_MAX_ADDED.min(PEX_MAX_PER_PEER.saturating_sub(p.pex_accepted));
        let addrs: Vec<SocketAddr> = m.added.iter().take(take).map(|(a, _)| *a).collect();
        p.pex_accepted += addrs.len();
        self.add_candidates(now, addrs, PeerSource::Pex);
    }

    pub(super) fn send_pex(&mut self, now: Time) {
        if !self.config.session.pex {
            return;
        }
        let connected: Vec<(PeerKey, SocketAddr, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.is_active())
            .filter_map(|(k, p)| p.listen_addr.map(|a| (*k, a, matches!(p.has, Has::All))))
            .collect();
        let now_set: HashSet<SocketAddr> = connected.iter().map(|c| c.1).collect();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let Some(p) = self.peers.get_mut(&k) else {
                continue;
            };
            if !p.session.is_active() || !p.session.peer_supports(crate::ext::UT_PEX) {
                continue;
            }
            let mut msg = PexMessage::default();
            for (other, addr, seed) in &connected {
                if *other == k || p.pex_sent.contains(addr) || msg.added.len() >= PEX_MAX_ADDED {
                    continue;
                }
                let flags = if *seed {
                    PexFlags::SEED
                } else {
                    PexFlags::empty()
                };
                msg.added.push((*addr, flags));
            }
            let dropped: Vec<SocketAddr> = p
                .pex_sent
                .iter()
                .filter(|a| !now_set.contains(a))
                .take(PEX_MAX_ADDED)
                .copied()
                .collect();
            msg.dropped = dropped;
            if msg.added.is_empty() && msg.dropped.is_empty() {
                continue;
            }
            if p.session.send_pex(now, &msg) {
                for (a, _) in &msg.added {
                    p.pex_sent.insert(*a);
                }
                for a in &msg.dropped {
                    p.pex_sent.remove(a);
                }
                self.mark_dirty(k);
            }
        }
    }
}
