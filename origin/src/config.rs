//! Configuration: every environment variable the origin reads, declared once in [`VARS`] (name,
//! default, meaning) and read and validated here, once, at start. A bad value fails start-up with
//! the variable's name. Nothing else reads the environment. The README's settings table is
//! [`markdown_table`] of the same list (a test keeps them equal), so the two cannot drift.
//!
//! The transport to each dependency is decided here too, never silently: [`PgTls`] is what
//! `DATABASE_URL`'s libpq parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) ask for, and
//! [`RedisTls`] what `REDIS_URL`'s scheme and the `REDIS_*_FILE` settings ask for. Certificate
//! files are read and parsed at start, so a wrong path is a start-up error naming its variable,
//! not a failed handshake on the first request.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{SecretSlice, SecretString};
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

impl ConfigError {
    /// An invalid value that must not be echoed (a URL with a password, a secret).
    fn redacted(name: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            name,
            value: "<redacted>".into(),
            reason: reason.into(),
        }
    }
}

/// What a variable is when it is not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenUnset {
    /// Start-up fails without it.
    Required,
    /// Unset means off / absent.
    Unset,
    /// This value, parsed like one that was set.
    Value(&'static str),
    /// Computed (described in words for the table).
    Described(&'static str),
}

/// One environment variable: the single source of its name, default and meaning.
#[derive(Clone, Copy, Debug)]
pub struct Var {
    pub name: &'static str,
    pub default: WhenUnset,
    pub doc: &'static str,
}

const fn var(name: &'static str, default: WhenUnset, doc: &'static str) -> Var {
    Var { name, default, doc }
}

use WhenUnset::{Described, Required, Unset, Value};

/// Every variable the `origin` binary reads, in the order the README lists them.
pub static VARS: &[Var] = &[
    var(
        "DATABASE_URL",
        Required,
        "PostgreSQL (or PgBouncer), with libpq's TLS parameters: `sslmode` (`disable`, `prefer`, \
         `require`, `verify-ca`, `verify-full`; `verify-full` recommended, and required to name \
         one explicitly for a host that is not loopback), `sslrootcert`, `sslcert`, `sslkey` (PEM \
         files)",
    ),
    var(
        "MIGRATE_DATABASE_URL",
        Described("`DATABASE_URL`"),
        "PostgreSQL itself, for `migrate`, `seed` and `admin` when `DATABASE_URL` is a pooler",
    ),
    var(
        "DB_POOLER",
        Value("none"),
        "`pgbouncer-transaction` when `DATABASE_URL` is a transaction-mode PgBouncer",
    ),
    var(
        "DB_MAX_CONNECTIONS",
        Value("10"),
        "pool size (the guide's per-container maximum)",
    ),
    var(
        "DB_IDLE_TIMEOUT_SECS",
        Value("30"),
        "idle connections are closed after this",
    ),
    var(
        "DB_CONNECT_TIMEOUT_SECS",
        Value("10"),
        "bound on connect + TLS handshake + waiting for a pooled connection",
    ),
    var(
        "REDIS_URL",
        Required,
        "Redis: `redis://[user:password@]host:port`, `rediss://…` (TLS, verified), or a cluster \
         as `redis+cluster://` / `rediss+cluster://[user:password@]h1:p1,h2:p2,…`; \
         `rediss://…/#insecure` (no verification) only with `ORIGIN_ENV=local`",
    ),
    var(
        "REDIS_CA_FILE",
        Unset,
        "PEM file of the CA(s) a `rediss://` server must chain to (instead of the bundled \
         Mozilla roots)",
    ),
    var(
        "REDIS_CLIENT_CERT_FILE",
        Unset,
        "PEM client certificate for mutual TLS (with `REDIS_CLIENT_KEY_FILE`)",
    ),
    var(
        "REDIS_CLIENT_KEY_FILE",
        Unset,
        "PEM private key of that certificate",
    ),
    var(
        "HTTP_CA_FILE",
        Unset,
        "PEM file of extra CA(s) every outbound HTTPS call trusts beside the bundled Mozilla roots \
         (the purge sinks, the sync upstreams, Sentry): a private CA or a TLS-inspecting proxy's",
    ),
    var(
        "REDIS_TIMEOUT_MS",
        Value("50"),
        "bound on every Redis command; past it the request goes on without Redis",
    ),
    var(
        "REDIS_KEY_PREFIX",
        Unset,
        "namespace in front of every key (tests, several deployments on one Redis); no `{`/`}`",
    ),
    var(
        "ORIGIN_ADDR",
        Value("127.0.0.1:8080"),
        "public listen address",
    ),
    var(
        "METRICS_ADDR",
        Value("127.0.0.1:9091"),
        "the operator listener: `/metrics`, `/readyz`, `/healthz` (never on `ORIGIN_ADDR`)",
    ),
    var(
        "ORIGIN_ENV",
        Unset,
        "`staging` or `production` (Sentry's environment; required with `SENTRY_DSN`), or \
         `local` for a development run: allows the published example `EDGE_SECRET`, \
         `rediss://…/#insecure`, and a non-loopback `DATABASE_URL` without `sslmode`",
    ),
    var(
        "EDGE_SECRET",
        Unset,
        "the secret the edge presents (≥ 16 characters); without it forwarded client addresses \
         are never trusted",
    ),
    var(
        "EDGE_SECRET_PREVIOUS",
        Unset,
        "while rotating `EDGE_SECRET`: the value being replaced, still accepted from the edge \
         (and sent by nothing); unset it once every edge presents the new one",
    ),
    var(
        "L1_CACHE",
        Value("on"),
        "the in-process layer in front of Redis (`off` to disable)",
    ),
    var("L1_TTL_MS", Value("2000"), "longest an entry lives in L1"),
    var(
        "L1_MAX_BYTES",
        Value("16777216"),
        "memory bound of L1 (and of the compressed bodies beside it)",
    ),
    var(
        "RATE_LIMITS",
        Described("the guide's table"),
        "per-tier override `api=5/2000,ops=2/1000` (limit/window ms; tests)",
    ),
    var(
        "RATE_LIMIT",
        Value("on"),
        "the rate-limit tiers (`off` only to measure their cost)",
    ),
    var(
        "METRICS",
        Value("on"),
        "Prometheus metrics (`off` only to measure their cost)",
    ),
    var("CACHE_TTL_DIVISOR", Value("1"), "divides every TTL (tests)"),
    var(
        "HEADER_READ_TIMEOUT_MS",
        Value("5000"),
        "a request head must arrive within this; also the idle keep-alive timeout",
    ),
    var(
        "MAX_CONNECTIONS_PER_PEER",
        Value("512"),
        "open connections one socket peer (IPv6 by /64) may hold; more are closed at once (0: \
         no bound). Behind a load balancer the peers are its addresses: size it for them",
    ),
    var(
        "BODY_READ_TIMEOUT_MS",
        Value("5000"),
        "a request body must arrive within this, read before the request takes an in-flight \
         slot; past it a JSON 408 and the connection is closed",
    ),
    var(
        "MAX_IN_FLIGHT_PER_CLIENT",
        Value("64"),
        "requests one client (IPv6 by /64) may have in flight; beyond, 429 + `Retry-After` at \
         once (0: no bound). The client is the edge's `X-Client-IP` with `EDGE_SECRET`, else \
         the socket peer",
    ),
    var(
        "MAX_SESSIONS_PER_USER",
        Value("10"),
        "live sessions one user may hold; a new sign-in beyond ends the oldest",
    ),
    var(
        "REQUEST_TIMEOUT_MS",
        Value("2500"),
        "longest a request may run; past it a JSON 504 (its transaction rolls back). Shorter than \
         the edge's `ORIGIN_TIMEOUT_MS` by at least 500 ms (`shared::policy::budget`), so the \
         edge relays the origin's own answer",
    ),
    var(
        "MAX_CONCURRENT_REQUESTS",
        Value("2048"),
        "requests in flight at once; beyond, 503 + `Retry-After` at once (load shedding)",
    ),
    var(
        "PASSWORD_QUEUE_TIMEOUT_MS",
        Value("2000"),
        "longest a sign-in waits for a hashing slot (one per core, shared fairly between \
         clients); past it 503 + `Retry-After`",
    ),
    var(
        "LOGIN_MAX_FAILURES",
        Value("10"),
        "failed sign-ins per account and client (address, or a browser's device cookie) in \
         15 min before that client's sign-ins to it get 429",
    ),
    var(
        "LOGIN_WINDOW_SECS",
        Value("900"),
        "the window of `LOGIN_MAX_FAILURES` (per account and client)",
    ),
    var(
        "LOGIN_MAX_FAILURES_PER_ACCOUNT",
        Value("100"),
        "consecutive failed sign-ins per account from clients without its device cookie (many \
         addresses guessing one account), until a successful sign-in; not renewed by a window \
         (NIST SP 800-63B 5.2.2). Its owner's known browsers keep their own budget",
    ),
    var(
        "REGISTRATIONS_PER_HOUR",
        Value("10"),
        "sign-up attempts per address (IPv6: per /64, twice that per /56, four times per /48) per hour",
    ),
    var(
        "SESSION_MAX_AGE_SECS",
        Value("43200"),
        "absolute session lifetime (12 h), however active",
    ),
    var(
        "SHUTDOWN_GRACE_SECS",
        Value("10"),
        "after SIGTERM, how long in-flight requests may finish (keep it below ECS's \
         `stopTimeout`, 30 s by default)",
    ),
    var(
        "EDGE_PURGE_URL",
        Unset,
        "the edge's purge route (`https://catalog.example.com/__edge/purge`; `make dev` sets the \
         local worker's): after a catalog change the origin posts the changed cache tags there, \
         with `EDGE_SECRET` (required with it)",
    ),
    var(
        "CLOUDFLARE_ZONE_ID",
        Unset,
        "with `CLOUDFLARE_API_TOKEN`: purge changed cache tags from the zone's cache through \
         Cloudflare's API (every data centre)",
    ),
    var(
        "CLOUDFLARE_API_TOKEN",
        Unset,
        "an API token with the zone's Cache Purge permission (a secret)",
    ),
    var(
        "CLOUDFLARE_API_URL",
        Value("https://api.cloudflare.com/client/v4"),
        "Cloudflare's API (tests point it at a stand-in)",
    ),
    var(
        "NEXT_REVALIDATE_URL",
        Unset,
        "the Next.js frontend's revalidation route (`https://www.example.com/api/revalidate`): \
         changed cache tags are posted there with `NEXT_REVALIDATE_SECRET` (required with it)",
    ),
    var(
        "NEXT_REVALIDATE_SECRET",
        Unset,
        "the secret the revalidation route expects in `X-Revalidate-Secret` (≥ 16 characters)",
    ),
    var(
        "PURGE_BATCH_MS",
        Value("100"),
        "changes within this window go to the fleet's purge queue (Redis) together, each tag \
         once; the sender looks for new tags this often",
    ),
    var(
        "EDGE_PURGE_RATE",
        Value("5/s"),
        "the fleet's budget of calls to `EDGE_PURGE_URL` (`N/s`, `N/min`, `N/h`; up to 100 tags \
         a call): keep it under the edge's per-client limit for the origin's address \
         (`RATE_LIMIT_PER_MINUTE`)",
    ),
    var(
        "CLOUDFLARE_PURGE_RATE",
        Value("5/s"),
        "the fleet's budget of calls to Cloudflare's purge API, up to 100 tags a call: at or \
         under the account's plan, less what else purges on the account (Cloudflare, per \
         account: Free `5/min`, Pro `5/s`, Business `10/s`, Enterprise `50/s`)",
    ),
    var(
        "NEXT_REVALIDATE_RATE",
        Value("5/s"),
        "the fleet's budget of calls to `NEXT_REVALIDATE_URL`, up to 100 tags a call",
    ),
    var(
        "SYNC_PROVIDERS",
        Unset,
        "the upstreams `origin sync` (and `SYNC_INTERVAL_SECS`) read: `provider=mapping@url,…` \
         (`5sim=5sim@https://5sim.net/v1/guest/prices`; mappings: `5sim`, `sms-activate`, in \
         `origin/sync/`); a secret (URLs carry API keys); URLs `https://` except to this machine \
         or with `ORIGIN_ENV=local`, with no comma",
    ),
    var(
        "SYNC_INTERVAL_SECS",
        Value("0"),
        "`serve` syncs every provider this often, one replica per provider for the fleet (a Redis \
         lock); 0: only `origin sync`",
    ),
    var(
        "SYNC_TIMEOUT_SECS",
        Value("60"),
        "bound on one fetch of an upstream's document (connect to last byte)",
    ),
    var(
        "SYNC_DEADLINE_SECS",
        Value("300"),
        "bound on one whole sync run (fetch, read, diff, write); past it nothing is applied",
    ),
    var(
        "SYNC_GUARD_MAX_MOVE",
        Value("10"),
        "a price moving by this factor or more, up or down, is suspicious (the sync guard)",
    ),
    var(
        "SYNC_GUARD_MAX_SUSPICIOUS_PCT",
        Value("10"),
        "a run where this share (%) of a provider's prices is suspicious is held",
    ),
    var(
        "SYNC_GUARD_MAX_DRIFT_PCT",
        Value("50"),
        "a run moving the provider's median price more than this (%) from its baseline is held",
    ),
    var(
        "SYNC_GUARD_BASELINE_SECS",
        Value("604800"),
        "the baseline is renewed by a good run once it is this old (or by `origin sync --accept`)",
    ),
    var(
        "SYNC_ATTEMPTS",
        Value("4"),
        "tries per run on a timeout, 5xx or 429 (backoff 0.25 s doubling, with jitter; \
         `Retry-After` honoured up to 30 s)",
    ),
    var(
        "SYNC_MAX_BYTES",
        Value("268435456"),
        "largest upstream document read (it streams: memory holds one country at a time plus \
         the priced rows)",
    ),
    var(
        "SYNC_BREAKER_SECS",
        Value("300"),
        "after 3 failed runs in a row a provider is skipped this long (its circuit opens)",
    ),
    var(
        "SENTRY_DSN",
        Unset,
        "where 5xx errors and panics are reported; unset, nothing is sent",
    ),
    var(
        "RUST_LOG",
        Value(DEFAULT_LOG_FILTER),
        "log filter (JSON lines, one span per request with its `x-request-id`; on stdout from \
         `serve`, on stderr from the other commands, whose stdout is their answer)",
    ),
    var(
        "ADMIN_PASSWORD",
        Unset,
        "`origin admin create`'s password when `--password` is not given",
    ),
    var(
        "FAILPOINTS",
        Unset,
        "fault injection for tests (`respond::cacheable=panic`); only in a binary built with the \
         `failpoints` feature, which a release build is not",
    ),
];

/// The variables that carry credentials: in a deployment only ever from a secret store (the task
/// definition's `secrets`, never its plain `environment`, which anyone allowed
/// `ecs:DescribeTaskDefinition` can read); `origin check --ecs-template` fails one in the open.
pub static SECRETS: &[&str] = &[
    "DATABASE_URL",
    "MIGRATE_DATABASE_URL",
    "REDIS_URL",
    "EDGE_SECRET",
    "EDGE_SECRET_PREVIOUS",
    "SENTRY_DSN",
    "CLOUDFLARE_API_TOKEN",
    "NEXT_REVALIDATE_SECRET",
    "SYNC_PROVIDERS",
    "ADMIN_PASSWORD",
];

/// [`VARS`] as JSON (`origin env --json`): what the infrastructure code checks the settings it
/// passes against (`ops/cdk/origin-settings.json`, kept equal by a test).
pub fn json_list() -> String {
    let list: Vec<serde_json::Value> = VARS
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": v.name,
                "default": match v.default {
                    Value(d) => Some(d),
                    _ => None,
                },
                "required": v.default == Required,
                "secret": SECRETS.contains(&v.name),
            })
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&list).unwrap_or_default();
    out.push('\n');
    out
}

/// The log filter when `RUST_LOG` is unset: `info`, with sqlx's per-statement logs kept to errors.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx::query=error,sqlx::postgres::notice=warn";

/// [`VARS`] as the README's markdown table.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for v in VARS {
        let default = match v.default {
            Required => "(required)".to_owned(),
            Unset => "unset".to_owned(),
            Value(v) => format!("`{v}`"),
            Described(d) => d.to_owned(),
        };
        out.push_str(&format!("| `{}` | {default} | {} |\n", v.name, v.doc));
    }
    out
}

/// Reads variables through a lookup, applying [`VARS`]' defaults: the one way values come in.
struct Env<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The raw value, unset when empty; the table's default when it has a value.
    fn raw(&self, name: &'static str) -> Option<String> {
        (self.get)(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| match VARS.iter().find(|v| v.name == name)?.default {
                Value(v) => Some(v.to_owned()),
                _ => None,
            })
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.raw(name).ok_or(ConfigError::Missing { name })
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.required(name)?;
        raw.trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value: raw.clone(),
                reason: e.to_string(),
            })
    }

    /// A number that must be above zero.
    fn positive<T>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + Into<u64> + Copy,
        T::Err: std::fmt::Display,
    {
        let v: T = self.parse(name)?;
        if v.into() == 0 {
            return Err(ConfigError::Invalid {
                name,
                value: "0".into(),
                reason: "must be greater than zero".into(),
            });
        }
        Ok(v)
    }

    fn switch(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self
            .raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("on") | Some("true") | Some("1") => Ok(true),
            Some("off") | Some("false") | Some("0") => Ok(false),
            Some(other) => Err(ConfigError::Invalid {
                name,
                value: other.to_owned(),
                reason: "must be on or off".into(),
            }),
        }
    }

    fn local(&self) -> bool {
        self.raw("ORIGIN_ENV").is_some_and(|v| v.trim() == "local")
    }

    /// `ORIGIN_ENV`: unset, or one of the three names.
    fn environment(&self) -> Result<Option<Environment>, ConfigError> {
        match self.raw("ORIGIN_ENV").as_deref().map(str::trim) {
            None => Ok(None),
            Some("local") => Ok(Some(Environment::Local)),
            Some("staging") => Ok(Some(Environment::Staging)),
            Some("production") => Ok(Some(Environment::Production)),
            Some(other) => Err(ConfigError::Invalid {
                name: "ORIGIN_ENV",
                value: other.to_owned(),
                reason: "must be local, staging or production".into(),
            }),
        }
    }

    /// `HTTP_CA_FILE` added to the bundled roots: the trust store of every outbound client.
    fn http_roots(&self) -> Result<crate::outbound::Roots, ConfigError> {
        let Some(path) = self.raw("HTTP_CA_FILE") else {
            return Ok(crate::outbound::Roots::default());
        };
        let path = path.trim();
        let pem = read_pem("HTTP_CA_FILE", "file", path, PemKind::Certificate)?;
        crate::outbound::Roots::with_extra(&[pem]).map_err(|reason| ConfigError::Invalid {
            name: "HTTP_CA_FILE",
            value: format!("file {path}"),
            reason,
        })
    }

    /// `SENTRY_DSN` with the environment it reports as (`ORIGIN_ENV`, required with it: a
    /// staging error reported as production's pages the wrong people).
    fn sentry(&self) -> Result<Option<Sentry>, ConfigError> {
        let Some(dsn) = self.raw("SENTRY_DSN") else {
            return Ok(None);
        };
        let environment = self.environment()?.ok_or(ConfigError::Invalid {
            name: "ORIGIN_ENV",
            value: String::new(),
            reason: "SENTRY_DSN is set: say which environment reports (staging, production, \
                     local)"
                .into(),
        })?;
        Ok(Some(Sentry {
            dsn: SecretString::from(dsn.trim().to_owned()),
            environment,
        }))
    }
}

/// `ORIGIN_ENV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Local,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

/// Where errors and panics are reported.
#[derive(Clone, Debug)]
pub struct Sentry {
    pub dsn: SecretString,
    pub environment: Environment,
}

/// What every command needs before anything else (logging and error reporting), read before
/// the rest of the settings so that their errors are logged and reported too.
#[derive(Clone, Debug)]
pub struct Telemetry {
    pub log_filter: String,
    pub sentry: Option<Sentry>,
    /// The trust store of Sentry's transport (and every other outbound client).
    pub roots: crate::outbound::Roots,
}

impl Telemetry {
    pub fn from_env() -> Result<Telemetry, ConfigError> {
        let env = Env {
            get: |name: &str| std::env::var(name).ok(),
        };
        Ok(Telemetry {
            log_filter: env
                .raw("RUST_LOG")
                .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned()),
            sentry: env.sentry()?,
            roots: env.http_roots()?,
        })
    }
}

/// Everything the origin needs to run. Secrets are wrapped so `{:?}` never prints them.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `DATABASE_URL` (required): PostgreSQL, directly or through PgBouncer.
    pub database_url: SecretString,
    /// The transport `DATABASE_URL` asks for.
    pub database_tls: PgTls,
    /// `REDIS_URL` (required).
    pub redis_url: SecretString,
    /// The transport `REDIS_URL` and the `REDIS_*_FILE` settings ask for.
    pub redis_tls: RedisTls,
    /// `ORIGIN_ADDR` (default `127.0.0.1:8080`); port 0 picks a free port.
    pub addr: SocketAddr,
    /// `METRICS_ADDR` (default `127.0.0.1:9091`): the operator listener (`/metrics`, `/readyz`,
    /// `/healthz`). Keep it off the public network; port 0 picks a free port.
    pub metrics_addr: SocketAddr,
    /// `ORIGIN_ENV=local`: a development run (see [`VARS`] for what it allows).
    pub local: bool,
    /// `ORIGIN_ENV` (unset, `local`, `staging`, `production`).
    pub environment: Option<Environment>,
    /// `SENTRY_DSN` and its environment.
    pub sentry: Option<Sentry>,
    /// `HTTP_CA_FILE` beside the bundled roots: what every outbound HTTPS call trusts.
    pub http_roots: crate::outbound::Roots,
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
    /// `EDGE_SECRET_PREVIOUS` (optional) is accepted beside it while the secret is rotated.
    pub edge_secret: Option<shared::secret::SharedSecret>,
    /// `HEADER_READ_TIMEOUT_MS` (default 5000): a client must send a whole request head within
    /// this; it is also how long an idle kept-alive connection is kept.
    pub header_read_timeout: Duration,
    /// `MAX_CONNECTIONS_PER_PEER` (default 512; 0 unlimited): open connections per socket peer.
    pub max_connections_per_peer: usize,
    /// `BODY_READ_TIMEOUT_MS` (default 5000): a request body must arrive within this; it is
    /// read before the request takes an in-flight slot, so a trickled body holds none.
    pub body_read_timeout: Duration,
    /// `MAX_IN_FLIGHT_PER_CLIENT` (default 64; 0 unlimited): requests one client may have in
    /// flight at once.
    pub max_in_flight_per_client: usize,
    /// `MAX_SESSIONS_PER_USER` (default 10): live sessions per user; a new one ends the oldest.
    pub max_sessions_per_user: u32,
    /// `REQUEST_TIMEOUT_MS` (default 2500, `shared::policy::budget`): longest a request may take;
    /// past it, 504.
    pub request_timeout: Duration,
    /// `MAX_CONCURRENT_REQUESTS` (default 2048): requests in flight at once; beyond, 503 at once
    /// (load shedding) rather than an unbounded queue.
    pub max_concurrent_requests: usize,
    /// `PASSWORD_QUEUE_TIMEOUT_MS` (default 2000): longest a sign-in or registration waits for a
    /// password-hashing slot (one per core) before it is answered 503.
    pub password_queue_timeout: Duration,
    /// `LOGIN_MAX_FAILURES` (default 10): failed sign-ins per account and client in 15 minutes.
    pub login_max_failures: u64,
    /// `LOGIN_MAX_FAILURES_PER_ACCOUNT` (default 100): failed sign-ins per account in 15 minutes
    /// from clients without its device cookie.
    pub login_max_failures_per_account: u64,
    /// `LOGIN_WINDOW_SECS` (default 900): the per-client budget's window.
    pub login_window: Duration,
    /// `REGISTRATIONS_PER_HOUR` (default 10): sign-up attempts per address per hour.
    pub registrations_per_hour: u64,
    /// `SESSION_MAX_AGE_SECS` (default 43200, 12 h): absolute session lifetime, however active.
    pub session_max_age: Duration,
    /// `SHUTDOWN_GRACE_SECS` (default 10): how long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
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
    /// Where changed cache tags are purged (`EDGE_PURGE_URL`, `CLOUDFLARE_*`,
    /// `NEXT_REVALIDATE_*`, `PURGE_BATCH_MS`).
    pub purge: PurgeSettings,
    /// The catalog sync (`SYNC_*`).
    pub sync: SyncSettings,
}

/// The catalog sync ([`crate::sync`]).
#[derive(Clone, Debug, Default)]
pub struct SyncSettings {
    pub upstreams: Vec<SyncUpstream>,
    /// 0: no periodic sync.
    pub interval: Duration,
    pub timeout: Duration,
    /// `SYNC_DEADLINE_SECS`: one whole run.
    pub deadline: Duration,
    /// `SYNC_GUARD_*`.
    pub guard: crate::sync::guard::Limits,
    pub attempts: u32,
    pub max_bytes: u64,
    pub breaker: Duration,
}

/// One upstream: our provider code, the mapping it is read with, its URL (a secret: it may
/// carry an API key).
#[derive(Clone, Debug)]
pub struct SyncUpstream {
    pub provider: String,
    pub mapping: String,
    pub url: SecretString,
}

impl SyncSettings {
    fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>, local: bool) -> Result<Self, ConfigError> {
        let mut upstreams = Vec::new();
        let raw = env.raw("SYNC_PROVIDERS").unwrap_or_default();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |reason: &str| ConfigError::redacted("SYNC_PROVIDERS", reason.to_owned());
            let (provider, rest) = item
                .split_once('=')
                .ok_or_else(|| bad("each entry is provider=mapping@url"))?;
            let (mapping, url) = rest
                .split_once('@')
                .ok_or_else(|| bad("each entry is provider=mapping@url"))?;
            let provider = provider.trim();
            if shared::Slug::check(provider).is_err() {
                return Err(bad("a provider is a catalog code (a-z, 0-9, -, _)"));
            }
            if upstreams
                .iter()
                .any(|u: &SyncUpstream| u.provider == provider)
            {
                return Err(bad("a provider is listed twice"));
            }
            let url = url.trim();
            let parsed = url::Url::parse(url).map_err(|_| bad("an upstream URL does not parse"))?;
            if !(parsed.scheme() == "https"
                || (parsed.scheme() == "http" && (local || is_loopback_url(&parsed))))
            {
                return Err(bad(
                    "upstream URLs are https:// (http:// only to this machine or with \
                     ORIGIN_ENV=local)",
                ));
            }
            upstreams.push(SyncUpstream {
                provider: provider.to_owned(),
                mapping: mapping.trim().to_owned(),
                url: SecretString::from(url.to_owned()),
            });
        }
        let interval: u64 = env.parse("SYNC_INTERVAL_SECS")?;
        let timeout: u64 = env.positive("SYNC_TIMEOUT_SECS")?;
        let deadline: u64 = env.positive("SYNC_DEADLINE_SECS")?;
        let max_move: u32 = env.positive("SYNC_GUARD_MAX_MOVE")?;
        if max_move < 2 {
            return Err(ConfigError::Invalid {
                name: "SYNC_GUARD_MAX_MOVE",
                value: max_move.to_string(),
                reason: "a factor of at least 2".into(),
            });
        }
        let guard = crate::sync::guard::Limits {
            max_move: i64::from(max_move),
            max_suspicious_pct: env.positive("SYNC_GUARD_MAX_SUSPICIOUS_PCT")?,
            max_drift_pct: env.positive("SYNC_GUARD_MAX_DRIFT_PCT")?,
            baseline_max_age: Duration::from_secs(env.positive("SYNC_GUARD_BASELINE_SECS")?),
        };
        let attempts: u32 = env.positive("SYNC_ATTEMPTS")?;
        let max_bytes: u64 = env.positive("SYNC_MAX_BYTES")?;
        let breaker: u64 = env.parse("SYNC_BREAKER_SECS")?;
        Ok(SyncSettings {
            upstreams,
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(timeout),
            deadline: Duration::from_secs(deadline),
            guard,
            attempts,
            max_bytes,
            breaker: Duration::from_secs(breaker),
        })
    }
}

fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// The downstream caches a catalog change is purged from ([`crate::purge`]).
#[derive(Clone, Debug, Default)]
pub struct PurgeSettings {
    pub edge: Option<(String, SecretString)>,
    /// API base, zone, token.
    pub cloudflare: Option<(String, String, SecretString)>,
    pub next: Option<(String, SecretString)>,
    /// The fleet's budget of calls to each (`EDGE_PURGE_RATE`, `CLOUDFLARE_PURGE_RATE`,
    /// `NEXT_REVALIDATE_RATE`).
    pub edge_rate: Rate,
    pub cloudflare_rate: Rate,
    pub next_rate: Rate,
    pub batch: Duration,
    /// Bound on one purge call.
    pub timeout: Duration,
}

/// A budget of calls: `N/s`, `N/min` or `N/h` (`5/s`; Cloudflare's free plan: `5/min`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub calls: u32,
    pub per: Duration,
}

impl Default for Rate {
    /// `5/s`.
    fn default() -> Rate {
        Rate {
            calls: 5,
            per: Duration::from_secs(1),
        }
    }
}

impl Rate {
    /// Between two calls, on average.
    pub fn interval(&self) -> Duration {
        self.per / self.calls
    }

    /// Calls allowed at once: a second's worth, at least one.
    pub fn burst(&self) -> u32 {
        let per_sec = self.calls as u64 * 1000 / (self.per.as_millis() as u64).max(1);
        per_sec.clamp(1, 1000) as u32
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("expected calls per period, like 5/s, 300/min or 100/h: {s:?}");
        let (calls, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let calls: u32 = calls.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if !(1..=1000).contains(&calls) {
            return Err(format!("between 1 and 1000 calls per period: {s:?}"));
        }
        Ok(Rate { calls, per })
    }
}

impl PurgeSettings {
    fn read<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        edge_secret: Option<&shared::secret::SharedSecret>,
        local: bool,
    ) -> Result<PurgeSettings, ConfigError> {
        // A purge carries a secret: in clear only to this machine, or in a local run.
        let url = |name: &'static str| -> Result<Option<String>, ConfigError> {
            let Some(raw) = env.raw(name) else {
                return Ok(None);
            };
            let parsed = url::Url::parse(raw.trim()).map_err(|e| ConfigError::Invalid {
                name,
                value: raw.clone(),
                reason: e.to_string(),
            })?;
            let loopback = matches!(
                parsed.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                || parsed.host_str() == Some("localhost");
            match parsed.scheme() {
                "https" => {}
                "http" if loopback || local => {}
                _ => {
                    return Err(ConfigError::Invalid {
                        name,
                        value: raw.clone(),
                        reason: "must be https:// (http:// only to this machine or with \
                                 ORIGIN_ENV=local): a secret travels with it"
                            .into(),
                    });
                }
            }
            Ok(Some(raw.trim().trim_end_matches('/').to_owned()))
        };
        let edge = match url("EDGE_PURGE_URL")? {
            None => None,
            Some(u) => {
                let secret = edge_secret.ok_or(ConfigError::Missing {
                    name: "EDGE_SECRET",
                })?;
                // During a rotation the origin goes first (docs/operations.md): the edge still
                // holds only the old value, which is then EDGE_SECRET_PREVIOUS here.
                let presented = secret.previous().unwrap_or(secret.current());
                Some((u, SecretString::from(presented.to_owned())))
            }
        };
        let cloudflare = match (
            env.raw("CLOUDFLARE_ZONE_ID"),
            env.raw("CLOUDFLARE_API_TOKEN"),
        ) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    name: "CLOUDFLARE_API_TOKEN",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    name: "CLOUDFLARE_ZONE_ID",
                });
            }
            (Some(zone), Some(token)) => {
                let zone = zone.trim().to_owned();
                if zone.is_empty() || !zone.bytes().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(ConfigError::Invalid {
                        name: "CLOUDFLARE_ZONE_ID",
                        value: zone,
                        reason: "a zone id is letters and digits".into(),
                    });
                }
                let api = url("CLOUDFLARE_API_URL")?.unwrap_or_default();
                Some((api, zone, SecretString::from(token.trim().to_owned())))
            }
        };
        let next = match url("NEXT_REVALIDATE_URL")? {
            None => None,
            Some(u) => {
                let secret = env.required("NEXT_REVALIDATE_SECRET")?;
                if secret.len() < 16 {
                    return Err(ConfigError::redacted(
                        "NEXT_REVALIDATE_SECRET",
                        "must be at least 16 characters",
                    ));
                }
                Some((u, SecretString::from(secret)))
            }
        };
        let batch: u64 = env.parse("PURGE_BATCH_MS")?;
        Ok(PurgeSettings {
            edge,
            cloudflare,
            next,
            edge_rate: env.parse("EDGE_PURGE_RATE")?,
            cloudflare_rate: env.parse("CLOUDFLARE_PURGE_RATE")?,
            next_rate: env.parse("NEXT_REVALIDATE_RATE")?,
            batch: Duration::from_millis(batch),
            timeout: Duration::from_secs(5),
        })
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads from any lookup, so tests can configure without touching the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { get };
        let environment = env.environment()?;
        let local = environment == Some(Environment::Local);
        let database_url = env.required("DATABASE_URL")?;
        let database_tls = PgTls::check("DATABASE_URL", &database_url, local)?;
        let redis_url = env.required("REDIS_URL")?;
        let redis_tls = RedisTls::check(&env, &redis_url, local)?;

        let addr = env.parse("ORIGIN_ADDR")?;
        let metrics_addr = env.parse("METRICS_ADDR")?;
        let db_behind_transaction_pooler = match env.raw("DB_POOLER").as_deref().map(str::trim) {
            None | Some("none") => false,
            Some("pgbouncer-transaction") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "DB_POOLER",
                    value: other.to_owned(),
                    reason: "must be none or pgbouncer-transaction".into(),
                });
            }
        };
        let db_max_connections: u32 = env.positive("DB_MAX_CONNECTIONS")?;
        let idle: u64 = env.parse("DB_IDLE_TIMEOUT_SECS")?;
        let connect: u64 = env.positive("DB_CONNECT_TIMEOUT_SECS")?;
        let redis_ms: u64 = env.positive("REDIS_TIMEOUT_MS")?;
        let header_read: u64 = env.positive("HEADER_READ_TIMEOUT_MS")?;
        let request_timeout: u64 = env.positive("REQUEST_TIMEOUT_MS")?;
        let body_read: u64 = env.positive("BODY_READ_TIMEOUT_MS")?;
        let max_sessions_per_user: u32 = env.positive("MAX_SESSIONS_PER_USER")?;
        let max_in_flight_per_client: u32 = env.parse("MAX_IN_FLIGHT_PER_CLIENT")?;
        let max_connections_per_peer: u32 = env.parse("MAX_CONNECTIONS_PER_PEER")?;
        let max_concurrent: u32 = env.positive("MAX_CONCURRENT_REQUESTS")?;
        let password_wait: u64 = env.positive("PASSWORD_QUEUE_TIMEOUT_MS")?;
        let login_max_failures: u64 = env.positive("LOGIN_MAX_FAILURES")?;
        let login_max_failures_per_account: u64 = env.positive("LOGIN_MAX_FAILURES_PER_ACCOUNT")?;
        let login_window: u64 = env.positive("LOGIN_WINDOW_SECS")?;
        let registrations_per_hour: u64 = env.positive("REGISTRATIONS_PER_HOUR")?;
        let session_max_age: u64 = env.positive("SESSION_MAX_AGE_SECS")?;
        let shutdown_grace: u64 = env.parse("SHUTDOWN_GRACE_SECS")?;
        let divisor: u32 = env.positive("CACHE_TTL_DIVISOR")?;

        let redis_key_prefix = env.raw("REDIS_KEY_PREFIX").unwrap_or_default();
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
        let edge_secret = match (env.raw("EDGE_SECRET"), env.raw("EDGE_SECRET_PREVIOUS")) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    name: "EDGE_SECRET",
                });
            }
            (Some(current), previous) => {
                for (name, value) in [
                    ("EDGE_SECRET", Some(&current)),
                    ("EDGE_SECRET_PREVIOUS", previous.as_ref()),
                ] {
                    if value.map(String::as_str) == Some(EXAMPLE_EDGE_SECRET) && !local {
                        return Err(ConfigError::redacted(
                            name,
                            "is the published example from .dev.vars.example; set a secret of your \
                             own (or ORIGIN_ENV=local for a local run)",
                        ));
                    }
                }
                let name = if current.len() < shared::secret::MIN_LEN {
                    "EDGE_SECRET"
                } else {
                    "EDGE_SECRET_PREVIOUS"
                };
                Some(
                    shared::secret::SharedSecret::new(current, previous)
                        .map_err(|reason| ConfigError::redacted(name, reason))?,
                )
            }
        };

        let purge = PurgeSettings::read(&env, edge_secret.as_ref(), local)?;
        let sync = SyncSettings::read(&env, local)?;
        let l1_enabled = env.switch("L1_CACHE")?;
        let metrics_enabled = env.switch("METRICS")?;
        let rate_limit_enabled = env.switch("RATE_LIMIT")?;
        let l1_ttl_ms: u64 = env.positive("L1_TTL_MS")?;
        let l1_max_bytes: u64 = env.positive("L1_MAX_BYTES")?;
        let overrides = env.raw("RATE_LIMITS").unwrap_or_default();
        let rate_limits = tier_limits(&overrides).map_err(|reason| ConfigError::Invalid {
            name: "RATE_LIMITS",
            value: overrides.clone(),
            reason,
        })?;

        Ok(Settings {
            database_url: database_url.into(),
            database_tls,
            redis_url: redis_url.into(),
            redis_tls,
            addr,
            metrics_addr,
            local,
            environment,
            sentry: env.sentry()?,
            http_roots: env.http_roots()?,
            db_behind_transaction_pooler,
            db_max_connections,
            db_idle_timeout: Duration::from_secs(idle),
            db_connect_timeout: Duration::from_secs(connect),
            redis_timeout: Duration::from_millis(redis_ms),
            redis_key_prefix,
            edge_secret,
            session_max_age: Duration::from_secs(session_max_age),
            shutdown_grace: Duration::from_secs(shutdown_grace),
            login_max_failures,
            login_max_failures_per_account,
            login_window: Duration::from_secs(login_window),
            registrations_per_hour,
            password_queue_timeout: Duration::from_millis(password_wait),
            header_read_timeout: Duration::from_millis(header_read),
            request_timeout: Duration::from_millis(request_timeout),
            body_read_timeout: Duration::from_millis(body_read),
            max_sessions_per_user,
            max_in_flight_per_client: max_in_flight_per_client as usize,
            max_connections_per_peer: max_connections_per_peer as usize,
            max_concurrent_requests: max_concurrent as usize,
            cache_ttl_divisor: divisor,
            l1_enabled,
            l1_ttl: Duration::from_millis(l1_ttl_ms),
            l1_max_bytes,
            metrics_enabled,
            rate_limit_enabled,
            rate_limits,
            purge,
            sync,
        })
    }
}

/// libpq's `sslmode`, as sqlx implements it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext.
    Disable,
    /// TLS when the server offers it, else plaintext; the certificate is not checked. libpq's
    /// (and sqlx's) default.
    Prefer,
    /// TLS or nothing; the certificate is not checked: protects against eavesdropping only.
    Require,
    /// TLS, the certificate must chain to a trusted CA; the host name is not checked.
    VerifyCa,
    /// TLS, a trusted certificate for this host name: protects against eavesdropping and
    /// impersonation.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// How fit a transport is for a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grade {
    /// Verified TLS, or this machine only.
    Good,
    /// Encrypted, but the server's identity is not (fully) checked.
    Weak,
    /// Plaintext, or TLS without verification, to another host.
    Unsafe,
}

/// The transport a PostgreSQL URL asks for: checked at start, reported by `origin check` and in
/// the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTls {
    /// `sslmode`, or `None` when the URL does not say (sqlx then uses `prefer`).
    pub mode: Option<SslMode>,
    /// `sslrootcert`: the CA file the server must chain to, added to the bundled Mozilla roots.
    pub root_cert: Option<String>,
    /// `sslcert` + `sslkey`: a client certificate is presented.
    pub client_cert: bool,
    /// The host is this machine (loopback or a Unix socket).
    pub loopback: bool,
}

impl PgTls {
    /// The mode sqlx uses.
    pub fn effective_mode(&self) -> SslMode {
        self.mode.unwrap_or(SslMode::Prefer)
    }

    /// Checks `url` (the variable `name`): scheme, `sslmode`, and that the certificate files it
    /// names exist and hold PEM. Outside a local run a remote host must name its `sslmode`:
    /// the default, `prefer`, falls back to plaintext without a word.
    pub fn check(name: &'static str, url: &str, local: bool) -> Result<PgTls, ConfigError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::redacted(
                name,
                "must start with one of postgres://, postgresql://",
            ));
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| ConfigError::redacted(name, format!("is not a URL: {e}")))?;
        let mut tls = PgTls {
            mode: None,
            root_cert: None,
            client_cert: false,
            loopback: is_loopback(parsed.host_str().unwrap_or("")),
        };
        let (mut cert, mut key) = (None, None);
        let mut hostaddr = None;
        for (param, value) in parsed.query_pairs() {
            match &*param {
                "hostaddr" => hostaddr = Some(value.into_owned()),
                "sslmode" | "ssl-mode" => {
                    tls.mode = Some(match &*value {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        "allow" => {
                            return Err(ConfigError::redacted(
                                name,
                                "sslmode=allow is not supported (the driver would never use \
                                 TLS): use verify-full",
                            ));
                        }
                        other => {
                            return Err(ConfigError::redacted(
                                name,
                                format!(
                                    "sslmode={other:?} is not one of disable, prefer, require, \
                                     verify-ca, verify-full"
                                ),
                            ));
                        }
                    });
                }
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                    read_pem(name, "sslrootcert", &value, PemKind::Certificate)?;
                    tls.root_cert = Some(value.into_owned());
                }
                "sslcert" | "ssl-cert" => {
                    read_pem(name, "sslcert", &value, PemKind::Certificate)?;
                    cert = Some(());
                }
                "sslkey" | "ssl-key" => {
                    read_pem(name, "sslkey", &value, PemKind::PrivateKey)?;
                    key = Some(());
                }
                "host" => tls.loopback = value.starts_with('/') || is_loopback(&value),
                _ => {}
            }
        }
        // `hostaddr` is where the driver connects, whatever the host name says: a remote address
        // there is a remote server (`localhost?hostaddr=203.0.113.7` is not this machine).
        if let Some(addr) = hostaddr {
            tls.loopback = is_loopback(&addr);
        }
        match (cert, key) {
            (Some(()), Some(())) => tls.client_cert = true,
            (None, None) => {}
            _ => {
                return Err(ConfigError::redacted(
                    name,
                    "sslcert and sslkey go together: give both or neither",
                ));
            }
        }
        let mode = tls.effective_mode();
        if tls.root_cert.is_some() && !mode.verifies() {
            return Err(ConfigError::redacted(
                name,
                format!(
                    "sslrootcert is set but sslmode={} does not check the server's certificate: \
                     use sslmode=verify-full",
                    mode.as_str()
                ),
            ));
        }
        if tls.mode.is_none() && !tls.loopback && !local {
            return Err(ConfigError::redacted(
                name,
                "names a remote host without sslmode (the default, prefer, falls back to \
                 plaintext and checks no certificate): add sslmode=verify-full&sslrootcert=<CA \
                 file> (recommended) or name a weaker sslmode explicitly",
            ));
        }
        Ok(tls)
    }

    /// How fit this transport is for a deployment, and why, in one line.
    pub fn posture(&self) -> (Grade, String) {
        let mode = self.effective_mode();
        let roots = match &self.root_cert {
            Some(file) => format!("CA {file} + Mozilla roots"),
            None => "Mozilla roots".to_owned(),
        };
        let client = if self.client_cert {
            ", client certificate"
        } else {
            ""
        };
        // Loopback needs no protection from the network.
        let remote = |grade| if self.loopback { Grade::Good } else { grade };
        match mode {
            SslMode::VerifyFull => (Grade::Good, format!("TLS verify-full ({roots}{client})")),
            SslMode::VerifyCa => (
                remote(Grade::Weak),
                format!("TLS verify-ca ({roots}{client}): the host name is not checked"),
            ),
            SslMode::Require => (
                remote(Grade::Weak),
                "TLS require: the certificate is not checked (no protection against \
                 impersonation)"
                    .to_owned(),
            ),
            SslMode::Prefer => (
                remote(Grade::Unsafe),
                "prefer: plaintext when the server offers no TLS; the certificate is not checked"
                    .to_owned(),
            ),
            SslMode::Disable => (remote(Grade::Unsafe), "plaintext".to_owned()),
        }
    }
}

/// How Redis is reached: decided from `REDIS_URL`'s scheme and the `REDIS_*_FILE` settings.
#[derive(Clone, Debug)]
pub struct RedisTls {
    /// `rediss://` or `rediss+cluster://`.
    pub enabled: bool,
    /// `#insecure` on the URL: TLS without verification (local runs only).
    pub insecure: bool,
    /// `REDIS_CA_FILE`: its path and PEM (the trust anchors, replacing the bundled roots).
    pub ca: Option<(String, Vec<u8>)>,
    /// `REDIS_CLIENT_CERT_FILE` and `REDIS_CLIENT_KEY_FILE`, PEM.
    pub client: Option<(Vec<u8>, SecretSlice<u8>)>,
    /// The URL names a password (`user:password@` or `:password@`).
    pub password: bool,
    /// Every host the URL names is this machine (loopback or a Unix socket).
    pub loopback: bool,
}

impl RedisTls {
    /// The transport for `url` with the `REDIS_*_FILE` settings `get` gives (tools beside the
    /// origin: the benchmark, the test harness), checked as start-up checks it.
    pub fn for_url(
        url: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<RedisTls, ConfigError> {
        let env = Env { get };
        let local = env.local();
        RedisTls::check(&env, url, local)
    }

    fn check<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        url: &str,
        local: bool,
    ) -> Result<RedisTls, ConfigError> {
        const NAME: &str = "REDIS_URL";
        let schemes = [
            "redis://",
            "rediss://",
            "unix://",
            "redis+cluster://",
            "rediss+cluster://",
        ];
        if !schemes.iter().any(|s| url.starts_with(s)) {
            return Err(ConfigError::redacted(
                NAME,
                format!("must start with one of {}", schemes.join(", ")),
            ));
        }
        let nodes =
            redis_cluster_nodes(url).map_err(|reason| ConfigError::redacted(NAME, reason))?;
        let enabled = url.starts_with("rediss");
        let insecure = url.split_once('#').is_some_and(|(_, f)| f == "insecure");
        if insecure && !local {
            return Err(ConfigError::redacted(
                NAME,
                "#insecure turns off certificate verification: allowed only with \
                 ORIGIN_ENV=local; give the server's CA in REDIS_CA_FILE instead",
            ));
        }
        let hosts: Vec<String> = match &nodes {
            Some(nodes) => nodes.clone(),
            None => vec![url.to_owned()],
        };
        let mut password = false;
        let mut loopback = true;
        for node in &hosts {
            if node.starts_with("unix://") {
                continue;
            }
            let parsed = url::Url::parse(node)
                .map_err(|e| ConfigError::redacted(NAME, format!("is not a URL: {e}")))?;
            password |= parsed.password().is_some();
            loopback &= is_loopback(parsed.host_str().unwrap_or(""));
        }
        let file = |name: &'static str, kind| -> Result<Option<(String, Vec<u8>)>, ConfigError> {
            match env.raw(name) {
                None => Ok(None),
                Some(path) => {
                    let pem = read_pem(name, "the file", &path, kind)?;
                    Ok(Some((path, pem)))
                }
            }
        };
        let ca = file("REDIS_CA_FILE", PemKind::Certificate)?;
        let cert = file("REDIS_CLIENT_CERT_FILE", PemKind::Certificate)?;
        let key = file("REDIS_CLIENT_KEY_FILE", PemKind::PrivateKey)?;
        let client = match (cert, key) {
            (Some((_, cert)), Some((_, key))) => Some((cert, SecretSlice::from(key))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    name: "REDIS_CLIENT_KEY_FILE",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    name: "REDIS_CLIENT_CERT_FILE",
                });
            }
        };
        if !enabled && (ca.is_some() || client.is_some()) {
            // The operator meant TLS: refusing is better than plaintext with a CA on the side.
            return Err(ConfigError::redacted(
                NAME,
                "REDIS_CA_FILE or a client certificate is set but the URL is not rediss:// or \
                 rediss+cluster://: it would connect in plaintext",
            ));
        }
        Ok(RedisTls {
            enabled,
            insecure,
            ca,
            client,
            password,
            loopback,
        })
    }

    /// How fit this transport is for a deployment, and why, in one line. Never the password.
    pub fn posture(&self) -> (Grade, String) {
        let auth = if self.password {
            "password"
        } else {
            "no password"
        };
        if !self.enabled {
            let warning = if self.password {
                ": the password crosses the network in clear"
            } else {
                ""
            };
            let grade = if self.loopback {
                Grade::Good
            } else {
                Grade::Unsafe
            };
            return (grade, format!("plaintext, {auth}{warning}"));
        }
        if self.insecure {
            return (
                Grade::Unsafe,
                format!("TLS WITHOUT certificate verification (#insecure), {auth}"),
            );
        }
        let roots = match &self.ca {
            Some((path, _)) => format!("CA {path}"),
            None => "Mozilla roots".to_owned(),
        };
        let client = if self.client.is_some() {
            ", client certificate"
        } else {
            ""
        };
        (
            Grade::Good,
            format!("TLS verified ({roots}{client}), {auth}"),
        )
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone, Copy)]
enum PemKind {
    Certificate,
    PrivateKey,
}

/// Reads a PEM file named by `what` inside variable `name`, checking it holds what it should.
fn read_pem(
    name: &'static str,
    what: &str,
    path: &str,
    kind: PemKind,
) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |reason: String| ConfigError::Invalid {
        name,
        value: format!("{what} {path}"),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
    match kind {
        PemKind::Certificate => {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(invalid("holds no PEM certificate".into()));
            }
        }
        PemKind::PrivateKey => {
            PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| invalid(format!("holds no PEM private key: {e}")))?;
        }
    }
    Ok(bytes)
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
pub const EXAMPLE_EDGE_SECRET: &str = shared::secret::EXAMPLE;

/// The database URL of the subcommands that change the schema or bulk-load (`migrate`, `seed`,
/// `admin`): `MIGRATE_DATABASE_URL` when set (PostgreSQL itself, when `DATABASE_URL` points at a
/// transaction-mode pooler, which cannot run migrations), else `DATABASE_URL`; checked as
/// `DATABASE_URL` is.
pub fn database_url_from_env() -> Result<SecretString, ConfigError> {
    migrate_database_url(|name| std::env::var(name).ok())
}

fn migrate_database_url(get: impl Fn(&str) -> Option<String>) -> Result<SecretString, ConfigError> {
    let env = Env { get };
    let (name, url) = match env.raw("MIGRATE_DATABASE_URL") {
        Some(url) => ("MIGRATE_DATABASE_URL", url),
        None => ("DATABASE_URL", env.required("DATABASE_URL")?),
    };
    PgTls::check(name, &url, env.local())?;
    Ok(url.into())
}

/// Where a health probe on this host reaches the operator listener: `METRICS_ADDR`, with an
/// unspecified address (`0.0.0.0`) replaced by loopback.
pub fn probe_addr() -> Result<SocketAddr, ConfigError> {
    let env = Env {
        get: |name: &str| std::env::var(name).ok(),
    };
    let mut addr: SocketAddr = env.parse("METRICS_ADDR")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

/// The nodes a `redis+cluster://` or `rediss+cluster://[user:password@]host:port,host:port,…`
/// URL names, as one `redis://` (or `rediss://`) URL each, credentials and any `#insecure`
/// repeated; `Ok(None)` for any other URL (one server). The client learns the rest of the
/// cluster from whichever of them answers first.
pub fn redis_cluster_nodes(url: &str) -> Result<Option<Vec<String>>, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        ("redis", rest)
    } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
        ("rediss", rest)
    } else {
        return Ok(None);
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, format!("/#{fragment}")),
        None => (rest, String::new()),
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
        nodes.push(format!("{scheme}://{auth}{host}{fragment}"));
    }
    Ok(Some(nodes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Mutex;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    fn with(extra: &[(&'static str, String)]) -> Result<Settings, ConfigError> {
        let mut pairs: Vec<(&str, &str)> = BASE.to_vec();
        for (k, v) in extra {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k, v.as_str()));
        }
        settings(&pairs)
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
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert_eq!(s.l1_max_bytes, 16 << 20);
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

    /// Every variable the code reads is in the table, and every one in the table is read: the
    /// README's table (made from the list) cannot name a setting that does nothing or miss one.
    #[test]
    fn the_table_lists_exactly_what_is_read() {
        let read = Mutex::new(BTreeSet::new());
        let lookup = |k: &str| {
            read.lock().unwrap().insert(k.to_owned());
            match k {
                "DATABASE_URL" => Some("postgres://localhost/x".into()),
                "REDIS_URL" => Some("redis://127.0.0.1:6379".into()),
                _ => None,
            }
        };
        Settings::from_lookup(lookup).unwrap();
        migrate_database_url(lookup).unwrap();
        for name in ["METRICS_ADDR", "SENTRY_DSN", "RUST_LOG"] {
            // `probe_addr`, `sentry_dsn` and `log_filter` read the process environment.
            lookup(name);
        }
        lookup("ADMIN_PASSWORD"); // clap reads it (`cli.rs`, `env = "ADMIN_PASSWORD"`)
        lookup("FAILPOINTS"); // the fail crate reads it (`cli.rs`), in test builds only
        // Read only when their URLs are set.
        lookup("NEXT_REVALIDATE_SECRET");
        lookup("CLOUDFLARE_API_URL");
        let read = read.into_inner().unwrap();
        let table: BTreeSet<String> = VARS.iter().map(|v| v.name.to_owned()).collect();
        assert_eq!(read, table);
        assert!(markdown_table().contains("| `DB_MAX_CONNECTIONS` | `10` |"));
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
    fn edge_secrets_shorter_than_16_are_refused() {
        // 15 characters: refused, naming the setting; 16: accepted (the boundary, both sides).
        let err = with(&[("EDGE_SECRET", "fifteen-chars-x".into())]).map(|_| ());
        let err = err.unwrap_err();
        assert!(err.to_string().contains("EDGE_SECRET"), "{err}");
        assert!(with(&[("EDGE_SECRET", "sixteen-chars-xy".into())]).is_ok());
        // Unset is allowed: the origin then trusts no forwarded client address.
        assert!(with(&[]).is_ok_and(|s| s.edge_secret.is_none()));
    }

    #[test]
    fn a_remote_hostaddr_is_a_remote_server_whatever_the_host_name() {
        // Not this machine: an explicit sslmode is required outside a local run.
        let url = "postgres://u@localhost/db?hostaddr=203.0.113.7";
        let err = with(&[("DATABASE_URL", url.into())])
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        let tls = PgTls::check("DATABASE_URL", &format!("{url}&sslmode=require"), false).unwrap();
        assert_ne!(
            tls.posture().0,
            Grade::Good,
            "plaintext-capable to a remote address"
        );
        let local = "postgres://u@db.example/db?hostaddr=127.0.0.1";
        assert!(
            PgTls::check("DATABASE_URL", local, false).is_ok(),
            "loopback by address"
        );
    }

    #[test]
    fn the_request_deadline_is_the_budget_s() {
        let s = with(&[]).unwrap();
        let budget = shared::policy::budget::ORIGIN_REQUEST_TIMEOUT_MS;
        assert_eq!(s.request_timeout, Duration::from_millis(u64::from(budget)));
    }

    #[test]
    fn a_previous_edge_secret_is_accepted_beside_the_current_one() {
        let s = with(&[
            ("EDGE_SECRET", "new-edge-secret-0001".into()),
            ("EDGE_SECRET_PREVIOUS", "old-edge-secret-0001".into()),
        ])
        .unwrap();
        let secret = s.edge_secret.unwrap();
        assert!(secret.check(b"old-edge-secret-0001").is_some());
        assert!(secret.check(b"new-edge-secret-0001").is_some());
        // Without the current one, or too short, or equal to it: refused, naming the variable.
        for (pairs, name) in [
            (
                vec![("EDGE_SECRET_PREVIOUS", "old-edge-secret-0001")],
                "EDGE_SECRET is required",
            ),
            (
                vec![
                    ("EDGE_SECRET", "new-edge-secret-0001"),
                    ("EDGE_SECRET_PREVIOUS", "short"),
                ],
                "EDGE_SECRET_PREVIOUS",
            ),
            (
                vec![
                    ("EDGE_SECRET", "new-edge-secret-0001"),
                    ("EDGE_SECRET_PREVIOUS", "new-edge-secret-0001"),
                ],
                "EDGE_SECRET_PREVIOUS",
            ),
            (
                vec![
                    ("EDGE_SECRET", "new-edge-secret-0001"),
                    ("EDGE_SECRET_PREVIOUS", EXAMPLE_EDGE_SECRET),
                ],
                "EDGE_SECRET_PREVIOUS",
            ),
        ] {
            let pairs: Vec<_> = pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
            let err = with(&pairs).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(name), "{pairs:?}: {err}");
            assert!(
                !err.contains("old-edge-secret") && !err.contains("new-edge-secret"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_edge_purge_route_is_given_the_value_the_edge_already_holds() {
        // Rotation goes origin first: while EDGE_SECRET_PREVIOUS is set, the edge still holds
        // only that value, so purges present it.
        let purge = |pairs: &[(&'static str, &str)]| {
            let mut all: Vec<(&'static str, String)> = vec![(
                "EDGE_PURGE_URL",
                "http://127.0.0.1:8787/__edge/purge".into(),
            )];
            all.extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
            let s = with(&all).unwrap();
            let (_, secret) = s.purge.edge.unwrap();
            use secrecy::ExposeSecret;
            secret.expose_secret().to_owned()
        };
        assert_eq!(
            purge(&[("EDGE_SECRET", "new-edge-secret-0001")]),
            "new-edge-secret-0001"
        );
        assert_eq!(
            purge(&[
                ("EDGE_SECRET", "new-edge-secret-0001"),
                ("EDGE_SECRET_PREVIOUS", "old-edge-secret-0001")
            ]),
            "old-edge-secret-0001"
        );
    }

    #[test]
    fn origin_env_names_one_of_three_and_sentry_needs_it() {
        for good in ["local", "staging", "production"] {
            let s = with(&[("ORIGIN_ENV", good.into())]).unwrap();
            assert_eq!(s.environment.map(Environment::as_str), Some(good));
        }
        let err = with(&[("ORIGIN_ENV", "prod".into())])
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("ORIGIN_ENV"), "{err}");
        let dsn = ("SENTRY_DSN", "https://key@o1.ingest.sentry.io/2".to_owned());
        let err = with(std::slice::from_ref(&dsn)).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("ORIGIN_ENV"), "{err}");
        let s = with(&[dsn, ("ORIGIN_ENV", "staging".into())]).unwrap();
        assert_eq!(s.sentry.map(|s| s.environment), Some(Environment::Staging));
    }

    #[test]
    fn http_ca_file_adds_to_the_bundled_roots_and_a_bad_one_names_itself() {
        let bundled = with(&[]).unwrap().http_roots.len();
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-ca.pem");
        let s = with(&[("HTTP_CA_FILE", ca.into())]).unwrap();
        assert_eq!(s.http_roots.len(), bundled + 1);
        let err = with(&[("HTTP_CA_FILE", "/nonexistent/ca.pem".into())])
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("HTTP_CA_FILE"), "{err}");
        let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let err = with(&[("HTTP_CA_FILE", not_pem.into())])
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("HTTP_CA_FILE"), "{err}");
    }

    #[test]
    fn secrets_never_print() -> Result<(), ConfigError> {
        let s = with(&[
            ("EDGE_SECRET", "super-secret-value-123".into()),
            (
                "DATABASE_URL",
                "postgres://u:pg-pass-xyz@localhost/x".into(),
            ),
            ("REDIS_URL", "redis://u:redis-pass-xyz@127.0.0.1:1".into()),
        ])?;
        let printed = format!("{s:?}");
        for secret in ["super-secret-value-123", "pg-pass-xyz", "redis-pass-xyz"] {
            assert!(!printed.contains(secret), "{secret} printed");
        }
        // And a refused URL is never echoed.
        let err = with(&[(
            "DATABASE_URL",
            "postgres://u:pg-pass-xyz@db.example.com/x".into(),
        )])
        .unwrap_err();
        assert!(!err.to_string().contains("pg-pass-xyz"), "{err}");
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
        assert_eq!(
            redis_cluster_nodes("rediss+cluster://u:pw@a:1,b:2#insecure"),
            Ok(Some(vec![
                "rediss://u:pw@a:1/#insecure".to_owned(),
                "rediss://u:pw@b:2/#insecure".to_owned()
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

    /// A directory of PEM files for the TLS settings' tests. Only the PEM framing is checked at
    /// start (the handshake checks the rest), so any DER will do.
    fn pem_files() -> (std::path::PathBuf, String, String) {
        let dir = std::env::temp_dir().join(format!("nexnum-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.join("ca.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        std::fs::write(dir.join("junk.pem"), "not a certificate").unwrap();
        let ca = dir.join("ca.pem").display().to_string();
        let key = dir.join("key.pem").display().to_string();
        (dir, ca, key)
    }

    #[test]
    fn postgres_tls_parameters_are_checked_at_start() {
        let (dir, ca, key) = pem_files();
        let junk = dir.join("junk.pem").display().to_string();
        let ok = |url: String| with(&[("DATABASE_URL", url)]).map(|s| s.database_tls);
        let tls = ok(format!(
            "postgres://u:p@db.example.com/x?sslmode=verify-full&sslrootcert={ca}"
        ))
        .unwrap();
        assert_eq!(tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(tls.posture().0, Grade::Good);
        let tls = ok(format!(
            "postgres://db.example.com/x?sslmode=verify-full&sslcert={ca}&sslkey={key}"
        ))
        .unwrap();
        assert!(tls.client_cert);
        // Explicitly weaker modes are allowed, and graded as such.
        let tls = ok("postgres://db.example.com/x?sslmode=require".into()).unwrap();
        assert_eq!(tls.posture().0, Grade::Weak, "require checks no identity");
        assert_eq!(
            ok("postgres://localhost/x?sslmode=disable".into())
                .unwrap()
                .posture()
                .0,
            Grade::Good,
            "plaintext on loopback is fine"
        );
        let refused = [
            ("postgres://db.example.com/x".to_owned(), "without sslmode"),
            ("postgres://db.example.com/x?sslmode=allow".into(), "allow"),
            (
                "postgres://db.example.com/x?sslmode=verify".into(),
                "is not one of",
            ),
            (
                format!("postgres://db.example.com/x?sslmode=require&sslrootcert={ca}"),
                "does not check",
            ),
            (
                "postgres://db.example.com/x?sslmode=verify-full&sslrootcert=/nonexistent.pem"
                    .into(),
                "cannot read",
            ),
            (
                format!("postgres://db.example.com/x?sslmode=verify-full&sslrootcert={junk}"),
                "no PEM",
            ),
            (
                format!("postgres://db.example.com/x?sslmode=verify-full&sslcert={ca}"),
                "go together",
            ),
        ];
        for (url, why) in refused {
            let err = ok(url.clone()).unwrap_err().to_string();
            assert!(
                err.contains("DATABASE_URL") && err.contains(why),
                "{url}: {err}"
            );
        }
        // A local run may omit sslmode for a remote host.
        assert!(
            with(&[
                ("DATABASE_URL", "postgres://db.example.com/x".into()),
                ("ORIGIN_ENV", "local".into()),
            ])
            .is_ok()
        );
        // MIGRATE_DATABASE_URL is held to the same rules, under its own name.
        let err = migrate_database_url(|k| match k {
            "MIGRATE_DATABASE_URL" => Some("postgres://db.example.com/x?sslmode=allow".into()),
            "DATABASE_URL" => Some("postgres://localhost/x".into()),
            _ => None,
        })
        .map(|_| ())
        .unwrap_err();
        assert!(err.to_string().contains("MIGRATE_DATABASE_URL"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn redis_tls_is_never_silently_weakened() {
        let (dir, ca, key) = pem_files();
        let redis = |extra: &[(&'static str, String)]| with(extra).map(|s| s.redis_tls);
        let tls = redis(&[
            ("REDIS_URL", "rediss://app:pw@cache.example.com:6380".into()),
            ("REDIS_CA_FILE", ca.clone()),
            ("REDIS_CLIENT_CERT_FILE", ca.clone()),
            ("REDIS_CLIENT_KEY_FILE", key.clone()),
        ])
        .unwrap();
        assert!(tls.enabled && tls.password && tls.client.is_some() && !tls.loopback);
        assert_eq!(tls.posture().0, Grade::Good);
        let tls = redis(&[(
            "REDIS_URL",
            "rediss+cluster://u:pw@a.example:1,b.example:2".into(),
        )])
        .unwrap();
        assert!(tls.enabled && tls.ca.is_none());
        // Plaintext with a password to a remote host: allowed (explicit), graded unfit.
        let tls = redis(&[("REDIS_URL", "redis://:pw@cache.example.com:6379".into())]).unwrap();
        assert_eq!(tls.posture().0, Grade::Unsafe);
        type Case<'a> = (&'a [(&'static str, String)], &'a str, &'a str);
        let cases: [Case; 5] = [
            (
                &[(
                    "REDIS_URL",
                    "rediss://cache.example.com:6380/#insecure".into(),
                )],
                "REDIS_URL",
                "ORIGIN_ENV=local",
            ),
            (
                &[
                    ("REDIS_URL", "redis://cache.example.com:6379".into()),
                    ("REDIS_CA_FILE", ca.clone()),
                ],
                "REDIS_URL",
                "plaintext",
            ),
            (
                &[
                    ("REDIS_URL", "rediss://cache.example.com:6380".into()),
                    ("REDIS_CA_FILE", "/nonexistent.pem".into()),
                ],
                "REDIS_CA_FILE",
                "cannot read",
            ),
            (
                &[
                    ("REDIS_URL", "rediss://cache.example.com:6380".into()),
                    ("REDIS_CLIENT_CERT_FILE", ca.clone()),
                ],
                "REDIS_CLIENT_KEY_FILE",
                "required",
            ),
            (
                &[
                    ("REDIS_URL", "rediss://cache.example.com:6380".into()),
                    ("REDIS_CLIENT_KEY_FILE", ca.clone()),
                    ("REDIS_CLIENT_CERT_FILE", ca.clone()),
                ],
                "REDIS_CLIENT_KEY_FILE",
                "private key",
            ),
        ];
        for (extra, name, why) in cases {
            let err = redis(extra).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(why), "{extra:?}: {err}");
        }
        let mut local = vec![("REDIS_URL", "rediss://127.0.0.1:6380/#insecure".to_owned())];
        local.push(("ORIGIN_ENV", "local".into()));
        let tls = redis(&local).unwrap();
        assert!(
            tls.insecure && tls.posture().0 == Grade::Unsafe,
            "graded unfit even when allowed"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
