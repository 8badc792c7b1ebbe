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
//! | the price of `s` from `p` in `c` | `catalog`, `provider:p`, `prices:p:c`, `price:p:c:s` |
//! | a bulk of named services `s1…sn` (n ≤ [`MAX_PRODUCT_TAGS`]) | `catalog`, `provider:p`, `prices:p:c`, `price:p:c:s1` … `price:p:c:sn` |
//! | a bulk of every service, or of more than that | `catalog`, `provider:p`, `prices:p:c`, `prices-all:p:c` |
//!
//! A change names the narrowest tags that cover it ([`for_key`], from the Redis key it
//! invalidates, so the two cannot disagree): one product's price purges `price:p:c:s` (its single
//! answer and every bulk answer naming it) and `prices-all:p:c` (the bulk answers too wide to
//! name their products), never the rest of its country; a list its own tag; an operator's
//! wholesale drop `prices:p:c`, `provider:p` or `catalog`.
//!
//! Cloudflare's limits, which these stay within: a tag is at most 1 024 characters (ours are
//! under 80: codes are [`crate::Slug`]s of at most 32), and one answer's `Cache-Tag` header at
//! most 16 KB: [`MAX_PRODUCT_TAGS`] product tags (about 5 KB) and a few others. Past that many
//! named services an answer falls back to `prices-all:p:c`.

use crate::route::CatalogRoute;

/// Every catalog answer carries this one: purging it purges the whole catalog.
pub const CATALOG: &str = "catalog";

/// Most product tags one answer carries (Cloudflare: 16 KB of `Cache-Tag` per answer).
pub const MAX_PRODUCT_TAGS: usize = 64;

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
            tags.push(format!("price:{}:{}:{}", p.provider, p.country, p.service));
        }
        CatalogRoute::BulkPrices {
            provider,
            country,
            services,
        } => {
            tags.push(format!("provider:{provider}"));
            tags.push(format!("prices:{provider}:{country}"));
            match services {
                Some(named) if named.len() <= MAX_PRODUCT_TAGS => {
                    for service in named {
                        tags.push(format!("price:{provider}:{country}:{service}"));
                    }
                }
                _ => tags.push(format!("prices-all:{provider}:{country}")),
            }
        }
    }
    tags
}

/// The tags to purge when the Redis key `key` (as [`crate::keys`] spells it, without a prefix)
/// is invalidated; none for keys no downstream cache holds (balances, sessions).
pub fn for_key(key: &str) -> Vec<String> {
    let Some(rest) = key.strip_prefix("cache:") else {
        return Vec::new();
    };
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        ["providers"] => vec!["providers".to_owned()],
        ["countries", p] => vec![format!("countries:{p}")],
        ["services", p] => vec![format!("services:{p}")],
        ["prices", p, c, s] => vec![format!("price:{p}:{c}:{s}"), format!("prices-all:{p}:{c}")],
        _ => Vec::new(),
    }
}

/// The tag to purge when keys matching the pattern `pattern` ([`crate::keys`]'s patterns) are
/// dropped wholesale: a provider's prices purge the provider, a whole data type the catalog.
pub fn for_pattern(pattern: &str) -> Option<String> {
    if !pattern.contains('*') {
        return for_key(pattern).into_iter().next();
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

/// The country tag (`prices:p:c`) that covers a product tag (`price:p:c:s` or `prices-all:p:c`),
/// for merging: when purges are over budget, a country's product tags go out as its one tag
/// (broader, never missing one). `None` for any other tag. (The origin's purge queue applies
/// the same rule in Lua: `origin/src/purge/enqueue.lua`.)
pub fn country_of(tag: &str) -> Option<String> {
    let parts: Vec<&str> = tag.split(':').collect();
    match parts.as_slice() {
        ["price", p, c, _] | ["prices-all", p, c] => Some(format!("prices:{p}:{c}")),
        _ => None,
    }
}

/// The longest an answer carrying `tag` is kept by a cache downstream (seconds): a purge of it is
/// moot after this. Price tags live as long as price answers (minutes); any other tag as long as
/// the longest-kept answer ([`crate::policy::LONGEST_EDGE_RETENTION_SECS`]).
pub fn retention_secs(tag: &str) -> u32 {
    let price =
        tag.starts_with("price:") || tag.starts_with("prices:") || tag.starts_with("prices-all:");
    if price {
        crate::policy::DataType::Prices.policy().edge_retention()
    } else {
        crate::policy::LONGEST_EDGE_RETENTION_SECS
    }
}

/// The tags for a set of invalidated keys, each once, in order.
pub fn for_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut tags: Vec<String> = Vec::new();
    for tag in keys.into_iter().flat_map(for_key) {
        if seen.insert(tag.clone()) {
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

    #[test]
    fn price_tags_matter_as_long_as_price_answers_are_kept() {
        let price = crate::policy::DataType::Prices.policy().edge_retention();
        assert_eq!(price, 630, "s-maxage 30 + stale-if-error 600");
        for tag in [
            "price:5sim:ad:whatsapp",
            "prices:5sim:ad",
            "prices-all:5sim:ad",
        ] {
            assert_eq!(retention_secs(tag), price, "{tag}");
        }
        for tag in [
            "catalog",
            "provider:5sim",
            "countries:5sim",
            "services:5sim",
            "providers",
        ] {
            assert_eq!(
                retention_secs(tag),
                crate::policy::LONGEST_EDGE_RETENTION_SECS,
                "{tag}"
            );
        }
        // A tag kept for less than the longest is carried only by answers kept that long.
        for (path, query) in [
            ("/v1/catalog/providers", None),
            ("/v1/catalog/5sim/countries", None),
            ("/v1/catalog/5sim/services", None),
            ("/v1/catalog/5sim/prices/ad/whatsapp", None),
            (
                "/v1/catalog/5sim/prices/ad",
                Some("services=whatsapp,telegram"),
            ),
            ("/v1/catalog/5sim/prices/ad", None),
        ] {
            let route = crate::route::CatalogRoute::parse(path, query)
                .unwrap()
                .unwrap();
            let kept = route.data_type().policy().edge_retention();
            for tag in for_route(&route) {
                assert!(retention_secs(&tag) >= kept, "{path}: {tag}");
            }
        }
    }
    use crate::keys;
    use crate::{Product, Slug};

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    fn bulk(services: Option<Vec<&str>>) -> CatalogRoute {
        CatalogRoute::BulkPrices {
            provider: slug("5sim"),
            country: slug("ad"),
            services: services.map(|s| s.into_iter().map(slug).collect()),
        }
    }

    #[test]
    fn every_answer_depends_on_a_tag_its_change_purges() {
        let product = Product::parse("5sim", "ad", "whatsapp").unwrap();
        let p = slug("5sim");
        let many: Vec<String> = (0..MAX_PRODUCT_TAGS + 1).map(|i| format!("s{i}")).collect();
        let mut many: Vec<&str> = many.iter().map(String::as_str).collect();
        many.push("whatsapp");
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
                bulk(Some(vec!["telegram", "whatsapp"])),
                keys::price(&product),
            ),
            (bulk(None), keys::price(&product)),
            (bulk(Some(many)), keys::price(&product)),
        ];
        for (route, key) in cases {
            let tags = for_route(&route);
            let purged = for_key(&key);
            assert!(
                purged.iter().any(|t| tags.contains(t)),
                "{route:?} misses {purged:?}"
            );
            assert!(tags.contains(&CATALOG.to_owned()));
        }
    }

    #[test]
    fn a_product_change_purges_only_the_answers_holding_it() {
        let product = Product::parse("5sim", "ad", "whatsapp").unwrap();
        let purged = for_key(&keys::price(&product));
        assert_eq!(purged, vec!["price:5sim:ad:whatsapp", "prices-all:5sim:ad"]);
        let holds = |route: &CatalogRoute| for_route(route).iter().any(|t| purged.contains(t));
        // Not another product's answer, nor a bulk answer naming only others, in its country.
        let telegram = Product::parse("5sim", "ad", "telegram").unwrap();
        assert!(!holds(&CatalogRoute::Price(telegram)));
        assert!(!holds(&bulk(Some(vec!["telegram", "viber"]))));
        assert!(holds(&bulk(Some(vec!["telegram", "whatsapp"]))));
        // Nor another country's, nor the lists.
        let other_country = Product::parse("5sim", "af", "whatsapp").unwrap();
        assert!(!holds(&CatalogRoute::Price(other_country)));
        assert!(!holds(&CatalogRoute::Countries {
            provider: slug("5sim")
        }));
        // An operator's drop of the whole country reaches every price answer of it.
        for route in [
            CatalogRoute::Price(product.clone()),
            bulk(None),
            bulk(Some(vec!["viber"])),
        ] {
            assert!(
                for_route(&route).contains(&"prices:5sim:ad".to_owned()),
                "{route:?}"
            );
        }
    }

    #[test]
    fn answers_stay_within_cloudflares_tag_limits() {
        let names: Vec<String> = (0..1_000).map(|i| format!("service-{i:04}")).collect();
        for n in [1, MAX_PRODUCT_TAGS, MAX_PRODUCT_TAGS + 1, 1_000] {
            let route = bulk(Some(names[..n].iter().map(String::as_str).collect()));
            let tags = for_route(&route);
            assert!(header_value(&tags).len() <= 16 * 1024, "{n} services");
            assert!(tags.iter().all(|t| t.len() <= 1024));
            assert!(tags.len() <= MAX_PRODUCT_TAGS + 3, "{n}: {}", tags.len());
        }
    }

    #[test]
    fn a_country_tag_covers_its_product_tags() {
        let product = Product::parse("5sim", "ad", "whatsapp").unwrap();
        for tag in for_key(&keys::price(&product)) {
            let country = country_of(&tag).unwrap();
            assert_eq!(country, "prices:5sim:ad");
            // Every answer the product tag reaches, the country tag reaches too.
            for route in [
                CatalogRoute::Price(product.clone()),
                bulk(None),
                bulk(Some(vec!["whatsapp"])),
            ] {
                let tags = for_route(&route);
                if tags.contains(&tag) {
                    assert!(tags.contains(&country), "{route:?}");
                }
            }
        }
        for other in [
            "prices:5sim:ad",
            "provider:5sim",
            "catalog",
            "countries:5sim",
            "price:5sim:ad",
        ] {
            assert_eq!(country_of(other), None, "{other}");
        }
    }

    #[test]
    fn keys_no_cache_downstream_holds_purge_nothing() {
        assert!(for_key(&keys::balance(7)).is_empty());
        assert!(for_key(&keys::session("abc")).is_empty());
        assert!(for_key("cache:prices:5sim:ad").is_empty());
        assert!(for_key("cache:prices:5sim:ad:wa:extra").is_empty());
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
