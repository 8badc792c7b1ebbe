//! The per-account failed-sign-in throttle (OWASP ASVS 2.2.1): after `LOGIN_MAX_FAILURES` wrong
//! passwords for one email within 15 minutes, from anywhere, sign-ins for that email are refused
//! (429, before any hashing) until the window ends. The per-address limit stops one address from
//! guessing; this stops many addresses (credential stuffing) from guessing one account.
//!
//! It throttles, it does not lock: the window ends by itself, a correct sign-in clears the count,
//! and the email is kept only as a hash. Someone can still keep a victim's sign-in refused by
//! failing for them; that is the accepted price of stopping distributed guessing, bounded by the
//! window. If Redis cannot answer, the throttle steps aside (the address limit still holds).

use sha2::{Digest, Sha256};
use shared::keys;

use crate::redis::Redis;

/// How long failures are remembered.
pub const WINDOW_SECS: u64 = 15 * 60;

#[derive(Clone)]
pub struct LoginThrottle {
    redis: Redis,
    max_failures: u64,
}

fn key(email: &str) -> String {
    let digest = Sha256::digest(email.as_bytes());
    let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    keys::login_failures(&id)
}

impl LoginThrottle {
    pub fn new(redis: Redis, max_failures: u64) -> Self {
        LoginThrottle {
            redis,
            max_failures,
        }
    }

    /// `Some(seconds)` to wait when this account has failed too often.
    pub async fn refused_for(&self, email: &str) -> Option<u64> {
        match self.redis.counter("login_throttle", &key(email)).await {
            Ok(Some((failures, ttl))) if failures >= self.max_failures => {
                Some(u64::try_from(ttl).unwrap_or(1).max(1))
            }
            _ => None,
        }
    }

    pub async fn failed(&self, email: &str) {
        let _ = self
            .redis
            .count_up("login_throttle", &key(email), WINDOW_SECS)
            .await;
    }

    pub async fn succeeded(&self, email: &str) {
        let _ = self.redis.delete("login_throttle", &[key(email)]).await;
    }
}
