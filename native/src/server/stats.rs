//! `/stats` and `/stats.json`: the figures and page of bittorrent-tracker's stats handler,
//! with the same JSON field names.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The tracker's figures, as bittorrent-tracker 11 computes them. A peer is counted once
/// however many swarms it is in (by peer id); it is a seeder if it seeds in some swarm and a
/// leecher if it leeches in some swarm, IPv4 / IPv6 likewise by the addresses it announced
/// from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Swarms known (including those whose peers have all left).
    pub torrents: u64,
    /// Swarms with at least one peer.
    #[serde(rename = "activeTorrents")]
    pub active_torrents: u64,
    /// Distinct peer ids.
    #[serde(rename = "peersAll")]
    pub peers_all: u64,
    /// Peers that only seed.
    #[serde(rename = "peersSeederOnly")]
    pub peers_seeder_only: u64,
    /// Peers that only leech.
    #[serde(rename = "peersLeecherOnly")]
    pub peers_leecher_only: u64,
    /// Peers that seed one torrent and leech another.
    #[serde(rename = "peersSeederAndLeecher")]
    pub peers_seeder_and_leecher: u64,
    /// Peers seen on IPv4.
    #[serde(rename = "peersIPv4")]
    pub peers_ipv4: u64,
    /// Peers seen on IPv6.
    #[serde(rename = "peersIPv6")]
    pub peers_ipv6: u64,
    /// Peers per client name and version (see [`identify`](super::peerid::identify)).
    pub clients: BTreeMap<String, BTreeMap<String, u64>>,
    /// The bridge's figures, when a bridge runs beside the tracker (a field bittorrent-tracker
    /// does not have; its own fields keep their names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeStats>,
}

/// What the bridge between the WebRTC and TCP swarms has done, for `/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeStats {
    /// Torrents bridged now.
    pub torrents: u64,
    /// Of those, kept on request of a page.
    pub kept: u64,
    /// Torrents joined since the start.
    pub bridged: u64,
    /// Torrents refused (over the disk quota or the torrent limit).
    pub refused: u64,
    /// Torrents dropped to make room for others.
    pub evicted: u64,
    /// Torrents dropped because nobody wanted them any more.
    pub idle_dropped: u64,
    /// Of the torrents joined, those only the DHT knew a peer of (a page wanted them and no
    /// tracker peer had them).
    pub dht_joined: u64,
    /// Disk reserved by bridged torrents, in bytes.
    pub bytes_reserved: u64,
    /// The disk quota, in bytes.
    pub max_bytes: u64,
    /// Bytes the bridge sent to desktop clients (TCP): what browsers have, moved to desktops.
    pub bytes_browser_to_desktop: u64,
    /// Bytes the bridge sent to browsers (WebRTC): what desktops have, moved to browsers.
    pub bytes_desktop_to_browser: u64,
}

impl Stats {
    /// The `/stats.json` body.
    pub fn to_json(&self) -> String {
        // A struct of numbers and string-keyed maps always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `/stats` page: bittorrent-tracker's HTML, with names and versions escaped (they
    /// come from peer ids).
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = writeln!(
            h,
            "<h1>{} torrents ({} active)</h1>",
            self.torrents, self.active_torrents
        );
        let _ = writeln!(h, "<h2>Connected Peers: {}</h2>", self.peers_all);
        let _ = writeln!(h, "<h3>Peers Seeding Only: {}</h3>", self.peers_seeder_only);
        let _ = writeln!(
            h,
            "<h3>Peers Leeching Only: {}</h3>",
            self.peers_leecher_only
        );
        let _ = writeln!(
            h,
            "<h3>Peers Seeding &amp; Leeching: {}</h3>",
            self.peers_seeder_and_leecher
        );
        let _ = writeln!(h, "<h3>IPv4 Peers: {}</h3>", self.peers_ipv4);
        let _ = writeln!(h, "<h3>IPv6 Peers: {}</h3>", self.peers_ipv6);
        h.push_str("<h3>Clients:</h3>\n<ul>\n");
        for (name, versions) in &self.clients {
            for (version, n) in versions {
                let _ = writeln!(
                    h,
                    "<li><strong>{}</strong> {} : {n}</li>",
                    escape(name),
                    escape(version)
                );
            }
        }
        h.push_str("</ul>\n");
        if let Some(b) = &self.bridge {
            let _ = writeln!(
                h,
                "<h3>Bridge: {} torrents ({} kept), {} bridged ({} found through the DHT), {} refused, {} evicted, {} dropped when idle</h3>",
                b.torrents, b.kept, b.bridged, b.dht_joined, b.refused, b.evicted, b.idle_dropped
            );
            let _ = writeln!(
                h,
                "<h3>Bridge bytes: {} browser to desktop, {} desktop to browser; disk {} of {}</h3>",
                b.bytes_browser_to_desktop, b.bytes_desktop_to_browser, b.bytes_reserved, b.max_bytes
            );
        }
        h
    }
}

/// HTML-escapes text for element content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_and_html() {
        let mut s = Stats {
            torrents: 3,
            active_torrents: 2,
            peers_all: 4,
            peers_seeder_only: 1,
            peers_leecher_only: 2,
            peers_seeder_and_leecher: 1,
            peers_ipv4: 3,
            peers_ipv6: 1,
            clients: BTreeMap::new(),
            bridge: None,
        };
        s.clients
            .entry("WebTorrent".into())
            .or_default()
            .insert("2.8".into(), 2);
        s.clients
            .entry("unknown".into())
            .or_default()
            .insert("<script>".into(), 1);
        assert_eq!(
            s.to_json(),
            r#"{"torrents":3,"activeTorrents":2,"peersAll":4,"peersSeederOnly":1,"peersLeecherOnly":2,"peersSeederAndLeecher":1,"peersIPv4":3,"peersIPv6":1,"clients":{"WebTorrent":{"2.8":2},"unknown":{"<script>":1}}}"#
        );
        let back: Stats = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(back, s);
        let html = s.to_html();
        assert!(html.starts_with("<h1>3 torrents (2 active)</h1>\n<h2>Connected Peers: 4</h2>\n"));
        assert!(html.contains("<li><strong>WebTorrent</strong> 2.8 : 2</li>\n"));
        assert!(html.contains("<li><strong>unknown</strong> &lt;script&gt; : 1</li>\n"));
        assert!(html.ends_with("</ul>\n"));
    }
}
