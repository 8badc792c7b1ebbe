//! Strong entity tags and `If-None-Match` matching (RFC 9110 §8.8.3, §13.1.2).
//!
//! The tag is a 64-bit xxh3 of the exact body bytes: the same bytes always give the same tag on
//! every origin replica and at the edge, and any change of a byte changes it. It is not a
//! security token, only a cache validator.

use xxhash_rust::xxh3::xxh3_64;

/// `"<16 hex digits>"`, quotes included, ready for the `ETag` header.
pub fn strong_etag(body: &[u8]) -> String {
    format!("\"{:016x}\"", xxh3_64(body))
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
    fn matching_follows_the_rfc() {
        let t = strong_etag(b"x");
        assert!(if_none_match_matches(&t, &t));
        assert!(if_none_match_matches(&format!("\"nope\", W/{t}"), &t));
        assert!(if_none_match_matches("*", &t));
        assert!(!if_none_match_matches("\"nope\"", &t));
        assert!(!if_none_match_matches("", &t));
    }
}
