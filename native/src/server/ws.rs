//! The WebSocket tracker: upgrades on any path, JSON text frames in and out, messages for other
//! connections through bounded outboxes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;
use webtorrent_core::tracker::ws::{
    ClientMessage, Failure, TrackerMessage, WsAction, MAX_MESSAGE_LEN,
};

use super::http::{full, text, Body};
use super::swarm::ConnId;
use super::{warn_dropped, Shared, WsOutbox};

/// Messages waiting for one connection, at most (besides the byte bound).
const OUTBOX_LEN: usize = 256;

/// How often an idle connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(60);

/// Whether the request asks for a WebSocket (`GET` with `Upgrade: websocket`).
pub(super) fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET && has_token(req.headers(), header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Answers the handshake and hands the connection to a task once hyper lets go of it.
pub(super) fn upgrade(
    mut req: Request<Incoming>,
    remote: SocketAddr,
    shared: Arc<Shared>,
) -> Response<Body> {
    if !has_token(req.headers(), header::CONNECTION, "upgrade") {
        return text(StatusCode::BAD_REQUEST, "missing Connection: upgrade\n");
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut r = text(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let Ok(slot) = shared.ws_slots.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket connections\n",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(8 * 1024)
                    .write_buffer_size(0)
                    .max_write_buffer_size(shared.config.ws_queue_bytes.max(MAX_MESSAGE_LEN) * 2)
                    .max_message_size(Some(MAX_MESSAGE_LEN))
                    .max_frame_size(Some(MAX_MESSAGE_LEN));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run(ws, remote, shared).await;
            }
            Err(e) => debug!("WebSocket upgrade from {remote} failed: {e}"),
        }
        drop(slot);
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// Serves one WebSocket until it closes, is idle too long or the server stops.
pub(super) async fn run<S>(ws: WebSocketStream<S>, remote: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = shared.next_conn_id();
    let (tx, mut rx) = mpsc::channel::<String>(OUTBOX_LEN);
    let queued = Arc::new(AtomicU64::new(0));
    shared.outboxes().insert(
        conn,
        WsOutbox {
            tx,
            queued: queued.clone(),
        },
    );
    shared.tracker().ws_open(conn, remote);
    debug!("WebSocket {} open from {remote}", conn.0);

    let (mut sink, mut stream) = ws.split();
    let mut shutdown = shared.shutdown.clone();
    let idle = shared.config.ws_idle_timeout.max(Duration::from_secs(1));
    let mut ping = tokio::time::interval(PING_EVERY.min(idle / 2).max(Duration::from_millis(500)));
    ping.tick().await;
    let mut last_heard = Instant::now();
    'conn: loop {
        tokio::select! {
            m = stream.next() => {
                let processed = match m {
                    Some(Ok(Message::Text(t))) => process(&shared, conn, remote, t.as_str()),
                    Some(Ok(Message::Binary(b))) => match std::str::from_utf8(&b) {
                        Ok(t) => process(&shared, conn, remote, t),
                        Err(_) => Ok(vec![failure("binary message is not UTF-8 text")]),
                    },
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        Err(format!("message too large ({e}); at most {MAX_MESSAGE_LEN} bytes"))
                    }
                    Some(Err(e)) => {
                        debug!("WebSocket {}: {e}", conn.0);
                        break;
                    }
                    Some(Ok(_)) => Ok(Vec::new()),
                };
                let replies = match processed {
                    Ok(r) => r,
                    Err(reason) => {
                        debug!("WebSocket {} refused: {reason}", conn.0);
                        let frame = CloseFrame {
                            code: CloseCode::Size,
                            reason: close_reason(&reason).into(),
                        };
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            sink.send(Message::Close(Some(frame))),
                        )
                        .await;
                        break;
                    }
                };
                last_heard = Instant::now();
                for r in replies {
                    if sink.send(Message::text(r)).await.is_err() {
                        break 'conn;
                    }
                }
            }
            out = rx.recv() => match out {
                Some(text) => {
                    queued.fetch_sub(text.len() as u64, Ordering::Relaxed);
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle {
                    debug!("WebSocket {} idle, closing", conn.0);
                    break;
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    shared.tracker().ws_close(conn);
    shared.outboxes().remove(&conn);
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    debug!("WebSocket {} closed", conn.0);
}

fn failure(reason: &str) -> String {
    TrackerMessage::Failure(Failure {
        action: None,
        reason: reason.to_string(),
        info_hash: None,
    })
    .to_json()
}

/// A close frame's reason: at most 123 bytes, cut at a character boundary.
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Handles one message: returns the replies for this connection and queues the rest, or the
/// reason to close the connection (a message or SDP over the size limits).
fn process(
    shared: &Shared,
    conn: ConnId,
    remote: SocketAddr,
    text: &str,
) -> Result<Vec<String>, String> {
    let msg = match ClientMessage::from_json(text) {
        Ok(m) => m,
        Err(e) if e.is_too_large() => return Err(e.to_string()),
        Err(e) => return Ok(vec![failure(&e.to_string())]),
    };
    if let ClientMessage::Announce(a) = &msg {
        if let Err(reason) = shared.admit(remote.ip(), &a.info_hash) {
            let refusal = TrackerMessage::Failure(Failure {
                action: Some(WsAction::Announce),
                reason,
                info_hash: Some(a.info_hash),
            });
            return Ok(vec![refusal.to_json()]);
        }
    }
    let now = shared.now();
    let sends = shared.tracker().ws_message(now, conn, msg);
    let mut mine = Vec::new();
    let mut others = Vec::new();
    for s in sends {
        let json = s.message.to_json();
        if s.conn == conn {
            mine.push(json);
        } else {
            others.push((s.conn, json));
        }
    }
    if !others.is_empty() {
        let limit = shared.config.ws_queue_bytes as u64;
        let boxes = shared.outboxes();
        for (to, json) in others {
            let Some(b) = boxes.get(&to) else { continue };
            let len = json.len() as u64;
            if b.queued.load(Ordering::Relaxed) + len > limit {
                warn_dropped(to);
                continue;
            }
            b.queued.fetch_add(len, Ordering::Relaxed);
            if b.tx.try_send(json).is_err() {
                b.queued.fetch_sub(len, Ordering::Relaxed);
                warn_dropped(to);
            }
        }
    }
    Ok(mine)
}
