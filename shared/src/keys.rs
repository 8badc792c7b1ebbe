//! Redis key builders: the guide's key patterns, and every other Redis name the system uses,
//! spelled in exactly one place.
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
//! Beside them: each user's set of session ids (`sessions:user:{userId}`, the absolute session
//! lifetime), the fleet fill lock of a cache key (`{<key>}:lock`, a hash tag, 2 s), the rate-limit state of
//! an identity (`ratelimit:{tier}:{identity}`, one window) and the invalidation channel
//! (`cache:invalidate`). Codes are [`Slug`]s, so a key segment can never contain `:` and two
//! keys never collide.

use std::fmt::{self, Write};

use crate::policy::DataType;
use crate::product::Product;
use crate::slug::Slug;

pub fn providers() -> String {
    PROVIDERS.to_owned()
}

const PROVIDERS: &str = "cache:providers";

pub fn countries(provider: &Slug) -> String {
    built(|out| write_countries(out, provider.as_str()))
}

pub fn services(provider: &Slug) -> String {
    built(|out| write_services(out, provider.as_str()))
}

pub fn price(product: &Product) -> String {
    built(|out| {
        write_price(
            out,
            product.provider.as_str(),
            product.country.as_str(),
            product.service.as_str(),
        )
    })
}

/// The key `write` spells, allocated once at its length: written first into a count, then into
/// a `String` of that capacity (a key grown piece by piece reallocated two or three times, on
/// every read that misses L1).
pub(crate) fn built(write: impl Fn(&mut dyn Write) -> fmt::Result) -> String {
    struct Count(usize);
    impl Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = write(&mut count);
    let mut key = String::with_capacity(count.0);
    // Writing to a String cannot fail.
    let _ = write(&mut key);
    key
}

/// The catalog keys written into any buffer (the origin's hit path writes them on the stack).
/// The `String` builders above go through these, so each key is spelled once. Callers pass
/// codes already checked as slugs.
pub fn write_providers(out: &mut (impl Write + ?Sized)) -> fmt::Result {
    out.write_str(PROVIDERS)
}

// Piece by piece with `write_str`, not `write!`: these run on every hit, and `core::fmt`'s
// machinery costs several times the copying.
pub fn write_countries(out: &mut (impl Write + ?Sized), provider: &str) -> fmt::Result {
    out.write_str("cache:countries:")?;
    out.write_str(provider)
}

pub fn write_services(out: &mut (impl Write + ?Sized), provider: &str) -> fmt::Result {
    out.write_str("cache:services:")?;
    out.write_str(provider)
}

pub fn write_price(
    out: &mut (impl Write + ?Sized),
    provider: &str,
    country: &str,
    service: &str,
) -> fmt::Result {
    for part in ["cache:prices:", provider, ":", country, ":", service] {
        out.write_str(part)?;
    }
    Ok(())
}

pub fn balance(user_id: i64) -> String {
    format!("cache:balance:{user_id}")
}

pub fn session(id: &str) -> String {
    format!("session:{id}")
}

/// The ids of every live session of one user (a set), so all of them can be ended at once.
pub fn user_sessions(user_id: i64) -> String {
    format!("sessions:user:{user_id}")
}

/// Failed sign-ins for one account (`id`: a hash of the normalised email) from clients without
/// its device cookie, in a fixed window. A hash tag around the account, so the throttle's script
/// holds it and [`login_client`] in one cluster slot.
pub fn login_account(id: &str) -> String {
    format!("{{login:{id}}}:account")
}

/// Failed sign-ins for one account from one client (`ip:…` or `device:…`), in a fixed window.
pub fn login_client(id: &str, client: &str) -> String {
    format!("{{login:{id}}}:client:{client}")
}

/// A device cookie (`hash`: SHA-256 of its token) and the account it was issued for.
pub fn login_device(hash: &str) -> String {
    format!("login_device:{hash}")
}

/// Sign-up attempts from one address (its rate-limit identity), in a fixed window.
pub fn registrations(identity: &str) -> String {
    format!("registrations:{identity}")
}

/// The fleet-wide fill lock of a cache key: held by the one origin loading it. The key is a hash
/// tag (`{…}`), so on Redis Cluster the lock lives in the key's own slot and one script can hold
/// both.
pub fn fill_lock(key: &str) -> String {
    format!("{{{key}}}:lock")
}

/// The rate-limit state of one identity (`user:42`, `ip:203.0.113.9`) in one tier.
pub fn ratelimit(tier: &str, identity: &str) -> String {
    format!("ratelimit:{tier}:{identity}")
}

/// Pub/sub channel on which mutations announce the keys they made stale, so every origin drops
/// its in-process copies.
pub const INVALIDATION_CHANNEL: &str = "cache:invalidate";

/// The fleet's lock on syncing one provider (one replica per provider per interval).
pub fn sync_lock(provider: &str) -> String {
    format!("sync:lock:{provider}")
}

/// Pattern matching every price key of one provider (for SCAN-based invalidation).
pub fn prices_of_provider_pattern(provider: &Slug) -> String {
    format!("cache:prices:{provider}:*")
}

/// Pattern matching every cached key of one data type (for SCAN-based invalidation); `None` for
/// sessions, which are never dropped wholesale by a cache operation.
pub fn pattern_of(data: DataType) -> Option<String> {
    match data {
        DataType::Providers => Some(providers()),
        DataType::Countries => Some("cache:countries:*".to_owned()),
        DataType::Services => Some("cache:services:*".to_owned()),
        DataType::Prices => Some("cache:prices:*".to_owned()),
        DataType::Balance => Some("cache:balance:*".to_owned()),
        DataType::Session => None,
    }
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
        let product = Product::parse("5sim", "us", "whatsapp").unwrap();
        assert_eq!(price(&product), "cache:prices:5sim:us:whatsapp");
        assert_eq!(balance(42), "cache:balance:42");
        assert_eq!(session("abc"), "session:abc");
        assert_eq!(providers(), "cache:providers");
        assert_eq!(prices_of_provider_pattern(&s("x")), "cache:prices:x:*");
        assert_eq!(fill_lock("cache:providers"), "{cache:providers}:lock");
        assert_eq!(ratelimit("api", "ip:1.2.3.4"), "ratelimit:api:ip:1.2.3.4");
    }

    #[test]
    fn every_pattern_matches_the_keys_it_is_for() {
        let product = Product::parse("5sim", "us", "whatsapp").unwrap();
        let cases = [
            (DataType::Countries, countries(&s("5sim"))),
            (DataType::Services, services(&s("5sim"))),
            (DataType::Prices, price(&product)),
            (DataType::Balance, balance(7)),
            (DataType::Providers, providers()),
        ];
        for (data, key) in cases {
            let pattern = pattern_of(data).unwrap();
            let prefix = pattern.trim_end_matches('*');
            assert!(key.starts_with(prefix), "{pattern} vs {key}");
        }
        assert_eq!(pattern_of(DataType::Session), None);
    }
}
