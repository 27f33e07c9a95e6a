//! The native client's announce timing on tokio's paused clock: `started`, a regular announce
//! at each interval the tracker gives, back-off after a failure and `stopped` on removal, with
//! hours of tracker time passing in milliseconds. The tracker is a minimal HTTP server in this
//! process that records when each announce arrives (on the same paused clock).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use webtorrent::{WebTorrent, WebTorrentOptions};

/// One announce as the tracker saw it.
#[derive(Debug, Clone)]
struct Seen {
    event: String,
    at: Instant,
}

/// A tracker answering each announce with the next reply of `replies` (the last one repeats).
struct FakeTracker {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// What the fake tracker answers.
#[derive(Clone)]
enum Reply {
    Interval(u64),
    Failure(&'static str),
}

impl FakeTracker {
    async fn start(replies: Vec<Reply>) -> FakeTracker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://127.0.0.1:{}/announce",
            listener.local_addr().expect("addr").port()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let event = head
                    .split(['?', '&', ' '])
                    .find_map(|kv| kv.strip_prefix("event="))
                    .unwrap_or("")
                    .to_string();
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Seen {
                        event,
                        at: Instant::now(),
                    });
                    log.len() - 1
                };
                let reply = replies[n.min(replies.len() - 1)].clone();
                let body = match reply {
                    Reply::Interval(i) => format!("d8:intervali{i}e5:peers0:e"),
                    Reply::Failure(why) => format!("d14:failure reason{}:{why}e", why.len()),
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        FakeTracker { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (on the paused clock) until `n` announces arrived.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{n} announces expected within {within:?}, got {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn opts() -> WebTorrentOptions {
    WebTorrentOptions {
        port: Some(0),
        listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp_bind: Some("127.0.0.1:0".parse().expect("addr")),
        webrtc: false,
        ..WebTorrentOptions::default()
    }
}

/// `at` lies `expected` after `from`, within the task loop's 1 s tick.
fn assert_gap(from: &Seen, to: &Seen, expected: Duration) {
    let gap = to.at - from.at;
    assert!(
        gap >= expected && gap <= expected + Duration::from_secs(2),
        "{:?} came {gap:?} after {:?}, expected {expected:?}",
        to.event,
        from.event
    );
}

#[tokio::test(start_paused = true)]
async fn re_announces_at_the_trackers_interval_then_stops() {
    // 2 minutes, then 5 minutes, then 30 minutes from there on.
    let tracker = FakeTracker::start(vec![
        Reply::Interval(120),
        Reply::Interval(300),
        Reply::Interval(1800),
    ])
    .await;
    let client = WebTorrent::new(opts()).await.unwrap();
    let data = Bytes::from(vec![5u8; 100_000]);
    let t = client
        .seed("clock.bin".into(), data, Some(vec![tracker.url.clone()]))
        .await
        .unwrap();

    let seen = tracker.wait_for(4, Duration::from_secs(3 * 3600)).await;
    assert_eq!(seen[0].event, "started");
    for s in &seen[1..4] {
        assert_eq!(s.event, "", "a regular announce carries no event: {seen:?}");
    }
    assert_gap(&seen[0], &seen[1], Duration::from_secs(120));
    assert_gap(&seen[1], &seen[2], Duration::from_secs(300));
    assert_gap(&seen[2], &seen[3], Duration::from_secs(1800));

    client.remove(t.info_hash()).await.unwrap();
    let seen = tracker.wait_for(5, Duration::from_secs(60)).await;
    assert_eq!(seen[4].event, "stopped");
    client.destroy().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_tracker_is_retried_with_back_off_not_at_once() {
    let tracker = FakeTracker::start(vec![
        Reply::Failure("try later"),
        Reply::Failure("try later"),
        Reply::Interval(600),
    ])
    .await;
    let client = WebTorrent::new(opts()).await.unwrap();
    let _t = client
        .seed(
            "backoff.bin".into(),
            Bytes::from(vec![9u8; 50_000]),
            Some(vec![tracker.url.clone()]),
        )
        .await
        .unwrap();
    let seen = tracker.wait_for(4, Duration::from_secs(3600)).await;
    // The failed `started` is retried as `started`: 15 s, then 30 s (each plus up to 1/8
    // jitter); once it succeeds, the tracker's interval applies.
    assert_eq!(seen[0].event, "started");
    assert_eq!(seen[1].event, "started");
    assert_eq!(seen[2].event, "started");
    let first = seen[1].at - seen[0].at;
    let second = seen[2].at - seen[1].at;
    assert!(
        first >= Duration::from_secs(15) && first <= Duration::from_secs(15 * 9 / 8 + 2),
        "first retry after {first:?}"
    );
    assert!(
        second >= Duration::from_secs(30) && second <= Duration::from_secs(30 * 9 / 8 + 2),
        "second retry after {second:?}"
    );
    assert_eq!(seen[3].event, "");
    assert_gap(&seen[2], &seen[3], Duration::from_secs(600));
    client.destroy().await.unwrap();
}
