//! Rate-limit tiers over Redis (the guide's section 3): one atomic Lua script per check
//! (EVALSHA through `redis::Script`, which reloads on NOSCRIPT), never read-then-write from Rust.
//!
//! **Sliding tiers** (API, Auth, Admin) use a sliding window over sub-window buckets
//! (`sliding.lua`): one hash per identity with at most `SLIDING_BUCKETS + 1` fields, so memory per
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
//! Concurrent requests of one identity share one lease (an async mutex per identity), so a
//! burst costs one round trip per lease, not one per request; and after a failed round trip the
//! identity's checks go straight to the safety net for half a second instead of each waiting
//! out the Redis timeout.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use shared::keys;
use shared::ratelimit::{Tier, WindowKind};

use crate::config::TierLimit;
use crate::meters;
use crate::redis::Redis;

static SLIDING: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("sliding.lua")));
static FIXED: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("fixed.lua")));

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

/// What this origin holds for one identity in one tier: leased tokens, or a remembered
/// refusal, or a note that Redis just failed.
#[derive(Default)]
struct LeaseState {
    /// Unused leased tokens.
    tokens: u32,
    /// Requests counted in Redis when the lease was granted.
    counted: u32,
    /// End of the bucket the tokens were counted in, or of the refusal.
    until: Option<Instant>,
    refused: bool,
    reset_at: Option<Instant>,
    /// Redis failed for this identity recently: decide locally until then without waiting on it.
    redis_retry_at: Option<Instant>,
}

/// One identity's lease: the state behind a plain mutex, held only to take a token (no await
/// under it, so the common case never queues behind a round trip), and an async one that lets
/// one request at a time fetch a new lease, so concurrent requests of one identity share one
/// lease instead of each leasing their own.
#[derive(Default)]
struct Slot {
    state: std::sync::Mutex<LeaseState>,
    refill: tokio::sync::Mutex<()>,
}

/// How long after a failed Redis check an identity's checks go straight to the safety net.
const REDIS_RETRY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Limiter {
    redis: Redis,
    tiers: Arc<Vec<TierLimit>>,
    local: Arc<Vec<Local>>,
    local_checks: Arc<AtomicU64>,
    /// Per tier (in `Tier::ALL` order), by identity: looked up by `&str`, so a request with a
    /// lease allocates nothing here.
    leases: Arc<Vec<moka::sync::Cache<String, Arc<Slot>>>>,
    enabled: bool,
}

impl Limiter {
    pub fn new(redis: Redis, tiers: Vec<TierLimit>) -> Self {
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
            redis,
            tiers: Arc::new(tiers),
            local: Arc::new(local),
            local_checks: Arc::new(AtomicU64::new(0)),
            leases: Arc::new(
                Tier::ALL
                    .iter()
                    .map(|_| {
                        moka::sync::Cache::builder()
                            .max_capacity(100_000)
                            .time_to_live(longest)
                            .build()
                    })
                    .collect(),
            ),
            enabled: true,
        }
    }

    /// A limiter that admits everything (`RATE_LIMIT=off`, to measure its cost).
    pub fn disabled(redis: Redis, tiers: Vec<TierLimit>) -> Self {
        Limiter {
            enabled: false,
            ..Limiter::new(redis, tiers)
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
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
        self.check_shared(tier, identity, 1).await
    }

    /// [`check`](Self::check) for an identity `times` clients share (an IPv6 /48 holds four
    /// /64s' budget): the tier's limit times `times`.
    pub async fn check_shared(&self, tier: Tier, identity: &str, times: u32) -> Decision {
        let mut limit = self.tier(tier);
        limit.limit = limit.limit.saturating_mul(times.max(1));
        let decision = self.decide(limit, identity).await;
        meters::decision_counter(tier, decision.allowed).increment(1);
        decision
    }

    /// [`check_shared`](Self::check_shared) answered from this replica's lease alone, without
    /// waiting on anything: `None` when `identity` holds no lease with a token left (then
    /// `check_shared` asks Redis). The hit path's common case, kept out of any future.
    pub fn check_leased(&self, tier: Tier, identity: &str, times: u32) -> Option<Decision> {
        let mut limit = self.tier(tier);
        limit.limit = limit.limit.saturating_mul(times.max(1));
        let index = Tier::ALL.iter().position(|t| *t == tier).unwrap_or(0);
        let slot = self.leases[index].get(identity)?;
        let decision = from_lease(&slot, limit)?;
        meters::decision_counter(tier, decision.allowed).increment(1);
        Some(decision)
    }

    async fn decide(&self, limit: TierLimit, identity: &str) -> Decision {
        let tier = Tier::ALL.iter().position(|t| *t == limit.tier).unwrap_or(0);
        let slot = self.leases[tier].get_with_by_ref(identity, Default::default);
        if let Some(decision) = from_lease(&slot, limit) {
            return decision;
        }
        let _refilling = slot.refill.lock().await;
        // Whoever held the refill lock before may have just leased enough for this one too.
        if let Some(decision) = from_lease(&slot, limit) {
            return decision;
        }
        let now = Instant::now();
        // 2. Redis failed a moment ago: straight to the safety net.
        let retry_at = lock(&slot).redis_retry_at;
        if retry_at.is_some_and(|t| now < t) {
            return self.fail_open(limit, identity);
        }
        // 3. One round trip for a new lease.
        let key = keys::ratelimit(limit.name, identity);
        let window_ms = limit.window.as_millis() as u64;
        let lease_size = limit.lease_size();
        let outcome: Result<Vec<i64>, _> = match limit.kind {
            WindowKind::Sliding => {
                let args = (limit.limit, window_ms, limit.bucket_ms(), lease_size);
                self.redis.eval("ratelimit", &SLIDING, &[&key], args).await
            }
            WindowKind::Fixed => {
                let args = (limit.limit, window_ms, lease_size);
                self.redis.eval("ratelimit", &FIXED, &[&key], args).await
            }
        };
        let mut state = lock(&slot);
        match outcome {
            Ok(v) if v.len() == 4 => {
                let granted = u32::try_from(v[0].max(0)).unwrap_or(0);
                let now = Instant::now();
                let reset_at = now + Duration::from_millis(v[2].max(0) as u64);
                let valid = now + Duration::from_millis(v[3].max(0) as u64);
                state.counted = u32::try_from(v[1].max(0)).unwrap_or(u32::MAX);
                state.refused = granted == 0;
                // One granted token is this request's; a refusal stands until budget frees.
                state.tokens = granted.saturating_sub(1);
                state.until = Some(if granted > 0 { valid } else { reset_at });
                state.reset_at = Some(reset_at);
                state.redis_retry_at = None;
                let admitted = state.counted.saturating_sub(state.tokens);
                Decision {
                    allowed: granted > 0,
                    limit,
                    remaining: limit.limit.saturating_sub(admitted),
                    reset_secs: (v[2].max(0) as u64).div_ceil(1000).max(1),
                    local: false,
                }
            }
            _ => {
                state.redis_retry_at = Some(now + REDIS_RETRY);
                state.until = None;
                drop(state);
                self.fail_open(limit, identity)
            }
        }
    }

    fn fail_open(&self, limit: TierLimit, identity: &str) -> Decision {
        meters::ratelimit_fail_open(limit.name);
        self.check_local(limit, identity)
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

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, LeaseState> {
    slot.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// 1. The lease (or refusal) this origin already holds, if it decides this request.
fn from_lease(slot: &Slot, limit: TierLimit) -> Option<Decision> {
    let mut state = lock(slot);
    let now = Instant::now();
    if state.until.is_none_or(|until| now >= until) {
        return None;
    }
    let reset_secs = secs_until(state.reset_at, now);
    if state.refused {
        return Some(Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset_secs,
            local: false,
        });
    }
    if state.tokens == 0 {
        return None;
    }
    state.tokens -= 1;
    let admitted = state.counted.saturating_sub(state.tokens);
    Some(Decision {
        allowed: true,
        limit,
        remaining: limit.limit.saturating_sub(admitted),
        reset_secs,
        local: false,
    })
}

/// Whole seconds (at least 1) from `now` until `at`.
fn secs_until(at: Option<Instant>, now: Instant) -> u64 {
    at.map_or(1, |at| {
        at.saturating_duration_since(now)
            .as_millis()
            .div_ceil(1000)
            .max(1) as u64
    })
}
