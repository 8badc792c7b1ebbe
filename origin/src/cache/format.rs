//! The format of a value in Redis, versioned, so that replicas of two releases (a rolling deploy,
//! a rollback) never misread each other's values:
//!
//! - **v1** (written by this release): `0x01`, the moment the value expires as 16 lowercase hex
//!   digits of Unix milliseconds, then the payload (the answer's JSON body, or `null` for a known
//!   absence). The expiry in the value is what refresh ahead needs, so a read is one `GET`
//!   instead of `GET` + `PTTL` (#37). ASCII throughout: any tool can print it.
//! - **v0** (written before versions existed): the bare payload, which always starts with `{`,
//!   `[` or `null`. Still read, as a value whose expiry is unknown (never refreshed ahead: it
//!   simply expires), so values written by the previous release keep serving during a deploy.
//! - **anything else** is a format from a later release: never served (its bytes could mean
//!   anything to this code). The read is a miss: the value is loaded from PostgreSQL and served,
//!   and not written back over the newer one.
//!
//! The rule for a later format: give it the next tag, and teach the release before it to read it
//! (or, at least, as this one does, to treat it as a miss).

use bytes::Bytes;

/// This release's tag.
pub const VERSION: u8 = 1;
/// Tag + 16 hex digits.
pub const HEADER: usize = 17;

/// What a stored value is to this release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A payload this release reads, and when it expires (unknown for v0).
    Readable {
        payload: Bytes,
        expires_at_ms: Option<u64>,
    },
    /// A later release's format: not for this binary.
    Newer,
}

/// `payload` in this release's format, expiring `ttl_secs` after `now_ms`.
pub fn encode(payload: &[u8], ttl_secs: u32, now_ms: u64) -> Bytes {
    let expires = now_ms.saturating_add(u64::from(ttl_secs) * 1000);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(VERSION);
    for shift in (0..16).rev() {
        out.push(b"0123456789abcdef"[((expires >> (shift * 4)) & 0xf) as usize]);
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// What `bytes` (as read from Redis) holds.
pub fn decode(bytes: Bytes) -> Stored {
    match bytes.first() {
        Some(&VERSION) if bytes.len() >= HEADER => {
            let mut expires = 0u64;
            for &c in &bytes[1..HEADER] {
                let digit = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => return Stored::Newer,
                };
                expires = (expires << 4) | u64::from(digit);
            }
            Stored::Readable {
                payload: bytes.slice(HEADER..),
                expires_at_ms: Some(expires),
            }
        }
        Some(b'{' | b'[' | b'n') => Stored::Readable {
            payload: bytes,
            expires_at_ms: None,
        },
        _ => Stored::Newer,
    }
}

/// Milliseconds since the Unix epoch (the clock every replica writes expiries in).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_reads_back_with_its_expiry() {
        let body = br#"{"price_cents":370}"#;
        let stored = encode(body, 60, 1_765_000_000_123);
        assert_eq!(stored[0], 1);
        assert!(stored.is_ascii(), "{stored:?}");
        assert_eq!(
            decode(stored),
            Stored::Readable {
                payload: Bytes::from_static(body),
                expires_at_ms: Some(1_765_000_060_123)
            }
        );
    }

    #[test]
    fn the_previous_release_s_values_are_read_without_an_expiry() {
        for old in [&br#"{"a":1}"#[..], b"[1,2]", b"null"] {
            assert_eq!(
                decode(Bytes::copy_from_slice(old)),
                Stored::Readable {
                    payload: Bytes::copy_from_slice(old),
                    expires_at_ms: None
                }
            );
        }
    }

    #[test]
    fn a_later_release_s_values_are_never_read() {
        let mut later = encode(b"{}", 60, 0).to_vec();
        later[0] = VERSION + 1;
        assert_eq!(decode(Bytes::from(later)), Stored::Newer);
        for odd in [
            &b""[..],
            b"\x01abc",
            b"\x01zzzzzzzzzzzzzzzz{}",
            b"<html>",
            b"\x00",
        ] {
            assert_eq!(
                decode(Bytes::copy_from_slice(odd)),
                Stored::Newer,
                "{odd:?}"
            );
        }
    }
}
