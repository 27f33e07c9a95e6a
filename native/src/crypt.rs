//! Message stream encryption (MSE/PE) on TCP connections: the policy, the encrypted dial
//! (with a plain retry when the policy allows it), the accepting side, and [`PeerStream`],
//! the stream every TCP peer connection reads and writes through.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use crate::utp::{Utp, UtpStream};
use bytes::{Buf, Bytes};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;
use webtorrent_core::mse::{Established, Handshake, Method, Methods, MseError, Rc4};
use webtorrent_core::InfoHash;

/// Whether TCP peer connections use message stream encryption (MSE/PE, the "protocol
/// encryption" of desktop clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Outgoing connections start with the encrypted handshake and are retried plain when
    /// the peer does not answer it; after the handshake, plaintext is chosen when the peer
    /// allows it (as libtorrent's default does: the handshake hides what the connection is,
    /// and RC4 on every byte cost more than half the throughput on loopback), RC4 when the
    /// peer requires it. Incoming encrypted and plain handshakes are both accepted.
    #[default]
    Prefer,
    /// Only encrypted connections, RC4 after the handshake: plain peers are refused.
    Require,
    /// Plain BitTorrent only: incoming encrypted handshakes are refused.
    Disable,
}

impl Encryption {
    /// The methods this policy allows after an encrypted handshake, if it allows one.
    fn methods(self) -> Option<Methods> {
        match self {
            Encryption::Prefer => Some(Methods::PREFER_PLAINTEXT),
            Encryption::Require => Some(Methods::RC4_ONLY),
            Encryption::Disable => None,
        }
    }

    /// Whether a plain (unencrypted) BitTorrent handshake is accepted.
    pub fn allows_plain(self) -> bool {
        self != Encryption::Require
    }

    /// Whether an encrypted handshake is accepted.
    pub fn allows_encrypted(self) -> bool {
        self != Encryption::Disable
    }
}

impl std::str::FromStr for Encryption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "prefer" | "preferred" | "enabled" | "enable" | "on" | "yes" | "allow" => {
                Ok(Encryption::Prefer)
            }
            "require" | "required" | "forced" | "force" | "always" => Ok(Encryption::Require),
            "disable" | "disabled" | "off" | "no" | "none" | "plain" | "plaintext" => {
                Ok(Encryption::Disable)
            }
            _ => Err(format!(
                "unknown encryption policy {s:?}: use prefer, require or disable"
            )),
        }
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encryption::Prefer => "prefer",
            Encryption::Require => "require",
            Encryption::Disable => "disable",
        })
    }
}

/// The connection under a [`PeerStream`]: TCP or uTP.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A uTP connection on the client's UDP port.
    Utp(UtpStream),
}

impl Transport {
    /// Turns Nagle's algorithm off on TCP (uTP sends at once anyway).
    pub fn set_nodelay(&self) {
        if let Transport::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    /// "tcp" or "utp", for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Tcp(_) => "tcp",
            Transport::Utp(_) => "utp",
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Utp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Transport::Utp(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Utp(s) => {
                // The endpoint copies what it takes: take every slice it has room for.
                let mut n = 0;
                for b in bufs.iter().filter(|b| !b.is_empty()) {
                    match Pin::new(&mut *s).poll_write(cx, b) {
                        Poll::Ready(Ok(k)) => {
                            n += k;
                            if k < b.len() {
                                break;
                            }
                        }
                        Poll::Ready(Err(e)) if n == 0 => return Poll::Ready(Err(e)),
                        Poll::Pending if n == 0 => return Poll::Pending,
                        _ => break,
                    }
                }
                Poll::Ready(Ok(n))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Utp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Utp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Most bytes encrypted ahead of the socket in one write.
const MAX_ENCRYPT_AHEAD: usize = 256 * 1024;

/// A TCP peer connection, encrypted with RC4 or plain, with bytes already received (and
/// decrypted) during its handshake served first.
#[derive(Debug)]
pub(crate) struct PeerStream {
    inner: Transport,
    /// Received during the handshake, already decrypted.
    early: Bytes,
    read: Option<Rc4>,
    write: Option<Rc4>,
    /// Encrypted bytes not yet taken by the socket.
    out: Vec<u8>,
    out_pos: usize,
    method: Option<Method>,
}

impl PeerStream {
    /// A plain connection.
    pub fn plain(inner: Transport) -> PeerStream {
        PeerStream {
            inner,
            early: Bytes::new(),
            read: None,
            write: None,
            out: Vec::new(),
            out_pos: 0,
            method: None,
        }
    }

    fn established(inner: Transport, e: Established) -> PeerStream {
        let (read, write) = match e.ciphers {
            Some((r, w)) => (Some(r), Some(w)),
            None => (None, None),
        };
        PeerStream {
            inner,
            early: Bytes::from(e.received),
            read,
            write,
            out: Vec::new(),
            out_pos: 0,
            method: Some(e.method),
        }
    }

    /// How the connection is protected: `None` for a plain BitTorrent handshake, else the
    /// method chosen in the encrypted one.
    pub fn method(&self) -> Option<Method> {
        self.method
    }

    /// The connection under it.
    pub fn transport(&self) -> &Transport {
        &self.inner
    }

    /// Writes out what is already encrypted.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some(r) = &mut this.read {
            r.apply(&mut buf.filled_mut()[start..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write.is_none() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        // Bytes once encrypted are ours to deliver (the caller never sees them again), so
        // they are written out before anything new is taken. The writer must flush when it
        // has nothing more to send, or the last of them would wait.
        ready!(this.poll_drain(cx))?;
        let Some(w) = this.write.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        let mut taken = 0;
        for b in bufs {
            let room = MAX_ENCRYPT_AHEAD - taken;
            if room == 0 {
                break;
            }
            let part = &b[..b.len().min(room)];
            let start = this.out.len();
            this.out.extend_from_slice(part);
            w.apply(&mut this.out[start..]);
            taken += part.len();
        }
        if taken == 0 {
            return Poll::Ready(Ok(0));
        }
        // Start writing now; what the socket does not take stays for the next call.
        match this.poll_drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(taken)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

fn entropy() -> [u8; 32] {
    rand::random()
}

fn mse_error(e: MseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs `hs` over `stream` until it is established.
async fn drive(
    stream: &mut Transport,
    hs: &mut Handshake,
    lookup: &(dyn Fn(&[u8; 20]) -> Option<InfoHash> + Sync),
) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(out) = hs.poll_transmit() {
            stream.write_all(&out).await?;
        }
        if hs.is_done() {
            return Ok(());
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        hs.handle_data(&buf[..n], lookup).map_err(mse_error)?;
    }
}

/// Longest an encrypted dial may wait before a plain retry (when the policy allows it).
const ENCRYPTED_ATTEMPT: Duration = Duration::from_secs(5);
/// How long a uTP dial goes on alone before TCP is tried beside it.
const UTP_HEAD_START: Duration = Duration::from_millis(500);

/// Dials `addr` by uTP (when `utp` is given) and TCP: uTP first, TCP beside it when uTP has
/// not connected within [`UTP_HEAD_START`] or failed; the first connected wins.
async fn dial(
    addr: SocketAddr,
    utp: Option<&Arc<Utp>>,
    deadline: Instant,
) -> io::Result<Transport> {
    let timed_out = || io::Error::from(io::ErrorKind::TimedOut);
    let tcp = |after: Duration| async move {
        tokio::time::sleep(after).await;
        let s = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())??;
        let _ = s.set_nodelay(true);
        Ok::<_, io::Error>(s)
    };
    let Some(utp) = utp else {
        return tcp(Duration::ZERO).await.map(Transport::Tcp);
    };
    let u = tokio::time::timeout_at(deadline, utp.connect(addr));
    tokio::pin!(u);
    let t = tcp(UTP_HEAD_START);
    tokio::pin!(t);
    let mut utp_failed = None;
    loop {
        tokio::select! {
            r = &mut u, if utp_failed.is_none() => match r {
                Ok(Ok(s)) => return Ok(Transport::Utp(s)),
                Ok(Err(e)) => {
                    debug!(%addr, "uTP connect failed ({e}); TCP");
                    utp_failed = Some(e);
                    // TCP now rather than after the head start.
                    t.set(tcp(Duration::ZERO));
                }
                Err(_) => return Err(timed_out()),
            },
            r = &mut t => return r.map(Transport::Tcp),
        }
    }
}

/// Most peers [`PlainPeers`] remembers.
const MAX_PLAIN_PEERS: usize = 4096;

/// Peers that failed our encrypted handshake and then took a plain one: under
/// [`Encryption::Prefer`] they are dialled plain from then on (the most recent
/// [`MAX_PLAIN_PEERS`]), so each dial does not pay for a failed attempt first.
#[derive(Debug, Default)]
pub(crate) struct PlainPeers {
    inner: std::sync::Mutex<(
        std::collections::HashSet<SocketAddr>,
        std::collections::VecDeque<SocketAddr>,
    )>,
}

impl PlainPeers {
    fn contains(&self, addr: SocketAddr) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .contains(&addr)
    }

    fn insert(&self, addr: SocketAddr) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *g;
        if set.insert(addr) {
            order.push_back(addr);
            if order.len() > MAX_PLAIN_PEERS {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }
}

/// Dials `addr` for torrent `info_hash` under `policy` (by uTP and TCP, see [`dial`]), all
/// within `timeout`: encrypted first unless the policy is [`Encryption::Disable`] or the
/// peer is one of `plain` (remembered there when it needs plain), plain again if that
/// fails and the policy allows plain.
pub(crate) async fn connect(
    addr: SocketAddr,
    info_hash: InfoHash,
    policy: Encryption,
    utp: Option<&Arc<Utp>>,
    plain: &PlainPeers,
    timeout: Duration,
) -> io::Result<PeerStream> {
    let deadline = Instant::now() + timeout;
    let methods = match policy.methods() {
        Some(_) if policy == Encryption::Prefer && plain.contains(addr) => None,
        m => m,
    };
    let Some(methods) = methods else {
        return dial(addr, utp, deadline).await.map(PeerStream::plain);
    };
    let mut stream = dial(addr, utp, deadline).await?;
    let attempt_end = if policy.allows_plain() {
        deadline.min(Instant::now() + ENCRYPTED_ATTEMPT)
    } else {
        deadline
    };
    let mut hs = Handshake::initiator(info_hash, methods, b"", entropy());
    let none = |_: &[u8; 20]| None;
    let result = tokio::time::timeout_at(attempt_end, drive(&mut stream, &mut hs, &none)).await;
    match result {
        Ok(Ok(())) => {
            if let Some(e) = hs.into_established() {
                debug!(%addr, transport = stream.kind(), method = ?e.method, "encrypted connection");
                return Ok(PeerStream::established(stream, e));
            }
            Err(io::Error::other(
                "encrypted handshake ended without a stream",
            ))
        }
        Ok(Err(e)) if !policy.allows_plain() => Err(e),
        Err(_) if !policy.allows_plain() => Err(io::ErrorKind::TimedOut.into()),
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer".to_string(),
            };
            debug!(%addr, "encrypted handshake failed ({why}); retrying plain");
            drop(stream);
            let s = dial(addr, utp, deadline).await.map(PeerStream::plain)?;
            plain.insert(addr);
            Ok(s)
        }
    }
}

/// True when `prefix` (the first bytes of an incoming connection) cannot be the start of a
/// plain BitTorrent handshake (`\x13BitTorrent protocol`), so it is an encrypted one.
pub(crate) fn looks_encrypted(prefix: &[u8]) -> bool {
    const PSTR: &[u8] = b"\x13BitTorrent protocol";
    let n = prefix.len().min(PSTR.len());
    prefix[..n] != PSTR[..n]
}

/// Answers an incoming encrypted handshake whose first bytes (`got`) are already read,
/// within `timeout`. `lookup` maps `SHA1("req2", info hash)` to a torrent we have.
pub(crate) async fn accept(
    mut stream: Transport,
    got: &[u8],
    policy: Encryption,
    timeout: Duration,
    lookup: &(dyn Fn(&[u8; 20]) -> Option<InfoHash> + Sync),
) -> io::Result<(PeerStream, InfoHash)> {
    let methods = policy
        .methods()
        .ok_or_else(|| io::Error::other("encrypted connections are disabled"))?;
    let mut hs = Handshake::responder(methods, entropy());
    let run = async {
        if !got.is_empty() {
            hs.handle_data(got, lookup).map_err(mse_error)?;
        }
        drive(&mut stream, &mut hs, lookup).await
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let e = hs
        .into_established()
        .ok_or_else(|| io::Error::other("encrypted handshake ended without a stream"))?;
    let info_hash = e.info_hash;
    debug!(method = ?e.method, "accepted an encrypted connection");
    Ok((PeerStream::established(stream, e), info_hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn plain_handshakes_are_told_apart() {
        assert!(!looks_encrypted(b"\x13BitTorrent protocol\0\0\0\0"));
        assert!(!looks_encrypted(b"\x13Bit"));
        assert!(looks_encrypted(b"\x13BitX"));
        assert!(looks_encrypted(&[0x42; 96]));
    }

    #[test]
    fn policies_parse_from_what_people_type() {
        assert_eq!("prefer".parse(), Ok(Encryption::Prefer));
        assert_eq!("Require".parse(), Ok(Encryption::Require));
        assert_eq!("forced".parse(), Ok(Encryption::Require));
        assert_eq!("off".parse(), Ok(Encryption::Disable));
        let e = "maybe".parse::<Encryption>().unwrap_err();
        assert!(e.contains("prefer, require or disable"), "{e}");
    }

    /// Accepts one connection for `info_hash` with the `prefer` policy.
    async fn accept_one(listener: TcpListener, info_hash: InfoHash) -> PeerStream {
        let (s, _) = listener.accept().await.unwrap();
        let want = webtorrent_core::mse::req2_hash(&info_hash);
        let lookup = move |h: &[u8; 20]| (*h == want).then_some(info_hash);
        let (s, ih) = accept(
            Transport::Tcp(s),
            b"",
            Encryption::Prefer,
            Duration::from_secs(5),
            &lookup,
        )
        .await
        .unwrap();
        assert_eq!(ih, info_hash);
        s
    }

    #[tokio::test]
    async fn two_preferring_peers_hide_the_handshake_and_send_plaintext() {
        let info_hash = InfoHash::from([9u8; 20]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut s = accept_one(listener, info_hash).await;
            let mut got = [0u8; 5];
            s.read_exact(&mut got).await.unwrap();
            (s.method(), got)
        });
        let mut c = connect(
            addr,
            info_hash,
            Encryption::Prefer,
            None,
            &PlainPeers::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(c.method(), Some(Method::Plaintext));
        c.write_all(b"hello").await.unwrap();
        c.flush().await.unwrap();
        let (method, got) = server.await.unwrap();
        assert_eq!(method, Some(Method::Plaintext));
        assert_eq!(&got, b"hello");
    }

    /// A dial and an accept over loopback: the bytes written on one side are read on the
    /// other, and on the wire they are not the plaintext.
    #[tokio::test]
    async fn encrypted_stream_round_trip() {
        let info_hash = InfoHash::from([7u8; 20]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut s = accept_one(listener, info_hash).await;
            assert_eq!(s.method(), Some(Method::Rc4));
            let mut got = vec![0u8; 100_000];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(&got).await.unwrap();
            s.flush().await.unwrap();
            got
        });
        let mut c = connect(
            addr,
            info_hash,
            Encryption::Require,
            None,
            &PlainPeers::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(c.method(), Some(Method::Rc4));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let bufs: Vec<io::IoSlice> = data.chunks(9000).map(io::IoSlice::new).collect();
        let mut sent = 0;
        while sent < data.len() {
            // Vectored writes may take part of the slices: resend from where they stopped.
            let rest: Vec<io::IoSlice> = data[sent..].chunks(9000).map(io::IoSlice::new).collect();
            sent += c.write_vectored(&rest).await.unwrap();
        }
        drop(bufs);
        c.flush().await.unwrap();
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, data);
        assert_eq!(server.await.unwrap(), data);
    }

    /// A plain-only peer: `prefer` falls back to plain, `require` fails.
    #[tokio::test]
    async fn prefer_falls_back_to_plain_and_require_does_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Closes connections whose first byte is not 19; echoes "ok" on plain ones.
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() && b[0] == 19 {
                        let _ = s.write_all(b"ok").await;
                    }
                });
            }
        });
        let ih = InfoHash::from([1u8; 20]);
        let plain = PlainPeers::default();
        for _ in 0..2 {
            let mut c = connect(
                addr,
                ih,
                Encryption::Prefer,
                None,
                &plain,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert_eq!(c.method(), None);
            c.write_all(&[19]).await.unwrap();
            let mut ok = [0u8; 2];
            c.read_exact(&mut ok).await.unwrap();
            assert_eq!(&ok, b"ok");
        }
        // The first dial tried encryption and then plain; the second went plain at once.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        let e = connect(
            addr,
            ih,
            Encryption::Require,
            None,
            &plain,
            Duration::from_secs(5),
        )
        .await;
        assert!(e.is_err());
    }
}
