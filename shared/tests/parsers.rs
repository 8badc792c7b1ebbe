//! Property tests for every parser that sees client input: whatever the input, they never panic
//! and either answer a valid value (that survives its own round trip) or a client error.

use proptest::prelude::*;
use shared::etag::{if_none_match_matches, strong_etag};
use shared::route::{CatalogRoute, EntryRoute, MAX_BULK_SERVICES, parse_services_param};
use shared::{Product, Slug};

/// Strings a hostile client might send: anything, plus near-misses of valid codes and lists.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9_,%C2-]{0,300}",
        "[a-zA-Z0-9/?&=,.%:{}*-]{0,120}",
    ]
}

/// A valid code.
fn code() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,12}"
}

/// A path segment: mostly a valid code, else one of its near misses.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => code(),
        1 => "[A-Z][a-z0-9]{0,4}",
        1 => "[a-z]{1,3}%[0-9A-F]{2}[a-z]{0,2}",
        1 => Just(String::new()),
        1 => "[a-z0-9]{33,40}",
        1 => "[a-z]{1,4}[:*.~ +][a-z]{0,3}",
        1 => "-[a-z]{1,4}",
    ]
}

/// Catalog paths from the route grammar (every shape, the bulk one too), their segments drawn
/// from [`segment`], sometimes with a trailing slash, a doubled slash or an extra segment.
fn catalog_path() -> impl Strategy<Value = String> {
    let shape = prop_oneof![
        Just(vec!["providers".to_owned()]),
        segment().prop_map(|p| vec![p, "countries".into()]),
        segment().prop_map(|p| vec![p, "services".into()]),
        (segment(), segment(), segment()).prop_map(|(p, c, s)| vec![p, "prices".into(), c, s]),
        (segment(), segment()).prop_map(|(p, c)| vec![p, "prices".into(), c]),
    ];
    (shape, 0..8u8).prop_map(|(parts, twist)| {
        let path = format!("/v1/catalog/{}", parts.join("/"));
        match twist {
            0 => format!("{path}/"),
            1 => path.replacen("/catalog/", "/catalog//", 1),
            2 => format!("{path}/extra"),
            _ => path,
        }
    })
}

/// Only valid routes, as a client spells them (with a `services` list in any order, duplicates
/// and unknown parameters around it).
fn valid_route() -> impl Strategy<Value = (String, Option<String>)> {
    let services = prop::collection::vec(code(), 1..6);
    prop_oneof![
        Just(("/v1/catalog/providers".to_owned(), None)),
        code().prop_map(|p| (format!("/v1/catalog/{p}/countries"), None)),
        code().prop_map(|p| (format!("/v1/catalog/{p}/services"), None)),
        (code(), code(), code())
            .prop_map(|(p, c, s)| (format!("/v1/catalog/{p}/prices/{c}/{s}"), None)),
        (code(), code()).prop_map(|(p, c)| (format!("/v1/catalog/{p}/prices/{c}"), None)),
        (code(), code(), services).prop_map(|(p, c, list)| {
            let mut twice = list.clone();
            twice.extend(list.iter().rev().cloned());
            (
                format!("/v1/catalog/{p}/prices/{c}"),
                Some(format!("utm=x&services={}&ref=1", twice.join(","))),
            )
        }),
    ]
}

proptest! {
    /// Every valid route parses, to the route its parts name, and its canonical form parses to
    /// the same route (the key the edge and the origin both use).
    #[test]
    fn valid_catalog_routes_parse_and_their_canonical_form_round_trips(
        (path, query) in valid_route(),
    ) {
        let route = CatalogRoute::parse(&path, query.as_deref());
        let Ok(Some(route)) = route else {
            return Err(TestCaseError::fail(format!("{path}?{query:?} -> {route:?}")));
        };
        let canonical = route.canonical();
        let (p, q) = match canonical.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (canonical.as_str(), None),
        };
        prop_assert_eq!(p, path.as_str(), "the path is already canonical");
        prop_assert_eq!(CatalogRoute::parse(p, q), Ok(Some(route)));
        if let Some(q) = q {
            prop_assert!(!q.contains("utm") && !q.contains("ref="), "unknown parameters dropped");
        }
    }

    /// The origin's hit path takes a path only when the full parser makes the same route of it,
    /// and it leaves none of the plain spellings to the slow way.
    #[test]
    fn the_hit_path_parser_agrees_with_the_full_parser(path in catalog_path()) {
        let full = CatalogRoute::parse(&path, None);
        match EntryRoute::parse(&path) {
            Some(entry) => prop_assert_eq!(full, Ok(Some(CatalogRoute::from(entry)))),
            None => {
                let single_entry = matches!(
                    full,
                    Ok(Some(CatalogRoute::Providers | CatalogRoute::Countries { .. }
                        | CatalogRoute::Services { .. } | CatalogRoute::Price(_)))
                );
                prop_assert!(!single_entry, "{path} is plain and parses, but the hit path left it");
            }
        }
    }

    #[test]
    fn slugs_are_valid_or_refused(raw in hostile()) {
        if let Ok(slug) = Slug::parse(&raw) {
            prop_assert_eq!(slug.as_str(), raw.as_str());
            prop_assert!(!raw.is_empty() && raw.len() <= 32);
            prop_assert!(!raw.contains(':') && !raw.contains('*'), "a key separator in a slug");
        }
    }

    #[test]
    fn service_lists_are_bounded_sorted_sets_or_refused(raw in hostile()) {
        if let Ok(list) = parse_services_param(&raw) {
            prop_assert!(!list.is_empty() && list.len() <= MAX_BULK_SERVICES);
            prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
        }
    }

    #[test]
    fn catalog_urls_parse_to_their_canonical_form_or_are_refused(
        path in prop_oneof![hostile(), catalog_path()],
        query in proptest::option::of(hostile()),
    ) {
        if let Ok(Some(route)) = CatalogRoute::parse(&path, query.as_deref()) {
            let canonical = route.canonical();
            let (p, q) = match canonical.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (canonical.as_str(), None),
            };
            let again = CatalogRoute::parse(p, q);
            prop_assert_eq!(again, Ok(Some(route)), "the canonical form parses to itself");
        }
    }

    #[test]
    fn products_are_valid_or_name_their_bad_field(a in hostile(), b in hostile(), c in hostile()) {
        match Product::parse(&a, &b, &c) {
            Ok(p) => prop_assert_eq!(p.to_string(), format!("{a}/{b}/{c}")),
            Err((field, _)) => prop_assert!(["provider", "country", "service"].contains(&field)),
        }
    }

    #[test]
    fn if_none_match_never_panics_and_matches_its_own_tag(header in hostile(), body in any::<Vec<u8>>()) {
        let tag = strong_etag(&body);
        let _ = if_none_match_matches(&header, &tag);
        let listed = format!("{header}, {tag}");
        prop_assert!(if_none_match_matches(&listed, &tag));
    }

    /// An accepted email is safe to echo and store: ASCII, one `@`, lower case, no control,
    /// bidi or markup character, within the lengths mail systems take, and normalising it again
    /// changes nothing.
    #[test]
    fn emails_are_safe_or_refused(
        raw in prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9.+_<>\"'&`@ -]{0,40}@[a-z0-9.-]{0,20}\\.[a-z]{0,4}",
            // Valid but for at most one character: what slips through a loose check.
            "[a-z]{1,6}[<>\"'&`\\\\ ()\\[\\],:;.+]?[a-z]{1,6}@[a-z]{1,6}[-_.<]?[a-z]{1,6}\\.[a-z]{2,3}",
            "[a-z]{1,8}[\u{0}-\u{1f}\u{7f}\u{202a}-\u{202e}\u{2066}-\u{2069}][a-z]{0,4}@x\\.yz",
        ]
    ) {
        if let Some(email) = shared::input::normalize_email(&raw) {
            prop_assert!(email.is_ascii() && email.len() <= 254, "{email:?}");
            prop_assert_eq!(email.matches('@').count(), 1);
            prop_assert!(!email.chars().any(|c| c.is_ascii_control() || "<>\"'&`\\ ".contains(c)));
            prop_assert_eq!(email.to_ascii_lowercase(), email.clone());
            let (local, _) = email.split_once('@').unwrap();
            prop_assert!(!local.is_empty() && local.len() <= 64);
            prop_assert_eq!(shared::input::normalize_email(&email), Some(email.clone()));
        }
    }

    /// A `Cookie` header's pairs are exactly its `name=value` items, trimmed: a name is never
    /// read out of another cookie's value, and two cookies of one name are two pairs.
    #[test]
    fn cookie_pairs_are_the_items_of_the_header(
        items in prop::collection::vec(
            ("(__Host-session|__host-session|session|[a-z]{1,6})", "[ -:<-~]{0,20}"), 0..6),
        junk in "[ -:<-~]{0,10}",
    ) {
        let header = items
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .chain(std::iter::once(junk.replace('=', "")))
            .collect::<Vec<_>>()
            .join("; ");
        let parsed: Vec<(String, String)> = shared::input::cookie_pairs(&header)
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let expected: Vec<(String, String)> =
            items.iter().map(|(n, v)| (n.clone(), v.trim().to_owned())).collect();
        prop_assert_eq!(parsed, expected);
    }
}
