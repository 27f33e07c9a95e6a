//! The WebRTC data-channel transport (`webtorrent::rtc`): two native peers, and native ⇄ the npm
//! WebRTC stack (`@roamhq/wrtc`, libwebrtc) through `rtc_node_peer.mjs`.
//!
//! These open UDP sockets, so they run only in a loopback-only network namespace:
//!
//! ```sh
//! cargo test -p webtorrent --test rtc --no-run
//! tests/netns.sh env CARGO_NET_OFFLINE=true cargo test -p webtorrent --test rtc --offline -- --ignored
//! # throughput, in release mode:
//! tests/netns.sh cargo test --release -p webtorrent --test rtc --offline -- --ignored --nocapture throughput
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use webtorrent::rtc::{
    answer_offer, create_offer, DataChannelStream, PendingAnswer, RtcConfig, RtcError,
};

fn random_data(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Offer from `a`, answer from `b`, exchanged in-process.
async fn connect(a: &RtcConfig, b: &RtcConfig) -> (DataChannelStream, DataChannelStream) {
    let (offer, offer_sdp) = create_offer(a).await.expect("create offer");
    let (answer, answer_sdp) = answer_offer(b, &offer_sdp).await.expect("answer offer");
    let (x, y) = tokio::join!(offer.accept_answer(&answer_sdp), answer.wait_open());
    (x.expect("offerer open"), y.expect("answerer open"))
}

/// Writes `data` in `chunk`-sized writes.
async fn write_data<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], chunk: usize) {
    for c in data.chunks(chunk) {
        w.write_all(c).await.expect("write");
    }
}

/// Reads exactly `len` bytes and returns their SHA-256.
async fn read_hash<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len());
        let n = r.read(&mut buf[..want]).await.expect("read");
        assert!(n > 0, "EOF with {left} bytes still expected");
        hasher.update(&buf[..n]);
        left -= n;
    }
    hasher.finalize().into()
}

/// Reads until EOF (or an error), failing after `limit`; returns the bytes read.
async fn read_to_end_within<R: AsyncRead + Unpin>(r: &mut R, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    match timeout(limit, r.read_to_end(&mut out)).await {
        Ok(_) => out,
        Err(_) => panic!("read did not end within {limit:?}"),
    }
}

/// Tests run one at a time: they count the process's sockets, and measure throughput.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tasks alive on this test's runtime, and UDP sockets open in the network namespace (which
/// holds only this process while the tests run).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Resources {
    tasks: usize,
    sockets: usize,
}

fn resources() -> Resources {
    let sockets = ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|s| s.lines().count().saturating_sub(1))
                .unwrap_or(0)
        })
        .sum();
    Resources {
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        sockets,
    }
}

/// Waits until the tasks and sockets are back to `baseline`, failing after 5 s.
async fn wait_released(baseline: Resources, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = resources();
        if now.tasks <= baseline.tasks && now.sockets <= baseline.sockets {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now:?} still in use, baseline {baseline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn offer_is_a_standard_non_trickle_sdp() {
    let _serial = SERIAL.lock().await;
    let (offer, sdp) = create_offer(&RtcConfig::loopback()).await.unwrap();
    for needle in [
        "v=0",
        "m=application ",
        "UDP/DTLS/SCTP webrtc-datachannel",
        "a=sctp-port:",
        "a=max-message-size:",
        "a=fingerprint:",
        "a=setup:actpass",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=candidate:",
        "127.0.0.1",
    ] {
        assert!(sdp.contains(needle), "offer lacks {needle:?}:\n{sdp}");
    }
    drop(offer);

    // mDNS needs a multicast interface, which a loopback-only namespace lacks: without it the
    // connection is built without mDNS rather than failing.
    let config = RtcConfig {
        mdns: true,
        ..RtcConfig::loopback()
    };
    let (offer, sdp) = create_offer(&config)
        .await
        .expect("offer with mDNS requested");
    assert!(sdp.contains("a=candidate:"));
    drop(offer);
}

/// A STUN server that answers every Binding request with `mapped` as the client's
/// (XOR-MAPPED-ADDRESS, RFC 5389), as one in front of a NAT would.
async fn fake_stun(
    mapped: std::net::SocketAddrV4,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<u32>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut answered = 0;
        let mut buf = [0u8; 1500];
        while let Ok(Ok((n, from))) =
            timeout(Duration::from_secs(20), sock.recv_from(&mut buf)).await
        {
            // A Binding request with the magic cookie.
            if n < 20 || buf[..2] != [0x00, 0x01] || buf[4..8] != [0x21, 0x12, 0xa4, 0x42] {
                continue;
            }
            let mut r = vec![0x01, 0x01, 0x00, 12, 0x21, 0x12, 0xa4, 0x42];
            r.extend_from_slice(&buf[8..20]);
            r.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            r.extend_from_slice(&(mapped.port() ^ 0x2112).to_be_bytes());
            let ip = u32::from(*mapped.ip()) ^ 0x2112_a442;
            r.extend_from_slice(&ip.to_be_bytes());
            sock.send_to(&r, from).await.unwrap();
            answered += 1;
        }
        answered
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn a_stun_server_gives_server_reflexive_candidates() {
    let _serial = SERIAL.lock().await;
    let public: std::net::SocketAddrV4 = "11.0.0.9:43210".parse().unwrap();
    let (stun, answers) = fake_stun(public).await;
    let config = RtcConfig {
        ice_servers: vec![webtorrent::rtc::IceServer {
            urls: vec![format!("stun:{stun}")],
            ..Default::default()
        }],
        ..RtcConfig::loopback()
    };
    let (offer, sdp) = create_offer(&config).await.unwrap();
    let srflx = sdp
        .lines()
        .find(|l| l.contains("typ srflx"))
        .unwrap_or_else(|| panic!("no server-reflexive candidate in the offer:\n{sdp}"));
    assert!(
        srflx.contains("11.0.0.9 43210") && srflx.contains("raddr 127.0.0.1"),
        "{srflx}"
    );
    drop(offer);
    answers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn native_peers_move_64_mib_both_ways() {
    let _serial = SERIAL.lock().await;
    const LEN: usize = 64 << 20;
    let config = RtcConfig::loopback();
    let (a, b) = connect(&config, &config).await;
    assert!(a.remote_addr().is_some_and(|r| r.ip().is_loopback()));
    assert_eq!(a.max_message_size(), config.max_message_size);
    assert_eq!(b.remote_max_message_size(), 256 << 10);
    assert_eq!(
        b.set_max_message_size(1 << 20),
        256 << 10,
        "capped at the remote's limit"
    );
    assert_eq!(b.set_max_message_size(32 << 10), 32 << 10);
    let data_a = random_data(LEN, 1);
    let data_b = random_data(LEN, 2);
    let (want_a, want_b) = (sha256(&data_a), sha256(&data_b));

    let start = Instant::now();
    let side = |stream: DataChannelStream, data: Vec<u8>| {
        tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(stream);
            let (_, got) =
                tokio::join!(write_data(&mut wr, &data, 100_000), read_hash(&mut rd, LEN));
            (got, rd.unsplit(wr))
        })
    };
    let (ra, rb) = tokio::join!(side(a, data_a), side(b, data_b));
    let (got_by_a, mut a) = ra.unwrap();
    let (got_by_b, mut b) = rb.unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "64 MiB each way concurrently in {secs:.2} s: {:.1} MB/s per direction",
        LEN as f64 / secs / 1e6
    );
    assert_eq!(got_by_b, want_a, "B received A's data intact");
    assert_eq!(got_by_a, want_b, "A received B's data intact");

    // A shuts down: B's reads end.
    a.shutdown().await.expect("shutdown");
    assert!(read_to_end_within(&mut b, Duration::from_secs(5))
        .await
        .is_empty());
    assert!(read_to_end_within(&mut a, Duration::from_secs(5))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn closing_one_side_ends_the_others_read() {
    let _serial = SERIAL.lock().await;
    let config = RtcConfig::loopback();
    let baseline = resources();

    // Graceful: everything written before shutdown arrives, then EOF.
    let (mut a, mut b) = connect(&config, &config).await;
    let data = random_data(3 << 20, 3);
    write_data(&mut a, &data, 50_000).await;
    let t = Instant::now();
    a.shutdown().await.expect("shutdown");
    eprintln!("shutdown took {:?}", t.elapsed());
    assert!(a.write_all(b"more").await.is_err(), "write after shutdown");
    let got = read_to_end_within(&mut b, Duration::from_secs(5)).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    assert!(b.write_all(&[0u8; 100_000]).await.is_err() || b.shutdown().await.is_err());
    drop((a, b));
    wait_released(baseline, "after a graceful close").await;

    // Dropping a stream: the other side's read ends promptly (not after ICE consent expiry).
    let (a, mut b) = connect(&config, &config).await;
    let t = Instant::now();
    drop(a);
    let got = read_to_end_within(&mut b, Duration::from_secs(5)).await;
    assert!(got.is_empty());
    eprintln!("remote read ended {:?} after the drop", t.elapsed());
    drop(b);
    wait_released(baseline, "after dropping both streams").await;

    // The same from the answering side.
    let (mut a, b) = connect(&config, &config).await;
    drop(b);
    assert!(read_to_end_within(&mut a, Duration::from_secs(5))
        .await
        .is_empty());
    drop(a);
    wait_released(baseline, "after dropping the answerer first").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn dropped_pending_offers_and_answers_leave_no_tasks() {
    let _serial = SERIAL.lock().await;
    let config = RtcConfig::loopback();
    let baseline = resources();

    let (offer, offer_sdp) = create_offer(&config).await.unwrap();
    let running = resources();
    assert!(
        running.tasks > baseline.tasks,
        "the peer connection runs a driver task"
    );
    assert!(running.sockets > baseline.sockets, "and has a UDP socket");
    drop(offer);
    wait_released(baseline, "after dropping a PendingOffer").await;

    let (offer, offer_sdp2) = create_offer(&config).await.unwrap();
    let (answer, _) = answer_offer(&config, &offer_sdp).await.unwrap();
    drop(answer);
    drop(offer);
    wait_released(baseline, "after dropping a PendingAnswer").await;

    // Half-way: the answer was applied, the channel never opened on the answering side.
    let (pending, answer_sdp) = answer_offer(&config, &offer_sdp2).await.unwrap();
    drop(pending);
    let _ = answer_sdp;

    // Many at once.
    let mut offers = Vec::new();
    for _ in 0..10 {
        offers.push(create_offer(&config).await.unwrap().0);
    }
    drop(offers);
    wait_released(baseline, "after dropping ten PendingOffers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn an_answer_that_never_comes_times_out() {
    let _serial = SERIAL.lock().await;
    let baseline = resources();
    let config = RtcConfig {
        answer_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(3),
        ..RtcConfig::loopback()
    };

    // No answer at all.
    let (offer, _) = create_offer(&config).await.unwrap();
    let t = Instant::now();
    let err = offer
        .wait_answer(std::future::pending::<Option<String>>())
        .await
        .unwrap_err();
    assert!(matches!(err, RtcError::AnswerTimeout(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    eprintln!("{err}");

    // The signalling channel gives up.
    let (offer, _) = create_offer(&config).await.unwrap();
    let err = offer.wait_answer(async { None }).await.unwrap_err();
    assert!(matches!(err, RtcError::AnswerTimeout(_)), "{err}");

    // A valid answer from a peer that is gone: the channel never opens.
    let (offer, offer_sdp) = create_offer(&config).await.unwrap();
    let (answer, answer_sdp) = answer_offer(&config, &offer_sdp).await.unwrap();
    drop(answer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let err = offer
        .wait_answer(async move { Some(answer_sdp) })
        .await
        .unwrap_err();
    eprintln!("{err} (after {:?})", t.elapsed());
    assert!(
        matches!(
            err,
            RtcError::ConnectTimeout(_) | RtcError::ConnectionFailed(_)
        ),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    wait_released(baseline, "after the timeouts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn garbage_sdp_is_an_error_not_a_panic() {
    let _serial = SERIAL.lock().await;
    let baseline = resources();
    let config = RtcConfig {
        connect_timeout: Duration::from_secs(2),
        gather_timeout: Duration::from_secs(2),
        ..RtcConfig::loopback()
    };
    for garbage in [
        "",
        "garbage",
        "v=0\r\n",
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "\u{0}\u{1}\u{2}\u{ff}",
    ] {
        let err = answer_offer(&config, garbage).await.unwrap_err();
        assert!(
            matches!(err, RtcError::InvalidSdp { .. }),
            "{garbage:?}: {err}"
        );
        let (offer, _) = create_offer(&config).await.unwrap();
        let err = offer.accept_answer(garbage).await.unwrap_err();
        assert!(
            matches!(err, RtcError::InvalidSdp { .. }),
            "{garbage:?}: {err}"
        );
    }

    // Descriptions of the wrong kind. An answer's text is an acceptable offer (it differs
    // only in `a=setup:active`), so that one may succeed; an offer is no answer to an offer.
    let (offer, offer_sdp) = create_offer(&config).await.unwrap();
    let (answer, answer_sdp) = answer_offer(&config, &offer_sdp).await.unwrap();
    if let Ok((pending, _)) = answer_offer(&config, &answer_sdp).await {
        drop(pending);
    }
    drop(answer);
    let (offer2, _) = create_offer(&config).await.unwrap();
    let err = offer2.accept_answer(&offer_sdp).await.unwrap_err();
    assert!(
        matches!(err, RtcError::InvalidSdp { .. }),
        "offer as an answer: {err}"
    );
    drop(offer);

    // Truncated and corrupted offers: an error or a connection attempt, never a panic.
    let lines: Vec<&str> = offer_sdp.split("\r\n").collect();
    for cut in (1..lines.len()).step_by(2) {
        let truncated = lines[..cut].join("\r\n");
        if let Ok((pending, _)) = answer_offer(&config, &truncated).await {
            drop(pending);
        }
    }
    for i in 0..lines.len() {
        let mut corrupted = lines.clone();
        let line = corrupted[i].replace(|c: char| c.is_ascii_digit(), "9");
        corrupted[i] = &line;
        if let Ok((pending, _)) = answer_offer(&config, &corrupted.join("\r\n")).await {
            drop(pending);
        }
    }
    wait_released(baseline, "after the garbage").await;
}

/// 256 MiB one way, native ⇄ native; with 16 KiB and with 64 KiB messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "opens UDP sockets: run in a loopback-only netns (tests/netns.sh)"]
async fn throughput_256_mib() {
    let _serial = SERIAL.lock().await;
    const LEN: usize = 256 << 20;
    let data = random_data(LEN, 4);
    let want = sha256(&data);
    for max_message_size in [16 << 10, 64 << 10] {
        let config = RtcConfig {
            max_message_size,
            ..RtcConfig::loopback()
        };
        let (mut a, mut b) = connect(&config, &config).await;
        assert_eq!(a.max_message_size(), max_message_size);
        let start = Instant::now();
        let (_, got) = tokio::join!(
            async {
                write_data(&mut a, &data, 256 << 10).await;
                a.shutdown().await.expect("shutdown");
            },
            read_hash(&mut b, LEN)
        );
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got, want);
        println!(
            "throughput native -> native, {} KiB messages: 256 MiB in {secs:.2} s = {:.1} MB/s",
            max_message_size >> 10,
            LEN as f64 / secs / 1e6
        );
    }
}

// ---- the npm WebRTC stack ----

/// `node native/tests/rtc_node_peer.mjs MODE`, with JSON lines on stdin/stdout.
struct NodePeer {
    child: Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl NodePeer {
    fn start(mode: &str) -> NodePeer {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let wrtc = root.join("../tests/interop/node_modules/@roamhq/wrtc");
        assert!(
            wrtc.exists(),
            "{} missing: run tests/interop/install.sh",
            wrtc.display()
        );
        let mut child = Command::new("node")
            .arg(root.join("tests/rtc_node_peer.mjs"))
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("[node] {line}"),
                }
            }
        });
        NodePeer { child, lines }
    }

    fn send(&mut self, value: serde_json::Value) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{value}").expect("write to node");
        stdin.flush().expect("flush");
    }

    async fn recv(&mut self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.lines.try_recv() {
                Ok(v) => return v,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => panic!("node exited"),
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    assert!(Instant::now() < deadline, "no line from node");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Waits for node to exit (it does once the channel closes); its exit status.
    async fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("node did not exit after the channel closed");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `len` random bytes through `stream` to the echoing node peer, reads them back.
async fn echo_through(stream: DataChannelStream, len: usize) -> DataChannelStream {
    let data = random_data(len, 5);
    let want = sha256(&data);
    let start = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (_, got) = tokio::join!(
        write_data(&mut wr, &data, 64 << 10),
        read_hash(&mut rd, len)
    );
    assert_eq!(got, want, "echoed data intact");
    eprintln!(
        "{} MiB echoed through node in {:.2} s",
        len >> 20,
        start.elapsed().as_secs_f64()
    );
    rd.unsplit(wr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and tests/interop installed; run in a loopback-only netns (tests/netns.sh)"]
async fn node_answers_our_offer_and_echoes_8_mib() {
    let _serial = SERIAL.lock().await;
    let config = RtcConfig::loopback();
    let mut node = NodePeer::start("answer");
    let (offer, offer_sdp) = create_offer(&config).await.unwrap();
    node.send(serde_json::json!({ "sdp": offer_sdp }));
    let answer = node.recv().await;
    assert_eq!(answer["type"], "answer");
    let answer_sdp = answer["sdp"].as_str().expect("answer sdp");
    let stream = timeout(Duration::from_secs(20), offer.accept_answer(answer_sdp))
        .await
        .expect("open in time")
        .expect("open");
    eprintln!(
        "node answered: sending {} B messages (node accepts {}), remote {:?}",
        stream.max_message_size(),
        stream.remote_max_message_size(),
        stream.remote_addr()
    );
    let mut stream = echo_through(stream, 8 << 20).await;
    stream.shutdown().await.expect("shutdown");
    assert!(
        node.wait_exit().await.success(),
        "node saw the channel close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and tests/interop installed; run in a loopback-only netns (tests/netns.sh)"]
async fn we_answer_a_node_offer_and_echo_8_mib() {
    let _serial = SERIAL.lock().await;
    let config = RtcConfig::loopback();
    let mut node = NodePeer::start("offer");
    let offer = node.recv().await;
    assert_eq!(offer["type"], "offer");
    let (pending, answer_sdp): (PendingAnswer, String) =
        answer_offer(&config, offer["sdp"].as_str().expect("offer sdp"))
            .await
            .unwrap();
    node.send(serde_json::json!({ "sdp": answer_sdp }));
    let stream = timeout(Duration::from_secs(20), pending.wait_open())
        .await
        .expect("open in time")
        .expect("open");
    let mut stream = echo_through(stream, 8 << 20).await;
    stream.shutdown().await.expect("shutdown");
    assert!(
        node.wait_exit().await.success(),
        "node saw the channel close"
    );
}
