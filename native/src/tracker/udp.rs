//! UDP tracker client (BEP 15, with BEP 41 URL data).
//!
//! [`UdpEngine`] holds one IPv4 and, when available, one IPv6 socket. A background task is the
//! only reader of both: it takes the transaction id from every datagram and hands the decoded
//! reply to the request waiting for that id from that address; anything else is dropped.
//! Requests send from the caller's task and keep their own timers, so dropping an announce
//! future cancels it cleanly. Dropping the engine (with the last [`TrackerClient`] clone) stops
//! the task and closes the sockets.
//!
//! [`TrackerClient`]: super::TrackerClient

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, trace};
use webtorrent_core::tracker::udp::{
    self as codec, ConnectRequest, Response, UdpError, MAX_SCRAPE_HASHES,
};
use webtorrent_core::tracker::AddressFamily;
use webtorrent_core::InfoHash;

use super::{
    clean_peers, redact, secs, AnnounceOutcome, AnnounceParams, ScrapeStats, TrackerClientConfig,
    TrackerError,
};

/// How long a connection id may be used, from its arrival (BEP 15: one minute for a client).
const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// Most tracker addresses whose connection id is remembered.
const MAX_CACHED_CONNECTIONS: usize = 1024;

/// Most requests waiting for a reply at once, across all trackers.
const MAX_PENDING: usize = 4096;

/// Receive buffer: the largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// What the receive task hands to a waiting request.
type Reply = Result<Response, UdpError>;

/// The UDP sockets, their receive task and the connection-id cache.
pub(super) struct UdpEngine {
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    pending: Arc<Mutex<Pending>>,
    connections: Mutex<ConnectionCache>,
    base_timeout: Duration,
    max_retries: u32,
    /// Dropped with the engine, which ends the receive task.
    _shutdown: oneshot::Sender<()>,
}

impl UdpEngine {
    /// Binds the sockets and spawns the receive task on the current tokio runtime.
    pub(super) async fn start(config: &TrackerClientConfig) -> Result<Self, TrackerError> {
        let v4 = bind(config.bind_v4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await?;
        let v6 = bind(config.bind_v6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).await?;
        if v4.is_none() && v6.is_none() {
            return Err(TrackerError::Network(
                "no UDP socket could be bound".to_string(),
            ));
        }
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (shutdown, shutdown_rx) = oneshot::channel();
        tokio::spawn(receive_loop(
            v4.clone(),
            v6.clone(),
            Arc::clone(&pending),
            shutdown_rx,
        ));
        Ok(UdpEngine {
            v4,
            v6,
            pending,
            connections: Mutex::new(ConnectionCache::default()),
            base_timeout: config.udp_base_timeout,
            max_retries: config.udp_max_retries,
            _shutdown: shutdown,
        })
    }

    /// Announces to the `udp://` tracker at `url`.
    pub(super) async fn announce(
        &self,
        url: &str,
        params: &AnnounceParams,
    ) -> Result<AnnounceOutcome, TrackerError> {
        let tracker = self.resolve(url).await?;
        let url_data = codec::url_data(url).as_bytes().to_vec();
        let reply = self
            .exchange(tracker, |connection_id, transaction_id| {
                codec::AnnounceRequest {
                    connection_id,
                    transaction_id,
                    info_hash: params.info_hash,
                    peer_id: params.peer_id,
                    downloaded: params.downloaded,
                    left: params.left,
                    uploaded: params.uploaded,
                    event: params.event,
                    ip: None,
                    key: params.key,
                    num_want: params.numwant,
                    port: params.port,
                    url_data: url_data.clone(),
                }
                .encode()
            })
            .await?;
        match reply {
            Response::Announce(a) => Ok(AnnounceOutcome {
                interval: secs(a.interval),
                min_interval: None,
                complete: Some(a.seeders),
                incomplete: Some(a.leechers),
                peers: clean_peers(a.peers),
                tracker_id: None,
                warning: None,
                external_ip: None,
            }),
            other => Err(unexpected("announce", &other)),
        }
    }

    /// Scrapes the `udp://` tracker at `url`, [`MAX_SCRAPE_HASHES`] hashes per request.
    pub(super) async fn scrape(
        &self,
        url: &str,
        info_hashes: &[InfoHash],
    ) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
        let tracker = self.resolve(url).await?;
        let mut out = Vec::with_capacity(info_hashes.len());
        for chunk in info_hashes.chunks(MAX_SCRAPE_HASHES) {
            let reply = self
                .exchange(tracker, |connection_id, transaction_id| {
                    codec::ScrapeRequest {
                        connection_id,
                        transaction_id,
                        info_hashes: chunk.to_vec(),
                    }
                    .encode()
                })
                .await?;
            let Response::Scrape(s) = reply else {
                return Err(unexpected("scrape", &reply));
            };
            if s.stats.len() != chunk.len() {
                debug!(
                    tracker = %tracker,
                    asked = chunk.len(),
                    answered = s.stats.len(),
                    "UDP scrape reply has a different number of entries"
                );
            }
            out.extend(chunk.iter().zip(&s.stats).map(|(h, st)| {
                (
                    *h,
                    ScrapeStats {
                        complete: st.seeders,
                        downloaded: st.completed,
                        incomplete: st.leechers,
                    },
                )
            }));
        }
        Ok(out)
    }

    /// One request/response exchange with retransmission, connecting first when no fresh
    /// connection id is cached. `build(connection_id, transaction_id)` makes the request.
    ///
    /// Every wait that times out counts as one retransmission `n` (connect and request share
    /// the count) and the next wait is `base * 2^n`; after `max_retries` retransmissions the
    /// result is [`TrackerError::Timeout`]. A transaction id stays registered across its
    /// retransmissions, so a late reply to an earlier copy is still taken.
    async fn exchange(
        &self,
        tracker: SocketAddr,
        build: impl Fn(u64, u32) -> Vec<u8>,
    ) -> Result<Response, TrackerError> {
        let mut attempt: u32 = 0;
        let mut connect: Option<Registration<'_>> = None;
        let mut request: Option<Registration<'_>> = None;
        // Whether the connection id in use was obtained during this exchange.
        let mut fresh_connection = false;
        loop {
            let wait = self.base_timeout.saturating_mul(1 << attempt.min(16));
            let connection_id = match self.cached_connection(tracker) {
                Some(id) => id,
                None => {
                    let reg = match &mut connect {
                        Some(reg) => reg,
                        None => connect.insert(self.register(tracker)?),
                    };
                    let packet = ConnectRequest {
                        transaction_id: reg.transaction_id,
                    }
                    .encode();
                    trace!(%tracker, attempt, transaction_id = reg.transaction_id, "UDP connect");
                    self.send(tracker, &packet).await?;
                    match tokio::time::timeout(wait, &mut reg.rx).await {
                        Err(_) => {
                            attempt += 1;
                            debug!(%tracker, attempt, "UDP connect timed out");
                            if attempt > self.max_retries {
                                return Err(TrackerError::Timeout);
                            }
                            continue;
                        }
                        Ok(reply) => match lift(reply)? {
                            Response::Connect(c) => {
                                connect = None;
                                fresh_connection = true;
                                self.remember_connection(tracker, c.connection_id);
                                c.connection_id
                            }
                            other => return Err(unexpected("connect", &other)),
                        },
                    }
                }
            };
            let reg = match &mut request {
                Some(reg) => reg,
                None => request.insert(self.register(tracker)?),
            };
            let packet = build(connection_id, reg.transaction_id);
            trace!(%tracker, attempt, transaction_id = reg.transaction_id, len = packet.len(), "UDP request");
            self.send(tracker, &packet).await?;
            match tokio::time::timeout(wait, &mut reg.rx).await {
                Err(_) => {
                    attempt += 1;
                    debug!(%tracker, attempt, "UDP request timed out");
                    if !fresh_connection {
                        // The tracker may have forgotten the id (restart); opentracker drops
                        // such requests silently. Connect again on the next attempt.
                        self.forget_connection(tracker);
                    }
                    if attempt > self.max_retries {
                        return Err(TrackerError::Timeout);
                    }
                }
                Ok(reply) => {
                    let reply = lift(reply);
                    if matches!(reply, Err(TrackerError::Failure(_))) {
                        // Possibly a stale connection id: do not reuse it.
                        self.forget_connection(tracker);
                    }
                    return reply;
                }
            }
        }
    }

    /// The tracker's address for a `udp://host:port…` URL: an IP literal as is, otherwise the
    /// first resolved address of a family we have a socket for.
    async fn resolve(&self, url: &str) -> Result<SocketAddr, TrackerError> {
        let (host, port) = host_port(url)?;
        let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| TrackerError::Network(format!("resolving {}: {e}", redact(url))))?
                .take(32)
                .collect(),
        };
        let candidates = candidates
            .into_iter()
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
        let mut first = None;
        for addr in candidates {
            first.get_or_insert(addr);
            if self.socket_for(addr).is_some() {
                return Ok(addr);
            }
        }
        Err(match first {
            Some(addr) => TrackerError::Network(format!("no UDP socket of the family of {addr}")),
            None => TrackerError::Network(format!("{} resolved to no address", redact(url))),
        })
    }

    fn socket_for(&self, addr: SocketAddr) -> Option<&UdpSocket> {
        match addr {
            SocketAddr::V4(_) => self.v4.as_deref(),
            SocketAddr::V6(_) => self.v6.as_deref(),
        }
    }

    async fn send(&self, tracker: SocketAddr, packet: &[u8]) -> Result<(), TrackerError> {
        let socket = self.socket_for(tracker).ok_or_else(|| {
            TrackerError::Network(format!("no UDP socket of the family of {tracker}"))
        })?;
        socket
            .send_to(packet, tracker)
            .await
            .map(drop)
            .map_err(|e| TrackerError::Network(format!("sending to {tracker}: {e}")))
    }

    fn register(&self, tracker: SocketAddr) -> Result<Registration<'_>, TrackerError> {
        let (tx, rx) = oneshot::channel();
        let mut table = lock(&self.pending);
        if table.entries.len() >= MAX_PENDING {
            table.entries.retain(|_, e| !e.tx.is_closed());
            if table.entries.len() >= MAX_PENDING {
                return Err(TrackerError::Network(
                    "too many UDP tracker requests in flight".to_string(),
                ));
            }
        }
        let transaction_id = loop {
            let id = rand::random::<u32>();
            if !table.entries.contains_key(&id) {
                break id;
            }
        };
        table.next_serial = table.next_serial.wrapping_add(1);
        let serial = table.next_serial;
        table.entries.insert(
            transaction_id,
            PendingEntry {
                serial,
                tracker,
                tx,
            },
        );
        Ok(Registration {
            pending: &self.pending,
            transaction_id,
            serial,
            rx,
        })
    }

    fn cached_connection(&self, tracker: SocketAddr) -> Option<u64> {
        lock(&self.connections).get(tracker, Instant::now())
    }

    fn remember_connection(&self, tracker: SocketAddr, id: u64) {
        lock(&self.connections).insert(tracker, id, Instant::now());
    }

    fn forget_connection(&self, tracker: SocketAddr) {
        lock(&self.connections).map.remove(&tracker);
    }
}

/// Binds `configured`, or `default` when none is configured. A configured address that fails
/// is an error; a failing default is skipped (`None`).
async fn bind(
    configured: Option<SocketAddr>,
    default: SocketAddr,
) -> Result<Option<Arc<UdpSocket>>, TrackerError> {
    let addr = configured.unwrap_or(default);
    match UdpSocket::bind(addr).await {
        Ok(socket) => {
            debug!(local = ?socket.local_addr().ok(), "UDP tracker socket bound");
            Ok(Some(Arc::new(socket)))
        }
        Err(e) if configured.is_some() => Err(TrackerError::Network(format!(
            "binding UDP socket {addr}: {e}"
        ))),
        Err(e) => {
            debug!(%addr, error = %e, "UDP tracker socket not available");
            Ok(None)
        }
    }
}

/// A waiting request's end of the pending table; unregisters on drop.
struct Registration<'a> {
    pending: &'a Mutex<Pending>,
    transaction_id: u32,
    serial: u64,
    rx: oneshot::Receiver<Reply>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut table = lock(self.pending);
        // The entry may already be gone (answered) and its id reused by another request.
        if table
            .entries
            .get(&self.transaction_id)
            .is_some_and(|e| e.serial == self.serial)
        {
            table.entries.remove(&self.transaction_id);
        }
    }
}

/// Requests waiting for a reply, by transaction id.
#[derive(Default)]
struct Pending {
    entries: HashMap<u32, PendingEntry>,
    next_serial: u64,
}

struct PendingEntry {
    serial: u64,
    /// The only address a reply is accepted from.
    tracker: SocketAddr,
    tx: oneshot::Sender<Reply>,
}

/// Connection ids by tracker address, with the time each arrived.
#[derive(Default)]
struct ConnectionCache {
    map: HashMap<SocketAddr, (u64, Instant)>,
}

impl ConnectionCache {
    fn get(&mut self, tracker: SocketAddr, now: Instant) -> Option<u64> {
        let &(id, since) = self.map.get(&tracker)?;
        if now.saturating_duration_since(since) < CONNECTION_ID_LIFETIME {
            Some(id)
        } else {
            self.map.remove(&tracker);
            None
        }
    }

    fn insert(&mut self, tracker: SocketAddr, id: u64, now: Instant) {
        if self.map.len() >= MAX_CACHED_CONNECTIONS && !self.map.contains_key(&tracker) {
            self.map.retain(|_, (_, since)| {
                now.saturating_duration_since(*since) < CONNECTION_ID_LIFETIME
            });
            if self.map.len() >= MAX_CACHED_CONNECTIONS {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(addr, _)| *addr);
                if let Some(addr) = oldest {
                    self.map.remove(&addr);
                }
            }
        }
        self.map.insert(tracker, (id, now));
    }
}

/// Reads both sockets until `shutdown` fires (its sender is dropped).
async fn receive_loop(
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    pending: Arc<Mutex<Pending>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut buf4 = vec![0u8; if v4.is_some() { MAX_DATAGRAM } else { 0 }];
    let mut buf6 = vec![0u8; if v6.is_some() { MAX_DATAGRAM } else { 0 }];
    loop {
        let (family, received) = tokio::select! {
            _ = &mut shutdown => break,
            r = recv(v4.as_deref(), &mut buf4) => (AddressFamily::V4, r),
            r = recv(v6.as_deref(), &mut buf6) => (AddressFamily::V6, r),
        };
        let buf = match family {
            AddressFamily::V4 => &buf4,
            AddressFamily::V6 => &buf6,
        };
        match received {
            Ok((len, from)) => {
                if let Some(packet) = buf.get(..len) {
                    dispatch(&pending, packet, from, family);
                }
            }
            Err(e) => {
                // ICMP errors surface here on some platforms; they concern a request that will
                // time out on its own. Pause on anything else so a broken socket cannot spin.
                debug!(error = %e, "UDP tracker socket receive error");
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                ) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    trace!("UDP tracker receive task finished");
}

async fn recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Hands `packet` to the request waiting for its transaction id from `from`, or drops it.
fn dispatch(pending: &Mutex<Pending>, packet: &[u8], from: SocketAddr, family: AddressFamily) {
    let Some(transaction_id) = packet
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
    else {
        trace!(%from, len = packet.len(), "dropping short UDP datagram");
        return;
    };
    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
    let entry = {
        let mut table = lock(pending);
        match table.entries.get(&transaction_id) {
            Some(e) if same_endpoint(e.tracker, from) => table.entries.remove(&transaction_id),
            _ => None,
        }
    };
    let Some(entry) = entry else {
        trace!(%from, transaction_id, "dropping stray UDP datagram");
        return;
    };
    // The requester may have given up meanwhile; nothing to do then.
    let _ = entry.tx.send(Response::decode(packet, family));
}

/// Same IP and port (an IPv6 scope id or flow label may differ).
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() && a.port() == b.port()
}

/// A reply as the requester sees it: tracker errors become [`TrackerError::Failure`].
fn lift(reply: Result<Reply, oneshot::error::RecvError>) -> Result<Response, TrackerError> {
    match reply {
        Err(_) => Err(TrackerError::Network(
            "UDP tracker receive task ended".to_string(),
        )),
        Ok(Err(e)) => Err(TrackerError::Protocol(e.to_string())),
        Ok(Ok(Response::Error(e))) => Err(TrackerError::Failure(e.message)),
        Ok(Ok(r)) => Ok(r),
    }
}

fn unexpected(wanted: &str, got: &Response) -> TrackerError {
    let action = match got {
        Response::Connect(_) => "connect",
        Response::Announce(_) => "announce",
        Response::Scrape(_) => "scrape",
        Response::Error(_) => "error",
    };
    TrackerError::Protocol(format!("{action} reply to a {wanted} request"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Host and port of `udp://[user@]host:port[/path][?query][#fragment]`; IPv6 hosts in brackets.
/// The port is required (UDP trackers have no default) and may not be 0.
fn host_port(url: &str) -> Result<(&str, u16), TrackerError> {
    let invalid = |why: &str| TrackerError::InvalidUrl(format!("{}: {why}", redact(url)));
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| invalid("no scheme"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, _) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed `[`"))?;
            let port = after.strip_prefix(':').ok_or_else(|| invalid("no port"))?;
            (host, port)
        }
        None => authority
            .rsplit_once(':')
            .ok_or_else(|| invalid("no port"))?,
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| invalid("bad port"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(
            host_port("udp://tracker.example:1337/announce?pk=1"),
            Ok(("tracker.example", 1337))
        );
        assert_eq!(host_port("udp://[::1]:6969"), Ok(("::1", 6969)));
        assert_eq!(host_port("UDP://a@127.0.0.1:1?x#y"), Ok(("127.0.0.1", 1)));
        for bad in [
            "udp://tracker.example",
            "udp://tracker.example:",
            "udp://tracker.example:0",
            "udp://tracker.example:70000",
            "udp://:80",
            "udp://[::1/announce",
            "udp://[::1]/announce",
            "tracker.example:80",
        ] {
            assert!(
                matches!(host_port(bad), Err(TrackerError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn connection_cache_expires_and_is_bounded() {
        let mut c = ConnectionCache::default();
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        c.insert(a, 7, t0);
        assert_eq!(c.get(a, t0 + Duration::from_secs(59)), Some(7));
        assert_eq!(c.get(a, t0 + CONNECTION_ID_LIFETIME), None);
        assert!(c.map.is_empty());
        for port in 0..(MAX_CACHED_CONNECTIONS as u16 + 10) {
            let addr = SocketAddr::from(([10, 0, 0, 1], port));
            c.insert(
                addr,
                u64::from(port),
                t0 + Duration::from_millis(u64::from(port)),
            );
        }
        assert_eq!(c.map.len(), MAX_CACHED_CONNECTIONS);
        // The oldest went first.
        assert!(!c.map.contains_key(&SocketAddr::from(([10, 0, 0, 1], 0))));
    }

    #[test]
    fn dispatch_checks_id_and_source() {
        let pending = Mutex::new(Pending::default());
        let tracker: SocketAddr = "127.0.0.1:6969".parse().unwrap();
        let (tx, mut rx) = oneshot::channel();
        lock(&pending).entries.insert(
            5,
            PendingEntry {
                serial: 1,
                tracker,
                tx,
            },
        );
        let reply = codec::ConnectResponse {
            transaction_id: 5,
            connection_id: 9,
        }
        .encode();
        // Short, wrong id, wrong source: dropped.
        dispatch(&pending, &reply[..6], tracker, AddressFamily::V4);
        let mut other_id = reply.clone();
        other_id[7] = 6;
        dispatch(&pending, &other_id, tracker, AddressFamily::V4);
        dispatch(
            &pending,
            &reply,
            "127.0.0.1:6970".parse().unwrap(),
            AddressFamily::V4,
        );
        assert!(rx.try_recv().is_err());
        dispatch(&pending, &reply, tracker, AddressFamily::V4);
        assert!(matches!(
            rx.try_recv(),
            Ok(Ok(Response::Connect(c))) if c.connection_id == 9
        ));
        assert!(lock(&pending).entries.is_empty());
    }
}
