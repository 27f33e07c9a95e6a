//! Async tracker clients: HTTP(S) announce and scrape (BEP 3, 7, 23, 48) and UDP (BEP 15, 41).
//!
//! One [`TrackerClient`] serves every torrent of a WebTorrent client. It is cheap to clone; all
//! clones share one HTTP connection pool and one set of UDP sockets. The message formats come
//! from [`webtorrent_core::tracker`]; this module only moves bytes, keeps time and maps errors.
//!
//! * **HTTP(S)**: a `GET` of the announce URL with the request appended as a query
//!   (`compact=1`), a 2xx status required, the body read up to
//!   [`TrackerClientConfig::max_response_bytes`] and decoded by the core. Scrapes go to the
//!   BEP 48 scrape URL derived from the announce URL.
//! * **UDP**: a background task owns one IPv4 and (when available) one IPv6 socket and drives
//!   the core's [`UdpTrackerClient`](webtorrent_core::tracker::UdpTrackerClient), which routes
//!   each reply to its request by transaction id and source, caches connection ids per tracker
//!   address for a minute and retransmits after `base * 2^n`. The task ends when the last
//!   clone of the client is dropped.
//!
//! WebSocket trackers (`ws://`, `wss://`) are not handled here.

mod http;
pub(crate) use http::ensure_crypto_provider;
mod udp;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;
use webtorrent_core::announce::{AnnounceJob, Scheme, TrackerFailure, TrackerReply};
use webtorrent_core::tracker::udp_client::UdpClientConfig;
use webtorrent_core::tracker::{Event, MAX_PEERS};
use webtorrent_core::{InfoHash, PeerId};

/// Most retransmissions accepted in [`TrackerClientConfig::udp_max_retries`] (BEP 15: n goes
/// up to 8).
pub const MAX_UDP_RETRIES: u32 = 8;

/// Interval reported when an HTTP tracker states neither `interval` nor `min interval` (30 min,
/// as bittorrent-tracker and libtorrent assume).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Tuning of a [`TrackerClient`].
///
/// Zero durations are raised to 1 ms, a zero `max_response_bytes` to 1 byte, and
/// `udp_max_retries` is capped at [`MAX_UDP_RETRIES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerClientConfig {
    /// Whole-request limit of an HTTP(S) announce or scrape: connect, send and read the body
    /// (default 15 s).
    pub http_timeout: Duration,
    /// Wait for the first UDP reply before retransmitting; doubles after every retransmission
    /// (default: core's `UdpClientConfig` default, 4 s).
    pub udp_base_timeout: Duration,
    /// Retransmissions of a UDP request before giving up with [`TrackerError::Timeout`]
    /// (default: core's, 2, so 28 s in all, inside the announcer's 30 s `request_timeout`).
    pub udp_max_retries: u32,
    /// Largest HTTP response body accepted, in bytes (default 2 MiB).
    pub max_response_bytes: usize,
    /// `User-Agent` of HTTP requests.
    pub user_agent: String,
    /// Local address of the IPv4 UDP socket (default `0.0.0.0:0`).
    pub bind_v4: Option<SocketAddr>,
    /// Local address of the IPv6 UDP socket (default `[::]:0`, skipped silently when IPv6 is
    /// unavailable; an explicit address that cannot be bound is an error).
    pub bind_v6: Option<SocketAddr>,
}

impl Default for TrackerClientConfig {
    fn default() -> Self {
        TrackerClientConfig {
            http_timeout: Duration::from_secs(15),
            udp_base_timeout: UdpClientConfig::default().base_timeout,
            udp_max_retries: UdpClientConfig::default().max_retries,
            max_response_bytes: 2 * 1024 * 1024,
            user_agent: concat!("webtorrent-rs/", env!("CARGO_PKG_VERSION")).to_string(),
            bind_v4: None,
            bind_v6: None,
        }
    }
}

impl TrackerClientConfig {
    fn sanitized(mut self) -> Self {
        const MS: Duration = Duration::from_millis(1);
        self.http_timeout = self.http_timeout.max(MS);
        self.udp_base_timeout = self.udp_base_timeout.max(MS);
        self.udp_max_retries = self.udp_max_retries.min(MAX_UDP_RETRIES);
        self.max_response_bytes = self.max_response_bytes.max(1);
        self
    }
}

/// Everything that can go wrong talking to a tracker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The tracker refused the request: its `failure reason` (HTTP) or error message (UDP).
    #[error("tracker failure: {0}")]
    Failure(String),
    /// No reply in time (HTTP timeout, or every UDP retransmission unanswered).
    #[error("tracker did not answer in time")]
    Timeout,
    /// The tracker could not be reached: DNS, connect, TLS, socket errors.
    #[error("network error: {0}")]
    Network(String),
    /// The HTTP tracker answered with a status other than 2xx.
    #[error("HTTP status {0}")]
    Http(u16),
    /// The reply could not be understood (malformed, unexpected or too large).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The URL's scheme is not `http`, `https` or `udp`.
    #[error("unsupported tracker scheme `{0}`")]
    UnsupportedScheme(String),
    /// The URL is malformed (no host, no UDP port, …).
    #[error("invalid tracker URL: {0}")]
    InvalidUrl(String),
    /// The HTTP announce URL has no scrape URL by the BEP 48 convention.
    #[error("tracker does not support scrape")]
    ScrapeUnsupported,
    /// The [`TrackerClientConfig`] cannot be used (a bind address of the wrong family, TLS
    /// set-up failed).
    #[error("invalid tracker client configuration: {0}")]
    Config(String),
}

impl From<&TrackerError> for TrackerFailure {
    /// The announcer's view: refusals and timeouts stay distinct, everything else is a network
    /// problem.
    fn from(e: &TrackerError) -> Self {
        match e {
            TrackerError::Failure(reason) => TrackerFailure::Failure(reason.clone()),
            TrackerError::Timeout => TrackerFailure::Timeout,
            other => TrackerFailure::Network(other.to_string()),
        }
    }
}

/// The parameters of one announce, for any transport. HTTP announces always ask for compact
/// peer lists (`compact=1`, BEP 23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we accept peer connections on.
    pub port: u16,
    /// Bytes uploaded this session.
    pub uploaded: u64,
    /// Bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes still missing (0 for a seed).
    pub left: u64,
    /// `None` for a regular announce.
    pub event: Option<Event>,
    /// Peers wanted; `None` leaves it to the tracker.
    pub numwant: Option<u32>,
    /// The per-torrent random key (sent as 8 upper-case hex digits over HTTP, as libtorrent
    /// does; as a number over UDP).
    pub key: u32,
    /// The `tracker id` from an earlier reply of this tracker (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

impl AnnounceParams {
    /// A regular announce with zero counters, tracker-chosen `numwant` and key 0.
    pub fn new(info_hash: InfoHash, peer_id: PeerId, port: u16) -> Self {
        AnnounceParams {
            info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: None,
            numwant: None,
            key: 0,
            tracker_id: None,
        }
    }

    /// The parameters for a job of the core's announcer.
    pub fn from_job(job: &AnnounceJob, info_hash: InfoHash, peer_id: PeerId, port: u16) -> Self {
        AnnounceParams {
            info_hash,
            peer_id,
            port,
            uploaded: job.uploaded,
            downloaded: job.downloaded,
            left: job.left,
            event: job.event.tracker_event(),
            numwant: Some(job.numwant),
            key: job.key,
            tracker_id: job.tracker_id.clone(),
        }
    }
}

/// A successful announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceOutcome {
    /// Time until the next regular announce. When an HTTP tracker leaves the (required)
    /// `interval` out, its `min interval` is used, or else [`DEFAULT_INTERVAL`].
    pub interval: Duration,
    /// Shortest time until the next announce (HTTP `min interval`).
    pub min_interval: Option<Duration>,
    /// Seeders.
    pub complete: Option<u32>,
    /// Leechers.
    pub incomplete: Option<u32>,
    /// Peers of both families in the order sent, without duplicates and without port 0;
    /// IPv4-mapped IPv6 addresses are turned into IPv4 ones.
    pub peers: Vec<SocketAddr>,
    /// `tracker id` to send back from now on (HTTP).
    pub tracker_id: Option<Vec<u8>>,
    /// `warning message` (HTTP).
    pub warning: Option<String>,
    /// BEP 24 `external ip`: our address as the tracker sees it (HTTP).
    pub external_ip: Option<IpAddr>,
}

impl AnnounceOutcome {
    /// The reply in the form the core's announcer takes.
    pub fn to_reply(&self) -> TrackerReply {
        TrackerReply {
            interval: Some(self.interval),
            min_interval: self.min_interval,
            complete: self.complete,
            incomplete: self.incomplete,
            peers_count: self.peers.len(),
            tracker_id: self.tracker_id.clone(),
            warning: self.warning.clone(),
        }
    }
}

/// Swarm counters of one torrent from a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads the tracker has seen.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Client for HTTP, HTTPS and UDP trackers; clones share one state.
#[derive(Clone)]
pub struct TrackerClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: TrackerClientConfig,
    http: reqwest::Client,
    /// Started on first UDP use (that needs a tokio runtime); dropping it ends the task.
    /// `Err(())` once [`TrackerClient::close`] was called.
    udp: tokio::sync::Mutex<Result<Option<Arc<udp::UdpEngine>>, ()>>,
}

impl fmt::Debug for TrackerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackerClient")
            .field("config", &self.inner.config)
            .field(
                "udp_started",
                &matches!(self.inner.udp.try_lock().as_deref(), Ok(Ok(Some(_)))),
            )
            .finish_non_exhaustive()
    }
}

impl TrackerClient {
    /// A client with `config`. No socket is opened until the first UDP request.
    ///
    /// HTTPS uses rustls; when the process has no default rustls crypto provider yet, the
    /// `ring` provider is installed as the default, and certificates are checked against the
    /// platform's trust store.
    pub fn new(config: TrackerClientConfig) -> Result<Self, TrackerError> {
        let config = config.sanitized();
        if let Some(a) = config.bind_v4.filter(SocketAddr::is_ipv6) {
            return Err(TrackerError::Config(format!(
                "bind_v4 is an IPv6 address: {a}"
            )));
        }
        if let Some(a) = config.bind_v6.filter(SocketAddr::is_ipv4) {
            return Err(TrackerError::Config(format!(
                "bind_v6 is an IPv4 address: {a}"
            )));
        }
        let http = http::build_client(&config)?;
        Ok(TrackerClient {
            inner: Arc::new(Inner {
                config,
                http,
                udp: tokio::sync::Mutex::new(Ok(None)),
            }),
        })
    }

    /// The configuration in use (after sanitizing).
    pub fn config(&self) -> &TrackerClientConfig {
        &self.inner.config
    }

    /// Whether `url` has a scheme this client speaks: `http`, `https` or `udp`.
    pub fn supports(url: &str) -> bool {
        matches!(
            Scheme::of(url),
            Some(Scheme::Http | Scheme::Https | Scheme::Udp)
        )
    }

    /// Announces to the tracker at `url` and returns its reply.
    pub async fn announce(
        &self,
        url: &str,
        params: &AnnounceParams,
    ) -> Result<AnnounceOutcome, TrackerError> {
        let url = url.trim();
        let tracker = redact(url);
        debug!(
            %tracker,
            info_hash = %params.info_hash.to_hex(),
            event = params.event.map_or("none", Event::as_str),
            left = params.left,
            numwant = ?params.numwant,
            "announce"
        );
        let result = match scheme_of(url)? {
            Scheme::Http | Scheme::Https => {
                http::announce(
                    &self.inner.http,
                    self.inner.config.max_response_bytes,
                    url,
                    params,
                )
                .await
            }
            Scheme::Udp => self.udp().await?.announce(url, params).await,
            other => Err(TrackerError::UnsupportedScheme(other.as_str().to_string())),
        };
        match &result {
            Ok(o) => debug!(
                %tracker,
                info_hash = %params.info_hash.to_hex(),
                interval = ?o.interval,
                complete = ?o.complete,
                incomplete = ?o.incomplete,
                peers = o.peers.len(),
                warning = ?o.warning,
                "announce succeeded"
            ),
            Err(e) => debug!(
                %tracker,
                info_hash = %params.info_hash.to_hex(),
                error = %e,
                "announce failed"
            ),
        }
        result
    }

    /// Scrapes the tracker at `url` (an announce URL) for `info_hashes`.
    ///
    /// Returns the counters of the torrents the tracker reported, in the order asked; a torrent
    /// it does not know is left out. An empty `info_hashes` returns an empty list without
    /// contacting the tracker. Long lists are split over several requests.
    pub async fn scrape(
        &self,
        url: &str,
        info_hashes: &[InfoHash],
    ) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
        let url = url.trim();
        let tracker = redact(url);
        let scheme = scheme_of(url)?;
        if info_hashes.is_empty() {
            return Ok(Vec::new());
        }
        debug!(%tracker, torrents = info_hashes.len(), "scrape");
        let result = match scheme {
            Scheme::Http | Scheme::Https => {
                http::scrape(
                    &self.inner.http,
                    self.inner.config.max_response_bytes,
                    url,
                    info_hashes,
                )
                .await
            }
            Scheme::Udp => self.udp().await?.scrape(url, info_hashes).await,
            other => Err(TrackerError::UnsupportedScheme(other.as_str().to_string())),
        };
        match &result {
            Ok(stats) => debug!(%tracker, answered = stats.len(), "scrape succeeded"),
            Err(e) => debug!(%tracker, error = %e, "scrape failed"),
        }
        result
    }

    /// Asks an HTTP(S) tracker for every torrent it lists (a scrape without `info_hash`).
    pub async fn scrape_all(
        &self,
        url: &str,
    ) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
        let url = url.trim();
        match scheme_of(url)? {
            Scheme::Http | Scheme::Https => {
                http::scrape_all(&self.inner.http, self.inner.config.max_response_bytes, url).await
            }
            other => Err(TrackerError::UnsupportedScheme(other.as_str().to_string())),
        }
    }

    async fn udp(&self) -> Result<Arc<udp::UdpEngine>, TrackerError> {
        let mut slot = self.inner.udp.lock().await;
        match &mut *slot {
            Err(()) => Err(TrackerError::Network(
                "the tracker client was closed".to_string(),
            )),
            Ok(Some(engine)) => Ok(engine.clone()),
            Ok(engine @ None) => {
                let e = Arc::new(udp::UdpEngine::start(&self.inner.config).await?);
                *engine = Some(e.clone());
                Ok(e)
            }
        }
    }

    /// Closes the UDP sockets (once the requests still using them end) and refuses further
    /// UDP requests; HTTP requests keep working. For shutting a client down without waiting
    /// for the last clone of this handle to be dropped.
    pub async fn close(&self) {
        *self.inner.udp.lock().await = Err(());
    }
}

/// The scheme of `url`, or the matching error.
fn scheme_of(url: &str) -> Result<Scheme, TrackerError> {
    if let Some(s) = Scheme::of(url) {
        return Ok(s);
    }
    match url.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !rest.is_empty() => {
            let scheme: String = scheme.chars().take(32).collect();
            Err(TrackerError::UnsupportedScheme(scheme))
        }
        _ => Err(TrackerError::InvalidUrl(format!(
            "`{}` is not an absolute URL",
            redact(url)
        ))),
    }
}

/// `scheme://host[:port]` of a URL, for logs and errors: no user info, path, query or fragment,
/// where private trackers keep their passkeys. At most 200 characters.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, _) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut out = String::with_capacity(scheme.len() + 3 + host.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(host);
    out.chars().take(200).collect()
}

/// Peers in order without duplicates or port 0; IPv4-mapped IPv6 addresses become IPv4.
fn clean_peers(peers: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for addr in peers.into_iter().take(2 * MAX_PEERS) {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if addr.port() != 0 && seen.insert(addr) {
            out.push(addr);
        }
    }
    out
}

/// `secs` seconds.
fn secs(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_keeps_only_the_origin() {
        assert_eq!(
            redact("https://user:pw@t.example:8443/a/PASSKEY/announce?pk=1#f"),
            "https://t.example:8443"
        );
        assert_eq!(redact("udp://[::1]:6969/announce"), "udp://[::1]:6969");
        assert_eq!(redact("t.example/announce"), "t.example");
        assert_eq!(redact("http://h?passkey=x"), "http://h");
    }

    #[test]
    fn scheme_errors() {
        assert_eq!(scheme_of("HTTP://x/announce"), Ok(Scheme::Http));
        assert_eq!(
            scheme_of("magnet://x"),
            Err(TrackerError::UnsupportedScheme("magnet".into()))
        );
        assert!(matches!(
            scheme_of("not a url"),
            Err(TrackerError::InvalidUrl(_))
        ));
        assert!(matches!(
            scheme_of("udp://"),
            Err(TrackerError::InvalidUrl(_))
        ));
    }

    #[test]
    fn peers_are_cleaned() {
        let a: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:5".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:6".parse().unwrap();
        let zero: SocketAddr = "5.6.7.8:0".parse().unwrap();
        assert_eq!(clean_peers([a, mapped, zero, b, a]), vec![a, b]);
    }

    #[test]
    fn config_is_sanitized_and_checked() {
        let c = TrackerClientConfig {
            http_timeout: Duration::ZERO,
            udp_base_timeout: Duration::ZERO,
            udp_max_retries: 100,
            max_response_bytes: 0,
            ..TrackerClientConfig::default()
        }
        .sanitized();
        assert_eq!(c.http_timeout, Duration::from_millis(1));
        assert_eq!(c.udp_max_retries, MAX_UDP_RETRIES);
        assert_eq!(c.max_response_bytes, 1);
        let bad = TrackerClientConfig {
            bind_v4: Some("[::1]:0".parse().unwrap()),
            ..TrackerClientConfig::default()
        };
        assert!(matches!(
            TrackerClient::new(bad),
            Err(TrackerError::Config(_))
        ));
    }
}
