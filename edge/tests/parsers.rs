//! Property tests for the edge's parsers: its vars, allowed origins and preflights, client
//! addresses. No panic (a panic resets the isolate), a valid value or an error naming the var.

use edge::config::EdgeConfig;
use edge::cors::AllowedOrigins;
use edge::limiter::client_key;
use proptest::prelude::*;

const VARS: [&str; 14] = [
    "EDGE_ENV",
    "ORIGIN_URL",
    "EDGE_SECRET",
    "EDGE_INSECURE_DEV",
    "PUBLIC_HOST",
    "ORIGIN_TIMEOUT_MS",
    "RATE_LIMIT_PER_MINUTE",
    "RATE_LIMIT_BURST",
    "RATE_LIMIT_PERIOD_SECS",
    "TRUSTED_CLIENTS",
    "TRUSTED_RATE_LIMIT_PER_MINUTE",
    "TRUSTED_RATE_LIMIT_BURST",
    "CORS_ALLOWED_ORIGINS",
    "CACHE_TTL_DIVISOR",
];

proptest! {
    #[test]
    fn any_single_bad_var_is_named(index in 0..VARS.len(), value in any::<String>()) {
        let name = VARS[index];
        let lookup = |k: &str| match k {
            k if k == name => Some(value.clone()),
            "ORIGIN_URL" => Some("https://origin.example".to_owned()),
            "EDGE_SECRET" => Some("s".repeat(20)),
            "PUBLIC_HOST" => Some("catalog.example".to_owned()),
            _ => None,
        };
        if let Err(e) = EdgeConfig::from_lookup(lookup) {
            prop_assert!(e.contains(name), "{e} does not name {name}");
        }
    }

    #[test]
    fn cors_answers_never_panic_and_never_pair_a_wildcard_with_credentials(
        allowed in ".{0,80}",
        origin in ".{0,40}",
        method in "[A-Za-z ]{0,10}",
    ) {
        let cors = AllowedOrigins::parse(&allowed);
        let preflight = cors.preflight(&origin, &method).unwrap_or_default();
        for headers in [cors.response_headers(Some(&origin)), preflight] {
            let wildcard = headers.iter().any(|(n, v)| *n == "Access-Control-Allow-Origin" && v == "*");
            let credentials = headers.iter().any(|(n, _)| *n == "Access-Control-Allow-Credentials");
            prop_assert!(!(wildcard && credentials));
        }
    }

    #[test]
    fn client_keys_are_bounded(raw in proptest::option::of(".{0,64}")) {
        let key = client_key(raw.as_deref());
        prop_assert!(key.len() <= 64, "{key}");
    }
}
