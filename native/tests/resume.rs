//! Fast resume (`WebTorrentOptions::resume_dir`, the CLI's `--state`): a restarted seeder
//! serves without reading its files, and a file changed while the client was stopped costs
//! only its own pieces, the changed one no longer counted as had. Loopback only.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use webtorrent::{TorrentCreator, WebTorrent, WebTorrentOptions};

/// Bytes this process read through system calls so far (`rchar` of /proc/self/io).
fn rchar(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .expect("/proc/PID/io")
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar")
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `webtorrent seed` with `args`, once it printed its magnet link (the data is verified and
/// the port listens).
fn seed(args: &[&str]) -> Child {
    let (child, line) = seed_line(args);
    assert!(line.starts_with("magnet:"), "the seeder printed {line:?}");
    child
}

fn stop(mut child: Child) {
    common::unsafe_free_kill(child.id(), "TERM");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the seeder did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests measure this process's reads: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_restarted_seeder_reads_nothing_of_its_file_and_serves_it() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let data = common::content(24 << 20, 5);
    let file = common::write_file(dir.path(), "big.bin", &data);
    let state = dir.path().join("state");
    let torrent = dir.path().join("big.torrent");
    let port = free_port().to_string();
    let (f, s, t) = (
        file.to_str().unwrap(),
        state.to_str().unwrap(),
        torrent.to_str().unwrap(),
    );
    let first = seed(&[f, "--state", s, "--port", &port, "--torrent-out", t]);
    let first_read = rchar(&first.id().to_string());
    assert!(
        first_read >= data.len() as u64,
        "the first run hashes the file: read {first_read}"
    );
    stop(first);

    let again = seed(&[f, "--state", s, "--port", &port]);
    let read = rchar(&again.id().to_string());
    assert!(
        read < (1 << 20),
        "the restarted seeder read {read} bytes before serving, for a {} byte file",
        data.len()
    );
    // It serves the file: a leecher gets the same bytes.
    let out = dir.path().join("out");
    let st = common::cli()
        .args(["download", t, "-o"])
        .arg(&out)
        .args([
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--quiet",
            "--no-utp",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("download");
    assert!(st.success());
    let got = std::fs::read(out.join("big.bin")).expect("downloaded file");
    assert_eq!(common::sha256_hex(&got), common::sha256_hex(&data));
    stop(again);
}

fn options(resume: &Path) -> WebTorrentOptions {
    WebTorrentOptions {
        resume_dir: Some(resume.to_path_buf()),
        ..common::trackerless_options()
    }
}

async fn progress_of(client: &WebTorrent, torrent: &[u8], data_dir: &Path) -> f64 {
    let t = client
        .add_with_data(
            bytes::Bytes::copy_from_slice(torrent),
            data_dir.to_path_buf(),
        )
        .await
        .expect("add with data");
    t.progress()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_while_stopped_costs_only_its_pieces() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("data").join("multi");
    let (a, b, c) = (
        common::content(600_000, 1),
        common::content(200_000, 2),
        common::content(300_000, 3),
    );
    common::write_file(&root, "a.bin", &a);
    let b_path = common::write_file(&root, "b.bin", &b);
    common::write_file(&root, "c.bin", &c);
    let piece = 64 * 1024u64;
    let (torrent, _) = TorrentCreator::new()
        .with_piece_length(piece as u32)
        .create_from_path(&root)
        .await
        .map(|t| (t.torrent_file.to_vec(), t.info_hash))
        .expect("create");
    let resume = dir.path().join("resume");
    let data_dir = dir.path().join("data");
    let total = (a.len() + b.len() + c.len()) as u64;

    let client = WebTorrent::new(options(&resume)).await.expect("client");
    assert_eq!(progress_of(&client, &torrent, &data_dir).await, 1.0);
    client.destroy().await.expect("destroy");
    let saved = webtorrent::saved_torrents(&resume);
    assert_eq!(saved.len(), 1, "one record");
    assert!(saved[0].complete());
    assert_eq!(saved[0].save_path.as_deref(), Some(data_dir.as_path()));

    // Unchanged: everything at once, nothing hashed.
    let me = std::process::id().to_string();
    let client = WebTorrent::new(options(&resume)).await.expect("client");
    let r0 = rchar(&me);
    assert_eq!(progress_of(&client, &torrent, &data_dir).await, 1.0);
    let unchanged_read = rchar(&me) - r0;
    client.destroy().await.expect("destroy");
    assert!(
        unchanged_read < 100_000,
        "read {unchanged_read} bytes with no file changed"
    );

    // One byte of b.bin changes (a.bin comes first, files are sorted by name).
    let at = 70_000u64;
    let mut b2 = b.clone();
    b2[at as usize] ^= 0xff;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&b_path, &b2).expect("rewrite b");
    let client = WebTorrent::new(options(&resume)).await.expect("client");
    let r0 = rchar(&me);
    let p = progress_of(&client, &torrent, &data_dir).await;
    let read = rchar(&me) - r0;
    client.destroy().await.expect("destroy");
    let changed_piece = (a.len() as u64 + at) / piece;
    let piece_len = piece.min(total - changed_piece * piece);
    assert!(
        (p - (total - piece_len) as f64 / total as f64).abs() < 1e-9,
        "progress {p}"
    );
    // Only the pieces b.bin touches were read: about its size, far from the torrent's.
    let b_pieces = (a.len() as u64 + b.len() as u64 - 1) / piece - a.len() as u64 / piece + 1;
    assert!(
        read >= b.len() as u64 && read <= b_pieces * piece + 100_000,
        "read {read} bytes to recheck b.bin ({b_pieces} pieces of {piece})"
    );
}

/// The torrent's upload count once it stopped moving (status is refreshed periodically).
async fn settled_uploaded(t: &webtorrent::Torrent) -> u64 {
    let mut last = t.uploaded();
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = t.uploaded();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leecher_killed_halfway_continues_and_fetches_no_piece_twice() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let data = common::content(16 << 20, 9);
    let src = dir.path().join("src");
    common::write_file(&src, "half.bin", &data);
    let created = TorrentCreator::new()
        .with_piece_length(256 * 1024)
        .create_from_path(&src.join("half.bin"))
        .await
        .expect("create");
    let tfile = dir.path().join("half.torrent");
    std::fs::write(&tfile, &created.torrent_file).expect("write torrent");
    let seeder = WebTorrent::new(common::trackerless_options())
        .await
        .expect("seeder");
    let seeded = seeder
        .add_with_data(created.torrent_file.clone(), src.clone())
        .await
        .expect("seed");
    assert_eq!(seeded.progress(), 1.0);
    let peer = format!("127.0.0.1:{}", seeder.port());
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let leech = |extra: &[&str]| {
        common::cli()
            .args(["download", tfile.to_str().unwrap(), "-o"])
            .arg(&out)
            .arg("--state")
            .arg(&state)
            .args(["--peer", &peer, "--no-utp", "--quiet"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the leecher")
    };
    // About 4 s at this rate: killed (SIGKILL, no goodbye) past the middle. The seeder's
    // count runs ahead of what the leecher has (socket buffers), which is fine here.
    let mut first = leech(&["--download-limit", "4000000"]);
    let t0 = Instant::now();
    while seeded.uploaded() < data.len() as u64 / 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the leecher got nowhere"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // What the killed leecher left verified on disk.
    let info = &created.metainfo.info;
    let partial = std::fs::read(out.join("half.bin")).unwrap_or_default();
    let mut had = 0u64;
    for p in info.layout.pieces() {
        let (off, len) = (
            info.layout.piece_offset(p) as usize,
            info.layout.piece_len(p) as usize,
        );
        if partial
            .get(off..off + len)
            .is_some_and(|d| webtorrent::core::piece::sha1(d) == info.piece_hash(p))
        {
            had += len as u64;
        }
    }
    assert!(
        had > 0 && had < data.len() as u64,
        "killed at {had} bytes verified: too early or too late to tell"
    );
    let sent_before = settled_uploaded(&seeded).await;
    // Started again on the same state and folder, it finishes.
    let mut second = leech(&[]);
    let status = tokio::task::spawn_blocking(move || second.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "the restarted leecher failed");
    let got = std::fs::read(out.join("half.bin")).expect("the file");
    assert_eq!(common::sha256_hex(&got), common::sha256_hex(&data));
    // The second run fetched what was missing, not what the first had verified (one piece
    // of slack for blocks the seeder had queued twice).
    let sent = settled_uploaded(&seeded).await - sent_before;
    let missing = data.len() as u64 - had;
    assert!(
        sent >= missing && sent <= missing + 256 * 1024,
        "the second run got {sent} bytes; {missing} were missing ({had} verified before the kill)"
    );
    seeder.destroy().await.expect("destroy");
}

/// `webtorrent seed` with `args`; its first stdout line (a magnet link) and the process.
fn seed_line(args: &[&str]) -> (Child, String) {
    let mut child = common::cli()
        .arg("seed")
        .args(args)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(
                std::env::temp_dir().join(format!("wt-resume-seed-{}.log", std::process::id())),
            )
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        )
        .env("RUST_LOG", "webtorrent=debug")
        .spawn()
        .expect("start webtorrent seed");
    let out = child.stdout.take().expect("stdout");
    let line = BufReader::new(out)
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    (child, line)
}

fn cli_out(args: &[&str]) -> (bool, String, String) {
    let o = common::cli().args(args).output().expect("run webtorrent");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn seed_starts_again_what_the_state_holds_and_list_and_remove_manage_it() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let a = common::content(1 << 20, 11);
    let b = common::content(700_000, 12);
    let a_path = common::write_file(&dir.path().join("one"), "a.bin", &a);
    let b_path = common::write_file(&dir.path().join("two"), "b.bin", &b);
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    let a_torrent = dir.path().join("a.torrent");
    let first_port = free_port().to_string();
    let (first, magnet_a) = seed_line(&[
        a_path.to_str().unwrap(),
        "--state",
        s,
        "--port",
        &first_port,
        "--torrent-out",
        a_torrent.to_str().unwrap(),
    ]);
    assert!(magnet_a.starts_with("magnet:"), "{magnet_a}");
    stop(first);
    let hash_a = magnet_a["magnet:?xt=urn:btih:".len()..][..40].to_string();

    // Seeding b.bin on the same state seeds a.bin again too: a leecher gets it from there.
    let port = free_port().to_string();
    let (second, magnet_b) = seed_line(&[b_path.to_str().unwrap(), "--state", s, "--port", &port]);
    assert!(magnet_b.starts_with("magnet:"), "{magnet_b}");
    let hash_b = magnet_b["magnet:?xt=urn:btih:".len()..][..40].to_string();
    let log = std::env::temp_dir().join(format!("wt-resume-seed-{}.log", std::process::id()));
    // The state's torrents start just after the one given (and its magnet line).
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("started again from the state folder")
    {
        if t0.elapsed() > Duration::from_secs(30) {
            stop(second);
            let (_, list, _) = cli_out(&["list", "--state", s]);
            panic!(
                "the second seeder did not start a.bin again; list:\n{list}\nits log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = dir.path().join("out");
    let o = common::cli()
        .args(["download", a_torrent.to_str().unwrap(), "-o"])
        .arg(&out)
        .args([
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--quiet",
            "--no-utp",
            "--timeout",
            "60",
        ])
        .env("RUST_LOG", "webtorrent=debug")
        .output()
        .expect("download");
    stop(second);
    assert!(
        o.status.success(),
        "a.bin not served by the restarted state: {}\nseeder log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let got = std::fs::read(out.join("a.bin")).expect("a.bin");
    assert_eq!(common::sha256_hex(&got), common::sha256_hex(&a));

    let (ok, list, err) = cli_out(&["list", "--state", s]);
    assert!(ok, "{err}");
    assert_eq!(list.lines().count(), 2, "{list}");
    for (h, name) in [(&hash_a, "a.bin"), (&hash_b, "b.bin")] {
        let line = list
            .lines()
            .find(|l| l.starts_with(h.as_str()))
            .unwrap_or_else(|| panic!("{h} not listed: {list}"));
        assert!(line.contains("100.0 %") && line.contains(name), "{line}");
    }
    let (ok, _, err) = cli_out(&["remove", &hash_a, "--state", s]);
    assert!(ok, "{err}");
    assert!(a_path.exists(), "remove leaves the data");
    let (_, list, _) = cli_out(&["list", "--state", s]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.starts_with(hash_b.as_str()), "{list}");
    let (ok, _, err) = cli_out(&["remove", &hash_a, "--state", s]);
    assert!(!ok && err.contains("holds no torrent"), "{err}");

    // `seed` alone seeds what the state holds.
    let (alone, line) = seed_line(&["--state", s]);
    assert_eq!(line, magnet_b);
    stop(alone);
}
