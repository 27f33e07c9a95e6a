//! The `webtorrent` command: create, inspect, seed and download torrents, and serve a tracker
//! with the browser page. Without the crate's `server` feature, `serve` and `bridge` only say
//! that they need it; without `webrtc` peers are reached over TCP only.

#[cfg(feature = "server")]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
#[cfg(feature = "server")]
use webtorrent::bridge::{Bridge, BridgeConfig, BridgeSource};
use webtorrent::core::magnet::Magnet;
use webtorrent::core::metainfo::Metainfo;
#[cfg(feature = "server")]
use webtorrent::server;
mod cli;

use cli::args::{Cli, Cmd, FetchArgs};
use cli::progress::{hash_with_progress, progress_bar, spawn_counter, watch};
use cli::signals::{graceful_from_now, listen_for_signals, wait_for_signal};

use webtorrent::{AddOptions, TorrentCreator, TorrentSource, WebTorrent, WebTorrentOptions};

/// `println!` that ignores a closed stdout (e.g. a pipe whose reader went away) instead of
/// panicking: the command's work matters more than its report.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
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
