//! Sessions in Redis under `session:{id}` (OWASP ASVS V3):
//!
//! - The token is 256 bits from the OS CSPRNG, hex-encoded, and only the client holds it: the
//!   `{id}` in Redis is its SHA-256 ([`session_id`]), so whoever can read Redis (SCAN, MONITOR, a
//!   replica, an RDB file) finds no token that authenticates. A plain hash suffices (no salt, no
//!   slow hash): the token is 256 random bits, not a guessable password.
//! - Idle timeout: 15 minutes that slide on every authenticated request, in one atomic
//!   `GETEX key EX 900` (never GET then EXPIRE, which could resurrect a session deleted in
//!   between).
//! - Absolute lifetime: `SESSION_MAX_AGE_SECS` (12 h) after sign-in the session ends however
//!   active it is; the session records when it began.
//! - Revocation: each user's session ids are listed in `sessions:user:{userId}` (a sorted set by
//!   sign-in time), so a role change, a password reset or "log out everywhere" ends all of them
//!   ([`Sessions::revoke_all`]).
//! - Bounded: a user holds at most `MAX_SESSIONS_PER_USER` sessions (a new sign-in ends the
//!   oldest), ids past the absolute lifetime leave the index at the next sign-in, and the index
//!   expires one lifetime after the last one — the longest TTL of any key, so `volatile-ttl`
//!   eviction takes it last, after every cache entry and every session it lists.
//!
//! Unlike the catalog, sessions fail closed: if Redis errors or is slow, authenticated requests
//! are refused as unavailable — nobody is let in without a check, and nobody's session is dropped.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::{DataType, keys};

use crate::redis::{Redis, RedisError};

/// Who a session belongs to. (The role is not kept: admin routes read it from PostgreSQL on every
/// request, so a demotion takes effect at once.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub user_id: i64,
}

/// What Redis holds for a session.
#[derive(Serialize, Deserialize)]
struct Stored {
    user_id: i64,
    /// Unix seconds of the sign-in (absent in sessions written before it was recorded: those
    /// count as begun now, so they end by the idle timeout or at most one lifetime later).
    #[serde(default)]
    created_at: Option<u64>,
    /// The sign-in in unix milliseconds: whole seconds would end a session up to a second
    /// early (signed in at x.99, checked at x+lifetime.0). Absent in sessions written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_ms: Option<u64>,
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
    max_age: Duration,
    max_per_user: u32,
}

static LIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("session_list.lua")));
static INDEX: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("session_index.lua")));

/// The id a token is stored under: its SHA-256, hex.
pub fn session_id(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Time since the Unix epoch (zero for a clock set before it).
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

fn now_secs() -> u64 {
    since_epoch().as_secs()
}

/// Only well-formed tokens reach Redis.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Sessions {
    /// `ttl_divisor` divides the policy's 15 minutes (`CACHE_TTL_DIVISOR`, tests only);
    /// `max_age` is the absolute lifetime (`SESSION_MAX_AGE_SECS`); `max_per_user` the live
    /// sessions one user may hold (`MAX_SESSIONS_PER_USER`).
    pub fn new(redis: Redis, ttl_divisor: u32, max_age: Duration, max_per_user: u32) -> Self {
        let ttl_secs = DataType::Session
            .policy()
            .scaled_down(ttl_divisor)
            .redis_ttl;
        Sessions {
            redis,
            ttl_secs,
            max_age,
            max_per_user: max_per_user.max(1),
        }
    }

    /// Idle timeout, seconds.
    pub fn ttl_secs(&self) -> u32 {
        self.ttl_secs
    }

    /// Absolute lifetime, seconds.
    pub fn max_age_secs(&self) -> u64 {
        self.max_age.as_secs()
    }

    pub async fn create(&self, user: SessionUser) -> Result<String, SessionError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SessionError::Randomness(e.to_string()))?;
        let token = hex(&bytes);
        let id = session_id(&token);
        let stored = Stored {
            user_id: user.user_id,
            created_at: Some(now_secs()),
            created_ms: Some(now_ms()),
        };
        let value = serde_json::to_vec(&stored).unwrap_or_default();
        // Listed first: a session that exists is always revocable.
        let index = keys::user_sessions(user.user_id);
        let max_age = self.max_age.as_secs().max(1);
        let now_micros = since_epoch().as_micros() as u64;
        let args = (&id, now_micros, max_age, self.max_per_user);
        let evicted: Vec<String> = self
            .redis
            .eval("session_list", &LIST, &[&index], args)
            .await?;
        self.redis
            .set_new("session_set", &keys::session(&id), &value, self.ttl_secs)
            .await?;
        if !evicted.is_empty() {
            // The oldest beyond the cap end now (already unlisted by the script).
            let doomed: Vec<String> = evicted.iter().map(|id| keys::session(id)).collect();
            self.redis.delete("session_evict", &doomed).await?;
        }
        Ok(token)
    }

    /// The session's user, sliding its expiry; `None` if unknown, idle too long or past its
    /// absolute lifetime.
    pub async fn touch(&self, token: &str) -> Result<Option<SessionUser>, SessionError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let id = session_id(token);
        let value = self
            .redis
            .get_and_expire("session_getex", &keys::session(&id), self.ttl_secs)
            .await?;
        let Some(stored) = value.and_then(|v| serde_json::from_slice::<Stored>(&v).ok()) else {
            return Ok(None);
        };
        let age_ms = match (stored.created_ms, stored.created_at) {
            (Some(ms), _) => now_ms().saturating_sub(ms),
            (None, Some(secs)) => now_secs().saturating_sub(secs).saturating_mul(1000),
            (None, None) => 0,
        };
        if u128::from(age_ms) >= self.max_age.as_millis() {
            self.end(&id, stored.user_id).await?;
            return Ok(None);
        }
        Ok(Some(SessionUser {
            user_id: stored.user_id,
        }))
    }

    /// Ends the session of `token` (nothing happens for an unknown one).
    /// Ends the session `token` names; whether there was a live one.
    pub async fn delete(&self, token: &str) -> Result<bool, SessionError> {
        if !well_formed(token) {
            return Ok(false);
        }
        let id = session_id(token);
        let value = self.redis.get(&keys::session(&id)).await?;
        match value.and_then(|v| serde_json::from_slice::<Stored>(&v).ok()) {
            Some(stored) => self.end(&id, stored.user_id).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Ends every session of a user ("log out everywhere", a role change, a password reset).
    /// Returns how many there were.
    pub async fn revoke_all(&self, user_id: i64) -> Result<usize, SessionError> {
        let index = keys::user_sessions(user_id);
        let ids: Vec<String> = self
            .redis
            .eval("session_index", &INDEX, &[&index], "members")
            .await?;
        let mut doomed: Vec<String> = ids.iter().map(|id| keys::session(id)).collect();
        doomed.push(index);
        self.redis.delete("session_revoke", &doomed).await?;
        Ok(ids.len())
    }

    async fn end(&self, id: &str, user_id: i64) -> Result<(), SessionError> {
        let index = keys::user_sessions(user_id);
        let (index_keys, session_keys) = ([index.as_str()], [keys::session(id)]);
        let unlist = self
            .redis
            .eval::<i64>("session_index", &INDEX, &index_keys, ("remove", id));
        let delete = self.redis.delete("session_del", &session_keys);
        tokio::try_join!(delete, unlist)?;
        Ok(())
    }
}
