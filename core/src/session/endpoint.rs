//! The client-level layer: a client's torrents by info hash, and where a message addressed
//! to one of them goes (quinn-proto's `Endpoint` role). Drivers keep one per WebSocket
//! tracker: `T` is whatever reaches a torrent's session there (a channel, a handle).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Input, TorrentSignal};
use crate::signal::{Output as SignalOutput, SignalMachine};
use crate::time::Time;
use crate::InfoHash;

/// Where one output of a [`SignalMachine`] goes.
#[derive(Debug)]
pub enum Routed<T> {
    /// Feed this input to this torrent's session.
    Torrent(T, Input),
    /// For the driver itself: socket work (connect, disconnect, send), scrapes, warnings.
    Driver(SignalOutput),
    /// Nothing to do: it concerned a torrent that is gone (the machine was answered for it)
    /// or the machine's own announce after a reconnect.
    Handled,
}

/// A client's torrents, by info hash.
#[derive(Debug, Clone)]
pub struct Endpoint<T> {
    torrents: HashMap<InfoHash, T>,
}

impl<T> Default for Endpoint<T> {
    fn default() -> Self {
        Endpoint {
            torrents: HashMap::new(),
        }
    }
}

impl<T: Clone> Endpoint<T> {
    /// No torrents.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a torrent; returns the one it replaced.
    pub fn insert(&mut self, info_hash: InfoHash, torrent: T) -> Option<T> {
        self.torrents.insert(info_hash, torrent)
    }

    /// Forgets a torrent.
    pub fn remove(&mut self, info_hash: &InfoHash) -> Option<T> {
        self.torrents.remove(info_hash)
    }

    /// The torrent with this info hash.
    pub fn get(&self, info_hash: &InfoHash) -> Option<&T> {
        self.torrents.get(info_hash)
    }

    /// Whether a torrent with this info hash is here.
    pub fn contains(&self, info_hash: &InfoHash) -> bool {
        self.torrents.contains_key(info_hash)
    }

    /// How many torrents there are.
    pub fn len(&self) -> usize {
        self.torrents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.torrents.is_empty()
    }

    /// Forgets every torrent, returning their info hashes.
    pub fn clear(&mut self) -> Vec<InfoHash> {
        self.torrents.drain().map(|(ih, _)| ih).collect()
    }

    /// Routes one output of the tracker machine at `url`: a torrent's signal or announce
    /// outcome becomes an input of its session; for a torrent that is gone, the machine is
    /// told it makes no offer and answers none.
    pub fn route(
        &self,
        url: &Arc<str>,
        machine: &mut SignalMachine,
        now: Time,
        out: SignalOutput,
    ) -> Routed<T> {
        let out = match TorrentSignal::from_output(out) {
            Ok((info_hash, signal)) => {
                return match self.torrents.get(&info_hash) {
                    Some(t) => Routed::Torrent(
                        t.clone(),
                        Input::Signal {
                            url: url.clone(),
                            signal,
                        },
                    ),
                    None => {
                        signal.refuse(machine, now, info_hash);
                        Routed::Handled
                    }
                };
            }
            Err(out) => out,
        };
        let (job, info_hash, result) = match out {
            SignalOutput::AnnounceDone {
                job: Some(job),
                info_hash,
                reply,
            } => (job, info_hash, Ok(reply)),
            SignalOutput::AnnounceFailed {
                job: Some(job),
                info_hash,
                failure,
            } => (job, info_hash, Err(failure)),
            SignalOutput::AnnounceDone { job: None, .. }
            | SignalOutput::AnnounceFailed { job: None, .. } => return Routed::Handled,
            other => return Routed::Driver(other),
        };
        match self.torrents.get(&info_hash) {
            Some(t) => Routed::Torrent(
                t.clone(),
                Input::Announced {
                    job,
                    result,
                    peers: Vec::new(),
                },
            ),
            None => Routed::Handled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::{AnnounceConfig, AnnounceEvent, Announcer};
    use crate::signal::{AnnounceParams, Config};
    use crate::Id20;

    fn machine() -> SignalMachine {
        SignalMachine::new(Id20([1; 20]), Config::default(), 3, Time::ZERO)
    }

    #[test]
    fn offers_for_known_torrents_become_inputs_and_the_rest_is_answered() {
        let url: Arc<str> = Arc::from("ws://t/");
        let mut m = machine();
        let known = Id20([7; 20]);
        let gone = Id20([8; 20]);
        let mut e = Endpoint::new();
        e.insert(known, "torrent 7");
        // Job ids come from a real announcer (their constructor is private to it).
        let mut a = Announcer::new(
            vec![vec!["ws://t/".into()]],
            AnnounceConfig::default(),
            1,
            Time::ZERO,
        );
        a.start(Time::ZERO, Some(0));
        let job = a.poll_job(Time::ZERO).expect("a job").id;
        for ih in [known, gone] {
            m.add_torrent(Time::ZERO, ih);
            m.announce(
                Time::ZERO,
                AnnounceParams {
                    job,
                    info_hash: ih,
                    event: AnnounceEvent::Started,
                    uploaded: 0,
                    downloaded: 0,
                    left: 0,
                    numwant: 2,
                    tracker_id: None,
                },
            );
        }
        let mut to_known = 0;
        let mut driver = 0;
        while let Some(out) = m.poll_output() {
            match e.route(&url, &mut m, Time::ZERO, out) {
                Routed::Torrent(t, Input::Signal { signal, .. }) => {
                    assert_eq!(t, "torrent 7");
                    assert!(matches!(signal, TorrentSignal::CreateOffer { .. }));
                    to_known += 1;
                }
                Routed::Torrent(_, other) => panic!("unexpected input {other:?}"),
                Routed::Driver(_) => driver += 1,
                Routed::Handled => {}
            }
        }
        assert_eq!(to_known, 2, "two offers asked of the known torrent");
        assert!(driver >= 1, "the socket is the driver's");
        // The gone torrent's offers were failed on the machine: only the known one's wait.
        assert_eq!(m.pending_offers_for(&gone), 0);
        assert_eq!(m.pending_offers_for(&known), 2);
    }
}
