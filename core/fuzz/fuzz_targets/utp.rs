#![no_main]
//! Arbitrary datagrams into a uTP endpoint that has an outgoing connection and accepts
//! incoming ones, with reads, writes, timeouts and transmits between them. The input is a
//! list of records: a byte choosing the action and source, a length byte, then that many
//! bytes. Nothing may panic, and the endpoint stays within its bounds.
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::Duration;
use webtorrent_core::time::Time;
use webtorrent_core::utp::{Config, Endpoint};

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    let mut ep = Endpoint::new(config, 7);
    let peers: [SocketAddr; 2] = ["10.0.0.1:6881".parse().unwrap(), "10.0.0.2:6881".parse().unwrap()];
    let mut now = Time::ZERO;
    let out_key = ep.connect(now, peers[0]);
    let mut keys = out_key.into_iter().collect::<Vec<_>>();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        match op % 6 {
            0 | 1 => ep.handle_datagram(now, peers[usize::from(op % 2)], body),
            2 => {
                now += Duration::from_millis(u64::from(*len) * 10);
                ep.handle_timeout(now);
            }
            3 => {
                if let Some(&k) = keys.get(usize::from(*len) % keys.len().max(1)) {
                    ep.write(k, body);
                }
            }
            4 => {
                for &k in &keys {
                    ep.read(k, &mut buf);
                }
            }
            _ => {
                if let Some(&k) = keys.first() {
                    if op & 0x80 != 0 {
                        ep.release(now, k);
                        keys.remove(0);
                    } else {
                        ep.close(k);
                    }
                }
            }
        }
        while let Some((k, _)) = ep.accept() {
            keys.push(k);
        }
        let mut sent = 0;
        while ep.poll_transmit(now, &mut out).is_some() {
            assert!(out.len() <= 20 + 2 + 255 + 1500);
            sent += 1;
            assert!(sent < 100_000, "transmit does not end");
        }
        while ep.poll_wake().is_some() {}
        assert!(ep.len() <= config.max_connections);
    }
});
