#![no_main]
//! The UDP tracker client's state machine fed arbitrary datagrams (some aimed at transaction
//! ids in flight, from the right or a wrong source) interleaved with requests, cancels and
//! timer ticks: it must never panic, and what it keeps must stay bounded.
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::Duration;
use webtorrent_core::tracker::udp_client::{Announce, UdpClientConfig, UdpTrackerClient};
use webtorrent_core::{Id20, Time};

const MAX_PENDING: usize = 8;

fuzz_target!(|data: &[u8]| {
    let trackers = [
        SocketAddr::from(([127, 0, 0, 1], 6969)),
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 6969)),
        SocketAddr::from(([192, 0, 2, 1], 1)),
    ];
    let mut m = UdpTrackerClient::new(
        UdpClientConfig {
            base_timeout: Duration::from_millis(500),
            max_retries: 2,
            max_pending: MAX_PENDING,
            max_cached_connections: 2,
        },
        1,
    );
    let mut now = Time::ZERO;
    let mut ids = Vec::new();
    // Transaction ids and destinations of recent datagrams, to aim replies at.
    let mut recent: Vec<(u32, SocketAddr)> = Vec::new();
    // Chunks: first byte of each chunk picks an action, the next byte its length.
    let mut i = 0;
    while i + 2 <= data.len() {
        let action = data[i];
        let len = usize::from(data[i + 1]);
        i += 2;
        let end = (i + len).min(data.len());
        let chunk = &data[i..end];
        i = end;
        let tracker = trackers[usize::from(action >> 4) % 2];
        match action % 8 {
            0 => {
                let announce = Announce {
                    info_hash: Id20([action; 20]),
                    peer_id: Id20([1; 20]),
                    downloaded: 0,
                    left: 1,
                    uploaded: 0,
                    event: None,
                    ip: None,
                    key: 0,
                    num_want: None,
                    port: 6881,
                    url_data: chunk.to_vec(),
                };
                if let Ok(id) = m.announce(now, tracker, announce) {
                    ids.push(id);
                }
            }
            1 => {
                let hashes = (0..len).map(|n| Id20([n as u8; 20])).collect();
                if let Ok(id) = m.scrape(now, tracker, hashes) {
                    ids.push(id);
                }
            }
            2 => {
                if let Some(&id) = ids.get(len % ids.len().max(1)) {
                    m.cancel(id);
                }
            }
            3 => {
                now += Duration::from_millis(u64::from(action) * 40 + len as u64);
                m.handle_timeout(now);
            }
            4 => {
                while let Some(t) = m.poll_transmit() {
                    recent.push((t.transaction_id, t.destination));
                }
                if recent.len() > 16 {
                    recent.drain(..recent.len() - 16);
                }
            }
            5 | 6 => {
                // Aimed: the action and transaction id of a datagram in flight, then the chunk.
                let mut packet = Vec::with_capacity(8 + chunk.len());
                let (tid, mut from) = recent
                    .get(len % recent.len().max(1))
                    .copied()
                    .unwrap_or((0, tracker));
                if action % 8 == 6 {
                    from = trackers[2];
                }
                packet.extend_from_slice(&u32::from(action >> 5).to_be_bytes());
                packet.extend_from_slice(&tid.to_be_bytes());
                packet.extend_from_slice(chunk);
                m.handle_datagram(now, from, &packet);
            }
            _ => {
                m.handle_datagram(now, tracker, chunk);
            }
        }
        while m.poll_event().is_some() {}
        assert!(m.pending() <= MAX_PENDING);
        assert!(m.cached_connections() <= 2);
        assert_eq!(m.poll_timeout().is_some(), m.pending() > 0);
    }
});
