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

/// One client address's budget, and one for each wider IPv6 prefix
/// ([`shared::ratelimit::WIDER_IPV6`]) at its multiple of it.
pub struct IpLimiter<C: Clock<Instant = Nanos>> {
    client: Scope<C>,
    wider: Vec<Scope<C>>,
}

/// One budget's table.
struct Scope<C: Clock<Instant = Nanos>> {
    /// A `RefCell` so an overflowing table can be replaced whole; the worker is single-threaded.
    limiter: RefCell<Keyed<C>>,
    quota: Quota,
    clock: C,
    checks: Cell<u32>,
}

impl<C: Clock<Instant = Nanos> + Clone> IpLimiter<C> {
    /// `per_minute` sustained, `burst` at once, per client; an IPv6 /56 and /48 get their
    /// multiples of both.
    pub fn new(per_minute: u32, burst: u32, clock: C) -> Self {
        let scope = |times: u32| {
            Scope::new(
                per_minute.saturating_mul(times),
                burst.saturating_mul(times),
                clock.clone(),
            )
        };
        IpLimiter {
            client: scope(1),
            wider: shared::ratelimit::WIDER_IPV6
                .iter()
                .map(|(_, times)| scope(*times))
                .collect(),
        }
    }

    /// Checks and counts one request from `key` (a [`client_key`]).
    pub fn check(&self, key: &str) -> Decision {
        self.client.check(key)
    }

    /// Checks and counts one request from the client address `raw` (`CF-Connecting-IP`): its
    /// own budget, then, for IPv6, its /56's and its /48's; the first refusal wins.
    pub fn check_client(&self, raw: Option<&str>) -> Decision {
        let decision = self.client.check(&client_key(raw));
        let ip = raw.map(str::trim).and_then(|s| s.parse::<IpAddr>().ok());
        let Some(v6) = ip.and_then(shared::ratelimit::wider_ipv6) else {
            return decision;
        };
        let wider = shared::ratelimit::WIDER_IPV6.iter().zip(&self.wider);
        let mut decision = decision;
        for ((len, _), scope) in wider {
            if decision != Decision::Allow {
                break;
            }
            let mut key = String::new();
            let _ = shared::ratelimit::write_prefix_key(&mut key, v6, *len);
            decision = scope.check(&key);
        }
        decision
    }

    /// Addresses currently tracked (the client table).
    pub fn tracked(&self) -> usize {
        self.client.limiter.borrow().len()
    }
}

impl<C: Clock<Instant = Nanos> + Clone> Scope<C> {
    fn new(per_minute: u32, burst: u32, clock: C) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Scope {
            limiter: RefCell::new(RateLimiter::hashmap_with_clock(quota, clock.clone())),
            quota,
            clock,
            checks: Cell::new(0),
        }
    }

    fn check(&self, key: &str) -> Decision {
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

/// The Workers Rate Limiting bindings (`[[ratelimits]]` in wrangler.toml) a deployed edge counts
/// against, in the order they are asked. Each has its own limit in wrangler.toml (the /56 twice
/// and the /48 four times the client's, as [`shared::ratelimit::WIDER_IPV6`] says); where the
/// first is not bound (local runs, tests) the isolate's [`IpLimiter`] counts instead.
pub const BINDING_CLIENT: &str = "EDGE_RATE_LIMIT";
pub const BINDING_V6_56: &str = "EDGE_RATE_LIMIT_V6_56";
pub const BINDING_V6_48: &str = "EDGE_RATE_LIMIT_V6_48";
/// Trusted server-side clients, each counted by its name.
pub const BINDING_TRUSTED: &str = "EDGE_RATE_LIMIT_TRUSTED";

/// The (binding, key) pairs one request from the client address `raw` counts against: its own
/// key, then for IPv6 its /56 and /48.
pub fn binding_keys(raw: Option<&str>) -> Vec<(&'static str, String)> {
    let mut keys = vec![(BINDING_CLIENT, client_key(raw))];
    let ip = raw.map(str::trim).and_then(|s| s.parse::<IpAddr>().ok());
    if let Some(v6) = ip.and_then(shared::ratelimit::wider_ipv6) {
        let names = [BINDING_V6_56, BINDING_V6_48];
        for ((len, _), name) in shared::ratelimit::WIDER_IPV6.iter().zip(names) {
            let mut key = String::new();
            let _ = shared::ratelimit::write_prefix_key(&mut key, v6, *len);
            keys.push((name, key));
        }
    }
    keys
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
    fn an_ipv6_48_shares_four_budgets() {
        let clock = FakeRelativeClock::default();
        let limiter = IpLimiter::new(60, 10, clock.clone());
        // Sixty /64s of one /48, one request each, each in a /56 of its own.
        let admitted = (0..60)
            .filter(|i| {
                let ip = format!("2001:db8:7:{:x}::1", i << 8);
                limiter.check_client(Some(&ip)) == Decision::Allow
            })
            .count();
        assert_eq!(admitted, 40, "the /48's burst is four /64s' (4 x 10)");
        let elsewhere = limiter.check_client(Some("2001:db8:8::1"));
        assert_eq!(elsewhere, Decision::Allow, "another /48 has its own");
        let one_56 = (0..30)
            .filter(|i| {
                let ip = format!("2001:db8:9:{:x}::1", 0x100 + i);
                limiter.check_client(Some(&ip)) == Decision::Allow
            })
            .count();
        assert_eq!(one_56, 20, "a /56's burst is two /64s' (2 x 10)");
        let v4 = (0..20).filter(|_| limiter.check_client(Some("203.0.113.5")) == Decision::Allow);
        assert_eq!(v4.count(), 10, "IPv4 has its own budget alone");
    }

    #[test]
    fn binding_keys_count_ipv6_at_three_prefixes() {
        assert_eq!(
            binding_keys(Some("203.0.113.9")),
            vec![(BINDING_CLIENT, "203.0.113.9".to_owned())]
        );
        assert_eq!(
            binding_keys(Some("2001:db8:1:2a3:aaaa::1")),
            vec![
                (BINDING_CLIENT, "2001:db8:1:2a3::/64".to_owned()),
                (BINDING_V6_56, "2001:db8:1:200::/56".to_owned()),
                (BINDING_V6_48, "2001:db8:1::/48".to_owned()),
            ]
        );
        assert_eq!(
            binding_keys(Some("::ffff:198.51.100.7")),
            vec![(BINDING_CLIENT, "198.51.100.7".to_owned())]
        );
        assert_eq!(
            binding_keys(None),
            vec![(BINDING_CLIENT, "unknown".to_owned())]
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
