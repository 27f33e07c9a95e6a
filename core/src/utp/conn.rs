//! One uTP connection: the handshake, sending with LEDBAT congestion control, selective
//! acks and retransmission, receiving in order within a bounded window, and closing.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use thiserror::Error;

use super::packet::{encode, Header, Packet, PacketType};
use super::Config;
use crate::time::Time;

/// `a` comes before `b` in sequence-number order (wrapping).
fn seq_lt(a: u16, b: u16) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000
}

fn seq_le(a: u16, b: u16) -> bool {
    a == b || seq_lt(a, b)
}

/// `a` is below `b` on the wrapping microsecond clock.
fn micros_lt(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000_0000
}

/// Most packets kept out of order ahead of the next one expected.
const MAX_REORDER: u16 = 4096;
/// Bytes of the selective-ack bitmask we send (256 packets past the next expected).
const SACK_BYTES: usize = 32;
/// How long the delay history's halves last (the base delay is the minimum of two).
const BASE_DELAY_HALF: Duration = Duration::from_secs(60);
/// Longest retransmission timeout after back-off.
const MAX_RTO: Duration = Duration::from_secs(30);

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Our SYN is out, no answer yet.
    SynSent,
    /// Both ways open (until each side's FIN).
    Connected,
    /// Done: both FINs acknowledged, reset, or failed ([`Connection::error`] says which).
    Closed,
}

/// Why a connection ended before a clean close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UtpError {
    /// The peer answered our SYN with a reset.
    #[error("the peer refused the uTP connection")]
    Refused,
    /// The peer reset the connection.
    #[error("the peer reset the uTP connection")]
    Reset,
    /// No answer within the retries.
    #[error("the uTP connection timed out")]
    TimedOut,
}

/// A packet sent and not yet acknowledged.
#[derive(Debug)]
struct Sent {
    seq: u16,
    ty: PacketType,
    payload: Vec<u8>,
    last_sent: Time,
    transmissions: u32,
    /// Acknowledged by a selective ack (not yet cumulatively).
    sacked: bool,
    /// Waiting to be (re)sent; not counted in the window while waiting.
    resend: bool,
    /// Already resent once for a loss seen in acks.
    fast_resent: bool,
}

/// One uTP connection, fed packets and time, polled for packets to send.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    error: Option<UtpError>,
    recv_id: u16,
    send_id: u16,
    packet_size: usize,
    /// The next sequence number to send.
    seq_nr: u16,
    /// The last sequence number received in order.
    ack_nr: u16,
    // Sending.
    unsent: VecDeque<u8>,
    in_flight: VecDeque<Sent>,
    /// Payload bytes sent and neither acknowledged nor waiting to be resent.
    cur_window: usize,
    cwnd: usize,
    slow_start: bool,
    ssthresh: usize,
    their_wnd: usize,
    /// Losses at or before this sequence number cut the window no further.
    loss_seq: u16,
    dup_acks: u32,
    last_ack_seen: Option<u16>,
    rtt_us: u64,
    rtt_var_us: u64,
    have_rtt: bool,
    rto: Duration,
    rto_deadline: Option<Time>,
    timeouts: u32,
    // Delay measurement.
    reply_micro: u32,
    base_delay: Option<u32>,
    base_prev: Option<u32>,
    base_rotate_at: Time,
    last_delay: Option<u32>,
    // Receiving.
    readable: VecDeque<u8>,
    reorder: HashMap<u16, Vec<u8>>,
    reorder_bytes: usize,
    eof_seq: Option<u16>,
    got_eof: bool,
    ack_pending: bool,
    // Closing.
    close_requested: bool,
    fin_sent: bool,
    fin_acked: bool,
    closed_at: Option<Time>,
    last_send: Time,
    zero_window_probe: Option<Time>,
    probe_ok: bool,
    syn_ack_pending: bool,
    released: bool,
    /// The first sequence number we used (what our SYN answer names).
    first_seq: u16,
    sack_buf: [u8; SACK_BYTES],
}

fn micros(now: Time) -> u32 {
    now.as_micros() as u32
}

impl Connection {
    fn new(now: Time, config: Config, recv_id: u16, send_id: u16, packet_size: usize) -> Self {
        let packet_size = packet_size.max(64);
        Connection {
            state: State::SynSent,
            error: None,
            recv_id,
            send_id,
            packet_size,
            seq_nr: 1,
            ack_nr: 0,
            unsent: VecDeque::new(),
            in_flight: VecDeque::new(),
            cur_window: 0,
            cwnd: packet_size * 2,
            slow_start: true,
            ssthresh: config.recv_buffer.max(config.send_buffer),
            their_wnd: packet_size,
            loss_seq: 0,
            dup_acks: 0,
            last_ack_seen: None,
            rtt_us: 0,
            rtt_var_us: 0,
            have_rtt: false,
            rto: config.initial_timeout,
            rto_deadline: None,
            timeouts: 0,
            reply_micro: 0,
            base_delay: None,
            base_prev: None,
            base_rotate_at: now + BASE_DELAY_HALF,
            last_delay: None,
            readable: VecDeque::new(),
            reorder: HashMap::new(),
            reorder_bytes: 0,
            eof_seq: None,
            got_eof: false,
            ack_pending: false,
            close_requested: false,
            fin_sent: false,
            fin_acked: false,
            closed_at: None,
            last_send: now,
            zero_window_probe: None,
            probe_ok: false,
            syn_ack_pending: false,
            released: false,
            first_seq: 1,
            sack_buf: [0; SACK_BYTES],
            config,
        }
    }

    /// A connection we open: our SYN goes out at the first poll. `recv_id` is the id the
    /// peer will address us by.
    pub fn connect(now: Time, config: Config, recv_id: u16, packet_size: usize) -> Self {
        let mut c = Connection::new(now, config, recv_id, recv_id.wrapping_add(1), packet_size);
        c.in_flight.push_back(Sent {
            seq: 1,
            ty: PacketType::Syn,
            payload: Vec::new(),
            last_sent: now,
            transmissions: 0,
            sacked: false,
            resend: true,
            fast_resent: false,
        });
        c.seq_nr = 2;
        c
    }

    /// A connection a peer opened with `syn`; `seq_nr` is our random first sequence number.
    pub fn accept(
        now: Time,
        config: Config,
        syn: &Header,
        seq_nr: u16,
        packet_size: usize,
    ) -> Self {
        let id = syn.connection_id;
        let mut c = Connection::new(now, config, id.wrapping_add(1), id, packet_size);
        c.state = State::Connected;
        c.seq_nr = seq_nr;
        c.first_seq = seq_nr;
        c.loss_seq = seq_nr.wrapping_sub(1);
        c.ack_nr = syn.seq_nr;
        c.their_wnd = syn.wnd_size as usize;
        c.reply_micro = micros(now).wrapping_sub(syn.timestamp_us);
        c.ack_pending = true;
        c.syn_ack_pending = true;
        c
    }

    #[cfg(test)]
    pub(crate) fn summary(&self) -> String {
        format!(
            "state {:?} seq {} ack {} unsent {} in_flight {} (first {:?}, resend {}, sacked {}) cur_window {} cwnd {} their_wnd {} rto {:?} timeouts {} readable {} reorder {} eof {:?}",
            self.state, self.seq_nr, self.ack_nr, self.unsent.len(), self.in_flight.len(),
            self.in_flight.front().map(|s| (s.seq, s.transmissions, s.resend, s.sacked)),
            self.in_flight.iter().filter(|s| s.resend).count(),
            self.in_flight.iter().filter(|s| s.sacked).count(),
            self.cur_window, self.cwnd, self.their_wnd, self.rto, self.timeouts,
            self.readable.len(), self.reorder.len(), self.eof_seq
        )
    }

    /// The id packets to us carry.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// The id we address the peer by.
    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<UtpError> {
        self.error
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.cwnd
    }

    /// The smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.have_rtt.then(|| Duration::from_micros(self.rtt_us))
    }

    /// Payload bytes of our data packets.
    pub fn packet_size(&self) -> usize {
        self.packet_size
    }

    /// Bytes [`Connection::write`] would take now.
    pub fn send_room(&self) -> usize {
        if self.state == State::Closed || self.close_requested {
            return 0;
        }
        self.config.send_buffer.saturating_sub(self.unsent.len())
    }

    /// Bytes written and not yet acknowledged (unsent or in flight).
    pub fn unacked(&self) -> usize {
        self.unsent.len()
            + self
                .in_flight
                .iter()
                .map(|s| s.payload.len())
                .sum::<usize>()
    }

    /// Queues `data` to send; returns how much was taken (0 once closing or closed).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.send_room());
        self.unsent.extend(&data[..n]);
        n
    }

    /// Bytes received in order and not yet read.
    pub fn readable_len(&self) -> usize {
        self.readable.len()
    }

    /// True once every byte before the peer's FIN has been read.
    pub fn is_eof(&self) -> bool {
        self.got_eof && self.readable.is_empty()
    }

    /// Moves received bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let before = self.recv_window();
        let n = buf.len().min(self.readable.len());
        let (a, b) = self.readable.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.readable.drain(..n);
        // Tell a peer we had stopped that there is room again.
        if before < self.packet_size * 2 && self.recv_window() >= self.packet_size * 2 {
            self.ack_pending = true;
        }
        n
    }

    /// Sends a FIN once everything written has gone out; reading goes on until the peer's.
    pub fn close(&mut self) {
        self.close_requested = true;
    }

    /// The application is done with the connection: it closes, what arrives from now on is
    /// dropped, and it ends at the latest a linger after our FIN is acknowledged.
    pub fn release(&mut self) {
        self.released = true;
        self.close_requested = true;
        self.readable.clear();
    }

    /// True when nothing is left to do: closed, or our FIN acknowledged and the peer's
    /// received (or, once released, the linger after ours passed).
    pub fn is_finished(&self, now: Time) -> bool {
        self.state == State::Closed
            || (self.fin_acked
                && (self.got_eof
                    || (self.released
                        && self
                            .closed_at
                            .is_some_and(|t| now.saturating_since(t) >= self.config.linger))))
    }

    fn recv_window(&self) -> usize {
        self.config
            .recv_buffer
            .saturating_sub(self.readable.len() + self.reorder_bytes)
    }

    fn fail(&mut self, e: UtpError) {
        self.state = State::Closed;
        self.error = Some(e);
        self.in_flight.clear();
        self.unsent.clear();
        self.cur_window = 0;
    }

    /// Feeds one packet addressed to this connection.
    pub fn handle_packet(&mut self, now: Time, p: &Packet<'_>) {
        if self.state == State::Closed {
            return;
        }
        let h = &p.header;
        self.reply_micro = micros(now).wrapping_sub(h.timestamp_us);
        if h.timestamp_diff_us != 0 {
            self.delay_sample(now, h.timestamp_diff_us);
        }
        match h.ty {
            PacketType::Reset => {
                self.fail(if self.state == State::SynSent {
                    UtpError::Refused
                } else {
                    UtpError::Reset
                });
                return;
            }
            PacketType::Syn => {
                // The peer did not get our answer: answer again.
                self.syn_ack_pending = true;
                return;
            }
            _ => {}
        }
        if self.state == State::SynSent {
            // Only the STATE answering our SYN says where the peer's sequence starts (data
            // overtaking it is dropped, and sent again).
            if h.ty != PacketType::State || h.ack_nr != 1 {
                return;
            }
            self.state = State::Connected;
            self.ack_nr = h.seq_nr.wrapping_sub(1);
        }
        self.their_wnd = h.wnd_size as usize;
        if self.their_wnd >= self.packet_size {
            self.zero_window_probe = None;
        }
        let pure_ack = h.ty == PacketType::State;
        self.process_ack(now, h.ack_nr, p.sack, pure_ack);
        match h.ty {
            PacketType::Data => self.receive(h.seq_nr, p.payload),
            PacketType::Fin => {
                self.ack_pending = true;
                if self.eof_seq.is_none() && seq_lt(self.ack_nr, h.seq_nr) {
                    self.eof_seq = Some(h.seq_nr);
                    self.advance();
                }
            }
            _ => {}
        }
    }

    fn receive(&mut self, seq: u16, payload: &[u8]) {
        self.ack_pending = true;
        if payload.is_empty() || self.got_eof {
            return;
        }
        if self.eof_seq.is_some_and(|e| seq_le(e, seq)) {
            return;
        }
        let next = self.ack_nr.wrapping_add(1);
        // The peer should stay within our window; a packet of slack, then drop (it is sent
        // again).
        if self.readable.len() + self.reorder_bytes + payload.len()
            > self.config.recv_buffer + self.packet_size
        {
            return;
        }
        if seq == next {
            if !self.released {
                self.readable.extend(payload);
            }
            self.ack_nr = seq;
            self.advance();
        } else if seq_lt(next, seq) && seq.wrapping_sub(self.ack_nr) <= MAX_REORDER {
            if let std::collections::hash_map::Entry::Vacant(v) = self.reorder.entry(seq) {
                self.reorder_bytes += payload.len();
                v.insert(payload.to_vec());
            }
        }
    }

    /// Delivers what the reorder buffer holds next, and the FIN when it is next.
    fn advance(&mut self) {
        loop {
            let next = self.ack_nr.wrapping_add(1);
            if let Some(d) = self.reorder.remove(&next) {
                self.reorder_bytes -= d.len();
                if !self.released {
                    self.readable.extend(&d);
                }
                self.ack_nr = next;
            } else if self.eof_seq == Some(next) {
                self.ack_nr = next;
                self.got_eof = true;
                self.reorder.clear();
                self.reorder_bytes = 0;
                return;
            } else {
                return;
            }
        }
    }

    fn delay_sample(&mut self, now: Time, sample: u32) {
        if now >= self.base_rotate_at {
            self.base_prev = self.base_delay.take();
            self.base_rotate_at = now + BASE_DELAY_HALF;
        }
        self.base_delay = Some(match self.base_delay {
            Some(b) if !micros_lt(sample, b) => b,
            _ => sample,
        });
        self.last_delay = Some(sample);
    }

    /// The queuing delay of our packets: the last sample over the base (the lowest seen in
    /// the last one to two minutes), in microseconds.
    fn queuing_delay_us(&self) -> Option<u64> {
        let sample = self.last_delay?;
        let base = match (self.base_delay, self.base_prev) {
            (Some(a), Some(b)) => {
                if micros_lt(a, b) {
                    a
                } else {
                    b
                }
            }
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        let d = sample.wrapping_sub(base);
        Some(if d >= 0x8000_0000 { 0 } else { u64::from(d) })
    }

    fn process_ack(&mut self, now: Time, ack: u16, sack: Option<&[u8]>, pure_ack: bool) {
        let Some(first) = self.in_flight.front().map(|s| s.seq) else {
            return;
        };
        let last = self.seq_nr.wrapping_sub(1);
        if !(seq_le(first.wrapping_sub(1), ack) && seq_le(ack, last)) {
            return;
        }
        let mut acked = 0usize;
        let mut progress = false;
        let mut rtt_sample = None;
        while self.in_flight.front().is_some_and(|s| seq_le(s.seq, ack)) {
            let Some(s) = self.in_flight.pop_front() else {
                break;
            };
            progress = true;
            if !s.sacked && !s.resend {
                self.cur_window -= s.payload.len();
            }
            if !s.sacked {
                acked += s.payload.len();
            }
            if s.transmissions == 1 {
                rtt_sample = Some(now.saturating_since(s.last_sent));
            }
            if s.ty == PacketType::Fin {
                self.fin_acked = true;
                self.closed_at = Some(now);
            }
        }
        let mut lost = None;
        if let (Some(mask), Some(front)) = (sack, self.in_flight.front().map(|s| s.seq)) {
            for (byte_i, byte) in mask.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) == 0 {
                        continue;
                    }
                    let seq = ack.wrapping_add(2).wrapping_add((byte_i * 8 + bit) as u16);
                    let idx = usize::from(seq.wrapping_sub(front));
                    let Some(s) = self.in_flight.get_mut(idx) else {
                        continue;
                    };
                    if s.seq != seq || s.sacked || s.transmissions == 0 {
                        continue;
                    }
                    s.sacked = true;
                    progress = true;
                    acked += s.payload.len();
                    if !s.resend {
                        self.cur_window -= s.payload.len();
                    }
                    s.resend = false;
                    if s.transmissions == 1 {
                        rtt_sample = Some(now.saturating_since(s.last_sent));
                    }
                }
            }
            // A packet with three or more acknowledged after it is lost.
            let mut after = 0;
            for s in self.in_flight.iter_mut().rev() {
                if s.sacked {
                    after += 1;
                } else if after >= 3 && !s.fast_resent && !s.resend && s.transmissions > 0 {
                    s.fast_resent = true;
                    s.resend = true;
                    self.cur_window -= s.payload.len();
                    lost =
                        Some(lost.map_or(s.seq, |l: u16| if seq_lt(s.seq, l) { s.seq } else { l }));
                }
            }
        }
        if progress {
            self.dup_acks = 0;
            self.timeouts = 0;
            self.rto_deadline = (!self.in_flight.is_empty()).then(|| now + self.rto);
        } else if pure_ack && self.last_ack_seen == Some(ack) {
            self.dup_acks += 1;
            if self.dup_acks == 3 {
                if let Some(s) = self.in_flight.front_mut() {
                    if !s.sacked && !s.resend && !s.fast_resent && s.transmissions > 0 {
                        s.fast_resent = true;
                        s.resend = true;
                        self.cur_window -= s.payload.len();
                        lost = Some(s.seq);
                    }
                }
            }
        }
        self.last_ack_seen = Some(ack);
        if let Some(s) = rtt_sample {
            self.update_rtt(s);
        }
        if let Some(seq) = lost {
            self.on_loss(seq);
        }
        if acked > 0 {
            self.grow(acked);
        }
    }

    fn update_rtt(&mut self, sample: Duration) {
        let s = sample.as_micros().min(u128::from(u32::MAX)) as u64;
        if !self.have_rtt {
            self.have_rtt = true;
            self.rtt_us = s;
            self.rtt_var_us = s / 2;
        } else {
            let diff = self.rtt_us.abs_diff(s);
            self.rtt_var_us = (self.rtt_var_us * 3 + diff) / 4;
            self.rtt_us = (self.rtt_us * 7 + s) / 8;
        }
        self.rto = Duration::from_micros(self.rtt_us + 4 * self.rtt_var_us)
            .clamp(self.config.min_timeout, MAX_RTO);
    }

    /// LEDBAT: the window grows while the queuing delay is under the target and shrinks
    /// above it; slow start until the first loss, the threshold, or half the target.
    fn grow(&mut self, acked: usize) {
        let target = self.config.target_delay.as_micros().max(1) as i64;
        let delay = self.queuing_delay_us().map(|d| d as i64);
        if self.slow_start {
            if delay.is_some_and(|d| d > target / 2) {
                self.slow_start = false;
            } else {
                self.cwnd += acked;
                if self.cwnd >= self.ssthresh {
                    self.slow_start = false;
                }
            }
        }
        if !self.slow_start {
            let off_target = target - delay.unwrap_or(0);
            let gain = self.config.max_cwnd_increase_per_rtt as i64 * off_target * acked as i64
                / (target * self.cwnd.max(1) as i64);
            let w = self.cwnd as i64 + gain;
            self.cwnd = w.max(0) as usize;
        }
        self.cwnd = self.cwnd.clamp(self.packet_size, self.config.max_cwnd);
    }

    fn on_loss(&mut self, seq: u16) {
        if seq_lt(self.loss_seq, seq) {
            self.cwnd = (self.cwnd / 2).max(self.packet_size);
            self.ssthresh = self.cwnd;
            self.slow_start = false;
            self.loss_seq = self.seq_nr.wrapping_sub(1);
        }
    }

    /// When [`Connection::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            State::Closed => None,
            State::SynSent => self.rto_deadline,
            State::Connected => {
                let mut t = self.rto_deadline;
                let mut min = |x: Time| t = Some(t.map_or(x, |y: Time| y.min(x)));
                min(self.last_send + self.config.keepalive);
                if let Some(p) = self.zero_window_probe {
                    min(p);
                }
                if let Some(c) = self.closed_at.filter(|_| self.fin_acked && self.released) {
                    min(c + self.config.linger);
                }
                t
            }
        }
    }

    /// Runs what is due: retransmission timeouts (with back-off, then failure), keepalives
    /// and zero-window probes.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.state == State::Closed {
            return;
        }
        if self.rto_deadline.is_some_and(|t| now >= t) && !self.in_flight.is_empty() {
            // A peer whose receive window is closed is alive (it says so): no failure.
            if self.their_wnd >= self.packet_size || self.state == State::SynSent {
                self.timeouts += 1;
            }
            let limit = if self.state == State::SynSent {
                self.config.syn_retries
            } else {
                self.config.max_timeouts
            };
            if self.timeouts > limit {
                self.fail(UtpError::TimedOut);
                return;
            }
            // Everything not acknowledged goes again, from a window of one packet.
            for s in self.in_flight.iter_mut() {
                if !s.sacked && !s.resend && s.transmissions > 0 {
                    s.resend = true;
                    self.cur_window -= s.payload.len();
                }
            }
            self.ssthresh = (self.cwnd / 2).max(self.packet_size * 2);
            self.cwnd = self.packet_size;
            self.slow_start = true;
            self.loss_seq = self.seq_nr.wrapping_sub(1);
            self.rto = (self.rto * 2).min(MAX_RTO);
            self.rto_deadline = Some(now + self.rto);
        }
        if self.state == State::Connected {
            // Released, our FIN acknowledged and the peer's not come within the linger: done.
            if self.released
                && self.fin_acked
                && self
                    .closed_at
                    .is_some_and(|t| now.saturating_since(t) >= self.config.linger)
            {
                self.state = State::Closed;
                return;
            }
            if now.saturating_since(self.last_send) >= self.config.keepalive {
                self.ack_pending = true;
            }
            if self.zero_window_probe.is_some_and(|t| now >= t) {
                self.zero_window_probe = None;
                self.probe_ok = true;
            }
        }
    }

    fn header(&self, now: Time, ty: PacketType, seq_nr: u16) -> Header {
        Header {
            ty,
            connection_id: if ty == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: micros(now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.recv_window().min(u32::MAX as usize) as u32,
            seq_nr,
            ack_nr: self.ack_nr,
        }
    }

    /// The selective-ack bitmask for what the reorder buffer holds, if anything.
    fn sack(&mut self) -> Option<usize> {
        if self.reorder.is_empty() {
            return None;
        }
        self.sack_buf = [0; SACK_BYTES];
        let base = self.ack_nr.wrapping_add(2);
        let mut last = 0;
        for i in 0..SACK_BYTES * 8 {
            if self.reorder.contains_key(&base.wrapping_add(i as u16)) {
                self.sack_buf[i / 8] |= 1 << (i % 8);
                last = i / 8 + 1;
            }
        }
        // Whole 4-byte words, as BEP 29 asks.
        (last > 0).then(|| last.div_ceil(4) * 4)
    }

    fn emit(&mut self, now: Time, h: &Header, payload: &[u8], out: &mut Vec<u8>) {
        let sack_len = self.sack();
        encode(h, sack_len.map(|n| &self.sack_buf[..n]), payload, out);
        self.ack_pending = false;
        self.last_send = now;
    }

    /// Whether a packet of `len` payload bytes may go now: within the congestion window
    /// and the peer's receive window. With nothing in flight one packet may exceed the
    /// congestion window, and a closed receive window is probed after a timeout.
    fn may_send(&mut self, now: Time, len: usize) -> bool {
        if self.cur_window + len <= self.cwnd.min(self.their_wnd) {
            return true;
        }
        if self.cur_window > 0 {
            return false;
        }
        if self.their_wnd >= len {
            return true;
        }
        if self.probe_ok {
            self.probe_ok = false;
            return true;
        }
        if self.zero_window_probe.is_none() {
            self.zero_window_probe = Some(now + self.rto);
        }
        false
    }

    /// Writes the next packet to send into `out` (cleared first); false when there is none.
    pub fn poll_transmit(&mut self, now: Time, out: &mut Vec<u8>) -> bool {
        out.clear();
        if self.state == State::Closed {
            return false;
        }
        // A connection we accepted answers the SYN with a STATE before anything else.
        if self.syn_ack_pending {
            self.syn_ack_pending = false;
            // Our first sequence number, also when answering a repeated SYN after data went.
            let h = self.header(now, PacketType::State, self.first_seq);
            self.emit(now, &h, &[], out);
            return true;
        }
        // Retransmissions first, in order, within the windows.
        let mut resend = None;
        if let Some((i, len)) = self
            .in_flight
            .iter()
            .enumerate()
            .find(|(_, s)| s.resend && !s.sacked)
            .map(|(i, s)| (i, s.payload.len()))
        {
            if self.may_send(now, len) {
                resend = Some(i);
            }
        }
        if let Some(i) = resend {
            let (seq, ty) = (self.in_flight[i].seq, self.in_flight[i].ty);
            let h = self.header(now, ty, seq);
            let payload = std::mem::take(&mut self.in_flight[i].payload);
            self.emit(now, &h, &payload, out);
            let s = &mut self.in_flight[i];
            s.payload = payload;
            s.resend = false;
            s.transmissions += 1;
            s.last_sent = now;
            self.cur_window += s.payload.len();
            if self.rto_deadline.is_none() || s.transmissions == 1 {
                self.rto_deadline = Some(now + self.rto);
            }
            return true;
        }
        if self.state != State::Connected {
            return false;
        }
        if !self.unsent.is_empty() && !self.fin_sent {
            let n = self.unsent.len().min(self.packet_size);
            if self.may_send(now, n) {
                let mut payload = Vec::with_capacity(n);
                let (a, b) = self.unsent.as_slices();
                let from_a = n.min(a.len());
                payload.extend_from_slice(&a[..from_a]);
                payload.extend_from_slice(&b[..n - from_a]);
                self.unsent.drain(..n);
                return self.send_new(now, PacketType::Data, payload, out);
            }
        }
        if self.close_requested && self.unsent.is_empty() && !self.fin_sent {
            self.fin_sent = true;
            return self.send_new(now, PacketType::Fin, Vec::new(), out);
        }
        if self.ack_pending {
            let h = self.header(now, PacketType::State, self.seq_nr);
            self.emit(now, &h, &[], out);
            return true;
        }
        false
    }

    fn send_new(&mut self, now: Time, ty: PacketType, payload: Vec<u8>, out: &mut Vec<u8>) -> bool {
        let seq = self.seq_nr;
        self.seq_nr = seq.wrapping_add(1);
        let h = self.header(now, ty, seq);
        self.emit(now, &h, &payload, out);
        self.cur_window += payload.len();
        self.in_flight.push_back(Sent {
            seq,
            ty,
            payload,
            last_sent: now,
            transmissions: 1,
            sacked: false,
            resend: false,
            fast_resent: false,
        });
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rto);
        }
        true
    }
}
