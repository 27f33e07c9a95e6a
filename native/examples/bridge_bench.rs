//! Bench of the bridge as a service: a `webtorrent serve` process bridges N torrents at once,
//! half from a WebRTC-only client (a browser stand-in) to a TCP-only client (a desktop client)
//! and half the other way; it reports the time and the server's peak memory. Run it inside a
//! loopback-only network namespace (WebRTC), with a release binary:
//!
//! ```sh
//! cargo build --release -p webtorrent --bin webtorrent --example bridge_bench
//! tests/netns.sh target/release/examples/bridge_bench target/release/webtorrent 100 1
//! ```
//!
//! Arguments: the `webtorrent` binary, the number of torrents (default 100), MiB per torrent
//! (default 1). `bench/bridge-service.sh` runs it at two sizes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/proc.rs"]
mod proc;

use bytes::Bytes;
use webtorrent::{WebTorrent, WebTorrentOptions};

fn loopback() -> WebTorrentOptions {
    WebTorrentOptions {
        port: Some(0),
        listen_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        udp_bind: Some("127.0.0.1:0".parse().expect("addr")),
        ..WebTorrentOptions::default()
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let v = proc::status(&pid.to_string(), &["VmRSS:", "VmHWM:"]);
    (v[0], v[1])
}

/// Deterministic bytes.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .ok_or("usage: bridge_bench WEBTORRENT_BIN [TORRENTS] [MIB]")?;
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let mib: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let data_dir = std::env::temp_dir().join(format!("wt-bridge-bench-{}", std::process::id()));
    let mut serve = Command::new(bin)
        .args(["serve", "--port", "0", "--no-udp", "--no-dht", "--quiet"])
        .args(["--bridge-max-torrents", &(n + 10).to_string()])
        .args(["--bridge-max-bytes", &format!("{}M", n * mib * 2 + 64)])
        .arg("--data")
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let pid = serve.id();
    let mut lines = BufReader::new(serve.stdout.take().ok_or("no stdout")?).lines();
    // The first line that is a URL (a wrapper such as a profiler may print its own first).
    let page = loop {
        let line = lines.next().ok_or("serve printed no page URL")??;
        if line.starts_with("http://") {
            break line;
        }
    };
    let host = page
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (ws, http) = (format!("ws://{host}"), format!("http://{host}/announce"));
    let (rss0, _) = memory(pid);

    let browser = WebTorrent::new(WebTorrentOptions {
        incoming: false,
        pex: false,
        max_connections: 200,
        ..loopback()
    })
    .await?;
    let desktop = WebTorrent::new(WebTorrentOptions {
        webrtc: false,
        max_connections: 200,
        ..loopback()
    })
    .await?;
    let started = Instant::now();
    let mut downloads = Vec::new();
    for i in 0..n {
        let data = Bytes::from(content(mib << 20, i as u64 + 1));
        let (seeder, leecher, st, lt) = if i % 2 == 0 {
            (&browser, &desktop, &ws, &http)
        } else {
            (&desktop, &browser, &http, &ws)
        };
        let t = seeder
            .seed(format!("t{i}.bin"), data, Some(vec![st.clone()]))
            .await?;
        let magnet = format!("magnet:?xt=urn:btih:{}&tr={lt}", t.info_hash().to_hex());
        downloads.push(leecher.add(magnet).await?);
    }
    let mut peak = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last_report = 0;
    loop {
        let done = downloads.iter().filter(|d| d.is_done()).count();
        if done != last_report {
            eprintln!(
                "{:6.2} s: {done} of {n} done",
                started.elapsed().as_secs_f64()
            );
            last_report = done;
        }
        let (rss, _) = memory(pid);
        peak = peak.max(rss);
        if done == n || Instant::now() > deadline {
            println!(
                "{{\"torrents\":{n},\"mibEach\":{mib},\"done\":{done},\"seconds\":{:.2},\"serveRssStartMiB\":{:.1},\"serveRssPeakMiB\":{:.1},\"serveHwmMiB\":{:.1}}}",
                started.elapsed().as_secs_f64(),
                rss0 as f64 / 1024.0,
                peak as f64 / 1024.0,
                memory(pid).1 as f64 / 1024.0
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.destroy().await?;
    desktop.destroy().await?;
    // SIGTERM: serve stops cleanly (and a wrapper such as a memory profiler sees it end).
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = serve.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
