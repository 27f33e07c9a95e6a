//! The DHT driver: the core's [`Dht`](webtorrent_core::dht::Dht) machine on the client's UDP
//! port number (an IPv4 socket, and an IPv6 one beside it when listening on every address),
//! and per torrent a loop that announces it and hands the peers found to the torrent.
//!
//! Bootstrap names are resolved in the background; until that is done, lookups wait (a
//! lookup started with no node to ask would find nothing). The node's id and good nodes are
//! saved to [`DhtOptions::state_file`] every few minutes and on shutdown, and a restarted
//! node rejoins from them without the routers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use webtorrent_core::dht::routing::K;
use webtorrent_core::dht::state::SavedState;
use webtorrent_core::dht::{Dht, DhtConfig, Event, LookupId};
use webtorrent_core::session::Input;
use webtorrent_core::time::Time;
use webtorrent_core::InfoHash;

use crate::task::TaskMsg;

/// How often a torrent is announced to the DHT again (BEP 5 nodes keep peers 30 min).
pub const REANNOUNCE: Duration = Duration::from_secs(15 * 60);
/// The first retry when a lookup found nobody.
const RETRY_EMPTY: Duration = Duration::from_secs(60);
/// How often the routing table is saved to [`DhtOptions::state_file`].
const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Saved nodes also used as bootstrap addresses (all of them are pinged).
const SAVED_AS_BOOTSTRAP: usize = 32;
/// How long lookups wait for the bootstrap names to resolve.
const RESOLVE_WAIT: Duration = Duration::from_secs(10);

/// The DHT routers clients bootstrap from when nothing else is known (BitTorrent Inc.'s,
/// Transmission's and libtorrent's).
pub const DEFAULT_ROUTERS: &[&str] = &[
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// DHT settings of a client.
#[derive(Debug, Clone)]
pub struct DhtOptions {
    /// Nodes to bootstrap from, `HOST:PORT` (names are resolved by the node). Default:
    /// [`DEFAULT_ROUTERS`].
    pub bootstrap: Vec<String>,
    /// BEP 43 read-only: look up, never answer or announce.
    pub read_only: bool,
    /// Where the node's id and routing table are kept across restarts (`None`: nowhere).
    /// A missing file starts afresh; an unreadable one is replaced, with a warning.
    pub state_file: Option<PathBuf>,
}

impl Default for DhtOptions {
    fn default() -> Self {
        DhtOptions {
            bootstrap: DEFAULT_ROUTERS.iter().map(|s| s.to_string()).collect(),
            read_only: false,
            state_file: None,
        }
    }
}

impl DhtOptions {
    /// Bootstrap from these addresses only (no routers, no state file): a private or test DHT.
    pub fn local(bootstrap: &[SocketAddr]) -> DhtOptions {
        DhtOptions {
            bootstrap: bootstrap.iter().map(SocketAddr::to_string).collect(),
            read_only: false,
            state_file: None,
        }
    }
}

enum Cmd {
    /// Look up (and announce us on `port`, if any) and send the peers found; the sender is
    /// dropped when the lookup ends.
    Lookup {
        info_hash: InfoHash,
        port: Option<u16>,
        peers: mpsc::Sender<Vec<SocketAddr>>,
    },
    AddNode(SocketAddr),
    /// The bootstrap names resolved (possibly to nothing).
    Bootstrap(Vec<SocketAddr>),
    Stats(oneshot::Sender<(usize, usize)>),
    /// Save the state and stop.
    Shutdown(oneshot::Sender<()>),
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

/// Reads a saved state; a missing file is `None`, a bad one is `None` with a warning.
fn load_state(path: &Path) -> Option<SavedState> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the DHT state; starting afresh");
            return None;
        }
    };
    match SavedState::decode(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring a damaged DHT state file; it will be rewritten");
            None
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Per process: two clients sharing a state folder never write the same temporary file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl DhtHandle {
    /// Starts the node on the client's UDP `port`, fed the datagrams that are not uTP.
    pub(crate) async fn start(
        port: crate::udp::UdpPort,
        datagrams: mpsc::Receiver<crate::udp::Datagram>,
        opts: &DhtOptions,
        seed: u64,
    ) -> std::io::Result<(DhtHandle, tokio::task::JoinHandle<()>)> {
        let local = port.local_addr();
        let saved = opts.state_file.as_deref().and_then(load_state);
        let config = DhtConfig {
            id: saved.as_ref().map(|s| s.id),
            read_only: opts.read_only,
            ..DhtConfig::default()
        };
        let (tx, rx) = mpsc::channel(256);
        let start = Instant::now();
        let mut dht = Dht::new(Time::ZERO, config, seed);
        let saved_boot: Vec<SocketAddr> = saved
            .iter()
            .flat_map(|s| &s.nodes)
            .map(|n| n.addr)
            .take(SAVED_AS_BOOTSTRAP)
            .collect();
        if let Some(s) = &saved {
            for n in &s.nodes {
                dht.add_node(Time::ZERO, n.addr);
            }
            info!(nodes = s.nodes.len(), "DHT state restored");
        }
        dht.set_bootstrap(Time::ZERO, saved_boot.clone());
        info!(%local, ipv6 = port.has_ipv6(), id = %dht.id().to_hex(), "DHT node listening");
        tokio::spawn(resolve(opts.bootstrap.clone(), saved_boot, tx.clone()));
        let node = Node {
            dht,
            port,
            start,
            state_file: opts.state_file.clone(),
        };
        let task = tokio::spawn(node.run(rx, datagrams));
        Ok((DhtHandle { tx, addr: local }, task))
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pings a node (a peer's BEP 5 `PORT`, a saved node); skipped when the node is busy.
    pub fn add_node(&self, addr: SocketAddr) {
        let _ = self.tx.try_send(Cmd::AddNode(addr));
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
        self.lookup(info_hash, Some(port)).await
    }

    /// Starts a lookup that only asks for peers (announces nothing).
    pub async fn get_peers(&self, info_hash: InfoHash) -> Option<mpsc::Receiver<Vec<SocketAddr>>> {
        self.lookup(info_hash, None).await
    }

    async fn lookup(
        &self,
        info_hash: InfoHash,
        port: Option<u16>,
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

    /// Saves the state file and stops the node (waits at most a second).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }
}

/// Resolves the bootstrap names and hands them (with the saved nodes) to the node; retries
/// while none resolves, from a minute up to half an hour apart.
async fn resolve(names: Vec<String>, saved: Vec<SocketAddr>, tx: mpsc::Sender<Cmd>) {
    let mut wait = Duration::from_secs(60);
    loop {
        let mut addrs = saved.clone();
        let mut failed = Vec::new();
        for n in &names {
            match tokio::net::lookup_host(n.as_str()).await {
                Ok(a) => addrs.extend(a),
                Err(e) => failed.push(format!("{n}: {e}")),
            }
        }
        if !failed.is_empty() {
            warn!(
                "DHT bootstrap nodes that do not resolve: {}",
                failed.join("; ")
            );
        }
        let resolved_any = addrs.len() > saved.len() || names.is_empty();
        if tx.send(Cmd::Bootstrap(addrs)).await.is_err() || resolved_any {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1800));
    }
}

struct Node {
    dht: Dht,
    port: crate::udp::UdpPort,
    start: Instant,
    state_file: Option<PathBuf>,
}

impl Node {
    fn now(&self) -> Time {
        Time::from_duration(self.start.elapsed())
    }

    fn start_lookup(&mut self, info_hash: InfoHash, port: Option<u16>) -> LookupId {
        let now = self.now();
        match port {
            Some(p) => self.dht.announce(now, info_hash, Some(p)),
            None => self.dht.get_peers(now, info_hash),
        }
    }

    async fn save(&self) {
        let Some(path) = self.state_file.clone() else {
            return;
        };
        let state = self.dht.saved_state(self.now());
        if state.nodes.is_empty() {
            // Nothing learnt (yet): keep what an earlier run saved.
            return;
        }
        let bytes = state.encode();
        let n = state.nodes.len();
        let r =
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes).map(|_| path)).await;
        match r {
            Ok(Ok(path)) => debug!(nodes = n, path = %path.display(), "DHT state saved"),
            Ok(Err(e)) => warn!(error = %e, "cannot save the DHT state"),
            Err(_) => {}
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut datagrams: mpsc::Receiver<crate::udp::Datagram>,
    ) {
        let mut waiting: HashMap<LookupId, mpsc::Sender<Vec<SocketAddr>>> = HashMap::new();
        // Lookups asked for before the bootstrap names resolved.
        let mut held: Vec<(InfoHash, Option<u16>, mpsc::Sender<Vec<SocketAddr>>)> = Vec::new();
        let mut bootstrapped = false;
        let resolve_deadline = self.start + RESOLVE_WAIT;
        let mut next_save = self.start + SAVE_EVERY;
        loop {
            if !bootstrapped && Instant::now() >= resolve_deadline {
                bootstrapped = true;
            }
            if bootstrapped {
                for (info_hash, port, peers) in held.drain(..) {
                    let id = self.start_lookup(info_hash, port);
                    waiting.insert(id, peers);
                }
            }
            // Send what the machine has and route its events.
            while let Some(t) = self.dht.poll_transmit() {
                if t.to.is_ipv6() && !self.port.has_ipv6() {
                    continue;
                }
                if let Err(e) = self.port.send_to(&t.data, t.to).await {
                    debug!(to = %t.to, error = %e, "DHT send failed");
                }
            }
            while let Some(e) = self.dht.poll_event() {
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
            let mut deadline = self
                .dht
                .poll_timeout()
                .map(|t| self.start + t.saturating_since(Time::ZERO))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(30))
                .min(next_save);
            if !bootstrapped {
                deadline = deadline.min(resolve_deadline);
            }
            tokio::select! {
                d = datagrams.recv() => match d {
                    Some((data, from)) => { let now = self.now(); self.dht.handle_datagram(now, from, &data) }
                    None => return,
                },
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Lookup { info_hash, port, peers }) => {
                        if bootstrapped {
                            let id = self.start_lookup(info_hash, port);
                            waiting.insert(id, peers);
                        } else {
                            held.push((info_hash, port, peers));
                        }
                    }
                    Some(Cmd::AddNode(addr)) => { let now = self.now(); self.dht.add_node(now, addr) }
                    Some(Cmd::Bootstrap(addrs)) => {
                        debug!(n = addrs.len(), "DHT bootstrap addresses");
                        let now = self.now();
                        self.dht.set_bootstrap(now, addrs);
                        // Bootstrap now, so the lookups released next have nodes to ask.
                        if self.dht.num_nodes().0 < K {
                            self.dht.handle_timeout(now);
                        }
                        bootstrapped = true;
                    }
                    Some(Cmd::Stats(reply)) => {
                        let _ = reply.send(self.dht.num_nodes());
                    }
                    Some(Cmd::Shutdown(done)) => {
                        self.save().await;
                        let _ = done.send(());
                        return;
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = self.now();
                    self.dht.handle_timeout(now);
                    if Instant::now() >= next_save {
                        next_save = Instant::now() + SAVE_EVERY;
                        self.save().await;
                    }
                }
            }
        }
    }
}

/// Announces a torrent every [`REANNOUNCE`] (sooner while nothing is found) and sends the
/// peers found to its task, until the torrent is gone or turns out to be private (a magnet
/// link's metadata says so).
pub(crate) async fn announce_loop(
    dht: Arc<DhtHandle>,
    torrent: Weak<crate::torrent::Inner>,
    port: Arc<std::sync::atomic::AtomicU16>,
) {
    let mut retry = RETRY_EMPTY;
    let usable = |t: &Weak<crate::torrent::Inner>| {
        let inner = t.upgrade()?;
        let private = inner
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .meta
            .as_ref()
            .is_some_and(|m| m.info.private);
        (!private).then(|| (inner.info_hash, inner.tx.clone()))
    };
    loop {
        let Some((info_hash, _)) = usable(&torrent) else {
            return;
        };
        let port = port.load(std::sync::atomic::Ordering::Relaxed);
        let Some(mut rx) = dht.announce(info_hash, port).await else {
            return;
        };
        let mut found = 0;
        while let Some(peers) = rx.recv().await {
            let Some((_, task)) = usable(&torrent) else {
                return;
            };
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
            info!(info_hash = %info_hash.to_hex(), "the DHT knows no peer of this torrent yet");
            let w = retry;
            retry = (retry * 2).min(REANNOUNCE);
            w
        } else {
            retry = RETRY_EMPTY;
            REANNOUNCE
        };
        // A torrent removed meanwhile is not announced once more.
        let Some((_, task)) = usable(&torrent) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = task.closed() => return,
        }
    }
}
