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

    /// Overrides built from the grammar (`tier=limit/window_ms`, comma-separated) with bad
    /// names, zero limits and short windows mixed in: accepted exactly when a simple model says
    /// so, and then each tier has the last value given for it (the others keep the guide's).
    #[test]
    fn rate_limit_overrides_match_a_model(
        items in prop::collection::vec(
            ("(api|auth|admin|ops|apii|API|)", prop_oneof![Just(0u32), 1u32..3000], prop_oneof![0u64..40, 40u64..120_000]),
            0..6,
        ),
        garbage in proptest::option::of("[a-z=/,0-9 ]{1,12}"),
    ) {
        let mut raw = items
            .iter()
            .map(|(name, limit, window)| format!("{name}={limit}/{window}"))
            .collect::<Vec<_>>()
            .join(",");
        if let Some(g) = &garbage {
            raw.push_str(g);
        }
        let parsed = tier_limits(&raw);
        if garbage.is_some() {
            // Whatever garbage did, an accepted list still has the four tiers, sane values.
            if let Ok(tiers) = &parsed {
                prop_assert_eq!(tiers.len(), 4);
                prop_assert!(tiers.iter().all(|t| t.limit > 0 && t.window.as_millis() >= 20));
            }
            return Ok(());
        }
        let known = ["api", "auth", "admin", "ops"];
        let valid = items.iter().all(|(name, limit, window)| {
            known.contains(&name.as_str())
                && *limit > 0
                && *window >= shared::ratelimit::SLIDING_BUCKETS
        });
        prop_assert_eq!(parsed.is_ok(), valid, "{:?} -> {:?}", raw, parsed.as_ref().err());
        if let Ok(tiers) = parsed {
            for tier in &tiers {
                let spec = tier.tier.spec();
                let expected = items
                    .iter()
                    .rev()
                    .find(|(name, ..)| name.as_str() == tier.name)
                    .map(|(_, l, w)| (*l, u128::from(*w)))
                    .unwrap_or((spec.limit, u128::from(spec.window_secs) * 1000));
                prop_assert_eq!((tier.limit, tier.window.as_millis()), expected, "{}", tier.name);
            }
        }
    }

    /// The session token against an independent statement of the rule: an `Authorization:
    /// Bearer` token first (trimmed), else the first `__Host-session` cookie (exact name, value
    /// trimmed); other schemes and look-alike cookie names count for nothing.
    #[test]
    fn session_tokens_follow_the_bearer_then_cookie_rule(
        auth in prop_oneof![
            Just(None),
            "[A-Za-z0-9._~+/-]{0,40}".prop_map(|t| Some(format!("Bearer {t}"))),
            "[A-Za-z0-9]{1,20}".prop_map(|t| Some(format!("bearer {t}"))),
            "[A-Za-z0-9]{1,20}".prop_map(|t| Some(format!("Basic {t}"))),
            "[A-Za-z0-9]{1,20}".prop_map(|t| Some(format!("Bearer  {t} "))),
        ],
        cookies in prop::collection::vec(
            ("(__Host-session|__host-session|session|__Host-device|x)", "[A-Za-z0-9]{0,24}"),
            0..4,
        ),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(a) = &auth {
            headers.insert("authorization", HeaderValue::from_str(a).unwrap());
        }
        if !cookies.is_empty() {
            let header = cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.insert("cookie", HeaderValue::from_str(&header).unwrap());
        }
        let bearer = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        let cookie = cookies
            .iter()
            .find(|(n, _)| n == "__Host-session")
            .map(|(_, v)| v.clone());
        prop_assert_eq!(token(&headers), bearer.clone().or(cookie.clone()));
        let mut both: Vec<String> = bearer.into_iter().chain(cookie).collect();
        both.dedup();
        prop_assert_eq!(tokens(&headers), both);
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

    /// Addresses built from the grammar normalise to themselves in lower case; the same with one
    /// character that no address may hold is refused.
    #[test]
    fn emails_from_the_grammar_are_taken_and_their_mutations_refused(
        local in "[A-Za-z0-9][A-Za-z0-9+_-]{0,10}(\\.[A-Za-z0-9_-]{1,6})?",
        domain in "[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?",
        tld in "[A-Za-z]{2,6}",
        spaces in "[ ]{0,2}",
        bad in "[<>\"'&`\\\\ ,;:()\\[\\]\u{0}-\u{1f}\u{7f}\u{202e}\u{e9}]",
        at in 0usize..100,
    ) {
        let email = format!("{local}@{domain}.{tld}");
        let normal = normalize_email(&format!("{spaces}{email}{spaces}"));
        prop_assert_eq!(normal.ok(), Some(email.to_ascii_lowercase()));
        // One forbidden character anywhere but at the ends (which are trimmed).
        let cut = 1 + at % (email.len() - 1);
        let mutated = format!("{}{bad}{}", &email[..cut], &email[cut..]);
        prop_assert!(normalize_email(&mutated).is_err(), "{mutated:?} was taken");
    }

    #[test]
    fn emails_normalise_or_are_refused(raw in any::<String>()) {
        if let Ok(email) = normalize_email(&raw) {
            prop_assert!(email.len() <= 254 && email.contains('@'));
            prop_assert_eq!(normalize_email(&email).ok(), Some(email.clone()), "idempotent");
        }
    }

    /// The request totals the monitor computes from `/metrics` are the sums a model computes
    /// from the same samples, whatever else the text holds.
    #[test]
    fn prometheus_request_totals_are_the_sums_of_the_samples(
        samples in prop::collection::vec((100u16..600, 0u32..100_000), 0..12),
        noise in prop::collection::vec("[ -~]{0,40}", 0..6),
    ) {
        let mut lines: Vec<String> = samples
            .iter()
            .enumerate()
            .map(|(i, (status, v))| {
                format!("http_requests_total{{method=\"GET\",route=\"/r{i}\",status=\"{status}\"}} {v}")
            })
            .collect();
        // Noise that is no sample of this metric: comments, other metrics.
        for n in &noise {
            lines.push(format!("# {n}"));
            lines.push(format!("http_request_duration_seconds_sum {}", n.len()));
        }
        lines.sort_by_key(|l| l.len() % 3);
        let text = lines.join("\n");
        let (total, errors) = origin::monitor::request_totals(&text);
        let expected: f64 = samples.iter().map(|(_, v)| f64::from(*v)).sum();
        let expected_errors: f64 = samples
            .iter()
            .filter(|(s, _)| (500..600).contains(s))
            .map(|(_, v)| f64::from(*v))
            .sum();
        prop_assert_eq!((total, errors), (expected, expected_errors));
    }

    #[test]
    fn prometheus_text_totals_never_panic(text in any::<String>()) {
        let (total, errors) = origin::monitor::request_totals(&text);
        prop_assert!(errors <= total || total.is_nan() || errors.is_nan() || total < 0.0);
    }
}
