//! Incoming TCP connections before their handshake: bounded so that connections which never
//! speak cannot use up tasks, memory or the room honest peers need.
//!
//! At most [`MAX_PENDING_PER_IP`] connections from one address wait for their handshake at
//! once (more are closed at once), at most [`MAX_PENDING`] in all, and each waits at most
//! [`HANDSHAKE_TIMEOUT`]. When every place is taken, a newcomer gets the place of the
//! longest waiting connection from the address with the most waiting, so a flood from a
//! few addresses pushes out its own connections before anyone else's.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

/// How long an incoming connection may take to send the first 48 bytes of its handshake:
/// core's handshake timeout, the one value for the whole handshake.
pub use webtorrent_core::peer::HANDSHAKE_TIMEOUT;
/// Incoming connections waiting for their handshake, from all addresses.
pub const MAX_PENDING: usize = 128;
/// Incoming connections waiting for their handshake from one IP address.
pub const MAX_PENDING_PER_IP: usize = 8;

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Oldest first: id, address and the task reading the handshake.
    order: VecDeque<(u64, IpAddr, Option<AbortHandle>)>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The connections waiting for their handshake.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate(Arc<Mutex<State>>);

/// A place in the [`Gate`], given back when dropped (the handshake came, failed or timed
/// out, or the task was closed to make room).
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Gate,
    id: u64,
    ip: IpAddr,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `ip`, or `None` if that address already has its
    /// share waiting. When every place is taken, the longest waiting connection is closed.
    pub fn admit(&self, ip: IpAddr) -> Option<Ticket> {
        let mut s = self.lock();
        if s.per_ip.get(&ip).copied().unwrap_or(0) >= MAX_PENDING_PER_IP {
            return None;
        }
        while s.order.len() >= MAX_PENDING {
            // The address with the most waiting (the oldest connection's on a tie).
            let busiest = s
                .order
                .iter()
                .map(|(_, ip, _)| (s.per_ip.get(ip).copied().unwrap_or(0), *ip))
                .enumerate()
                .max_by_key(|(i, (n, _))| (*n, std::cmp::Reverse(*i)))
                .map(|(_, (_, ip))| ip);
            let Some(victim) = busiest else {
                break;
            };
            let Some(i) = s.order.iter().position(|(_, ip, _)| *ip == victim) else {
                break;
            };
            let Some((_, old_ip, task)) = s.order.remove(i) else {
                break;
            };
            release_ip(&mut s.per_ip, old_ip);
            if let Some(t) = task {
                t.abort();
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        s.order.push_back((id, ip, None));
        *s.per_ip.entry(ip).or_insert(0) += 1;
        Some(Ticket {
            gate: self.clone(),
            id,
            ip,
        })
    }

    /// Records the task reading the handshake of place `id`, to close it to make room.
    pub fn set_task(&self, id: u64, task: AbortHandle) {
        let mut s = self.lock();
        match s.order.iter_mut().find(|(i, _, _)| *i == id) {
            Some(entry) => entry.2 = Some(task),
            // Already pushed out while the task was being started.
            None => task.abort(),
        }
    }

    /// Connections waiting now.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.lock().order.len()
    }
}

fn release_ip(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

impl Ticket {
    /// Which place this is (for [`Gate::set_task`]).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        if let Some(i) = s.order.iter().position(|(id, _, _)| *id == self.id) {
            s.order.remove(i);
            release_ip(&mut s.per_ip, self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_address_share_and_oldest_out_when_full() {
        let gate = Gate::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let tickets: Vec<Ticket> = (0..MAX_PENDING_PER_IP)
            .map(|_| gate.admit(a).expect("within the share"))
            .collect();
        assert!(gate.admit(a).is_none(), "over the per-address share");
        drop(tickets);
        assert_eq!(gate.pending(), 0);
        assert!(gate.admit(a).is_some());

        // Fill every place from many addresses, each with a task that waits forever.
        let mut held = Vec::new();
        for i in 0..MAX_PENDING {
            let ip: IpAddr = [10, 1, (i / 250) as u8, (i % 250) as u8].into();
            let t = gate.admit(ip).unwrap();
            let task = tokio::spawn(std::future::pending::<()>());
            gate.set_task(t.id(), task.abort_handle());
            held.push((t, task));
        }
        assert_eq!(gate.pending(), MAX_PENDING);
        // A newcomer pushes the oldest out: its task is aborted.
        let _new = gate.admit([10, 2, 0, 1].into()).unwrap();
        assert_eq!(gate.pending(), MAX_PENDING);
        let (first_ticket, first_task) = held.remove(0);
        assert!(first_task.await.unwrap_err().is_cancelled());
        drop(first_ticket);
        assert_eq!(gate.pending(), MAX_PENDING);
        assert!(!held[0].1.is_finished());

        // An address with several waiting loses one of its own before anyone else does.
        let busy: IpAddr = [10, 3, 0, 1].into();
        let _b1 = gate.admit(busy).unwrap();
        let _b2 = gate.admit(busy).unwrap();
        let _b3 = gate.admit(busy).unwrap();
        let before: Vec<bool> = held.iter().map(|(_, t)| t.is_finished()).collect();
        let _c = gate.admit([10, 4, 0, 1].into()).unwrap();
        tokio::task::yield_now().await;
        let after: Vec<bool> = held.iter().map(|(_, t)| t.is_finished()).collect();
        assert_eq!(before, after, "no single-connection address lost its place");
        assert_eq!(gate.pending(), MAX_PENDING);
    }
}
