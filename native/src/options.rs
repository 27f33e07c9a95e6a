//! Client options.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use webtorrent_core::PeerId;

/// Default of [`WebTorrentOptions::memory_limit`]: 2 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 2 << 30;

/// `n` bytes for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Settings of a [`WebTorrent`](crate::WebTorrent) client.
#[derive(Debug, Clone)]
pub struct WebTorrentOptions {
    /// Our peer id; random with the `-WR0001-` prefix when `None`.
    pub peer_id: Option<PeerId>,
    /// TCP listen port. `None`: try 6881–6889, then any free port. `Some(0)`: any free port.
    /// The port announced to trackers is always the one actually bound.
    pub port: Option<u16>,
    /// Address to listen on (default: all IPv4 interfaces).
    pub listen_address: IpAddr,
    /// Most connections per torrent.
    pub max_connections: usize,
    /// Where downloads are stored; `None` keeps them in memory.
    pub download_dir: Option<PathBuf>,
    /// Upload limit in bytes per second (`None`: unlimited).
    pub upload_limit: Option<u64>,
    /// Download limit in bytes per second (`None`: unlimited).
    pub download_limit: Option<u64>,
    /// Use trackers (HTTP and UDP).
    pub trackers: bool,
    /// Exchange peers with peers (BEP 11).
    pub pex: bool,
    /// Accept incoming connections.
    pub incoming: bool,
    /// How long `destroy()` and `remove()` wait for `stopped` announces.
    pub stop_timeout: Duration,
    /// Local address for UDP tracker sockets (default: unspecified).
    pub udp_bind: Option<std::net::SocketAddr>,
    /// Run a DHT node (BEP 5) on UDP at the listen address and port, bootstrapped from these
    /// settings' nodes, and announce every public torrent to it. `None`: no DHT.
    pub dht: Option<crate::dht::DhtOptions>,
    /// Message stream encryption (MSE/PE) on TCP peer connections (default
    /// [`Encryption::Prefer`](crate::Encryption::Prefer)).
    pub encryption: crate::Encryption,
    /// uTP (BEP 29) beside TCP on the listen port's number, UDP (default on): incoming uTP
    /// connections are accepted, and outgoing ones try uTP first, with TCP if it is not
    /// answered within half a second.
    pub utp: bool,
    /// Ask the home router to forward the listen port (TCP and UDP) by PCP, NAT-PMP and
    /// UPnP IGD, renew it while the client runs and remove it on
    /// [`destroy`](crate::WebTorrent::destroy); the port the router maps is the one
    /// announced. `None` (the default): no mapping.
    pub port_mapping: Option<crate::PortMappingOptions>,
    /// Fast resume: for each torrent stored in files, its verified pieces and the files' sizes
    /// and modification times are kept in this folder (every few seconds while pieces
    /// arrive, and when it stops), and a torrent added again with the same files starts
    /// without hashing them (only files changed since are checked). `None`: every piece of
    /// existing data is hashed on add.
    pub resume_dir: Option<PathBuf>,
    /// Seed for the state machines' random choices; random when `None`.
    pub rng_seed: Option<u64>,
    /// Join WebRTC swarms through WebSocket trackers (`ws://`) listed by torrents, beside TCP.
    /// Needs the crate's `webrtc` feature: defaults to `true` with it and `false` without it,
    /// where [`WebTorrent::new`](crate::WebTorrent::new) refuses `true` (and `ws://` trackers
    /// are skipped).
    pub webrtc: bool,
    /// Bytes of whole pieces each torrent keeps in memory for uploading (at least two
    /// pieces); `None`: the core's default (8 MiB). A server with many torrents (the bridge)
    /// wants less.
    pub upload_cache_bytes: Option<usize>,
    /// Largest torrent downloaded into memory when there is no `download_dir` (default
    /// [`DEFAULT_MEMORY_LIMIT`]); a larger one is refused with an error saying so. Memory is
    /// taken as pieces arrive, never from the length a torrent declares.
    pub memory_limit: u64,
    /// WebSocket-tracker signaling settings (offers per announce, timeouts, reconnect
    /// delays); `None`: bittorrent-tracker's client defaults. Only with the `webrtc` feature.
    #[cfg(feature = "webrtc")]
    pub signal: Option<webtorrent_core::signal::Config>,
    /// WebRTC settings; `None` derives them from `listen_address` (a loopback listen address
    /// binds ICE to loopback only, any other address binds every interface plus loopback; see [`RtcConfig::loopback`](crate::rtc::RtcConfig::loopback)).
    /// Only with the `webrtc` feature.
    #[cfg(feature = "webrtc")]
    pub rtc: Option<crate::rtc::RtcConfig>,
}

#[cfg(feature = "webrtc")]
impl WebTorrentOptions {
    /// The WebRTC settings in effect.
    pub fn rtc_config(&self) -> crate::rtc::RtcConfig {
        match &self.rtc {
            Some(c) => c.clone(),
            None if self.listen_address.is_loopback() => crate::rtc::RtcConfig::loopback(),
            None => {
                // Every interface, plus loopback explicitly (a wildcard bind leaves it out):
                // peers on the same host, and hosts whose only interface is loopback.
                let mut c = crate::rtc::RtcConfig::default();
                c.bind_addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
                c
            }
        }
    }
}

impl Default for WebTorrentOptions {
    fn default() -> Self {
        WebTorrentOptions {
            peer_id: None,
            port: None,
            listen_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_connections: 55,
            download_dir: None,
            upload_limit: None,
            download_limit: None,
            trackers: true,
            pex: true,
            incoming: true,
            stop_timeout: Duration::from_secs(5),
            udp_bind: None,
            dht: None,
            encryption: crate::Encryption::default(),
            utp: true,
            port_mapping: None,
            resume_dir: None,
            rng_seed: None,
            webrtc: cfg!(feature = "webrtc"),
            #[cfg(feature = "webrtc")]
            rtc: None,
            upload_cache_bytes: None,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            #[cfg(feature = "webrtc")]
            signal: None,
        }
    }
}

/// The folder kept between runs (the DHT's routing table): `$XDG_DATA_HOME/webtorrent`, else
/// `~/.local/share/webtorrent`; `None` without a home folder.
pub fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
        })
        .map(|d| d.join("webtorrent"))
}
