//! Which announces the tracker takes, before they reach the swarms: an info-hash allow-list
//! ([`InfoHashFilter`], bittorrent-tracker's `filter` option) and a per-address rate limit
//! ([`RateLimit`]). Sans-IO: time comes in as an argument.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use webtorrent_core::{InfoHash, Time};

use super::lru::LruMap;

/// Which torrents the tracker serves.
#[derive(Clone, Default)]
pub enum InfoHashFilter {
    /// Every torrent (the default).
    #[default]
    Any,
    /// Only these info hashes.
    Only(Arc<HashSet<InfoHash>>),
    /// Those for which the function returns true (called for every announce: keep it quick).
    With(Arc<dyn Fn(&InfoHash) -> bool + Send + Sync>),
}

impl fmt::Debug for InfoHashFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoHashFilter::Any => f.write_str("Any"),
            InfoHashFilter::Only(set) => write!(f, "Only({} info hashes)", set.len()),
            InfoHashFilter::With(_) => f.write_str("With(<function>)"),
        }
    }
}

impl InfoHashFilter {
    /// Whether announces for `info_hash` are taken.
    pub fn allows(&self, info_hash: &InfoHash) -> bool {
        match self {
            InfoHashFilter::Any => true,
            InfoHashFilter::Only(set) => set.contains(info_hash),
            InfoHashFilter::With(f) => f(info_hash),
        }
    }

    /// An allow-list from text: one info hash per line (40 hex digits or a magnet link);
    /// blank lines and lines starting with `#` are skipped.
    pub fn parse_list(text: &str) -> Result<Self, String> {
        let mut set = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let ih = if line.starts_with("magnet:") {
                webtorrent_core::magnet::Magnet::parse(line)
                    .map(|m| m.info_hash)
                    .ok()
            } else {
                InfoHash::from_hex(line).ok()
            };
            match ih {
                Some(ih) => set.insert(ih),
                None => {
                    return Err(format!(
                        "line {}: {line:?} is not an info hash (40 hex digits) or a magnet link",
                        n + 1
                    ))
                }
            };
        }
        Ok(InfoHashFilter::Only(Arc::new(set)))
    }

    /// An allow-list read from a file (see [`parse_list`](Self::parse_list)).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the allow-list {}: {e}", path.display()))?;
        Self::parse_list(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Announces one address may make: `burst` at once, then `per_second` (HTTP, UDP and
/// WebSocket together; an IPv6 address counts with its whole /64). `per_second == 0`: no
/// limit. The default, 20 a second after a burst of 500, lets a client start hundreds of
/// torrents at once and re-announce thousands on the usual interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained announces per second.
    pub per_second: u32,
    /// Announces allowed at once.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 20,
            burst: 500,
        }
    }
}

/// Addresses whose rate is tracked; the least recently seen are forgotten beyond it.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Time,
}

/// The allow-list and the rate limit's state.
#[derive(Debug)]
pub(crate) struct Admission {
    filter: InfoHashFilter,
    rate: RateLimit,
    buckets: LruMap<IpAddr, Bucket>,
}

/// The address an announce counts against: itself, or the /64 of an IPv6 address.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Admission {
    pub fn new(filter: InfoHashFilter, rate: RateLimit) -> Self {
        Admission {
            filter,
            rate,
            buckets: LruMap::default(),
        }
    }

    /// Whether an announce from `ip` for `info_hash` is taken; `Err` holds the reason to send
    /// back.
    pub fn check(&mut self, now: Time, ip: IpAddr, info_hash: &InfoHash) -> Result<(), String> {
        if !self.filter.allows(info_hash) {
            return Err("torrent not allowed on this tracker".into());
        }
        if self.rate.per_second == 0 {
            return Ok(());
        }
        let key = rate_key(ip);
        let burst = f64::from(self.rate.burst.max(1));
        let rate = f64::from(self.rate.per_second);
        let mut b = self.buckets.get(&key).copied().unwrap_or(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        let taken = b.tokens >= 1.0;
        if taken {
            b.tokens -= 1.0;
        }
        if self.buckets.get(&key).is_none() && self.buckets.len() >= MAX_TRACKED {
            self.buckets.pop_oldest();
        }
        self.buckets.insert(key, b);
        if taken {
            Ok(())
        } else {
            Err(format!(
                "too many announces from your address (at most {} a second); try again later",
                self.rate.per_second
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ih(b: u8) -> InfoHash {
        webtorrent_core::Id20([b; 20])
    }

    #[test]
    fn burst_then_sustained_rate_per_address() {
        let mut a = Admission::new(
            InfoHashFilter::Any,
            RateLimit {
                per_second: 2,
                burst: 5,
            },
        );
        let t0 = Time::ZERO;
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..5 {
            a.check(t0, ip, &ih(1)).unwrap();
        }
        let refused = a.check(t0, ip, &ih(1)).unwrap_err();
        assert!(refused.contains("at most 2 a second"), "{refused}");
        // Another address is not affected.
        a.check(t0, [10, 0, 0, 2].into(), &ih(1)).unwrap();
        // Half a second later one more is taken, then refused again.
        let t1 = t0 + Duration::from_millis(500);
        a.check(t1, ip, &ih(1)).unwrap();
        assert!(a.check(t1, ip, &ih(1)).is_err());
        // IPv6 addresses of one /64 share a budget.
        let v6 =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        for i in 0..5 {
            a.check(t0, v6(i), &ih(1)).unwrap();
        }
        assert!(a.check(t0, v6(99), &ih(1)).is_err());
        // No limit.
        let mut free = Admission::new(
            InfoHashFilter::Any,
            RateLimit {
                per_second: 0,
                burst: 0,
            },
        );
        for _ in 0..10_000 {
            free.check(t0, ip, &ih(1)).unwrap();
        }
    }

    #[test]
    fn allow_list_from_text_and_callback() {
        let text = format!(
            "# ours\n{}\n\nmagnet:?xt=urn:btih:{}&dn=x\n",
            ih(1).to_hex(),
            ih(2).to_hex()
        );
        let f = InfoHashFilter::parse_list(&text).unwrap();
        assert!(f.allows(&ih(1)) && f.allows(&ih(2)) && !f.allows(&ih(3)));
        let err = InfoHashFilter::parse_list("abc\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
        let mut a = Admission::new(f, RateLimit::default());
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(
            a.check(Time::ZERO, ip, &ih(3)),
            Err("torrent not allowed on this tracker".into())
        );
        a.check(Time::ZERO, ip, &ih(1)).unwrap();
        let odd = InfoHashFilter::With(Arc::new(|h: &InfoHash| h.0[0] % 2 == 1));
        assert!(odd.allows(&ih(1)) && !odd.allows(&ih(2)));
    }
}
