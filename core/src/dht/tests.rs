//! The machine against other instances of itself on a simulated network.

use super::*;

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

/// Delivers every datagram between the nodes (instantly) until none is left.
fn pump(nodes: &mut [Dht], now: Time) {
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(t) = nodes[i].poll_transmit() {
                moved = true;
                if let Some(j) = (0..nodes.len()).find(|&j| addr(j as u32) == t.to) {
                    nodes[j].handle_datagram(now, addr(i as u32), &t.data);
                }
            }
        }
        if !moved {
            return;
        }
    }
}

fn network(n: usize) -> (Vec<Dht>, Time) {
    let t0 = Time::ZERO;
    let mut nodes: Vec<Dht> = (0..n)
        .map(|i| {
            let config = DhtConfig {
                bootstrap: vec![addr(0)],
                ..DhtConfig::default()
            };
            Dht::new(t0, config, i as u64 + 1)
        })
        .collect();
    let mut now = t0;
    for _ in 0..4 {
        for d in nodes.iter_mut() {
            d.handle_timeout(now);
        }
        pump(&mut nodes, now);
        now += MAINTENANCE_EVERY;
    }
    (nodes, now)
}

#[test]
fn a_small_network_bootstraps_and_finds_an_announce() {
    let (mut nodes, now) = network(60);
    for d in &nodes[1..] {
        assert!(
            d.num_nodes().0 >= K,
            "a node knows only {:?}",
            d.num_nodes()
        );
    }
    let info_hash = Id20([0x42; 20]);
    let a = nodes[7].announce(now, info_hash, Some(51413));
    pump(&mut nodes, now);
    let done: Vec<Event> = std::iter::from_fn(|| nodes[7].poll_event()).collect();
    let report = done
        .iter()
        .find_map(|e| match e {
            Event::LookupDone(r) if r.id == a => Some(r.clone()),
            _ => None,
        })
        .expect("the announce lookup ends");
    assert_eq!(report.announced, K);
    let stored: usize = nodes.iter().map(|d| d.stored().1).sum();
    assert_eq!(stored, K);
    // Another node finds the announced peer.
    let g = nodes[33].get_peers(now, info_hash);
    pump(&mut nodes, now);
    let peers: Vec<SocketAddr> = std::iter::from_fn(|| nodes[33].poll_event())
        .filter_map(|e| match e {
            Event::Peers { lookup, peers, .. } if lookup == g => Some(peers),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(peers, vec![SocketAddr::new(addr(7).ip(), 51413)]);
}

#[test]
fn queries_are_answered_and_rate_limited() {
    let t0 = Time::ZERO;
    let mut d = Dht::new(
        t0,
        DhtConfig {
            query_rate_per_ip: 5,
            ..DhtConfig::default()
        },
        9,
    );
    let ping = |tid: u8| {
        Message {
            tid: vec![tid],
            body: Body::Query(Query {
                id: Id20([tid; 20]),
                method: Method::Ping,
            }),
            read_only: false,
            ip: None,
            version: None,
        }
        .encode()
    };
    let from: SocketAddr = "10.0.0.9:1000".parse().unwrap();
    for i in 0..20 {
        d.handle_datagram(t0, from, &ping(i));
    }
    let answers: Vec<Transmit> = std::iter::from_fn(|| d.poll_transmit()).collect();
    // A burst of twice the rate, then nothing.
    assert_eq!(answers.len(), 10);
    assert_eq!(d.stats().rate_limited, 10);
    let m = Message::decode(&answers[0].data).unwrap();
    assert_eq!(m.tid, vec![0]);
    assert_eq!(m.ip, Some(from));
    assert!(matches!(m.body, Body::Response(ref r) if r.id == d.id()));
    // Another address is not held back by the first.
    d.handle_datagram(t0, "10.0.0.10:1000".parse().unwrap(), &ping(50));
    assert!(d.poll_transmit().is_some());
    // Unknown methods get 204; garbage gets nothing.
    let vote = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:zz1:y1:qe";
    d.handle_datagram(t0, "10.0.0.11:1000".parse().unwrap(), vote);
    let e = Message::decode(&d.poll_transmit().unwrap().data).unwrap();
    assert!(matches!(e.body, Body::Error { code: 204, .. }));
    d.handle_datagram(t0, "10.0.0.11:1000".parse().unwrap(), b"\xff\x00garbage");
    assert!(d.poll_transmit().is_none());
}

#[test]
fn announces_need_a_token_for_the_same_ip() {
    let t0 = Time::ZERO;
    let mut d = Dht::new(t0, DhtConfig::default(), 3);
    let a: SocketAddr = "10.0.0.1:7000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    let ih = Id20([5; 20]);
    let q = |method: Method| {
        Message {
            tid: b"t1".to_vec(),
            body: Body::Query(Query {
                id: Id20([1; 20]),
                method,
            }),
            read_only: true,
            ip: None,
            version: None,
        }
        .encode()
    };
    d.handle_datagram(
        t0,
        a,
        &q(Method::GetPeers {
            info_hash: ih,
            want: Want::default(),
        }),
    );
    let m = Message::decode(&d.poll_transmit().unwrap().data).unwrap();
    let Body::Response(r) = m.body else { panic!() };
    let token = r.token.expect("a token");
    let announce = |token: Vec<u8>, implied: bool| {
        q(Method::AnnouncePeer {
            info_hash: ih,
            port: 9999,
            implied_port: implied,
            token,
        })
    };
    // From another IP the token is refused.
    d.handle_datagram(t0, b, &announce(token.clone(), false));
    let e = Message::decode(&d.poll_transmit().unwrap().data).unwrap();
    assert!(matches!(e.body, Body::Error { code: 203, .. }));
    assert_eq!(d.stored(), (0, 0));
    d.handle_datagram(t0, a, &announce(token.clone(), true));
    assert!(d.poll_transmit().is_some());
    assert_eq!(d.stored(), (1, 1));
    // The stored peer is on the source port (implied), and read-only askers stay out of
    // the table.
    d.handle_datagram(
        t0,
        b,
        &q(Method::GetPeers {
            info_hash: ih,
            want: Want::default(),
        }),
    );
    let m = Message::decode(&d.poll_transmit().unwrap().data).unwrap();
    let Body::Response(r) = m.body else { panic!() };
    assert_eq!(r.values, vec![a]);
    assert_eq!(d.num_nodes(), (0, 0));
}

#[test]
fn unanswered_queries_time_out_and_lookups_end() {
    let t0 = Time::ZERO;
    let mut d = Dht::new(
        t0,
        DhtConfig {
            bootstrap: vec!["10.9.9.9:6881".parse().unwrap()],
            ..DhtConfig::default()
        },
        4,
    );
    let l = d.get_peers(t0, Id20([8; 20]));
    let sent = d.poll_transmit().expect("a query to the bootstrap node");
    assert_eq!(sent.to, "10.9.9.9:6881".parse().unwrap());
    // A forged answer from another address is ignored.
    let m = Message::decode(&sent.data).unwrap();
    let forged = Message {
        tid: m.tid.clone(),
        body: Body::Response(Response {
            id: Id20([3; 20]),
            values: vec!["10.6.6.6:1".parse().unwrap()],
            ..Response::default()
        }),
        read_only: false,
        ip: None,
        version: None,
    };
    d.handle_datagram(t0, "10.6.6.6:6881".parse().unwrap(), &forged.encode());
    assert!(d.poll_event().is_none());
    let at = d.poll_timeout().unwrap();
    assert!(at <= t0 + QUERY_TIMEOUT);
    d.handle_timeout(t0 + QUERY_TIMEOUT);
    let ev = d.poll_event().expect("the lookup ends");
    assert!(matches!(ev, Event::LookupDone(ref r) if r.id == l && r.answers == 0 && r.peers == 0));
    assert_eq!(d.stats().timeouts, 1);
}

#[test]
fn late_bootstrap_and_saved_state_rejoin_the_network() {
    let (mut nodes, now) = network(30);
    // A node started with no bootstrap address is given one later (names resolved after
    // the start): it bootstraps at its next timeout.
    let mut late = Dht::new(now, DhtConfig::default(), 999);
    late.handle_timeout(now);
    assert!(late.poll_transmit().is_none());
    late.set_bootstrap(now, vec![addr(0)]);
    assert!(late.poll_timeout().is_some_and(|t| t <= now));
    late.handle_timeout(now);
    nodes.push(late);
    let mut t = now;
    for _ in 0..3 {
        for d in nodes.iter_mut() {
            d.handle_timeout(t);
        }
        pump(&mut nodes, t);
        t += MAINTENANCE_EVERY;
    }
    let late = nodes.pop().unwrap();
    assert!(late.num_nodes().0 >= K, "{:?}", late.num_nodes());
    // Its saved state brings back its id and its nodes: a restart with no bootstrap at all
    // rejoins from them.
    let saved = state::SavedState::decode(&late.saved_state(t).encode()).unwrap();
    assert_eq!(saved.id, late.id());
    assert!(saved.nodes.len() >= K);
    let config = DhtConfig {
        id: Some(saved.id),
        ..DhtConfig::default()
    };
    let mut again = Dht::new(t, config, 1000);
    for n in &saved.nodes {
        again.add_node(t, n.addr);
    }
    nodes.push(again);
    pump(&mut nodes, t);
    let again = nodes.pop().unwrap();
    assert_eq!(again.id(), late.id());
    assert!(again.num_nodes().0 >= K, "{:?}", again.num_nodes());
}

#[test]
fn an_ipv6_only_node_bootstraps_from_ipv6_addresses() {
    let a6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();
    let b6: SocketAddr = "[2001:db8::2]:6881".parse().unwrap();
    let t = Time::ZERO;
    let mut a = Dht::new(t, DhtConfig::default(), 1);
    let config = DhtConfig {
        bootstrap: vec![a6],
        ..DhtConfig::default()
    };
    let mut b = Dht::new(t, config, 2);
    b.handle_timeout(t);
    let mut sent = 0;
    for _ in 0..4 {
        while let Some(x) = b.poll_transmit() {
            assert_eq!(x.to, a6);
            sent += 1;
            a.handle_datagram(t, b6, &x.data);
        }
        while let Some(x) = a.poll_transmit() {
            assert_eq!(x.to, b6);
            b.handle_datagram(t, a6, &x.data);
        }
    }
    assert!(sent > 0, "the IPv6 bootstrap address was never asked");
    assert_eq!(b.num_nodes(), (0, 1));
    assert_eq!(a.num_nodes(), (0, 1));
}
