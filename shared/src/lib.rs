//! The one definition both sides of NexNum share. It builds for `wasm32-unknown-unknown`
//! (the edge) and natively (the origin), so it depends on nothing that needs a runtime,
//! a clock, randomness or I/O.
//!
//! - [`slug`]: the validated code newtype every path segment becomes at the boundary.
//! - [`types`]: the JSON wire types of the public catalog and of errors.
//! - [`keys`]: the Redis key builders — the only place a cache key is spelled.
//! - [`policy`]: per data type, the Redis TTL and the `Cache-Control` the browser and edge see.
//! - [`route`]: which paths are catalog routes, their data type and their known query parameters.
//! - [`etag`]: the strong entity tag of a response body, and `If-None-Match` matching.
//! - [`ratelimit`]: the rate-limit tiers and which route group falls in which tier.

pub mod etag;
pub mod keys;
pub mod policy;
pub mod ratelimit;
pub mod route;
pub mod slug;
pub mod types;

pub use policy::{CachePolicy, DataType};
pub use slug::{Slug, SlugError};
