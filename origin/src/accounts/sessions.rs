//! Sessions in Redis under `session:{id}`: 15 minutes that slide on every authenticated request,
//! in one atomic `GETEX key EX 900` (never GET then EXPIRE, which could resurrect a session
//! deleted in between). The id is 256 bits from the OS CSPRNG, hex-encoded.
//!
//! Unlike the catalog, sessions fail closed: if Redis errors or is slow, authenticated requests
//! get 503 — nobody is let in without a check, and nobody's session is dropped.

use serde::{Deserialize, Serialize};
use shared::{DataType, keys};

use crate::cache::Cache;
use crate::db::accounts::Role;
use crate::error::ApiError;

/// What a session holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub user_id: i64,
    pub role: Role,
}

const TOKEN_BYTES: usize = 32;

#[derive(Clone)]
pub struct Sessions {
    cache: Cache,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("session store: {e}"))
}

/// Only well-formed tokens reach Redis.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Sessions {
    pub fn new(cache: Cache) -> Self {
        Sessions { cache }
    }

    pub fn ttl_secs(&self) -> u32 {
        self.cache.ttl(DataType::Session)
    }

    pub async fn create(&self, user: SessionUser) -> Result<String, ApiError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let value = serde_json::to_string(&user)?;
        let key = self.cache.key(&keys::session(&token));
        let ttl = self.ttl_secs();
        let mut conn = self.cache.connection();
        self.cache
            .bounded("session_set", async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(ttl)
                    .arg("NX")
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .map_err(unavailable)?;
        Ok(token)
    }

    /// The session's user, sliding its expiry; `None` if unknown or expired.
    pub async fn touch(&self, token: &str) -> Result<Option<SessionUser>, ApiError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let key = self.cache.key(&keys::session(token));
        let ttl = self.ttl_secs();
        let mut conn = self.cache.connection();
        let value: Option<String> = self
            .cache
            .bounded("session_getex", async move {
                redis::cmd("GETEX")
                    .arg(key)
                    .arg("EX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await
            })
            .await
            .map_err(unavailable)?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    pub async fn delete(&self, token: &str) -> Result<(), ApiError> {
        if !well_formed(token) {
            return Ok(());
        }
        let key = self.cache.key(&keys::session(token));
        let mut conn = self.cache.connection();
        self.cache
            .bounded("session_del", async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .map_err(unavailable)
    }
}
