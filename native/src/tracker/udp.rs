//! UDP tracker client (BEP 15, with BEP 41 URL data): a tokio driver for the core's
//! [`UdpTrackerClient`] state machine.
//!
//! [`UdpEngine`] starts one task that owns one IPv4 and, when available, one IPv6 socket and the
//! machine, which does all the protocol work (connect handshake, connection-id cache,
//! transaction ids, retransmission, scrape batching). Requests reach the task over a channel
//! with a oneshot for the reply; dropping a request's future cancels it in the machine.
//! Dropping the engine (with the last [`TrackerClient`] clone and the requests still using it)
//! ends the task and closes the sockets.
//!
//! [`TrackerClient`]: super::TrackerClient

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, trace};
use webtorrent_core::tracker::udp::{self as codec, AnnounceResponse};
use webtorrent_core::tracker::udp_client::{
    Announce, DatagramOutcome, Phase, RequestError, RequestId, StartError, Transmit,
    UdpClientConfig, UdpClientEvent,
};
use webtorrent_core::tracker::UdpTrackerClient;
use webtorrent_core::{InfoHash, Time};

use super::{
    clean_peers, redact, secs, AnnounceOutcome, AnnounceParams, ScrapeStats, TrackerClientConfig,
    TrackerError,
};

/// Receive buffer: the largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// How long a socket rests after a receive error other than an ICMP report, so a broken socket
/// cannot spin the task.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Stands in for deadlines too far away to represent.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A finished request as the caller sees it.
type Reply = Result<Outcome, TrackerError>;

/// What a successful request yields.
enum Outcome {
    Announce(AnnounceResponse),
    Scrape(Vec<(InfoHash, codec::ScrapeStats)>),
}

/// What a request asks for.
enum Job {
    Announce(Announce),
    Scrape(Vec<InfoHash>),
}

/// Messages to the task.
enum Command {
    /// Start a request; `key` names it for [`Command::Cancel`].
    Start {
        key: u64,
        tracker: SocketAddr,
        job: Job,
        reply: oneshot::Sender<Reply>,
    },
    /// The caller gave up on request `key`.
    Cancel(u64),
}

/// The handle to the UDP task; dropping it ends the task and closes the sockets.
pub(super) struct UdpEngine {
    commands: mpsc::UnboundedSender<Command>,
    v4: bool,
    v6: bool,
    next_key: AtomicU64,
}

impl UdpEngine {
    /// Binds the sockets and spawns the task on the current tokio runtime.
    pub(super) async fn start(config: &TrackerClientConfig) -> Result<Self, TrackerError> {
        let v4 = bind(config.bind_v4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await?;
        let v6 = bind(config.bind_v6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).await?;
        if v4.is_none() && v6.is_none() {
            return Err(TrackerError::Network(
                "no UDP socket could be bound".to_string(),
            ));
        }
        let machine = UdpTrackerClient::new(
            UdpClientConfig {
                base_timeout: config.udp_base_timeout,
                max_retries: config.udp_max_retries,
                ..UdpClientConfig::default()
            },
            rand::random(),
        );
        let (commands, rx) = mpsc::unbounded_channel();
        let engine = UdpEngine {
            commands,
            v4: v4.is_some(),
            v6: v6.is_some(),
            next_key: AtomicU64::new(0),
        };
        tokio::spawn(
            Driver {
                v4,
                v6,
                machine,
                origin: Instant::now(),
                waiting: HashMap::new(),
                keys: HashMap::new(),
            }
            .run(rx),
        );
        Ok(engine)
    }

    /// Announces to the `udp://` tracker at `url`.
    pub(super) async fn announce(
        &self,
        url: &str,
        params: &AnnounceParams,
    ) -> Result<AnnounceOutcome, TrackerError> {
        let tracker = self.resolve(url).await?;
        let job = Job::Announce(Announce {
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
            url_data: codec::url_data(url).as_bytes().to_vec(),
        });
        match self.request(tracker, job).await? {
            Outcome::Announce(a) => Ok(AnnounceOutcome {
                interval: secs(a.interval),
                min_interval: None,
                complete: Some(a.seeders),
                incomplete: Some(a.leechers),
                peers: clean_peers(a.peers),
                tracker_id: None,
                warning: None,
                external_ip: None,
            }),
            Outcome::Scrape(_) => Err(TrackerError::Protocol(
                "scrape outcome of an announce".to_string(),
            )),
        }
    }

    /// Scrapes the `udp://` tracker at `url`, [`codec::MAX_SCRAPE_HASHES`] hashes per datagram.
    pub(super) async fn scrape(
        &self,
        url: &str,
        info_hashes: &[InfoHash],
    ) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
        let tracker = self.resolve(url).await?;
        match self
            .request(tracker, Job::Scrape(info_hashes.to_vec()))
            .await?
        {
            Outcome::Scrape(stats) => Ok(stats
                .into_iter()
                .map(|(h, st)| {
                    (
                        h,
                        ScrapeStats {
                            complete: st.seeders,
                            downloaded: st.completed,
                            incomplete: st.leechers,
                        },
                    )
                })
                .collect()),
            Outcome::Announce(_) => Err(TrackerError::Protocol(
                "announce outcome of a scrape".to_string(),
            )),
        }
    }

    /// Hands `job` to the task and waits for its outcome. Dropping the future cancels it.
    async fn request(&self, tracker: SocketAddr, job: Job) -> Reply {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Start {
                key,
                tracker,
                job,
                reply,
            })
            .map_err(|_| task_ended())?;
        let mut guard = CancelOnDrop {
            commands: &self.commands,
            key: Some(key),
        };
        let result = rx.await;
        guard.key = None;
        result.map_err(|_| task_ended())?
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
            if self.has_socket_for(addr) {
                return Ok(addr);
            }
        }
        Err(match first {
            Some(addr) => TrackerError::Network(format!("no UDP socket of the family of {addr}")),
            None => TrackerError::Network(format!("{} resolved to no address", redact(url))),
        })
    }

    fn has_socket_for(&self, addr: SocketAddr) -> bool {
        match addr {
            SocketAddr::V4(_) => self.v4,
            SocketAddr::V6(_) => self.v6,
        }
    }
}

/// Tells the task that a request's caller went away, unless disarmed (`key` taken).
struct CancelOnDrop<'a> {
    commands: &'a mpsc::UnboundedSender<Command>,
    key: Option<u64>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // The task may be gone already; then there is nothing to cancel.
            let _ = self.commands.send(Command::Cancel(key));
        }
    }
}

/// Binds `configured`, or `default` when none is configured. A configured address that fails
/// is an error; a failing default is skipped (`None`).
async fn bind(
    configured: Option<SocketAddr>,
    default: SocketAddr,
) -> Result<Option<UdpSocket>, TrackerError> {
    let addr = configured.unwrap_or(default);
    match UdpSocket::bind(addr).await {
        Ok(socket) => {
            debug!(local = ?socket.local_addr().ok(), "UDP tracker socket bound");
            Ok(Some(socket))
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

/// The task's state: the sockets, the machine and who waits for which request.
struct Driver {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    machine: UdpTrackerClient,
    /// The machine's clock starts here.
    origin: Instant,
    /// Callers by request.
    waiting: HashMap<RequestId, (u64, oneshot::Sender<Reply>)>,
    /// Requests by caller key.
    keys: HashMap<u64, RequestId>,
}

impl Driver {
    /// Serves commands and datagrams until every [`UdpEngine`] handle is gone.
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf4 = vec![0u8; if self.v4.is_some() { MAX_DATAGRAM } else { 0 }];
        let mut buf6 = vec![0u8; if self.v6.is_some() { MAX_DATAGRAM } else { 0 }];
        // Sockets resting after a receive error, until then.
        let mut rest4: Option<Instant> = None;
        let mut rest6: Option<Instant> = None;
        loop {
            self.flush().await;
            let deadline = self.machine.poll_timeout().map(|t| self.instant(t));
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(command) => self.command(command),
                },
                r = recv(self.v4.as_ref(), &mut buf4, rest4) => {
                    rest4 = self.received(r, &buf4);
                }
                r = recv(self.v6.as_ref(), &mut buf6, rest6) => {
                    rest6 = self.received(r, &buf6);
                }
                () = sleep_until(deadline) => {
                    let now = self.now();
                    self.machine.handle_timeout(now);
                }
            }
        }
        trace!("UDP tracker receive task finished");
    }

    fn now(&self) -> Time {
        Time::from_duration(self.origin.elapsed())
    }

    /// The instant of machine time `t`; a year from now for times beyond the clock's range
    /// (a huge configured timeout).
    fn instant(&self, t: Time) -> Instant {
        self.origin
            .checked_add(Duration::from_micros(t.as_micros()))
            .unwrap_or_else(|| Instant::now() + FAR_FUTURE)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start {
                key,
                tracker,
                job,
                reply,
            } => {
                let now = self.now();
                let started = match job {
                    Job::Announce(a) => self.machine.announce(now, tracker, a),
                    Job::Scrape(hashes) => self.machine.scrape(now, tracker, hashes),
                };
                match started {
                    Ok(id) => {
                        self.waiting.insert(id, (key, reply));
                        self.keys.insert(key, id);
                    }
                    Err(e @ StartError::TooManyRequests) => {
                        let _ = reply.send(Err(TrackerError::Network(e.to_string())));
                    }
                }
            }
            Command::Cancel(key) => {
                if let Some(id) = self.keys.remove(&key) {
                    self.waiting.remove(&id);
                    self.machine.cancel(id);
                }
            }
        }
    }

    /// Handles what one socket received; returns until when the socket should rest.
    fn received(
        &mut self,
        received: io::Result<(usize, SocketAddr)>,
        buf: &[u8],
    ) -> Option<Instant> {
        match received {
            Ok((len, from)) => {
                let packet = buf.get(..len)?;
                let now = self.now();
                match self.machine.handle_datagram(now, from, packet) {
                    DatagramOutcome::Accepted => {}
                    DatagramOutcome::TooShort => {
                        trace!(%from, len = packet.len(), "dropping short UDP datagram");
                    }
                    DatagramOutcome::Stray { transaction_id } => {
                        trace!(%from, transaction_id, "dropping stray UDP datagram");
                    }
                }
                None
            }
            Err(e) => {
                // ICMP errors surface here on some platforms; they concern a request that will
                // time out on its own. Rest on anything else so a broken socket cannot spin.
                debug!(error = %e, "UDP tracker socket receive error");
                (!matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                ))
                .then(|| Instant::now() + RECEIVE_ERROR_PAUSE)
            }
        }
    }

    /// Sends what the machine has to send and hands finished requests to their callers.
    async fn flush(&mut self) {
        loop {
            if let Some(t) = self.machine.poll_transmit() {
                self.transmit(t).await;
                continue;
            }
            let Some(event) = self.machine.poll_event() else {
                break;
            };
            self.event(event);
        }
    }

    async fn transmit(&mut self, t: Transmit) {
        let tracker = t.destination;
        if t.phase == Phase::Connect {
            trace!(%tracker, attempt = t.attempt, transaction_id = t.transaction_id, "UDP connect");
        } else {
            trace!(%tracker, attempt = t.attempt, transaction_id = t.transaction_id, len = t.payload.len(), "UDP request");
        }
        let socket = match tracker {
            SocketAddr::V4(_) => self.v4.as_ref(),
            SocketAddr::V6(_) => self.v6.as_ref(),
        };
        let sent = match socket {
            None => Err(TrackerError::Network(format!(
                "no UDP socket of the family of {tracker}"
            ))),
            Some(socket) => socket
                .send_to(&t.payload, tracker)
                .await
                .map(drop)
                .map_err(|e| TrackerError::Network(format!("sending to {tracker}: {e}"))),
        };
        if let Err(e) = sent {
            self.machine.cancel(t.request);
            self.finish(t.request, Err(e));
        }
    }

    fn event(&mut self, event: UdpClientEvent) {
        match event {
            UdpClientEvent::Announced { id, response, .. } => {
                self.finish(id, Ok(Outcome::Announce(response)));
            }
            UdpClientEvent::Scraped { id, stats, .. } => {
                self.finish(id, Ok(Outcome::Scrape(stats)));
            }
            UdpClientEvent::Failed { id, error, .. } => self.finish(id, Err(lift(error))),
            UdpClientEvent::TimedOut {
                tracker,
                phase,
                attempt,
                ..
            } => {
                if phase == Phase::Connect {
                    debug!(%tracker, attempt, "UDP connect timed out");
                } else {
                    debug!(%tracker, attempt, "UDP request timed out");
                }
            }
            UdpClientEvent::ScrapeMismatch {
                tracker,
                asked,
                answered,
                ..
            } => debug!(
                tracker = %tracker,
                asked,
                answered,
                "UDP scrape reply has a different number of entries"
            ),
        }
    }

    /// Hands a finished request's result to its caller, if it still waits.
    fn finish(&mut self, id: RequestId, result: Reply) {
        if let Some((key, reply)) = self.waiting.remove(&id) {
            self.keys.remove(&key);
            // The caller may have given up meanwhile; nothing to do then.
            let _ = reply.send(result);
        }
    }
}

/// Receives on `socket` after its rest (if any); never completes without a socket.
async fn recv(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
    rest_until: Option<Instant>,
) -> io::Result<(usize, SocketAddr)> {
    let Some(socket) = socket else {
        return std::future::pending().await;
    };
    if let Some(until) = rest_until {
        tokio::time::sleep_until(until).await;
    }
    socket.recv_from(buf).await
}

/// Completes at `deadline`; never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A failed request as the caller sees it.
fn lift(error: RequestError) -> TrackerError {
    match error {
        RequestError::Timeout { .. } => TrackerError::Timeout,
        RequestError::Tracker(message) => TrackerError::Failure(message),
        RequestError::Malformed(e) => TrackerError::Protocol(e.to_string()),
        e @ RequestError::Unexpected { .. } => TrackerError::Protocol(e.to_string()),
    }
}

fn task_ended() -> TrackerError {
    TrackerError::Network("UDP tracker receive task ended".to_string())
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
    use webtorrent_core::Id20;

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

    #[tokio::test]
    async fn dropping_the_future_cancels_the_request() {
        // A tracker that never answers, and counts what it gets.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("udp://{}", silent.local_addr().expect("addr"));
        let engine = UdpEngine::start(&TrackerClientConfig {
            udp_base_timeout: Duration::from_millis(40),
            udp_max_retries: 3,
            bind_v6: None,
            ..TrackerClientConfig::default()
        })
        .await
        .expect("engine");
        let params = AnnounceParams::new(Id20([1; 20]), Id20([2; 20]), 6881);
        let gave_up =
            tokio::time::timeout(Duration::from_millis(20), engine.announce(&url, &params)).await;
        assert!(gave_up.is_err(), "no answer expected");
        // Unless cancelled, retransmissions would follow at 40, 120 and 280 ms.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut buf = [0u8; 64];
        let mut received = 0;
        while silent.try_recv_from(&mut buf).is_ok() {
            received += 1;
        }
        assert_eq!(received, 1, "only the first connect went out");
    }
}
