//! The secret the edge and the origin share (`EDGE_SECRET`), as both sides check it: the current
//! value and, while it is being rotated, one other accepted value (`EDGE_SECRET_PREVIOUS`).
//!
//! The comparison takes the same time whatever the guess: it walks the whole of each accepted
//! value (never stopping at the first differing byte, nor at a length mismatch), so neither the
//! secret's bytes nor its length can be read off response times. Both values are always compared,
//! so which one matched does not show either.
//!
//! The rotation procedure (docs/operations.md, "Rotating EDGE_SECRET") keeps both directions
//! working at every step: each side *accepts* both values and *presents* the one the other side
//! is known to hold.

/// Which of the accepted values a presented secret matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    Current,
    /// The value being rotated out (or in): accepted, and worth counting, so an operator sees
    /// when nothing presents it any more.
    Previous,
}

/// The accepted values. Never printed (`Debug` hides them).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret {
    current: String,
    previous: Option<String>,
}

impl core::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// The example in `.dev.vars.example` (local runs): published, so both sides refuse it outside a
/// local run.
pub const EXAMPLE: &str = "dev-only-edge-secret-change-me";

/// Shortest value either side accepts.
pub const MIN_LEN: usize = 16;

impl SharedSecret {
    /// `current` and an optional `previous`; each at least [`MIN_LEN`] bytes, and not equal.
    pub fn new(current: String, previous: Option<String>) -> Result<SharedSecret, &'static str> {
        if current.len() < MIN_LEN {
            return Err("must be at least 16 characters");
        }
        if let Some(p) = &previous {
            if p.len() < MIN_LEN {
                return Err("the previous value must be at least 16 characters");
            }
            if *p == current {
                return Err("the previous value equals the current one");
            }
        }
        Ok(SharedSecret { current, previous })
    }

    pub fn current(&self) -> &str {
        &self.current
    }

    pub fn previous(&self) -> Option<&str> {
        self.previous.as_deref()
    }

    /// Which accepted value `given` is, if any; constant time in the accepted values' lengths.
    pub fn check(&self, given: &[u8]) -> Option<Matched> {
        let current = equal(self.current.as_bytes(), given);
        let previous = self
            .previous
            .as_deref()
            .is_some_and(|p| equal(p.as_bytes(), given));
        if current {
            Some(Matched::Current)
        } else if previous {
            Some(Matched::Previous)
        } else {
            None
        }
    }
}

/// Whether `given` equals `secret`, in time that depends only on `secret.len()`.
pub fn equal(secret: &[u8], given: &[u8]) -> bool {
    // Any length difference poisons the result; the loop still runs over the whole secret.
    let mut diff = u8::from(secret.len() != given.len());
    for (i, s) in secret.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!*s);
        diff |= core::hint::black_box(s ^ g);
    }
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_is_equality() {
        assert!(equal(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!equal(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!equal(b"0123456789abcdef", b"0123456789abcde"), "a prefix");
        assert!(!equal(b"0123456789abcdef", b"0123456789abcdef0"), "longer");
        assert!(!equal(b"0123456789abcdef", b""));
        // A guess whose missing tail would be zero bytes is still wrong.
        assert!(!equal(b"ab\0\0", b"ab"));
    }

    #[test]
    fn both_values_are_accepted_and_told_apart() {
        let s = SharedSecret::new(
            "new-secret-value-0001".into(),
            Some("old-secret-value-0001".into()),
        )
        .unwrap();
        assert_eq!(s.check(b"new-secret-value-0001"), Some(Matched::Current));
        assert_eq!(s.check(b"old-secret-value-0001"), Some(Matched::Previous));
        assert_eq!(s.check(b"neither-value-000001"), None);
        let only = SharedSecret::new("new-secret-value-0001".into(), None).unwrap();
        assert_eq!(only.check(b"old-secret-value-0001"), None);
    }

    #[test]
    fn short_or_duplicate_values_are_refused_and_never_printed() {
        assert!(SharedSecret::new("short".into(), None).is_err());
        assert!(SharedSecret::new("0123456789abcdef".into(), Some("short".into())).is_err());
        assert!(
            SharedSecret::new("0123456789abcdef".into(), Some("0123456789abcdef".into())).is_err()
        );
        let s = SharedSecret::new("0123456789abcdef".into(), None).unwrap();
        assert!(!format!("{s:?}").contains("0123"));
    }
}
