//! Progress shown while a command works: a bar on a terminal, a line every few seconds
//! otherwise.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use webtorrent::{Torrent, TorrentCreator};

use crate::AnyResult;

pub async fn hash_with_progress(
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

pub fn dir_size(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        _ => 0,
    }
}

pub fn progress_bar(quiet: bool, total: u64, what: &str) -> ProgressBar {
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

pub fn spawn_counter(bar: ProgressBar, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            bar.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Shows progress: a bar on a terminal, a line every few seconds otherwise.
pub fn watch(t: Torrent, quiet: bool, downloading: bool) -> tokio::task::JoinHandle<()> {
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
