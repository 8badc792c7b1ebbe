//! The NexNum edge: a Cloudflare Worker (Rust → wasm32) in front of the origin.
//!
//! Pure decisions live in plain modules and are unit-tested natively; only [`worker_glue`]
//! touches the Workers runtime (Cache API, fetch, clock).
//!
//! - [`config`]: the worker's vars and secrets, read and validated per request.
//! - [`freshness`]: fresh / stale-while-revalidate / stale-if-error decisions on read.
//! - [`limiter`]: the coarse per-IP limit (`governor`, generic over its clock).
//! - [`cors`]: allowed origins, preflight answers.
//! - [`headers`]: the headers a client sees and the headers an entry is stored with.
//! - [`worker_glue`]: the fetch handler: route, limit, serve from cache or origin, store.

pub mod config;
pub mod cors;
pub mod freshness;
pub mod headers;
pub mod limiter;
pub mod worker_glue;
