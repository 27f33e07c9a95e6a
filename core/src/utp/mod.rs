//! uTP, the Micro Transport Protocol (BEP 29): reliable ordered byte streams over UDP with
//! LEDBAT congestion control (it yields to other traffic by keeping the queuing delay it
//! adds under a target), selective acks and bounded buffers. Desktop clients use it beside
//! TCP, and some listen on it only.
//!
//! Sans-IO like the rest of the core: an [`Endpoint`] is the client's UDP port for uTP. The
//! driver feeds it the datagrams that [`packet::looks_like_utp`] (the port is shared with
//! the DHT) and the time, carries out [`Endpoint::poll_transmit`], calls
//! [`Endpoint::handle_timeout`] at [`Endpoint::poll_timeout`], and reads and writes each
//! connection's bytes through the endpoint; [`Endpoint::poll_wake`] names the connections
//! whose readers or writers may go on.

mod conn;
pub mod packet;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

pub use conn::{Connection, State, UtpError};
use packet::{decode, encode, Header, PacketType};

use crate::rng::Rng;
use crate::time::Time;

/// uTP settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Bytes a connection buffers received (what it advertises as its window).
    pub recv_buffer: usize,
    /// Bytes a connection takes to send before `write` takes no more.
    pub send_buffer: usize,
    /// The queuing delay LEDBAT aims at (BEP 29: 100 ms).
    pub target_delay: Duration,
    /// The most the window grows in one round trip off the target, in bytes.
    pub max_cwnd_increase_per_rtt: usize,
    /// The largest congestion window, in bytes.
    pub max_cwnd: usize,
    /// The retransmission timeout before a round trip is measured.
    pub initial_timeout: Duration,
    /// The lowest retransmission timeout.
    pub min_timeout: Duration,
    /// SYNs sent again before a connect fails (each after twice the wait).
    pub syn_retries: u32,
    /// Timeouts in a row (each after twice the wait) before a connection fails.
    pub max_timeouts: u32,
    /// A packet after this long without sending (keeps NAT mappings alive).
    pub keepalive: Duration,
    /// How long a closed connection whose FIN was acknowledged waits for the peer's.
    pub linger: Duration,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most incoming connections waiting to be accepted.
    pub max_backlog: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            recv_buffer: 1 << 20,
            send_buffer: 1 << 20,
            target_delay: Duration::from_millis(100),
            max_cwnd_increase_per_rtt: 3000,
            max_cwnd: 8 << 20,
            initial_timeout: Duration::from_millis(1000),
            min_timeout: Duration::from_millis(500),
            syn_retries: 2,
            max_timeouts: 6,
            keepalive: Duration::from_secs(29),
            linger: Duration::from_secs(10),
            max_connections: 4096,
            max_backlog: 128,
        }
    }
}

/// Payload bytes of a data packet to `addr`: what fits a 1,500-byte Ethernet frame for IPv4
/// (loopback too: libtorrent reads at most about that much of a datagram), IPv6's guaranteed
/// 1,280-byte MTU for IPv6.
pub fn packet_size_for(addr: SocketAddr) -> usize {
    const UDP_AND_UTP: usize = 8 + packet::HEADER_LEN;
    if addr.is_ipv4() {
        1500 - 20 - UDP_AND_UTP
    } else {
        1280 - 40 - UDP_AND_UTP
    }
}

/// A connection of an [`Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey(pub u64);

#[derive(Debug)]
struct Entry {
    conn: Connection,
    addr: SocketAddr,
    /// The application let go of it: it is closed and removed once finished.
    released: bool,
    dirty: bool,
    wake: bool,
}

/// Most resets queued for packets of unknown connections (more are not answered).
const MAX_RESETS: usize = 64;

/// The uTP side of a UDP port: connections by peer address and id, incoming ones waiting
/// to be accepted, and what is to be sent.
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    conns: HashMap<ConnKey, Entry>,
    routes: HashMap<(SocketAddr, u16), ConnKey>,
    backlog: VecDeque<ConnKey>,
    dirty: VecDeque<ConnKey>,
    wake: VecDeque<ConnKey>,
    resets: VecDeque<(SocketAddr, Header)>,
    next_key: u64,
    rng: Rng,
    accepting: bool,
}

impl Endpoint {
    /// An endpoint with `config`; `seed` seeds connection ids and sequence numbers.
    pub fn new(config: Config, seed: u64) -> Self {
        Endpoint {
            config,
            conns: HashMap::new(),
            routes: HashMap::new(),
            backlog: VecDeque::new(),
            dirty: VecDeque::new(),
            wake: VecDeque::new(),
            resets: VecDeque::new(),
            next_key: 0,
            rng: Rng::new(seed),
            accepting: true,
        }
    }

    /// Whether incoming connections are taken (on by default); refused ones get a reset.
    pub fn set_accepting(&mut self, on: bool) {
        self.accepting = on;
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when no connection is held.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn insert(&mut self, conn: Connection, addr: SocketAddr) -> ConnKey {
        let key = ConnKey(self.next_key);
        self.next_key += 1;
        self.routes.insert((addr, conn.recv_id()), key);
        self.conns.insert(
            key,
            Entry {
                conn,
                addr,
                released: false,
                dirty: false,
                wake: false,
            },
        );
        self.mark(key);
        key
    }

    /// Opens a connection to `addr`; `None` when the endpoint holds its most.
    pub fn connect(&mut self, now: Time, addr: SocketAddr) -> Option<ConnKey> {
        if self.conns.len() >= self.config.max_connections {
            return None;
        }
        let recv_id = loop {
            let id = self.rng.next_u64() as u16;
            // The peer addresses us by `id` and knows our SYN by `id + 1` too.
            if !self.routes.contains_key(&(addr, id))
                && !self.routes.contains_key(&(addr, id.wrapping_add(1)))
            {
                break id;
            }
        };
        let conn = Connection::connect(now, self.config, recv_id, packet_size_for(addr));
        Some(self.insert(conn, addr))
    }

    /// The next incoming connection, with its peer's address.
    pub fn accept(&mut self) -> Option<(ConnKey, SocketAddr)> {
        while let Some(k) = self.backlog.pop_front() {
            if let Some(e) = self.conns.get(&k) {
                return Some((k, e.addr));
            }
        }
        None
    }

    fn mark(&mut self, key: ConnKey) {
        if let Some(e) = self.conns.get_mut(&key) {
            if !e.dirty {
                e.dirty = true;
                self.dirty.push_back(key);
            }
            if !e.wake {
                e.wake = true;
                self.wake.push_back(key);
            }
        }
    }

    fn queue_reset(&mut self, to: SocketAddr, h: &Header) {
        if self.resets.len() < MAX_RESETS {
            self.resets.push_back((
                to,
                Header {
                    ty: PacketType::Reset,
                    connection_id: h.connection_id,
                    timestamp_us: 0,
                    timestamp_diff_us: 0,
                    wnd_size: 0,
                    seq_nr: self.rng.next_u64() as u16,
                    ack_nr: h.seq_nr,
                },
            ));
        }
    }

    /// Feeds one datagram from `from` (bad ones are dropped).
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, data: &[u8]) {
        let Ok(p) = decode(data) else {
            return;
        };
        let h = p.header;
        let key = match h.ty {
            PacketType::Syn => {
                let recv_id = h.connection_id.wrapping_add(1);
                if let Some(&k) = self.routes.get(&(from, recv_id)) {
                    Some(k)
                } else if !self.accepting
                    || self.conns.len() >= self.config.max_connections
                    || self.backlog.len() >= self.config.max_backlog
                    || self.routes.contains_key(&(from, h.connection_id))
                {
                    self.queue_reset(from, &h);
                    None
                } else {
                    let seq = self.rng.next_u64() as u16;
                    let conn = Connection::accept(now, self.config, &h, seq, packet_size_for(from));
                    let k = self.insert(conn, from);
                    self.backlog.push_back(k);
                    return;
                }
            }
            PacketType::Reset => {
                // Its id is our receive id, or our send id (ours ± 1 then).
                let id = h.connection_id;
                [id, id.wrapping_sub(1), id.wrapping_add(1)]
                    .iter()
                    .filter_map(|i| self.routes.get(&(from, *i)).copied())
                    .find(|k| {
                        self.conns
                            .get(k)
                            .is_some_and(|e| e.conn.recv_id() == id || e.conn.send_id() == id)
                    })
            }
            _ => {
                let k = self.routes.get(&(from, h.connection_id)).copied();
                if k.is_none() {
                    self.queue_reset(from, &h);
                }
                k
            }
        };
        if let Some(k) = key {
            let mut gone = false;
            if let Some(e) = self.conns.get_mut(&k) {
                e.conn.handle_packet(now, &p);
                gone = e.released && e.conn.state() == State::Closed;
            }
            if gone {
                self.remove(k);
            } else {
                self.mark(k);
            }
        }
    }

    /// Writes the next datagram into `out` (cleared first) and returns where it goes.
    pub fn poll_transmit(&mut self, now: Time, out: &mut Vec<u8>) -> Option<SocketAddr> {
        out.clear();
        if let Some((to, h)) = self.resets.pop_front() {
            encode(&h, None, &[], out);
            return Some(to);
        }
        while let Some(k) = self.dirty.pop_front() {
            let Some(e) = self.conns.get_mut(&k) else {
                continue;
            };
            if e.conn.poll_transmit(now, out) {
                // Round robin: the others get their turn before its next packet.
                self.dirty.push_back(k);
                return Some(e.addr);
            }
            e.dirty = false;
        }
        None
    }

    /// A connection whose reader or writer may go on (data, room, an end or an error).
    pub fn poll_wake(&mut self) -> Option<ConnKey> {
        while let Some(k) = self.wake.pop_front() {
            if let Some(e) = self.conns.get_mut(&k) {
                e.wake = false;
                return Some(k);
            }
        }
        None
    }

    /// When [`Endpoint::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.conns
            .values()
            .filter_map(|e| e.conn.poll_timeout())
            .min()
    }

    /// Runs every connection's timers that are due, and forgets finished connections the
    /// application let go of.
    pub fn handle_timeout(&mut self, now: Time) {
        let due: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, e)| e.conn.poll_timeout().is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            if let Some(e) = self.conns.get_mut(&k) {
                e.conn.handle_timeout(now);
            }
            self.mark(k);
        }
        self.collect(now);
    }

    fn collect(&mut self, now: Time) {
        let done: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, e)| e.released && e.conn.is_finished(now))
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            self.remove(k);
        }
    }

    fn remove(&mut self, k: ConnKey) {
        if let Some(e) = self.conns.remove(&k) {
            self.routes.remove(&(e.addr, e.conn.recv_id()));
        }
    }

    /// The connection, to look at.
    pub fn conn(&self, key: ConnKey) -> Option<&Connection> {
        self.conns.get(&key).map(|e| &e.conn)
    }

    /// The peer's address.
    pub fn peer_addr(&self, key: ConnKey) -> Option<SocketAddr> {
        self.conns.get(&key).map(|e| e.addr)
    }

    /// Queues bytes to send; returns how many were taken.
    pub fn write(&mut self, key: ConnKey, data: &[u8]) -> usize {
        let n = match self.conns.get_mut(&key) {
            Some(e) => e.conn.write(data),
            None => 0,
        };
        if n > 0 {
            self.mark(key);
        }
        n
    }

    /// Takes received bytes; returns how many.
    pub fn read(&mut self, key: ConnKey, buf: &mut [u8]) -> usize {
        let n = match self.conns.get_mut(&key) {
            Some(e) => e.conn.read(buf),
            None => 0,
        };
        if n > 0 {
            if let Some(e) = self.conns.get_mut(&key) {
                if !e.dirty {
                    e.dirty = true;
                    self.dirty.push_back(key);
                }
            }
        }
        n
    }

    /// Sends a FIN after what was written.
    pub fn close(&mut self, key: ConnKey) {
        if let Some(e) = self.conns.get_mut(&key) {
            e.conn.close();
            self.mark(key);
        }
    }

    /// The application is done with the connection: it closes (what was written still
    /// goes out) and is forgotten once finished.
    pub fn release(&mut self, now: Time, key: ConnKey) {
        if let Some(e) = self.conns.get_mut(&key) {
            e.released = true;
            e.conn.release();
            if e.conn.is_finished(now) {
                self.remove(key);
            } else {
                self.mark(key);
            }
        }
    }
}
