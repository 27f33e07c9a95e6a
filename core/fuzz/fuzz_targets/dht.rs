//! Feeds arbitrary datagrams to the KRPC decoder and to a DHT node that is looking up a
//! torrent: decoding must never panic, whatever decodes must encode to bencode that decodes
//! to the same message, and the node must stay within its bounds (answers are well-formed
//! KRPC, tables and stores bounded).

#![no_main]
use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use webtorrent_core::dht::krpc::Message;
use webtorrent_core::dht::{Dht, DhtConfig};
use webtorrent_core::time::Time;
use webtorrent_core::Id20;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let again = m.encode();
        assert_eq!(Message::decode(&again).as_ref(), Ok(&m));
    }
    let t0 = Time::ZERO;
    let router: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    let mut d = Dht::new(
        t0,
        DhtConfig {
            bootstrap: vec![router],
            ..DhtConfig::default()
        },
        1,
    );
    d.get_peers(t0, Id20([7; 20]));
    // Datagrams: [source byte][length byte][bytes]; a source of 0 answers the last query
    // sent (its transaction id is patched in where the input has "TT").
    let mut rest = data;
    let mut now = t0;
    let mut last_tid: Vec<u8> = Vec::new();
    let mut last_to = router;
    while rest.len() >= 2 {
        let (src, len) = (rest[0], rest[1] as usize);
        rest = &rest[2..];
        let take = len.min(rest.len());
        let mut dgram = rest[..take].to_vec();
        rest = &rest[take..];
        let from = if src == 0 {
            if let Some(p) = dgram.windows(2).position(|w| w == b"TT") {
                if last_tid.len() == 2 {
                    dgram[p..p + 2].copy_from_slice(&last_tid);
                }
            }
            last_to
        } else {
            SocketAddr::from(([10, 0, src, 2], 6881))
        };
        d.handle_datagram(now, from, &dgram);
        now += Duration::from_millis(u64::from(src) * 50);
        d.handle_timeout(now);
        while let Some(t) = d.poll_transmit() {
            let m = Message::decode(&t.data).expect("our own messages decode");
            last_tid = m.tid;
            last_to = t.to;
        }
        while d.poll_event().is_some() {}
        let (n4, n6) = d.num_nodes();
        assert!(n4 + n6 <= 2 * 160 * 8);
    }
});
