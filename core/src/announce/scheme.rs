//! Tracker URL schemes and the set of them a driver can reach.

/// The URL scheme of a tracker, which decides the transport a driver uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// `http://` (BEP 3).
    Http,
    /// `https://` (BEP 3 over TLS).
    Https,
    /// `udp://` (BEP 15).
    Udp,
    /// `ws://` (WebTorrent WebSocket tracker).
    Ws,
    /// `wss://` (WebTorrent WebSocket tracker over TLS).
    Wss,
}

impl Scheme {
    /// Every scheme, in declaration order.
    pub const ALL: [Scheme; 5] = [
        Scheme::Http,
        Scheme::Https,
        Scheme::Udp,
        Scheme::Ws,
        Scheme::Wss,
    ];

    /// The lower-case name as written before `://`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Udp => "udp",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// The scheme of `url` (case-insensitive), or `None` if it has no `scheme://authority`
    /// prefix or names a scheme no driver speaks.
    pub fn of(url: &str) -> Option<Scheme> {
        let (scheme, rest) = url.trim().split_once("://")?;
        if rest.is_empty() {
            return None;
        }
        Scheme::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(scheme))
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Scheme`]s: what a driver can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchemeSet(u8);

impl SchemeSet {
    /// No scheme at all.
    pub const NONE: SchemeSet = SchemeSet(0);
    /// Every scheme (the default).
    pub const ALL: SchemeSet = SchemeSet(0b1_1111);
    /// `ws` and `wss` only: a browser driver.
    pub const WEBSOCKET: SchemeSet = SchemeSet(0b1_1000);

    /// This set plus `scheme`.
    pub const fn with(self, scheme: Scheme) -> SchemeSet {
        SchemeSet(self.0 | scheme.bit())
    }

    /// This set minus `scheme`.
    pub const fn without(self, scheme: Scheme) -> SchemeSet {
        SchemeSet(self.0 & !scheme.bit())
    }

    /// Whether `scheme` is in the set.
    pub const fn contains(self, scheme: Scheme) -> bool {
        self.0 & scheme.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The schemes in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Scheme> {
        Scheme::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scheme> for SchemeSet {
    fn from_iter<I: IntoIterator<Item = Scheme>>(iter: I) -> Self {
        iter.into_iter().fold(SchemeSet::NONE, SchemeSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes() {
        assert_eq!(Scheme::of("http://t.example/announce"), Some(Scheme::Http));
        assert_eq!(Scheme::of("HTTPS://t.example/a"), Some(Scheme::Https));
        assert_eq!(Scheme::of("udp://t.example:80"), Some(Scheme::Udp));
        assert_eq!(Scheme::of("wss://t.example"), Some(Scheme::Wss));
        assert_eq!(Scheme::of(" ws://t.example "), Some(Scheme::Ws));
        assert_eq!(Scheme::of("ftp://t.example"), None);
        assert_eq!(Scheme::of("http://"), None);
        assert_eq!(Scheme::of("t.example/announce"), None);
        assert_eq!(Scheme::of(""), None);
    }

    #[test]
    fn sets() {
        let s: SchemeSet = [Scheme::Ws, Scheme::Wss].into_iter().collect();
        assert_eq!(s, SchemeSet::WEBSOCKET);
        assert!(s.contains(Scheme::Ws) && !s.contains(Scheme::Http));
        assert_eq!(SchemeSet::ALL.iter().count(), 5);
        assert!(SchemeSet::ALL.without(Scheme::Udp).contains(Scheme::Http));
        assert!(!SchemeSet::ALL.without(Scheme::Udp).contains(Scheme::Udp));
        assert!(SchemeSet::NONE.is_empty() && !SchemeSet::ALL.is_empty());
    }
}
