//! The command line: its commands, their options, and the parsers of option values.

#[cfg(feature = "server")]
use std::net::IpAddr;
use std::path::PathBuf;
#[cfg(feature = "server")]
use std::time::Duration;

use clap::{Parser, Subcommand};
#[cfg(feature = "server")]
use webtorrent::bridge::BridgeConfig;

#[cfg(feature = "server")]
use crate::AnyResult;

#[derive(Parser)]
#[command(
    name = "webtorrent",
    version,
    about = "Create, inspect, seed and download torrents"
)]
pub struct Cli {
    /// Print only results and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(flatten)]
    pub net: super::net::NetArgs,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a .torrent file from a file or folder.
    Create {
        /// File or folder to share.
        path: PathBuf,
        /// Tracker URL (repeatable; each becomes a tier).
        #[arg(long = "announce", short = 'a')]
        announce: Vec<String>,
        /// Piece length in bytes (power of two, 16 KiB – 64 MiB); automatic by default.
        #[arg(long)]
        piece_length: Option<u32>,
        /// Mark the torrent private (BEP 27).
        #[arg(long)]
        private: bool,
        /// Comment to embed.
        #[arg(long)]
        comment: Option<String>,
        /// An HTTP(S) server that serves the files too (BEP 19 `url-list`; repeatable): the
        /// file's URL for a single file, or the folder holding the torrent's folder.
        #[arg(long = "web-seed", value_name = "URL")]
        web_seeds: Vec<String>,
        /// Output file.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// List the torrents the state folder holds: what `seed` and `serve` start again.
    List,
    /// Forget a torrent the state folder holds (its data stays where it is).
    Remove {
        /// Its info hash (40 hex digits or 32 base32 characters), as `list` shows it.
        info_hash: String,
    },
    /// Show what a .torrent file or magnet link contains.
    Info {
        /// A .torrent file or a magnet link.
        source: String,
    },
    /// Seed a file, folder or .torrent until interrupted (SIGINT/SIGTERM), and again what
    /// the state folder holds from earlier runs (see `list`).
    Seed {
        /// A file or folder to share, or a .torrent whose data is given with --data; without
        /// it, only what the state folder holds.
        path: Option<PathBuf>,
        /// Where the data of a .torrent lives: the folder containing the torrent's name, or
        /// for a single-file torrent the file itself.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Tracker URL (repeatable).
        #[arg(long = "announce", short = 'a')]
        announce: Vec<String>,
        /// TCP listen port.
        #[arg(long)]
        port: Option<u16>,
        /// Piece length when creating the torrent.
        #[arg(long)]
        piece_length: Option<u32>,
        /// Write the created .torrent here.
        #[arg(long)]
        torrent_out: Option<PathBuf>,
        /// Upload limit in bytes per second.
        #[arg(long)]
        upload_limit: Option<u64>,
    },
    /// Download a torrent; exits 0 once every piece is verified on disk.
    Download {
        #[command(flatten)]
        fetch: FetchArgs,
        /// Keep seeding after the download completes.
        #[arg(long)]
        seed: bool,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Download limit in bytes per second.
        #[arg(long)]
        download_limit: Option<u64>,
        /// Upload limit in bytes per second (while downloading and with --seed).
        #[arg(long)]
        upload_limit: Option<u64>,
        /// Download only these files, by the numbers `webtorrent info` shows (e.g. 0,2 or
        /// 1-3); the others are not written, apart from pieces they share with these.
        #[arg(long, value_name = "LIST", value_parser = parse_indexes)]
        select: Option<Indexes>,
    },
    /// Download a torrent and serve its files over HTTP as they arrive: prints one URL per
    /// file that a media player or browser can open and seek in (Range requests) long before
    /// the download completes. Keeps serving and seeding until interrupted.
    Stream {
        /// Serve and download only this file (a number `webtorrent info` shows).
        #[arg(long)]
        file: Option<usize>,
        /// Where the HTTP server listens: ADDRESS:PORT, or a port alone for 127.0.0.1.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8001", value_parser = parse_listen)]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        fetch: FetchArgs,
    },
    /// Run a tracker (HTTP, WebSocket and UDP) and the browser page on one port, and
    /// optionally seed files through it, until interrupted (SIGINT/SIGTERM).
    #[cfg(feature = "server")]
    Serve {
        /// Files or folders to seed through this tracker.
        files: Vec<PathBuf>,
        /// Address to listen on (0.0.0.0 or :: for every interface).
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// The URL others reach this server at (http:// or https:// behind a TLS proxy); the
        /// page, tracker URLs and magnet links printed are built from it.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// Port for HTTP, WebSocket and UDP.
        #[arg(long, short = 'p', default_value_t = webtorrent::server::DEFAULT_PORT)]
        port: u16,
        /// Folder served at / (default: the page built into this binary).
        #[arg(long)]
        www: Option<PathBuf>,
        /// Do not run the UDP tracker.
        #[arg(long)]
        no_udp: bool,
        /// Announce interval for HTTP and UDP clients in seconds (WebSocket clients get a fifth).
        #[arg(long, default_value_t = 600)]
        interval: u64,
        /// Most swarms kept (the least recently announced goes first).
        #[arg(long, default_value_t = 100_000)]
        max_torrents: usize,
        /// Most peers kept in all swarms together.
        #[arg(long, default_value_t = 1_000_000)]
        max_peers: usize,
        /// TCP listen port of the seeding client.
        #[arg(long)]
        seed_port: Option<u16>,
        /// Piece length for the seeded files.
        #[arg(long)]
        piece_length: Option<u32>,
        /// Do not bridge: browsers and desktop clients then share no torrent unless someone
        /// seeds it on both sides.
        #[arg(long)]
        no_bridge: bool,
        /// Track only the torrents listed in FILE (one info hash or magnet link per line, `#`
        /// starts a comment) and the files given here; other announces get a failure reply.
        #[arg(long, value_name = "FILE")]
        allow: Option<PathBuf>,
        /// Announces one address may make per second, after a burst of 25 times that (0: no
        /// limit).
        #[arg(long, value_name = "N", default_value_t = 20)]
        announce_rate: u32,
        #[command(flatten)]
        bridge: BridgeArgs,
    },
    /// Bridge the WebRTC swarm (browsers) and the TCP swarm (desktop clients) of trackers
    /// run elsewhere, e.g. a bittorrent-tracker server, until interrupted.
    #[cfg(feature = "server")]
    Bridge {
        /// A tracker of the server to bridge (repeatable): its HTTP announce URL and/or its
        /// WebSocket URL (the other is derived when only one is given).
        #[arg(long = "tracker", short = 't', value_name = "URL", required = true)]
        trackers: Vec<String>,
        /// Address the bridge's peers listen on.
        #[arg(long, default_value = "0.0.0.0")]
        host: IpAddr,
        /// TCP listen port of the bridge's peers.
        #[arg(long)]
        port: Option<u16>,
        /// How often to ask the tracker for its torrents, in seconds.
        #[arg(long, default_value_t = 10)]
        scan_interval: u64,
        #[command(flatten)]
        bridge: BridgeArgs,
    },
    /// `serve` and `bridge` in a build without the `server` feature: an error saying so.
    #[cfg(not(feature = "server"))]
    #[command(
        name = "serve",
        alias = "bridge",
        hide = true,
        disable_help_flag = true
    )]
    NoServer {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// What `download` and `stream` fetch and from where.
#[derive(clap::Args)]
pub struct FetchArgs {
    /// A magnet link, .torrent file or info hash.
    pub source: String,
    /// Folder the files are written to.
    #[arg(short = 'o', long = "out", default_value = ".")]
    pub out: PathBuf,
    /// Tracker URL (repeatable), in addition to the torrent's own.
    #[arg(long = "announce", short = 'a')]
    pub announce: Vec<String>,
    /// TCP listen port for peers.
    #[arg(long)]
    pub port: Option<u16>,
    /// Connect to this peer directly (repeatable), e.g. 127.0.0.1:6881.
    #[arg(long = "peer")]
    pub peers: Vec<std::net::SocketAddr>,
}

/// The bridge's bounds, shared by `serve` and `bridge`.
#[cfg(feature = "server")]
#[derive(clap::Args)]
pub struct BridgeArgs {
    /// Where bridged torrents live (default: the user's cache folder, webtorrent/bridge).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Most torrents bridged at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub bridge_max_torrents: usize,
    /// Disk for all bridged torrents together: bytes, or with a unit (500M, 10G, 2TiB).
    #[arg(long, value_name = "BYTES", default_value = "10G", value_parser = parse_size)]
    pub bridge_max_bytes: u64,
    /// Drop a bridged torrent nobody has wanted for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub bridge_idle: u64,
}

#[cfg(feature = "server")]
impl BridgeArgs {
    pub fn config(&self) -> AnyResult<BridgeConfig> {
        let data_dir = match &self.data {
            Some(d) if d.is_file() => {
                return Err(format!(
                    "--data {} is a file; the bridge needs a folder to keep torrents in (pass a folder, it is created when missing)",
                    d.display()
                )
                .into())
            }
            Some(d) => d.clone(),
            None => webtorrent::bridge::default_data_dir(),
        };
        Ok(BridgeConfig {
            data_dir,
            max_torrents: self.bridge_max_torrents.max(1),
            max_bytes: self.bridge_max_bytes,
            idle: Duration::from_secs(self.bridge_idle.max(1)),
            ..BridgeConfig::default()
        })
    }
}

/// File numbers given on the command line.
#[derive(Debug, Clone)]
pub struct Indexes(pub Vec<usize>);

/// File numbers: `0,2,5` or ranges such as `1-3`, as `webtorrent info` numbers them.
pub fn parse_indexes(s: &str) -> Result<Indexes, String> {
    let bad =
        || format!("{s:?}: give file numbers as `webtorrent info` shows them, e.g. 0,2 or 1-3");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a || b - a > 1_000_000 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(Indexes(out))
}

/// A listen address: `HOST:PORT`, `localhost:PORT` or a port alone (on 127.0.0.1).
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{Ipv4Addr, SocketAddr};
    let t = s.trim();
    if let Ok(port) = t.trim_start_matches(':').parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Some(port) = t.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
    }
    t.parse().map_err(|_| {
        format!(
            "{s:?} is not an address to listen on; write e.g. 127.0.0.1:8001, [::1]:8001 or 8001"
        )
    })
}

/// A byte count: digits, optionally followed by a unit (K, M, G, T, with or without `iB`/`B`,
/// all binary).
#[cfg(feature = "server")]
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. 1073741824, 500M or 10G"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{s:?}: unknown unit; use K, M, G or T (e.g. 10G)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    #[cfg(feature = "server")]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2 TiB"), Ok(2 << 40));
        assert_eq!(parse_size("7kb"), Ok(7 << 10));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
