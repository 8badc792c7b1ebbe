//! Leases in Redis: work the fleet does on one replica at a time (a provider's sync, the purge
//! sender). A lease is a key holding its owner's token with a TTL; the owner renews it while it
//! works, and a replica that dies frees it within one TTL, when another replica's next attempt
//! takes it. Every change after taking it goes through [`LEASE`], which changes the key only
//! while it is still the caller's: a holder whose lease ran out (paused, partitioned) can never
//! overwrite or release its successor's.

use std::time::Duration;

use crate::redis::{Redis, RedisError};

static LEASE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("lease.lua")));

/// Takes `key` for `owner` for `ttl` if nobody holds it, or renews it if `owner` holds it
/// already (a take whose reply was lost after the `SET` landed: without this the owner would
/// wait out its own lease).
pub async fn take(
    redis: &Redis,
    op: &'static str,
    key: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, RedisError> {
    let secs = ttl.as_secs().max(1) as u32;
    if let Ok(true) = redis.set_new(op, key, owner.as_bytes(), secs).await {
        return Ok(true);
    }
    change(redis, op, key, owner, owner, u64::from(secs) * 1000).await
}

/// Sets `key` to `value` for `ttl_ms` (`""`: deletes it), only while it is `owner`'s. `Ok(false)`:
/// it is no longer ours.
pub async fn change(
    redis: &Redis,
    op: &'static str,
    key: &str,
    owner: &str,
    value: &str,
    ttl_ms: u64,
) -> Result<bool, RedisError> {
    let changed: i64 = redis
        .eval_within(
            op,
            crate::redis::BACKGROUND_TIMEOUT,
            &LEASE,
            &[key],
            (owner, value, ttl_ms.max(1)),
        )
        .await?;
    Ok(changed == 1)
}
