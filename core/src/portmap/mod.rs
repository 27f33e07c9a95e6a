//! Port mapping: asking the home gateway (NAT router) to forward our listening port, so peers
//! on the internet can connect in. Three protocols, tried side by side as libtorrent does:
//! PCP (RFC 6887) and, for older gateways, NAT-PMP (RFC 6886) on UDP port 5351 of the
//! default gateway; and UPnP IGD (SSDP multicast discovery, then SOAP over HTTP).
//!
//! [`PortMapper`] is the sans-IO machine: the driver sends the datagrams and HTTP requests it
//! asks for ([`PortMapper::poll_output`]), feeds back what arrives
//! ([`PortMapper::handle_udp`], [`PortMapper::handle_http`]) and the time
//! ([`PortMapper::handle_timeout`]), and reads [`Event`]s: a mapping made (with its external
//! port, which is the port to announce), failed, or removed. Mappings are renewed at half
//! their lifetime and removed by [`PortMapper::stop`].
//!
//! - [`natpmp`], [`pcp`], [`upnp`]: the messages.

pub mod natpmp;
pub mod pcp;
pub mod upnp;

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::rng::Rng;
use crate::time::Time;

/// A transport protocol a mapping is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (peer connections).
    Tcp,
    /// UDP (uTP, DHT).
    Udp,
}

impl Protocol {
    /// Its IP protocol number (6, 17).
    pub fn ip_number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol with IP number `n`.
    pub fn from_ip_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// As UPnP names it.
    pub fn upnp_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.upnp_name())
    }
}

/// Why a gateway's message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortmapError {
    /// It is not a well-formed answer.
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    /// The gateway answered with an error code.
    #[error("the gateway refused (code {code}: {text})")]
    Refused {
        /// The protocol's result code.
        code: u16,
        /// What it means.
        text: &'static str,
    },
}

/// How a mapping was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Port Control Protocol.
    Pcp,
    /// NAT Port Mapping Protocol.
    NatPmp,
    /// UPnP Internet Gateway Device.
    Upnp,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Pcp => "PCP",
            Method::NatPmp => "NAT-PMP",
            Method::Upnp => "UPnP",
        })
    }
}

/// What to map and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Try PCP (then NAT-PMP, when the gateway does not speak PCP and `natpmp` is on).
    pub pcp: bool,
    /// Try NAT-PMP.
    pub natpmp: bool,
    /// Try UPnP IGD.
    pub upnp: bool,
    /// The default gateway, where PCP and NAT-PMP requests go; `None` leaves them out.
    pub gateway: Option<IpAddr>,
    /// Our address on the gateway's network: the mapping's target.
    pub local_ip: IpAddr,
    /// The port to map, for each protocol in `protocols`, asking for the same port outside.
    pub port: u16,
    /// The protocols to map.
    pub protocols: Vec<Protocol>,
    /// Lifetime asked for; renewed at half of what the gateway grants.
    pub lifetime: Duration,
    /// The mapping's description on UPnP gateways (shown in router admin pages).
    pub description: String,
}

impl Config {
    /// TCP and UDP `port` for `local_ip`, by every method, through `gateway`.
    pub fn new(local_ip: IpAddr, gateway: Option<IpAddr>, port: u16) -> Self {
        Config {
            pcp: true,
            natpmp: true,
            upnp: true,
            gateway,
            local_ip,
            port,
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            lifetime: DEFAULT_LIFETIME,
            description: "webtorrent-rs".to_string(),
        }
    }
}

/// Default lifetime asked for.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// First PCP / NAT-PMP retransmission; each next one waits twice as long.
pub const PMP_FIRST_RETRY: Duration = Duration::from_millis(250);
/// Sends of one PCP / NAT-PMP request before that version counts as unanswered.
pub const PMP_TRIES: u8 = 4;
/// SSDP searches sent, one per second, before UPnP counts as absent.
pub const SSDP_TRIES: u8 = 3;
/// After a method failed, it is tried again this much later (a gateway may come up later).
pub const RETRY_AFTER: Duration = Duration::from_secs(300);
/// Shortest renewal interval, whatever lifetime a gateway grants.
pub const MIN_RENEW: Duration = Duration::from_secs(30);
/// UPnP external ports tried on conflicts before giving up.
const UPNP_CONFLICT_TRIES: u8 = 4;

/// What the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A datagram (PCP / NAT-PMP to the gateway, SSDP to the multicast group), sent from an
    /// unconnected UDP socket whose answers go to [`PortMapper::handle_udp`].
    Udp {
        /// Destination.
        to: SocketAddr,
        /// Payload.
        data: Vec<u8>,
    },
    /// An HTTP request: connect over TCP to `to`, write `request`, read the answer until the
    /// device closes (at most [`upnp::MAX_HTTP_RESPONSE`] bytes), and give it to
    /// [`PortMapper::handle_http`] with `id`; a failure or a timeout (a few seconds) too.
    Http {
        /// Ties the answer to the request.
        id: u64,
        /// The device.
        to: SocketAddr,
        /// The request, complete.
        request: Vec<u8>,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A mapping was made or renewed: peers outside reach `port` at `external_port`.
    Mapped {
        /// How.
        method: Method,
        /// Which protocol.
        protocol: Protocol,
        /// The port outside: the one to announce.
        external_port: u16,
        /// The gateway's public address, when the method tells it.
        external_ip: Option<IpAddr>,
        /// How long it lasts (zero: until removed).
        lifetime: Duration,
    },
    /// A method could not map the port (it is tried again after [`RETRY_AFTER`]).
    Failed {
        /// The method.
        method: Method,
        /// Why, for people.
        reason: String,
    },
    /// A mapping was removed (after [`PortMapper::stop`]).
    Removed {
        /// How it was made.
        method: Method,
        /// Which protocol.
        protocol: Protocol,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PmpState {
    /// Asking (again), `attempt` sends so far, the next one at `next`.
    Requesting { pcp: bool, attempt: u8, next: Time },
    /// Granted until `until`; asked again at `renew_at`.
    Mapped { pcp: bool, renew_at: Time },
    /// Failed; tried again at `retry_at`.
    Waiting { retry_at: Time },
    /// Stopped.
    Done,
}

#[derive(Debug)]
struct PmpMapping {
    protocol: Protocol,
    nonce: [u8; 12],
    /// The external port asked for (the last one granted, for renewals).
    external_port: u16,
    state: PmpState,
    reported: bool,
}

#[derive(Debug, Clone)]
enum UpnpState {
    Searching { attempt: u8, next: Time },
    Describing { id: u64, location: upnp::HttpUrl },
    Ready(upnp::WanService),
    Waiting { retry_at: Time },
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UMapState {
    Idle,
    Adding { id: u64, tries: u8, permanent: bool },
    Mapped { renew_at: Option<Time> },
    Waiting { retry_at: Time },
    Deleting { id: u64 },
    Done,
}

#[derive(Debug)]
struct UpnpMapping {
    protocol: Protocol,
    external_port: u16,
    state: UMapState,
}

/// The port-mapping machine: see the [module](self) documentation.
#[derive(Debug)]
pub struct PortMapper {
    config: Config,
    rng: Rng,
    pmp: Vec<PmpMapping>,
    upnp: UpnpState,
    upnp_maps: Vec<UpnpMapping>,
    next_id: u64,
    stopping: bool,
    out: VecDeque<Output>,
    events: VecDeque<Event>,
}

fn backoff(attempt: u8) -> Duration {
    PMP_FIRST_RETRY * (1u32 << attempt.min(8))
}

impl PortMapper {
    /// A machine for `config`, starting at `now`; `seed` drives nonces and the ports tried
    /// on conflicts.
    pub fn new(config: Config, seed: u64, now: Time) -> Self {
        let mut rng = Rng::new(seed);
        let pmp_on = config.gateway.is_some() && (config.pcp || config.natpmp);
        let pmp = if pmp_on {
            config
                .protocols
                .iter()
                .map(|&protocol| {
                    let mut nonce = [0u8; 12];
                    rng.fill(&mut nonce);
                    PmpMapping {
                        protocol,
                        nonce,
                        external_port: config.port,
                        state: PmpState::Requesting {
                            pcp: config.pcp,
                            attempt: 0,
                            next: now,
                        },
                        reported: false,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let upnp = if config.upnp {
            UpnpState::Searching {
                attempt: 0,
                next: now,
            }
        } else {
            UpnpState::Off
        };
        let upnp_maps = config
            .protocols
            .iter()
            .map(|&protocol| UpnpMapping {
                protocol,
                external_port: config.port,
                state: UMapState::Idle,
            })
            .collect();
        let mut m = PortMapper {
            config,
            rng,
            pmp,
            upnp,
            upnp_maps,
            next_id: 0,
            stopping: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        m.handle_timeout(now);
        m
    }

    /// The next thing to send.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Time> {
        let pmp = self.pmp.iter().filter_map(|m| match m.state {
            PmpState::Requesting { next, .. } => Some(next),
            PmpState::Mapped { renew_at, .. } => Some(renew_at),
            PmpState::Waiting { retry_at } => Some(retry_at),
            PmpState::Done => None,
        });
        let upnp = match &self.upnp {
            UpnpState::Searching { next, .. } => Some(*next),
            UpnpState::Waiting { retry_at } => Some(*retry_at),
            _ => None,
        };
        let maps = self.upnp_maps.iter().filter_map(|m| match m.state {
            UMapState::Mapped { renew_at } => renew_at,
            UMapState::Waiting { retry_at } => Some(retry_at),
            _ => None,
        });
        if self.stopping {
            return None;
        }
        pmp.chain(upnp).chain(maps).min()
    }

    /// Whether, after [`stop`](Self::stop), nothing is left to wait for.
    pub fn is_idle(&self) -> bool {
        self.out.is_empty()
            && !self
                .upnp_maps
                .iter()
                .any(|m| matches!(m.state, UMapState::Deleting { .. }))
            && !matches!(self.upnp, UpnpState::Describing { .. })
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn pmp_to(&self) -> Option<SocketAddr> {
        self.config
            .gateway
            .map(|g| SocketAddr::new(g, natpmp::SERVER_PORT))
    }

    fn pmp_request(&self, m: &PmpMapping, pcp: bool, lifetime: u32) -> Vec<u8> {
        if pcp {
            pcp::map_request(
                m.nonce,
                self.config.local_ip,
                m.protocol,
                self.config.port,
                m.external_port,
                lifetime,
            )
            .to_vec()
        } else {
            natpmp::map_request(m.protocol, self.config.port, m.external_port, lifetime).to_vec()
        }
    }

    fn lifetime_secs(&self) -> u32 {
        u32::try_from(self.config.lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    /// Time passed: retransmissions, renewals, retries.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.stopping {
            return;
        }
        let Some(to) = self.pmp_to() else {
            return self.upnp_timeout(now);
        };
        let lifetime = self.lifetime_secs();
        for i in 0..self.pmp.len() {
            let state = self.pmp[i].state;
            let send = match state {
                PmpState::Requesting { pcp, attempt, next } if now >= next => {
                    if attempt >= PMP_TRIES {
                        if pcp && self.config.natpmp {
                            // No PCP answer: perhaps a NAT-PMP-only gateway that ignores
                            // other versions.
                            self.pmp[i].state = PmpState::Requesting {
                                pcp: false,
                                attempt: 0,
                                next: now,
                            };
                            Some(false)
                        } else {
                            self.pmp_failed(i, now, "the gateway did not answer".to_string(), pcp);
                            None
                        }
                    } else {
                        Some(pcp)
                    }
                }
                PmpState::Mapped { pcp, renew_at } if now >= renew_at => {
                    self.pmp[i].state = PmpState::Requesting {
                        pcp,
                        attempt: 0,
                        next: now,
                    };
                    Some(pcp)
                }
                PmpState::Waiting { retry_at } if now >= retry_at => {
                    self.pmp[i].state = PmpState::Requesting {
                        pcp: self.config.pcp,
                        attempt: 0,
                        next: now,
                    };
                    Some(self.config.pcp)
                }
                _ => None,
            };
            if let Some(pcp) = send {
                let data = self.pmp_request(&self.pmp[i], pcp, lifetime);
                self.out.push_back(Output::Udp { to, data });
                if let PmpState::Requesting { attempt, next, .. } = &mut self.pmp[i].state {
                    *next = now + backoff(*attempt);
                    *attempt += 1;
                }
            }
        }
        self.upnp_timeout(now);
    }

    fn pmp_failed(&mut self, i: usize, now: Time, reason: String, pcp: bool) {
        self.pmp[i].state = PmpState::Waiting {
            retry_at: now + RETRY_AFTER,
        };
        self.pmp[i].reported = false;
        // One event per method, not per protocol.
        let method = if pcp { Method::Pcp } else { Method::NatPmp };
        let already = self.pmp[..i]
            .iter()
            .any(|m| matches!(m.state, PmpState::Waiting { .. }));
        if !already {
            self.events.push_back(Event::Failed { method, reason });
        }
    }

    fn upnp_timeout(&mut self, now: Time) {
        match self.upnp {
            UpnpState::Searching { attempt, next } if now >= next => {
                if attempt >= SSDP_TRIES {
                    self.upnp = UpnpState::Waiting {
                        retry_at: now + RETRY_AFTER,
                    };
                    self.events.push_back(Event::Failed {
                        method: Method::Upnp,
                        reason: "no UPnP gateway answered the search".to_string(),
                    });
                } else {
                    self.out.push_back(Output::Udp {
                        to: upnp::SSDP_ADDR,
                        data: upnp::msearch(),
                    });
                    self.upnp = UpnpState::Searching {
                        attempt: attempt + 1,
                        next: now + Duration::from_secs(1),
                    };
                }
            }
            UpnpState::Waiting { retry_at } if now >= retry_at => {
                self.upnp = UpnpState::Searching {
                    attempt: 0,
                    next: now,
                };
                for m in &mut self.upnp_maps {
                    m.state = UMapState::Idle;
                }
                self.upnp_timeout(now);
            }
            UpnpState::Ready(_) => {
                for i in 0..self.upnp_maps.len() {
                    let due = match self.upnp_maps[i].state {
                        UMapState::Idle => true,
                        UMapState::Mapped { renew_at: Some(t) } => now >= t,
                        UMapState::Waiting { retry_at } => now >= retry_at,
                        _ => false,
                    };
                    if due {
                        self.upnp_add(i, 0, false);
                    }
                }
            }
            _ => {}
        }
    }

    fn upnp_add(&mut self, i: usize, tries: u8, permanent: bool) {
        let UpnpState::Ready(service) = &self.upnp else {
            return;
        };
        let Some(to) = upnp_target(service) else {
            return;
        };
        let m = &self.upnp_maps[i];
        let lease = if permanent { 0 } else { self.lifetime_secs() };
        let request = upnp::add_port_mapping(
            service,
            m.protocol,
            m.external_port,
            self.config.local_ip,
            self.config.port,
            &self.config.description,
            lease,
        );
        let id = self.id();
        self.upnp_maps[i].state = UMapState::Adding {
            id,
            tries,
            permanent,
        };
        self.out.push_back(Output::Http { id, to, request });
    }

    /// A datagram arrived on the mapper's socket from `from`.
    pub fn handle_udp(&mut self, now: Time, from: SocketAddr, data: &[u8]) {
        if self.stopping {
            return;
        }
        if Some(from) == self.pmp_to() {
            self.pmp_answer(now, data);
        } else if from.port() == upnp::SSDP_ADDR.port() {
            if let UpnpState::Searching { .. } = self.upnp {
                // The first gateway that answers; on the gateway's address when we know it.
                if self.config.gateway.is_some_and(|g| g != from.ip()) {
                    return;
                }
                if let Ok(location) = upnp::parse_ssdp_response(data, from.ip()) {
                    let Some(ip) = location.ip() else { return };
                    let id = self.id();
                    self.out.push_back(Output::Http {
                        id,
                        to: SocketAddr::new(ip, location.port),
                        request: upnp::get_request(&location),
                    });
                    self.upnp = UpnpState::Describing { id, location };
                }
            }
        }
    }

    fn pmp_answer(&mut self, now: Time, data: &[u8]) {
        if data.first() == Some(&0) {
            // NAT-PMP.
            match natpmp::parse_response(data) {
                Ok(natpmp::Response::Mapping {
                    protocol,
                    internal_port,
                    external_port,
                    lifetime_secs,
                    ..
                }) if internal_port == self.config.port => {
                    let Some(i) = self.pmp.iter().position(|m| {
                        m.protocol == protocol
                            && matches!(m.state, PmpState::Requesting { pcp: false, .. })
                    }) else {
                        return;
                    };
                    self.pmp_granted(i, now, false, external_port, None, lifetime_secs);
                }
                Ok(_) => {}
                Err(PortmapError::Refused { code: 1, .. }) => {
                    // A NAT-PMP gateway answering our PCP request: speak NAT-PMP.
                    for i in 0..self.pmp.len() {
                        if let PmpState::Requesting { pcp: true, .. } = self.pmp[i].state {
                            if self.config.natpmp {
                                self.pmp[i].state = PmpState::Requesting {
                                    pcp: false,
                                    attempt: 0,
                                    next: now,
                                };
                            } else {
                                self.pmp_failed(
                                    i,
                                    now,
                                    "the gateway speaks NAT-PMP only, which is off".into(),
                                    true,
                                );
                            }
                        }
                    }
                    self.handle_timeout(now);
                }
                Err(e) => {
                    let refused = matches!(e, PortmapError::Refused { .. });
                    if refused {
                        for i in 0..self.pmp.len() {
                            if let PmpState::Requesting { pcp: false, .. } = self.pmp[i].state {
                                self.pmp_failed(i, now, e.to_string(), false);
                            }
                        }
                    }
                }
            }
            return;
        }
        match pcp::parse_map_response(data) {
            Ok(r) => {
                let Some(i) = self
                    .pmp
                    .iter()
                    .position(|m| m.nonce == r.nonce && m.protocol == r.protocol)
                else {
                    return;
                };
                if !matches!(self.pmp[i].state, PmpState::Requesting { pcp: true, .. }) {
                    return;
                }
                let ip = (!r.external_address.is_unspecified()).then_some(r.external_address);
                self.pmp_granted(i, now, true, r.external_port, ip, r.lifetime_secs);
            }
            Err(PortmapError::Refused { code, text }) if data.len() >= 36 => {
                // Only answers to our requests (nonce) count.
                let Some(i) = self.pmp.iter().position(|m| data[24..36] == m.nonce) else {
                    return;
                };
                if !matches!(self.pmp[i].state, PmpState::Requesting { pcp: true, .. }) {
                    return;
                }
                if code == u16::from(pcp::UNSUPP_VERSION) && self.config.natpmp {
                    self.pmp[i].state = PmpState::Requesting {
                        pcp: false,
                        attempt: 0,
                        next: now,
                    };
                    self.handle_timeout(now);
                } else {
                    self.pmp_failed(
                        i,
                        now,
                        format!("the gateway refused (PCP code {code}: {text})"),
                        true,
                    );
                }
            }
            Err(_) => {}
        }
    }

    fn pmp_granted(
        &mut self,
        i: usize,
        now: Time,
        pcp: bool,
        external_port: u16,
        ip: Option<IpAddr>,
        lifetime_secs: u32,
    ) {
        let lifetime = Duration::from_secs(lifetime_secs.into());
        let m = &mut self.pmp[i];
        if lifetime_secs == 0 || external_port == 0 {
            m.state = PmpState::Waiting {
                retry_at: now + RETRY_AFTER,
            };
            self.events.push_back(Event::Failed {
                method: if pcp { Method::Pcp } else { Method::NatPmp },
                reason: "the gateway granted no lifetime or no port".to_string(),
            });
            return;
        }
        let changed = m.external_port != external_port || !m.reported;
        m.external_port = external_port;
        m.state = PmpState::Mapped {
            pcp,
            renew_at: now + (lifetime / 2).max(MIN_RENEW),
        };
        m.reported = true;
        let protocol = m.protocol;
        if changed {
            self.events.push_back(Event::Mapped {
                method: if pcp { Method::Pcp } else { Method::NatPmp },
                protocol,
                external_port,
                external_ip: ip,
                lifetime,
            });
        }
    }

    /// The answer to [`Output::Http`] `id`: the raw bytes read, or why there are none.
    pub fn handle_http(&mut self, now: Time, id: u64, answer: Result<&[u8], String>) {
        if let UpnpState::Describing { id: want, location } = &self.upnp {
            if *want == id {
                let location = location.clone();
                let service = answer
                    .map_err(|e| format!("the gateway's description could not be fetched: {e}"))
                    .and_then(|raw| {
                        let (status, body) =
                            upnp::parse_http_response(raw).map_err(|e| e.to_string())?;
                        if status != 200 {
                            return Err(format!("the gateway's description: HTTP status {status}"));
                        }
                        upnp::parse_description(&String::from_utf8_lossy(&body), &location)
                            .map_err(|e| e.to_string())
                    });
                match service {
                    Ok(s) if !self.stopping => {
                        self.upnp = UpnpState::Ready(s);
                        self.upnp_timeout(now);
                    }
                    Ok(_) => self.upnp = UpnpState::Off,
                    Err(reason) => {
                        self.upnp = UpnpState::Waiting {
                            retry_at: now + RETRY_AFTER,
                        };
                        self.events.push_back(Event::Failed {
                            method: Method::Upnp,
                            reason,
                        });
                    }
                }
                return;
            }
        }
        let Some(i) = self.upnp_maps.iter().position(|m| {
            matches!(m.state, UMapState::Adding { id: x, .. } | UMapState::Deleting { id: x } if x == id)
        }) else {
            return;
        };
        let outcome =
            answer.and_then(|raw| upnp::parse_soap_response(raw).map_err(|e| e.to_string()));
        match self.upnp_maps[i].state {
            UMapState::Deleting { .. } => {
                self.upnp_maps[i].state = UMapState::Done;
                let protocol = self.upnp_maps[i].protocol;
                if matches!(
                    outcome,
                    Ok(upnp::SoapOutcome::Ok(_))
                        | Ok(upnp::SoapOutcome::Fault {
                            code: upnp::fault::NO_SUCH_ENTRY,
                            ..
                        })
                ) {
                    self.events.push_back(Event::Removed {
                        method: Method::Upnp,
                        protocol,
                    });
                }
            }
            UMapState::Adding {
                tries, permanent, ..
            } => {
                if self.stopping {
                    // Made while we stopped: take it back.
                    if let Ok(upnp::SoapOutcome::Ok(_)) = outcome {
                        self.upnp_delete(i);
                    } else {
                        self.upnp_maps[i].state = UMapState::Done;
                    }
                    return;
                }
                let protocol = self.upnp_maps[i].protocol;
                match outcome {
                    Ok(upnp::SoapOutcome::Ok(_)) => {
                        let lease = if permanent {
                            Duration::ZERO
                        } else {
                            self.config.lifetime
                        };
                        let renew_at = (!permanent).then(|| now + (lease / 2).max(MIN_RENEW));
                        self.upnp_maps[i].state = UMapState::Mapped { renew_at };
                        let external_port = self.upnp_maps[i].external_port;
                        self.events.push_back(Event::Mapped {
                            method: Method::Upnp,
                            protocol,
                            external_port,
                            external_ip: None,
                            lifetime: lease,
                        });
                    }
                    Ok(upnp::SoapOutcome::Fault { code, .. })
                        if code == upnp::fault::ONLY_PERMANENT_LEASES && !permanent =>
                    {
                        self.upnp_add(i, tries, true);
                    }
                    Ok(upnp::SoapOutcome::Fault { code, .. })
                        if code == upnp::fault::CONFLICT && tries + 1 < UPNP_CONFLICT_TRIES =>
                    {
                        // Someone else has this port outside: another one, above 10000.
                        let p = 10_000 + self.rng.below(55_000) as u16;
                        self.upnp_maps[i].external_port = p;
                        self.upnp_add(i, tries + 1, permanent);
                    }
                    Ok(upnp::SoapOutcome::Fault { code, .. })
                        if code == upnp::fault::SAME_PORT_VALUES_REQUIRED
                            && self.upnp_maps[i].external_port != self.config.port =>
                    {
                        self.upnp_maps[i].external_port = self.config.port;
                        self.upnp_add(i, tries + 1, permanent);
                    }
                    Ok(upnp::SoapOutcome::Fault { code, description }) => {
                        self.upnp_maps[i].state = UMapState::Waiting {
                            retry_at: now + RETRY_AFTER,
                        };
                        self.events.push_back(Event::Failed {
                            method: Method::Upnp,
                            reason: format!(
                                "AddPortMapping {protocol} refused: {code} {description}"
                            ),
                        });
                    }
                    Err(e) => {
                        self.upnp_maps[i].state = UMapState::Waiting {
                            retry_at: now + RETRY_AFTER,
                        };
                        self.events.push_back(Event::Failed {
                            method: Method::Upnp,
                            reason: format!("AddPortMapping {protocol}: {e}"),
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn upnp_delete(&mut self, i: usize) {
        let UpnpState::Ready(service) = &self.upnp else {
            self.upnp_maps[i].state = UMapState::Done;
            return;
        };
        let Some(to) = upnp_target(service) else {
            return;
        };
        let m = &self.upnp_maps[i];
        let request = upnp::delete_port_mapping(service, m.protocol, m.external_port);
        let id = self.id();
        self.upnp_maps[i].state = UMapState::Deleting { id };
        self.out.push_back(Output::Http { id, to, request });
    }

    /// Removes every mapping made: PCP / NAT-PMP requests with lifetime 0 (not
    /// retransmitted) and UPnP `DeletePortMapping`s. The driver then sends what
    /// [`poll_output`](Self::poll_output) gives and waits, a little, for
    /// [`is_idle`](Self::is_idle).
    pub fn stop(&mut self, _now: Time) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(to) = self.pmp_to() {
            for i in 0..self.pmp.len() {
                match self.pmp[i].state {
                    PmpState::Mapped { pcp, .. } => {
                        let data = self.pmp_request(&self.pmp[i], pcp, 0);
                        self.out.push_back(Output::Udp { to, data });
                        self.events.push_back(Event::Removed {
                            method: if pcp { Method::Pcp } else { Method::NatPmp },
                            protocol: self.pmp[i].protocol,
                        });
                    }
                    // Asked and perhaps granted, the answer not here yet: remove it too
                    // (removing what a gateway does not hold is harmless).
                    PmpState::Requesting { pcp, attempt, .. } if attempt > 0 => {
                        let data = self.pmp_request(&self.pmp[i], pcp, 0);
                        self.out.push_back(Output::Udp { to, data });
                    }
                    _ => {}
                }
                self.pmp[i].state = PmpState::Done;
            }
        }
        for i in 0..self.upnp_maps.len() {
            match self.upnp_maps[i].state {
                UMapState::Mapped { .. } => self.upnp_delete(i),
                UMapState::Adding { .. } => {}
                _ => self.upnp_maps[i].state = UMapState::Done,
            }
        }
    }
}

fn upnp_target(service: &upnp::WanService) -> Option<SocketAddr> {
    service
        .control_url
        .ip()
        .map(|ip| SocketAddr::new(ip, service.control_url.port))
}

#[cfg(test)]
mod tests;
