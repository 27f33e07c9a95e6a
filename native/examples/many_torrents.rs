//! What an idle torrent costs: seeds many small files from disk in one client and reports the
//! process's OS threads and resident memory per torrent.
//!
//! ```text
//! cargo run --release -p webtorrent --example many_torrents -- [COUNT] [TRACKER_URL...]
//! ```
//!
//! `COUNT` defaults to 10000 (it prints the cost of the second half, one torrent at a time,
//! and the average over all). With tracker URLs (e.g. a `webtorrent serve` on loopback) every
//! torrent announces `started` to them and keeps its re-announce timers, as in production.
//! `bench/many-torrents.sh` runs both variants.

use std::path::Path;
use std::time::{Duration, Instant};

use webtorrent::{TorrentCreator, WebTorrent, WebTorrentOptions};

#[path = "common/proc.rs"]
mod proc;

/// `VmRSS` in KiB and `Threads` of this process.
fn rss_and_threads() -> (u64, u64) {
    let v = proc::status("self", &["VmRSS:", "Threads:"]);
    (v[0], v[1])
}

fn write_files(dir: &Path, count: usize) -> std::io::Result<()> {
    for i in 0..count {
        let mut data = format!("file {i} of the idle-torrent bench\n").into_bytes();
        data.resize(1024, (i % 251) as u8);
        std::fs::write(dir.join(format!("f{i:05}.bin")), data)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = match args.next() {
        Some(n) => n.parse().map_err(|_| "COUNT must be a number")?,
        None => 10_000,
    };
    let trackers: Vec<String> = args.collect();
    let dir = tempfile_dir()?;
    write_files(&dir, count)?;

    let opts = WebTorrentOptions {
        // Nothing here dials out; the bench measures torrents, not connections.
        port: Some(0),
        ..WebTorrentOptions::default()
    };
    let client = WebTorrent::new(opts).await?;
    // One torrent first, so the client's shared machinery (disk pool, tracker sockets) is
    // counted in the baseline rather than per torrent.
    let creator = || TorrentCreator::new().with_announce(trackers.clone());
    client.seed_path(dir.join("f00000.bin"), creator()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss0, threads0) = rss_and_threads();

    // Half, then the other half: the second half's growth is what one more idle torrent
    // costs, without the client-wide costs that are bounded whatever the count (WebRTC
    // offers made for the first announces, at most `max_pending_offers` of them; buffers).
    let settle = Duration::from_secs(if trackers.is_empty() { 3 } else { 20 });
    let half = count / 2;
    let t0 = Instant::now();
    let mut metadata = 0usize;
    let mut rss_half = 0;
    for i in 1..count {
        let t = client
            .seed_path(dir.join(format!("f{i:05}.bin")), creator())
            .await?;
        if i >= half {
            metadata += t.torrent_file().map(|b| b.len()).unwrap_or(0);
        }
        if i + 1 == half {
            tokio::time::sleep(settle).await;
            rss_half = rss_and_threads().0;
        }
    }
    let added = t0.elapsed();
    // Let every `started` announce finish and the torrents go idle.
    tokio::time::sleep(settle).await;
    let (rss1, threads1) = rss_and_threads();
    let n = (count - half).max(1) as f64;
    let per = rss1.saturating_sub(rss_half) as f64 * 1024.0 / n;
    let avg = rss1.saturating_sub(rss0) as f64 * 1024.0 / (count - 1).max(1) as f64;
    let meta_per = metadata as f64 / n;
    println!(
        "torrents:              {count} (trackers: {})",
        trackers.len()
    );
    println!("added in:              {:.1} s", added.as_secs_f64());
    println!("OS threads:            {threads0} before, {threads1} after");
    println!(
        "resident memory:       {:.1} MiB before, {:.1} MiB at {half}, {:.1} MiB at {count}",
        rss0 as f64 / 1024.0,
        rss_half as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    println!(
        "per torrent:           {:.1} KiB for each of the last {} ({:.1} KiB on average over all)",
        per / 1024.0,
        count - half,
        avg / 1024.0
    );
    println!("  .torrent size:       {:.1} KiB", meta_per / 1024.0);
    println!(
        "  beyond the metadata: {:.1} KiB (per torrent minus its .torrent file)",
        (per - meta_per) / 1024.0
    );
    client.destroy().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("webtorrent-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
