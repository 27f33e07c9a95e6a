//! A node's state saved across restarts: its id and the good nodes of its tables, so a
//! restarted node rejoins without the routers and keeps its place in the keyspace.
//!
//! The format is a bencoded dictionary: `id` (20 bytes), `nodes` (compact IPv4 node info,
//! 26 bytes each) and `nodes6` (compact IPv6 node info, 38 bytes each), as libtorrent keeps
//! its DHT state. Decoding is bounded and refuses anything malformed.

use std::net::SocketAddr;

use super::krpc::{NodeInfo, NODE_V4_LEN, NODE_V6_LEN};
use crate::bencode::{self, Value};
use crate::wire::compact;
use crate::Id20;

/// Most nodes kept per family in a saved state (a full table holds about 160 × 8).
pub const MAX_SAVED_NODES: usize = 2000;

/// What a saved state held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The node's id.
    pub id: Id20,
    /// Nodes to ping on start ([`super::Dht::add_node`]).
    pub nodes: Vec<NodeInfo>,
}

/// Why a saved state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a bencoded dictionary.
    #[error("not a DHT state file: {0}")]
    Format(String),
    /// `id` is missing or not 20 bytes.
    #[error("the DHT state has no valid node id")]
    Id,
    /// A node list's length is not a multiple of its entry size, or too long.
    #[error("the DHT state's `{0}` list is malformed")]
    Nodes(&'static str),
}

impl SavedState {
    /// Bencoded bytes (at most [`MAX_SAVED_NODES`] nodes per family are written).
    pub fn encode(&self) -> Vec<u8> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let (mut n4, mut n6) = (0, 0);
        for n in &self.nodes {
            match n.addr {
                SocketAddr::V4(a) if n4 < MAX_SAVED_NODES => {
                    n4 += 1;
                    v4.extend_from_slice(&n.id.0);
                    compact::write_v4(&a, &mut v4);
                }
                SocketAddr::V6(a) if n6 < MAX_SAVED_NODES => {
                    n6 += 1;
                    v6.extend_from_slice(&n.id.0);
                    compact::write_v6(&a, &mut v6);
                }
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(v4.len() + v6.len() + 64);
        out.push(b'd');
        bencode::write_bytes(&mut out, b"id");
        bencode::write_bytes(&mut out, &self.id.0);
        bencode::write_bytes(&mut out, b"nodes");
        bencode::write_bytes(&mut out, &v4);
        bencode::write_bytes(&mut out, b"nodes6");
        bencode::write_bytes(&mut out, &v6);
        out.push(b'e');
        out
    }

    /// Reads a state written by [`SavedState::encode`].
    pub fn decode(bytes: &[u8]) -> Result<SavedState, StateError> {
        if bytes.len() > 64 + MAX_SAVED_NODES * (NODE_V4_LEN + NODE_V6_LEN) {
            return Err(StateError::Format("too large".into()));
        }
        let limits = bencode::Limits {
            max_depth: 2,
            max_values: 16,
        };
        let v =
            bencode::decode_with(bytes, limits).map_err(|e| StateError::Format(e.to_string()))?;
        if v.as_dict().is_none() {
            return Err(StateError::Format("not a dictionary".into()));
        }
        let id = v
            .get(b"id")
            .and_then(Value::as_bytes)
            .and_then(|b| Id20::from_slice(b).ok())
            .ok_or(StateError::Id)?;
        let mut nodes = Vec::new();
        for (key, v6, stride) in [("nodes", false, NODE_V4_LEN), ("nodes6", true, NODE_V6_LEN)] {
            let Some(list) = v.get(key.as_bytes()) else {
                continue;
            };
            let b = list.as_bytes().ok_or(StateError::Nodes(key))?;
            if b.len() % stride != 0 || b.len() / stride > MAX_SAVED_NODES {
                return Err(StateError::Nodes(key));
            }
            for chunk in b.chunks_exact(stride) {
                let id = Id20::from_slice(&chunk[..20]).map_err(|_| StateError::Nodes(key))?;
                let addr = if v6 {
                    let a = chunk[20..].try_into().map_err(|_| StateError::Nodes(key))?;
                    SocketAddr::V6(compact::parse_v6(a))
                } else {
                    let a = chunk[20..].try_into().map_err(|_| StateError::Nodes(key))?;
                    SocketAddr::V4(compact::parse_v4(a))
                };
                nodes.push(NodeInfo { id, addr });
            }
        }
        Ok(SavedState { id, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let s = SavedState {
            id: Id20([7; 20]),
            nodes: vec![
                NodeInfo {
                    id: Id20([1; 20]),
                    addr: "10.0.0.1:6881".parse().unwrap(),
                },
                NodeInfo {
                    id: Id20([2; 20]),
                    addr: "[2001:db8::1]:6882".parse().unwrap(),
                },
            ],
        };
        let b = s.encode();
        assert_eq!(SavedState::decode(&b), Ok(s.clone()));
        // Every truncation is refused, never a panic.
        for n in 0..b.len() {
            assert!(SavedState::decode(&b[..n]).is_err(), "{n}");
        }
        assert_eq!(
            SavedState::decode(b"d2:id3:abc5:nodes0:e"),
            Err(StateError::Id)
        );
        let mut ragged = b"d2:id20:".to_vec();
        ragged.extend_from_slice(&[0; 20]);
        ragged.extend_from_slice(b"5:nodes5:12345e");
        assert_eq!(SavedState::decode(&ragged), Err(StateError::Nodes("nodes")));
        assert!(matches!(
            SavedState::decode(b"li1ee"),
            Err(StateError::Format(_))
        ));
    }
}
