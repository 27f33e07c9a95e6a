//! The session's web seeds (BEP 19): one [`WebSeedPeer`] per `url-list` entry while the
//! torrent downloads, connected to the torrent as a peer with a key of the session's own;
//! a web seed that fails is retried later ([`webseed::retry_at`]), one that sends data
//! failing verification is dropped.

use std::sync::Arc;

use bytes::Bytes;

use crate::metainfo::Metainfo;
use crate::time::Time;
use crate::torrent::Torrent;
use crate::webseed::{self, Fetch, WebSeedPeer};
use crate::PeerKey;

/// Peer keys at or above this are web seeds the session opened; drivers choose theirs below.
pub const WEBSEED_KEY_BASE: u64 = 1 << 62;

/// Most web seeds used per torrent.
pub const MAX_WEBSEEDS: usize = 8;

#[derive(Debug)]
enum State {
    /// Not connected; try at this time.
    Idle { at: Time },
    Active {
        key: PeerKey,
        peer: Box<WebSeedPeer>,
    },
    /// Given up (too many failures, corrupt data, or an unusable URL).
    Dropped,
}

#[derive(Debug)]
struct Seed {
    url: String,
    state: State,
    failures: u32,
    banned: bool,
}

/// What happened to a web seed, for the session's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub url: String,
    pub reason: String,
    pub retry: bool,
}

#[derive(Debug, Default)]
pub(super) struct WebSeeds {
    seeds: Vec<Seed>,
    init: bool,
    next_key: u64,
}

impl WebSeeds {
    /// Takes the metainfo's `url-list` once, after the web seeds added before.
    pub fn init(&mut self, meta: &Metainfo, now: Time) {
        if self.init {
            return;
        }
        self.init = true;
        for url in &meta.url_list {
            self.add(url, now);
        }
    }

    /// Adds a web seed (false when it is known already or [`MAX_WEBSEEDS`] are).
    pub fn add(&mut self, url: &str, now: Time) -> bool {
        if self.seeds.len() >= MAX_WEBSEEDS || self.seeds.iter().any(|s| s.url == url) {
            return false;
        }
        self.seeds.push(Seed {
            url: url.to_string(),
            state: State::Idle { at: now },
            failures: 0,
            banned: false,
        });
        true
    }

    pub fn is_webseed(key: PeerKey) -> bool {
        key.0 >= WEBSEED_KEY_BASE
    }

    fn by_key(&mut self, key: PeerKey) -> Option<&mut Seed> {
        self.seeds
            .iter_mut()
            .find(|s| matches!(&s.state, State::Active { key: k, .. } if *k == key))
    }

    /// When an idle web seed is due.
    pub fn next_timeout(&self) -> Option<Time> {
        self.seeds
            .iter()
            .filter_map(|s| match s.state {
                State::Idle { at } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Connects due web seeds (when `wanted`), moves bytes between the torrent and the
    /// adapters, and collects fetches. Returns whether anything moved.
    pub fn pump(
        &mut self,
        now: Time,
        wanted: bool,
        meta: Option<&Arc<Metainfo>>,
        torrent: &mut Torrent,
        fetches: &mut Vec<(PeerKey, Fetch)>,
        failures: &mut Vec<Failure>,
    ) -> bool {
        let mut moved = false;
        if wanted {
            if let Some(meta) = meta {
                for s in &mut self.seeds {
                    let State::Idle { at } = s.state else {
                        continue;
                    };
                    if at > now {
                        continue;
                    }
                    match WebSeedPeer::new(&s.url, meta.clone()) {
                        Err(e) => {
                            s.state = State::Dropped;
                            failures.push(Failure {
                                url: s.url.clone(),
                                reason: e.to_string(),
                                retry: false,
                            });
                        }
                        Ok(peer) => {
                            let key = PeerKey(WEBSEED_KEY_BASE + self.next_key);
                            self.next_key += 1;
                            let mut config = torrent.config().session.clone();
                            config.max_our_requests = webseed::MAX_QUEUED as u32;
                            config.whole_pieces = true;
                            let dir = crate::peer::Direction::Outgoing;
                            match torrent.add_peer_with(now, key, None, dir, config) {
                                Ok(()) => {
                                    s.state = State::Active {
                                        key,
                                        peer: Box::new(peer),
                                    };
                                    moved = true;
                                }
                                // No room among the peers: try again later.
                                Err(_) => {
                                    s.state = State::Idle {
                                        at: now + webseed::RETRY_FIRST,
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut broken = Vec::new();
        for s in &mut self.seeds {
            let State::Active { key, peer } = &mut s.state else {
                continue;
            };
            let key = *key;
            while let Some(b) = torrent.poll_transmit_to(key) {
                if let Err(e) = peer.handle_transmit(&b) {
                    broken.push((key, e));
                    break;
                }
            }
            while let Some(d) = peer.poll_to_torrent() {
                moved = true;
                torrent.peer_data_owned(now, key, d);
            }
            while let Some(f) = peer.poll_fetch() {
                moved = true;
                fetches.push((key, f));
            }
        }
        for (key, e) in broken {
            if let Some(f) = self.fail(now, key, e.to_string()) {
                torrent.peer_closed(now, key);
                failures.push(f);
            }
        }
        moved
    }

    /// The driver's answer to a fetch. An error closes the web seed's connection (the
    /// caller tells the torrent) and schedules a retry.
    pub fn fetched(
        &mut self,
        now: Time,
        key: PeerKey,
        id: u64,
        result: Result<Vec<Bytes>, String>,
    ) -> Option<Failure> {
        let seed = self.by_key(key)?;
        let State::Active { peer, .. } = &mut seed.state else {
            return None;
        };
        match peer.fetched(id, result) {
            Ok(()) => {
                seed.failures = 0;
                None
            }
            Err(e) => self.fail(now, key, e.to_string()),
        }
    }

    /// The web seed `key` stopped: back off, or drop it after too many failures or a ban.
    fn fail(&mut self, now: Time, key: PeerKey, reason: String) -> Option<Failure> {
        let seed = self.by_key(key)?;
        seed.failures += 1;
        let at = if seed.banned {
            None
        } else {
            webseed::retry_at(now, seed.failures)
        };
        seed.state = match at {
            Some(at) => State::Idle { at },
            None => State::Dropped,
        };
        Some(Failure {
            url: seed.url.clone(),
            reason,
            retry: at.is_some(),
        })
    }

    /// The torrent banned the web seed `key` for corrupt data.
    pub fn banned(&mut self, key: PeerKey) {
        if let Some(s) = self.by_key(key) {
            s.banned = true;
        }
    }

    /// The torrent dropped the web seed `key` (a ban, the torrent's completion, a pause or
    /// stop). Counts as a failure only while `running` and not complete.
    pub fn disconnected(&mut self, now: Time, key: PeerKey, failure: bool) -> Option<Failure> {
        let seed = self.by_key(key)?;
        if failure || seed.banned {
            let reason = if seed.banned {
                "it sent data that failed verification".to_string()
            } else {
                "the torrent dropped it".to_string()
            };
            return self.fail(now, key, reason);
        }
        seed.state = State::Idle { at: now };
        None
    }

    /// URLs in use, waiting, and dropped.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for s in &self.seeds {
            match s.state {
                State::Active { .. } => c.0 += 1,
                State::Idle { .. } => c.1 += 1,
                State::Dropped => c.2 += 1,
            }
        }
        c
    }
}
