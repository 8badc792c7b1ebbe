//! Passwords: argon2id with a random salt per hash, at OWASP's "7 MiB, 5 iterations" setting
//! (one of its equivalent minimums; the 19 MiB one costs the same time but nearly three times the
//! memory per sign-in). Hashing is deliberately slow, so it runs on the blocking pool, each hash
//! holding a [`Slot`] of [`super::hashing::Hashing`] (one per core, shared fairly between
//! clients): a flood of sign-ins queues, within bounds, instead of allocating memory without
//! bound or starving the rest of the service of threads. The slot travels into the blocking task
//! and is given back when the hash is done, not when the request is.
//! Verification reads the parameters from the stored hash, so older hashes still verify.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use std::sync::OnceLock;

use super::hashing::Slot;

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

/// Hashes `password`, holding `slot` while it does.
pub async fn hash(password: String, slot: Slot) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        hash_now(&password)
    })
    .await
    .map_err(|e| PasswordError::Hashing(format!("hashing task failed: {e}")))?
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// A real argon2 hash of nothing in particular, made once per process, so a sign-in for an
/// unknown email costs the same verification work as one for a known email.
fn dummy() -> Result<String, PasswordError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let h = hash_now("not-a-real-password-for-timing")?;
    Ok(DUMMY.get_or_init(|| h).clone())
}

/// Checks `password` against a stored hash (`None`: no such account, checked against a dummy
/// hash for the same work), holding `slot` while it does.
pub async fn verify(
    password: String,
    stored: Option<String>,
    slot: Slot,
) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let stored = match stored {
            Some(stored) => stored,
            None => dummy()?,
        };
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
        let hashing = super::super::hashing::Hashing::new(1);
        let slot = || hashing.slot([127, 0, 0, 1].into(), std::time::Duration::from_secs(30));
        let h = hash("correct horse battery".into(), slot().await.unwrap())
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        let right = verify(
            "correct horse battery".into(),
            Some(h.clone()),
            slot().await.unwrap(),
        );
        assert!(right.await.unwrap());
        let wrong = verify("wrong horse battery".into(), Some(h), slot().await.unwrap());
        assert!(!wrong.await.unwrap());
        let nobody = verify("correct horse battery".into(), None, slot().await.unwrap());
        assert!(
            !nobody.await.unwrap(),
            "no account: checked against the dummy, never true"
        );
    }
}
