//! The NexNum origin: an Axum service in front of pooled PostgreSQL with a Redis cache-aside.
//! Requests flow http → catalog → cache → db.
//!
//! - [`config`]: every environment variable, read and validated once.
//! - [`startup`]: boot steps, the listener, graceful shutdown.
//! - [`http`]: the router, handlers, extractors and response headers.
//! - [`catalog`]: the catalog read path (route data as response bytes).
//! - [`accounts`]: users, sessions, balances, purchases, admin mutations (with invalidation).
//! - [`cache`]: cache-aside over Redis, single flight, bounded Redis commands.
//! - [`db`]: the PostgreSQL pool and the queries.
//! - [`ratelimit`]: the Redis rate-limit tiers (Lua), failing open onto a local safety net.
//! - [`seed`]: the deterministic demo/benchmark catalog.
//! - [`error`]: the one error type and its mapping to responses.
//! - [`telemetry`]: tracing, Sentry and the Prometheus recorder.
//! - [`monitor`], [`check`]: the guide's monitoring checklist as gauges and as `origin check`.
//! - [`cli`]: the `origin` command line (`serve`, `migrate`, `seed`, `check`, `admin`).

pub mod accounts;
pub mod cache;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod monitor;
pub mod ratelimit;
pub mod seed;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use config::Settings;
pub use startup::Application;

/// The schema, embedded: `origin migrate` and the test harness apply the same files.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
