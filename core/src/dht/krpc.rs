//! KRPC (BEP 5): the DHT's bencoded messages over UDP, with BEP 32 (`nodes6`, `want`),
//! BEP 42 (`ip`) and BEP 43 (`ro`).
//!
//! [`Message::decode`] takes one datagram and refuses anything malformed or oversized before
//! allocating for it; [`Message::encode`] writes canonical bencode (keys sorted).

use std::net::SocketAddr;

use crate::bencode::{self, Limits, Value};
use crate::id::Id20;
use crate::wire::compact::{self, V4_LEN, V6_LEN};

/// Largest datagram decoded (a full answer with 8 nodes and 100 peers is about 1 KiB).
pub const MAX_DATAGRAM: usize = 4096;
/// Longest transaction id accepted.
pub const MAX_TID: usize = 16;
/// Longest token accepted.
pub const MAX_TOKEN: usize = 64;
/// Most nodes of one family in a response.
pub const MAX_NODES: usize = 32;
/// Most peers (`values`) in a response.
pub const MAX_VALUES: usize = 256;
/// Longest client version string kept.
const MAX_VERSION: usize = 16;
/// Longest error message kept.
const MAX_ERROR_MSG: usize = 256;

/// Bytes of one compact IPv4 node (id, address, port).
pub const NODE_V4_LEN: usize = 20 + V4_LEN;
/// Bytes of one compact IPv6 node.
pub const NODE_V6_LEN: usize = 20 + V6_LEN;

/// KRPC error codes (BEP 5).
pub mod code {
    /// Generic error.
    pub const GENERIC: i64 = 201;
    /// Server error.
    pub const SERVER: i64 = 202;
    /// Protocol error: a malformed packet, an invalid argument or a bad token.
    pub const PROTOCOL: i64 = 203;
    /// Method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// Why a datagram is not a KRPC message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    /// Larger than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is too large")]
    TooLarge(usize),
    /// Not bencode, or not a dictionary.
    #[error("not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// A required key is missing or has the wrong type or size.
    #[error("bad or missing {0:?}")]
    Field(&'static str),
    /// A query whose method we do not know, with its transaction id (to answer 204).
    #[error("unknown method {method:?}")]
    UnknownMethod {
        /// The transaction id, to answer with.
        tid: Vec<u8>,
        /// The method, lossily decoded.
        method: String,
    },
}

/// A node: its id and UDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// The node's id.
    pub id: Id20,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Which address families a querier wants nodes for (BEP 32 `want`). Both `false` means the
/// key was absent: answer with the family the query came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// `n4`: IPv4 nodes.
    pub v4: bool,
    /// `n6`: IPv6 nodes.
    pub v6: bool,
}

/// A query's method and arguments (the querier's id is in [`Query::id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `ping`.
    Ping,
    /// `find_node`: the nodes closest to `target`.
    FindNode {
        /// The id sought.
        target: Id20,
        /// BEP 32 families wanted.
        want: Want,
    },
    /// `get_peers`: peers of `info_hash`, or the closest nodes and a token.
    GetPeers {
        /// The torrent.
        info_hash: Id20,
        /// BEP 32 families wanted.
        want: Want,
    },
    /// `announce_peer`: the querier has `info_hash` on `port` (or on its source port when
    /// `implied_port`).
    AnnouncePeer {
        /// The torrent.
        info_hash: Id20,
        /// The port the querier's peer listens on.
        port: u16,
        /// Use the query's UDP source port instead (BEP 5, for peers behind NAT).
        implied_port: bool,
        /// The token from an earlier `get_peers` answer.
        token: Vec<u8>,
    },
}

/// A query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The querier's node id.
    pub id: Id20,
    /// Method and arguments.
    pub method: Method,
}

/// A response's values: only `id` is always present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The responder's node id.
    pub id: Id20,
    /// `nodes`: IPv4 nodes close to the target.
    pub nodes: Vec<NodeInfo>,
    /// `nodes6`: IPv6 nodes close to the target (BEP 32).
    pub nodes6: Vec<NodeInfo>,
    /// `values`: peers of the torrent.
    pub values: Vec<SocketAddr>,
    /// `token`: to announce to this node later.
    pub token: Option<Vec<u8>>,
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `y = q`.
    Query(Query),
    /// `y = r`.
    Response(Response),
    /// `y = e`: a code and a message.
    Error {
        /// The KRPC error code.
        code: i64,
        /// The message, lossily decoded.
        message: String,
    },
}

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `t`: the transaction id, echoed in the answer.
    pub tid: Vec<u8>,
    /// The query, response or error.
    pub body: Body,
    /// `ro = 1`: the sender is read-only and must not be added to routing tables (BEP 43).
    pub read_only: bool,
    /// `ip`: the address the responder saw the querier at (BEP 42).
    pub ip: Option<SocketAddr>,
    /// `v`: the sender's client version, if any.
    pub version: Option<Vec<u8>>,
}

fn id_of(v: Option<&Value<'_>>, what: &'static str) -> Result<Id20, KrpcError> {
    v.and_then(Value::as_bytes)
        .and_then(|b| Id20::from_slice(b).ok())
        .ok_or(KrpcError::Field(what))
}

fn want_of(a: &Value<'_>) -> Result<Want, KrpcError> {
    let mut want = Want::default();
    if let Some(list) = a.get(b"want") {
        let list = list.as_list().ok_or(KrpcError::Field("want"))?;
        for w in list.iter().take(8) {
            match w.as_bytes() {
                Some(b"n4") => want.v4 = true,
                Some(b"n6") => want.v6 = true,
                _ => {}
            }
        }
    }
    Ok(want)
}

/// Parses a compact node list of one family; `None` if its length is ragged or too long.
pub fn parse_nodes(bytes: &[u8], v6: bool) -> Option<Vec<NodeInfo>> {
    let stride = if v6 { NODE_V6_LEN } else { NODE_V4_LEN };
    if bytes.len() % stride != 0 || bytes.len() / stride > MAX_NODES {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / stride);
    for chunk in bytes.chunks_exact(stride) {
        let id = Id20::from_slice(&chunk[..20]).ok()?;
        let addr = if v6 {
            let a: &[u8; V6_LEN] = chunk[20..].try_into().ok()?;
            SocketAddr::V6(compact::parse_v6(a))
        } else {
            let a: &[u8; V4_LEN] = chunk[20..].try_into().ok()?;
            SocketAddr::V4(compact::parse_v4(a))
        };
        out.push(NodeInfo { id, addr });
    }
    Some(out)
}

fn parse_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        V4_LEN => Some(SocketAddr::V4(compact::parse_v4(b.try_into().ok()?))),
        V6_LEN => Some(SocketAddr::V6(compact::parse_v6(b.try_into().ok()?))),
        _ => None,
    }
}

fn write_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr {
        SocketAddr::V4(a) => compact::write_v4(a, out),
        SocketAddr::V6(a) => compact::write_v6(a, out),
    }
}

/// Appends nodes of one family in compact form (others are skipped).
pub fn write_nodes(nodes: &[NodeInfo], v6: bool, out: &mut Vec<u8>) {
    for n in nodes {
        match (n.addr, v6) {
            (SocketAddr::V4(a), false) => {
                out.extend_from_slice(&n.id.0);
                compact::write_v4(&a, out);
            }
            (SocketAddr::V6(a), true) => {
                out.extend_from_slice(&n.id.0);
                compact::write_v6(&a, out);
            }
            _ => {}
        }
    }
}

/// Text from bytes, invalid UTF-8 replaced, at most `max` bytes (cut at a character).
fn lossy(b: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned();
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

impl Message {
    /// Decodes one datagram.
    pub fn decode(datagram: &[u8]) -> Result<Message, KrpcError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(KrpcError::TooLarge(datagram.len()));
        }
        let limits = Limits {
            max_depth: 4,
            max_values: 1024,
        };
        let v = bencode::decode_with(datagram, limits)?;
        if v.as_dict().is_none() {
            return Err(KrpcError::Field("message"));
        }
        let tid = v
            .get(b"t")
            .and_then(Value::as_bytes)
            .filter(|t| t.len() <= MAX_TID)
            .ok_or(KrpcError::Field("t"))?
            .to_vec();
        let read_only = v.get(b"ro").and_then(Value::as_int) == Some(1);
        let ip = v.get(b"ip").and_then(Value::as_bytes).and_then(parse_addr);
        let version = v
            .get(b"v")
            .and_then(Value::as_bytes)
            .map(|b| b[..b.len().min(MAX_VERSION)].to_vec());
        let body = match v.get(b"y").and_then(Value::as_bytes) {
            Some(b"q") => {
                let method = v
                    .get(b"q")
                    .and_then(Value::as_bytes)
                    .ok_or(KrpcError::Field("q"))?;
                let a = v.get(b"a").ok_or(KrpcError::Field("a"))?;
                if a.as_dict().is_none() {
                    return Err(KrpcError::Field("a"));
                }
                let id = id_of(a.get(b"id"), "id")?;
                let method = match method {
                    b"ping" => Method::Ping,
                    b"find_node" => Method::FindNode {
                        target: id_of(a.get(b"target"), "target")?,
                        want: want_of(a)?,
                    },
                    b"get_peers" => Method::GetPeers {
                        info_hash: id_of(a.get(b"info_hash"), "info_hash")?,
                        want: want_of(a)?,
                    },
                    b"announce_peer" => {
                        let port = a.get(b"port").and_then(Value::as_int);
                        let implied_port =
                            a.get(b"implied_port").and_then(Value::as_int) == Some(1);
                        let port = match port {
                            Some(p) if (0..=65535).contains(&p) => p as u16,
                            None if implied_port => 0,
                            _ => return Err(KrpcError::Field("port")),
                        };
                        let token = a
                            .get(b"token")
                            .and_then(Value::as_bytes)
                            .filter(|t| t.len() <= MAX_TOKEN)
                            .ok_or(KrpcError::Field("token"))?
                            .to_vec();
                        Method::AnnouncePeer {
                            info_hash: id_of(a.get(b"info_hash"), "info_hash")?,
                            port,
                            implied_port,
                            token,
                        }
                    }
                    other => {
                        return Err(KrpcError::UnknownMethod {
                            tid,
                            method: lossy(other, 32),
                        })
                    }
                };
                Body::Query(Query { id, method })
            }
            Some(b"r") => {
                let r = v.get(b"r").ok_or(KrpcError::Field("r"))?;
                if r.as_dict().is_none() {
                    return Err(KrpcError::Field("r"));
                }
                let mut resp = Response {
                    id: id_of(r.get(b"id"), "id")?,
                    ..Response::default()
                };
                if let Some(n) = r.get(b"nodes") {
                    let b = n.as_bytes().ok_or(KrpcError::Field("nodes"))?;
                    resp.nodes = parse_nodes(b, false).ok_or(KrpcError::Field("nodes"))?;
                }
                if let Some(n) = r.get(b"nodes6") {
                    let b = n.as_bytes().ok_or(KrpcError::Field("nodes6"))?;
                    resp.nodes6 = parse_nodes(b, true).ok_or(KrpcError::Field("nodes6"))?;
                }
                if let Some(vals) = r.get(b"values") {
                    let list = vals.as_list().ok_or(KrpcError::Field("values"))?;
                    // Entries of another size are skipped, as other clients do.
                    resp.values = list
                        .iter()
                        .take(MAX_VALUES)
                        .filter_map(|e| e.as_bytes().and_then(parse_addr))
                        .collect();
                }
                if let Some(t) = r.get(b"token") {
                    let t = t
                        .as_bytes()
                        .filter(|t| t.len() <= MAX_TOKEN)
                        .ok_or(KrpcError::Field("token"))?;
                    resp.token = Some(t.to_vec());
                }
                Body::Response(resp)
            }
            Some(b"e") => {
                let e = v
                    .get(b"e")
                    .and_then(Value::as_list)
                    .ok_or(KrpcError::Field("e"))?;
                let code = e.first().and_then(Value::as_int).unwrap_or(code::GENERIC);
                let message = e
                    .get(1)
                    .and_then(Value::as_bytes)
                    .map(|m| lossy(m, MAX_ERROR_MSG))
                    .unwrap_or_default();
                Body::Error { code, message }
            }
            _ => return Err(KrpcError::Field("y")),
        };
        Ok(Message {
            tid,
            body,
            read_only,
            ip,
            version,
        })
    }

    /// Encodes the message as canonical bencode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(b'd');
        match &self.body {
            Body::Query(q) => {
                bencode::write_bytes(&mut out, b"a");
                out.push(b'd');
                bencode::write_bytes(&mut out, b"id");
                bencode::write_bytes(&mut out, &q.id.0);
                let want = |out: &mut Vec<u8>, w: &Want| {
                    if w.v4 || w.v6 {
                        bencode::write_bytes(out, b"want");
                        out.push(b'l');
                        if w.v4 {
                            bencode::write_bytes(out, b"n4");
                        }
                        if w.v6 {
                            bencode::write_bytes(out, b"n6");
                        }
                        out.push(b'e');
                    }
                };
                let name: &[u8] = match &q.method {
                    Method::Ping => b"ping",
                    Method::FindNode { target, want: w } => {
                        bencode::write_bytes(&mut out, b"target");
                        bencode::write_bytes(&mut out, &target.0);
                        want(&mut out, w);
                        b"find_node"
                    }
                    Method::GetPeers { info_hash, want: w } => {
                        bencode::write_bytes(&mut out, b"info_hash");
                        bencode::write_bytes(&mut out, &info_hash.0);
                        want(&mut out, w);
                        b"get_peers"
                    }
                    Method::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        if *implied_port {
                            bencode::write_bytes(&mut out, b"implied_port");
                            bencode::write_int(&mut out, 1);
                        }
                        bencode::write_bytes(&mut out, b"info_hash");
                        bencode::write_bytes(&mut out, &info_hash.0);
                        bencode::write_bytes(&mut out, b"port");
                        bencode::write_int(&mut out, i64::from(*port));
                        bencode::write_bytes(&mut out, b"token");
                        bencode::write_bytes(&mut out, token);
                        b"announce_peer"
                    }
                };
                out.push(b'e');
                self.write_common_before_q(&mut out);
                bencode::write_bytes(&mut out, b"q");
                bencode::write_bytes(&mut out, name);
                self.write_common_after_q(&mut out);
                bencode::write_bytes(&mut out, b"y");
                bencode::write_bytes(&mut out, b"q");
            }
            Body::Response(r) => {
                self.write_common_before_q(&mut out);
                bencode::write_bytes(&mut out, b"r");
                out.push(b'd');
                bencode::write_bytes(&mut out, b"id");
                bencode::write_bytes(&mut out, &r.id.0);
                if !r.nodes.is_empty() {
                    let mut b = Vec::with_capacity(r.nodes.len() * NODE_V4_LEN);
                    write_nodes(&r.nodes, false, &mut b);
                    bencode::write_bytes(&mut out, b"nodes");
                    bencode::write_bytes(&mut out, &b);
                }
                if !r.nodes6.is_empty() {
                    let mut b = Vec::with_capacity(r.nodes6.len() * NODE_V6_LEN);
                    write_nodes(&r.nodes6, true, &mut b);
                    bencode::write_bytes(&mut out, b"nodes6");
                    bencode::write_bytes(&mut out, &b);
                }
                if let Some(t) = &r.token {
                    bencode::write_bytes(&mut out, b"token");
                    bencode::write_bytes(&mut out, t);
                }
                if !r.values.is_empty() {
                    bencode::write_bytes(&mut out, b"values");
                    out.push(b'l');
                    for v in &r.values {
                        let mut b = Vec::with_capacity(V6_LEN);
                        write_addr(v, &mut b);
                        bencode::write_bytes(&mut out, &b);
                    }
                    out.push(b'e');
                }
                out.push(b'e');
                self.write_common_after_q(&mut out);
                bencode::write_bytes(&mut out, b"y");
                bencode::write_bytes(&mut out, b"r");
            }
            Body::Error { code, message } => {
                bencode::write_bytes(&mut out, b"e");
                out.push(b'l');
                bencode::write_int(&mut out, *code);
                bencode::write_bytes(&mut out, message.as_bytes());
                out.push(b'e');
                self.write_common_before_q(&mut out);
                self.write_common_after_q(&mut out);
                bencode::write_bytes(&mut out, b"y");
                bencode::write_bytes(&mut out, b"e");
            }
        }
        out.push(b'e');
        out
    }

    /// Keys that sort before `q`/`r`: `ip`.
    fn write_common_before_q(&self, out: &mut Vec<u8>) {
        if let Some(ip) = &self.ip {
            let mut b = Vec::with_capacity(V6_LEN);
            write_addr(ip, &mut b);
            bencode::write_bytes(out, b"ip");
            bencode::write_bytes(out, &b);
        }
    }

    /// Keys between `q`/`r` and `y`: `ro`, `t`, `v`.
    fn write_common_after_q(&self, out: &mut Vec<u8>) {
        if self.read_only {
            bencode::write_bytes(out, b"ro");
            bencode::write_int(out, 1);
        }
        bencode::write_bytes(out, b"t");
        bencode::write_bytes(out, &self.tid);
        if let Some(v) = &self.version {
            bencode::write_bytes(out, b"v");
            bencode::write_bytes(out, v);
        }
    }

    /// An error answer to transaction `tid`.
    pub fn error(tid: Vec<u8>, code: i64, message: &str) -> Message {
        Message {
            tid,
            body: Body::Error {
                code,
                message: message.to_string(),
            },
            read_only: false,
            ip: None,
            version: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> Id20 {
        Id20([b; 20])
    }

    fn q(method: Method) -> Message {
        Message {
            tid: b"aa".to_vec(),
            body: Body::Query(Query { id: id(1), method }),
            read_only: false,
            ip: None,
            version: None,
        }
    }

    #[test]
    fn bep5_examples_decode() {
        // The examples of BEP 5, with 20-byte ids.
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = Message::decode(ping).unwrap();
        assert_eq!(m.tid, b"aa");
        assert_eq!(
            m.body,
            Body::Query(Query {
                id: Id20(*b"abcdefghij0123456789"),
                method: Method::Ping
            })
        );
        assert_eq!(m.encode(), ping);
        let resp = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";
        let m = Message::decode(resp).unwrap();
        assert!(matches!(m.body, Body::Response(ref r) if r.id == Id20(*b"mnopqrstuvwxyz123456")));
        assert_eq!(m.encode(), resp);
        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let m = Message::decode(err).unwrap();
        assert_eq!(
            m.body,
            Body::Error {
                code: 201,
                message: "A Generic Error Ocurred".into()
            }
        );
        assert_eq!(m.encode(), err);
        let ann = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        let m = Message::decode(ann).unwrap();
        assert_eq!(
            m.body,
            Body::Query(Query {
                id: Id20(*b"abcdefghij0123456789"),
                method: Method::AnnouncePeer {
                    info_hash: Id20(*b"mnopqrstuvwxyz123456"),
                    port: 6881,
                    implied_port: true,
                    token: b"aoeusnth".to_vec()
                }
            })
        );
        assert_eq!(m.encode(), ann);
    }

    #[test]
    fn every_kind_round_trips() {
        let v4: SocketAddr = "10.1.2.3:6881".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:51413".parse().unwrap();
        let both = Want { v4: true, v6: true };
        let mut msgs = vec![
            q(Method::Ping),
            q(Method::FindNode {
                target: id(7),
                want: both,
            }),
            q(Method::GetPeers {
                info_hash: id(9),
                want: Want::default(),
            }),
            q(Method::AnnouncePeer {
                info_hash: id(9),
                port: 1,
                implied_port: false,
                token: vec![1, 2, 3],
            }),
            Message {
                tid: vec![0, 255],
                body: Body::Response(Response {
                    id: id(3),
                    nodes: vec![NodeInfo {
                        id: id(4),
                        addr: v4,
                    }],
                    nodes6: vec![NodeInfo {
                        id: id(5),
                        addr: v6,
                    }],
                    values: vec![v4, v6],
                    token: Some(b"tok".to_vec()),
                }),
                read_only: true,
                ip: Some(v6),
                version: Some(b"WR01".to_vec()),
            },
            Message::error(b"x".to_vec(), code::PROTOCOL, "bad token"),
        ];
        msgs[0].read_only = true;
        for m in msgs {
            let bytes = m.encode();
            bencode::decode(&bytes).expect("canonical bencode");
            assert_eq!(Message::decode(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let cases: &[&[u8]] = &[
            b"",
            b"le",
            b"d1:t2:aae",
            b"d1:t2:aa1:y1:qe",
            b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",
            b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes3:abce1:t2:aa1:y1:re",
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
            b"d1:t17:aaaaaaaaaaaaaaaaa1:y1:ee",
        ];
        for c in cases {
            assert!(
                Message::decode(c).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let big = vec![b'x'; MAX_DATAGRAM + 1];
        assert_eq!(
            Message::decode(&big),
            Err(KrpcError::TooLarge(MAX_DATAGRAM + 1))
        );
        match Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:zz1:y1:qe") {
            Err(KrpcError::UnknownMethod { tid, method }) => {
                assert_eq!(tid, b"zz");
                assert_eq!(method, "vote");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn odd_values_are_skipped_and_lists_bounded() {
        let mut r = b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl".to_vec();
        for _ in 0..300 {
            r.extend_from_slice(b"6:\x0a\x00\x00\x01\x1a\xe1");
        }
        r.extend_from_slice(b"3:abcee1:t2:aa1:y1:re");
        let m = Message::decode(&r).unwrap();
        let Body::Response(resp) = m.body else {
            panic!()
        };
        assert_eq!(resp.values.len(), MAX_VALUES);
    }
}
