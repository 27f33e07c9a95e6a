//! The client's UDP port: an IPv4 socket (and an IPv6 one beside it when listening on every
//! address) on the TCP port's number, shared by uTP and the DHT. One task reads it and hands
//! uTP packets to the uTP endpoint and everything else to the DHT node.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;
use webtorrent_core::utp::packet::looks_like_utp;

/// A datagram for the DHT: its bytes and sender.
pub(crate) type Datagram = (Vec<u8>, SocketAddr);

/// The bound sockets.
#[derive(Debug, Clone)]
pub(crate) struct UdpPort {
    v4: Arc<UdpSocket>,
    v6: Option<Arc<UdpSocket>>,
}

/// An IPv6 socket on `port` that leaves IPv4 to the other one.
fn bind_v6_only(port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
    UdpSocket::from_std(s.into())
}

impl UdpPort {
    /// Binds `addr`; with an unspecified IPv4 address, `[::]` on the same port too when the
    /// host has IPv6.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpPort> {
        let v4 = UdpSocket::bind(addr).await?;
        let local = v4.local_addr()?;
        let v6 = if addr.ip() == IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) {
            match bind_v6_only(local.port()) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    debug!(error = %e, "no IPv6 UDP socket");
                    None
                }
            }
        } else {
            None
        };
        Ok(UdpPort {
            v4: Arc::new(v4),
            v6,
        })
    }

    /// The first socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.v4
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Whether IPv6 destinations can be reached.
    pub fn has_ipv6(&self) -> bool {
        self.v6.is_some() || self.local_addr().is_ipv6()
    }

    fn socket_for(&self, to: SocketAddr) -> Option<&UdpSocket> {
        match (to.is_ipv6(), &self.v6) {
            (true, Some(s)) => Some(s),
            (true, None) if self.local_addr().is_ipv6() => Some(&self.v4),
            (true, None) => None,
            (false, _) => Some(&self.v4),
        }
    }

    /// Sends one datagram, waiting for room.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> std::io::Result<()> {
        match self.socket_for(to) {
            Some(s) => s.send_to(data, to).await.map(|_| ()),
            None => Err(std::io::ErrorKind::AddrNotAvailable.into()),
        }
    }

    /// Sends one datagram now or not at all (a full socket buffer drops it, as the network
    /// could have: uTP sends it again).
    pub fn try_send_to(&self, data: &[u8], to: SocketAddr) {
        if let Some(s) = self.socket_for(to) {
            if let Err(e) = s.try_send_to(data, to) {
                debug!(%to, error = %e, "UDP send dropped");
            }
        }
    }

    /// Reads both sockets for ever: uTP packets go to `utp` (in batches of what is already
    /// there), the rest to `dht` (dropped when it is behind or absent).
    pub async fn run(self, utp: Option<Arc<crate::utp::Utp>>, dht: Option<mpsc::Sender<Datagram>>) {
        let mut buf4 = vec![0u8; 65536];
        let mut buf6 = vec![0u8; 65536];
        loop {
            let (n, from, which) = tokio::select! {
                r = self.v4.recv_from(&mut buf4) => match r {
                    Ok((n, from)) => (n, from, 4),
                    // ICMP errors (a peer gone) surface here on some systems: keep going.
                    Err(e) => { debug!(error = %e, "UDP receive error"); continue }
                },
                r = recv(self.v6.as_deref(), &mut buf6) => match r {
                    Ok((n, from)) => (n, from, 6),
                    Err(e) => { debug!(error = %e, "UDP receive error (IPv6)"); continue }
                },
            };
            let data = if which == 4 { &buf4[..n] } else { &buf6[..n] };
            if looks_like_utp(data) {
                let Some(u) = &utp else { continue };
                // Take what else is already queued before the endpoint sends and wakes.
                let mut batch = u.batch();
                batch.feed(from, data);
                let sock = if which == 4 {
                    &self.v4
                } else {
                    self.v6.as_ref().unwrap_or(&self.v4)
                };
                let buf = if which == 4 { &mut buf4 } else { &mut buf6 };
                for _ in 0..64 {
                    let Ok((n, from)) = sock.try_recv_from(buf) else {
                        break;
                    };
                    let data = &buf[..n];
                    if looks_like_utp(data) {
                        batch.feed(from, data);
                    } else if let Some(d) = &dht {
                        let _ = d.try_send((data.to_vec(), from));
                    }
                }
            } else if let Some(d) = &dht {
                let _ = d.try_send((data.to_vec(), from));
            }
        }
    }
}

async fn recv(s: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
