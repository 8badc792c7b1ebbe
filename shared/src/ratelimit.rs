//! Rate-limit tiers (the guide's section 3), which route group falls in which tier, and the
//! identity key of a client address (shared by the edge's coarse limit and the origin's tiers).

use core::net::IpAddr;

/// How a tier counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Sliding window over 20 sub-window buckets: the requests counted in the buckets that
    /// overlap the last window (a superset of it) never exceed the limit, so no window of the
    /// tier's length admits more; a request up to one bucket older than the window still counts.
    Sliding,
    /// Plain fixed window aligned to multiples of the window length, counted atomically.
    Fixed,
}

/// Sub-window buckets of a sliding window: its resolution (window / 20: 3 s for 60 s tiers).
pub const SLIDING_BUCKETS: u64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    Api,
    Auth,
    Admin,
    Ops,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierSpec {
    /// Policy name in `RateLimit-Policy` / `RateLimit` headers, metrics and Redis keys.
    pub name: &'static str,
    pub limit: u32,
    pub window_secs: u32,
    pub kind: WindowKind,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Api, Tier::Auth, Tier::Admin, Tier::Ops];

    pub const fn spec(self) -> TierSpec {
        match self {
            Tier::Api => TierSpec {
                name: "api",
                limit: 1000,
                window_secs: 60,
                kind: WindowKind::Sliding,
            },
            Tier::Auth => TierSpec {
                name: "auth",
                limit: 600,
                window_secs: 60,
                kind: WindowKind::Sliding,
            },
            Tier::Admin => TierSpec {
                name: "admin",
                limit: 100,
                window_secs: 60,
                kind: WindowKind::Sliding,
            },
            Tier::Ops => TierSpec {
                name: "ops",
                limit: 10,
                window_secs: 10,
                kind: WindowKind::Fixed,
            },
        }
    }

    /// The one mapping from route group to tier: every path of the public listener, unknown
    /// ones too, counts against one (`/openapi.json` and a made-up path are Api). `None` only for
    /// `/healthz`, the load balancer's liveness check: no work behind it, and a balancer probing
    /// every second must not spend its address's budget.
    pub fn for_path(path: &str) -> Option<Tier> {
        if path == "/healthz" {
            None
        } else if path.starts_with("/v1/auth/") {
            Some(Tier::Auth)
        } else if path.starts_with("/v1/admin/") {
            Some(Tier::Admin)
        } else if path.starts_with("/v1/ops/") {
            Some(Tier::Ops)
        } else {
            Some(Tier::Api)
        }
    }
}

/// The limiter identity of a client address: IPv4 as is, IPv6 by its /64 (one subscriber
/// usually holds a whole /64, so per-address keys would hand them 2^64 budgets); IPv4-mapped
/// IPv6 as the IPv4 address.
pub fn ip_key(ip: IpAddr) -> String {
    let mut key = String::new();
    let _ = write_ip_key(&mut key, ip);
    key
}

/// The address one client is counted as, as an address: IPv4 as is, IPv4-mapped IPv6 as the
/// IPv4 address, other IPv6 with all but its /64 zeroed (for in-process tables keyed without
/// formatting).
pub fn client_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ipv6_prefix(v6, 64)),
        },
    }
}

/// The wider prefixes an IPv6 client is counted at as well as its /64, each with the multiple of
/// the per-client budget that every address inside it shares: one subscriber usually holds a
/// /56 or a /48, so counting the /64 alone would hand one of them 256 or 65 536 budgets. A /48
/// gets four /64s' worth, more than one IPv4 address behind NAT, which shares a single budget.
pub const WIDER_IPV6: [(u8, u32); 2] = [(56, 2), (48, 4)];

/// The IPv6 address whose wider prefixes ([`WIDER_IPV6`]) `ip` is counted at (`None` for IPv4
/// and IPv4-mapped addresses, which have only their own budget).
pub fn wider_ipv6(ip: IpAddr) -> Option<core::net::Ipv6Addr> {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => Some(v6),
        _ => None,
    }
}

/// `v6` with all but its first `len` bits zeroed.
fn ipv6_prefix(v6: core::net::Ipv6Addr, len: u8) -> core::net::Ipv6Addr {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0);
    core::net::Ipv6Addr::from(u128::from(v6) & mask)
}

/// The limiter identity of `v6`'s /`len` prefix: `2001:db8:1:200::/56`.
pub fn write_prefix_key(
    out: &mut impl core::fmt::Write,
    v6: core::net::Ipv6Addr,
    len: u8,
) -> core::fmt::Result {
    write!(out, "{}/{len}", ipv6_prefix(v6, len))
}

/// [`ip_key`] written into `out` (a stack buffer on the origin's hot path).
pub fn write_ip_key(out: &mut impl core::fmt::Write, ip: IpAddr) -> core::fmt::Result {
    match ip {
        IpAddr::V4(v4) => write_ipv4(out, v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => write_ipv4(out, v4),
            None => {
                let s = v6.segments();
                write!(out, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// `a.b.c.d`, as `Ipv4Addr`'s `Display` writes it, in one `write_str`: on every request, where
/// `core::fmt` cost ~900 instructions of the origin's ~24 000 for a hit.
fn write_ipv4(out: &mut impl core::fmt::Write, ip: core::net::Ipv4Addr) -> core::fmt::Result {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            text[len] = b'0' + d;
            len += 1;
        }
    }
    // Only ASCII digits and dots were written.
    out.write_str(core::str::from_utf8(&text[..len]).map_err(|_| core::fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_its_ipv4_address_or_its_ipv6_64() {
        let p = |s: &str| client_prefix(s.parse().unwrap()).to_string();
        assert_eq!(p("203.0.113.9"), "203.0.113.9");
        assert_eq!(p("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(p("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(p("2001:db8:1:3::1"), "2001:db8:1:3::");
    }

    #[test]
    fn wider_ipv6_prefixes_are_keyed_by_their_bits() {
        let v6 = |s: &str| wider_ipv6(s.parse().unwrap());
        assert_eq!(v6("203.0.113.9"), None);
        assert_eq!(v6("::ffff:203.0.113.9"), None);
        let ip = v6("2001:db8:1:2ff:aaaa::1").unwrap();
        let key = |len| {
            let mut s = String::new();
            write_prefix_key(&mut s, ip, len).unwrap();
            s
        };
        assert_eq!(key(56), "2001:db8:1:200::/56");
        assert_eq!(key(48), "2001:db8:1::/48");
        assert_eq!(key(0), "::/0");
        assert_eq!(WIDER_IPV6.map(|(len, _)| len), [56, 48]);
    }

    #[test]
    fn tiers_are_the_guides() {
        let rows: Vec<_> = Tier::ALL
            .iter()
            .map(|t| {
                let s = t.spec();
                (s.name, s.limit, s.window_secs, s.kind)
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("api", 1000, 60, WindowKind::Sliding),
                ("auth", 600, 60, WindowKind::Sliding),
                ("admin", 100, 60, WindowKind::Sliding),
                ("ops", 10, 10, WindowKind::Fixed),
            ]
        );
    }

    #[test]
    fn ipv4_keys_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "9.10.99.100",
            "203.0.113.9",
            "10.0.0.1",
            "100.64.1.200",
        ] {
            assert_eq!(ip_key(ip.parse().unwrap()), ip);
        }
        // Every octet value, in every position.
        for n in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(n, 255 - n, n / 3, n.wrapping_mul(7));
            assert_eq!(ip_key(ip.into()), ip.to_string());
        }
    }

    #[test]
    fn ip_keys_group_ipv6_by_64() {
        let k = |s: &str| ip_key(s.parse().unwrap());
        assert_eq!(k("203.0.113.9"), "203.0.113.9");
        assert_eq!(k("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(k("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64");
        assert_eq!(k("::ffff:198.51.100.7"), "198.51.100.7");
    }

    #[test]
    fn route_groups_map_to_tiers() {
        assert_eq!(Tier::for_path("/v1/auth/login"), Some(Tier::Auth));
        assert_eq!(Tier::for_path("/v1/admin/prices/a/b/c"), Some(Tier::Admin));
        assert_eq!(Tier::for_path("/v1/ops/cache/invalidate"), Some(Tier::Ops));
        assert_eq!(Tier::for_path("/v1/catalog/providers"), Some(Tier::Api));
        assert_eq!(Tier::for_path("/healthz"), None);
        assert_eq!(Tier::for_path("/openapi.json"), Some(Tier::Api));
        assert_eq!(Tier::for_path("/made/up"), Some(Tier::Api));
    }
}
