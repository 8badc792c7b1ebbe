//! Strong entity tags and `If-None-Match` matching (RFC 9110 §8.8.3, §13.1.2).
//!
//! The tag is a 64-bit xxh3 of the exact body bytes: the same bytes always give the same tag on
//! every origin replica and at the edge, and any change of a byte changes it. It is not a
//! security token, only a cache validator.

use xxhash_rust::xxh3::xxh3_64;

/// `"<16 hex digits>"`, quotes included, ready for the `ETag` header. Written by hand: the
/// origin tags every value it reads from Redis, and `format!` was ~1 000 instructions of that
/// read (#26).
pub fn strong_etag(body: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hash = xxh3_64(body);
    let mut tag = [b'"'; 18];
    for (i, slot) in tag[1..17].iter_mut().enumerate() {
        *slot = DIGITS[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Only quotes and hex digits were written.
    String::from_utf8_lossy(&tag).into_owned()
}

/// Whether an `If-None-Match` header value matches `etag`. `If-None-Match` uses the weak
/// comparison, so `W/"x"` matches `"x"`; `*` matches any current representation.
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    let want = opaque(etag);
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || (!candidate.is_empty() && opaque(candidate) == want))
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_quoted_and_body_sensitive() {
        let a = strong_etag(b"{\"a\":1}");
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 18);
        assert_eq!(a, strong_etag(b"{\"a\":1}"));
        assert_ne!(a, strong_etag(b"{\"a\":2}"));
    }

    #[test]
    fn tag_is_the_hash_in_sixteen_hex_digits() {
        // Enough bodies that some hashes open with zero digits (one in sixteen each).
        let mut leading_zero = false;
        for n in 0u32..2000 {
            let body = n.to_le_bytes();
            let reference = format!("\"{:016x}\"", xxh3_64(&body));
            leading_zero |= reference.starts_with("\"0");
            assert_eq!(strong_etag(&body), reference);
        }
        assert!(leading_zero);
    }

    #[test]
    fn matching_follows_the_rfc() {
        let t = strong_etag(b"x");
        assert!(if_none_match_matches(&t, &t));
        assert!(if_none_match_matches(&format!("\"nope\", W/{t}"), &t));
        assert!(if_none_match_matches("*", &t));
        assert!(!if_none_match_matches("\"nope\"", &t));
        assert!(!if_none_match_matches("", &t));
    }
}
