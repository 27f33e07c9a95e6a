//! Port mapping on the home router (PCP, NAT-PMP, UPnP IGD), driving
//! [`webtorrent_core::portmap::PortMapper`]: one UDP socket for the gateway's answers and
//! SSDP, one short TCP connection per UPnP request. The TCP port the router maps becomes the
//! port announced to trackers and the DHT.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use webtorrent_core::portmap::{self, upnp, Config, Event, Output, PortMapper};
use webtorrent_core::Time;

pub use webtorrent_core::portmap::{Method as PortMappingMethod, Protocol as PortMappingProtocol};

/// Settings of [`WebTorrentOptions::port_mapping`](crate::WebTorrentOptions::port_mapping).
#[derive(Debug, Clone)]
pub struct PortMappingOptions {
    /// Ask by PCP (RFC 6887).
    pub pcp: bool,
    /// Ask by NAT-PMP (RFC 6886), also when a gateway answers PCP requests as a NAT-PMP one.
    pub natpmp: bool,
    /// Ask by UPnP IGD (SSDP discovery, then SOAP).
    pub upnp: bool,
    /// The gateway for PCP and NAT-PMP; `None`: the default route's (Linux), else none.
    pub gateway: Option<IpAddr>,
    /// Lifetime asked for (renewed at half of what the gateway grants).
    pub lifetime: Duration,
}

impl Default for PortMappingOptions {
    fn default() -> Self {
        PortMappingOptions {
            pcp: true,
            natpmp: true,
            upnp: true,
            gateway: None,
            lifetime: portmap::DEFAULT_LIFETIME,
        }
    }
}

/// A mapping the router holds for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// How it was made.
    pub method: PortMappingMethod,
    /// Which protocol.
    pub protocol: PortMappingProtocol,
    /// The port outside.
    pub external_port: u16,
    /// The router's public address, when the method tells it.
    pub external_ip: Option<IpAddr>,
}

/// The default route's gateway, from `/proc/net/route` (Linux); `None` elsewhere or without
/// a default route.
pub fn default_gateway() -> Option<IpAddr> {
    gateway_in_route_table(&std::fs::read_to_string("/proc/net/route").ok()?)
}

/// The default IPv4 route's gateway in the text of `/proc/net/route`.
fn gateway_in_route_table(table: &str) -> Option<IpAddr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, flags) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        // RTF_UP | RTF_GATEWAY, destination 0.0.0.0.
        if *dest != "00000000" || flags & 0x3 != 0x3 {
            return None;
        }
        let g = u32::from_str_radix(gw, 16).ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(g.to_le_bytes())))
    })
}

/// The running mapper, owned by the client.
#[derive(Debug)]
pub(crate) struct Mapper {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    mappings: Arc<Mutex<BTreeMap<(u8, u8), PortMapping>>>,
}

fn key(m: PortMappingMethod, p: PortMappingProtocol) -> (u8, u8) {
    let m = match m {
        PortMappingMethod::Pcp => 0,
        PortMappingMethod::NatPmp => 1,
        PortMappingMethod::Upnp => 2,
    };
    (m, p.ip_number())
}

impl Mapper {
    /// Starts mapping `port` (TCP and UDP) for a client listening on `listen`; `None` when
    /// there is nothing to map (a loopback listen address, no route to a gateway).
    pub async fn start(
        opts: &PortMappingOptions,
        listen: IpAddr,
        port: u16,
        announce_port: Arc<AtomicU16>,
        changed: tokio::sync::watch::Sender<u16>,
        seed: u64,
    ) -> Option<Mapper> {
        if listen.is_loopback() || listen.is_ipv6() {
            debug!(%listen, "no port mapping for this listen address");
            return None;
        }
        let gateway = opts.gateway.or_else(default_gateway);
        // Our address on the gateway's network: the one the kernel picks to reach it (no
        // packet is sent by connecting a UDP socket).
        let toward = gateway
            .map(|g| SocketAddr::new(g, 9))
            .unwrap_or(upnp::SSDP_ADDR);
        let local_ip = if listen.is_unspecified() {
            let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.ok()?;
            if let Err(e) = probe.connect(toward).await {
                debug!(error = %e, "no route to a gateway: no port mapping");
                return None;
            }
            probe.local_addr().ok()?.ip()
        } else {
            listen
        };
        if local_ip.is_loopback() || gateway.is_none() && !opts.upnp {
            debug!("no gateway: no port mapping");
            return None;
        }
        let socket = match UdpSocket::bind(SocketAddr::new(local_ip, 0)).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "port mapping off: cannot open its UDP socket");
                return None;
            }
        };
        let _ = socket.set_multicast_ttl_v4(2);
        let config = Config {
            pcp: opts.pcp,
            natpmp: opts.natpmp,
            upnp: opts.upnp,
            gateway,
            local_ip,
            port,
            protocols: vec![portmap::Protocol::Tcp, portmap::Protocol::Udp],
            lifetime: opts.lifetime,
            description: format!("webtorrent-rs {port}"),
        };
        info!(%local_ip, gateway = ?gateway, port, "asking the router to forward the port (PCP/NAT-PMP/UPnP)");
        let mappings = Arc::new(Mutex::new(BTreeMap::new()));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(
            socket,
            config,
            seed,
            stop_rx,
            mappings.clone(),
            (announce_port, changed),
        ));
        Some(Mapper {
            stop: Mutex::new(Some(stop_tx)),
            task: Mutex::new(Some(task)),
            mappings,
        })
    }

    /// The mappings in place.
    pub fn mappings(&self) -> Vec<PortMapping> {
        self.mappings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Removes the mappings (waits at most a few seconds for the router).
    pub async fn shutdown(&self) {
        if let Some(tx) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// How long one UPnP HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long removal may take when the client stops.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

async fn http(to: SocketAddr, request: Vec<u8>) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut s = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
        s.write_all(&request).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        (&mut s)
            .take(upnp::MAX_HTTP_RESPONSE as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok(buf)
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", HTTP_TIMEOUT.as_secs())))
}

fn carry_out(
    m: &mut PortMapper,
    socket: &UdpSocket,
    http_tx: &mpsc::Sender<(u64, Result<Vec<u8>, String>)>,
) {
    while let Some(o) = m.poll_output() {
        match o {
            Output::Udp { to, data } => {
                if let Err(e) = socket.try_send_to(&data, to) {
                    debug!(%to, error = %e, "port mapping datagram not sent");
                }
            }
            Output::Http { id, to, request } => {
                let tx = http_tx.clone();
                tokio::spawn(async move {
                    let r = http(to, request).await;
                    let _ = tx.send((id, r)).await;
                });
            }
        }
    }
}

async fn run(
    socket: UdpSocket,
    config: Config,
    seed: u64,
    mut stop: oneshot::Receiver<()>,
    mappings: Arc<Mutex<BTreeMap<(u8, u8), PortMapping>>>,
    (announce_port, changed): (Arc<AtomicU16>, tokio::sync::watch::Sender<u16>),
) {
    let start = Instant::now();
    let now = || Time::from_duration(start.elapsed());
    let port = config.port;
    let mut m = PortMapper::new(config, seed, now());
    let (http_tx, mut http_rx) = mpsc::channel(16);
    let mut buf = vec![0u8; 2048];
    let update = |m: &mut PortMapper| {
        let mut map = mappings.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(e) = m.poll_event() {
            match e {
                Event::Mapped {
                    method,
                    protocol,
                    external_port,
                    external_ip,
                    lifetime,
                } => {
                    info!(%method, %protocol, port, external_port, external_ip = ?external_ip, lifetime_s = lifetime.as_secs(), "port mapped on the router");
                    map.insert(
                        key(method, protocol),
                        PortMapping {
                            method,
                            protocol,
                            external_port,
                            external_ip,
                        },
                    );
                }
                Event::Failed { method, reason } => {
                    debug!(%method, %reason, "port mapping failed");
                    map.retain(|_, v| v.method != method);
                }
                Event::Removed { method, protocol } => {
                    info!(%method, %protocol, "port mapping removed");
                    map.remove(&key(method, protocol));
                }
            }
        }
        // The TCP port peers outside reach us at: the first method's, else ours.
        let tcp = map
            .values()
            .find(|v| v.protocol == portmap::Protocol::Tcp)
            .map_or(port, |v| v.external_port);
        if announce_port.swap(tcp, Ordering::Relaxed) != tcp {
            info!(port = tcp, "announcing the router's external port");
            let _ = changed.send(tcp);
        }
    };
    loop {
        carry_out(&mut m, &socket, &http_tx);
        update(&mut m);
        let sleep = m
            .poll_timeout()
            .map(|t| Duration::from_micros(t.as_micros().saturating_sub(now().as_micros())))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    m.handle_udp(now(), from, &buf[..n]);
                }
            }
            Some((id, r)) = http_rx.recv() => {
                m.handle_http(now(), id, r.as_deref().map_err(|e| e.clone()));
            }
            _ = tokio::time::sleep(sleep) => m.handle_timeout(now()),
            _ = &mut stop => break,
        }
    }
    // Stopping (or the client is gone): take the mappings back.
    m.stop(now());
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    loop {
        carry_out(&mut m, &socket, &http_tx);
        update(&mut m);
        if m.is_idle() {
            break;
        }
        tokio::select! {
            Some((id, r)) = http_rx.recv() => m.handle_http(now(), id, r.as_deref().map_err(|e| e.clone())),
            _ = tokio::time::sleep_until(deadline) => {
                warn!("the router did not confirm removing the port mapping in time");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gateway_comes_from_the_route_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
lan0\t004DA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
lan0\t00000000\t014DA8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            gateway_in_route_table(table),
            Some(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1)))
        );
        let no_default = table.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(gateway_in_route_table(&no_default), None);
        assert_eq!(gateway_in_route_table("garbage\nx y"), None);
    }
}
