//! The NexNum edge: a Cloudflare Worker (Rust → wasm32) in front of the origin.
//!
//! Pure decisions live in plain modules and are unit-tested natively; only [`worker_glue`]
//! (Cache API, fetch) and [`clock`] (`Date.now()`) touch the Workers runtime.
//!
//! - [`config`]: the worker's vars and secrets, read and validated once per isolate.
//! - [`freshness`]: fresh / stale-while-revalidate / stale-if-error decisions on read.
//! - [`limiter`]: the coarse per-IP limit (`governor`, generic over its clock).
//! - [`cors`]: allowed origins, preflight answers.
//! - [`memo`]: the isolate's short-lived copy of hot answers, in front of the Cache API.
//! - [`headers`]: the headers a client sees and the headers an entry is stored with.
//! - [`target`]: host, path and query cut from the runtime's (already parsed) request URL.
//! - [`clock`]: the runtime's clock, for the glue and the limiter.
//! - [`worker_glue`]: the fetch handler: route, limit, serve from cache or origin, store.

pub mod clock;
pub mod config;
pub mod cors;
pub mod freshness;
pub mod headers;
pub mod limiter;
pub mod memo;
pub mod target;
pub mod worker_glue;
