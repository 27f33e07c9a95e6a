//! The UDP tracker (BEP 15) on the server's port number.
//!
//! Connection ids are a keyed hash of the client's IP and the current minute, accepted for two
//! minutes (BEP 15), so the server keeps no state per client. (bittorrent-tracker hands out and
//! accepts only the protocol constant; its clients use whatever id the connect reply gives.)
//! Undecodable packets get no reply, as from bittorrent-tracker; a stale connection id gets an
//! error reply. The `ip` field of an announce is ignored: peers are recorded at the address the
//! packet came from.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::debug;
use webtorrent_core::tracker::udp::{
    AnnounceResponse, ConnectResponse, ErrorResponse, Request, Response, ScrapeResponse,
    ScrapeStats,
};
use webtorrent_core::tracker::AddressFamily;

use super::swarm::{udp_numwant, PeerAnnounce};
use super::{canonical, Shared};

/// Largest datagram read; longer ones are truncated (and then fail to decode as scrapes).
const MAX_DATAGRAM: usize = 2048;

/// How long one connection id stays valid, in seconds (BEP 15: two minutes for the server).
const EPOCH_SECS: u64 = 60;

/// Stateless connection ids: SipHash keyed at random per process.
#[derive(Debug)]
pub(super) struct ConnectionIds {
    key: std::collections::hash_map::RandomState,
}

impl ConnectionIds {
    pub(super) fn new() -> Self {
        ConnectionIds {
            key: std::collections::hash_map::RandomState::new(),
        }
    }

    fn id(&self, ip: IpAddr, epoch: u64) -> u64 {
        self.key.hash_one((epoch, ip))
    }

    /// The id to hand `ip` at `secs` seconds.
    pub(super) fn issue(&self, ip: IpAddr, secs: u64) -> u64 {
        self.id(ip, secs / EPOCH_SECS)
    }

    /// Whether `id` was issued to `ip` within the last one to two minutes.
    pub(super) fn check(&self, id: u64, ip: IpAddr, secs: u64) -> bool {
        let epoch = secs / EPOCH_SECS;
        id == self.id(ip, epoch) || (epoch > 0 && id == self.id(ip, epoch - 1))
    }
}

/// Receives and answers datagrams until shutdown.
pub(super) async fn run(socket: UdpSocket, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. ICMP port unreachable from an earlier reply: not fatal.
                    debug!("UDP receive: {e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(packet) = buf.get(..n) else { continue };
        if let Some(reply) = handle(&shared, packet, from) {
            if let Err(e) = socket.send_to(&reply, from).await {
                debug!("UDP send to {from}: {e}");
            }
        }
    }
}

/// The reply to one datagram, if any.
fn handle(shared: &Shared, packet: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let req = match Request::decode(packet) {
        Ok(r) => r,
        Err(e) => {
            debug!("UDP packet from {from}: {e}");
            return None;
        }
    };
    let from = canonical(from);
    let secs = shared.start.elapsed().as_secs();
    let transaction_id = req.transaction_id();
    if let Some(cid) = req.connection_id() {
        if !shared.udp_ids.check(cid, from.ip(), secs) {
            return Some(
                Response::Error(ErrorResponse {
                    transaction_id,
                    message: "invalid connection id".into(),
                })
                .encode(AddressFamily::of(&from)),
            );
        }
    }
    let interval = shared.config.tracker.interval_secs();
    let reply = match req {
        Request::Connect(_) => Response::Connect(ConnectResponse {
            transaction_id,
            connection_id: shared.udp_ids.issue(from.ip(), secs),
        }),
        Request::Announce(a) => {
            if let Err(message) = shared.admit(from.ip(), &a.info_hash) {
                return Some(
                    Response::Error(ErrorResponse {
                        transaction_id,
                        message,
                    })
                    .encode(AddressFamily::of(&from)),
                );
            }
            let port = if a.port == 0 { from.port() } else { a.port };
            let announce = PeerAnnounce {
                info_hash: a.info_hash,
                peer_id: a.peer_id,
                addr: SocketAddr::new(from.ip(), port),
                left: Some(a.left),
                event: a.event,
                numwant: udp_numwant(a.num_want),
            };
            let now = shared.now();
            let result = shared.tracker().announce(now, &announce);
            Response::Announce(AnnounceResponse {
                transaction_id,
                interval,
                leechers: result.incomplete,
                seeders: result.complete,
                peers: result.peers.into_iter().map(|p| p.addr).collect(),
            })
        }
        Request::Scrape(s) => {
            // An empty list is an empty reply here, not "every torrent".
            let stats = if s.info_hashes.is_empty() {
                Vec::new()
            } else {
                shared.tracker().scrape(&s.info_hashes)
            };
            Response::Scrape(ScrapeResponse {
                transaction_id,
                stats: stats
                    .into_iter()
                    .map(|(_, f)| ScrapeStats {
                        seeders: f.complete,
                        completed: f.downloaded,
                        leechers: f.incomplete,
                    })
                    .collect(),
            })
        }
    };
    Some(reply.encode(AddressFamily::of(&from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_last_two_minutes_and_bind_the_ip() {
        let ids = ConnectionIds::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let id = ids.issue(a, 130);
        assert!(ids.check(id, a, 130));
        assert!(ids.check(id, a, 179));
        assert!(ids.check(id, a, 239));
        assert!(!ids.check(id, a, 240));
        assert!(!ids.check(id, b, 130));
        assert_ne!(ids.issue(a, 130), ids.issue(b, 130));
    }
}
