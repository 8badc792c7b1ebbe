//! What the catalog flow needs from the Workers runtime, as one trait ([`Ports`]): a clock and a
//! timer, the edge cache (the Cache API), the origin, and work after the response
//! (`ctx.waitUntil`). The worker implements it over the runtime (`glue`); native tests over an
//! in-memory fake (`fakes`), so the whole flow runs in `cargo test`.
//!
//! The trait is single-threaded (no `Send`): an isolate runs one thread, and so do the tests.

use std::future::Future;
use std::rc::Rc;

use shared::CachePolicy;

/// An entry the edge cache holds for a key.
pub struct Entry<B> {
    /// Left unread until someone needs the bytes: a stale answer is streamed to the client as
    /// the cache hands it over.
    pub body: B,
    pub etag: String,
    /// When it was stored (ms since the epoch): its age counts from here.
    pub stored_at_ms: u64,
    /// The answer's cache tags ([`shared::tags`]), for purges.
    pub tags: Vec<String>,
}

/// A fresh origin answer to put in the edge cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    pub body: Rc<[u8]>,
    pub etag: Rc<str>,
    pub stored_at_ms: u64,
    pub policy: CachePolicy,
    pub tags: Rc<[String]>,
}

/// An origin answer to a catalog fetch.
pub enum Fetched<R> {
    /// A `200` the shared cache may keep (public, no cookie): its body and tag.
    Storable { body: Vec<u8>, etag: String },
    /// Anything else (an error, a personal answer): handed to the client as it is.
    Other { status: u16, response: R },
}

/// The origin could not give an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginFailure {
    /// Nothing within `ORIGIN_TIMEOUT_MS`: 504.
    Timeout,
    /// Refused, reset, a name that does not resolve: 502.
    Unreachable(String),
    /// A status no response can carry (a `1xx` as final answer): 502.
    BadStatus(u16),
}

pub trait Ports: Clone + 'static {
    /// A cached body, passed on unread.
    type Body: 'static;
    /// An origin response passed on as it is.
    type Passthrough: 'static;

    /// Milliseconds since the epoch.
    fn now_ms(&self) -> u64;
    /// Resumes after `ms`, in the request that set the timer.
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + 'static;
    /// The edge cache's entry for `key`; a failing lookup is a miss.
    fn cache_get(&self, key: &str) -> impl Future<Output = Option<Entry<Self::Body>>>;
    /// The bytes of a cached body (`None` if it cannot be read).
    fn read(&self, body: Self::Body) -> impl Future<Output = Option<Vec<u8>>>;
    /// Stores a copy (a failing store is only a later miss).
    fn cache_put(&self, key: &str, copy: &Copy) -> impl Future<Output = ()>;
    /// The origin's answer to `GET path` (path and query), for the client of this request.
    fn fetch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Fetched<Self::Passthrough>, OriginFailure>>;
    /// Runs `work` after the response has gone (`ctx.waitUntil`).
    fn in_background(&self, work: impl Future<Output = ()> + 'static);
}
