#![no_main]
//! What a LAN device may send a port mapper: NAT-PMP / PCP datagrams, SSDP answers, device
//! descriptions and SOAP answers, first to each parser, then to a [`PortMapper`] in the
//! middle of its work. The input is a list of records: a byte choosing the action, a
//! length byte, then that many bytes. Nothing may panic or grow without bound.
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use webtorrent_core::portmap::{natpmp, pcp, upnp, Config, Output, PortMapper};
use webtorrent_core::time::Time;

fuzz_target!(|data: &[u8]| {
    let gw = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    let me = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));
    let location = upnp::HttpUrl::parse("http://192.168.1.1:5000/d.xml").unwrap();
    let mut m = PortMapper::new(Config::new(me, Some(gw), 6881), 9, Time::ZERO);
    let mut now = Time::ZERO;
    let mut http_ids = Vec::new();
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        let _ = natpmp::parse_response(body);
        let _ = pcp::parse_map_response(body);
        let _ = upnp::parse_ssdp_response(body, gw);
        let _ = upnp::parse_description(&String::from_utf8_lossy(body), &location);
        let _ = upnp::parse_soap_response(body);
        match op % 6 {
            0 => m.handle_udp(now, SocketAddr::new(gw, 5351), body),
            1 => m.handle_udp(now, SocketAddr::new(gw, 1900), body),
            2 | 3 => {
                if let Some(id) = http_ids.pop() {
                    m.handle_http(now, id, Ok(body));
                }
            }
            4 => {
                now += Duration::from_secs(u64::from(*len) * 10);
                m.handle_timeout(now);
            }
            _ => m.stop(now),
        }
        while let Some(o) = m.poll_output() {
            if let Output::Http { id, .. } = o {
                http_ids.push(id);
            }
        }
        while m.poll_event().is_some() {}
        assert!(http_ids.len() < 64);
    }
});
