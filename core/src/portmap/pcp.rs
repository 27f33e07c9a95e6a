//! PCP (RFC 6887) `MAP` requests and answers: the successor of NAT-PMP, on the same port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{PortmapError, Protocol};

/// The protocol version this module speaks.
pub const VERSION: u8 = 2;
/// Length of a `MAP` request and of its answer without options.
pub const MAP_LEN: usize = 60;
const OP_MAP: u8 = 1;
/// Result code: the server speaks another version (a NAT-PMP-only gateway answers with a
/// version-0 datagram instead).
pub const UNSUPP_VERSION: u8 = 1;

/// Result codes (RFC 6887 §7.4) with the text users see.
pub fn result_text(code: u8) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized",
        3 => "malformed request",
        4 => "unsupported opcode",
        5 => "unsupported option",
        6 => "malformed option",
        7 => "network failure",
        8 => "no resources",
        9 => "unsupported protocol",
        10 => "user exceeded quota",
        11 => "cannot provide the external port",
        12 => "address mismatch (the gateway sees another source address than ours)",
        13 => "excessive remote peers",
        _ => "unknown result code",
    }
}

/// An address as PCP writes it: IPv6, or IPv4-mapped IPv6.
fn to16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn from16(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// A `MAP` request from `client` (our address as we see it) for `internal_port`, for
/// `lifetime_secs` (0 removes it), identified by `nonce` (the same for renewals).
pub fn map_request(
    nonce: [u8; 12],
    client: IpAddr,
    protocol: Protocol,
    internal_port: u16,
    suggested_external: u16,
    lifetime_secs: u32,
) -> [u8; MAP_LEN] {
    let mut b = [0u8; MAP_LEN];
    b[0] = VERSION;
    b[1] = OP_MAP;
    b[4..8].copy_from_slice(&lifetime_secs.to_be_bytes());
    b[8..24].copy_from_slice(&to16(client));
    b[24..36].copy_from_slice(&nonce);
    b[36] = protocol.ip_number();
    b[40..42].copy_from_slice(&internal_port.to_be_bytes());
    b[42..44].copy_from_slice(&suggested_external.to_be_bytes());
    // "No preference" for the external address, in the client's family.
    let any = match client {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    b[44..60].copy_from_slice(&to16(any));
    b
}

/// A successful `MAP` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapResponse {
    /// The request's nonce, echoed.
    pub nonce: [u8; 12],
    /// Which protocol.
    pub protocol: Protocol,
    /// Seconds the mapping lasts.
    pub lifetime_secs: u32,
    /// The server's epoch (seconds since its state was last reset).
    pub epoch: u32,
    /// Our port.
    pub internal_port: u16,
    /// The port outside.
    pub external_port: u16,
    /// The address outside.
    pub external_address: IpAddr,
}

/// Reads a PCP answer to a `MAP` request. A non-zero result code is
/// [`PortmapError::Refused`] (code [`UNSUPP_VERSION`] included).
pub fn parse_map_response(b: &[u8]) -> Result<MapResponse, PortmapError> {
    if b.len() < 24 {
        return Err(PortmapError::Malformed(
            "PCP answer shorter than its 24-byte header",
        ));
    }
    if b[1] & 0x80 == 0 {
        return Err(PortmapError::Malformed("a PCP request, not an answer"));
    }
    let code = b[3];
    if code != 0 {
        return Err(PortmapError::Refused {
            code: code.into(),
            text: result_text(code),
        });
    }
    if b[0] != VERSION {
        return Err(PortmapError::Malformed("PCP answer of another version"));
    }
    if b[1] & 0x7f != OP_MAP {
        return Err(PortmapError::Malformed(
            "PCP answer to another opcode than MAP",
        ));
    }
    if b.len() < MAP_LEN {
        return Err(PortmapError::Malformed(
            "PCP MAP answer shorter than 60 bytes",
        ));
    }
    let protocol = Protocol::from_ip_number(b[36]).ok_or(PortmapError::Malformed(
        "PCP MAP answer for a protocol other than TCP or UDP",
    ))?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&b[24..36]);
    let mut ext = [0u8; 16];
    ext.copy_from_slice(&b[44..60]);
    Ok(MapResponse {
        nonce,
        protocol,
        lifetime_secs: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        epoch: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        internal_port: u16::from_be_bytes([b[40], b[41]]),
        external_port: u16::from_be_bytes([b[42], b[43]]),
        external_address: from16(ext),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_to(req: &[u8; MAP_LEN], code: u8, ext_port: u16, ext: Ipv4Addr) -> Vec<u8> {
        let mut a = req.to_vec();
        a[1] |= 0x80;
        a[2] = 0;
        a[3] = code;
        a[8..12].copy_from_slice(&77u32.to_be_bytes());
        a[12..24].fill(0);
        a[42..44].copy_from_slice(&ext_port.to_be_bytes());
        a[44..60].copy_from_slice(&ext.to_ipv6_mapped().octets());
        a
    }

    #[test]
    fn request_layout_and_answer_round_trip() {
        let nonce = *b"0123456789ab";
        let client = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
        let r = map_request(nonce, client, Protocol::Udp, 6881, 6881, 7200);
        assert_eq!(&r[..4], &[2, 1, 0, 0]);
        assert_eq!(&r[4..8], &7200u32.to_be_bytes());
        assert_eq!(
            &r[8..24],
            &Ipv4Addr::new(192, 168, 1, 20).to_ipv6_mapped().octets()
        );
        assert_eq!(r[36], 17);
        assert_eq!(&r[56..60], &[0, 0, 0, 0]);
        assert_eq!(&r[54..56], &[0xff, 0xff]);
        let a = answer_to(&r, 0, 40000, Ipv4Addr::new(11, 0, 0, 2));
        let m = parse_map_response(&a).unwrap();
        assert_eq!(m.nonce, nonce);
        assert_eq!(m.protocol, Protocol::Udp);
        assert_eq!(m.internal_port, 6881);
        assert_eq!(m.external_port, 40000);
        assert_eq!(m.external_address, IpAddr::V4(Ipv4Addr::new(11, 0, 0, 2)));
        assert_eq!(m.epoch, 77);
        assert_eq!(m.lifetime_secs, 7200);
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        let r = map_request(
            [1; 12],
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Protocol::Tcp,
            1,
            1,
            1,
        );
        let a = answer_to(&r, 2, 0, Ipv4Addr::UNSPECIFIED);
        assert!(matches!(
            parse_map_response(&a),
            Err(PortmapError::Refused { code: 2, .. })
        ));
        assert!(parse_map_response(&r).is_err(), "a request is no answer");
        assert!(parse_map_response(&a[..30]).is_err());
        let mut other = answer_to(&r, 0, 1, Ipv4Addr::UNSPECIFIED);
        other[36] = 1;
        assert!(parse_map_response(&other).is_err(), "ICMP is not ours");
    }
}
