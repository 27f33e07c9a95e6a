//! WebSocket trackers (WebTorrent signaling) for the native client: one task and one socket per
//! tracker URL, shared by every torrent that lists it, driving the core
//! [`SignalMachine`]. Peer connections themselves are made by the torrent tasks (see
//! `task.rs`); this module only moves frames and relays the machine's requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};
use webtorrent_core::session::{Endpoint, Routed};
use webtorrent_core::signal::{AnnounceParams, Config, OfferId, Output, SignalMachine};
use webtorrent_core::{InfoHash, PeerId, Time};

use crate::task::TaskMsg;

/// Largest frame accepted from a tracker.
const MAX_FRAME: usize = 256 * 1024;
/// How long one frame may take to send, or the close handshake to finish, before the
/// tracker is taken as stalled (the socket is dropped and reconnected later).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands waiting for a tracker's task. Its task never blocks longer than
/// [`SEND_TIMEOUT`], so this is only reached by a tracker that is stalled for good; commands
/// beyond it are dropped (signaling is best effort: announces are retried, offers time out).
const CMD_QUEUE: usize = 1024;

/// A tracker task's command channel.
pub(crate) type CmdTx = mpsc::Sender<Cmd>;

/// Sends `cmd` to a tracker task without waiting: a full queue (a stalled tracker) drops it.
pub(crate) fn send_cmd(tx: &CmdTx, cmd: Cmd) {
    if let Err(mpsc::error::TrySendError::Full(cmd)) = tx.try_send(cmd) {
        debug!(
            ?cmd,
            "WebSocket tracker queue full (stalled tracker); command dropped"
        );
    }
}

/// What a torrent task asks of a tracker.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Route this torrent's signaling to `tx`.
    Register {
        info_hash: InfoHash,
        tx: mpsc::Sender<TaskMsg>,
    },
    /// Forget a torrent (after its `stopped`).
    Unregister { info_hash: InfoHash },
    /// Send an announce.
    Announce(AnnounceParams),
    /// An offer asked for with `RtcAction::CreateOffer` is ready.
    OfferCreated { offer_id: OfferId, sdp: String },
    /// An offer could not be made.
    OfferFailed { offer_id: OfferId },
    /// An answer asked for with `RtcAction::AnswerOffer` is ready.
    AnswerCreated {
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: OfferId,
        sdp: String,
    },
    /// A remote offer was refused or could not be answered.
    AnswerFailed {
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: OfferId,
    },
}

/// The client's WebSocket trackers.
#[derive(Debug)]
pub(crate) struct SignalPool {
    peer_id: PeerId,
    start: Instant,
    seed: u64,
    config: Config,
    trackers: Mutex<HashMap<String, CmdTx>>,
}

impl SignalPool {
    pub fn new(peer_id: PeerId, start: Instant, seed: u64, config: Config) -> Self {
        SignalPool {
            peer_id,
            start,
            seed,
            config,
            trackers: Mutex::new(HashMap::new()),
        }
    }

    /// The command channel of the tracker at `url`, starting its task if needed.
    pub fn tracker(&self, url: &str) -> CmdTx {
        let mut map = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(url).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(CMD_QUEUE);
        let seed = self.seed ^ (map.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let cfg = self.config.clone();
        tokio::spawn(run(
            url.to_string(),
            self.peer_id,
            self.start,
            seed,
            cfg,
            rx,
        ));
        map.insert(url.to_string(), tx.clone());
        tx
    }

    /// Closes every tracker (their tasks end once their torrents are gone).
    pub fn shutdown(&self) {
        self.trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the socket, within the machine's `connect_timeout` (its one owner).
async fn connect(url: String, timeout: Duration) -> Result<Ws, String> {
    if url.starts_with("wss:") {
        crate::tracker::ensure_crypto_provider();
    }
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(MAX_FRAME);
    cfg.max_frame_size = Some(MAX_FRAME);
    let fut = tokio_tungstenite::connect_async_with_config(url, Some(cfg), true);
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// One tracker's task.
async fn run(
    url: String,
    peer_id: PeerId,
    start: Instant,
    seed: u64,
    config: Config,
    mut rx: mpsc::Receiver<Cmd>,
) {
    let now = || Time::from_duration(start.elapsed());
    let connect_timeout = config.connect_timeout;
    let mut m = SignalMachine::new(peer_id, config, seed, now());
    let mut torrents: Endpoint<mpsc::Sender<TaskMsg>> = Endpoint::new();
    let mut ws: Option<Ws> = None;
    let mut connecting: Option<tokio::task::JoinHandle<Result<Ws, String>>> = None;
    let url_arc: Arc<str> = Arc::from(url.as_str());
    let mut cmds_open = true;
    loop {
        while let Some(out) = m.poll_output() {
            let out = match torrents.route(&url_arc, &mut m, now(), out) {
                Routed::Torrent(tx, input) => {
                    // Never wait for a busy torrent: the others on this tracker would wait
                    // too. What it misses is retried (announces) or times out (offers).
                    if tx.try_send(TaskMsg::input(input)).is_err() {
                        debug!(%url, "torrent busy or gone; signaling message dropped");
                    }
                    continue;
                }
                Routed::Handled => continue,
                Routed::Driver(out) => out,
            };
            match out {
                Output::Connect => {
                    if let Some(h) = connecting.take() {
                        h.abort();
                    }
                    ws = None;
                    debug!(%url, "connecting to WebSocket tracker");
                    connecting = Some(tokio::spawn(connect(url.clone(), connect_timeout)));
                }
                Output::Disconnect => {
                    if let Some(h) = connecting.take() {
                        h.abort();
                    }
                    if let Some(mut s) = ws.take() {
                        let _ = tokio::time::timeout(SEND_TIMEOUT, s.close(None)).await;
                    }
                }
                Output::Send(text) => {
                    if let Some(s) = ws.as_mut() {
                        let sent = tokio::time::timeout(SEND_TIMEOUT, s.send(Message::text(text)));
                        let failed = match sent.await {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(_) => Some(format!("no progress in {SEND_TIMEOUT:?}")),
                        };
                        if let Some(e) = failed {
                            debug!(%url, "send failed: {e}");
                            ws = None;
                            m.closed(now());
                        }
                    }
                }
                Output::Warning(w) => warn!(%url, "WebSocket tracker: {w}"),
                _ => {}
            }
        }
        if !cmds_open && torrents.is_empty() {
            break;
        }
        let wait = m
            .poll_timeout()
            .map(|t| t.saturating_since(now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            cmd = rx.recv(), if cmds_open => match cmd {
                None => {
                    cmds_open = false;
                    for ih in torrents.clear() {
                        m.remove_torrent(now(), ih);
                    }
                }
                Some(Cmd::Register { info_hash, tx }) => {
                    torrents.insert(info_hash, tx);
                    m.add_torrent(now(), info_hash);
                }
                Some(Cmd::Unregister { info_hash }) => {
                    torrents.remove(&info_hash);
                    m.remove_torrent(now(), info_hash);
                }
                Some(Cmd::Announce(p)) => m.announce(now(), p),
                Some(Cmd::OfferCreated { offer_id, sdp }) => m.offer_created(now(), offer_id, sdp),
                Some(Cmd::OfferFailed { offer_id }) => m.offer_failed(now(), offer_id),
                Some(Cmd::AnswerCreated { info_hash, peer_id, offer_id, sdp }) => {
                    m.answer_created(now(), info_hash, peer_id, offer_id, sdp)
                }
                Some(Cmd::AnswerFailed { info_hash, peer_id, offer_id }) => {
                    m.answer_failed(now(), info_hash, peer_id, offer_id)
                }
            },
            res = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match res {
                    Ok(Ok(s)) => {
                        debug!(%url, "WebSocket tracker connected");
                        ws = Some(s);
                        m.connected(now());
                    }
                    Ok(Err(e)) => {
                        debug!(%url, "WebSocket tracker connection failed: {e}");
                        m.connect_failed(now(), &e);
                    }
                    Err(_) => m.closed(now()),
                }
            }
            frame = async { ws.as_mut().expect("guarded").next().await }, if ws.is_some() => {
                match frame {
                    Some(Ok(Message::Text(t))) => m.handle_message(now(), t.as_str()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        debug!(%url, "WebSocket tracker closed");
                        ws = None;
                        m.closed(now());
                    }
                    Some(Ok(_)) => {}
                }
            }
            _ = tokio::time::sleep(wait) => m.handle_timeout(now()),
        }
    }
    if let Some(h) = connecting.take() {
        h.abort();
    }
    if let Some(mut s) = ws.take() {
        let _ = tokio::time::timeout(SEND_TIMEOUT, s.close(None)).await;
    }
    debug!(%url, "WebSocket tracker task ended");
}
