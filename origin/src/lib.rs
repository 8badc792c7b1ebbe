//! The NexNum origin: an Axum service in front of pooled PostgreSQL with a Redis cache-aside.
//! Requests flow http → catalog → cache → db.
//!
//! - [`config`]: every environment variable, read and validated once.
//! - [`startup`]: boot steps, the listener, graceful shutdown.
//! - [`server`]: the hyper accept loop with connection limits (header timeout, head size).
//! - [`admission`]: bounded per-client shares (connections per peer, requests in flight).
//! - [`http`]: the router, handlers, extractors, response headers, and [`http::error::ApiError`]
//!   (the only place a lower layer's error becomes a status).
//! - [`catalog`]: the catalog read path (route data as response bytes).
//! - [`accounts`]: users, sessions, balances, purchases, admin mutations (with invalidation).
//! - [`cache`]: cache-aside (L1, Redis), single flight, the fleet fill lock.
//! - [`ratelimit`]: the Redis rate-limit tiers (Lua), failing open onto a local safety net.
//! - [`db`]: the PostgreSQL pool and the queries — the one module that talks to PostgreSQL.
//! - [`redis`]: the Redis client — the one module that talks to Redis.
//! - [`sync`]: prices and stock from the upstream providers, diffed, applied in one
//!   transaction, exactly the changed keys invalidated.
//! - [`purge`]: telling the caches downstream (the edge, Cloudflare, Next.js) which cache tags a
//!   change made out of date, through one fleet-wide queue in Redis and one sender within each
//!   cache's budget — the one module that talks to them.
//! - [`lease`]: work one replica of the fleet does at a time (a provider's sync, the purge
//!   sender), as leases in Redis.
//! - [`policies`]: the shared policy table as this configuration's header values.
//! - [`seed`]: the deterministic demo/benchmark catalog.
//! - [`meters`]: every Prometheus metric: names, handles, gauges.
//! - [`telemetry`]: tracing and Sentry.
//! - [`monitor`], [`check`]: the guide's monitoring checklist as gauges and as `origin check`;
//!   [`ecs`] grades an ECS task definition and scaling target against it.
//! - [`outbound`]: every outbound HTTP client, on one trust store (bundled roots + `HTTP_CA_FILE`).
//! - [`build`]: this binary's version and commit.
//! - [`faults`]: fault injection for tests (nothing in a release build).
//! - [`tls`]: the rustls provider, and telling a refused handshake from a network failure.
//! - [`small`]: short strings on the stack for the per-request hot path.
//! - [`cli`]: the `origin` command line (`serve`, `migrate`, `seed`, `check`, `admin`).
//!
//! Imports point one way: `http` → `catalog`/`accounts`/`ratelimit` → `cache` → `redis`/`db`;
//! `config`, `meters` and `policies` sit below everything and import none of them.

pub mod accounts;
pub mod admission;
pub mod build;
pub mod cache;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod ecs;
pub mod faults;
pub mod http;
pub mod lease;
pub mod meters;
pub mod monitor;
pub mod outbound;
pub mod policies;
pub mod purge;
pub mod ratelimit;
pub mod redis;
pub mod seed;
pub mod server;
pub mod small;
pub mod startup;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod tls;

pub use config::Settings;
pub use startup::Application;

/// The schema, embedded: `origin migrate` and the test harness apply the same files.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
