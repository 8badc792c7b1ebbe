//! The NexNum edge: a Cloudflare Worker (Rust → wasm32) in front of the origin.
//!
//! Laid out as pingora-cache is, a file per concern. Every decision lives in a plain module,
//! unit-tested natively (the whole catalog flow too, over [`ports::Ports`] and an in-memory
//! fake of the runtime); only [`glue`], [`runtime`], [`answers`], [`upstream`] and [`clock`] touch the Workers runtime.
//!
//! - [`config`]: the worker's vars and secrets, read and validated once per isolate.
//! - [`request`]: what of a client's request is accepted and passed on (method, headers, body,
//!   request id, trace context), and which origin statuses can be answered.
//! - [`clients`]: who is asking: a client at its address, or a trusted server-side client.
//! - [`limiter`]: the coarse per-client limit (`governor`, generic over its clock), and the keys
//!   of Cloudflare's rate-limit bindings.
//! - [`cors`]: allowed origins, preflight answers.
//! - [`catalog`]: the catalog flow: memo → edge cache (fresh, stale-while-revalidate,
//!   stale-if-error) → one origin fetch per key → store.
//! - [`coalesce`]: one origin fetch per key in an isolate; the others wait for it.
//! - [`freshness`]: fresh / stale-while-revalidate / stale-if-error decisions on read.
//! - [`memo`]: the isolate's short-lived copy of hot answers, in front of the Cache API.
//! - [`purge`]: purges by cache tag, as an isolate remembers them (hard: a miss; soft: stale).
//! - [`headers`]: the headers a client sees and the headers an entry is stored with.
//! - [`reply`]: an answer's status, headers and body (200, 304, `HEAD`, JSON errors).
//! - [`ports`]: what the catalog flow needs from the runtime, as one trait.
//! - [`log`]: the one JSON line per request.
//! - [`target`]: host, path and query cut from the runtime's (already parsed) request URL.
//! - [`upstream`]: the origin fetch (catalog and forwarding), bounded, with the trust headers.
//! - [`glue`]: the fetch handler: the order of work for every request, and the isolate's state.
//!   The build (`scripts/build-edge.sh`) gives it a plain `{ fetch }` module export
//!   (`scripts/lean-entry.mjs`) instead of worker-build's per-request class and Proxy.
//! - [`runtime`]: [`ports::Ports`] over the Workers runtime, and the limit as Cloudflare runs it.
//! - [`answers`]: the runtime's responses built from the pure decisions.
//! - [`clock`]: the runtime's clock, for the glue and the limiter; `Date` values.

pub mod answers;
pub mod catalog;
pub mod clients;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod cors;
pub mod freshness;
pub mod glue;
pub mod headers;
pub mod limiter;
pub mod log;
pub mod memo;
pub mod ports;
pub mod purge;
pub mod reply;
pub mod request;
pub mod runtime;
pub mod target;
pub mod upstream;

#[cfg(test)]
mod fakes;
