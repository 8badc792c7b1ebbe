//! Sessions in Redis under `session:{id}`: 15 minutes that slide on every authenticated request,
//! in one atomic `GETEX key EX 900` (never GET then EXPIRE, which could resurrect a session
//! deleted in between). The token is 256 bits from the OS CSPRNG, hex-encoded, and only the
//! client holds it: the `{id}` in Redis is its SHA-256 ([`session_id`]), so whoever can read
//! Redis (SCAN, MONITOR, a replica, an RDB file) finds no token that authenticates. A plain hash
//! suffices (no salt, no slow hash): the token is 256 random bits, not a guessable password.
//!
//! Unlike the catalog, sessions fail closed: if Redis errors or is slow, authenticated requests
//! are refused as unavailable — nobody is let in without a check, and nobody's session is dropped.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::{DataType, keys};

use crate::redis::{Redis, RedisError};

/// What a session holds. (The role is not kept: admin routes read it from PostgreSQL on every
/// request, so a demotion takes effect at once.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub user_id: i64,
}

const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session store did not answer: refuse, never guess.
    #[error("session store: {0}")]
    Unavailable(#[from] RedisError),
    #[error("no randomness for a session token: {0}")]
    Randomness(String),
}

#[derive(Clone)]
pub struct Sessions {
    redis: Redis,
    ttl_secs: u32,
}

/// The id a token is stored under: its SHA-256, hex.
pub fn session_id(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Only well-formed tokens reach Redis.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Sessions {
    /// `ttl_divisor` divides the policy's 15 minutes (`CACHE_TTL_DIVISOR`, tests only).
    pub fn new(redis: Redis, ttl_divisor: u32) -> Self {
        let ttl_secs = DataType::Session
            .policy()
            .scaled_down(ttl_divisor)
            .redis_ttl;
        Sessions { redis, ttl_secs }
    }

    pub fn ttl_secs(&self) -> u32 {
        self.ttl_secs
    }

    pub async fn create(&self, user: SessionUser) -> Result<String, SessionError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SessionError::Randomness(e.to_string()))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let value = serde_json::to_vec(&user).unwrap_or_default();
        self.redis
            .set_new(
                "session_set",
                &keys::session(&session_id(&token)),
                &value,
                self.ttl_secs,
            )
            .await?;
        Ok(token)
    }

    /// The session's user, sliding its expiry; `None` if unknown or expired.
    pub async fn touch(&self, token: &str) -> Result<Option<SessionUser>, SessionError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let value = self
            .redis
            .get_and_expire(
                "session_getex",
                &keys::session(&session_id(token)),
                self.ttl_secs,
            )
            .await?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    pub async fn delete(&self, token: &str) -> Result<(), SessionError> {
        if !well_formed(token) {
            return Ok(());
        }
        self.redis
            .delete("session_del", &[keys::session(&session_id(token))])
            .await?;
        Ok(())
    }
}
