//! Configuration: every environment variable the origin reads, read and validated here, once,
//! at start. A bad value fails start-up with the variable's name. Nothing else reads the
//! environment.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use shared::ratelimit::{SLIDING_BUCKETS, Tier, TierSpec, WindowKind};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required but not set")]
    Missing { name: &'static str },
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Everything the origin needs to run. Secrets are wrapped so `{:?}` never prints them.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `DATABASE_URL` (required): PostgreSQL, directly or through PgBouncer.
    pub database_url: SecretString,
    /// `REDIS_URL` (required).
    pub redis_url: SecretString,
    /// `ORIGIN_ADDR` (default `127.0.0.1:8080`); port 0 picks a free port.
    pub addr: SocketAddr,
    /// `METRICS_ADDR` (default `127.0.0.1:9091`): the operator listener (`/metrics`, `/readyz`,
    /// `/healthz`). Keep it off the public network; port 0 picks a free port.
    pub metrics_addr: SocketAddr,
    /// `DB_POOLER` (default `none`; or `pgbouncer-transaction`): `DATABASE_URL` points at a
    /// transaction-mode pooler, so nothing may depend on session state (see `db`).
    pub db_behind_transaction_pooler: bool,
    /// `DB_MAX_CONNECTIONS` (default 10, the guide's per-container maximum).
    pub db_max_connections: u32,
    /// `DB_IDLE_TIMEOUT_SECS` (default 30).
    pub db_idle_timeout: Duration,
    /// `DB_CONNECT_TIMEOUT_SECS` (default 10): bounds connect, handshake and waiting for a
    /// pooled connection (sqlx's `acquire_timeout` covers all three).
    pub db_connect_timeout: Duration,
    /// `REDIS_TIMEOUT_MS` (default 50): bound on every Redis command on the request path. Past
    /// it the request carries on without Redis (catalog from PostgreSQL, limits fail open).
    pub redis_timeout: Duration,
    /// `REDIS_KEY_PREFIX` (default empty): namespace in front of every key, so tests and
    /// several deployments can share one Redis without seeing each other's keys.
    pub redis_key_prefix: String,
    /// `EDGE_SECRET` (optional): the secret the edge presents; without it, forwarded client
    /// addresses are never trusted.
    pub edge_secret: Option<SecretString>,
    /// `HEADER_READ_TIMEOUT_MS` (default 5000): a client must send a whole request head within
    /// this; it is also how long an idle kept-alive connection is kept.
    pub header_read_timeout: Duration,
    /// `REQUEST_TIMEOUT_MS` (default 10000): longest a request may take; past it, 504.
    pub request_timeout: Duration,
    /// `MAX_CONCURRENT_REQUESTS` (default 2048): requests in flight at once; beyond, 503 at once
    /// (load shedding) rather than an unbounded queue.
    pub max_concurrent_requests: usize,
    /// `PASSWORD_QUEUE_TIMEOUT_MS` (default 2000): longest a sign-in or registration waits for a
    /// password-hashing slot (one per core) before it is answered 503.
    pub password_queue_timeout: Duration,
    /// `LOGIN_MAX_FAILURES` (default 10): failed sign-ins per account in 15 minutes, from any
    /// address, before that account's sign-ins are refused until the window ends.
    pub login_max_failures: u64,
    /// `SESSION_MAX_AGE_SECS` (default 43200, 12 h): absolute session lifetime, however active.
    pub session_max_age: Duration,
    /// `CACHE_TTL_DIVISOR` (default 1): divides every policy duration (tests only).
    pub cache_ttl_divisor: u32,
    /// `L1_CACHE` (default `on`): L1 in front of Redis (`off` to disable).
    pub l1_enabled: bool,
    /// `L1_TTL_MS` (default 2000): longest an entry lives in L1.
    pub l1_ttl: Duration,
    /// `L1_MAX_BYTES` (default 16 MiB): memory bound of L1.
    pub l1_max_bytes: u64,
    /// `METRICS` (default `on`): record Prometheus metrics (`off` only to measure their cost).
    pub metrics_enabled: bool,
    /// `RATE_LIMIT` (default `on`): the origin's rate-limit tiers (`off` only to measure their
    /// cost, or behind another limiter).
    pub rate_limit_enabled: bool,
    /// `RATE_LIMITS` (default: the guide's table): per-tier overrides `name=limit/window_ms`,
    /// comma-separated (tests only).
    pub rate_limits: Vec<TierLimit>,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads from any lookup, so tests can configure without touching the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing { name })
        };
        let database_url = required("DATABASE_URL")?;
        check_scheme(
            "DATABASE_URL",
            &database_url,
            &["postgres://", "postgresql://"],
        )?;
        let redis_url = required("REDIS_URL")?;
        check_scheme(
            "REDIS_URL",
            &redis_url,
            &["redis://", "rediss://", "unix://", "redis+cluster://"],
        )?;
        if let Err(reason) = redis_cluster_nodes(&redis_url) {
            return Err(ConfigError::Invalid {
                name: "REDIS_URL",
                value: "<redacted>".into(),
                reason,
            });
        }

        let addr = parse_or(&get, "ORIGIN_ADDR", "127.0.0.1:8080".parse().ok())?;
        let metrics_addr = parse_or(&get, "METRICS_ADDR", "127.0.0.1:9091".parse().ok())?;
        let db_behind_transaction_pooler = match get("DB_POOLER").as_deref().map(str::trim) {
            None | Some("") | Some("none") => false,
            Some("pgbouncer-transaction") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "DB_POOLER",
                    value: other.to_owned(),
                    reason: "must be none or pgbouncer-transaction".into(),
                });
            }
        };
        let db_max_connections: u32 = parse_or(&get, "DB_MAX_CONNECTIONS", Some(10))?;
        positive("DB_MAX_CONNECTIONS", db_max_connections.into())?;
        let idle: u64 = parse_or(&get, "DB_IDLE_TIMEOUT_SECS", Some(30))?;
        let connect: u64 = parse_or(&get, "DB_CONNECT_TIMEOUT_SECS", Some(10))?;
        positive("DB_CONNECT_TIMEOUT_SECS", connect)?;
        let redis_ms: u64 = parse_or(&get, "REDIS_TIMEOUT_MS", Some(50))?;
        positive("REDIS_TIMEOUT_MS", redis_ms)?;
        let header_read: u64 = parse_or(&get, "HEADER_READ_TIMEOUT_MS", Some(5000))?;
        positive("HEADER_READ_TIMEOUT_MS", header_read)?;
        let request_timeout: u64 = parse_or(&get, "REQUEST_TIMEOUT_MS", Some(10_000))?;
        positive("REQUEST_TIMEOUT_MS", request_timeout)?;
        let max_concurrent: usize = parse_or(&get, "MAX_CONCURRENT_REQUESTS", Some(2048))?;
        positive("MAX_CONCURRENT_REQUESTS", max_concurrent as u64)?;
        let password_wait: u64 = parse_or(&get, "PASSWORD_QUEUE_TIMEOUT_MS", Some(2000))?;
        positive("PASSWORD_QUEUE_TIMEOUT_MS", password_wait)?;
        let login_max_failures: u64 = parse_or(&get, "LOGIN_MAX_FAILURES", Some(10))?;
        positive("LOGIN_MAX_FAILURES", login_max_failures)?;
        let session_max_age: u64 = parse_or(&get, "SESSION_MAX_AGE_SECS", Some(12 * 3600))?;
        positive("SESSION_MAX_AGE_SECS", session_max_age)?;
        let divisor: u32 = parse_or(&get, "CACHE_TTL_DIVISOR", Some(1))?;
        positive("CACHE_TTL_DIVISOR", divisor.into())?;

        let redis_key_prefix = get("REDIS_KEY_PREFIX").unwrap_or_default();
        if redis_key_prefix
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '*' | '{' | '}'))
        {
            return Err(ConfigError::Invalid {
                name: "REDIS_KEY_PREFIX",
                value: redis_key_prefix,
                // Braces would make a hash tag of the prefix: every key in one cluster slot.
                reason: "must not contain whitespace, '*', '{' or '}'".into(),
            });
        }
        let edge_secret = get("EDGE_SECRET").filter(|v| !v.is_empty());
        let local = get("ORIGIN_ENV").is_some_and(|v| v.trim() == "local");
        if edge_secret.as_deref() == Some(EXAMPLE_EDGE_SECRET) && !local {
            return Err(ConfigError::Invalid {
                name: "EDGE_SECRET",
                value: "<redacted>".into(),
                reason: "is the published example from .dev.vars.example; set a secret of your \
                         own (or ORIGIN_ENV=local for a local run)"
                    .into(),
            });
        }
        if edge_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Invalid {
                name: "EDGE_SECRET",
                value: "<redacted>".into(),
                reason: "must be at least 16 characters".into(),
            });
        }

        let switch = |name: &'static str| -> Result<bool, ConfigError> {
            match get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                None | Some("") | Some("on") | Some("true") | Some("1") => Ok(true),
                Some("off") | Some("false") | Some("0") => Ok(false),
                Some(other) => Err(ConfigError::Invalid {
                    name,
                    value: other.to_owned(),
                    reason: "must be on or off".into(),
                }),
            }
        };
        let l1_enabled = switch("L1_CACHE")?;
        let metrics_enabled = switch("METRICS")?;
        let rate_limit_enabled = switch("RATE_LIMIT")?;
        let l1_ttl_ms: u64 = parse_or(&get, "L1_TTL_MS", Some(2000))?;
        positive("L1_TTL_MS", l1_ttl_ms)?;
        let l1_max_bytes: u64 = parse_or(&get, "L1_MAX_BYTES", Some(16 << 20))?;
        positive("L1_MAX_BYTES", l1_max_bytes)?;
        let overrides = get("RATE_LIMITS").unwrap_or_default();
        let rate_limits = tier_limits(&overrides).map_err(|reason| ConfigError::Invalid {
            name: "RATE_LIMITS",
            value: overrides.clone(),
            reason,
        })?;

        Ok(Settings {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            addr,
            metrics_addr,
            db_behind_transaction_pooler,
            db_max_connections,
            db_idle_timeout: Duration::from_secs(idle),
            db_connect_timeout: Duration::from_secs(connect),
            redis_timeout: Duration::from_millis(redis_ms),
            redis_key_prefix,
            edge_secret: edge_secret.map(Into::into),
            session_max_age: Duration::from_secs(session_max_age),
            login_max_failures,
            password_queue_timeout: Duration::from_millis(password_wait),
            header_read_timeout: Duration::from_millis(header_read),
            request_timeout: Duration::from_millis(request_timeout),
            max_concurrent_requests: max_concurrent,
            cache_ttl_divisor: divisor,
            l1_enabled,
            l1_ttl: Duration::from_millis(l1_ttl_ms),
            l1_max_bytes,
            metrics_enabled,
            rate_limit_enabled,
            rate_limits,
        })
    }
}

/// One tier as configured: the table's numbers, or a test override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierLimit {
    pub tier: Tier,
    pub name: &'static str,
    pub limit: u32,
    pub window: Duration,
    pub kind: WindowKind,
}

impl TierLimit {
    pub fn from_spec(tier: Tier, spec: TierSpec) -> Self {
        TierLimit {
            tier,
            name: spec.name,
            limit: spec.limit,
            window: Duration::from_secs(u64::from(spec.window_secs)),
            kind: spec.kind,
        }
    }

    /// Tokens asked for per Redis round trip.
    pub fn lease_size(&self) -> u32 {
        (self.limit / 100).max(1)
    }

    /// Width of one sliding-window bucket.
    pub fn bucket_ms(&self) -> u64 {
        let window = self.window.as_millis() as u64;
        (window / SLIDING_BUCKETS).max(1)
    }
}

/// The production table from `shared`, with `RATE_LIMITS` overrides applied
/// (`api=5/2000,ops=2/1000`: limit per window in ms; tests only).
pub fn tier_limits(overrides: &str) -> Result<Vec<TierLimit>, String> {
    let mut limits: Vec<TierLimit> = Tier::ALL
        .iter()
        .map(|&t| TierLimit::from_spec(t, t.spec()))
        .collect();
    for item in overrides
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, rest) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not name=limit/window_ms"))?;
        let (limit, window) = rest
            .split_once('/')
            .ok_or_else(|| format!("{item:?} is not name=limit/window_ms"))?;
        let limit: u32 = limit
            .parse()
            .map_err(|_| format!("{item:?}: limit is not a number"))?;
        let window: u64 = window
            .parse()
            .map_err(|_| format!("{item:?}: window is not a number of ms"))?;
        if limit == 0 || window < SLIDING_BUCKETS {
            return Err(format!(
                "{item:?}: limit must be > 0 and window at least {SLIDING_BUCKETS} ms"
            ));
        }
        let slot = limits
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| format!("{item:?}: no tier named {name}"))?;
        slot.limit = limit;
        slot.window = Duration::from_millis(window);
    }
    Ok(limits)
}

/// The secret `.dev.vars.example` publishes: anyone can send it, so it is refused outside a
/// local run (`ORIGIN_ENV=local`).
pub const EXAMPLE_EDGE_SECRET: &str = "dev-only-edge-secret-change-me";

/// The database URL of the subcommands that change the schema or bulk-load (`migrate`, `seed`,
/// `admin`): `MIGRATE_DATABASE_URL` when set (PostgreSQL itself, when `DATABASE_URL` points at a
/// transaction-mode pooler, which cannot run migrations), else `DATABASE_URL`.
pub fn database_url_from_env() -> Result<SecretString, ConfigError> {
    let set = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    };
    let (name, url) = set("MIGRATE_DATABASE_URL")
        .or_else(|| set("DATABASE_URL"))
        .ok_or(ConfigError::Missing {
            name: "DATABASE_URL",
        })?;
    check_scheme(name, &url, &["postgres://", "postgresql://"])?;
    Ok(url.into())
}

/// Where a health probe on this host reaches the operator listener: `METRICS_ADDR`, with an
/// unspecified address (`0.0.0.0`) replaced by loopback.
pub fn probe_addr() -> Result<SocketAddr, ConfigError> {
    let get = |name: &str| std::env::var(name).ok();
    let mut addr: SocketAddr = parse_or(&get, "METRICS_ADDR", "127.0.0.1:9091".parse().ok())?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

/// `SENTRY_DSN` (optional): where 5xx errors and panics are reported; unset, nothing is sent.
pub fn sentry_dsn() -> Option<String> {
    std::env::var("SENTRY_DSN")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// `RUST_LOG` (default `info`, with sqlx's per-statement logs kept to errors): the tracing
/// filter, read before anything else so start-up errors are logged too.
pub fn log_filter() -> String {
    std::env::var("RUST_LOG")
        .unwrap_or_else(|_| "info,sqlx::query=error,sqlx::postgres::notice=warn".to_owned())
}

/// The nodes a `redis+cluster://[user:password@]host:port,host:port,…` URL names, as one
/// `redis://` URL each (credentials repeated); `Ok(None)` for any other URL (one server).
/// The client learns the rest of the cluster from whichever of them answers first.
pub fn redis_cluster_nodes(url: &str) -> Result<Option<Vec<String>>, String> {
    let Some(rest) = url.strip_prefix("redis+cluster://") else {
        return Ok(None);
    };
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let mut nodes = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        let valid = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !valid {
            return Err(format!(
                "a cluster URL lists host:port pairs separated by commas (got {host:?})"
            ));
        }
        nodes.push(format!("redis://{auth}{host}"));
    }
    Ok(Some(nodes))
}

fn check_scheme(name: &'static str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if schemes.iter().any(|s| value.starts_with(s)) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name,
            value: "<redacted>".into(),
            reason: format!("must start with one of {}", schemes.join(", ")),
        })
    }
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Option<T>,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => default.ok_or(ConfigError::Missing { name }),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value: raw.clone(),
                reason: e.to_string(),
            }),
    }
}

fn positive(name: &'static str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        Err(ConfigError::Invalid {
            name,
            value: "0".into(),
            reason: "must be greater than zero".into(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("DATABASE_URL", "postgres://localhost/x"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
    ];

    #[test]
    fn defaults_are_the_guides() -> Result<(), ConfigError> {
        let s = settings(&BASE)?;
        assert_eq!(s.db_max_connections, 10);
        assert_eq!(s.db_idle_timeout, Duration::from_secs(30));
        assert_eq!(s.db_connect_timeout, Duration::from_secs(10));
        assert_eq!(s.addr.to_string(), "127.0.0.1:8080");
        Ok(())
    }

    #[test]
    fn errors_name_the_variable() {
        let err = settings(&[("REDIS_URL", "redis://x")])
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        let mut bad = BASE.to_vec();
        bad.push(("DB_MAX_CONNECTIONS", "ten"));
        let err = settings(&bad).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("DB_MAX_CONNECTIONS"), "{err}");
        let mut bad = BASE.to_vec();
        bad.push(("DB_MAX_CONNECTIONS", "0"));
        assert!(settings(&bad).is_err());
        let err = settings(&[("DATABASE_URL", "mysql://x"), ("REDIS_URL", "redis://x")])
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_published_example_secret_is_refused_outside_local_runs() {
        let mut pairs = BASE.to_vec();
        pairs.push(("EDGE_SECRET", EXAMPLE_EDGE_SECRET));
        let err = settings(&pairs).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("EDGE_SECRET"), "{err}");
        pairs.push(("ORIGIN_ENV", "local"));
        assert!(settings(&pairs).is_ok());
    }

    #[test]
    fn secrets_never_print() -> Result<(), ConfigError> {
        let mut pairs = BASE.to_vec();
        pairs.push(("EDGE_SECRET", "super-secret-value-123"));
        let s = settings(&pairs)?;
        assert!(!format!("{s:?}").contains("super-secret-value-123"));
        Ok(())
    }

    #[test]
    fn table_and_overrides() {
        let prod = tier_limits("").unwrap();
        assert_eq!(prod.len(), 4);
        assert_eq!(
            (prod[0].name, prod[0].limit, prod[0].window),
            ("api", 1000, Duration::from_secs(60))
        );
        let t = tier_limits("api=5/2000, ops=2/1000").unwrap();
        assert_eq!((t[0].limit, t[0].window), (5, Duration::from_millis(2000)));
        assert_eq!((t[3].limit, t[3].kind), (2, WindowKind::Fixed));
        assert_eq!(t[1].limit, 600, "untouched tiers keep the table's numbers");
        for bad in ["api", "api=5", "nope=1/1000", "api=0/1000", "api=5/x"] {
            assert!(tier_limits(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_urls_name_every_node() {
        assert_eq!(redis_cluster_nodes("redis://127.0.0.1:6379"), Ok(None));
        assert_eq!(
            redis_cluster_nodes("redis+cluster://:pw@10.0.0.1:7001,10.0.0.2:7002/"),
            Ok(Some(vec![
                "redis://:pw@10.0.0.1:7001".to_owned(),
                "redis://:pw@10.0.0.2:7002".to_owned()
            ]))
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://a:x",
        ] {
            assert!(redis_cluster_nodes(bad).is_err(), "{bad}");
            let mut pairs = BASE.to_vec();
            pairs[1] = ("REDIS_URL", bad);
            assert!(settings(&pairs).is_err(), "{bad}");
        }
        let mut pairs = BASE.to_vec();
        pairs.push(("REDIS_KEY_PREFIX", "{app}:"));
        assert!(
            settings(&pairs).is_err(),
            "a braced prefix would be a hash tag"
        );
    }
}
