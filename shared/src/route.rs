//! The public catalog routes, parsed from a raw path and query. The edge uses this to decide
//! what is cacheable and to build a normalised cache key; the origin uses the same parsers for
//! the `services` list, so both sides accept and reject exactly the same URLs.
//!
//! - `GET /v1/catalog/providers`
//! - `GET /v1/catalog/{provider}/countries`
//! - `GET /v1/catalog/{provider}/services`
//! - `GET /v1/catalog/{provider}/prices/{country}/{service}`
//! - `GET /v1/catalog/{provider}/prices/{country}?services=a,b,c`

use std::fmt;

use crate::keys;
use crate::policy::DataType;
use crate::product::Product;
use crate::slug::{Slug, SlugError};

/// Path prefix of every catalog route.
pub const CATALOG_PREFIX: &str = "/v1/catalog/";

/// At most this many services in one bulk request: enough for any screen, small enough that a
/// request cannot make the origin build an unbounded MGET.
pub const MAX_BULK_SERVICES: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogRoute {
    Providers,
    Countries {
        provider: Slug,
    },
    Services {
        provider: Slug,
    },
    Price(Product),
    BulkPrices {
        provider: Slug,
        country: Slug,
        /// `None`: every service the provider sells in that country.
        services: Option<Vec<Slug>>,
    },
}

/// Why a catalog URL was refused. Every variant is a client mistake (400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    Segment {
        field: &'static str,
        error: SlugError,
    },
    Services(String),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Segment { field, error } => write!(f, "{field} {error}"),
            RouteError::Services(msg) => write!(f, "services {msg}"),
        }
    }
}

impl std::error::Error for RouteError {}

fn slug(field: &'static str, raw: &str) -> Result<Slug, RouteError> {
    Slug::parse(raw).map_err(|error| RouteError::Segment { field, error })
}

impl CatalogRoute {
    /// `Ok(None)` when the path is not a catalog route at all (the caller forwards or 404s it);
    /// `Err` when it is one but carries an invalid code or `services` list.
    pub fn parse(path: &str, query: Option<&str>) -> Result<Option<Self>, RouteError> {
        let Some(rest) = path.strip_prefix(CATALOG_PREFIX) else {
            return Ok(None);
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let route = match parts.as_slice() {
            ["providers"] => CatalogRoute::Providers,
            [provider, "countries"] => CatalogRoute::Countries {
                provider: slug("provider", provider)?,
            },
            [provider, "services"] => CatalogRoute::Services {
                provider: slug("provider", provider)?,
            },
            [provider, "prices", country, service] => CatalogRoute::Price(Product {
                provider: slug("provider", provider)?,
                country: slug("country", country)?,
                service: slug("service", service)?,
            }),
            [provider, "prices", country] => CatalogRoute::BulkPrices {
                provider: slug("provider", provider)?,
                country: slug("country", country)?,
                services: services_from_query(query)?,
            },
            _ => return Ok(None),
        };
        Ok(Some(route))
    }

    pub fn data_type(&self) -> DataType {
        match self {
            CatalogRoute::Providers => DataType::Providers,
            CatalogRoute::Countries { .. } => DataType::Countries,
            CatalogRoute::Services { .. } => DataType::Services,
            CatalogRoute::Price(_) | CatalogRoute::BulkPrices { .. } => DataType::Prices,
        }
    }

    /// The route as one canonical path and query: unknown query parameters dropped, the
    /// `services` list as its sorted set (the answer follows that order).
    /// Two URLs that must get the same answer map to the same string; it is the edge cache key.
    pub fn canonical(&self) -> String {
        match self {
            CatalogRoute::Providers => format!("{CATALOG_PREFIX}providers"),
            CatalogRoute::Countries { provider } => format!("{CATALOG_PREFIX}{provider}/countries"),
            CatalogRoute::Services { provider } => format!("{CATALOG_PREFIX}{provider}/services"),
            CatalogRoute::Price(p) => format!(
                "{CATALOG_PREFIX}{}/prices/{}/{}",
                p.provider, p.country, p.service
            ),
            CatalogRoute::BulkPrices {
                provider,
                country,
                services,
            } => {
                let mut s = format!("{CATALOG_PREFIX}{provider}/prices/{country}");
                if let Some(list) = services {
                    s.push_str("?services=");
                    let joined: Vec<&str> = list.iter().map(Slug::as_str).collect();
                    s.push_str(&joined.join(","));
                }
                s
            }
        }
    }
}

/// A catalog route whose answer is exactly one cache entry (everything but the bulk read),
/// borrowed from the path as it arrived: the origin's hit path finds the entry without building
/// a route, a `String` or a key on the heap.
///
/// Stricter than [`CatalogRoute::parse`] on purpose: it takes only paths whose segments are
/// valid codes exactly as sent (no percent-escapes, nothing to decode) and ignores the query (no
/// single-entry route reads one). Anything else is `None` and goes the full way, which accepts
/// or refuses it; a path this accepts means the same route and key there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryRoute<'a> {
    Providers,
    Countries { provider: &'a str },
    Services { provider: &'a str },
    Price(PriceCodes<'a>),
}

/// A price route's three codes as sent (each already checked as a slug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceCodes<'a> {
    pub provider: &'a str,
    pub country: &'a str,
    pub service: &'a str,
}

impl PriceCodes<'_> {
    /// The product, owned: made only when a load needs one (a read answered from Redis
    /// allocates no codes).
    pub fn product(&self) -> Product {
        Product {
            provider: Slug::checked(self.provider),
            country: Slug::checked(self.country),
            service: Slug::checked(self.service),
        }
    }

    /// Its cache key ([`keys::price`]).
    pub fn key(&self) -> String {
        keys::built(|out| keys::write_price(out, self.provider, self.country, self.service))
    }
}

/// The route patterns as the router spells them (metric labels).
pub const PROVIDERS_ROUTE: &str = "/v1/catalog/providers";
pub const COUNTRIES_ROUTE: &str = "/v1/catalog/{provider}/countries";
pub const SERVICES_ROUTE: &str = "/v1/catalog/{provider}/services";
pub const PRICE_ROUTE: &str = "/v1/catalog/{provider}/prices/{country}/{service}";

impl<'a> EntryRoute<'a> {
    pub fn parse(path: &'a str) -> Option<Self> {
        let code = |raw: &'a str| Slug::check(raw).ok().map(|()| raw);
        let mut parts = path.strip_prefix(CATALOG_PREFIX)?.split('/');
        let route = match (parts.next()?, parts.next(), parts.next(), parts.next()) {
            ("providers", None, None, None) => EntryRoute::Providers,
            (provider, Some("countries"), None, None) => EntryRoute::Countries {
                provider: code(provider)?,
            },
            (provider, Some("services"), None, None) => EntryRoute::Services {
                provider: code(provider)?,
            },
            (provider, Some("prices"), Some(country), Some(service)) => {
                EntryRoute::Price(PriceCodes {
                    provider: code(provider)?,
                    country: code(country)?,
                    service: code(service)?,
                })
            }
            _ => return None,
        };
        // Nothing may follow the last segment.
        parts.next().is_none().then_some(route)
    }

    pub fn data_type(&self) -> DataType {
        match self {
            EntryRoute::Providers => DataType::Providers,
            EntryRoute::Countries { .. } => DataType::Countries,
            EntryRoute::Services { .. } => DataType::Services,
            EntryRoute::Price(_) => DataType::Prices,
        }
    }

    /// The route's pattern, as the router's matched path names it.
    pub fn pattern(&self) -> &'static str {
        match self {
            EntryRoute::Providers => PROVIDERS_ROUTE,
            EntryRoute::Countries { .. } => COUNTRIES_ROUTE,
            EntryRoute::Services { .. } => SERVICES_ROUTE,
            EntryRoute::Price(_) => PRICE_ROUTE,
        }
    }

    /// Its cache key ([`crate::keys`]), written into `out`.
    pub fn write_key(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match *self {
            EntryRoute::Providers => keys::write_providers(out),
            EntryRoute::Countries { provider } => keys::write_countries(out, provider),
            EntryRoute::Services { provider } => keys::write_services(out, provider),
            EntryRoute::Price(codes) => {
                keys::write_price(out, codes.provider, codes.country, codes.service)
            }
        }
    }
}

impl From<EntryRoute<'_>> for CatalogRoute {
    /// The owned route, for a request that goes on to Redis or PostgreSQL.
    fn from(route: EntryRoute<'_>) -> CatalogRoute {
        match route {
            EntryRoute::Providers => CatalogRoute::Providers,
            EntryRoute::Countries { provider } => CatalogRoute::Countries {
                provider: Slug::checked(provider),
            },
            EntryRoute::Services { provider } => CatalogRoute::Services {
                provider: Slug::checked(provider),
            },
            EntryRoute::Price(codes) => CatalogRoute::Price(codes.product()),
        }
    }
}

/// Finds the `services` parameter in a raw query string (other parameters are ignored).
fn services_from_query(query: Option<&str>) -> Result<Option<Vec<Slug>>, RouteError> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "services" {
            if found.is_some() {
                return Err(RouteError::Services("must be given once".into()));
            }
            found = Some(value);
        }
    }
    found.map(parse_services_param).transpose()
}

/// Parses `a,b,c` (commas may arrive as `%2C`): at most [`MAX_BULK_SERVICES`] items, each a
/// slug, no empties; the answer is the set, sorted by code, so every ordering of one list is one
/// request (one edge cache entry, one answer). The items are counted before any is parsed, so a
/// hostile list costs n log n at most before its 400.
pub fn parse_services_param(raw: &str) -> Result<Vec<Slug>, RouteError> {
    let decoded = raw.replace("%2C", ",").replace("%2c", ",");
    if decoded.is_empty() {
        return Err(RouteError::Services(
            "must list at least one service".into(),
        ));
    }
    if decoded.split(',').nth(MAX_BULK_SERVICES).is_some() {
        return Err(RouteError::Services(format!(
            "must list at most {MAX_BULK_SERVICES} services"
        )));
    }
    let mut set = std::collections::BTreeSet::new();
    for item in decoded.split(',') {
        set.insert(Slug::parse(item).map_err(|e| RouteError::Services(format!("item {e}")))?);
    }
    Ok(set.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str, q: Option<&str>) -> Option<CatalogRoute> {
        CatalogRoute::parse(p, q).unwrap()
    }

    #[test]
    fn recognises_each_route_and_canonicalises() {
        let cases = [
            ("/v1/catalog/providers", None, "/v1/catalog/providers"),
            (
                "/v1/catalog/5sim/countries",
                Some("x=1"),
                "/v1/catalog/5sim/countries",
            ),
            (
                "/v1/catalog/5sim/services",
                None,
                "/v1/catalog/5sim/services",
            ),
            (
                "/v1/catalog/5sim/prices/us/whatsapp",
                Some("utm=1"),
                "/v1/catalog/5sim/prices/us/whatsapp",
            ),
            (
                "/v1/catalog/5sim/prices/us",
                None,
                "/v1/catalog/5sim/prices/us",
            ),
            (
                "/v1/catalog/5sim/prices/us",
                Some("z=9&services=tg,wa%2Ctg&a=1"),
                "/v1/catalog/5sim/prices/us?services=tg,wa",
            ),
        ];
        for (p, q, want) in cases {
            assert_eq!(
                parse(p, q).map(|r| r.canonical()),
                Some(want.to_owned()),
                "{p}"
            );
        }
        assert_eq!(
            parse("/v1/catalog/5sim/prices/us/wa", None).map(|r| r.data_type()),
            Some(DataType::Prices)
        );
    }

    #[test]
    fn non_catalog_paths_are_not_routes() {
        for p in [
            "/v1/me/balance",
            "/v1/catalog/",
            "/v1/catalog/a/b/c",
            "/healthz",
            "/v1/catalogx",
        ] {
            assert_eq!(parse(p, None), None, "{p}");
        }
    }

    #[test]
    fn a_list_is_counted_before_its_items_are_parsed() {
        // 64 KB of distinct items, the first one invalid: refused for its length, without
        // parsing (or comparing) a single item first.
        let long: Vec<String> = (0..6000).map(|i| format!("svc{i:06}")).collect();
        let hostile = format!("BAD,{}", long.join(","));
        let err = parse_services_param(&hostile).unwrap_err().to_string();
        assert!(err.contains("at most 200"), "{err}");
    }

    #[test]
    fn lists_are_sets_sorted_by_code() {
        let got = parse_services_param("b,a,b,c,a").unwrap();
        let got: Vec<&str> = got.iter().map(Slug::as_str).collect();
        assert_eq!(got, ["a", "b", "c"]);
        let one = CatalogRoute::parse("/v1/catalog/p/prices/us", Some("services=wa,tg")).unwrap();
        let other = CatalogRoute::parse("/v1/catalog/p/prices/us", Some("services=tg,wa,tg"));
        assert_eq!(
            one.map(|r| r.canonical()),
            other.unwrap().map(|r| r.canonical())
        );
    }

    #[test]
    fn invalid_codes_and_lists_are_errors() {
        assert!(CatalogRoute::parse("/v1/catalog/BAD/countries", None).is_err());
        assert!(CatalogRoute::parse("/v1/catalog/a/prices/us", Some("services=")).is_err());
        assert!(CatalogRoute::parse("/v1/catalog/a/prices/us", Some("services=a,,b")).is_err());
        assert!(
            CatalogRoute::parse("/v1/catalog/a/prices/us", Some("services=a&services=b")).is_err()
        );
        let many = (0..=MAX_BULK_SERVICES)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_services_param(&many).is_err());
    }

    #[test]
    fn entry_routes_agree_with_the_full_parser_and_the_key_builders() {
        for path in [
            "/v1/catalog/providers",
            "/v1/catalog/5sim/countries",
            "/v1/catalog/providers/countries",
            "/v1/catalog/sms-activate/services",
            "/v1/catalog/5sim/prices/us/whatsapp",
            "/v1/catalog/a/prices/b_c/0-9",
        ] {
            let entry = EntryRoute::parse(path).unwrap_or_else(|| panic!("{path}"));
            let full = parse(path, None).unwrap();
            assert_eq!(CatalogRoute::from(entry), full, "{path}");
            assert_eq!(entry.data_type(), full.data_type(), "{path}");
            let want = match &full {
                CatalogRoute::Providers => keys::providers(),
                CatalogRoute::Countries { provider } => keys::countries(provider),
                CatalogRoute::Services { provider } => keys::services(provider),
                CatalogRoute::Price(p) => keys::price(p),
                CatalogRoute::BulkPrices { .. } => unreachable!("{path}"),
            };
            let mut key = String::new();
            entry.write_key(&mut key).unwrap();
            assert_eq!(key, want, "{path}");
            if let (EntryRoute::Price(codes), CatalogRoute::Price(product)) = (entry, &full) {
                assert_eq!(codes.key(), want, "{path}");
                assert_eq!(&codes.product(), product, "{path}");
            }
        }
    }

    #[test]
    fn entry_routes_leave_everything_else_to_the_full_path() {
        let long = format!("/v1/catalog/{}/services", "a".repeat(33));
        for path in [
            "/v1/catalog/providers/",
            "/v1/catalog//services",
            "/v1/catalog/5sim/services/",
            "/v1/catalog/5SIM/services",
            "/v1/catalog/5sim/prices/us",
            "/v1/catalog/5sim/prices/us/whatsapp/x",
            "/v1/catalog/5sim/prices/u%73/whatsapp",
            "/v1/catalog/5sim/prices/us/what..app",
            "/v1/catalog/-x/countries",
            "/v1/catalog/5sim/other",
            "/v1/catalog/",
            "/v1/catalog",
            "/v2/catalog/providers",
            "//v1/catalog/providers",
            long.as_str(),
        ] {
            assert_eq!(EntryRoute::parse(path), None, "{path}");
        }
    }
}
