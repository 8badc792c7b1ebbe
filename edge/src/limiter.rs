//! The coarse per-IP limit: a GCRA limiter (`governor`) per client address, in the isolate's
//! memory. It is coarse by nature: each isolate (and each data centre) counts on its own and an
//! isolate can be evicted at any time. The origin's Redis tiers are the precise limit; this one
//! stops a single address from hammering one location cheaply, before any origin work.
//!
//! Memory stays bounded: every [`SWEEP_EVERY`] checks, keys whose state has fully recovered are
//! dropped (`retain_recent`), and if more than [`MAX_KEYS`] remain the table is cleared (a
//! flood of distinct addresses then costs each of them one fresh budget, never unbounded memory).

use core::cell::{Cell, RefCell};
use core::net::IpAddr;
use core::num::NonZeroU32;
use core::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

pub const SWEEP_EVERY: u32 = 1024;
pub const MAX_KEYS: usize = 50_000;

type Keyed<C> = RateLimiter<String, HashMapStateStore<String>, C, NoOpMiddleware<Nanos>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Over the limit; retry after this many whole seconds (at least 1).
    Deny {
        retry_after_secs: u64,
    },
}

pub struct IpLimiter<C: Clock<Instant = Nanos>> {
    /// A `RefCell` so an overflowing table can be replaced whole; the worker is single-threaded.
    limiter: RefCell<Keyed<C>>,
    quota: Quota,
    clock: C,
    checks: Cell<u32>,
}

impl<C: Clock<Instant = Nanos> + Clone> IpLimiter<C> {
    /// `per_minute` sustained, `burst` at once.
    pub fn new(per_minute: u32, burst: u32, clock: C) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        IpLimiter {
            limiter: RefCell::new(RateLimiter::hashmap_with_clock(quota, clock.clone())),
            quota,
            clock,
            checks: Cell::new(0),
        }
    }

    pub fn check(&self, key: &str) -> Decision {
        self.sweep();
        let outcome = self.limiter.borrow().check_key(&key.to_owned());
        match outcome {
            Ok(()) => Decision::Allow,
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Decision::Deny {
                    retry_after_secs: secs.max(1),
                }
            }
        }
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.limiter.borrow().len()
    }

    fn sweep(&self) {
        let n = self.checks.get().wrapping_add(1);
        self.checks.set(n);
        if n.is_multiple_of(SWEEP_EVERY) {
            let limiter = self.limiter.borrow();
            limiter.retain_recent();
            limiter.shrink_to_fit();
            let overflowing = limiter.len() > MAX_KEYS;
            drop(limiter);
            if overflowing {
                // Still too many live keys: start over rather than grow.
                *self.limiter.borrow_mut() =
                    RateLimiter::hashmap_with_clock(self.quota, self.clock.clone());
            }
        }
    }
}

/// The limiter key of a client address (`shared::ratelimit::ip_key`). Unparseable or missing
/// addresses share one key.
pub fn client_key(raw: Option<&str>) -> String {
    match raw.map(str::trim).and_then(|s| s.parse::<IpAddr>().ok()) {
        Some(ip) => shared::ratelimit::ip_key(ip),
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn burst_then_deny_with_wait_then_recover() {
        let clock = FakeRelativeClock::default();
        let limiter = IpLimiter::new(60, 5, clock.clone()); // one per second, burst 5
        for _ in 0..5 {
            assert_eq!(limiter.check("1.2.3.4"), Decision::Allow);
        }
        assert_eq!(
            limiter.check("1.2.3.4"),
            Decision::Deny {
                retry_after_secs: 1
            }
        );
        assert_eq!(
            limiter.check("5.6.7.8"),
            Decision::Allow,
            "other addresses have their own budget"
        );
        clock.advance(Duration::from_millis(1000));
        assert_eq!(limiter.check("1.2.3.4"), Decision::Allow);
        assert!(matches!(limiter.check("1.2.3.4"), Decision::Deny { .. }));
    }

    #[test]
    fn retry_after_rounds_up() {
        let clock = FakeRelativeClock::default();
        let limiter = IpLimiter::new(6, 1, clock.clone()); // one per 10 s
        assert_eq!(limiter.check("a"), Decision::Allow);
        clock.advance(Duration::from_millis(2500));
        assert_eq!(
            limiter.check("a"),
            Decision::Deny {
                retry_after_secs: 8
            }
        );
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let clock = FakeRelativeClock::default();
        let limiter = IpLimiter::new(600, 10, clock.clone());
        for i in 0..(SWEEP_EVERY * 8) {
            limiter.check(&format!("10.0.{}.{}", i / 256, i % 256));
            clock.advance(Duration::from_millis(50));
        }
        // Recovered keys are swept: far fewer than the 8k addresses seen.
        assert!(
            limiter.tracked() < SWEEP_EVERY as usize * 2,
            "{}",
            limiter.tracked()
        );
    }

    #[test]
    fn keys_group_ipv6_by_64() {
        assert_eq!(client_key(Some("203.0.113.9")), "203.0.113.9");
        assert_eq!(
            client_key(Some("2001:db8:1:2:aaaa::1")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(Some("2001:db8:1:2:ffff::9")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_key(Some("::ffff:198.51.100.7")), "198.51.100.7");
        assert_eq!(client_key(Some("not an ip")), "unknown");
        assert_eq!(client_key(None), "unknown");
    }
}
