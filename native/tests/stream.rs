//! Reading files while they download ([`webtorrent::FileReader`]): readers at the start, the
//! middle and the end of a torrent get exactly the source's bytes before the download is
//! complete, two readers at different positions both progress, and a reader of a deselected
//! file selects it. The seeder's upload is throttled so the download takes seconds.

mod common;

use std::io::SeekFrom;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use common::content;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use webtorrent::{AddOptions, FileReader, Torrent, WebTorrent, WebTorrentOptions};

fn opts() -> WebTorrentOptions {
    common::trackerless_options()
}

/// `len` bytes at `at` through `reader`.
async fn read_at(reader: &mut FileReader, at: u64, len: usize) -> Vec<u8> {
    reader.seek(SeekFrom::Start(at)).await.expect("seek");
    let mut out = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(60), reader.read_exact(&mut out))
        .await
        .unwrap_or_else(|_| panic!("{len} bytes at {at} not read within 60 s"))
        .expect("read");
    out
}

/// A leecher of `data` (one file) from a seeder sending about `rate` bytes/s.
async fn throttled_swarm(data: &[u8], rate: u64) -> (WebTorrent, WebTorrent, Torrent) {
    let seeder = WebTorrent::new(WebTorrentOptions {
        upload_limit: Some(rate),
        ..opts()
    })
    .await
    .unwrap();
    let seeded = seeder
        .seed("film.bin".to_string(), Bytes::from(data.to_vec()), None)
        .await
        .unwrap();
    let file = seeded.torrent_file().unwrap();
    let leecher = WebTorrent::new(opts()).await.unwrap();
    let t = leecher
        .add_with(
            file,
            AddOptions {
                peers: vec![SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    seeder.port(),
                )],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap();
    (seeder, leecher, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_get_exact_bytes_at_the_start_middle_and_end_while_downloading() {
    // 12 MiB at about 2 MiB/s: six seconds for the whole, far less for a few pieces.
    let data = content(12 * 1024 * 1024 + 999, 41);
    let (seeder, leecher, t) = throttled_swarm(&data, 2 * 1024 * 1024).await;
    let mut a = t.file_reader(0).unwrap();
    let mut b = t.file_reader(0).unwrap();
    assert_eq!(a.len(), data.len() as u64);

    // The middle and the end first: rarest-first alone would reach them last.
    let mid = 7 * 1024 * 1024 + 12_345;
    let end = data.len() as u64 - 70_000;
    let (got_mid, got_end) =
        tokio::join!(read_at(&mut a, mid, 100_000), read_at(&mut b, end, 70_000));
    // The readers' windows were fetched first: far less than the whole had come in.
    let fetched = t.downloaded();
    assert!(
        fetched < data.len() as u64 / 3,
        "{fetched} of {} bytes downloaded before the two ranges were read",
        data.len()
    );
    assert_eq!(got_mid, &data[mid as usize..mid as usize + 100_000]);
    assert_eq!(got_end, &data[end as usize..]);
    // Both readers go on from where they are.
    let more = read_at(&mut a, mid + 100_000, 200_000).await;
    assert_eq!(
        more,
        &data[mid as usize + 100_000..mid as usize + 300_000],
        "reader a continues"
    );
    let start = read_at(&mut b, 0, 50_000).await;
    assert_eq!(start, &data[..50_000]);
    // Past the end: nothing, no error.
    b.seek(SeekFrom::End(0)).await.unwrap();
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // The whole file through one reader equals the source.
    let mut whole = Vec::new();
    a.seek(SeekFrom::Start(0)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), a.read_to_end(&mut whole))
        .await
        .expect("whole file within 60 s")
        .unwrap();
    assert_eq!(
        common::sha256_hex(&whole),
        common::sha256_hex(&data),
        "whole file"
    );
    drop((a, b));
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_refuses_a_file_that_does_not_exist_and_stops_with_the_torrent() {
    let data = content(3 * 1024 * 1024, 7);
    let (seeder, leecher, t) = throttled_swarm(&data, 256 * 1024).await;
    let err = t.file_reader(3).unwrap_err().to_string();
    assert!(err.contains("no file 3"), "{err}");
    let mut r = t.file_reader(0).unwrap();
    // The last piece is far away at 256 KiB/s; removing the torrent ends the wait.
    let pending = tokio::spawn(async move {
        let mut buf = vec![0u8; 1000];
        r.seek(SeekFrom::End(-1000)).await.unwrap();
        r.read_exact(&mut buf).await.map(|_| buf)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    leecher.remove(t.info_hash()).await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the read ends when the torrent goes")
        .unwrap();
    // Either the piece made it in time (and then it is right) or the read fails cleanly.
    if let Ok(buf) = res {
        assert_eq!(buf, &data[data.len() - 1000..]);
    }
    leecher.destroy().await.unwrap();
    seeder.destroy().await.unwrap();
}
