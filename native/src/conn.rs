//! TCP peer connections: a reader task feeding the torrent task, a writer task draining a
//! per-connection queue, with back-pressure and optional rate limits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webtorrent_core::PeerKey;

use crate::limit::RateLimiter;
use crate::task::TaskMsg;

/// Bytes queued for a connection above which the torrent task stops feeding it.
pub(crate) const HIGH_WATER: usize = 1024 * 1024;
const LOW_WATER: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// The torrent task's handle on one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Arc<AtomicUsize>,
    blocked: Arc<AtomicBool>,
    tasks: [JoinHandle<()>; 2],
}

impl Conn {
    /// Starts reader and writer tasks for `stream`.
    pub fn spawn<S: AsyncRead + AsyncWrite + Send + 'static>(
        stream: S,
        key: PeerKey,
        events: mpsc::Sender<TaskMsg>,
        down: Option<Arc<RateLimiter>>,
        up: Option<Arc<RateLimiter>>,
    ) -> Conn {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let pending = Arc::new(AtomicUsize::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let ev = events.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            loop {
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(l) = &down {
                            l.take(n).await;
                        }
                        let data = buf.split().freeze();
                        if ev.send(TaskMsg::PeerData { key, data }).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = ev.send(TaskMsg::PeerClosed { key }).await;
        });
        let (p, b) = (pending.clone(), blocked.clone());
        let writer = tokio::spawn(async move {
            let mut staging = BytesMut::new();
            while let Some(first) = rx.recv().await {
                let mut n = first.len();
                let result = if let Ok(second) = rx.try_recv() {
                    // Several chunks are waiting: coalesce them into one write.
                    staging.clear();
                    staging.extend_from_slice(&first);
                    staging.extend_from_slice(&second);
                    n += second.len();
                    while staging.len() < 256 * 1024 {
                        match rx.try_recv() {
                            Ok(c) => {
                                n += c.len();
                                staging.extend_from_slice(&c);
                            }
                            Err(_) => break,
                        }
                    }
                    if let Some(l) = &up {
                        l.take(n).await;
                    }
                    wr.write_all(&staging).await
                } else {
                    if let Some(l) = &up {
                        l.take(n).await;
                    }
                    wr.write_all(&first).await
                };
                if result.is_err() {
                    break;
                }
                let left = p.fetch_sub(n, Ordering::AcqRel) - n;
                if left < LOW_WATER
                    && b.swap(false, Ordering::AcqRel)
                    && events.send(TaskMsg::Writable { key }).await.is_err()
                {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        Conn {
            tx,
            pending,
            blocked,
            tasks: [reader, writer],
        }
    }

    /// Whether the queue has room for more.
    pub fn has_room(&self) -> bool {
        if self.pending.load(Ordering::Acquire) < HIGH_WATER {
            true
        } else {
            self.blocked.store(true, Ordering::Release);
            // Re-check: the writer may have drained meanwhile.
            self.pending.load(Ordering::Acquire) < HIGH_WATER
        }
    }

    /// Queues bytes for the writer.
    pub fn send(&self, data: Bytes) {
        self.pending.fetch_add(data.len(), Ordering::AcqRel);
        let _ = self.tx.send(data);
    }

    /// Stops both tasks and closes the socket.
    pub fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Closes after the queued bytes are written (bounded wait), used when we drop a peer
    /// with a final message.
    pub async fn close_gracefully(self) {
        let [reader, writer] = self.tasks;
        reader.abort();
        drop(self.tx);
        let abort = writer.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), writer)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
