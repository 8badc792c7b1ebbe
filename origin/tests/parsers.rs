//! Property tests for the origin's parsers of client and operator input: configuration values,
//! rate-limit overrides, session tokens from headers, emails, Prometheus text. Whatever the
//! input: no panic; a valid value or an error that names what is wrong.

use axum::http::{HeaderMap, HeaderValue};
use origin::accounts::normalize_email;
use origin::config::{Settings, tier_limits};
use origin::http::auth::{token, tokens};
use proptest::prelude::*;

const VARS: [&str; 17] = [
    "DB_POOLER",
    "ORIGIN_ADDR",
    "METRICS_ADDR",
    "DB_MAX_CONNECTIONS",
    "DB_IDLE_TIMEOUT_SECS",
    "DB_CONNECT_TIMEOUT_SECS",
    "REDIS_TIMEOUT_MS",
    "REDIS_KEY_PREFIX",
    "EDGE_SECRET",
    "CACHE_TTL_DIVISOR",
    "L1_CACHE",
    "L1_TTL_MS",
    "RATE_LIMITS",
    "HEADER_READ_TIMEOUT_MS",
    "MAX_CONCURRENT_REQUESTS",
    "LOGIN_MAX_FAILURES",
    "SESSION_MAX_AGE_SECS",
];

proptest! {
    #[test]
    fn any_single_bad_setting_is_named(index in 0..VARS.len(), value in any::<String>()) {
        let name = VARS[index];
        let lookup = |k: &str| match k {
            "DATABASE_URL" => Some("postgres://localhost/x".to_owned()),
            "REDIS_URL" => Some("redis://127.0.0.1:6379".to_owned()),
            k if k == name => Some(value.clone()),
            _ => None,
        };
        if let Err(e) = Settings::from_lookup(lookup) {
            prop_assert!(e.to_string().contains(name), "{e} does not name {name}");
        }
    }

    #[test]
    fn rate_limit_overrides_are_valid_or_refused(raw in "[a-z=/,0-9 ]{0,60}|.{0,60}") {
        if let Ok(tiers) = tier_limits(&raw) {
            prop_assert_eq!(tiers.len(), 4);
            prop_assert!(tiers.iter().all(|t| t.limit > 0 && t.window.as_millis() >= 20));
        }
    }

    #[test]
    fn session_tokens_come_from_either_header_or_none(
        auth in "(Bearer )?.{0,80}",
        cookie in "[ -~]{0,120}",
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&auth) {
            headers.insert("authorization", v);
        }
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.insert("cookie", v);
        }
        let all = tokens(&headers);
        prop_assert!(all.len() <= 2);
        prop_assert_eq!(token(&headers), all.first().cloned());
    }

    #[test]
    fn emails_normalise_or_are_refused(raw in any::<String>()) {
        if let Ok(email) = normalize_email(&raw) {
            prop_assert!(email.len() <= 254 && email.contains('@'));
            prop_assert_eq!(normalize_email(&email).ok(), Some(email.clone()), "idempotent");
        }
    }

    #[test]
    fn prometheus_text_totals_never_panic(text in any::<String>()) {
        let (total, errors) = origin::monitor::request_totals(&text);
        prop_assert!(errors <= total || total.is_nan() || errors.is_nan() || total < 0.0);
    }
}
