//! The port-mapping machine against simulated gateways.

use super::*;
use std::net::Ipv4Addr;

const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1));
const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 77, 2));

fn config(pcp: bool, natpmp: bool, upnp: bool) -> Config {
    Config {
        pcp,
        natpmp,
        upnp,
        ..Config::new(ME, Some(GW), 6881)
    }
}

fn gw() -> SocketAddr {
    SocketAddr::new(GW, natpmp::SERVER_PORT)
}

fn drain(m: &mut PortMapper) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn events(m: &mut PortMapper) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// A PCP gateway granting `port + offset`, or answering like a NAT-PMP-only one.
fn pcp_answer(req: &[u8], offset: u16) -> Vec<u8> {
    let mut a = req.to_vec();
    a[1] |= 0x80;
    a[3] = 0;
    let p = u16::from_be_bytes([req[42], req[43]]) + offset;
    a[42..44].copy_from_slice(&p.to_be_bytes());
    a[44..60].copy_from_slice(&Ipv4Addr::new(11, 0, 0, 2).to_ipv6_mapped().octets());
    a
}

fn natpmp_answer(req: &[u8]) -> Vec<u8> {
    let mut a = vec![0, req[1] + 128, 0, 0, 0, 0, 0, 9];
    a.extend_from_slice(&req[4..6]);
    a.extend_from_slice(&req[6..8]);
    a.extend_from_slice(&req[8..12]);
    a
}

#[test]
fn pcp_maps_both_protocols_and_renews_at_half_life_with_the_same_nonce() {
    let t0 = Time::ZERO;
    let mut m = PortMapper::new(config(true, true, false), 1, t0);
    let reqs = drain(&mut m);
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        let Output::Udp { to, data } = r else {
            panic!("{r:?}")
        };
        assert_eq!(*to, gw());
        m.handle_udp(t0, *to, &pcp_answer(data, 1));
    }
    let ev = events(&mut m);
    assert_eq!(ev.len(), 2, "{ev:?}");
    for e in &ev {
        let Event::Mapped {
            method,
            external_port,
            external_ip,
            lifetime,
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*method, Method::Pcp);
        assert_eq!(*external_port, 6882);
        assert_eq!(*external_ip, Some(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 2))));
        assert_eq!(*lifetime, DEFAULT_LIFETIME);
    }
    // Nothing until half the lifetime.
    assert_eq!(m.poll_timeout(), Some(t0 + DEFAULT_LIFETIME / 2));
    let t1 = t0 + DEFAULT_LIFETIME / 2;
    m.handle_timeout(t1);
    let renew = drain(&mut m);
    assert_eq!(renew.len(), 2);
    for (old, new) in reqs.iter().zip(&renew) {
        let (Output::Udp { data: a, .. }, Output::Udp { data: b, .. }) = (old, new) else {
            panic!()
        };
        assert_eq!(a[24..36], b[24..36], "same nonce");
        assert_eq!(
            &b[42..44],
            &6882u16.to_be_bytes(),
            "asks for the port granted"
        );
        m.handle_udp(t1, gw(), &pcp_answer(b, 0));
    }
    assert!(events(&mut m).is_empty(), "an unchanged renewal is no news");
    m.stop(t1);
    let rm = drain(&mut m);
    assert_eq!(rm.len(), 2);
    for r in rm {
        let Output::Udp { data, .. } = r else {
            panic!()
        };
        assert_eq!(&data[4..8], &[0, 0, 0, 0], "lifetime 0 removes");
    }
    assert_eq!(events(&mut m).len(), 2);
    assert!(m.is_idle());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_natpmp_only_gateway_gets_natpmp() {
    let t0 = Time::ZERO;
    let mut m = PortMapper::new(config(true, true, false), 2, t0);
    let reqs = drain(&mut m);
    // What RFC 6887 §9 says a NAT-PMP server answers to version 2.
    let unsupported = [0u8, 129, 0, 1, 0, 0, 0, 5];
    m.handle_udp(t0, gw(), &unsupported);
    let again = drain(&mut m);
    assert_eq!(again.len(), reqs.len());
    for r in &again {
        let Output::Udp { data, .. } = r else {
            panic!()
        };
        assert_eq!(data.len(), 12, "NAT-PMP mapping requests");
        m.handle_udp(t0, gw(), &natpmp_answer(data));
    }
    let ev = events(&mut m);
    assert_eq!(ev.len(), 2);
    assert!(
        ev.iter().all(|e| matches!(
            e,
            Event::Mapped {
                method: Method::NatPmp,
                external_port: 6881,
                ..
            }
        )),
        "{ev:?}"
    );
}

#[test]
fn a_silent_gateway_fails_after_retransmissions_and_is_retried_later() {
    let mut now = Time::ZERO;
    let mut m = PortMapper::new(config(true, true, false), 3, now);
    let mut sent = drain(&mut m).len();
    let mut ev = Vec::new();
    while let Some(t) = m.poll_timeout() {
        if t > Time::ZERO + Duration::from_secs(60) {
            break;
        }
        now = t;
        m.handle_timeout(now);
        sent += drain(&mut m).len();
        ev.extend(events(&mut m));
    }
    assert_eq!(
        sent,
        2 * 2 * usize::from(PMP_TRIES),
        "PCP then NAT-PMP, both protocols"
    );
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(matches!(
        ev[0],
        Event::Failed {
            method: Method::NatPmp,
            ..
        }
    ));
    assert!(m.poll_timeout().unwrap() >= now + (RETRY_AFTER - Duration::from_secs(1)));
    // Answers from elsewhere, or garbage, change nothing.
    m.handle_udp(
        now,
        SocketAddr::new(ME, 5351),
        &natpmp_answer(&natpmp::map_request(Protocol::Tcp, 6881, 6881, 60)),
    );
    m.handle_udp(now, gw(), b"\x00");
    assert!(events(&mut m).is_empty());
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn upnp_discovers_describes_maps_resolves_a_conflict_and_deletes() {
    let t0 = Time::ZERO;
    let mut m = PortMapper::new(config(false, false, true), 4, t0);
    let out = drain(&mut m);
    assert!(matches!(&out[..], [Output::Udp { to, .. }] if *to == upnp::SSDP_ADDR));
    let ssdp = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://192.168.77.1:5000/desc.xml\r\n\r\n";
    // Another host's answer is ignored (we know the gateway).
    m.handle_udp(t0, SocketAddr::new(ME, 1900), ssdp);
    assert!(drain(&mut m).is_empty());
    m.handle_udp(t0, SocketAddr::new(GW, 1900), ssdp);
    let [Output::Http { id, to, request }] = &drain(&mut m)[..] else {
        panic!()
    };
    assert_eq!(*to, SocketAddr::new(GW, 5000));
    assert!(request.starts_with(b"GET /desc.xml HTTP/1.1\r\n"));
    let desc = "<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl</controlURL></service></serviceList></device></root>";
    m.handle_http(t0, *id, Ok(&http("200 OK", desc)));
    let adds = drain(&mut m);
    assert_eq!(adds.len(), 2);
    let conflict = "<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>";
    let Output::Http { id: tcp_id, .. } = &adds[0] else {
        panic!()
    };
    let Output::Http { id: udp_id, .. } = &adds[1] else {
        panic!()
    };
    m.handle_http(t0, *udp_id, Ok(&http("200 OK", "<ok/>")));
    m.handle_http(
        t0,
        *tcp_id,
        Ok(&http("500 Internal Server Error", conflict)),
    );
    let [Output::Http {
        id: retry, request, ..
    }] = &drain(&mut m)[..]
    else {
        panic!()
    };
    let text = String::from_utf8_lossy(request);
    assert!(
        text.contains("<NewProtocol>TCP</NewProtocol>") && !text.contains("<NewExternalPort>6881<"),
        "{text}"
    );
    m.handle_http(t0, *retry, Ok(&http("200 OK", "<ok/>")));
    let ev = events(&mut m);
    assert_eq!(ev.len(), 2, "{ev:?}");
    let ports: Vec<_> = ev
        .iter()
        .map(|e| match e {
            Event::Mapped {
                method: Method::Upnp,
                protocol,
                external_port,
                ..
            } => (*protocol, *external_port),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(ports[0], (Protocol::Udp, 6881));
    assert_eq!(ports[1].0, Protocol::Tcp);
    assert!(ports[1].1 >= 10_000);
    m.stop(t0);
    let dels = drain(&mut m);
    assert_eq!(dels.len(), 2);
    assert!(!m.is_idle());
    for d in dels {
        let Output::Http { id, request, .. } = d else {
            panic!()
        };
        assert!(String::from_utf8_lossy(&request).contains("#DeletePortMapping"));
        m.handle_http(t0, id, Ok(&http("200 OK", "")));
    }
    assert!(m.is_idle());
    assert_eq!(
        events(&mut m)
            .iter()
            .filter(|e| matches!(e, Event::Removed { .. }))
            .count(),
        2
    );
}

#[test]
fn upnp_falls_back_to_a_permanent_lease_and_reports_failures() {
    let t0 = Time::ZERO;
    let mut c = config(false, false, true);
    c.protocols = vec![Protocol::Tcp];
    let mut m = PortMapper::new(c, 5, t0);
    drain(&mut m);
    let ssdp = b"HTTP/1.1 200 OK\r\nLOCATION: http://192.168.77.1:5000/d\r\n\r\n";
    m.handle_udp(t0, SocketAddr::new(GW, 1900), ssdp);
    let [Output::Http { id, .. }] = &drain(&mut m)[..] else {
        panic!()
    };
    m.handle_http(t0, *id, Ok(&http("200 OK", "<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>c</controlURL></service>")));
    let [Output::Http { id, .. }] = &drain(&mut m)[..] else {
        panic!()
    };
    let f725 = "<errorCode>725</errorCode><errorDescription>OnlyPermanentLeasesSupported</errorDescription>";
    m.handle_http(t0, *id, Ok(&http("500 Internal Server Error", f725)));
    let [Output::Http { id, request, .. }] = &drain(&mut m)[..] else {
        panic!()
    };
    assert!(String::from_utf8_lossy(request).contains("<NewLeaseDuration>0<"));
    m.handle_http(t0, *id, Err("connection refused".into()));
    let ev = events(&mut m);
    assert!(
        matches!(
            &ev[..],
            [Event::Failed {
                method: Method::Upnp,
                ..
            }]
        ),
        "{ev:?}"
    );
    // Tried again later, from the search.
    let t1 = m.poll_timeout().unwrap();
    assert_eq!(t1, t0 + RETRY_AFTER);
}
