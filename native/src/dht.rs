//! The DHT driver: one UDP socket on the client's port number carrying the core's
//! [`Dht`](webtorrent_core::dht::Dht) machine, and per torrent a loop that announces it and
//! hands the peers found to the torrent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use webtorrent_core::dht::{Dht, DhtConfig, Event, LookupId};
use webtorrent_core::session::Input;
use webtorrent_core::time::Time;
use webtorrent_core::InfoHash;

use crate::task::TaskMsg;

/// How often a torrent is announced to the DHT again (BEP 5 nodes keep peers 30 min).
pub const REANNOUNCE: Duration = Duration::from_secs(15 * 60);
/// The first retry when a lookup found nobody.
const RETRY_EMPTY: Duration = Duration::from_secs(60);

/// DHT settings of a client.
#[derive(Debug, Clone, Default)]
pub struct DhtOptions {
    /// Nodes to bootstrap from (`HOST:PORT` already resolved).
    pub bootstrap: Vec<SocketAddr>,
    /// BEP 43 read-only: look up, never answer or announce.
    pub read_only: bool,
}

enum Cmd {
    /// Announce (or only look up, when `port` is `None` and the node is read-only) and
    /// send the peers found; the sender is dropped when the lookup ends.
    Lookup {
        info_hash: InfoHash,
        port: u16,
        peers: mpsc::Sender<Vec<SocketAddr>>,
    },
    AddNode(SocketAddr),
    Stats(oneshot::Sender<(usize, usize)>),
}

/// A running DHT node.
#[derive(Clone)]
pub struct DhtHandle {
    tx: mpsc::Sender<Cmd>,
    addr: SocketAddr,
}

impl std::fmt::Debug for DhtHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl DhtHandle {
    /// Binds `addr` (UDP) and starts the node.
    pub async fn start(
        addr: SocketAddr,
        opts: &DhtOptions,
        seed: u64,
    ) -> std::io::Result<(DhtHandle, tokio::task::JoinHandle<()>)> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let config = DhtConfig {
            bootstrap: opts.bootstrap.clone(),
            read_only: opts.read_only,
            ..DhtConfig::default()
        };
        let (tx, rx) = mpsc::channel(256);
        let start = Instant::now();
        let dht = Dht::new(Time::ZERO, config, seed);
        info!(%local, id = %dht.id().to_hex(), "DHT node listening");
        let task = tokio::spawn(run(socket, dht, rx, start));
        Ok((DhtHandle { tx, addr: local }, task))
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pings a node (a peer's BEP 5 `PORT`, a saved node).
    pub async fn add_node(&self, addr: SocketAddr) {
        let _ = self.tx.send(Cmd::AddNode(addr)).await;
    }

    /// Nodes in the IPv4 and IPv6 routing tables.
    pub async fn num_nodes(&self) -> Option<(usize, usize)> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Starts a lookup that announces us on `port`; peers arrive on the returned channel,
    /// which closes when the lookup ends.
    pub async fn announce(
        &self,
        info_hash: InfoHash,
        port: u16,
    ) -> Option<mpsc::Receiver<Vec<SocketAddr>>> {
        let (peers, rx) = mpsc::channel(16);
        self.tx
            .send(Cmd::Lookup {
                info_hash,
                port,
                peers,
            })
            .await
            .ok()?;
        Some(rx)
    }
}

fn now(start: Instant) -> Time {
    Time::from_duration(start.elapsed())
}

async fn run(socket: UdpSocket, mut dht: Dht, mut rx: mpsc::Receiver<Cmd>, start: Instant) {
    let mut buf = vec![0u8; 65536];
    let mut waiting: HashMap<LookupId, mpsc::Sender<Vec<SocketAddr>>> = HashMap::new();
    loop {
        // Send what the machine has and route its events.
        while let Some(t) = dht.poll_transmit() {
            if let Err(e) = socket.send_to(&t.data, t.to).await {
                debug!(to = %t.to, error = %e, "DHT send failed");
            }
        }
        while let Some(e) = dht.poll_event() {
            match e {
                Event::Peers { lookup, peers, .. } => {
                    if let Some(tx) = waiting.get(&lookup) {
                        let _ = tx.try_send(peers);
                    }
                }
                Event::LookupDone(r) => {
                    debug!(
                        target_id = %r.target.to_hex(),
                        queries = r.queries,
                        answers = r.answers,
                        rounds = r.rounds,
                        peers = r.peers,
                        announced = r.announced,
                        ms = r.elapsed.as_millis() as u64,
                        "DHT lookup done"
                    );
                    waiting.remove(&r.id);
                }
            }
        }
        let deadline = dht
            .poll_timeout()
            .map(|t| start + t.saturating_since(Time::ZERO))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => dht.handle_datagram(now(start), from, &buf[..n]),
                Err(e) => {
                    // ICMP errors (a node gone) surface here on some systems: keep going.
                    debug!(error = %e, "DHT receive error");
                }
            },
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Lookup { info_hash, port, peers }) => {
                    let id = dht.announce(now(start), info_hash, Some(port));
                    waiting.insert(id, peers);
                }
                Some(Cmd::AddNode(addr)) => dht.add_node(now(start), addr),
                Some(Cmd::Stats(reply)) => {
                    let _ = reply.send(dht.num_nodes());
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => dht.handle_timeout(now(start)),
        }
    }
}

/// Announces a torrent every [`REANNOUNCE`] (sooner while nothing is found) and sends the
/// peers found to its task, until the task is gone.
pub(crate) async fn announce_loop(
    dht: Arc<DhtHandle>,
    info_hash: InfoHash,
    port: u16,
    task: mpsc::Sender<TaskMsg>,
) {
    let mut retry = RETRY_EMPTY;
    loop {
        let Some(mut rx) = dht.announce(info_hash, port).await else {
            return;
        };
        let mut found = 0;
        while let Some(peers) = rx.recv().await {
            found += peers.len();
            debug!(info_hash = %info_hash.to_hex(), n = peers.len(), "DHT peers");
            if task
                .send(TaskMsg::input(Input::AddPeers(peers)))
                .await
                .is_err()
            {
                return;
            }
        }
        let wait = if found == 0 {
            warn!(info_hash = %info_hash.to_hex(), "the DHT knows no peer of this torrent yet");
            let w = retry;
            retry = (retry * 2).min(REANNOUNCE);
            w
        } else {
            retry = RETRY_EMPTY;
            REANNOUNCE
        };
        // A torrent removed meanwhile is not announced once more.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = task.closed() => return,
        }
    }
}
