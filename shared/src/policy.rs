//! The TTL and header policy table: for each data type, how long Redis keeps it and what
//! `Cache-Control` tells browsers (`max-age`) and shared caches such as the edge (`s-maxage`,
//! `stale-while-revalidate`, `stale-if-error`).
//!
//! Why these numbers: the Redis TTLs are the guide's (prices 60 s because pricing and stock
//! move; reference data 1 h). A browser keeps a copy for at most a fraction of that so a user
//! sees a change within one page reload cycle; the edge keeps it for at most the Redis TTL, so the
//! worst-case staleness a client can see is `s-maxage + stale-while-revalidate`, bounded by the
//! table. `stale-if-error` is long on purpose: an old catalog is better than an error page while
//! the origin is down.
//!
//! What a price answer promises about stock ([`availability`]): its step, not its count —
//!
//! | stock | `availability` | a purchase that keeps it there |
//! |---|---|---|
//! | more than 10 | `in_stock` | changes no answer: nothing invalidated or purged |
//! | 1 to 10 | `few_left` | the same |
//! | 0 | `sold_out` | (none: a purchase is refused) |
//!
//! Crossing a step is a change: soft (served stale while refreshed) while still on sale, hard
//! on selling out. So a cached answer's step is at most the price's TTL old, and purchases decide
//! on the locked row, never on a cached answer.

/// Every kind of cached data in the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Providers,
    Countries,
    Services,
    Prices,
    Balance,
    Session,
}

impl DataType {
    pub const ALL: [DataType; 6] = [
        DataType::Providers,
        DataType::Countries,
        DataType::Services,
        DataType::Prices,
        DataType::Balance,
        DataType::Session,
    ];

    /// Label used in metrics and logs (never a key or an id).
    pub const fn as_str(self) -> &'static str {
        match self {
            DataType::Providers => "providers",
            DataType::Countries => "countries",
            DataType::Services => "services",
            DataType::Prices => "prices",
            DataType::Balance => "balance",
            DataType::Session => "session",
        }
    }

    pub const fn policy(self) -> CachePolicy {
        match self {
            DataType::Providers => CachePolicy::public(3600, 300, 3600, 600, 86_400),
            DataType::Countries => CachePolicy::public(3600, 300, 600, 600, 86_400),
            DataType::Services => CachePolicy::public(3600, 300, 600, 600, 86_400),
            DataType::Prices => CachePolicy::public(60, 15, 30, 30, 600),
            DataType::Balance => CachePolicy::private(30),
            DataType::Session => CachePolicy::private(15 * 60),
        }
    }
}

/// One row of the table. All durations are whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Redis expiry of the cache-aside entry (for sessions: the sliding idle timeout).
    pub redis_ttl: u32,
    /// `public` responses may be stored by browsers and shared caches; the others are
    /// `private, no-store` everywhere.
    pub public: bool,
    /// Browser freshness (`max-age`).
    pub max_age: u32,
    /// Shared-cache (edge) freshness (`s-maxage`).
    pub s_maxage: u32,
    /// After `s-maxage`, how long the edge may answer from its copy while refreshing it.
    pub stale_while_revalidate: u32,
    /// After `s-maxage`, how long the edge may answer from its copy when the origin fails.
    pub stale_if_error: u32,
}

impl CachePolicy {
    const fn public(
        redis_ttl: u32,
        max_age: u32,
        s_maxage: u32,
        stale_while_revalidate: u32,
        stale_if_error: u32,
    ) -> Self {
        CachePolicy {
            redis_ttl,
            public: true,
            max_age,
            s_maxage,
            stale_while_revalidate,
            stale_if_error,
        }
    }

    const fn private(redis_ttl: u32) -> Self {
        CachePolicy {
            redis_ttl,
            public: false,
            max_age: 0,
            s_maxage: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
        }
    }

    /// The `Cache-Control` header value for a response of this type.
    pub fn cache_control(&self) -> String {
        if self.public {
            format!(
                "public, max-age={}, s-maxage={}, stale-while-revalidate={}, stale-if-error={}",
                self.max_age, self.s_maxage, self.stale_while_revalidate, self.stale_if_error
            )
        } else {
            PRIVATE_NO_STORE.to_owned()
        }
    }

    /// How long the edge keeps an entry at all: fresh, then usable stale for either reason.
    pub const fn edge_retention(&self) -> u32 {
        let stale = if self.stale_while_revalidate > self.stale_if_error {
            self.stale_while_revalidate
        } else {
            self.stale_if_error
        };
        self.s_maxage + stale
    }

    /// The same policy with every duration divided by `factor` (at least 1 s each), so a test
    /// configuration can exercise expiry in seconds instead of minutes.
    pub fn scaled_down(&self, factor: u32) -> Self {
        let f = factor.max(1);
        let s = |v: u32| if v == 0 { 0 } else { (v / f).max(1) };
        CachePolicy {
            redis_ttl: s(self.redis_ttl),
            public: self.public,
            max_age: s(self.max_age),
            s_maxage: s(self.s_maxage),
            stale_while_revalidate: s(self.stale_while_revalidate),
            stale_if_error: s(self.stale_if_error),
        }
    }
}

/// The longest any catalog answer is kept by a cache downstream of the origin (fresh plus the
/// longer stale window, over every cached data type), in seconds: a copy stored before a change
/// is gone from every cache this long after it. The edge forgets purge marks older than this,
/// and the origin's purge queue drops tags that waited longer (the caches let them go already).
pub const LONGEST_EDGE_RETENTION_SECS: u32 = {
    let all = [
        DataType::Providers.policy(),
        DataType::Countries.policy(),
        DataType::Services.policy(),
        DataType::Prices.policy(),
    ];
    let mut longest = 0;
    let mut i = 0;
    while i < all.len() {
        let r = all[i].edge_retention();
        if r > longest {
            longest = r;
        }
        i += 1;
    }
    longest
};

/// `Cache-Control` of everything personal or mutating.
pub const PRIVATE_NO_STORE: &str = "private, no-store";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_ttls_are_the_guides() {
        assert_eq!(DataType::Prices.policy().redis_ttl, 60);
        assert_eq!(DataType::Countries.policy().redis_ttl, 3600);
        assert_eq!(DataType::Services.policy().redis_ttl, 3600);
        assert_eq!(DataType::Balance.policy().redis_ttl, 30);
        assert_eq!(DataType::Session.policy().redis_ttl, 900);
    }

    #[test]
    fn headers_render() {
        assert_eq!(
            DataType::Prices.policy().cache_control(),
            "public, max-age=15, s-maxage=30, stale-while-revalidate=30, stale-if-error=600"
        );
        assert_eq!(
            DataType::Balance.policy().cache_control(),
            "private, no-store"
        );
    }

    #[test]
    fn edge_never_outlives_redis_and_browser_never_outlives_edge() {
        for t in DataType::ALL {
            let p = t.policy();
            assert!(p.s_maxage <= p.redis_ttl, "{t:?}");
            assert!(p.max_age <= p.s_maxage, "{t:?}");
        }
    }

    #[test]
    fn scaling_keeps_every_window_positive() {
        let p = DataType::Prices.policy().scaled_down(60);
        assert_eq!((p.redis_ttl, p.max_age, p.s_maxage), (1, 1, 1));
        assert_eq!(p.stale_if_error, 10);
        assert_eq!(DataType::Balance.policy().scaled_down(60).max_age, 0);
        assert_eq!(DataType::Prices.policy().edge_retention(), 630);
    }
}

/// The time budget of one request through the edge, in one place: the edge's `ORIGIN_TIMEOUT_MS`
/// and the origin's `REQUEST_TIMEOUT_MS` default to these, and the deployment files are checked
/// against them (`edge/tests/deploy.rs`, the CDK app's test).
///
/// Why the origin's deadline is the shorter one: when the edge gives up first, the origin goes on
/// and may commit a purchase the buyer was told timed out (a 504 at the edge, a charge at the
/// origin). With the origin's deadline first, the edge always relays the origin's own answer: a
/// result, or a 504 `timeout` whose transaction was rolled back. The margin covers the trip
/// between them and the origin writing its answer. The one window left (a deadline falling
/// between `COMMIT` and the answer) is closed by the `Idempotency-Key` every purchase carries
/// (the TypeScript client sends one by default): a retry with the same key answers the real
/// outcome and never charges twice.
pub mod budget {
    /// How long the edge waits for the origin (`ORIGIN_TIMEOUT_MS`); past it, a catalog read is
    /// answered stale (within `stale-if-error`) or 504.
    pub const EDGE_ORIGIN_TIMEOUT_MS: u32 = 3_000;
    /// The origin's request deadline (`REQUEST_TIMEOUT_MS`): past it a JSON 504 and the
    /// request's work, a purchase's transaction with it, is dropped.
    pub const ORIGIN_REQUEST_TIMEOUT_MS: u32 = 2_500;
    /// At least this between the two.
    pub const MARGIN_MS: u32 = 500;

    /// Whether an edge timeout and an origin deadline keep the rule above.
    pub const fn agree(edge_origin_timeout_ms: u64, origin_request_timeout_ms: u64) -> bool {
        origin_request_timeout_ms + MARGIN_MS as u64 <= edge_origin_timeout_ms
    }

    const _: () = assert!(agree(
        EDGE_ORIGIN_TIMEOUT_MS as u64,
        ORIGIN_REQUEST_TIMEOUT_MS as u64
    ));
}

/// What a cached catalog answer promises about stock: availability in coarse steps, never the
/// count. Stock moves with every purchase; were the count in the answer, every purchase would
/// make every cached copy of its price out of date, and a popular product (exactly the page
/// buyers read) would be purged from every cache downstream many times a second (measured: 2
/// purchases a second of one product dropped the edge's hit ratio on its country from 100 % to
/// 87.7 %). In steps, a purchase changes the answer only when it crosses one, and purges only
/// then. The truth is decided when a number is bought, on the locked row in PostgreSQL.
pub mod availability {
    /// At most this many left reads `few_left` (a buyer's hint to hurry, and the step where each
    /// purchase starts to matter); none reads `sold_out`; more reads `in_stock`.
    pub const FEW_LEFT_AT_MOST: i64 = 10;
}
