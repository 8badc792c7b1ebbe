//! The one definition both sides of NexNum share. It builds for `wasm32-unknown-unknown`
//! (the edge) and natively (the origin), so it depends on nothing that needs a runtime,
//! a clock, randomness or I/O.
//!
//! - [`slug`]: the validated code newtype every path segment becomes at the boundary.
//! - [`product`]: provider × country × service, the thing a price is for and a purchase buys.
//! - [`types`]: the JSON wire types of the API (catalog, accounts, errors).
//! - [`keys`]: the Redis key builders — the only place a Redis key, pattern or channel is spelled.
//! - [`headers`]: the header names the edge, the origin and clients exchange.
//! - [`policy`]: per data type, the Redis TTL and the `Cache-Control` the browser and edge see.
//! - [`route`]: which paths are catalog routes, their data type and their known query parameters.
//! - [`etag`]: the strong entity tag of a response body, and `If-None-Match` matching.
//! - [`ratelimit`]: the rate-limit tiers and which route group falls in which tier.
//! - [`input`]: the email and `Cookie` parsers of the sign-in path.
//! - [`tags`]: the cache tags of every catalog answer, and what a change purges.
//! - [`secret`]: the edge secret both sides accept (current and previous), compared in constant time.

pub mod etag;
pub mod headers;
pub mod input;
pub mod keys;
pub mod policy;
pub mod product;
pub mod ratelimit;
pub mod route;
pub mod secret;
pub mod slug;
pub mod tags;
pub mod types;

pub use policy::{CachePolicy, DataType};
pub use product::Product;
pub use slug::{Slug, SlugError};
