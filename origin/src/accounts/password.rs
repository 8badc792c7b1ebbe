//! Passwords: argon2id with a random salt per hash, at OWASP's "7 MiB, 5 iterations" setting
//! (one of its equivalent minimums; the 19 MiB one costs the same time but nearly three times the
//! memory per sign-in). Hashing is deliberately slow, so it runs on the blocking pool — at most
//! one hash per core at a time, so a flood of logins queues instead of allocating memory without
//! bound. The permit travels into the blocking task and is released when the hash is done, not
//! when the request is (a client that hangs up cannot free a slot while its hash still runs), and
//! the wait for a permit is bounded: past it the caller gets [`PasswordError::Busy`] (a 503), so a
//! login flood queues at most that long and never starves the rest of the service of threads.
//! Verification reads the parameters from the stored hash, so older hashes still verify.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Hashing failed: never the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("stored hash unreadable: {0}")]
    Unreadable(String),
    /// Every hashing slot stayed busy for the whole wait: try again shortly.
    #[error("password hashing is saturated")]
    Busy,
}

/// Memory (KiB), iterations, lanes.
const M_COST: u32 = 7 * 1024;
const T_COST: u32 = 5;
const P_COST: u32 = 1;

static HASHING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

/// A hashing slot, waited for at most `wait`.
async fn slot(wait: Duration) -> Result<OwnedSemaphorePermit, PasswordError> {
    match tokio::time::timeout(wait, HASHING.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(closed)) => Err(PasswordError::Hashing(closed.to_string())),
        Err(_) => Err(PasswordError::Busy),
    }
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(M_COST, T_COST, P_COST, None)
        .map_err(|e| PasswordError::Hashing(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub const MIN_LEN: usize = shared::types::PASSWORD_MIN_CHARS;
pub const MAX_LEN: usize = shared::types::PASSWORD_MAX_CHARS;

/// Why a password is refused, or `None` if acceptable.
pub fn weakness(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Some(format!("password must be at least {MIN_LEN} characters"));
    }
    if chars > MAX_LEN {
        return Some(format!("password must be at most {MAX_LEN} characters"));
    }
    let distinct: std::collections::HashSet<char> = password.chars().collect();
    if distinct.len() < 4 {
        return Some("password is too repetitive".into());
    }
    None
}

/// Hashes `password`, waiting at most `wait` for a hashing slot.
pub async fn hash(password: String, wait: Duration) -> Result<String, PasswordError> {
    let permit = slot(wait).await?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let salt = SaltString::generate(&mut OsRng);
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Hashing(format!("hashing task failed: {e}")))?
}

/// Checks `password` against a stored hash, waiting at most `wait` for a hashing slot.
pub async fn verify(
    password: String,
    stored: String,
    wait: Duration,
) -> Result<bool, PasswordError> {
    let permit = slot(wait).await?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let parsed =
            PasswordHash::new(&stored).map_err(|e| PasswordError::Unreadable(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| PasswordError::Hashing(format!("verify task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_named() {
        assert!(weakness("short").is_some());
        assert!(weakness("aaaaaaaaaaaa").is_some());
        assert!(weakness(&"ab1!".repeat(40)).is_some());
        assert!(weakness("correct horse battery").is_none());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash("correct horse battery".into(), Duration::from_secs(30))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        assert!(
            verify(
                "correct horse battery".into(),
                h.clone(),
                Duration::from_secs(30)
            )
            .await
            .unwrap()
        );
        assert!(
            !verify("wrong horse battery".into(), h, Duration::from_secs(30))
                .await
                .unwrap()
        );
    }
}
