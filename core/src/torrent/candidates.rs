//! Candidate addresses (trackers, PEX, the user), outgoing connection attempts and
//! admitting new connections.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::{AddPeerError, Candidate, CandidateState, Has, Output, Peer, PeerSource, Torrent};
use crate::id::PeerKey;
use crate::peer::{Direction, PeerSession};
use crate::time::Time;

impl Torrent {
    /// Adds addresses to try (from a tracker, PEX or the user). Bounded; banned and known
    /// addresses are skipped. PEX addresses, which any peer can make up, take at most half
    /// the table and are dialled after the others; a tracker's or the user's address makes
    /// room for itself by evicting an idle PEX one.
    pub fn add_candidates(
        &mut self,
        now: Time,
        addrs: impl IntoIterator<Item = SocketAddr>,
        source: PeerSource,
    ) {
        let pex_cap = self.config.max_candidates / 2;
        let mut pex = self
            .candidates
            .values()
            .filter(|c| c.source == PeerSource::Pex)
            .count();
        let mut first = Vec::new();
        for a in addrs {
            if a.port() == 0 || self.is_banned(a) || self.candidates.contains_key(&a) {
                continue;
            }
            if Some(a.port()) == self.config.session.listen_port
                && (a.ip().is_loopback() || a.ip().is_unspecified())
            {
                // Our own listener, as trackers echo us back; the handshake check would
                // catch it, this saves a dial.
                continue;
            }
            if source == PeerSource::Pex && pex >= pex_cap {
                break;
            }
            if self.candidates.len() >= self.config.max_candidates {
                if source == PeerSource::Pex || !self.evict_idle_pex() {
                    break;
                }
                pex -= 1;
            }
            self.candidates.insert(
                a,
                Candidate {
                    state: CandidateState::Idle,
                    failures: 0,
                    source,
                },
            );
            if source == PeerSource::Pex {
                pex += 1;
                self.candidate_queue.push_back(a);
            } else {
                first.push(a);
            }
        }
        // Ahead of what is queued, in the order given.
        for a in first.into_iter().rev() {
            self.candidate_queue.push_front(a);
        }
        if self.candidate_queue.len() > 2 * self.candidates.len() + 64 {
            // Evicted and removed addresses leave entries behind: sweep them.
            let known = &self.candidates;
            self.candidate_queue.retain(|a| known.contains_key(a));
        }
        self.connect_more(now);
    }

    /// Forgets one PEX address not being dialled or connected; false if there is none.
    fn evict_idle_pex(&mut self) -> bool {
        let victim = self
            .candidates
            .iter()
            .find(|(_, c)| {
                c.source == PeerSource::Pex
                    && matches!(c.state, CandidateState::Idle | CandidateState::RetryAt(_))
            })
            .map(|(a, _)| *a);
        match victim {
            Some(a) => {
                self.candidates.remove(&a);
                true
            }
            None => false,
        }
    }

    /// An outgoing connection attempt failed.
    pub fn connect_failed(&mut self, now: Time, addr: SocketAddr) {
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.failures += 1;
            if c.failures >= 5 {
                self.candidates.remove(&addr);
            } else {
                let backoff = Duration::from_secs(15 << c.failures.min(6));
                c.state = CandidateState::RetryAt(now + backoff);
                self.candidate_queue.push_back(addr);
            }
        }
        self.connect_more(now);
    }

    pub(super) fn connect_more(&mut self, now: Time) {
        let connecting = self
            .candidates
            .values()
            .filter(|c| matches!(c.state, CandidateState::Connecting(_)))
            .count();
        let mut budget = self.config.max_connecting.saturating_sub(connecting).min(
            self.config
                .max_peers
                .saturating_sub(self.peers.len() + connecting),
        );
        if self.is_finished() && self.content.is_some() {
            // Seeds (and leechers with nothing left they want) wait for peers to come to
            // them, but still dial a few.
            budget = budget.min(2);
        }
        let mut tries = self.candidate_queue.len();
        while budget > 0 && tries > 0 {
            tries -= 1;
            let Some(a) = self.candidate_queue.pop_front() else {
                break;
            };
            let Some(c) = self.candidates.get_mut(&a) else {
                continue;
            };
            match c.state {
                CandidateState::Idle => {}
                CandidateState::RetryAt(t) if t <= now => {}
                CandidateState::RetryAt(_) => {
                    self.candidate_queue.push_back(a);
                    continue;
                }
                _ => continue,
            }
            c.state = CandidateState::Connecting(now);
            self.outputs.push_back(Output::Connect(a));
            budget -= 1;
        }
    }

    /// A connection is ready (outgoing connected, or incoming accepted). For incoming TCP
    /// connections the driver may read the first 48 bytes to pick the torrent, then pass all
    /// bytes, those included, to [`peer_data`](Self::peer_data).
    pub fn add_peer(
        &mut self,
        now: Time,
        key: PeerKey,
        addr: Option<SocketAddr>,
        direction: Direction,
    ) -> Result<(), AddPeerError> {
        let config = self.config.session.clone();
        self.add_peer_with(now, key, addr, direction, config)
    }

    /// [`add_peer`](Self::add_peer) with this connection's own session settings (a web seed
    /// takes a deeper request queue than a peer).
    pub fn add_peer_with(
        &mut self,
        now: Time,
        key: PeerKey,
        addr: Option<SocketAddr>,
        direction: Direction,
        session: crate::peer::SessionConfig,
    ) -> Result<(), AddPeerError> {
        if self.peers.contains_key(&key) {
            return Err(AddPeerError::DuplicateKey);
        }
        if let Some(a) = addr {
            if self.is_banned(a) {
                self.candidates.remove(&a);
                return Err(AddPeerError::Banned);
            }
            if let Some(c) = self.candidates.get_mut(&a) {
                c.state = CandidateState::Connected;
            }
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(AddPeerError::Full);
        }
        let session = PeerSession::new(session, direction, now);
        let listen_addr = match direction {
            Direction::Outgoing => addr,
            Direction::Incoming => None,
        };
        self.peers.insert(
            key,
            Peer {
                session,
                addr,
                listen_addr,
                has: Has::Unknown,
                early_haves: Vec::new(),
                allowed_fast: Vec::new(),
                fast_for_peer: Vec::new(),
                upload_queue: VecDeque::new(),
                reads_in_flight: Vec::new(),
                metadata_pending: Vec::new(),
                metadata_size: None,
                metadata_given_up: None,
                pex_sent: HashSet::new(),
                pex_last: None,
                pex_accepted: 0,
                last_unchoked: Time::ZERO,
                optimistic: false,
                connected_at: now,
            },
        );
        self.mark_dirty(key);
        Ok(())
    }
}
