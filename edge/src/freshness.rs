//! Freshness of an edge cache entry. The Cache API ignores `stale-while-revalidate` and
//! `stale-if-error`, so entries are stored for the policy's whole retention
//! (`s-maxage` + the longer stale window) with the time they were stored, and the worker decides
//! here, on every read, what the entry may still be used for.

use shared::CachePolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Within `s-maxage`: serve it (`X-Cache: HIT`).
    Fresh,
    /// Past `s-maxage`, within `stale-while-revalidate`: serve it (`STALE`) and refresh it in
    /// the background.
    StaleWhileRevalidate,
    /// Past both, within `stale-if-error`: ask the origin; serve it (`STALE`) only if the origin
    /// fails or times out.
    StaleIfError,
    /// Too old for anything: treat as a miss.
    Expired,
}

/// `age_secs` is how long ago the entry was stored.
pub fn classify(age_secs: u64, policy: &CachePolicy) -> Freshness {
    let fresh = u64::from(policy.s_maxage);
    if age_secs < fresh {
        Freshness::Fresh
    } else if age_secs < fresh + u64::from(policy.stale_while_revalidate) {
        Freshness::StaleWhileRevalidate
    } else if age_secs < fresh + u64::from(policy.stale_if_error) {
        Freshness::StaleIfError
    } else {
        Freshness::Expired
    }
}

/// Whole seconds between `stored_at_ms` and `now_ms` (0 if the clock went backwards).
pub fn age_secs(stored_at_ms: u64, now_ms: u64) -> u64 {
    now_ms.saturating_sub(stored_at_ms) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::DataType;

    #[test]
    fn windows_follow_the_policy() {
        // prices: s-maxage 30, swr 30, sie 600
        let p = DataType::Prices.policy();
        assert_eq!(classify(0, &p), Freshness::Fresh);
        assert_eq!(classify(29, &p), Freshness::Fresh);
        assert_eq!(classify(30, &p), Freshness::StaleWhileRevalidate);
        assert_eq!(classify(59, &p), Freshness::StaleWhileRevalidate);
        assert_eq!(classify(60, &p), Freshness::StaleIfError);
        assert_eq!(classify(629, &p), Freshness::StaleIfError);
        assert_eq!(classify(630, &p), Freshness::Expired);
        // Retention is exactly what the classification still uses.
        assert_eq!(u64::from(p.edge_retention()), 630);
    }

    #[test]
    fn stale_if_error_shorter_than_swr_never_applies() {
        let mut p = DataType::Prices.policy();
        p.stale_if_error = 10;
        assert_eq!(classify(35, &p), Freshness::StaleWhileRevalidate);
        assert_eq!(classify(60, &p), Freshness::Expired);
    }

    #[test]
    fn age_is_whole_seconds_and_never_negative() {
        assert_eq!(age_secs(1_000, 3_999), 2);
        assert_eq!(age_secs(5_000, 1_000), 0);
    }
}
