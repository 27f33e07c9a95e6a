//! What a DHT node keeps for others: announce tokens (BEP 5) from rotating secrets, and
//! the peers announced to it, bounded in count and age.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::id::Id20;
use crate::rng::Rng;
use crate::time::Time;

/// How often the token secret changes; a token is accepted for two periods (BEP 5: tokens
/// up to ten minutes old are accepted).
pub const SECRET_PERIOD: Duration = Duration::from_secs(5 * 60);
/// Bytes of a token.
pub const TOKEN_LEN: usize = 8;
/// Announced peers are forgotten after this long without a new announce.
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// Most peers kept per info hash.
pub const MAX_PEERS_PER_HASH: usize = 200;
/// Most info hashes kept.
pub const MAX_HASHES: usize = 5_000;
/// Most peers returned in one `get_peers` answer (fits a datagram with nodes).
pub const MAX_VALUES_OUT: usize = 50;

/// Tokens: SHA-1 of a secret and the querier's IP, the secret replaced every
/// [`SECRET_PERIOD`].
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated: Time,
}

fn token(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    let d = h.finalize();
    let mut t = [0u8; TOKEN_LEN];
    t.copy_from_slice(&d[..TOKEN_LEN]);
    t
}

impl Tokens {
    /// Fresh secrets from `rng`.
    pub fn new(now: Time, rng: &mut Rng) -> Tokens {
        let mut current = [0u8; 16];
        let mut previous = [0u8; 16];
        rng.fill(&mut current);
        rng.fill(&mut previous);
        Tokens {
            current,
            previous,
            rotated: now,
        }
    }

    /// Rotates the secret when its period is over.
    pub fn tick(&mut self, now: Time, rng: &mut Rng) {
        if now.saturating_since(self.rotated) >= SECRET_PERIOD {
            self.previous = self.current;
            rng.fill(&mut self.current);
            self.rotated = now;
        }
    }

    /// When the secret changes next.
    pub fn next_rotation(&self) -> Time {
        self.rotated + SECRET_PERIOD
    }

    /// The token to give `ip`.
    pub fn make(&self, ip: IpAddr) -> Vec<u8> {
        token(&self.current, ip).to_vec()
    }

    /// Whether `t` is a token we gave `ip` recently.
    pub fn check(&self, ip: IpAddr, t: &[u8]) -> bool {
        t == token(&self.current, ip) || t == token(&self.previous, ip)
    }
}

/// Peers announced to us, per info hash.
#[derive(Debug, Clone, Default)]
pub struct PeerStore {
    torrents: HashMap<Id20, Vec<(SocketAddr, Time)>>,
    peers: usize,
}

impl PeerStore {
    /// Records an announce. When [`MAX_HASHES`] torrents are stored, a new one replaces the
    /// one announced least recently; a torrent at [`MAX_PEERS_PER_HASH`] drops its oldest peer.
    pub fn announce(&mut self, now: Time, info_hash: Id20, peer: SocketAddr) {
        if !self.torrents.contains_key(&info_hash) && self.torrents.len() >= MAX_HASHES {
            self.expire(now);
            if self.torrents.len() >= MAX_HASHES {
                let stalest = self
                    .torrents
                    .iter()
                    .map(|(h, v)| (v.iter().map(|p| p.1).max().unwrap_or(Time::ZERO), *h))
                    .min();
                if let Some((_, h)) = stalest {
                    if let Some(v) = self.torrents.remove(&h) {
                        self.peers -= v.len();
                    }
                }
            }
        }
        let list = self.torrents.entry(info_hash).or_default();
        if let Some(p) = list.iter_mut().find(|p| p.0 == peer) {
            p.1 = now;
            return;
        }
        if list.len() >= MAX_PEERS_PER_HASH {
            if let Some(oldest) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.1)
                .map(|(i, _)| i)
            {
                list.swap_remove(oldest);
                self.peers -= 1;
            }
        }
        list.push((peer, now));
        self.peers += 1;
    }

    /// Up to [`MAX_VALUES_OUT`] live peers of `info_hash` of the given family, a random
    /// choice when there are more.
    pub fn get(&self, now: Time, info_hash: &Id20, v6: bool, rng: &mut Rng) -> Vec<SocketAddr> {
        let Some(list) = self.torrents.get(info_hash) else {
            return Vec::new();
        };
        let mut out: Vec<SocketAddr> = list
            .iter()
            .filter(|p| now.saturating_since(p.1) < PEER_TTL && p.0.is_ipv6() == v6)
            .map(|p| p.0)
            .collect();
        if out.len() > MAX_VALUES_OUT {
            rng.shuffle(&mut out);
            out.truncate(MAX_VALUES_OUT);
        }
        out
    }

    /// Forgets peers older than [`PEER_TTL`].
    pub fn expire(&mut self, now: Time) {
        let mut removed = 0;
        self.torrents.retain(|_, list| {
            let before = list.len();
            list.retain(|p| now.saturating_since(p.1) < PEER_TTL);
            removed += before - list.len();
            !list.is_empty()
        });
        self.peers -= removed;
    }

    /// Torrents and peers stored.
    pub fn counts(&self) -> (usize, usize) {
        (self.torrents.len(), self.peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_last_two_periods_and_are_per_ip() {
        let mut rng = Rng::new(1);
        let t0 = Time::ZERO;
        let mut tokens = Tokens::new(t0, &mut rng);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t = tokens.make(a);
        assert!(tokens.check(a, &t));
        assert!(!tokens.check(b, &t));
        tokens.tick(t0 + SECRET_PERIOD, &mut rng);
        assert!(tokens.check(a, &t));
        tokens.tick(t0 + SECRET_PERIOD * 2, &mut rng);
        assert!(!tokens.check(a, &t));
    }

    #[test]
    fn the_store_is_bounded_and_expires() {
        let mut rng = Rng::new(2);
        let t0 = Time::ZERO;
        let mut s = PeerStore::default();
        let h = Id20([1; 20]);
        for i in 0..(MAX_PEERS_PER_HASH + 50) {
            let p = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000));
            s.announce(t0 + Duration::from_secs(i as u64), h, p);
        }
        assert_eq!(s.counts(), (1, MAX_PEERS_PER_HASH));
        let got = s.get(t0 + Duration::from_secs(300), &h, false, &mut rng);
        assert_eq!(got.len(), MAX_VALUES_OUT);
        assert!(s.get(t0, &h, true, &mut rng).is_empty());
        for i in 0..(MAX_HASHES as u32 + 10) {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[4] = 9;
            s.announce(
                t0 + Duration::from_secs(400),
                Id20(id),
                "10.9.9.9:1".parse().unwrap(),
            );
        }
        assert_eq!(s.counts().0, MAX_HASHES);
        s.expire(t0 + Duration::from_secs(400) + PEER_TTL);
        assert_eq!(s.counts(), (0, 0));
    }
}
