//! Property tests for the origin's parsers of client and operator input: configuration values,
//! rate-limit overrides, session tokens and cookies from headers, emails, Prometheus text. Whatever the
//! input: no panic; a valid value or an error that names what is wrong.

use axum::http::{HeaderMap, HeaderValue};
use origin::accounts::normalize_email;
use origin::config::{Settings, tier_limits};
use origin::http::auth::{token, tokens};
use proptest::prelude::*;

const VARS: [&str; 22] = [
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
    "BODY_READ_TIMEOUT_MS",
    "MAX_IN_FLIGHT_PER_CLIENT",
    "MAX_SESSIONS_PER_USER",
    "MAX_CONNECTIONS_PER_PEER",
    "PASSWORD_QUEUE_TIMEOUT_MS",
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

    /// More than one session cookie is a tossed cookie, refused; one is the token read.
    #[test]
    fn a_second_session_cookie_is_always_seen(
        names in prop::collection::vec("(__Host-session|__host-session|session|x)", 0..5),
    ) {
        let header = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={i:064x}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_str(&header).unwrap());
        let sessions = names.iter().filter(|n| *n == "__Host-session").count();
        prop_assert_eq!(origin::http::auth::tossed(&headers), sessions > 1);
        let first = names.iter().position(|n| n == "__Host-session").map(|i| format!("{i:064x}"));
        prop_assert_eq!(token(&headers), first);
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
