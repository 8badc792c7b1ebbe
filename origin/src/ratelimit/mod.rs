//! Rate-limit tiers over Redis (the guide's section 3): one atomic Lua script per check
//! (EVALSHA through `redis::Script`, which reloads on NOSCRIPT), never read-then-write from Rust.
//!
//! **Sliding tiers** (API, Auth, Admin) use a sliding window over sub-window buckets
//! (`sliding.lua`): one hash per identity with at most `BUCKETS + 1` fields, so memory per
//! identity is O(buckets), about 1 KB, whatever the limit. The requests it admits in *any* window
//! of the tier's length never exceed the limit — it counts a superset of the window — and its
//! only error is on the safe side: a request up to one bucket (window / 20: 3 s for a 60 s tier)
//! older than the window still counts, so a client can be refused up to 3 s early.
//!
//! **The Ops tier** is a fixed window aligned to multiples of its length (`fixed.lua`).
//!
//! **Leases keep Redis off the hot path.** A check asks Redis for up to `limit / 100` tokens at
//! once (at least 1) and admits that many requests of the identity locally until the current
//! bucket (or fixed window) ends; a refusal is remembered locally until budget frees up. Tokens
//! are counted in Redis when leased and used within the bucket they were counted in, so the
//! guarantee above holds for the whole fleet. The cost is on the safe side again: leased tokens
//! an origin does not use still count, so with R replicas an identity can be refused up to
//! R × (lease − 1) requests early (R × 9 for the API tier); small tiers (lease 1) are exact.
//!
//! Both read Redis's own clock, so every origin replica agrees on the window. Keys
//! (`ratelimit:{tier}:{identity}`) always carry an expiry.
//!
//! **Fail open**: when Redis errors or exceeds `REDIS_TIMEOUT_MS`, the request is allowed and
//! `ratelimit_fail_open_total` counts it. While that lasts, a per-process `governor` limiter with
//! the same quota still applies, so one client cannot flood one instance; when Redis answers
//! again the shared limits resume by themselves.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use shared::ratelimit::{Tier, TierSpec, WindowKind};

use crate::cache::Cache;

/// Sub-window buckets per sliding window.
pub const BUCKETS: u64 = 20;

static SLIDING: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("sliding.lua")));
static FIXED: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("fixed.lua")));

/// One tier as configured: the table's numbers, or a test override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierLimit {
    pub tier: Tier,
    pub name: &'static str,
    pub limit: u32,
    pub window: Duration,
    pub kind: WindowKind,
}

impl TierLimit {
    pub fn from_spec(tier: Tier, spec: TierSpec) -> Self {
        TierLimit {
            tier,
            name: spec.name,
            limit: spec.limit,
            window: Duration::from_secs(u64::from(spec.window_secs)),
            kind: spec.kind,
        }
    }

    /// Tokens asked for per Redis round trip.
    pub fn lease_size(&self) -> u32 {
        (self.limit / 100).max(1)
    }

    fn bucket_ms(&self) -> u64 {
        let window = self.window.as_millis() as u64;
        (window / BUCKETS).max(1)
    }
}

/// The production table from `shared`, with `RATE_LIMITS` overrides applied
/// (`api=5/2000,ops=2/1000`: limit per window in ms; tests only).
pub fn tier_limits(overrides: &str) -> Result<Vec<TierLimit>, String> {
    let mut limits: Vec<TierLimit> = Tier::ALL
        .iter()
        .map(|&t| TierLimit::from_spec(t, t.spec()))
        .collect();
    for item in overrides
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, rest) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not name=limit/window_ms"))?;
        let (limit, window) = rest
            .split_once('/')
            .ok_or_else(|| format!("{item:?} is not name=limit/window_ms"))?;
        let limit: u32 = limit
            .parse()
            .map_err(|_| format!("{item:?}: limit is not a number"))?;
        let window: u64 = window
            .parse()
            .map_err(|_| format!("{item:?}: window is not a number of ms"))?;
        if limit == 0 || window < BUCKETS {
            return Err(format!(
                "{item:?}: limit must be > 0 and window at least {BUCKETS} ms"
            ));
        }
        let slot = limits
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| format!("{item:?}: no tier named {name}"))?;
        slot.limit = limit;
        slot.window = Duration::from_millis(window);
    }
    Ok(limits)
}

/// The outcome of one check, with what the `RateLimit` headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: TierLimit,
    pub remaining: u32,
    /// Seconds until budget frees up (`t` in `RateLimit`, `Retry-After` when refused).
    pub reset_secs: u64,
    /// Decided by the local safety net because Redis was unavailable.
    pub local: bool,
}

type Local = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    governor::clock::DefaultClock,
    StateInformationMiddleware,
>;

/// Tokens an origin holds for one identity in one tier, or a remembered refusal.
struct Lease {
    /// Unused tokens (may go negative under contention: then the lease is spent).
    tokens: AtomicI64,
    /// Requests counted in Redis when the lease was granted.
    counted: u32,
    /// End of the bucket the tokens were counted in (or of the refusal).
    until: Instant,
    refused: bool,
    reset_at: Instant,
}

#[derive(Clone)]
pub struct Limiter {
    cache: Cache,
    tiers: Arc<Vec<TierLimit>>,
    local: Arc<Vec<Local>>,
    local_checks: Arc<AtomicU64>,
    leases: moka::sync::Cache<(Tier, String), Arc<Lease>>,
    enabled: bool,
}

impl Limiter {
    pub fn new(cache: Cache, tiers: Vec<TierLimit>) -> Self {
        let local = tiers
            .iter()
            .map(|t| {
                let limit = NonZeroU32::new(t.limit).unwrap_or(NonZeroU32::MIN);
                let period = (t.window / t.limit.max(1)).max(Duration::from_nanos(1));
                let quota = Quota::with_period(period)
                    .unwrap_or_else(|| Quota::per_second(limit))
                    .allow_burst(limit);
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
            })
            .collect();
        let longest = tiers
            .iter()
            .map(|t| t.window)
            .max()
            .unwrap_or(Duration::from_secs(60));
        Limiter {
            cache,
            tiers: Arc::new(tiers),
            local: Arc::new(local),
            local_checks: Arc::new(AtomicU64::new(0)),
            leases: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(longest)
                .build(),
            enabled: true,
        }
    }

    /// A limiter that admits everything (`RATE_LIMIT=off`, to measure its cost).
    pub fn disabled(cache: Cache, tiers: Vec<TierLimit>) -> Self {
        Limiter {
            enabled: false,
            ..Limiter::new(cache, tiers)
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// A decision from a live local lease, if there is one.
    fn from_lease(&self, limit: TierLimit, identity: &str) -> Option<Decision> {
        let lease = self.leases.get(&(limit.tier, identity.to_owned()))?;
        let now = Instant::now();
        if now >= lease.until {
            return None;
        }
        let reset_secs = |at: Instant| {
            at.saturating_duration_since(now)
                .as_millis()
                .div_ceil(1000)
                .max(1) as u64
        };
        if lease.refused {
            return Some(Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_secs: reset_secs(lease.reset_at),
                local: false,
            });
        }
        let left = lease.tokens.fetch_sub(1, Ordering::AcqRel) - 1;
        if left < 0 {
            return None;
        }
        let admitted = i64::from(lease.counted) - left;
        Some(Decision {
            allowed: true,
            limit,
            remaining: u32::try_from(i64::from(limit.limit) - admitted).unwrap_or(0),
            reset_secs: reset_secs(lease.reset_at),
            local: false,
        })
    }

    pub fn tier(&self, tier: Tier) -> TierLimit {
        self.tiers
            .iter()
            .copied()
            .find(|t| t.tier == tier)
            .unwrap_or_else(|| TierLimit::from_spec(tier, tier.spec()))
    }

    /// Checks and counts one request of `identity` (`user:42`, `ip:203.0.113.9`) in `tier`.
    pub async fn check(&self, tier: Tier, identity: &str) -> Decision {
        let limit = self.tier(tier);
        if let Some(decision) = self.from_lease(limit, identity) {
            let outcome = if decision.allowed {
                "allowed"
            } else {
                "limited"
            };
            metrics::counter!("ratelimit_decisions_total", "tier" => limit.name, "outcome" => outcome).increment(1);
            return decision;
        }
        let lease_size = limit.lease_size();
        let key = self
            .cache
            .key(&format!("ratelimit:{}:{identity}", limit.name));
        let window_ms = limit.window.as_millis() as u64;
        let mut conn = self.cache.connection();
        let outcome = self
            .cache
            .bounded("ratelimit", async move {
                match limit.kind {
                    WindowKind::Sliding => {
                        SLIDING
                            .key(key)
                            .arg(limit.limit)
                            .arg(window_ms)
                            .arg(limit.bucket_ms())
                            .arg(lease_size)
                            .invoke_async::<Vec<i64>>(&mut conn)
                            .await
                    }
                    WindowKind::Fixed => {
                        FIXED
                            .key(key)
                            .arg(limit.limit)
                            .arg(window_ms)
                            .arg(lease_size)
                            .invoke_async::<Vec<i64>>(&mut conn)
                            .await
                    }
                }
            })
            .await;
        let decision = match outcome {
            Ok(v) if v.len() == 4 => {
                let granted = v[0].max(0);
                let counted = u32::try_from(v[1].max(0)).unwrap_or(u32::MAX);
                let now = Instant::now();
                let reset_at = now + Duration::from_millis(v[2].max(0) as u64);
                let valid = Duration::from_millis(v[3].max(0) as u64);
                if granted != 1 {
                    // More tokens to spend locally, or a refusal to remember until budget frees.
                    let until = if granted > 0 { now + valid } else { reset_at };
                    let lease = Lease {
                        // One of the granted tokens is this request's.
                        tokens: AtomicI64::new(granted - 1),
                        counted,
                        until,
                        refused: granted == 0,
                        reset_at,
                    };
                    self.leases
                        .insert((limit.tier, identity.to_owned()), Arc::new(lease));
                }
                Decision {
                    allowed: granted > 0,
                    limit,
                    remaining: (limit.limit.saturating_sub(counted))
                        .saturating_add(u32::try_from((granted - 1).max(0)).unwrap_or(0)),
                    reset_secs: (v[2].max(0) as u64).div_ceil(1000).max(1),
                    local: false,
                }
            }
            _ => {
                metrics::counter!("ratelimit_fail_open_total", "tier" => limit.name).increment(1);
                self.check_local(limit, identity)
            }
        };
        let outcome = if decision.allowed {
            "allowed"
        } else {
            "limited"
        };
        metrics::counter!("ratelimit_decisions_total", "tier" => limit.name, "outcome" => outcome)
            .increment(1);
        decision
    }

    /// The per-process safety net, used only while Redis is unavailable.
    fn check_local(&self, limit: TierLimit, identity: &str) -> Decision {
        let Some(index) = self.tiers.iter().position(|t| t.tier == limit.tier) else {
            return Decision {
                allowed: true,
                limit,
                remaining: limit.limit,
                reset_secs: 1,
                local: true,
            };
        };
        let local = &self.local[index];
        if self.local_checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            local.retain_recent();
        }
        match local.check_key(&identity.to_owned()) {
            Ok(snapshot) => Decision {
                allowed: true,
                limit,
                remaining: snapshot.remaining_burst_capacity(),
                reset_secs: limit.window.as_secs().max(1),
                local: true,
            },
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                    local: true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_overrides() {
        let prod = tier_limits("").unwrap();
        assert_eq!(prod.len(), 4);
        assert_eq!(
            (prod[0].name, prod[0].limit, prod[0].window),
            ("api", 1000, Duration::from_secs(60))
        );
        let t = tier_limits("api=5/2000, ops=2/1000").unwrap();
        assert_eq!((t[0].limit, t[0].window), (5, Duration::from_millis(2000)));
        assert_eq!((t[3].limit, t[3].kind), (2, WindowKind::Fixed));
        assert_eq!(t[1].limit, 600, "untouched tiers keep the table's numbers");
        for bad in ["api", "api=5", "nope=1/1000", "api=0/1000", "api=5/x"] {
            assert!(tier_limits(bad).is_err(), "{bad}");
        }
    }
}
