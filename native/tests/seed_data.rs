//! `webtorrent seed T.torrent --data PATH` with the built CLI: the data given as the file itself
//! (under its own name or another), as its folder, or wrong. Downloads go over loopback TCP
//! with `--peer`; the torrents name no tracker, so nothing else is contacted (and no WebRTC,
//! which only WebSocket trackers start).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `webtorrent seed`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Seeder {
    child: Child,
    port: u16,
}

impl Seeder {
    /// Starts `webtorrent seed torrent --data data` on a free port and waits until it prints
    /// the magnet link, i.e. the data verified and the port is listening.
    fn start(torrent: &Path, data: &Path) -> Seeder {
        let port = free_port();
        let mut child = common::cli()
            .arg("seed")
            .arg(torrent)
            .arg("--data")
            .arg(data)
            .args(["--port", &port.to_string(), "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start webtorrent seed");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seeder = Seeder { child, port };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => assert!(line.starts_with("magnet:?"), "{line}"),
            Err(_) => {
                let _ = seeder.child.kill();
                let _ = seeder.child.wait();
                let mut err = String::new();
                if let Some(mut e) = seeder.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("seed printed no magnet link: {err}");
            }
        }
        seeder
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            common::unsafe_free_kill(self.child.id(), "TERM");
            for _ in 0..100 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP port free on every interface at the time of asking.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `webtorrent create path -o out` (no tracker).
fn create(path: &Path, out: &Path) {
    let st = common::cli()
        .arg("create")
        .arg(path)
        .arg("-o")
        .arg(out)
        .args(["--piece-length", "65536", "--quiet"])
        .stdout(Stdio::null())
        .status()
        .expect("run webtorrent create");
    assert!(st.success(), "create {}", path.display());
}

/// Downloads `torrent` from 127.0.0.1:`port` into `out` and checks that it exits 0.
fn download(torrent: &Path, port: u16, out: &Path) {
    let o = common::cli()
        .arg("download")
        .arg(torrent)
        .arg("-o")
        .arg(out)
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .args(["--port", "0", "--timeout", "60", "--quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("run webtorrent download");
    assert!(
        o.status.success(),
        "download failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `webtorrent seed torrent --data data`, expected to fail at once.
fn seed_fails(torrent: &Path, data: &Path) -> String {
    let o: Output = common::cli()
        .arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--port", "0", "--quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("run webtorrent seed");
    assert!(!o.status.success(), "seed {} succeeded", data.display());
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha_of(path: &Path) -> String {
    common::sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn a_single_file_torrent_seeds_from_the_file_itself_or_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(700_000, 11);
    let want = common::sha256_hex(&data);
    let orig = common::write_file(dir.path(), "src/payload.bin", &data);
    let torrent = dir.path().join("payload.torrent");
    create(&orig, &torrent);
    // The same bytes under another name, in a folder of their own, read-only.
    let renamed = common::write_file(dir.path(), "elsewhere/renamed.dat", &data);
    let mut perms = std::fs::metadata(&renamed).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&renamed, perms).unwrap();

    for (what, data_arg) in [
        ("the file under its own name", orig.clone()),
        ("the file under another name", renamed.clone()),
        ("the folder that contains it", dir.path().join("src")),
    ] {
        let seeder = Seeder::start(&torrent, &data_arg);
        let out = dir.path().join(format!("out-{}", seeder.port));
        download(&torrent, seeder.port, &out);
        assert_eq!(sha_of(&out.join("payload.bin")), want, "{what}");
        drop(seeder);
    }
    // The user's files are as they were, and nothing was created beside them.
    assert_eq!(sha_of(&orig), want);
    assert_eq!(sha_of(&renamed), want);
    let beside: Vec<_> = std::fs::read_dir(dir.path().join("elsewhere"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["renamed.dat"]);
}

#[test]
fn wrong_data_is_refused_with_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(200_000, 12);
    let single = common::write_file(dir.path(), "payload.bin", &data);
    let single_torrent = dir.path().join("single.torrent");
    create(&single, &single_torrent);
    common::write_file(dir.path(), "album/a.bin", &data[..50_000]);
    common::write_file(dir.path(), "album/sub/b.bin", &data[50_000..]);
    let multi_torrent = dir.path().join("album.torrent");
    create(&dir.path().join("album"), &multi_torrent);

    let missing = dir.path().join("nope.bin");
    let e = seed_fails(&single_torrent, &missing);
    assert!(e.contains("nope.bin does not exist"), "{e}");
    assert!(e.contains("folder that contains payload.bin"), "{e}");
    assert!(!missing.exists());

    let e = seed_fails(&multi_torrent, &single);
    assert!(e.contains("multi-file torrent"), "{e}");
    assert!(e.contains("top folder album/"), "{e}");

    // Other bytes of the right size: nothing verifies, and the file is left alone.
    let wrong = common::write_file(dir.path(), "wrong.bin", &common::content(200_000, 13));
    let before = sha_of(&wrong);
    let e = seed_fails(&single_torrent, &wrong);
    assert!(e.contains("0 of 4 pieces verified"), "{e}");
    assert_eq!(sha_of(&wrong), before);
}

#[test]
fn a_multi_file_torrent_seeds_from_its_parent_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::content(300_000, 14);
    common::write_file(dir.path(), "data/album/a.bin", &data[..100_000]);
    common::write_file(dir.path(), "data/album/sub/b.bin", &data[100_000..]);
    let torrent = dir.path().join("album.torrent");
    create(&dir.path().join("data/album"), &torrent);
    let seeder = Seeder::start(&torrent, &dir.path().join("data"));
    let out = dir.path().join("out");
    download(&torrent, seeder.port, &out);
    assert_eq!(
        sha_of(&out.join("album/a.bin")),
        common::sha256_hex(&data[..100_000])
    );
    assert_eq!(
        sha_of(&out.join("album/sub/b.bin")),
        common::sha256_hex(&data[100_000..])
    );
}
