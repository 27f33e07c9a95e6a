//! Drives the npm interop harness (`tests/interop/*.mjs`) from Rust tests: spawns scripts,
//! reads their JSON lines, stops them when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A running harness script.
pub struct Script {
    child: Child,
    _stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    pub name: String,
}

impl Script {
    /// Starts `node tests/interop/<script> ARGS --exit-with-stdin`.
    pub fn start(script: &str, args: &[&str]) -> Script {
        let path = repo_root().join("tests/interop").join(script);
        let mut child = Command::new("node")
            .arg(&path)
            .args(args)
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}: {e}", path.display()));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let name = script.to_string();
        let n = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("[{n}] {line}"),
                }
            }
        });
        Script {
            child,
            _stdin: stdin,
            lines: rx,
            name,
        }
    }

    /// Waits for a line whose `event` is `event`; panics on an `error` event or timeout.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(v) if v["event"] == "error" => panic!("{} failed: {v}", self.name),
                Ok(_) => {}
                Err(_) => panic!("{}: no {event:?} event within {timeout:?}", self.name),
            }
        }
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends SIGTERM and waits briefly.
    pub fn stop(&mut self) {
        unsafe_free_kill(self.child.id(), "TERM");
        let _ = self.wait_exit(Duration::from_secs(8));
        let _ = self.child.kill();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Sends a signal with the `kill` command (no unsafe code in tests).
pub fn unsafe_free_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The bittorrent-tracker server on 127.0.0.1.
pub struct Tracker {
    pub script: Script,
    pub port: u16,
    pub http: String,
    pub udp: String,
    pub ws: String,
}

impl Tracker {
    pub fn start() -> Tracker {
        let mut script = Script::start("tracker.mjs", &["--port", "0", "--quiet"]);
        let ready = script.wait_event("ready", Duration::from_secs(30));
        let port = ready["port"].as_u64().expect("port") as u16;
        Tracker {
            port,
            http: ready["http"].as_str().expect("http").to_string(),
            udp: ready["udp"].as_str().expect("udp").to_string(),
            ws: ready["ws"].as_str().expect("ws").to_string(),
            script,
        }
    }

    /// `GET /stats.json`.
    pub fn stats(&self) -> Value {
        let body = http_get(self.port, "/stats.json");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad stats JSON {body:?}: {e}"))
    }
}

/// A minimal HTTP/1.0 GET on 127.0.0.1, returning the body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Deterministic pseudo-random content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn write_file(dir: &Path, rel: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, data).expect("write");
    p
}

/// The built `webtorrent` CLI, with the DHT off (`--no-dht`: its default routers are public
/// hosts), no port mapping (`--no-port-mapping`: it talks to the LAN's router) and a fresh
/// state folder.
pub fn cli() -> Command {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut c = Command::new(env!("CARGO_BIN_EXE_webtorrent"));
    c.args(["--no-dht", "--no-port-mapping"]);
    // A state folder of its own (fast-resume records, which `seed` starts again), so tests
    // never see each other's torrents; a test that restarts a client on one passes --state.
    let n = N.fetch_add(1, Ordering::Relaxed);
    c.env(
        "XDG_DATA_HOME",
        std::env::temp_dir().join(format!("wt-test-state-{}-{n}", std::process::id())),
    );
    c
}

/// Client options confined to loopback: an ephemeral TCP port on 127.0.0.1 and the UDP
/// tracker socket on 127.0.0.1.
pub fn loopback_options() -> webtorrent::WebTorrentOptions {
    webtorrent::WebTorrentOptions {
        port: Some(0),
        listen_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        udp_bind: Some("127.0.0.1:0".parse().expect("addr")),
        ..webtorrent::WebTorrentOptions::default()
    }
}

/// A client on 127.0.0.1 (ephemeral TCP port) that uses no tracker: its peers are given
/// directly.
pub fn trackerless_options() -> webtorrent::WebTorrentOptions {
    webtorrent::WebTorrentOptions {
        port: Some(0),
        listen_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        trackers: false,
        ..webtorrent::WebTorrentOptions::default()
    }
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))
}

/// [`loopback_options`] without a TCP listener: a peer others can reach over WebRTC only.
pub fn webrtc_only_options() -> webtorrent::WebTorrentOptions {
    webtorrent::WebTorrentOptions {
        incoming: false,
        ..loopback_options()
    }
}

/// The magnet link for `info_hash` (hex) with these trackers.
pub fn magnet(info_hash: &str, trackers: &[&str]) -> String {
    let mut m = format!("magnet:?xt=urn:btih:{info_hash}");
    for t in trackers {
        m.push_str("&tr=");
        m.push_str(t);
    }
    m
}

/// Adds [`magnet`]`(info_hash, trackers)` to `client` and waits until every piece is
/// verified; panics naming `what` if that takes longer than `within`.
pub async fn download_magnet(
    client: &webtorrent::WebTorrent,
    info_hash: &str,
    trackers: &[&str],
    within: Duration,
    what: &str,
) -> webtorrent::Torrent {
    let t = client
        .add_with(
            webtorrent::TorrentSource::Magnet(magnet(info_hash, trackers)),
            webtorrent::AddOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot add the magnet link: {e}"));
    tokio::time::timeout(within, t.wait_done())
        .await
        .unwrap_or_else(|_| panic!("{what}: not finished within {within:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    t
}

/// Resident memory of this process, in bytes.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}
