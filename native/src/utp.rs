//! uTP (BEP 29) on the client's UDP port: the core's [`Endpoint`] behind a mutex, fed by
//! the port's reader ([`crate::udp::UdpPort::run`]) and a timer task, and [`UtpStream`], a
//! connection read and written like a TCP stream.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Notify};
use tracing::debug;
use webtorrent_core::time::Time;
use webtorrent_core::utp::{Config, ConnKey, Endpoint, State, UtpError};

use crate::udp::UdpPort;

/// Longest the timer task sleeps while connections are open (timers are coarse: the
/// shortest retransmission timeout is 500 ms).
const TICK: Duration = Duration::from_millis(50);
/// Incoming connections waiting for the client's accept loop.
const ACCEPT_QUEUE: usize = 64;

#[derive(Default)]
struct Wakers {
    read: Option<Waker>,
    write: Option<Waker>,
}

struct Inner {
    ep: Endpoint,
    wakers: HashMap<ConnKey, Wakers>,
    buf: Vec<u8>,
}

/// The uTP endpoint of a client.
pub(crate) struct Utp {
    inner: Mutex<Inner>,
    port: UdpPort,
    start: Instant,
    timer: Notify,
    accepted: mpsc::Sender<UtpStream>,
}

impl std::fmt::Debug for Utp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Utp")
            .field("addr", &self.port.local_addr())
            .finish()
    }
}

fn io_error(e: Option<UtpError>) -> io::Error {
    match e {
        Some(UtpError::Refused) => io::ErrorKind::ConnectionRefused.into(),
        Some(UtpError::Reset) => io::ErrorKind::ConnectionReset.into(),
        Some(UtpError::TimedOut) => io::ErrorKind::TimedOut.into(),
        None => io::ErrorKind::NotConnected.into(),
    }
}

/// Datagrams fed to the endpoint under one lock; what they caused is sent and woken when
/// it is dropped.
pub(crate) struct Batch<'a> {
    utp: &'a Arc<Utp>,
    inner: MutexGuard<'a, Inner>,
    now: Time,
}

impl Batch<'_> {
    /// Feeds one datagram.
    pub fn feed(&mut self, from: SocketAddr, data: &[u8]) {
        trace_packet("received", from, data);
        self.inner.ep.handle_datagram(self.now, from, data);
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let now = self.now;
        self.utp.flush(&mut self.inner, now);
        while let Some((key, addr)) = self.inner.ep.accept() {
            match self.utp.accepted.try_reserve() {
                Ok(permit) => permit.send(UtpStream {
                    utp: self.utp.clone(),
                    key,
                    peer: addr,
                }),
                Err(_) => {
                    debug!(%addr, "uTP connection refused: the accept queue is full");
                    self.inner.ep.release(now, key);
                }
            }
        }
        self.utp.timer.notify_one();
    }
}

impl Utp {
    /// A uTP endpoint sending through `port`; incoming connections arrive on the receiver.
    pub fn new(port: UdpPort, seed: u64) -> (Arc<Utp>, mpsc::Receiver<UtpStream>) {
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let utp = Arc::new(Utp {
            inner: Mutex::new(Inner {
                ep: Endpoint::new(Config::default(), seed),
                wakers: HashMap::new(),
                buf: Vec::with_capacity(65536),
            }),
            port,
            start: Instant::now(),
            timer: Notify::new(),
            accepted: tx,
        });
        tokio::spawn(timer_loop(Arc::downgrade(&utp)));
        (utp, rx)
    }

    fn now(&self) -> Time {
        Time::from_duration(self.start.elapsed())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts feeding datagrams.
    pub fn batch(self: &Arc<Self>) -> Batch<'_> {
        Batch {
            utp: self,
            inner: self.lock(),
            now: self.now(),
        }
    }

    /// Sends what the endpoint has and wakes the streams it names.
    fn flush(&self, inner: &mut Inner, now: Time) {
        let Inner { ep, wakers, buf } = inner;
        while let Some(to) = ep.poll_transmit(now, buf) {
            trace_packet("sent", to, buf);
            self.port.try_send_to(buf, to);
        }
        while let Some(k) = ep.poll_wake() {
            if let Some(w) = wakers.get_mut(&k) {
                if let Some(w) = w.read.take() {
                    w.wake();
                }
                if let Some(w) = w.write.take() {
                    w.wake();
                }
            }
        }
    }

    /// Opens a connection to `addr`; fails when it is refused or unanswered.
    pub async fn connect(self: &Arc<Self>, addr: SocketAddr) -> io::Result<UtpStream> {
        let key = {
            let now = self.now();
            let mut g = self.lock();
            let key =
                g.ep.connect(now, addr)
                    .ok_or_else(|| io::Error::other("too many uTP connections"))?;
            self.flush(&mut g, now);
            key
        };
        self.timer.notify_one();
        // Dropped (released) if this future is.
        let stream = UtpStream {
            utp: self.clone(),
            key,
            peer: addr,
        };
        std::future::poll_fn(|cx| {
            let mut g = self.lock();
            let (state, error) = match g.ep.conn(key) {
                Some(c) => (c.state(), c.error()),
                None => (State::Closed, None),
            };
            match state {
                State::Connected => Poll::Ready(Ok(())),
                State::Closed => Poll::Ready(Err(io_error(error))),
                State::SynSent => {
                    g.wakers.entry(key).or_default().write = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await?;
        Ok(stream)
    }
}

/// Logs a packet's header at trace level.
fn trace_packet(what: &str, peer: SocketAddr, data: &[u8]) {
    if tracing::enabled!(tracing::Level::TRACE) {
        if let Ok(p) = webtorrent_core::utp::packet::decode(data) {
            let h = p.header;
            tracing::trace!(
                %peer, ty = ?h.ty, id = h.connection_id, seq = h.seq_nr, ack = h.ack_nr,
                wnd = h.wnd_size, sack = p.sack.is_some(), len = p.payload.len(), "uTP {what}"
            );
        }
    }
}

async fn timer_loop(utp: std::sync::Weak<Utp>) {
    loop {
        let Some(u) = utp.upgrade() else {
            return;
        };
        let wait = {
            let g = u.lock();
            if g.ep.is_empty() {
                None
            } else {
                let next =
                    g.ep.poll_timeout()
                        .map(|t| u.start + Duration::from_micros(t.as_micros()))
                        .unwrap_or_else(|| Instant::now() + TICK);
                Some(next.min(Instant::now() + TICK).max(Instant::now()))
            }
        };
        let notified = u.timer.notified();
        tokio::pin!(notified);
        match wait {
            None => {
                // No connection: sleep until one is made (checking now and then whether
                // the endpoint is gone).
                let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
                continue;
            }
            Some(at) => {
                // Wake-ups for every packet would be wasted here: sleep out the tick.
                tokio::time::sleep_until(at.into()).await;
            }
        }
        let now = u.now();
        let mut g = u.lock();
        g.ep.handle_timeout(now);
        u.flush(&mut g, now);
        let live: Vec<ConnKey> = g.wakers.keys().copied().collect();
        for k in live {
            if g.ep.conn(k).is_none() {
                g.wakers.remove(&k);
            }
        }
    }
}

/// One uTP connection, read and written like a TCP stream. Dropping it closes it (what was
/// written still goes out).
pub(crate) struct UtpStream {
    utp: Arc<Utp>,
    key: ConnKey,
    peer: SocketAddr,
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream")
            .field("peer", &self.peer)
            .finish()
    }
}

impl UtpStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

impl Drop for UtpStream {
    fn drop(&mut self) {
        let now = self.utp.now();
        let mut g = self.utp.lock();
        g.ep.release(now, self.key);
        g.wakers.remove(&self.key);
        self.utp.flush(&mut g, now);
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let now = self.utp.now();
        let mut g = self.utp.lock();
        let n = g.ep.read(self.key, buf.initialize_unfilled());
        if n > 0 {
            buf.advance(n);
            // A read may reopen our window: tell the peer.
            self.utp.flush(&mut g, now);
            return Poll::Ready(Ok(()));
        }
        match g
            .ep
            .conn(self.key)
            .map(|c| (c.state(), c.error(), c.is_eof()))
        {
            None => Poll::Ready(Ok(())),
            Some((_, _, true)) | Some((State::Closed, None, _)) => Poll::Ready(Ok(())),
            Some((State::Closed, e, _)) => Poll::Ready(Err(io_error(e))),
            Some(_) => {
                g.wakers.entry(self.key).or_default().read = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let now = self.utp.now();
        let mut g = self.utp.lock();
        let n = g.ep.write(self.key, data);
        if n > 0 {
            self.utp.flush(&mut g, now);
            return Poll::Ready(Ok(n));
        }
        match g.ep.conn(self.key).map(|c| (c.state(), c.error())) {
            None | Some((State::Closed, _)) => {
                let e = g.ep.conn(self.key).and_then(|c| c.error());
                Poll::Ready(Err(match e {
                    Some(e) => io_error(Some(e)),
                    None => io::ErrorKind::BrokenPipe.into(),
                }))
            }
            Some(_) if data.is_empty() => Poll::Ready(Ok(0)),
            Some(_) => {
                g.wakers.entry(self.key).or_default().write = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are the endpoint's to deliver from the moment it took them.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = self.utp.now();
        let mut g = self.utp.lock();
        g.ep.close(self.key);
        self.utp.flush(&mut g, now);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn endpoint() -> (Arc<Utp>, mpsc::Receiver<UtpStream>, SocketAddr) {
        let port = UdpPort::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = port.local_addr();
        let (utp, rx) = Utp::new(port.clone(), rand::random());
        tokio::spawn(port.run(Some(utp.clone()), None));
        (utp, rx, addr)
    }

    /// Two endpoints on loopback: 8 MiB one way and 1 MiB the other at once, byte for byte.
    #[tokio::test]
    async fn streams_move_bytes_both_ways_over_loopback() {
        let (a, _, _) = endpoint().await;
        let (_b, mut accepted, b_addr) = endpoint().await;
        let c = a.connect(b_addr).await.unwrap();
        let s = accepted.recv().await.unwrap();
        let x: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 + i / 4099) as u8).collect();
        let y: Vec<u8> = (0..1u32 << 20).map(|i| (i * 13 + 5) as u8).collect();
        let (x2, y2) = (x.clone(), y.clone());
        let server = tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(s);
            let mut got = vec![0u8; x2.len()];
            let (a, b) = tokio::join!(w.write_all(&y2), r.read_exact(&mut got));
            a.unwrap();
            b.unwrap();
            got
        });
        let (mut r, mut w) = tokio::io::split(c);
        let mut got = vec![0u8; y.len()];
        let (a, b) = tokio::join!(w.write_all(&x), r.read_exact(&mut got));
        a.unwrap();
        b.unwrap();
        assert!(got == y, "b -> a differs");
        assert!(server.await.unwrap() == x, "a -> b differs");
    }

    #[tokio::test]
    async fn a_closed_port_refuses_or_times_out() {
        let (a, _, _) = endpoint().await;
        // Nobody listens on UDP port 9 of 127.0.0.1 here: no answer, so a timeout (1 + 2 + 4 s).
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent = sock.local_addr().unwrap();
        let t = Instant::now();
        let e = a.connect(silent).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(t.elapsed() < Duration::from_secs(12));
    }
}
