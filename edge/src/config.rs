//! The worker's configuration: wrangler vars (`[vars]`, or `wrangler dev --var NAME:VALUE`) and
//! secrets (`wrangler secret put EDGE_SECRET`; locally `.dev.vars`). Read through one lookup so
//! it is testable natively; a bad value names the variable.

use crate::clients::TrustedClients;
use crate::cors::AllowedOrigins;

/// Every variable the worker reads: name, default, meaning. The settings table in
/// `docs/edge.md` is checked against this list (`edge/tests/deploy.rs`), and so is what
/// [`EdgeConfig::from_lookup`] asks for.
pub const VARS: &[(&str, &str, &str)] = &[
    (
        "EDGE_ENV",
        "`production`",
        "`local`, `staging` or `production`; only `local` accepts an `http://` origin, `EDGE_INSECURE_DEV` and `CACHE_TTL_DIVISOR`",
    ),
    (
        "ORIGIN_URL",
        "(required)",
        "scheme, host and port of the origin; `https://` outside `EDGE_ENV=local`",
    ),
    (
        "EDGE_SECRET",
        "(required, a secret)",
        "≥ 16 characters, the origin's value: it believes the edge's client address and request id only with it",
    ),
    (
        "EDGE_SECRET_PREVIOUS",
        "unset (a secret)",
        "while `EDGE_SECRET` is rotated: the other value accepted on the purge route (never sent); see docs/operations.md",
    ),
    (
        "EDGE_INSECURE_DEV",
        "unset",
        "`true`: run without `EDGE_SECRET` (`EDGE_ENV=local` only; logs a warning)",
    ),
    (
        "PUBLIC_HOST",
        "(required; `localhost` locally)",
        "the host the catalog is served on: edge cache keys are made on it whatever `Host` a request carries",
    ),
    (
        "ORIGIN_TIMEOUT_MS",
        "`3000`",
        "longest an origin fetch may take; past it the stale copy (within `stale-if-error`) or a 504",
    ),
    (
        "RATE_LIMIT_PER_MINUTE",
        "`600`",
        "sustained requests per client (IPv6 by /64, /56 ×2, /48 ×4) in the isolate's limiter, where the rate-limit bindings are not bound",
    ),
    (
        "RATE_LIMIT_BURST",
        "`100`",
        "how many of those may arrive at once",
    ),
    (
        "RATE_LIMIT_PERIOD_SECS",
        "`60`",
        "the period (10 or 60) of the `[[ratelimits]]` bindings: the `Retry-After` of their refusals",
    ),
    (
        "TRUSTED_CLIENTS",
        "none (a secret)",
        "`name=key,…`: server-side clients (keys ≥ 32 characters) with their own budget, who may name their end user in `X-End-User-IP`",
    ),
    (
        "TRUSTED_RATE_LIMIT_PER_MINUTE",
        "`6000`",
        "a trusted client's sustained budget in the isolate's limiter",
    ),
    (
        "TRUSTED_RATE_LIMIT_BURST",
        "`1000`",
        "how many of those may arrive at once",
    ),
    (
        "CORS_ALLOWED_ORIGINS",
        "none",
        "`*` or a comma-separated list of origins allowed to read answers from a browser",
    ),
    (
        "CACHE_TTL_DIVISOR",
        "`1`",
        "divides every policy duration (tests; `EDGE_ENV=local` only)",
    ),
];

/// Where the worker runs (`EDGE_ENV`): the rules that keep a deployment safe are relaxed only for
/// a local run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// `wrangler dev`, the tests: an `http://` origin, `EDGE_INSECURE_DEV`, test knobs.
    Local,
    Staging,
    Production,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// `EDGE_ENV` (default `production`): `local`, `staging` or `production`.
    pub deployment: Deployment,
    /// `ORIGIN_URL` (required): scheme, host and port of the origin, no trailing slash; `https://`
    /// except locally (the edge secret and every user's credentials travel on it).
    pub origin_url: String,
    /// `EDGE_SECRET` (a secret, ≥ 16 characters): sent to the origin so it trusts our client IP
    /// and request id. Required, except under `EDGE_INSECURE_DEV=true` (local runs only: the
    /// origin then sees the edge's own address for every client, and one client's flood limits
    /// everyone).
    /// `EDGE_SECRET_PREVIOUS` (a secret) is accepted beside it on the purge route during a
    /// rotation.
    pub edge_secret: Option<shared::secret::SharedSecret>,
    /// `PUBLIC_HOST` (required outside local runs; `localhost` locally): the host the edge cache
    /// keys are made on, whatever `Host` a request carries (one entry per URL, not per spelling
    /// of the host), and the host purges name.
    pub public_host: String,
    /// `ORIGIN_TIMEOUT_MS` (default 3000, `shared::policy::budget`): past it, stale-if-error or
    /// 504. At least 500 ms longer than the origin's `REQUEST_TIMEOUT_MS`.
    pub origin_timeout_ms: u32,
    /// `RATE_LIMIT_PER_MINUTE` (default 600): sustained requests per client per minute, in the
    /// isolate's own limiter (where the rate-limit bindings are not bound).
    pub rate_per_minute: u32,
    /// `RATE_LIMIT_BURST` (default 100): how many may arrive at once.
    pub rate_burst: u32,
    /// `RATE_LIMIT_PERIOD_SECS` (default 60; 10 or 60): the period of the `[[ratelimits]]`
    /// bindings, what `Retry-After` says when one refuses.
    pub rate_limit_period_secs: u32,
    /// `TRUSTED_CLIENTS` (a secret; default none): `name=key,…` server-side clients.
    pub trusted: TrustedClients,
    /// `TRUSTED_RATE_LIMIT_PER_MINUTE` (default 6000) and `TRUSTED_RATE_LIMIT_BURST` (default
    /// 1000): a trusted client's budget in the isolate's limiter.
    pub trusted_per_minute: u32,
    pub trusted_burst: u32,
    /// `CORS_ALLOWED_ORIGINS` (default none): `*` or a comma-separated list of origins.
    pub cors: AllowedOrigins,
    /// `CACHE_TTL_DIVISOR` (default 1; local runs only): divides every policy duration (tests).
    pub ttl_divisor: u32,
}

impl EdgeConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let deployment = match value("EDGE_ENV").as_deref() {
            None | Some("production") => Deployment::Production,
            Some("staging") => Deployment::Staging,
            Some("local") => Deployment::Local,
            Some(other) => {
                return Err(format!(
                    "EDGE_ENV={other:?} must be local, staging or production"
                ));
            }
        };
        let local = deployment == Deployment::Local;
        let origin_url = value("ORIGIN_URL")
            .map(|v| v.trim_end_matches('/').to_owned())
            .ok_or("ORIGIN_URL is required")?;
        if !(origin_url.starts_with("http://") || origin_url.starts_with("https://")) {
            return Err(format!(
                "ORIGIN_URL={origin_url:?} must start with https:// (or http:// locally)"
            ));
        }
        if origin_url.starts_with("http://") && !local {
            return Err(format!(
                "ORIGIN_URL={origin_url:?} would send EDGE_SECRET and every credential in clear: \
                 use https:// (http:// only with EDGE_ENV=local)"
            ));
        }
        let number = |name: &str, default: u32| -> Result<u32, String> {
            match value(name) {
                None => Ok(default),
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{name}={v:?} must be a whole number above 0")),
                },
            }
        };
        let previous = get("EDGE_SECRET_PREVIOUS").filter(|s| !s.is_empty());
        let edge_secret = match get("EDGE_SECRET").filter(|s| !s.is_empty()) {
            None if previous.is_some() => {
                return Err("EDGE_SECRET_PREVIOUS is set without EDGE_SECRET".into());
            }
            None => None,
            Some(current) => {
                let example = shared::secret::EXAMPLE;
                if !local && (current == example || previous.as_deref() == Some(example)) {
                    return Err(
                        "EDGE_SECRET is the published example from .dev.vars.example: \
                                set a secret of your own (wrangler secret put EDGE_SECRET)"
                            .into(),
                    );
                }
                let name = if current.len() < shared::secret::MIN_LEN {
                    "EDGE_SECRET"
                } else {
                    "EDGE_SECRET_PREVIOUS"
                };
                Some(
                    shared::secret::SharedSecret::new(current, previous)
                        .map_err(|reason| format!("{name} {reason}"))?,
                )
            }
        };
        let insecure_dev = value("EDGE_INSECURE_DEV").is_some_and(|v| v == "true");
        if insecure_dev && !local {
            return Err("EDGE_INSECURE_DEV=true is only for EDGE_ENV=local".into());
        }
        if edge_secret.is_none() && !insecure_dev {
            return Err(
                "EDGE_SECRET is required (wrangler secret put EDGE_SECRET); only a local \
                        run may go without it, with EDGE_INSECURE_DEV=true"
                    .into(),
            );
        }
        let public_host = match value("PUBLIC_HOST") {
            Some(host) => host.to_ascii_lowercase(),
            None if local => "localhost".to_owned(),
            None => {
                return Err(
                    "PUBLIC_HOST is required: the host the catalog is served on \
                     (catalog.example.com), on which edge cache keys are made"
                        .into(),
                );
            }
        };
        let host_ok = public_host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c));
        if !host_ok {
            return Err(format!(
                "PUBLIC_HOST={public_host:?} must be a host name (no scheme or path)"
            ));
        }
        let ttl_divisor = number("CACHE_TTL_DIVISOR", 1)?;
        if ttl_divisor != 1 && !local {
            return Err("CACHE_TTL_DIVISOR is a test knob: only with EDGE_ENV=local".into());
        }
        let rate_limit_period_secs = number("RATE_LIMIT_PERIOD_SECS", 60)?;
        if !matches!(rate_limit_period_secs, 10 | 60) {
            return Err(format!(
                "RATE_LIMIT_PERIOD_SECS={rate_limit_period_secs} must be 10 or 60 (the periods \
                 Cloudflare's rate-limit bindings have)"
            ));
        }
        Ok(EdgeConfig {
            deployment,
            origin_url,
            edge_secret,
            public_host,
            origin_timeout_ms: number(
                "ORIGIN_TIMEOUT_MS",
                shared::policy::budget::EDGE_ORIGIN_TIMEOUT_MS,
            )?,
            rate_per_minute: number("RATE_LIMIT_PER_MINUTE", 600)?,
            rate_burst: number("RATE_LIMIT_BURST", 100)?,
            rate_limit_period_secs,
            trusted: TrustedClients::parse(&get("TRUSTED_CLIENTS").unwrap_or_default())?,
            trusted_per_minute: number("TRUSTED_RATE_LIMIT_PER_MINUTE", 6000)?,
            trusted_burst: number("TRUSTED_RATE_LIMIT_BURST", 1000)?,
            cors: AllowedOrigins::parse(get("CORS_ALLOWED_ORIGINS").as_deref().unwrap_or("")),
            ttl_divisor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef-secret";

    fn cfg(pairs: &[(&str, &str)]) -> Result<EdgeConfig, String> {
        EdgeConfig::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    fn production(extra: &[(&'static str, &'static str)]) -> Result<EdgeConfig, String> {
        let mut pairs = vec![
            ("ORIGIN_URL", "https://origin.example"),
            ("EDGE_SECRET", SECRET),
            ("PUBLIC_HOST", "catalog.example"),
        ];
        for (k, v) in extra {
            pairs.retain(|(n, _)| n != k);
            pairs.push((k, v));
        }
        cfg(&pairs)
    }

    #[test]
    fn defaults_and_errors() {
        let c = cfg(&[
            ("EDGE_ENV", "local"),
            ("ORIGIN_URL", "http://127.0.0.1:8080/"),
            ("EDGE_INSECURE_DEV", "true"),
        ])
        .unwrap();
        assert_eq!(c.origin_url, "http://127.0.0.1:8080");
        assert_eq!(c.public_host, "localhost");
        assert_eq!(
            (
                c.origin_timeout_ms,
                c.rate_per_minute,
                c.rate_burst,
                c.ttl_divisor,
                c.rate_limit_period_secs,
                c.trusted_per_minute,
                c.trusted_burst
            ),
            (3000, 600, 100, 1, 60, 6000, 1000)
        );
        assert_eq!(c.edge_secret, None);
        assert!(cfg(&[]).unwrap_err().contains("ORIGIN_URL"));
        assert!(
            cfg(&[("ORIGIN_URL", "ftp://x")])
                .unwrap_err()
                .contains("ORIGIN_URL")
        );
        let err = production(&[("RATE_LIMIT_BURST", "lots")]).unwrap_err();
        assert!(err.contains("RATE_LIMIT_BURST"), "{err}");
        let err = production(&[("EDGE_ENV", "prod")]).unwrap_err();
        assert!(err.contains("EDGE_ENV"), "{err}");
        let err = production(&[("RATE_LIMIT_PERIOD_SECS", "30")]).unwrap_err();
        assert!(err.contains("RATE_LIMIT_PERIOD_SECS"), "{err}");
    }

    #[test]
    fn a_production_edge_needs_its_secret() {
        let err = cfg(&[("ORIGIN_URL", "https://x"), ("PUBLIC_HOST", "h")]).unwrap_err();
        assert!(err.contains("EDGE_SECRET"), "{err}");
        let err = production(&[("EDGE_SECRET", "fifteen-chars!!")]).unwrap_err();
        assert!(err.contains("at least 16"), "{err}");
        assert!(production(&[("EDGE_SECRET", "sixteen-chars!!!")]).is_ok());
        let c = production(&[]).unwrap();
        assert_eq!(c.deployment, Deployment::Production);
        assert_eq!(c.public_host, "catalog.example");
    }

    #[test]
    fn a_rotation_accepts_two_values_and_the_example_only_locally() {
        let c = production(&[("EDGE_SECRET_PREVIOUS", "0123456789abcdef-older")]).unwrap();
        let secret = c.edge_secret.unwrap();
        assert_eq!(secret.current(), SECRET);
        assert!(secret.check(b"0123456789abcdef-older").is_some());
        assert!(secret.check(SECRET.as_bytes()).is_some());
        let err = cfg(&[
            ("ORIGIN_URL", "https://x"),
            ("PUBLIC_HOST", "h"),
            ("EDGE_SECRET_PREVIOUS", "0123456789abcdef-older"),
        ])
        .unwrap_err();
        assert!(err.contains("without EDGE_SECRET"), "{err}");
        let err = production(&[("EDGE_SECRET_PREVIOUS", "short")]).unwrap_err();
        assert!(err.contains("EDGE_SECRET_PREVIOUS"), "{err}");
        let err = production(&[("EDGE_SECRET", shared::secret::EXAMPLE)]).unwrap_err();
        assert!(err.contains("published example"), "{err}");
        let err = production(&[("EDGE_SECRET_PREVIOUS", shared::secret::EXAMPLE)]).unwrap_err();
        assert!(err.contains("published example"), "{err}");
        assert!(
            cfg(&[
                ("EDGE_ENV", "local"),
                ("ORIGIN_URL", "http://127.0.0.1:8080"),
                ("EDGE_SECRET", shared::secret::EXAMPLE)
            ])
            .is_ok()
        );
    }

    #[test]
    fn only_a_local_run_may_relax_the_rules() {
        let cases: [(&str, &str, &str); 4] = [
            ("ORIGIN_URL", "http://origin.example", "in clear"),
            ("EDGE_INSECURE_DEV", "true", "EDGE_INSECURE_DEV"),
            ("CACHE_TTL_DIVISOR", "30", "CACHE_TTL_DIVISOR"),
            ("PUBLIC_HOST", "", "PUBLIC_HOST"),
        ];
        for (name, value, says) in cases {
            for env in ["production", "staging"] {
                let err = production(&[("EDGE_ENV", env), (name, value)]).unwrap_err();
                assert!(err.contains(says), "{env} {name}: {err}");
            }
            assert!(
                production(&[("EDGE_ENV", "local"), (name, value)]).is_ok(),
                "{name}"
            );
        }
        let err = production(&[("PUBLIC_HOST", "https://catalog.example/")]).unwrap_err();
        assert!(err.contains("PUBLIC_HOST"), "{err}");
    }

    #[test]
    fn trusted_clients_are_read_and_checked() {
        let c =
            production(&[("TRUSTED_CLIENTS", "nextjs=0123456789abcdef0123456789abcdef")]).unwrap();
        assert_eq!(
            c.trusted.identify("0123456789abcdef0123456789abcdef"),
            Some("nextjs")
        );
        let err = production(&[("TRUSTED_CLIENTS", "nextjs=short")]).unwrap_err();
        assert!(err.contains("TRUSTED_CLIENTS"), "{err}");
    }
}
