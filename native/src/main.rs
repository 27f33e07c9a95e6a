//! The `webtorrent` command: create, inspect, seed and download torrents, and serve a tracker
//! with the browser page. Without the crate's `server` feature, `serve` and `bridge` only say
//! that they need it; without `webrtc` peers are reached over TCP only.

use std::io::IsTerminal;
#[cfg(feature = "server")]
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
#[cfg(feature = "server")]
use webtorrent::bridge::{Bridge, BridgeConfig, BridgeSource};
use webtorrent::core::magnet::Magnet;
use webtorrent::core::metainfo::Metainfo;
#[cfg(feature = "server")]
use webtorrent::server;
mod cli;

use webtorrent::{
    AddOptions, Torrent, TorrentCreator, TorrentSource, WebTorrent, WebTorrentOptions,
};

/// `println!` that ignores a closed stdout (e.g. a pipe whose reader went away) instead of
/// panicking: the command's work matters more than its report.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "webtorrent",
    version,
    about = "Create, inspect, seed and download torrents"
)]
struct Cli {
    /// Print only results and errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(flatten)]
    net: cli::net::NetArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
struct FetchArgs {
    /// A magnet link, .torrent file or info hash.
    source: String,
    /// Folder the files are written to.
    #[arg(short = 'o', long = "out", default_value = ".")]
    out: PathBuf,
    /// Tracker URL (repeatable), in addition to the torrent's own.
    #[arg(long = "announce", short = 'a')]
    announce: Vec<String>,
    /// TCP listen port for peers.
    #[arg(long)]
    port: Option<u16>,
    /// Connect to this peer directly (repeatable), e.g. 127.0.0.1:6881.
    #[arg(long = "peer")]
    peers: Vec<std::net::SocketAddr>,
}

/// The bridge's bounds, shared by `serve` and `bridge`.
#[cfg(feature = "server")]
#[derive(clap::Args)]
struct BridgeArgs {
    /// Where bridged torrents live (default: the user's cache folder, webtorrent/bridge).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Most torrents bridged at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    bridge_max_torrents: usize,
    /// Disk for all bridged torrents together: bytes, or with a unit (500M, 10G, 2TiB).
    #[arg(long, value_name = "BYTES", default_value = "10G", value_parser = parse_size)]
    bridge_max_bytes: u64,
    /// Drop a bridged torrent nobody has wanted for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    bridge_idle: u64,
}

#[cfg(feature = "server")]
impl BridgeArgs {
    fn config(&self) -> AnyResult<BridgeConfig> {
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
struct Indexes(Vec<usize>);

/// File numbers: `0,2,5` or ranges such as `1-3`, as `webtorrent info` numbers them.
fn parse_indexes(s: &str) -> Result<Indexes, String> {
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
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
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
fn parse_size(s: &str) -> Result<u64, String> {
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

/// Keeps glibc from returning the 256 KiB connection read buffers and piece buffers to the
/// kernel between uses: with its default (adaptive) thresholds they are often `mmap`ed and
/// unmapped, or trimmed off the heap, and every reuse page-faults and zeroes them again.
/// A long-running server (`serve`, `bridge`) holding many torrents keeps memory low instead:
/// two malloc arenas and the default trimming.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator(server: bool) {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        if server {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        } else {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator(_server: bool) {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "server")]
    let server = matches!(cli.cmd, Cmd::Serve { .. } | Cmd::Bridge { .. });
    #[cfg(not(feature = "server"))]
    let server = false;
    tune_allocator(server);
    // Our crates' warnings, not those of dependencies (webrtc-rs warns about routine ICE and
    // SCTP events); RUST_LOG overrides it all.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        if cli.quiet {
            "error".into()
        } else {
            "error,webtorrent=warn,webtorrent_core=warn".into()
        }
    });
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn run(cli: Cli) -> AnyResult<()> {
    listen_for_signals();
    let quiet = cli.quiet;
    let net = cli.net;
    match cli.cmd {
        Cmd::Create {
            path,
            announce,
            piece_length,
            private,
            comment,
            web_seeds,
            output,
        } => {
            check_web_seeds(&web_seeds)?;
            let mut c = TorrentCreator::new()
                .with_announce(announce)
                .with_url_list(web_seeds)
                .with_private(private);
            if let Some(pl) = piece_length {
                c = c.with_piece_length(pl);
            }
            if let Some(cm) = comment {
                c = c.with_comment(cm);
            }
            let t = hash_with_progress(c, &path, quiet).await?;
            std::fs::write(&output, &t.torrent_file)?;
            say!("{}", t.info_hash.to_hex());
            if !quiet {
                eprintln!(
                    "wrote {} ({} pieces of {} bytes)",
                    output.display(),
                    t.metainfo.info.num_pieces(),
                    t.metainfo.info.piece_length()
                );
            }
        }
        Cmd::Info { source } => info(&source)?,
        Cmd::List => {
            let Some(dir) = net.resume_dir()? else {
                return Err("no state folder: give one with --state DIR".into());
            };
            let saved = webtorrent::saved_torrents(&dir);
            if saved.is_empty() && !quiet {
                eprintln!("the state folder {} holds no torrent", dir.display());
            }
            for t in saved {
                let data = match &t.save_path {
                    Some(p) if p.join(&t.name).exists() => p.display().to_string(),
                    Some(p) => format!("{} (data gone)", p.display()),
                    None => "(no data folder recorded)".to_string(),
                };
                say!(
                    "{}  {:>5.1} %  {:>10}  {}  {}",
                    t.info_hash.to_hex(),
                    f64::from(t.pieces_had) * 100.0 / f64::from(t.num_pieces.max(1)),
                    webtorrent::human_bytes(t.length),
                    t.name,
                    data
                );
            }
        }
        Cmd::Remove { info_hash } => {
            let Some(dir) = net.resume_dir()? else {
                return Err("no state folder: give one with --state DIR".into());
            };
            let ih = webtorrent::InfoHash::from_hex_or_base32(info_hash.trim()).map_err(|_| {
                format!(
                    "{info_hash}: not an info hash; give the 40 hex digits `webtorrent list` shows"
                )
            })?;
            if webtorrent::forget_torrent(&dir, ih)? {
                if !quiet {
                    eprintln!("forgot {} (its data was left where it is)", ih.to_hex());
                }
            } else {
                return Err(format!(
                    "the state folder {} holds no torrent {}; `webtorrent list` shows what it holds",
                    dir.display(),
                    ih.to_hex()
                )
                .into());
            }
        }
        Cmd::Seed {
            path,
            data,
            announce,
            port,
            piece_length,
            torrent_out,
            upload_limit,
        } => {
            let client = WebTorrent::new(
                net.client_options(WebTorrentOptions {
                    upload_limit,
                    ..options(port, None)
                })
                .await?,
            )
            .await?;
            let Some(path) = path else {
                // Only what the state folder holds.
                graceful_from_now();
                let restored = client.restore(None).await;
                if restored.is_empty() {
                    client.destroy().await?;
                    return Err(format!(
                        "nothing to seed: give a file, folder or .torrent; the state folder ({}) holds no torrent whose data is still there",
                        net.state_dir()?.map_or_else(|| "none".to_string(), |d| d.display().to_string())
                    )
                    .into());
                }
                for t in &restored {
                    say!("{}", t.magnet_uri());
                    say!("{}", t.info_hash().to_hex());
                }
                if !quiet {
                    eprintln!(
                        "seeding {} torrents from the state folder on port {} (Ctrl+C to stop)",
                        restored.len(),
                        client.port()
                    );
                }
                wait_for_signal().await;
                client.destroy().await?;
                return Ok(());
            };
            let is_torrent = path.extension().is_some_and(|e| e == "torrent");
            let torrent = if is_torrent {
                // The folder holding the torrent's content, or a single-file torrent's file.
                let given = data.is_some();
                let data = data
                    .or_else(|| {
                        path.parent()
                            .filter(|p| !p.as_os_str().is_empty())
                            .map(Path::to_path_buf)
                    })
                    .unwrap_or_else(|| PathBuf::from("."));
                client
                    .seed_existing(
                        TorrentSource::Path(path.clone()),
                        &data,
                        AddOptions {
                            announce,
                            ..AddOptions::default()
                        },
                    )
                    .await
                    .map_err(|e| match e {
                        webtorrent::Error::Data(m) if given => format!("--data: {m}"),
                        webtorrent::Error::Data(m) => {
                            format!("{m}; give the data's folder (or file) with --data")
                        }
                        e => e.to_string(),
                    })?
            } else {
                let mut c = TorrentCreator::new().with_announce(announce);
                if let Some(pl) = piece_length {
                    c = c.with_piece_length(pl);
                }
                let counter = Arc::new(AtomicU64::new(0));
                let bar = progress_bar(
                    quiet,
                    std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                    "hashing",
                );
                let ticker = spawn_counter(bar.clone(), counter.clone());
                let t = client.seed_path(&path, c.with_progress(counter)).await;
                ticker.abort();
                bar.finish_and_clear();
                t?
            };
            // From here a signal stops cleanly (the torrent's state is written), also while
            // the state folder's other torrents start.
            graceful_from_now();
            if let (Some(out), Some(file)) = (torrent_out, torrent.torrent_file()) {
                std::fs::write(out, file)?;
            }
            say!("{}", torrent.magnet_uri());
            say!("{}", torrent.info_hash().to_hex());
            if !quiet {
                eprintln!(
                    "seeding {} on port {} (Ctrl+C to stop)",
                    torrent.name(),
                    client.port()
                );
            }
            let restored = client.restore(None).await;
            if !quiet && !restored.is_empty() {
                eprintln!(
                    "also seeding {} torrents from earlier runs (webtorrent list shows them, webtorrent remove forgets one)",
                    restored.len()
                );
            }
            let watcher = watch(torrent.clone(), quiet, false);
            wait_for_signal().await;
            watcher.abort();
            client.destroy().await?;
        }
        Cmd::Download {
            fetch:
                FetchArgs {
                    source,
                    out,
                    announce,
                    port,
                    peers,
                },
            seed,
            timeout,
            download_limit,
            upload_limit,
            select,
        } => {
            create_out_dir(&out)?;
            let client = WebTorrent::new(
                net.client_options(WebTorrentOptions {
                    download_limit,
                    upload_limit,
                    ..options(port, Some(out.clone()))
                })
                .await?,
            )
            .await?;
            let torrent = client
                .add_with(
                    source.as_str(),
                    AddOptions {
                        announce,
                        download_dir: Some(out.clone()),
                        peers,
                        select: select.clone().map(|s| s.0),
                        ..AddOptions::default()
                    },
                )
                .await?;
            let watcher = watch(torrent.clone(), quiet, true);
            let done = async {
                tokio::select! {
                    r = torrent.wait_done() => r.map_err(|e| e.to_string()),
                    _ = wait_for_signal() => Err("interrupted".to_string()),
                }
            };
            let result = match timeout {
                Some(s) => tokio::time::timeout(Duration::from_secs(s), done)
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {s} s"))),
                None => done.await,
            };
            watcher.abort();
            if let Err(e) = result {
                client.destroy().await?;
                return Err(e.into());
            }
            if !quiet {
                eprintln!(
                    "done: {} ({} bytes{}) in {}",
                    torrent.name(),
                    torrent.length(),
                    if select.is_some() {
                        ", the selected files"
                    } else {
                        ""
                    },
                    out.display()
                );
            }
            say!("{}", torrent.info_hash().to_hex());
            if seed {
                if !quiet {
                    eprintln!("seeding (Ctrl+C to stop)");
                }
                let watcher = watch(torrent.clone(), quiet, false);
                wait_for_signal().await;
                watcher.abort();
            }
            client.destroy().await?;
        }
        Cmd::Stream {
            file,
            listen,
            fetch,
        } => {
            stream(StreamArgs {
                file,
                listen,
                fetch,
                quiet,
                net,
            })
            .await?
        }
        #[cfg(feature = "server")]
        Cmd::Serve {
            files,
            host,
            public_url,
            port,
            www,
            no_udp,
            interval,
            max_torrents,
            max_peers,
            seed_port,
            piece_length,
            no_bridge,
            allow,
            announce_rate,
            bridge,
        } => {
            let bridge = if no_bridge {
                None
            } else {
                Some(bridge.config()?)
            };
            serve(ServeArgs {
                files,
                listen: SocketAddr::new(host, port),
                public_url,
                www,
                no_udp,
                interval,
                max_torrents,
                max_peers,
                seed_port,
                piece_length,
                quiet,
                bridge,
                allow,
                announce_rate,
                net,
            })
            .await?
        }
        #[cfg(feature = "server")]
        Cmd::Bridge {
            trackers,
            host,
            port,
            scan_interval,
            bridge,
        } => {
            let source = BridgeSource::remote(&trackers)?;
            let config = BridgeConfig {
                scan_interval: Duration::from_secs(scan_interval.max(1)),
                ..bridge.config()?
            };
            let client = WebTorrent::new(
                net.client_options(WebTorrentOptions {
                    listen_address: host,
                    upload_cache_bytes: Some(BRIDGE_UPLOAD_CACHE),
                    ..options(port, None)
                })
                .await?,
            )
            .await?;
            let data = config.data_dir.clone();
            let b = Bridge::start(client.clone(), source, config)?;
            if !quiet {
                eprintln!(
                    "bridging {} (peers on TCP port {}, data in {}; Ctrl+C to stop)",
                    trackers.join(" "),
                    client.port(),
                    data.display()
                );
            }
            wait_for_signal().await;
            b.shutdown().await;
            client.destroy().await?;
        }
        #[cfg(not(feature = "server"))]
        Cmd::NoServer { .. } => {
            return Err(
                "`webtorrent serve` and `webtorrent bridge` need the `server` feature of \
                 the webtorrent crate, which this build lacks (it is on by default)"
                    .into(),
            )
        }
    }
    Ok(())
}

#[cfg(feature = "server")]
struct ServeArgs {
    files: Vec<PathBuf>,
    listen: SocketAddr,
    public_url: Option<String>,
    www: Option<PathBuf>,
    no_udp: bool,
    interval: u64,
    max_torrents: usize,
    max_peers: usize,
    seed_port: Option<u16>,
    piece_length: Option<u32>,
    quiet: bool,
    bridge: Option<BridgeConfig>,
    allow: Option<PathBuf>,
    announce_rate: u32,
    net: cli::net::NetArgs,
}

/// `webtorrent serve`: the tracker and page server, plus a seeding client when files are given.
#[cfg(feature = "server")]
async fn serve(a: ServeArgs) -> AnyResult<()> {
    let www = a.www.map_or_else(server::Www::embedded, server::Www::new);
    // The allow-list, and the torrents seeded here (known once hashed).
    let seeded: Arc<std::sync::RwLock<std::collections::HashSet<webtorrent::InfoHash>>> =
        Arc::default();
    let allow = match &a.allow {
        None => server::InfoHashFilter::Any,
        Some(path) => {
            let listed = match server::InfoHashFilter::from_file(path)
                .map_err(|e| format!("{e}; fix the file or leave out --allow"))?
            {
                server::InfoHashFilter::Only(set) => set,
                _ => Arc::default(),
            };
            if !a.quiet {
                eprintln!(
                    "tracking only the {} torrents in {} and those seeded here",
                    listed.len(),
                    path.display()
                );
            }
            let seeded = seeded.clone();
            server::InfoHashFilter::With(Arc::new(move |ih| {
                listed.contains(ih)
                    || seeded
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(ih)
            }))
        }
    };
    if !a.quiet {
        match www.root() {
            Some(dir) if !www.has_index() => eprintln!(
                "warning: no index.html in {}; serving a plain page at /",
                dir.display()
            ),
            Some(dir) if !www.has_wasm_client() => eprintln!(
                "warning: {} has no pkg/webtorrent_wasm_bg.wasm (the page's wasm client); \
                 build it with `bash wasm/build.sh`",
                dir.display()
            ),
            None if !www.has_index() => eprintln!(
                "warning: this binary was built without the page (no www/ beside native/); \
                 serving a plain page at /"
            ),
            None if !www.has_wasm_client() => eprintln!(
                "warning: the page's wasm client is missing: this binary was built before \
                 www/pkg/ existed; run `bash wasm/build.sh`, then rebuild webtorrent \
                 (or pass --www DIR)"
            ),
            _ => {}
        }
    }
    let config = server::ServerConfig {
        listen: a.listen,
        public_url: a.public_url,
        www: Some(www),
        udp: !a.no_udp,
        tracker: server::TrackerConfig {
            interval: Duration::from_secs(a.interval.max(1)),
            max_torrents: a.max_torrents.max(1),
            max_peers: a.max_peers.max(1),
            ..server::TrackerConfig::default()
        },
        allow,
        announce_rate: server::RateLimit {
            per_second: a.announce_rate,
            burst: a.announce_rate.saturating_mul(25),
        },
        ice_servers: a.net.ice_servers()?,
        ..server::ServerConfig::default()
    };
    let srv = server::Server::bind(config).await?;
    // The client (bridge and seeds) first: the page URL is printed once `bridge.json`
    // answers as it will for the rest of the run.
    let client = if !a.files.is_empty() || a.bridge.is_some() {
        Some(
            WebTorrent::new(
                a.net
                    .client_options(WebTorrentOptions {
                        listen_address: a.listen.ip(),
                        upload_cache_bytes: a.bridge.is_some().then_some(BRIDGE_UPLOAD_CACHE),
                        ..options(a.seed_port, None)
                    })
                    .await?,
            )
            .await?,
        )
    } else {
        None
    };
    if let Some(c) = &client {
        let c = c.clone();
        srv.set_torrents(Arc::new(move |ih| c.get(ih)));
    }
    let mut bridge = None;
    if let (Some(c), Some(config)) = (&client, a.bridge.clone()) {
        let data = config.data_dir.clone();
        let b = Bridge::start(c.clone(), BridgeSource::Local(srv.handle()), config)?;
        srv.set_bridge(b.hooks());
        bridge = Some((b, data));
    }
    say!("{}", srv.page_url());
    if !a.quiet {
        eprintln!("open {} in a browser", srv.page_url());
        eprintln!("HTTP tracker:      {}", srv.http_announce_url());
        eprintln!("WebSocket tracker: {}", srv.ws_url());
        if let Some(u) = srv.udp_announce_url() {
            eprintln!("UDP tracker:       {u}");
        }
        eprintln!("stats:             {}stats", srv.page_url());
        if srv.urls_are_loopback_only() {
            eprintln!(
                "warning: listening on every interface, but these URLs (and the trackers in \
                 seeded torrents) name loopback; pass --public-url http://HOST:{}/ so other \
                 machines can use them",
                srv.local_addr().port()
            );
        }
    }
    if let (Some(c), Some((_, data))) = (&client, &bridge) {
        if !a.quiet {
            eprintln!(
                "bridge:            browsers ⇄ desktop clients, peers on TCP port {}, data in {}",
                c.port(),
                data.display()
            );
        }
    }
    if let Some(c) = &client {
        let announce = vec![srv.http_announce_url(), srv.ws_url()];
        for f in &a.files {
            let mut creator = TorrentCreator::new().with_announce(announce.clone());
            if let Some(pl) = a.piece_length {
                creator = creator.with_piece_length(pl);
            }
            let t = c.seed_path(f, creator).await?;
            seeded
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(t.info_hash());
            say!("{}", t.magnet_uri());
            if !a.quiet {
                eprintln!("seeding {} ({})", t.name(), t.info_hash().to_hex());
                let url = srv.stream_url(t.info_hash(), 0);
                let url = match url.strip_suffix("/0") {
                    // Several files: the list of their stream URLs.
                    Some(list) if t.files().len() > 1 => list.to_string(),
                    _ => url,
                };
                eprintln!("  stream it at {url}");
            }
        }
        // What was seeded in earlier runs (the bridge starts its own torrents again).
        let restored = c
            .restore(bridge.as_ref().map(|(_, data)| data.as_path()))
            .await;
        for t in &restored {
            seeded
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(t.info_hash());
        }
        if !a.quiet && !restored.is_empty() {
            eprintln!(
                "also seeding {} torrents from earlier runs (webtorrent list shows them, webtorrent remove forgets one)",
                restored.len()
            );
        }
        if !a.quiet && !a.files.is_empty() {
            eprintln!("seeding client on TCP port {}", c.port());
        }
    }
    if !a.quiet {
        eprintln!("serving (Ctrl+C to stop)");
    }
    wait_for_signal().await;
    if let Some((b, _)) = bridge {
        b.shutdown().await;
    }
    if let Some(c) = client {
        c.destroy().await?;
    }
    srv.shutdown().await;
    Ok(())
}

/// Per-torrent upload cache of a bridging client: the core's floor of two pieces. With a
/// hundred torrents, 8 MiB each would make the server's memory grow with what it bridges;
/// the operating system's page cache serves re-reads.
#[cfg(feature = "server")]
const BRIDGE_UPLOAD_CACHE: usize = 0;

fn options(port: Option<u16>, dir: Option<PathBuf>) -> WebTorrentOptions {
    WebTorrentOptions {
        port,
        download_dir: dir,
        ..WebTorrentOptions::default()
    }
}

fn info(source: &str) -> AnyResult<()> {
    if source.len() >= 7 && source[..7].eq_ignore_ascii_case("magnet:") {
        let m = Magnet::parse(source)?;
        say!("name:        {}", m.name.as_deref().unwrap_or("(unknown)"));
        say!("info hash:   {}", m.info_hash.to_hex());
        if let Some(l) = m.length {
            say!("length:      {l}");
        }
        for t in &m.trackers {
            say!("tracker:     {t}");
        }
        for p in &m.peers {
            say!("peer:        {p}");
        }
        return Ok(());
    }
    let bytes = std::fs::read(source).map_err(|e| format!("{source}: {e}"))?;
    let m = Metainfo::from_bytes(&bytes)?;
    say!("name:         {}", m.info.name);
    say!("info hash:    {}", m.info_hash.to_hex());
    say!("length:       {}", m.info.total_length());
    say!("piece length: {}", m.info.piece_length());
    say!("pieces:       {}", m.info.num_pieces());
    say!("private:      {}", m.info.private);
    if let Some(c) = &m.comment {
        say!("comment:      {c}");
    }
    if let Some(c) = &m.created_by {
        say!("created by:   {c}");
    }
    for (i, tier) in m.trackers().iter().enumerate() {
        for t in tier {
            say!("tracker:      [tier {i}] {t}");
        }
    }
    for (i, f) in m.info.files.iter().filter(|f| !f.padding).enumerate() {
        say!("file {i:<7} {} ({} bytes)", f.path_string(), f.length);
    }
    Ok(())
}

/// Refuses web seed URLs that are not http:// or https://.
fn check_web_seeds(urls: &[String]) -> AnyResult<()> {
    for u in urls {
        let l = u.to_ascii_lowercase();
        if !(l.starts_with("http://") || l.starts_with("https://")) {
            return Err(format!(
                "--web-seed {u:?}: give the http:// or https:// URL that serves the file"
            )
            .into());
        }
    }
    Ok(())
}

/// Creates the output folder, or says why it cannot be one.
fn create_out_dir(out: &Path) -> AnyResult<()> {
    if out.is_file() {
        return Err(format!(
            "-o {} is a file; pass the folder to write into (it is created when missing)",
            out.display()
        )
        .into());
    }
    std::fs::create_dir_all(out).map_err(|e| {
        format!(
            "cannot create the folder {}: {e}; pass another with -o",
            out.display()
        )
    })?;
    Ok(())
}

#[cfg_attr(not(feature = "server"), allow(dead_code))]
struct StreamArgs {
    file: Option<usize>,
    listen: std::net::SocketAddr,
    fetch: FetchArgs,
    quiet: bool,
    net: cli::net::NetArgs,
}

/// `webtorrent stream`: download, and serve the files over HTTP while they arrive.
#[cfg(feature = "server")]
async fn stream(a: StreamArgs) -> AnyResult<()> {
    use webtorrent::server::stream::StreamServer;
    let f = a.fetch;
    create_out_dir(&f.out)?;
    let client = WebTorrent::new(
        a.net
            .client_options(WebTorrentOptions {
                ..options(f.port, Some(f.out.clone()))
            })
            .await?,
    )
    .await?;
    let torrent = client
        .add_with(
            f.source.as_str(),
            AddOptions {
                announce: f.announce,
                download_dir: Some(f.out.clone()),
                peers: f.peers,
                select: a.file.map(|f| vec![f]),
                ..AddOptions::default()
            },
        )
        .await?;
    let lookup_client = client.clone();
    let index_client = client.clone();
    let server = match StreamServer::bind(
        a.listen,
        Arc::new(move |ih| lookup_client.get(ih)),
        Arc::new(move || index_client.torrents()),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            client.destroy().await?;
            return Err(format!(
                "{e}; pass another address with --listen (e.g. --listen 127.0.0.1:0 for any free port)"
            )
            .into());
        }
    };
    if !a.quiet && torrent.metainfo().is_none() {
        eprintln!("waiting for the torrent's metadata from peers…");
    }
    let meta = tokio::select! {
        m = torrent.wait_metadata() => m,
        _ = wait_for_signal() => {
            client.destroy().await?;
            return Err("interrupted".into());
        }
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            client.destroy().await?;
            return Err(e.into());
        }
    };
    let files = torrent.files();
    for (i, f) in files.iter().enumerate() {
        if a.file.is_none_or(|n| n == i) {
            say!("{}", server.url(meta.info_hash, i));
            if !a.quiet {
                eprintln!("  file {i}: {} ({} bytes)", f.path, f.length);
            }
        }
    }
    if !a.quiet {
        eprintln!(
            "serving on http://{}/ while downloading into {} (Ctrl+C to stop)",
            server.local_addr(),
            f.out.display()
        );
    }
    let watcher = watch(torrent.clone(), a.quiet, true);
    wait_for_signal().await;
    watcher.abort();
    server.shutdown().await;
    client.destroy().await?;
    Ok(())
}

#[cfg(not(feature = "server"))]
async fn stream(_a: StreamArgs) -> AnyResult<()> {
    Err(
        "`stream` needs the HTTP server: this webtorrent was built without the `server` \
         feature; rebuild with default features"
            .into(),
    )
}

async fn hash_with_progress(
    c: TorrentCreator,
    path: &Path,
    quiet: bool,
) -> AnyResult<webtorrent::core::creator::CreatedTorrent> {
    let total = dir_size(path);
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(quiet, total, "hashing");
    let ticker = spawn_counter(bar.clone(), counter.clone());
    let r = c.with_progress(counter).create_from_path(path).await;
    ticker.abort();
    bar.finish_and_clear();
    Ok(r?)
}

fn dir_size(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        _ => 0,
    }
}

fn progress_bar(quiet: bool, total: u64, what: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn spawn_counter(bar: ProgressBar, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            bar.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Shows progress: a bar on a terminal, a line every few seconds otherwise.
fn watch(t: Torrent, quiet: bool, downloading: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            return;
        }
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let b = ProgressBar::new(t.length().max(1));
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            Some(b)
        } else {
            None
        };
        let mut tick = 0u64;
        loop {
            let msg = format!(
                "{} peers, down {}/s, up {}/s",
                t.num_peers(),
                webtorrent::human_bytes(t.download_speed()),
                webtorrent::human_bytes(t.upload_speed())
            );
            match &bar {
                Some(b) => {
                    b.set_length(t.length().max(1));
                    b.set_position((t.progress() * t.length() as f64) as u64);
                    b.set_message(msg);
                }
                None if tick % 4 == 0 => {
                    if downloading {
                        eprintln!("{:5.1} % {msg}", t.progress() * 100.0);
                    } else {
                        eprintln!("uploaded {} {msg}", webtorrent::human_bytes(t.uploaded()));
                    }
                }
                None => {}
            }
            tick += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Set once SIGINT or SIGTERM arrived.
static INTERRUPTED: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>> =
    std::sync::OnceLock::new();
/// From when a signal means "stop cleanly" (announce `stopped`, write resume records)
/// rather than "exit now".
static GRACEFUL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Signals from now on stop the command cleanly ([`wait_for_signal`] returns), even one that
/// arrives before the command waits for it; a second one exits at once.
fn graceful_from_now() {
    GRACEFUL.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Listens for SIGINT and SIGTERM from the start of a command. Before
/// [`graceful_from_now`] (while hashing, say) one exits at once, as without a handler; after
/// it, the first is kept for [`wait_for_signal`] and a second exits at once.
fn listen_for_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signals =
        signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
    tokio::spawn(async move {
        let Ok((mut term, mut int)) = signals else {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
            return;
        };
        let mut stopping = false;
        loop {
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
            };
            if stopping || !GRACEFUL.load(std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(code);
            }
            stopping = true;
            let _ = tx.send(true);
        }
    });
    let _ = INTERRUPTED.set(rx);
}

/// Returns once SIGINT or SIGTERM arrived (also if it arrived after [`graceful_from_now`]
/// but before this was called).
async fn wait_for_signal() {
    graceful_from_now();
    match INTERRUPTED.get() {
        Some(rx) => {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|&v| v).await;
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
