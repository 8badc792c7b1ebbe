//! Rate-limit tiers (the guide's section 3) and which route group falls in which tier.

/// How a tier counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Weighted sliding-window counter: the current fixed window's count plus the previous
    /// window's count weighted by how much of it still overlaps the sliding window.
    Sliding,
    /// Plain fixed window aligned to multiples of the window length, counted atomically.
    Fixed,
}

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

    /// The one mapping from route group to tier. `None`: not limited (health, metrics).
    pub fn for_path(path: &str) -> Option<Tier> {
        if path.starts_with("/v1/auth/") {
            Some(Tier::Auth)
        } else if path.starts_with("/v1/admin/") {
            Some(Tier::Admin)
        } else if path.starts_with("/v1/ops/") {
            Some(Tier::Ops)
        } else if path.starts_with("/v1/") {
            Some(Tier::Api)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn route_groups_map_to_tiers() {
        assert_eq!(Tier::for_path("/v1/auth/login"), Some(Tier::Auth));
        assert_eq!(Tier::for_path("/v1/admin/prices/a/b/c"), Some(Tier::Admin));
        assert_eq!(Tier::for_path("/v1/ops/cache/invalidate"), Some(Tier::Ops));
        assert_eq!(Tier::for_path("/v1/catalog/providers"), Some(Tier::Api));
        assert_eq!(Tier::for_path("/healthz"), None);
        assert_eq!(Tier::for_path("/metrics"), None);
    }
}
