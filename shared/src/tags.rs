//! Cache tags (surrogate keys: Fastly's and Varnish's model, Cloudflare's `Cache-Tag`): every
//! catalog answer names what it depends on, so a change purges exactly the answers it touches
//! in every cache downstream of the origin — the edge, Cloudflare's cache, Next.js's data cache —
//! without knowing their URLs (a bulk read's `services` lists are the client's to choose).
//!
//! | answer | tags |
//! |---|---|
//! | providers | `catalog`, `providers` |
//! | countries of `p` | `catalog`, `provider:p`, `countries:p` |
//! | services of `p` | `catalog`, `provider:p`, `services:p` |
//! | a price of `p` in `c`, single or bulk | `catalog`, `provider:p`, `prices:p:c` |
//!
//! A change names the narrowest tags that cover it ([`for_key`], from the Redis key it
//! invalidates, so the two cannot disagree): a price of `p` in `c` purges `prices:p:c` (every
//! single and bulk price answer of that provider in that country: a bulk answer may hold it), a
//! list its own tag, an operator's wholesale drop `provider:p` or `catalog`. Tags are ASCII and
//! short (codes are [`crate::Slug`]s); Cloudflare takes up to 1 024 characters each.

use crate::route::CatalogRoute;

/// Every catalog answer carries this one: purging it purges the whole catalog.
pub const CATALOG: &str = "catalog";

/// The tags of a catalog answer.
pub fn for_route(route: &CatalogRoute) -> Vec<String> {
    let mut tags = vec![CATALOG.to_owned()];
    match route {
        CatalogRoute::Providers => tags.push("providers".to_owned()),
        CatalogRoute::Countries { provider } => {
            tags.push(format!("provider:{provider}"));
            tags.push(format!("countries:{provider}"));
        }
        CatalogRoute::Services { provider } => {
            tags.push(format!("provider:{provider}"));
            tags.push(format!("services:{provider}"));
        }
        CatalogRoute::Price(p) => {
            tags.push(format!("provider:{}", p.provider));
            tags.push(format!("prices:{}:{}", p.provider, p.country));
        }
        CatalogRoute::BulkPrices {
            provider, country, ..
        } => {
            tags.push(format!("provider:{provider}"));
            tags.push(format!("prices:{provider}:{country}"));
        }
    }
    tags
}

/// The tag to purge when the Redis key `key` (as [`crate::keys`] spells it, without a prefix)
/// is invalidated; `None` for keys no downstream cache holds (balances, sessions).
pub fn for_key(key: &str) -> Option<String> {
    let rest = key.strip_prefix("cache:")?;
    let mut parts = rest.split(':');
    let tag = match (parts.next()?, parts.next(), parts.next(), parts.next()) {
        ("providers", None, None, None) => "providers".to_owned(),
        ("countries", Some(p), None, None) => format!("countries:{p}"),
        ("services", Some(p), None, None) => format!("services:{p}"),
        ("prices", Some(p), Some(c), Some(_)) => format!("prices:{p}:{c}"),
        _ => return None,
    };
    parts.next().is_none().then_some(tag)
}

/// The tag to purge when keys matching the pattern `pattern` ([`crate::keys`]'s patterns) are
/// dropped wholesale: a provider's prices purge the provider, a whole data type the catalog.
pub fn for_pattern(pattern: &str) -> Option<String> {
    if !pattern.contains('*') {
        return for_key(pattern);
    }
    match pattern.strip_prefix("cache:")?.split_once(':')? {
        ("prices", tail) => match tail.split_once(':') {
            Some((provider, "*")) if !provider.contains('*') => {
                Some(format!("provider:{provider}"))
            }
            _ => Some(CATALOG.to_owned()),
        },
        ("countries" | "services", _) => Some(CATALOG.to_owned()),
        _ => None,
    }
}

/// The tags for a set of invalidated keys, each once, in order.
pub fn for_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in keys.into_iter().filter_map(for_key) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// The `Cache-Tag` header value of an answer (Cloudflare: comma-separated).
pub fn header_value(tags: &[String]) -> String {
    tags.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::{Product, Slug};

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    #[test]
    fn every_answer_depends_on_the_tag_its_change_purges() {
        let product = Product::parse("5sim", "ad", "whatsapp").unwrap();
        let p = slug("5sim");
        // (the answer, the key whose invalidation must reach it)
        let cases = [
            (CatalogRoute::Providers, keys::providers()),
            (
                CatalogRoute::Countries {
                    provider: p.clone(),
                },
                keys::countries(&p),
            ),
            (
                CatalogRoute::Services {
                    provider: p.clone(),
                },
                keys::services(&p),
            ),
            (CatalogRoute::Price(product.clone()), keys::price(&product)),
            (
                CatalogRoute::BulkPrices {
                    provider: p.clone(),
                    country: slug("ad"),
                    services: Some(vec![slug("telegram"), slug("whatsapp")]),
                },
                keys::price(&product),
            ),
            (
                CatalogRoute::BulkPrices {
                    provider: p.clone(),
                    country: slug("ad"),
                    services: None,
                },
                keys::price(&product),
            ),
        ];
        for (route, key) in cases {
            let tag = for_key(&key).unwrap();
            assert!(for_route(&route).contains(&tag), "{route:?} misses {tag}");
            assert!(for_route(&route).contains(&CATALOG.to_owned()));
        }
        // And a change reaches no answer it does not touch.
        let other_country = Product::parse("5sim", "af", "whatsapp").unwrap();
        let tag = for_key(&keys::price(&other_country)).unwrap();
        assert!(!for_route(&CatalogRoute::Price(product.clone())).contains(&tag));
        assert!(
            !for_route(&CatalogRoute::Countries {
                provider: p.clone()
            })
            .contains(&tag)
        );
    }

    #[test]
    fn keys_no_cache_downstream_holds_purge_nothing() {
        assert_eq!(for_key(&keys::balance(7)), None);
        assert_eq!(for_key(&keys::session("abc")), None);
        assert_eq!(for_key("cache:prices:5sim:ad"), None);
        assert_eq!(for_key("cache:prices:5sim:ad:wa:extra"), None);
        let p = slug("5sim");
        let keys = [keys::balance(1), keys::countries(&p), keys::countries(&p)];
        assert_eq!(
            for_keys(keys.iter().map(String::as_str)),
            vec!["countries:5sim"]
        );
    }

    #[test]
    fn wholesale_drops_purge_the_provider_or_the_catalog() {
        let p = slug("5sim");
        assert_eq!(
            for_pattern(&keys::prices_of_provider_pattern(&p)).as_deref(),
            Some("provider:5sim")
        );
        for data in [
            crate::DataType::Providers,
            crate::DataType::Countries,
            crate::DataType::Services,
            crate::DataType::Prices,
        ] {
            let pattern = keys::pattern_of(data).unwrap();
            let tag = for_pattern(&pattern).unwrap();
            assert!(tag == CATALOG || tag == "providers", "{pattern} -> {tag}");
        }
        assert_eq!(
            for_pattern(&keys::countries(&p)).as_deref(),
            Some("countries:5sim")
        );
        assert_eq!(
            for_pattern(&keys::pattern_of(crate::DataType::Balance).unwrap()),
            None
        );
    }
}
