//! NAT-PMP (RFC 6886) messages: the public-address request and port-mapping requests, and the
//! gateway's answers.

use std::net::Ipv4Addr;

use super::{PortmapError, Protocol};

/// The UDP port a NAT-PMP (and PCP) server listens on.
pub const SERVER_PORT: u16 = 5351;

/// Result codes (RFC 6886 §3.5) with the text users see.
pub fn result_text(code: u16) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized (the gateway has NAT-PMP switched off or refuses this client)",
        3 => "network failure (the gateway has no public address yet)",
        4 => "out of resources (the gateway's mapping table is full)",
        5 => "unsupported opcode",
        _ => "unknown result code",
    }
}

/// The request for the gateway's public address (opcode 0).
pub fn external_address_request() -> [u8; 2] {
    [0, 0]
}

/// A request to map `internal_port` for `lifetime_secs` seconds (0 removes the mapping),
/// asking for `suggested_external` (0: any).
pub fn map_request(
    protocol: Protocol,
    internal_port: u16,
    suggested_external: u16,
    lifetime_secs: u32,
) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = match protocol {
        Protocol::Udp => 1,
        Protocol::Tcp => 2,
    };
    b[4..6].copy_from_slice(&internal_port.to_be_bytes());
    b[6..8].copy_from_slice(&suggested_external.to_be_bytes());
    b[8..12].copy_from_slice(&lifetime_secs.to_be_bytes());
    b
}

/// A gateway's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The public address.
    ExternalAddress {
        /// Seconds since the gateway's mapping table was last reset.
        epoch: u32,
        /// The gateway's public IPv4 address.
        address: Ipv4Addr,
    },
    /// A mapping was made, renewed or (lifetime 0) removed.
    Mapping {
        /// Which protocol.
        protocol: Protocol,
        /// Seconds since the gateway's mapping table was last reset.
        epoch: u32,
        /// Our port.
        internal_port: u16,
        /// The port the gateway forwards to it (may differ from the one asked for).
        external_port: u16,
        /// Seconds the mapping lasts.
        lifetime_secs: u32,
    },
}

/// Reads a NAT-PMP answer. A non-zero result code is [`PortmapError::Refused`]; a
/// version-0 "unsupported version" answer to a PCP request is how a NAT-PMP-only gateway
/// says it does not speak PCP.
pub fn parse_response(b: &[u8]) -> Result<Response, PortmapError> {
    if b.len() < 8 {
        return Err(PortmapError::Malformed(
            "NAT-PMP answer shorter than 8 bytes",
        ));
    }
    if b[0] != 0 {
        return Err(PortmapError::Malformed(
            "not a NAT-PMP answer (version is not 0)",
        ));
    }
    if b[1] < 128 {
        return Err(PortmapError::Malformed("a NAT-PMP request, not an answer"));
    }
    let code = u16::from_be_bytes([b[2], b[3]]);
    if code != 0 {
        return Err(PortmapError::Refused {
            code,
            text: result_text(code),
        });
    }
    let epoch = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    match b[1] - 128 {
        0 => {
            if b.len() < 12 {
                return Err(PortmapError::Malformed(
                    "NAT-PMP address answer shorter than 12 bytes",
                ));
            }
            Ok(Response::ExternalAddress {
                epoch,
                address: Ipv4Addr::new(b[8], b[9], b[10], b[11]),
            })
        }
        op @ (1 | 2) => {
            if b.len() < 16 {
                return Err(PortmapError::Malformed(
                    "NAT-PMP mapping answer shorter than 16 bytes",
                ));
            }
            Ok(Response::Mapping {
                protocol: if op == 1 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                epoch,
                internal_port: u16::from_be_bytes([b[8], b[9]]),
                external_port: u16::from_be_bytes([b[10], b[11]]),
                lifetime_secs: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            })
        }
        _ => Err(PortmapError::Malformed(
            "NAT-PMP answer to an unknown opcode",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_rfc_layout() {
        assert_eq!(external_address_request(), [0, 0]);
        let r = map_request(Protocol::Tcp, 6881, 6882, 7200);
        assert_eq!(r, [0, 2, 0, 0, 0x1a, 0xe1, 0x1a, 0xe2, 0, 0, 0x1c, 0x20]);
        assert_eq!(map_request(Protocol::Udp, 1, 0, 0)[1], 1);
    }

    #[test]
    fn answers_parse() {
        // As miniupnpd 2.3.1 sent them.
        let a = b"\x00\x80\x00\x00\x00\x00\x93\xec\x0b\x00\x00\x02";
        assert_eq!(
            parse_response(a).unwrap(),
            Response::ExternalAddress {
                epoch: 0x93ec,
                address: Ipv4Addr::new(11, 0, 0, 2)
            }
        );
        let m = b"\x00\x82\x00\x00\x00\x00\x94\xa2\x1a\xe1\x1a\xe1\x00\x00\x0e\x10";
        assert_eq!(
            parse_response(m).unwrap(),
            Response::Mapping {
                protocol: Protocol::Tcp,
                epoch: 0x94a2,
                internal_port: 6881,
                external_port: 6881,
                lifetime_secs: 3600
            }
        );
        let refused = b"\x00\x82\x00\x03\x00\x00\x93\xec\x1a\xe1\x1a\xe1\x00\x00\x0e\x10";
        assert!(matches!(
            parse_response(refused),
            Err(PortmapError::Refused { code: 3, .. })
        ));
    }

    #[test]
    fn short_and_foreign_datagrams_are_errors() {
        for b in [
            &b""[..],
            b"\x00\x80",
            b"\x02\x81\x00\x00\x00\x00\x00\x00",
            b"\x00\x02\x00\x00\x00\x00\x00\x00",
        ] {
            assert!(parse_response(b).is_err(), "{b:?}");
        }
        assert!(parse_response(b"\x00\x82\x00\x00\x00\x00\x00\x00\x1a").is_err());
    }
}
