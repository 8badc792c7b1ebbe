//! Header decisions: what a client sees on a catalog answer, what an entry is stored with, and
//! which origin responses may be stored at all.

use shared::CachePolicy;
use shared::headers::X_CACHE;

/// The time an entry was stored, in ms since the epoch, kept on the stored copy.
pub const STORED_AT: &str = "X-Edge-Stored-At";
/// The entry's cache tags, read back by the worker for its own purges.
pub const TAGS: &str = "X-Edge-Tags";
/// The same tags for Cloudflare's purge by tag (a zone's cache reads this header).
pub const CACHE_TAG: &str = "Cache-Tag";

/// What happened, in `X-Cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// Headers of a catalog answer to a client (before CORS).
pub fn client_headers(
    policy: &CachePolicy,
    etag: &str,
    status: CacheStatus,
    age_secs: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_owned()),
        ("Cache-Control", policy.cache_control()),
        ("ETag", etag.to_owned()),
        ("Age", age_secs.to_string()),
        (X_CACHE, status.as_str().to_owned()),
        ("Vary", "Origin".to_owned()),
    ]
}

/// Headers of the copy put in the edge cache: kept by the Cache API for the policy's whole
/// retention (fresh + the longer stale window), with the time of storing.
pub fn stored_headers(
    policy: &CachePolicy,
    etag: &str,
    now_ms: u64,
    tags: &[String],
) -> Vec<(&'static str, String)> {
    let tags = shared::tags::header_value(tags);
    vec![
        (TAGS, tags.clone()),
        (CACHE_TAG, tags),
        ("Content-Type", "application/json".to_owned()),
        (
            "Cache-Control",
            format!("public, max-age={}", policy.edge_retention()),
        ),
        ("ETag", etag.to_owned()),
        (STORED_AT, now_ms.to_string()),
    ]
}

/// The tags of a stored copy, from its [`TAGS`] header.
pub fn parse_tags(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether an origin answer may go into the shared edge cache: a 200 that is not personal.
pub fn storable(status: u16, cache_control: Option<&str>, has_set_cookie: bool) -> bool {
    if status != 200 || has_set_cookie {
        return false;
    }
    let cc = cache_control.unwrap_or("").to_ascii_lowercase();
    let forbidden = ["private", "no-store", "no-cache"];
    cc.contains("public") && !forbidden.iter().any(|f| cc.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::DataType;

    #[test]
    fn client_headers_follow_the_policy() {
        let p = DataType::Prices.policy();
        let h = client_headers(&p, "\"abc\"", CacheStatus::Stale, 42);
        assert!(h.contains(&("Cache-Control", p.cache_control())));
        assert!(h.contains(&(X_CACHE, "STALE".to_owned())));
        assert!(h.contains(&("Age", "42".to_owned())));
        let s = stored_headers(
            &p,
            "\"abc\"",
            1234,
            &["catalog".to_owned(), "prices:p:c".to_owned()],
        );
        assert!(s.contains(&(TAGS, "catalog,prices:p:c".to_owned())));
        assert!(s.contains(&(CACHE_TAG, "catalog,prices:p:c".to_owned())));
        assert!(s.contains(&("Cache-Control", "public, max-age=630".to_owned())));
        assert!(s.contains(&(STORED_AT, "1234".to_owned())));
    }

    #[test]
    fn only_public_200s_without_cookies_are_stored() {
        let public = Some("public, max-age=15, s-maxage=30");
        assert!(storable(200, public, false));
        assert!(!storable(200, public, true), "Set-Cookie");
        assert!(!storable(404, public, false));
        assert!(!storable(200, Some("private, no-store"), false));
        assert!(!storable(200, Some("public, no-cache"), false));
        assert!(!storable(200, None, false));
    }
}
