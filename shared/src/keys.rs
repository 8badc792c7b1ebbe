//! Redis key builders: the guide's key patterns, spelled in exactly one place.
//!
//! | data | key | TTL (see [`crate::policy`]) |
//! |------|-----|-----|
//! | providers | `cache:providers` | 1 h |
//! | countries | `cache:countries:{provider}` | 1 h |
//! | services | `cache:services:{provider}` | 1 h |
//! | prices | `cache:prices:{provider}:{country}:{service}` | 60 s |
//! | balance | `cache:balance:{userId}` | 30 s |
//! | session | `session:{id}` | 15 min, sliding |
//!
//! Codes are [`Slug`]s, so a key segment can never contain `:` and two keys never collide.

use crate::slug::Slug;

pub fn providers() -> String {
    "cache:providers".to_owned()
}

pub fn countries(provider: &Slug) -> String {
    format!("cache:countries:{provider}")
}

pub fn services(provider: &Slug) -> String {
    format!("cache:services:{provider}")
}

pub fn price(provider: &Slug, country: &Slug, service: &Slug) -> String {
    format!("cache:prices:{provider}:{country}:{service}")
}

/// Pattern matching every price key of one provider (for SCAN-based invalidation).
pub fn prices_of_provider_pattern(provider: &Slug) -> String {
    format!("cache:prices:{provider}:*")
}

pub fn balance(user_id: i64) -> String {
    format!("cache:balance:{user_id}")
}

pub fn session(id: &str) -> String {
    format!("session:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Slug {
        Slug::parse(x).unwrap()
    }

    #[test]
    fn keys_follow_the_guide() {
        assert_eq!(countries(&s("5sim")), "cache:countries:5sim");
        assert_eq!(services(&s("5sim")), "cache:services:5sim");
        assert_eq!(
            price(&s("5sim"), &s("us"), &s("whatsapp")),
            "cache:prices:5sim:us:whatsapp"
        );
        assert_eq!(balance(42), "cache:balance:42");
        assert_eq!(session("abc"), "session:abc");
        assert_eq!(providers(), "cache:providers");
        assert_eq!(prices_of_provider_pattern(&s("x")), "cache:prices:x:*");
    }
}
