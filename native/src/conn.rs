//! TCP peer connections: a reader task feeding the torrent task, a writer task draining a
//! per-connection queue, with back-pressure and optional rate limits.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use webtorrent_core::PeerKey;

use crate::limit::RateLimiter;
use crate::task::TaskMsg;

/// Bytes queued for a connection above which the torrent task stops feeding it (less under
/// an upload limit: [`high_water`]).
pub(crate) const HIGH_WATER: usize = 1024 * 1024;

/// The queue bound for a connection: [`HIGH_WATER`], or under an upload limit about an
/// eighth of a second of it (at least 64 KiB), so that a cancelled or urgent request does
/// not wait behind seconds of queued blocks.
fn high_water(up: Option<&RateLimiter>) -> usize {
    up.map_or(HIGH_WATER, |l| {
        usize::try_from(l.rate() / 8)
            .unwrap_or(HIGH_WATER)
            .clamp(64 * 1024, HIGH_WATER)
    })
}

/// Largest single write under an upload limit: about 1/20 s of it, 16 to 256 KiB.
fn write_cap(up: Option<&RateLimiter>) -> usize {
    up.map_or(usize::MAX, |l| {
        usize::try_from(l.rate() / 20)
            .unwrap_or(256 * 1024)
            .clamp(16 * 1024, 256 * 1024)
    })
}
/// Size of a connection's read buffer; reads fill what is left of it.
const READ_BUF: usize = 256 * 1024;
/// A read buffer with less room left than this is replaced (or reclaimed).
const MIN_READ: usize = 32 * 1024;
/// Most bytes a connection's reader sends ahead of the torrent task (at least [`READ_BUF`]).
const MAX_UNREAD: usize = 2 * 1024 * 1024;
/// Permits a chunk of `n` bytes takes from a connection's unread budget.
fn unread_permits(n: usize) -> u32 {
    n.min(MAX_UNREAD) as u32
}

/// Most chunks in one vectored write.
const MAX_IOV: usize = 64;

/// The torrent task's handle on one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Arc<AtomicUsize>,
    blocked: Arc<AtomicBool>,
    /// Queue bound ([`high_water`]).
    high: usize,
    /// Received bytes the torrent task may still have to take (see [`Conn::consumed`]).
    unread: Arc<Semaphore>,
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
        let high = high_water(up.as_deref());
        let low = high / 4;
        let cap = write_cap(up.as_deref());
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let pending = Arc::new(AtomicUsize::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let unread = Arc::new(Semaphore::new(MAX_UNREAD));
        let budget = unread.clone();
        let ev = events.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_BUF);
            loop {
                if buf.capacity() < MIN_READ {
                    // Reuses the allocation when every chunk cut from it is gone.
                    buf.reserve(READ_BUF);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(l) = &down {
                            l.take(n).await;
                        }
                        // Bounds what sits in the task's queue for this connection; the
                        // task gives the permits back once it has decoded the bytes.
                        match budget.acquire_many(unread_permits(n)).await {
                            Ok(p) => p.forget(),
                            Err(_) => return,
                        }
                        // Successive chunks are contiguous in one allocation: the decoder
                        // joins them without copying.
                        let data = buf.split();
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
            let mut queue: VecDeque<Bytes> = VecDeque::new();
            let mut open = true;
            loop {
                if queue.is_empty() {
                    if !open {
                        break;
                    }
                    // An encrypting stream may hold bytes it has taken but not yet written.
                    if wr.flush().await.is_err() {
                        break;
                    }
                    match rx.recv().await {
                        Some(c) => queue.push_back(c),
                        None => break,
                    }
                }
                while open && queue.len() < MAX_IOV {
                    match rx.try_recv() {
                        Ok(c) => queue.push_back(c),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                    }
                }
                // One vectored write for everything queued (headers and block payloads are
                // separate chunks): no staging copy.
                let n = {
                    let mut iov = [IoSlice::new(&[]); MAX_IOV];
                    let mut k = 0;
                    let mut room = cap;
                    for (slot, c) in iov.iter_mut().zip(queue.iter()) {
                        if room == 0 {
                            break;
                        }
                        let take = c.len().min(room);
                        *slot = IoSlice::new(&c[..take]);
                        room -= take;
                        k += 1;
                    }
                    match wr.write_vectored(&iov[..k]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    }
                };
                let mut left = n;
                while left > 0 {
                    let Some(front) = queue.front_mut() else {
                        break;
                    };
                    if front.len() <= left {
                        left -= front.len();
                        queue.pop_front();
                    } else {
                        front.advance(left);
                        left = 0;
                    }
                }
                if let Some(l) = &up {
                    l.take(n).await;
                }
                let left = p.fetch_sub(n, Ordering::AcqRel) - n;
                if left < low
                    && b.swap(false, Ordering::AcqRel)
                    && events.send(TaskMsg::Writable { key }).await.is_err()
                {
                    break;
                }
            }
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
        });
        Conn {
            tx,
            pending,
            blocked,
            high,
            unread,
            tasks: [reader, writer],
        }
    }

    /// The task has taken `n` bytes that this connection's reader sent.
    pub fn consumed(&self, n: usize) {
        self.unread.add_permits(unread_permits(n) as usize);
    }

    /// Whether the queue has room for more.
    pub fn has_room(&self) -> bool {
        if self.pending.load(Ordering::Acquire) < self.high {
            true
        } else {
            self.blocked.store(true, Ordering::Release);
            // Re-check: the writer may have drained meanwhile.
            self.pending.load(Ordering::Acquire) < self.high
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
