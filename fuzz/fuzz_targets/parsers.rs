//! Every parser in `shared` that sees client input, on arbitrary bytes: a panic is a bug (at the
//! edge it resets the isolate). `cargo +nightly fuzz run parsers -- -max_total_time=60`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::etag::if_none_match_matches;
use shared::route::{CatalogRoute, parse_services_param};
use shared::{Product, Slug};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    if let Ok(Some(route)) = CatalogRoute::parse(path, query) {
        let canonical = route.canonical();
        let (p, q) = match canonical.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (canonical.as_str(), None),
        };
        assert_eq!(CatalogRoute::parse(p, q), Ok(Some(route)));
    }
    let _ = parse_services_param(text);
    let _ = Slug::parse(text);
    let mut parts = text.splitn(3, '/');
    let _ = Product::parse(
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let _ = if_none_match_matches(text, "\"0123456789abcdef\"");
    if let Some(email) = shared::input::normalize_email(text) {
        assert!(email.is_ascii() && email.len() <= 254);
        assert_eq!(shared::input::normalize_email(&email).as_deref(), Some(email.as_str()));
    }
    for (name, value) in shared::input::cookie_pairs(text) {
        assert!(!name.contains(';') && !value.contains(';'));
    }
});
