//! UPnP Internet Gateway Device messages: the SSDP search, the device description (where the
//! WAN connection service is), and the SOAP actions that add and delete a port mapping.
//!
//! Everything here reads bytes a device on the LAN sent: lengths are bounded by the caller
//! (see [`MAX_HTTP_RESPONSE`]) and nothing is trusted to be well formed.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{PortmapError, Protocol};

/// Where SSDP searches go.
pub const SSDP_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 1900);
/// The device type searched for (IGD version 2 devices answer it too).
pub const IGD_TYPE: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
/// Largest HTTP answer (description or SOAP) a driver should read from a device.
pub const MAX_HTTP_RESPONSE: usize = 64 * 1024;

/// UPnP error codes (the `errorCode` of a SOAP fault) the mapper reacts to.
pub mod fault {
    /// The external port is mapped to another client.
    pub const CONFLICT: u32 = 718;
    /// The device accepts only permanent mappings (lease 0).
    pub const ONLY_PERMANENT_LEASES: u32 = 725;
    /// The device wants the external port equal to the internal one.
    pub const SAME_PORT_VALUES_REQUIRED: u32 = 724;
    /// No such mapping (deleting one already gone).
    pub const NO_SUCH_ENTRY: u32 = 714;
}

/// An SSDP `M-SEARCH` for Internet gateways.
pub fn msearch() -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: {IGD_TYPE}\r\n\r\n"
    )
    .into_bytes()
}

/// An `http://` URL of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host as written (an IP address for the devices we talk to).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path]`; other schemes are refused (IGDs speak plain HTTP).
    pub fn parse(s: &str) -> Result<HttpUrl, PortmapError> {
        let s = s.trim();
        let rest = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("http://"))
            .map(|_| &s[7..])
            .ok_or(PortmapError::Malformed("UPnP URL is not http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let end = h
                .find(']')
                .ok_or(PortmapError::Malformed("UPnP URL: unclosed [host]"))?;
            let port = h[end + 1..].strip_prefix(':');
            (&h[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.len() > 255 || path.len() > 2048 {
            return Err(PortmapError::Malformed(
                "UPnP URL: empty or overlong host or path",
            ));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| PortmapError::Malformed("UPnP URL: bad port"))?,
            None => 80,
        };
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `host:port` for the `Host` header.
    pub fn authority(&self) -> String {
        match self.ip() {
            Some(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// Resolves `reference` (absolute, or a path) against this URL.
    pub fn join(&self, reference: &str) -> Result<HttpUrl, PortmapError> {
        let r = reference.trim();
        if r.len() >= 7 && r[..7].eq_ignore_ascii_case("http://") {
            return HttpUrl::parse(r);
        }
        let path = if r.starts_with('/') {
            r.to_string()
        } else {
            let dir = match self.path.rfind('/') {
                Some(i) => &self.path[..=i],
                None => "/",
            };
            format!("{dir}{r}")
        };
        if path.len() > 2048 {
            return Err(PortmapError::Malformed("UPnP URL: overlong path"));
        }
        Ok(HttpUrl {
            host: self.host.clone(),
            port: self.port,
            path,
        })
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads an SSDP answer and returns the device description's URL. Answers for other
/// devices, or whose description is not on the host that answered (`from`), are refused.
pub fn parse_ssdp_response(b: &[u8], from: IpAddr) -> Result<HttpUrl, PortmapError> {
    let text = std::str::from_utf8(&b[..b.len().min(4096)])
        .map_err(|_| PortmapError::Malformed("SSDP answer is not text"))?;
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.") || status.split_whitespace().nth(1) != Some("200") {
        return Err(PortmapError::Malformed("not an SSDP search answer"));
    }
    if let Some(st) = header(text, "ST") {
        if !st.contains("InternetGatewayDevice")
            && !st.contains("WANIPConnection")
            && !st.contains("WANPPPConnection")
        {
            return Err(PortmapError::Malformed(
                "SSDP answer from a device that is not a gateway",
            ));
        }
    }
    let location =
        header(text, "LOCATION").ok_or(PortmapError::Malformed("SSDP answer without LOCATION"))?;
    let url = HttpUrl::parse(location)?;
    if url.ip() != Some(from) {
        return Err(PortmapError::Malformed(
            "SSDP answer points to another host than the one that sent it",
        ));
    }
    Ok(url)
}

/// The text between `<tag>` and `</tag>` (namespace prefixes ignored) in `xml`, from `from`;
/// returns it and where it ends.
fn element<'a>(xml: &'a str, tag: &str, from: usize) -> Option<(&'a str, usize)> {
    let mut at = from;
    loop {
        let open = at + xml.get(at..)?.find('<')?;
        let name_start = open + 1;
        let rest = xml.get(name_start..)?;
        let name_end =
            name_start + rest.find(|c: char| c == '>' || c.is_whitespace() || c == '/')?;
        let name = &xml[name_start..name_end];
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == tag {
            let body_start = name_end + xml.get(name_end..)?.find('>')? + 1;
            if xml
                .get(name_end..body_start)
                .is_some_and(|t| t.ends_with("/>"))
            {
                return Some(("", body_start));
            }
            // The matching close tag, whatever its prefix.
            let mut search = body_start;
            loop {
                let close = search + xml.get(search..)?.find("</")?;
                let cname_start = close + 2;
                let cname_end = cname_start + xml.get(cname_start..)?.find('>')?;
                let cname = xml[cname_start..cname_end].trim();
                if cname.rsplit(':').next() == Some(tag) {
                    return Some((&xml[body_start..close], cname_end + 1));
                }
                search = cname_end;
            }
        }
        at = name_end;
    }
}

/// Undoes the five predefined XML entities.
fn unescape(s: &str) -> String {
    s.trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The WAN connection service a device description offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanService {
    /// Its service type (`urn:schemas-upnp-org:service:WANIPConnection:1`, …).
    pub service_type: String,
    /// Where its SOAP actions go.
    pub control_url: HttpUrl,
}

/// Finds the WAN IP (or, failing that, PPP) connection service in a device description
/// fetched from `location`. The control URL must be on the same host.
pub fn parse_description(xml: &str, location: &HttpUrl) -> Result<WanService, PortmapError> {
    let base = match element(xml, "URLBase", 0) {
        Some((b, _)) if !b.trim().is_empty() => HttpUrl::parse(&unescape(b))?,
        _ => location.clone(),
    };
    let mut found: Option<WanService> = None;
    let mut at = 0;
    while let Some((service, end)) = element(xml, "service", at) {
        at = end;
        let Some((ty, _)) = element(service, "serviceType", 0) else {
            continue;
        };
        let ty = unescape(ty);
        let ip = ty.contains(":service:WANIPConnection:");
        let ppp = ty.contains(":service:WANPPPConnection:");
        if !ip && !ppp {
            continue;
        }
        let Some((ctl, _)) = element(service, "controlURL", 0) else {
            continue;
        };
        let control_url = base.join(&unescape(ctl))?;
        if control_url.host != location.host {
            return Err(PortmapError::Malformed(
                "UPnP control URL on another host than the device",
            ));
        }
        let better = match &found {
            None => true,
            Some(f) => ip && !f.service_type.contains("WANIPConnection"),
        };
        if better {
            found = Some(WanService {
                service_type: ty,
                control_url,
            });
        }
    }
    found.ok_or(PortmapError::Malformed(
        "the gateway's description has no WAN connection service",
    ))
}

/// A SOAP action's HTTP request, complete (`Connection: close`).
pub fn soap_request(service: &WanService, action: &str, args: &[(&str, String)]) -> Vec<u8> {
    let mut body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{}\">",
        escape(&service.service_type)
    );
    for (name, value) in args {
        let _ = write!(body, "<{name}>{}</{name}>", escape(value));
    }
    let _ = write!(body, "</u:{action}></s:Body></s:Envelope>\r\n");
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"{}#{action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        service.control_url.path,
        service.control_url.authority(),
        service.service_type,
        body.len()
    )
    .into_bytes()
}

/// A plain `GET` (for the device description).
pub fn get_request(url: &HttpUrl) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: webtorrent-rs UPnP/1.1\r\n\r\n",
        url.path,
        url.authority()
    )
    .into_bytes()
}

/// `AddPortMapping` from `external_port` outside to `client:internal_port`, for
/// `lease_secs` (0: until removed).
pub fn add_port_mapping(
    service: &WanService,
    protocol: Protocol,
    external_port: u16,
    client: IpAddr,
    internal_port: u16,
    description: &str,
    lease_secs: u32,
) -> Vec<u8> {
    soap_request(
        service,
        "AddPortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external_port.to_string()),
            ("NewProtocol", protocol.upnp_name().to_string()),
            ("NewInternalPort", internal_port.to_string()),
            ("NewInternalClient", client.to_string()),
            ("NewEnabled", "1".to_string()),
            ("NewPortMappingDescription", description.to_string()),
            ("NewLeaseDuration", lease_secs.to_string()),
        ],
    )
}

/// `DeletePortMapping` of `external_port`.
pub fn delete_port_mapping(
    service: &WanService,
    protocol: Protocol,
    external_port: u16,
) -> Vec<u8> {
    soap_request(
        service,
        "DeletePortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external_port.to_string()),
            ("NewProtocol", protocol.upnp_name().to_string()),
        ],
    )
}

/// `GetExternalIPAddress`.
pub fn get_external_ip(service: &WanService) -> Vec<u8> {
    soap_request(service, "GetExternalIPAddress", &[])
}

/// Splits a complete HTTP/1.x answer (read until the device closed) into status and body,
/// undoing chunked transfer encoding.
pub fn parse_http_response(raw: &[u8]) -> Result<(u16, Vec<u8>), PortmapError> {
    let raw = &raw[..raw.len().min(MAX_HTTP_RESPONSE)];
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(PortmapError::Malformed(
            "HTTP answer without the end of its header",
        ))?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| PortmapError::Malformed("HTTP header is not text"))?;
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.") {
        return Err(PortmapError::Malformed("not an HTTP answer"));
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(PortmapError::Malformed("HTTP answer without a status code"))?;
    let mut body = &raw[head_end + 4..];
    if header(head, "Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or(PortmapError::Malformed("truncated chunk"))?;
            let size_text = std::str::from_utf8(&body[..line_end])
                .map_err(|_| PortmapError::Malformed("bad chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| PortmapError::Malformed("bad chunk size"))?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            let chunk = body
                .get(..size)
                .ok_or(PortmapError::Malformed("truncated chunk"))?;
            out.extend_from_slice(chunk);
            body = body.get(size + 2..).unwrap_or(&[]);
        }
        return Ok((status, out));
    }
    if let Some(len) = header(head, "Content-Length").and_then(|v| v.parse::<usize>().ok()) {
        body = body.get(..len).ok_or(PortmapError::Malformed(
            "HTTP body shorter than its Content-Length",
        ))?;
    }
    Ok((status, body.to_vec()))
}

/// What a SOAP action answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapOutcome {
    /// It worked; the body, for values such as `NewExternalIPAddress`.
    Ok(String),
    /// A UPnP fault.
    Fault {
        /// `errorCode` (0 when missing).
        code: u32,
        /// `errorDescription`.
        description: String,
    },
}

/// Reads a SOAP action's HTTP answer.
pub fn parse_soap_response(raw: &[u8]) -> Result<SoapOutcome, PortmapError> {
    let (status, body) = parse_http_response(raw)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if status == 200 {
        return Ok(SoapOutcome::Ok(body));
    }
    if let Some((code, _)) = element(&body, "errorCode", 0) {
        let description = element(&body, "errorDescription", 0)
            .map(|(d, _)| unescape(d))
            .unwrap_or_default();
        return Ok(SoapOutcome::Fault {
            code: unescape(code).parse().unwrap_or(0),
            description,
        });
    }
    Ok(SoapOutcome::Fault {
        code: 0,
        description: format!("HTTP status {status}"),
    })
}

/// The value of one output argument (`NewExternalIPAddress`, …) in a SOAP answer's body.
pub fn soap_value(body: &str, name: &str) -> Option<String> {
    element(body, name, 0).map(|(v, _)| unescape(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESC: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceList><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ctl/PPP</controlURL></service>
<service>
  <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
  <serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
  <controlURL> /ctl/IPConn </controlURL>
  <eventSubURL>/evt/IPConn</eventSubURL>
</service></serviceList></device></deviceList></device></deviceList></device></root>"#;

    fn loc() -> HttpUrl {
        HttpUrl::parse("http://192.168.77.1:40133/rootDesc.xml").unwrap()
    }

    #[test]
    fn ssdp_answer_gives_the_description_url_of_the_sender_only() {
        let a = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.168.77.1:40133/rootDesc.xml\r\n\r\n";
        let gw: IpAddr = "192.168.77.1".parse().unwrap();
        assert_eq!(parse_ssdp_response(a, gw).unwrap(), loc());
        assert!(parse_ssdp_response(a, "192.168.77.9".parse().unwrap()).is_err());
        assert!(parse_ssdp_response(b"NOTIFY * HTTP/1.1\r\n\r\n", gw).is_err());
        assert!(msearch().starts_with(b"M-SEARCH * HTTP/1.1\r\n"));
    }

    #[test]
    fn description_gives_the_wan_ip_service() {
        let s = parse_description(DESC, &loc()).unwrap();
        assert_eq!(
            s.service_type,
            "urn:schemas-upnp-org:service:WANIPConnection:1"
        );
        assert_eq!(s.control_url.path, "/ctl/IPConn");
        assert_eq!(s.control_url.port, 40133);
        let only_l3 = DESC
            .replace("WANIPConnection", "X")
            .replace("WANPPPConnection", "Y");
        assert!(parse_description(&only_l3, &loc()).is_err());
        let foreign = DESC
            .replace(" /ctl/IPConn ", "http://10.9.9.9/x")
            .replace("/ctl/PPP", "http://10.9.9.9/y");
        assert!(parse_description(&foreign, &loc()).is_err());
    }

    #[test]
    fn urls_join_and_parse() {
        let l = loc();
        assert_eq!(l.join("ctl").unwrap().path, "/ctl");
        let deep = HttpUrl::parse("http://[fe80::1]:5000/a/b.xml").unwrap();
        assert_eq!(deep.join("c").unwrap().path, "/a/c");
        assert_eq!(deep.authority(), "[fe80::1]:5000");
        assert_eq!(HttpUrl::parse("http://10.0.0.1").unwrap().port, 80);
        assert!(HttpUrl::parse("https://10.0.0.1/").is_err());
        assert!(HttpUrl::parse("http://10.0.0.1:99999/").is_err());
    }

    #[test]
    fn soap_request_and_answers() {
        let s = parse_description(DESC, &loc()).unwrap();
        let r = add_port_mapping(
            &s,
            Protocol::Tcp,
            6881,
            "192.168.77.2".parse().unwrap(),
            6881,
            "a<b",
            3600,
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.77.1:40133\r\n"));
        assert!(text.contains(
            "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""
        ));
        assert!(text.contains("<NewProtocol>TCP</NewProtocol>"));
        assert!(text.contains("<NewPortMappingDescription>a&lt;b</NewPortMappingDescription>"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));

        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>11.0.0.2</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>";
        let SoapOutcome::Ok(b) = parse_soap_response(ok).unwrap() else {
            panic!()
        };
        assert_eq!(
            soap_value(&b, "NewExternalIPAddress").as_deref(),
            Some("11.0.0.2")
        );
        let (c1, c2) = (
            "<s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDesc",
            "ription>Conflict</errorDescription>",
        );
        let fault = format!(
            "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{c1}\r\n{:x};ext=1\r\n{c2}\r\n0\r\n\r\n",
            c1.len(),
            c2.len()
        );
        let fault = fault.as_bytes();
        assert_eq!(
            parse_soap_response(fault).unwrap(),
            SoapOutcome::Fault {
                code: 718,
                description: "Conflict".into()
            }
        );
        assert!(parse_soap_response(b"garbage").is_err());
        assert!(
            parse_soap_response(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nshort").is_err()
        );
    }

    #[test]
    fn element_scanner_survives_broken_xml() {
        for x in [
            "<",
            "<a",
            "<service><serviceType>x",
            "</service>",
            "<service/>",
            "<<<>>>",
            "<a:b></",
            "<service><controlURL></service>",
        ] {
            let _ = parse_description(x, &loc());
            let _ = soap_value(x, "service");
        }
        assert_eq!(
            soap_value("<x:NewA>1</y:NewA>", "NewA").as_deref(),
            Some("1")
        );
    }
}
