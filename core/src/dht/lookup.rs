//! Iterative lookups (BEP 5): ask the closest known nodes, at most [`ALPHA`] at a time, for
//! nodes closer to the target (and, for `get_peers`, for peers), until the [`K`] closest
//! nodes that answer have all been asked.

use std::net::SocketAddr;
use std::time::Duration;

use super::krpc::NodeInfo;
use super::routing::{distance, K};
use crate::id::Id20;
use crate::time::Time;

/// Queries in flight per lookup.
pub const ALPHA: usize = 3;
/// A query unanswered this long stops counting against [`ALPHA`] (another node is asked).
pub const SLOW_AFTER: Duration = Duration::from_secs(1);
/// Candidates kept per lookup (the closest ones).
pub const MAX_CANDIDATES: usize = 64;
/// Most peers one lookup collects.
pub const MAX_PEERS: usize = 1000;

/// What a lookup looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `find_node`: the nodes closest to an id.
    FindNode,
    /// `get_peers`: peers of a torrent, and tokens to announce to the closest nodes.
    GetPeers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    New,
    Asked { at: Time },
    Answered { token: Option<Vec<u8>> },
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    node: NodeInfo,
    dist: [u8; 20],
    state: State,
    /// Answers between the start and this node: 0 for the seeds.
    depth: u32,
}

/// One iterative lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The id or info hash sought.
    pub target: Id20,
    /// `find_node` or `get_peers`.
    pub kind: Kind,
    candidates: Vec<Candidate>,
    peers: Vec<SocketAddr>,
    /// Queries sent.
    pub queries: u32,
    /// Answers received.
    pub answers: u32,
    /// Rounds: the longest chain of answers that led to a query.
    pub rounds: u32,
    started: Time,
}

impl Lookup {
    /// A lookup of `target`, starting from `seeds` (the routing table's closest nodes).
    pub fn new(now: Time, target: Id20, kind: Kind, seeds: &[NodeInfo]) -> Lookup {
        let mut l = Lookup {
            target,
            kind,
            candidates: Vec::new(),
            peers: Vec::new(),
            queries: 0,
            answers: 0,
            rounds: 0,
            started: now,
        };
        l.add_nodes(seeds, 0);
        l
    }

    /// Asks a node whose id is unknown (a bootstrap address): it joins the candidates once
    /// it answers.
    pub fn add_asked(&mut self, now: Time, addr: SocketAddr) {
        if self.candidates.iter().any(|c| c.node.addr == addr) {
            return;
        }
        self.candidates.push(Candidate {
            node: NodeInfo {
                id: Id20([0xff; 20]),
                addr,
            },
            dist: [0xff; 20],
            state: State::Asked { at: now },
            depth: 0,
        });
        self.queries += 1;
    }

    /// When it started.
    pub fn started(&self) -> Time {
        self.started
    }

    /// Adds nodes learned from an answer (or the table, `depth` 0), keeping the closest
    /// [`MAX_CANDIDATES`].
    fn add_nodes(&mut self, nodes: &[NodeInfo], depth: u32) {
        for n in nodes {
            if self
                .candidates
                .iter()
                .any(|c| c.node.id == n.id || c.node.addr == n.addr)
            {
                continue;
            }
            let dist = distance(&n.id, &self.target);
            let pos = self.candidates.partition_point(|c| c.dist < dist);
            if pos >= MAX_CANDIDATES {
                continue;
            }
            self.candidates.insert(
                pos,
                Candidate {
                    node: *n,
                    dist,
                    state: State::New,
                    depth,
                },
            );
            // Drop the farthest candidate that was never asked.
            if self.candidates.len() > MAX_CANDIDATES {
                if let Some(i) = self.candidates.iter().rposition(|c| c.state == State::New) {
                    self.candidates.remove(i);
                } else {
                    self.candidates.truncate(MAX_CANDIDATES);
                }
            }
        }
    }

    /// The next nodes to ask now (marked asked): the closest new ones, while fewer than
    /// [`ALPHA`] recent queries are in flight and the lookup is not done.
    pub fn next_queries(&mut self, now: Time) -> Vec<NodeInfo> {
        let mut in_flight = self
            .candidates
            .iter()
            .filter(
                |c| matches!(c.state, State::Asked { at } if now.saturating_since(at) < SLOW_AFTER),
            )
            .count();
        let mut out = Vec::new();
        // Only nodes that could still be among the K closest live ones are worth asking.
        let mut live_closer = 0;
        for c in &mut self.candidates {
            if in_flight >= ALPHA || live_closer >= K {
                break;
            }
            match c.state {
                State::New => {
                    c.state = State::Asked { at: now };
                    in_flight += 1;
                    live_closer += 1;
                    out.push(c.node);
                }
                State::Failed => {}
                _ => live_closer += 1,
            }
        }
        self.queries += out.len() as u32;
        out
    }

    /// The node at `addr` answered with `nodes` closer to the target, maybe `peers` and a
    /// `token`.
    pub fn answered(
        &mut self,
        addr: SocketAddr,
        id: Id20,
        nodes: &[NodeInfo],
        peers: &[SocketAddr],
        token: Option<Vec<u8>>,
    ) -> bool {
        let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.node.addr == addr && matches!(c.state, State::Asked { .. }))
        else {
            return false;
        };
        // A node may answer under another id than the one we were told: keep its word.
        if c.node.id != id {
            c.node.id = id;
            c.dist = distance(&id, &self.target);
        }
        c.state = State::Answered { token };
        let depth = c.depth + 1;
        self.candidates.sort_by_key(|c| c.dist);
        self.answers += 1;
        self.rounds = self.rounds.max(depth);
        for p in peers {
            if self.peers.len() >= MAX_PEERS {
                break;
            }
            if !self.peers.contains(p) {
                self.peers.push(*p);
            }
        }
        self.add_nodes(nodes, depth);
        true
    }

    /// The query to `addr` failed (timeout or error).
    pub fn failed(&mut self, addr: SocketAddr) {
        if let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.node.addr == addr && matches!(c.state, State::Asked { .. }))
        {
            c.state = State::Failed;
        }
    }

    /// Done: among the closest candidates that have not failed, the first [`K`] have all
    /// answered (or no candidate is left to ask and none is in flight).
    pub fn is_done(&self) -> bool {
        let mut seen = 0;
        for c in &self.candidates {
            match c.state {
                State::Failed => continue,
                State::Answered { .. } => seen += 1,
                State::New | State::Asked { .. } => return false,
            }
            if seen >= K {
                return true;
            }
        }
        true
    }

    /// Peers found so far.
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// The [`K`] closest nodes that answered, with their tokens (for `announce_peer`).
    pub fn closest_answered(&self) -> Vec<(NodeInfo, Option<Vec<u8>>)> {
        self.candidates
            .iter()
            .filter_map(|c| match &c.state {
                State::Answered { token } => Some((c.node, token.clone())),
                _ => None,
            })
            .take(K)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = i;
        NodeInfo {
            id: Id20(id),
            addr: SocketAddr::from(([10, 0, 0, i], 6881)),
        }
    }

    #[test]
    fn asks_alpha_at_a_time_closest_first_and_finishes() {
        let t0 = Time::ZERO;
        let seeds: Vec<NodeInfo> = (1..=20).map(n).collect();
        let mut l = Lookup::new(t0, Id20([0; 20]), Kind::GetPeers, &seeds);
        let first = l.next_queries(t0);
        assert_eq!(first, vec![n(1), n(2), n(3)]);
        assert!(l.next_queries(t0).is_empty());
        // Node 1 answers with a closer node; node 2 fails; node 3 is slow.
        let mut closer = n(0);
        closer.addr = SocketAddr::from(([10, 0, 1, 0], 6881));
        assert!(l.answered(
            n(1).addr,
            n(1).id,
            &[closer],
            &["10.9.9.9:1".parse().unwrap()],
            Some(vec![1])
        ));
        l.failed(n(2).addr);
        let next = l.next_queries(t0);
        assert_eq!(next, vec![closer, n(4)]);
        // After a second, node 3 no longer holds a slot.
        let later = t0 + SLOW_AFTER;
        let more = l.next_queries(later);
        assert_eq!(more.len(), 3);
        assert!(!l.is_done());
        // Everyone asked answers: done once the K closest live ones have answered.
        let mut guard = 0;
        while !l.is_done() {
            let asked: Vec<NodeInfo> = l
                .candidates
                .iter()
                .filter(|c| matches!(c.state, State::Asked { .. }))
                .map(|c| c.node)
                .collect();
            for a in asked {
                l.answered(a.addr, a.id, &[], &[], Some(vec![2]));
            }
            l.next_queries(later);
            guard += 1;
            assert!(guard < 20);
        }
        let best = l.closest_answered();
        assert_eq!(best.len(), K);
        assert_eq!(best[0].0, closer);
        assert!(!best.iter().any(|(b, _)| *b == n(2)));
        assert_eq!(l.peers(), &["10.9.9.9:1".parse::<SocketAddr>().unwrap()]);
        // Nodes beyond the K closest were never asked.
        assert!(l.queries < 20, "{} queries", l.queries);
    }

    #[test]
    fn candidates_are_bounded_and_unknown_answers_ignored() {
        let t0 = Time::ZERO;
        let mut l = Lookup::new(t0, Id20([0; 20]), Kind::FindNode, &[]);
        let many: Vec<NodeInfo> = (0..200u16)
            .map(|i| NodeInfo {
                id: Id20([(i % 251) as u8 + 1; 20]),
                addr: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 1)),
            })
            .collect();
        l.add_nodes(&many, 0);
        assert!(l.candidates.len() <= MAX_CANDIDATES);
        assert!(!l.answered(
            "10.99.0.1:1".parse().unwrap(),
            Id20([1; 20]),
            &[],
            &[],
            None
        ));
        assert!(l.is_done() || !l.next_queries(t0).is_empty());
    }
}
