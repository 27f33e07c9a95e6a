//! Which client made a peer id: the rules of the `bittorrent-peerid` npm package (2.0.2), which
//! bittorrent-tracker's `/stats` uses, plus `-WR` for webtorrent-rs.
//!
//! The package reads the id as a UTF-8 string (invalid bytes become U+FFFD) and indexes it in
//! UTF-16 units; so does this port, so that ids with odd bytes are named the same way.

use webtorrent_core::PeerId;

/// A client's name and, when its peer id encodes one, its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientInfo {
    /// The client's name, e.g. `WebTorrent`, or `unknown`.
    pub client: String,
    /// Its version, e.g. `2.8`, when known.
    pub version: Option<String>,
}

impl ClientInfo {
    fn named(client: &str) -> Self {
        ClientInfo {
            client: client.to_string(),
            version: None,
        }
    }

    fn with_version(client: &str, version: impl Into<String>) -> Self {
        ClientInfo {
            client: client.to_string(),
            version: Some(version.into()),
        }
    }
}

/// How an Azureus-style client writes its version in the four characters after `-XX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AzVersion {
    /// `1.2.3`
    ThreeDigits,
    /// `1.2.3`, or `1.2.1N` with a letter A–E as the third character.
    Deluge,
    /// `1.2.3 Beta` / `1.2.3 Alpha` / `1.2.3 `.
    ThreeDigitsPlusMnemonic,
    /// `1.2.3.4`
    FourDigits,
    /// `12.34`
    TwoMajTwoMin,
    /// `2.34`
    SkipFirstOneMajTwoMin,
    /// Transmission's scheme.
    Transmission,
    /// WebTorrent's scheme: `0102` → `1.2`, `1120` → `11.20`.
    WebTorrent,
    /// The package knows a format but does not decode it: no version.
    Undecoded,
}

use AzVersion::*;

/// Azureus-style codes (`-XX1234-`). Where the package registers one name under several codes
/// with different formats, the last registration wins for all of them (it keys formats by name).
const AZ_CLIENTS: &[(&str, &str, AzVersion)] = &[
    ("A~", "Ares", FourDigits),
    ("AG", "Ares", FourDigits),
    ("AN", "Ares", FourDigits),
    ("AR", "Ares", FourDigits),
    ("AV", "Avicora", FourDigits),
    ("AX", "BitPump", TwoMajTwoMin),
    ("AT", "Artemis", FourDigits),
    ("AZ", "Vuze", FourDigits),
    ("BB", "BitBuddy", Undecoded),
    ("BC", "BitComet", SkipFirstOneMajTwoMin),
    ("BE", "BitTorrent SDK", FourDigits),
    ("BF", "BitFlu", Undecoded),
    ("BG", "BTG", FourDigits),
    ("bk", "BitKitten (libtorrent)", FourDigits),
    ("BR", "BitRocket", Undecoded),
    ("BS", "BTSlave", FourDigits),
    ("BT", "BitTorrent", ThreeDigitsPlusMnemonic),
    ("BW", "BitWombat", FourDigits),
    ("BX", "BittorrentX", FourDigits),
    ("CB", "Shareaza Plus", FourDigits),
    ("CD", "Enhanced CTorrent", TwoMajTwoMin),
    ("CT", "CTorrent", Undecoded),
    ("DP", "Propogate Data Client", FourDigits),
    ("DE", "Deluge", Deluge),
    ("EB", "EBit", FourDigits),
    ("ES", "Electric Sheep", ThreeDigits),
    ("FC", "FileCroc", FourDigits),
    ("FG", "FlashGet", SkipFirstOneMajTwoMin),
    ("FX", "Freebox BitTorrent", FourDigits),
    ("FT", "FoxTorrent/RedSwoosh", FourDigits),
    ("GR", "GetRight", Undecoded),
    ("GS", "GSTorrent", FourDigits),
    ("HL", "Halite", ThreeDigits),
    ("HN", "Hydranode", FourDigits),
    ("KG", "KGet", FourDigits),
    ("KT", "KTorrent", Undecoded),
    ("LC", "LeechCraft", FourDigits),
    ("LH", "LH-ABC", FourDigits),
    ("LK", "linkage", ThreeDigits),
    ("LP", "Lphant", TwoMajTwoMin),
    ("LT", "libtorrent (Rasterbar)", Undecoded),
    ("lt", "libTorrent (Rakshasa)", Undecoded),
    ("LW", "LimeWire", Undecoded),
    ("MO", "MonoTorrent", FourDigits),
    ("MP", "MooPolice", ThreeDigits),
    ("MR", "Miro", FourDigits),
    ("MT", "MoonlightTorrent", FourDigits),
    ("NE", "BT Next Evolution", ThreeDigits),
    ("NX", "Net Transport", FourDigits),
    ("OS", "OneSwarm", FourDigits),
    ("OT", "OmegaTorrent", FourDigits),
    ("PC", "CacheLogic", Undecoded),
    ("PT", "Popcorn Time", FourDigits),
    ("PD", "Pando", FourDigits),
    ("PE", "PeerProject", FourDigits),
    ("pX", "pHoeniX", FourDigits),
    ("qB", "qBittorrent", Deluge),
    ("QD", "qqdownload", FourDigits),
    ("RM", "RUM Torrent", FourDigits),
    ("RT", "Retriever", FourDigits),
    ("RZ", "RezTorrent", FourDigits),
    ("S~", "Shareaza alpha/beta", FourDigits),
    ("SB", "SwiftBit", FourDigits),
    (
        "SD",
        "\u{8FC5}\u{96F7}\u{5728}\u{7EBF} (Xunlei)",
        FourDigits,
    ),
    ("SG", "GS Torrent", FourDigits),
    ("SN", "ShareNET", FourDigits),
    ("SP", "BitSpirit", ThreeDigits),
    ("SS", "SwarmScope", FourDigits),
    ("ST", "SymTorrent", Undecoded),
    ("st", "SharkTorrent", FourDigits),
    ("SZ", "Shareaza", FourDigits),
    ("TG", "Torrent GO", FourDigits),
    ("TN", "Torrent.NET", FourDigits),
    ("TR", "Transmission", Transmission),
    ("TS", "TorrentStorm", FourDigits),
    ("TT", "TuoTu", ThreeDigits),
    ("UL", "uLeecher!", FourDigits),
    ("UE", "\u{B5}Torrent Embedded", ThreeDigitsPlusMnemonic),
    ("UT", "\u{B5}Torrent", ThreeDigitsPlusMnemonic),
    ("UM", "\u{B5}Torrent Mac", ThreeDigitsPlusMnemonic),
    ("UW", "\u{B5}Torrent Web", ThreeDigitsPlusMnemonic),
    ("WD", "WebTorrent Desktop", WebTorrent),
    ("WR", "webtorrent-rs", WebTorrent),
    ("WT", "Bitlet", FourDigits),
    ("WW", "WebTorrent", WebTorrent),
    ("WY", "FireTorrent", FourDigits),
    ("VG", "\u{54c7}\u{560E} (Vagaa)", FourDigits),
    (
        "XL",
        "\u{8FC5}\u{96F7}\u{5728}\u{7EBF} (Xunlei)",
        FourDigits,
    ),
    ("XT", "XanTorrent", FourDigits),
    ("XF", "Xfplay", Transmission),
    ("XX", "XTorrent", Undecoded),
    ("XC", "XTorrent", Undecoded),
    ("ZT", "ZipTorrent", FourDigits),
    ("7T", "aTorrent", FourDigits),
    ("ZO", "Zona", FourDigits),
    ("#@", "Invalid PeerID", FourDigits),
];

/// Shadow-style (BitTornado) one-character codes.
const SHADOW_CLIENTS: &[(char, &str)] = &[
    ('A', "ABC"),
    ('O', "Osprey Permaseed"),
    ('Q', "BTQueue"),
    ('R', "Tribler"),
    ('S', "Shad0w"),
    ('T', "BitTornado"),
    ('U', "UPnP NAT"),
];

/// Mainline-style one-character codes.
const MAINLINE_CLIENTS: &[(char, &str)] = &[('M', "Mainline"), ('Q', "Queen Bee")];

/// Clients recognised by a fixed string at a position: (name, version, string, position),
/// tried in order.
const SIMPLE_CLIENTS: &[(&str, Option<&str>, &str, usize)] = &[
    ("\u{B5}Torrent", Some("1.7.0 RC"), "-UT170-", 0),
    ("Azureus", Some("1"), "Azureus", 0),
    ("Azureus", Some("2.0.3.2"), "Azureus", 5),
    ("Aria", Some("2"), "-aria2-", 0),
    ("BitTorrent Plus!", Some("II"), "PRC.P---", 0),
    ("BitTorrent Plus!", None, "P87.P---", 0),
    ("BitTorrent Plus!", None, "S587Plus", 0),
    ("BitTyrant (Azureus Mod)", None, "AZ2500BT", 0),
    ("Blizzard Downloader", None, "BLZ", 0),
    ("BTGetit", None, "BG", 10),
    ("BTugaXP", None, "btuga", 0),
    ("BTugaXP", None, "BTuga", 5),
    ("BTugaXP", None, "oernu", 0),
    ("Deadman Walking", None, "BTDWV-", 0),
    ("Deadman", None, "Deadman Walking-", 0),
    ("External Webseed", None, "Ext", 0),
    ("G3 Torrent", None, "-G3", 0),
    ("GreedBT", Some("2.7.1"), "271-", 0),
    ("Hurricane Electric", None, "arclight", 0),
    ("HTTP Seed", None, "-WS", 0),
    ("JVtorrent", None, "10-------", 0),
    ("Limewire", None, "LIME", 0),
    ("Martini Man", None, "martini", 0),
    ("Pando", None, "Pando", 0),
    ("PeerApp", None, "PEERAPP", 0),
    ("SimpleBT", None, "btfans", 4),
    ("Swarmy", None, "a00---0", 0),
    ("Swarmy", None, "a02---0", 0),
    ("Teeweety", None, "T00---0", 0),
    ("TorrentTopia", None, "346-", 0),
    ("XanTorrent", None, "DansClient", 0),
    ("MediaGet", None, "-MG1", 0),
    ("MediaGet", Some("2.1"), "-MG21", 0),
    ("Amazon AWS S3", None, "S3-", 0),
    ("BitTorrent DNA", None, "DNA", 0),
    ("Opera", None, "OP", 0),
    ("Opera", None, "O", 0),
    ("Burst!", None, "Mbrst", 0),
    ("TurboBT", None, "turbobt", 0),
    ("BT Protocol Daemon", None, "btpd", 0),
    ("Plus!", None, "Plus", 0),
    ("XBT", None, "XBT", 0),
    ("BitsOnWheels", None, "-BOW", 0),
    ("eXeem", None, "eX", 0),
    ("MLdonkey", None, "-ML", 0),
    ("Bitlet", None, "BitLet", 0),
    ("AllPeers", None, "AP", 0),
    ("BTuga Revolution", None, "BTM", 0),
    ("Rufus", None, "RS", 2),
    ("BitMagnet", None, "BM", 2),
    ("QVOD", None, "QVOD", 0),
    ("Top-BT", None, "TB", 0),
    ("Tixati", None, "TIX", 0),
    ("folx", None, "-FL", 0),
    ("\u{B5}Torrent Mac", None, "-UM", 0),
    ("\u{B5}Torrent", None, "-UT", 0),
];

/// A peer id as the package sees it: UTF-8 decoded (lossily), indexed in UTF-16 units.
struct JsStr {
    units: Vec<u16>,
}

impl JsStr {
    fn new(bytes: &[u8]) -> Self {
        JsStr {
            units: String::from_utf8_lossy(bytes).encode_utf16().collect(),
        }
    }

    /// `charAt(i)`: `None` past the end.
    fn at(&self, i: usize) -> Option<u16> {
        self.units.get(i).copied()
    }

    fn is(&self, i: usize, c: char) -> bool {
        self.at(i) == Some(c as u16)
    }

    /// `substring(a, b)`.
    fn sub(&self, a: usize, b: usize) -> String {
        let len = self.units.len();
        let (a, b) = (a.min(len), b.min(len));
        String::from_utf16_lossy(self.units.get(a..b).unwrap_or_default())
    }

    /// `startsWith(s, pos)`.
    fn starts_with_at(&self, s: &str, pos: usize) -> bool {
        let want: Vec<u16> = s.encode_utf16().collect();
        self.units
            .get(pos..)
            .is_some_and(|rest| rest.starts_with(&want))
    }

    fn ends_with(&self, s: &str) -> bool {
        let want: Vec<u16> = s.encode_utf16().collect();
        self.units.ends_with(&want)
    }

    /// `v[i]` of a substring as a template literal prints it (`undefined` past the end).
    fn char_text(units: &[u16], i: usize) -> String {
        match units.get(i) {
            Some(&u) => String::from_utf16_lossy(&[u]),
            None => "undefined".to_string(),
        }
    }
}

fn is_ascii_digit_unit(u: Option<u16>) -> bool {
    matches!(u, Some(c) if (u16::from(b'0')..=u16::from(b'9')).contains(&c))
}

/// `isLetter`: the lower-cased character is a–z.
fn is_letter_unit(u: Option<u16>) -> bool {
    let Some(u) = u else { return false };
    let Some(c) = char::from_u32(u32::from(u)) else {
        return false;
    };
    c.to_lowercase()
        .next()
        .is_some_and(|l| l.is_ascii_lowercase())
}

/// JavaScript's `isNaN` of a one-character string (or `undefined`).
fn js_is_nan(c: Option<&String>) -> bool {
    match c {
        None => true,
        Some(s) => {
            let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
            !t.is_empty() && t.parse::<f64>().is_err()
        }
    }
}

fn az_version(style: AzVersion, v: &[u16]) -> Option<String> {
    let c = |i: usize| JsStr::char_text(v, i);
    let raw = |i: usize| v.get(i).copied();
    let is = |i: usize, ch: char| raw(i) == Some(ch as u16);
    Some(match style {
        ThreeDigits => format!("{}.{}.{}", c(0), c(1), c(2)),
        Deluge => {
            let third = v.get(2).map(|&u| String::from_utf16_lossy(&[u]));
            if js_is_nan(third.as_ref()) {
                let pos = match raw(2) {
                    Some(u) => "ABCDE"
                        .encode_utf16()
                        .position(|x| x == u)
                        .map_or(-1, |p| p as i64),
                    None => -1,
                };
                format!("{}.{}.1{}", c(0), c(1), pos)
            } else {
                format!("{}.{}.{}", c(0), c(1), c(2))
            }
        }
        ThreeDigitsPlusMnemonic => {
            let mnemonic = if is(3, 'B') {
                "Beta"
            } else if is(3, 'A') {
                "Alpha"
            } else {
                ""
            };
            format!("{}.{}.{} {}", c(0), c(1), c(2), mnemonic)
        }
        FourDigits => format!("{}.{}.{}.{}", c(0), c(1), c(2), c(3)),
        TwoMajTwoMin => format!("{}{}.{}{}", c(0), c(1), c(2), c(3)),
        SkipFirstOneMajTwoMin => format!("{}.{}{}", c(1), c(2), c(3)),
        Transmission => {
            if is(0, '0') && is(1, '0') && is(2, '0') {
                format!("0.{}", c(3))
            } else if is(0, '0') && is(1, '0') {
                format!("0.{}{}", c(2), c(3))
            } else {
                let plus = if is(3, 'Z') || is(3, 'X') { "+" } else { "" };
                format!("{}.{}{}{}", c(0), c(1), c(2), plus)
            }
        }
        WebTorrent => {
            let major = if is(0, '0') {
                c(1)
            } else {
                format!("{}{}", c(0), c(1))
            };
            let minor = if is(2, '0') {
                c(3)
            } else {
                format!("{}{}", c(2), c(3))
            };
            format!("{major}.{minor}")
        }
        Undecoded => return None,
    })
}

fn is_az_style(s: &JsStr) -> bool {
    if !s.is(0, '-') {
        return false;
    }
    if s.is(7, '-') {
        return true;
    }
    // FlashGet, LH-ABC, BT Next Evolution, KTorrent 3 and BitSpirit leave out the last dash.
    ["FG", "LH", "NE", "KT", "SP"].contains(&s.sub(1, 3).as_str())
}

fn is_shadow_style(s: &JsStr) -> bool {
    if !s.is(5, '-') || !is_letter_unit(s.at(0)) {
        return false;
    }
    if !(is_ascii_digit_unit(s.at(1)) || s.is(1, '-')) {
        return false;
    }
    let mut last = 4;
    while last > 0 && s.is(last, '-') {
        last -= 1;
    }
    (1..=last).all(|i| !s.is(i, '-'))
}

fn is_mainline_style(s: &JsStr) -> bool {
    s.is(2, '-') && s.is(7, '-') && (s.is(4, '-') || s.is(5, '-'))
}

fn bitspirit(s: &JsStr, bytes: &[u8; 20]) -> Option<ClientInfo> {
    if s.sub(2, 4) != "BS" {
        return None;
    }
    let version = match bytes[1] {
        0 => "1".to_string(),
        b => b.to_string(),
    };
    Some(ClientInfo::with_version("BitSpirit", version))
}

fn bitcomet(s: &JsStr, bytes: &[u8; 20]) -> Option<ClientInfo> {
    let mod_name = if s.starts_with_at("exbc", 0) {
        ""
    } else if s.starts_with_at("FUTB", 0) {
        "(Solidox Mod)"
    } else if s.starts_with_at("xUTB", 0) {
        "(Mod 2)"
    } else {
        return None;
    };
    let bitlord = s.sub(6, 10) == "LORD";
    let name = if bitlord { "BitLord" } else { "BitComet" };
    let major = bytes[4].to_string();
    let min_digits = if bitlord && major != "0" { 1 } else { 2 };
    let minor = format!("{:0>width$}", bytes[5], width = min_digits);
    let client = if mod_name.is_empty() {
        name.to_string()
    } else {
        format!("{name} {mod_name}")
    };
    Some(ClientInfo {
        client,
        version: Some(format!("{major}.{minor}")),
    })
}

fn awkward(bytes: &[u8; 20]) -> Option<ClientInfo> {
    let first_non_zero = bytes.iter().position(|&b| b > 0).unwrap_or(20);
    if first_non_zero == 0 {
        let all_set = bytes[..16].iter().all(|&b| b != 0);
        let checksum = (16..20).all(|i| bytes[i] == bytes[i % 16] ^ bytes[15 - (i % 16)]);
        if all_set && checksum {
            return Some(ClientInfo::named("Shareaza"));
        }
    }
    if first_non_zero == 9 && bytes[9] == 3 && bytes[10] == 3 && bytes[11] == 3 {
        return Some(ClientInfo::named("I2PSnark"));
    }
    if first_non_zero == 12 && bytes[12] == 97 && bytes[13] == 97 {
        return Some(ClientInfo::with_version("Experimental", "3.2.1b2"));
    }
    if first_non_zero == 12 && bytes[12] == 0 && bytes[13] == 0 {
        return Some(ClientInfo::with_version("Experimental", "3.1"));
    }
    if first_non_zero == 12 {
        return Some(ClientInfo::named("Mainline"));
    }
    None
}

/// Names the client behind `peer_id` as bittorrent-peerid does (`unknown` when nothing fits).
pub fn identify(peer_id: &PeerId) -> ClientInfo {
    let bytes = peer_id.as_bytes();
    let s = JsStr::new(bytes);

    // Clients that reuse other clients' ids: BitSpirit's spoof mode.
    if s.ends_with("UDP0") || s.ends_with("HTTPBT") {
        return bitspirit(&s, bytes)
            .or_else(|| bitcomet(&s, bytes))
            .unwrap_or_else(|| ClientInfo::named("BitSpirit?"));
    }

    if is_az_style(&s) {
        let code = s.sub(1, 3);
        if let Some(&(_, name, style)) = AZ_CLIENTS.iter().find(|(c, _, _)| *c == code) {
            let v: Vec<u16> = s.sub(3, 7).encode_utf16().collect();
            let version = az_version(style, &v);
            if name.starts_with("ZipTorrent") && s.starts_with_at("bLAde", 8) {
                return ClientInfo {
                    client: "Unknown [Fake: ZipTorrent]".into(),
                    version,
                };
            }
            if name == "\u{B5}Torrent" && version.as_deref() == Some("6.0 Beta") {
                return ClientInfo::with_version("Mainline", "6.0 Beta");
            }
            if name.starts_with("libTorrent (Rakshasa)") {
                return ClientInfo {
                    client: format!("{name} / rTorrent*"),
                    version,
                };
            }
            return ClientInfo {
                client: name.to_string(),
                version,
            };
        }
    }

    if is_shadow_style(&s) {
        if let Some(&(_, name)) = SHADOW_CLIENTS.iter().find(|(c, _)| s.is(0, *c)) {
            return ClientInfo::named(name);
        }
    }

    if is_mainline_style(&s) {
        if let Some(&(_, name)) = MAINLINE_CLIENTS.iter().find(|(c, _)| s.is(0, *c)) {
            return ClientInfo::named(name);
        }
    }

    if let Some(c) = bitspirit(&s, bytes).or_else(|| bitcomet(&s, bytes)) {
        return c;
    }

    if let Some(&(name, version, _, _)) = SIMPLE_CLIENTS
        .iter()
        .find(|(_, _, id, pos)| s.starts_with_at(id, *pos))
    {
        return ClientInfo {
            client: name.to_string(),
            version: version.map(str::to_string),
        };
    }

    awkward(bytes).unwrap_or_else(|| ClientInfo::named("unknown"))
}

/// The version bittorrent-tracker's `/stats` shows for `peer_id`: the decoded version, or else
/// the first 8 characters of the id read as UTF-8.
pub fn stats_version(peer_id: &PeerId, info: &ClientInfo) -> String {
    match &info.version {
        Some(v) if !v.is_empty() => v.clone(),
        _ => JsStr::new(peer_id.as_bytes()).sub(0, 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: &[u8]) -> PeerId {
        let mut b = [b'x'; 20];
        b[..prefix.len()].copy_from_slice(prefix);
        webtorrent_core::Id20(b)
    }

    fn name(prefix: &[u8]) -> (String, Option<String>) {
        let c = identify(&id(prefix));
        (c.client, c.version)
    }

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn azureus_style() {
        assert_eq!(name(b"-WW0208-"), ("WebTorrent".into(), v("2.8")));
        assert_eq!(name(b"-WW1120-"), ("WebTorrent".into(), v("11.20")));
        assert_eq!(name(b"-WR0001-"), ("webtorrent-rs".into(), v("0.1")));
        assert_eq!(name(b"-WD0017-"), ("WebTorrent Desktop".into(), v("0.17")));
        assert_eq!(name(b"-qB4650-"), ("qBittorrent".into(), v("4.6.5")));
        assert_eq!(name(b"-DE13B0-"), ("Deluge".into(), v("1.3.11")));
        assert_eq!(name(b"-TR2940-"), ("Transmission".into(), v("2.94")));
        assert_eq!(name(b"-TR300Z-"), ("Transmission".into(), v("3.00+")));
        assert_eq!(name(b"-TR0006-"), ("Transmission".into(), v("0.6")));
        assert_eq!(name(b"-TR0072-"), ("Transmission".into(), v("0.72")));
        assert_eq!(name(b"-UT355B-"), ("\u{B5}Torrent".into(), v("3.5.5 Beta")));
        assert_eq!(name(b"-UT3550-"), ("\u{B5}Torrent".into(), v("3.5.5 ")));
        assert_eq!(name(b"-AZ5750-"), ("Vuze".into(), v("5.7.5.0")));
        assert_eq!(name(b"-BC0142-"), ("BitComet".into(), v("1.42")));
        assert_eq!(name(b"-LT1200-"), ("libtorrent (Rasterbar)".into(), None));
        assert_eq!(
            name(b"-lt0D80-"),
            ("libTorrent (Rakshasa) / rTorrent*".into(), None)
        );
        assert_eq!(name(b"-AN0100-"), ("Ares".into(), v("0.1.0.0")));
        assert_eq!(name(b"-FG1234"), ("FlashGet".into(), v("2.34")));
        assert_eq!(
            name(b"-ZT1234-bLAde"),
            ("Unknown [Fake: ZipTorrent]".into(), v("1.2.3.4"))
        );
    }

    #[test]
    fn other_styles() {
        assert_eq!(name(b"T03I--"), ("BitTornado".into(), None));
        assert_eq!(name(b"M4-4-0--"), ("Mainline".into(), None));
        assert_eq!(name(b"-aria2-"), ("Aria".into(), v("2")));
        assert_eq!(name(b"exbc\x01\x05"), ("BitComet".into(), v("1.05")));
        assert_eq!(name(b"exbc\x01\x05LORD"), ("BitLord".into(), v("1.5")));
        assert_eq!(name(b"xxBS"), ("BitSpirit".into(), v("120")));
        // BitSpirit's spoofing: a copied prefix, the id ending in UDP0.
        let mut b = *id(b"-UT1610-").as_bytes();
        b[2] = b'B';
        b[3] = b'S';
        b[16..].copy_from_slice(b"UDP0");
        assert_eq!(
            identify(&webtorrent_core::Id20(b)),
            ClientInfo::with_version("BitSpirit", "85")
        );
        assert_eq!(name(b"XBT054d-"), ("XBT".into(), None));
        // Not Azureus-style (no dash at 7): the fixed-string list names it.
        assert_eq!(name(b"-UT170-"), ("\u{B5}Torrent".into(), v("1.7.0 RC")));
        assert_eq!(name(b"abcdefgh"), ("unknown".into(), None));
        let mut zeros = [0u8; 20];
        zeros[12] = 1;
        assert_eq!(
            identify(&webtorrent_core::Id20(zeros)),
            ClientInfo::named("Mainline")
        );
    }

    #[test]
    fn stats_version_falls_back_to_the_id() {
        let pid = id(b"-LT1200-");
        let info = identify(&pid);
        assert_eq!(stats_version(&pid, &info), "-LT1200-");
        let pid = id(b"-WW0208-");
        assert_eq!(stats_version(&pid, &identify(&pid)), "2.8");
        // Invalid UTF-8 reads as U+FFFD, as Buffer#toString does.
        let pid = webtorrent_core::Id20([0xff; 20]);
        assert_eq!(stats_version(&pid, &identify(&pid)), "\u{FFFD}".repeat(8));
    }
}
