//! The Workers-runtime side: the fetch handler. Order of work for every request:
//! 1. configuration (vars and secrets), CORS preflight answered here;
//! 2. the coarse per-IP limit;
//! 3. operator endpoints (`/metrics`, `/readyz`): 404 here, never forwarded;
//! 4. catalog GETs, whatever cookies or credentials they carry (the catalog is public; they are
//!    forwarded without them): the isolate's copy of a hot answer ([`crate::memo`], fresh only
//!    → HIT), then the edge cache (fresh → HIT; within stale-while-revalidate →
//!    STALE plus one background refresh per key; within stale-if-error → origin first, STALE if
//!    it fails), else the origin (MISS, stored after replying);
//! 5. everything else: forwarded to the origin, never cached (BYPASS).
//!
//! Errors are mapped to JSON responses, never panics: a panic would reset the isolate and
//! its limiter.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use shared::CachePolicy;
use shared::etag::{if_none_match_matches, strong_etag};
use shared::headers::{CLIENT_IP as CLIENT_IP_HEADER, EDGE_SECRET as EDGE_SECRET_HEADER, X_CACHE};
use shared::policy::PRIVATE_NO_STORE;
use shared::route::CatalogRoute;
use shared::types::ErrorBody;
use worker::{
    Cache, Context, Env, Fetch, Headers, Method, Request, RequestInit, Response, ResponseBody,
    Result,
};

use crate::clock::{JsClock, now_ms};
use crate::config::EdgeConfig;
use crate::freshness::{Freshness, age_secs, classify};
use crate::headers::{CacheStatus, STORED_AT, client_headers, storable, stored_headers};
use crate::limiter::{Decision, IpLimiter};
use crate::memo::Memo;
use crate::target::Target;

thread_local! {
    /// The isolate's limiter and the quota it was built with (rebuilt if the vars change).
    static LIMITER: RefCell<Option<(u32, u32, IpLimiter<JsClock>)>> = const { RefCell::new(None) };
    /// Cache keys being refreshed in the background: at most one refresh per key per isolate.
    static REFRESHING: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    static WARNED_INSECURE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The configuration, read once per isolate: vars and secrets are fixed for a deployment
    /// (a new version runs in new isolates), and reading them costs a dozen calls into JS.
    static CONFIG: RefCell<Option<Rc<EdgeConfig>>> = const { RefCell::new(None) };
    /// Cache keys being fetched from the origin after a miss, with the outcome the waiting
    /// requests look for: concurrent misses of one key in an isolate cost one origin fetch.
    static FETCHING: RefCell<HashMap<String, Outcome>> = RefCell::new(HashMap::new());
    /// Hot answers this isolate just read or stored, served without a cache lookup ([`Memo`]).
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// A storable origin answer (body and `ETag`), handed to the requests that waited for it.
type Fetched = Rc<(Vec<u8>, String)>;

/// What a fetch came to, for the requests waiting on it (`None` while it runs).
type Outcome = Rc<RefCell<Option<Done>>>;

#[derive(Clone)]
enum Done {
    /// A storable answer: every waiter is served it.
    Answer(Fetched),
    /// The origin timed out or could not be reached: every waiter answers the same (or its
    /// stale copy) rather than trying the struggling origin again in turn.
    Failed(OriginFailure),
    /// Nothing to share (a personal or error answer, or the leader went away): each waiter
    /// fetches for itself.
    Nothing,
}

/// This request's part in fetching one key: the one fetch, or a wait for it.
enum Role {
    Leader(Leading),
    Waiter(Outcome),
}

fn join_fetch(key: &str) -> Role {
    FETCHING.with(|map| {
        let mut map = map.borrow_mut();
        match map.get(key) {
            Some(outcome) => Role::Waiter(outcome.clone()),
            None => {
                let outcome = Outcome::default();
                map.insert(key.to_owned(), outcome.clone());
                Role::Leader(Leading {
                    key: key.to_owned(),
                    outcome,
                })
            }
        }
    })
}

/// The fetching request's claim on a key. Whatever happens to that request (an answer that
/// cannot be stored, an error, the client going away), dropping this tells the waiters there
/// is nothing to share, and they fetch for themselves.
struct Leading {
    key: String,
    outcome: Outcome,
}

impl Leading {
    fn share(self, fetched: &Fetched) {
        *self.outcome.borrow_mut() = Some(Done::Answer(fetched.clone()));
    }

    fn fail(self, failure: &OriginFailure) {
        *self.outcome.borrow_mut() = Some(Done::Failed(failure.clone()));
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        FETCHING.with(|map| map.borrow_mut().remove(&self.key));
        self.outcome.borrow_mut().get_or_insert(Done::Nothing);
    }
}

/// How often a waiting request looks at the leader's outcome.
const FETCH_POLL_MS: u64 = 5;

/// What the leader's fetch came to; [`Done::Nothing`] too when it took longer than the origin
/// timeout (a fetch bounded by that timeout has ended by then, one way or another).
///
/// Waiters look every few milliseconds instead of being woken by the leader: a wake-up from
/// the leader would run the waiter's code inside the leader's request, and workerd refuses a
/// response built there to the waiter's ("Cannot perform I/O on behalf of a different
/// request"). A timer a waiter set itself resumes it in its own request.
async fn wait_for(outcome: Outcome, timeout_ms: u32) -> Done {
    let polls = u64::from(timeout_ms) / FETCH_POLL_MS + 20;
    for _ in 0..polls {
        if let Some(done) = outcome.borrow().as_ref() {
            return done.clone();
        }
        worker::Delay::from(Duration::from_millis(FETCH_POLL_MS)).await;
    }
    Done::Nothing
}

#[cfg(target_arch = "wasm32")]
#[worker::event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    match handle(req, &env, &ctx).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            worker::console_error!("edge error: {e}");
            error_response(500, "internal", "edge error", &[])
        }
    }
}

/// The isolate's configuration; a bad one is not kept, so every request reports it.
fn config(env: &Env) -> std::result::Result<Rc<EdgeConfig>, String> {
    if let Some(cfg) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(cfg);
    }
    let cfg = Rc::new(EdgeConfig::from_lookup(|name| {
        env.var(name)
            .ok()
            .map(|v| v.to_string())
            .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
    })?);
    CONFIG.with(|c| *c.borrow_mut() = Some(cfg.clone()));
    Ok(cfg)
}

pub async fn handle(req: Request, env: &Env, ctx: &Context) -> Result<Response> {
    let cfg = match config(env) {
        Ok(cfg) => cfg,
        Err(msg) => {
            worker::console_error!("edge misconfigured: {msg}");
            return error_response(500, "misconfigured", "edge misconfigured", &[]);
        }
    };
    if cfg.edge_secret.is_none() {
        warn_insecure_once();
    }
    let origin = req.headers().get("Origin")?;
    let preflight_method = match req.method() {
        Method::Options => req.headers().get("Access-Control-Request-Method")?,
        _ => None,
    };
    if let (Some(o), Some(m)) = (origin.as_deref(), preflight_method) {
        return preflight(&cfg, o, &m);
    }
    let cors = cfg.cors.response_headers(origin.as_deref());

    let client_ip = req.headers().get("CF-Connecting-IP")?;
    if let Decision::Deny { retry_after_secs } = limit(&cfg, client_ip.as_deref()) {
        let retry = retry_after_secs.to_string();
        let resp = error_response(
            429,
            "rate_limited",
            "too many requests from this address",
            &[("Retry-After", &retry)],
        )?;
        return with_headers(resp, &cors);
    }

    let raw_url = req.inner().url();
    let Some(url) = Target::parse(&raw_url) else {
        return error_response(400, "bad_request", "the request URL is not absolute", &[]);
    };
    if is_operator_path(url.path) {
        let resp = error_response(404, "not_found", "no such route", &[])?;
        return with_headers(resp, &cors);
    }
    let resp = match CatalogRoute::parse(url.path, url.query) {
        Err(e) => error_response(400, "bad_request", &e.to_string(), &[])?,
        // The catalog is public: a cookie or token changes nothing in the answer, so it is
        // served from the shared cache regardless and fetched from the origin without them.
        // Every answer of this branch already carries CORS and `Date`: no second copy.
        Ok(Some(route)) if req.method() == Method::Get => {
            let inm = req.headers().get("If-None-Match")?;
            let reply = Reply {
                policy: route.data_type().policy().scaled_down(cfg.ttl_divisor),
                if_none_match: inm.as_deref(),
                cors: &cors,
            };
            return serve_catalog(&route, &url, &reply, &cfg, ctx, client_ip.as_deref()).await;
        }
        _ => forward(req, &url, &cfg, client_ip.as_deref()).await?,
    };
    with_headers(resp, &cors)
}

/// Once per isolate: running without `EDGE_SECRET` is for local runs only.
fn warn_insecure_once() {
    WARNED_INSECURE.with(|warned| {
        if !warned.replace(true) {
            worker::console_warn!(
                "EDGE_INSECURE_DEV: forwarding without EDGE_SECRET; the origin cannot tell clients apart"
            );
        }
    });
}

/// Operator endpoints are the origin's business alone: never answered through the edge.
fn is_operator_path(path: &str) -> bool {
    matches!(path, "/metrics" | "/readyz")
}

fn preflight(cfg: &EdgeConfig, origin: &str, method: &str) -> Result<Response> {
    let vary = (
        "Vary",
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers".to_owned(),
    );
    match cfg.cors.preflight(origin, method) {
        Some(mut h) => {
            h.push(vary);
            Ok(Response::empty()?
                .with_status(204)
                .with_headers(to_headers(&h)?))
        }
        None => error_response(
            403,
            "cors_refused",
            "origin or method not allowed",
            &[(vary.0, &vary.1)],
        ),
    }
}

fn limit(cfg: &EdgeConfig, client_ip: Option<&str>) -> Decision {
    LIMITER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (per_minute, burst) = (cfg.rate_per_minute, cfg.rate_burst);
        let current = matches!(&*slot, Some((pm, b, _)) if *pm == per_minute && *b == burst);
        if !current {
            let limiter = IpLimiter::new(per_minute, burst, JsClock);
            *slot = Some((per_minute, burst, limiter));
        }
        slot.as_ref()
            .map_or(Decision::Allow, |(_, _, l)| l.check_client(client_ip))
    })
}

/// A copy that may be served if the origin fails.
struct Stale {
    body: Vec<u8>,
    etag: String,
    age: u64,
}

/// How a catalog answer is made for this request: the data type's policy, the client's
/// `If-None-Match`, and the CORS headers it gets.
struct Reply<'a> {
    policy: CachePolicy,
    if_none_match: Option<&'a str>,
    cors: &'a [(&'static str, String)],
}

impl Reply<'_> {
    /// A catalog answer with every header it needs built in one go (policy, validators, CORS,
    /// `Date`), or a 304 when the client's tag matches. A cache hit's body is a stream passed
    /// on as it is, never read into wasm.
    fn send(
        &self,
        body: ResponseBody,
        etag: &str,
        status: CacheStatus,
        age: u64,
    ) -> Result<Response> {
        let mut pairs = client_headers(&self.policy, etag, status, age);
        pairs.extend_from_slice(self.cors);
        pairs.push(("Date", crate::clock::http_date()));
        let matches = !etag.is_empty()
            && self
                .if_none_match
                .is_some_and(|v| if_none_match_matches(v, etag));
        if matches {
            pairs.retain(|(name, _)| *name != "Content-Type");
            return Ok(Response::empty()?
                .with_status(304)
                .with_headers(to_headers(&pairs)?));
        }
        Ok(Response::builder()
            .with_headers(to_headers(&pairs)?)
            .body(body))
    }

    fn send_bytes(
        &self,
        body: Vec<u8>,
        etag: &str,
        status: CacheStatus,
        age: u64,
    ) -> Result<Response> {
        self.send(ResponseBody::Body(body), etag, status, age)
    }

    /// An answer that is not the catalog's own (passed through, or an error), with CORS.
    fn other(&self, resp: Result<Response>) -> Result<Response> {
        with_headers(resp?, self.cors)
    }
}

async fn serve_catalog(
    route: &CatalogRoute,
    url: &Target<'_>,
    reply: &Reply<'_>,
    cfg: &EdgeConfig,
    ctx: &Context,
    client_ip: Option<&str>,
) -> Result<Response> {
    let policy = reply.policy;
    let canonical = route.canonical();
    let cache_key = format!("https://{}{canonical}", url.authority.to_ascii_lowercase());
    // This isolate's copy first: a fresh answer it read or stored a moment ago.
    let now = now_ms();
    if let Some(kept) = MEMO.with(|m| m.borrow().get(&cache_key, now)) {
        let age = age_secs(kept.stored_at_ms, now);
        return reply.send_bytes(kept.body.to_vec(), &kept.etag, CacheStatus::Hit, age);
    }
    let cache = Cache::default();

    let mut stale = None;
    // A failing cache read is a miss, never an error for the client.
    if let Ok(Some(mut hit)) = cache.get(cache_key.as_str(), false).await {
        let stored_at = hit
            .headers()
            .get(STORED_AT)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let etag = hit.headers().get("ETag")?.unwrap_or_default();
        let age = age_secs(stored_at, now_ms());
        match classify(age, &policy) {
            // Read once into this isolate's memory: the requests of the next moment are
            // answered from there without a cache lookup.
            Freshness::Fresh => {
                let body = hit.bytes().await?;
                keep(&cache_key, &body, &etag, stored_at, &policy);
                return reply.send_bytes(body, &etag, CacheStatus::Hit, age);
            }
            Freshness::StaleWhileRevalidate => {
                if begin_refresh(&cache_key) {
                    let (cfg, key) = (cfg.clone(), cache_key.clone());
                    let refresh_ip = client_ip.map(str::to_owned);
                    ctx.wait_until(async move {
                        // On behalf of the client that found it stale: refreshes do not all
                        // share the edge's own identity at the origin's rate limiter.
                        let ip = refresh_ip;
                        if let Ok(resp) = fetch_origin(&cfg, &canonical, ip.as_deref()).await {
                            let _ = store_response(resp, &key, &policy).await;
                        }
                        end_refresh(&key);
                    });
                }
                let (_, body) = hit.into_parts();
                return reply.send(body, &etag, CacheStatus::Stale, age);
            }
            Freshness::StaleIfError => {
                let body = hit.bytes().await?;
                stale = Some(Stale { body, etag, age });
            }
            Freshness::Expired => {}
        }
    }

    let leading = match join_fetch(&cache_key) {
        Role::Leader(leading) => Some(leading),
        Role::Waiter(outcome) => match wait_for(outcome, cfg.origin_timeout_ms).await {
            Done::Answer(fetched) => {
                let (body, etag) = (fetched.0.clone(), &fetched.1);
                return reply.send_bytes(body, etag, CacheStatus::Miss, 0);
            }
            Done::Failed(failure) => {
                return match stale {
                    Some(s) => reply.send_bytes(s.body, &s.etag, CacheStatus::Stale, s.age),
                    None => reply.other(failure.into_response()),
                };
            }
            Done::Nothing => None,
        },
    };
    let origin = fetch_origin(cfg, &canonical, client_ip).await;
    let leading = match (&origin, leading) {
        (Err(failure), Some(leading)) => {
            leading.fail(failure);
            None
        }
        (_, leading) => leading,
    };
    let origin_failed = origin.as_ref().map_or(true, |r| r.status_code() >= 500);
    if origin_failed && let Some(s) = stale {
        return reply.send_bytes(s.body, &s.etag, CacheStatus::Stale, s.age);
    }
    match origin {
        Ok(mut resp) => match storable_body(&mut resp).await? {
            None => reply.other(passthrough(resp, CacheStatus::Miss)),
            Some((body, etag)) => {
                let copy = stored_copy(&cache_key, &policy, &body, &etag)?;
                let key = cache_key.clone();
                ctx.wait_until(async move {
                    let _ = Cache::default().put(key.as_str(), copy).await;
                });
                let fetched: Fetched = Rc::new((body, etag));
                if let Some(leading) = leading {
                    leading.share(&fetched);
                }
                let (body, etag) = (fetched.0.clone(), &fetched.1);
                reply.send_bytes(body, etag, CacheStatus::Miss, 0)
            }
        },
        Err(failure) => reply.other(failure.into_response()),
    }
}

/// The body and tag of an origin answer that may go into the shared cache; `None` otherwise
/// (the response is left unread so it can be passed through).
async fn storable_body(resp: &mut Response) -> Result<Option<(Vec<u8>, String)>> {
    let cc = resp.headers().get("Cache-Control")?;
    if !storable(
        resp.status_code(),
        cc.as_deref(),
        resp.headers().has("Set-Cookie")?,
    ) {
        return Ok(None);
    }
    let body = resp.bytes().await?;
    let etag = resp
        .headers()
        .get("ETag")?
        .unwrap_or_else(|| strong_etag(&body));
    Ok(Some((body, etag)))
}

/// Keeps an answer stored (in the Cache API) at `stored_at_ms` in this isolate's memory, for
/// at most as long as it is fresh.
fn keep(key: &str, body: &[u8], etag: &str, stored_at_ms: u64, policy: &CachePolicy) {
    let fresh_until_ms = stored_at_ms + u64::from(policy.s_maxage) * 1000;
    MEMO.with(|m| {
        m.borrow_mut()
            .put(key, body, etag, stored_at_ms, fresh_until_ms, now_ms())
    });
}

fn begin_refresh(key: &str) -> bool {
    REFRESHING.with(|set| set.borrow_mut().insert(key.to_owned()))
}

fn end_refresh(key: &str) {
    REFRESHING.with(|set| {
        set.borrow_mut().remove(key);
    });
}

/// Stores a fresh origin answer if it may be stored (background refresh).
async fn store_response(mut resp: Response, key: &str, policy: &CachePolicy) -> Result<()> {
    match storable_body(&mut resp).await? {
        Some((body, etag)) => {
            Cache::default()
                .put(key, stored_copy(key, policy, &body, &etag)?)
                .await
        }
        None => Ok(()),
    }
}

/// The copy of a fresh origin answer to put in the Cache API under `key`, stamped with the time
/// of storing; the same answer, with the same stamp, is kept in this isolate's memory.
fn stored_copy(key: &str, policy: &CachePolicy, body: &[u8], etag: &str) -> Result<Response> {
    let stored_at = now_ms();
    keep(key, body, etag, stored_at, policy);
    Ok(Response::from_bytes(body.to_vec())?
        .with_headers(to_headers(&stored_headers(policy, etag, stored_at))?))
}

#[derive(Clone)]
enum OriginFailure {
    Timeout,
    Unreachable(String),
}

impl OriginFailure {
    fn into_response(self) -> Result<Response> {
        match self {
            OriginFailure::Timeout => error_response(
                504,
                "origin_timeout",
                "the origin did not answer in time",
                &[],
            ),
            OriginFailure::Unreachable(e) => {
                worker::console_warn!("origin unreachable: {e}");
                error_response(502, "origin_unreachable", "the origin is unreachable", &[])
            }
        }
    }
}

/// Tells the origin who the client is, with the secret that makes it believe us. Client-sent
/// copies of these headers were dropped before.
fn add_trust_headers(headers: &Headers, cfg: &EdgeConfig, client_ip: Option<&str>) -> Result<()> {
    if let Some(secret) = &cfg.edge_secret {
        headers.set(EDGE_SECRET_HEADER, secret)?;
    }
    if let Some(ip) = client_ip {
        headers.set(CLIENT_IP_HEADER, ip)?;
    }
    Ok(())
}

async fn fetch_origin(
    cfg: &EdgeConfig,
    path_and_query: &str,
    client_ip: Option<&str>,
) -> std::result::Result<Response, OriginFailure> {
    let build = || -> Result<Request> {
        let headers = Headers::new();
        headers.set("Accept", "application/json")?;
        // The edge keeps and serves the JSON as it is (compression is the CDN's own layer):
        // never a compressed representation, whose ETag names other bytes.
        headers.set("Accept-Encoding", "identity")?;
        add_trust_headers(&headers, cfg, client_ip)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        Request::new_with_init(&format!("{}{path_and_query}", cfg.origin_url), &init)
    };
    let req = build().map_err(|e| OriginFailure::Unreachable(e.to_string()))?;
    send(req, cfg.origin_timeout_ms).await
}

async fn send(req: Request, timeout_ms: u32) -> std::result::Result<Response, OriginFailure> {
    let signal: worker::AbortSignal = web_sys::AbortSignal::timeout_with_u32(timeout_ms).into();
    let started = now_ms();
    Fetch::Request(req)
        .send_with_signal(&signal)
        .await
        .map_err(|e| {
            if signal.aborted() || now_ms().saturating_sub(started) >= u64::from(timeout_ms) {
                OriginFailure::Timeout
            } else {
                OriginFailure::Unreachable(e.to_string())
            }
        })
}

/// Request headers never passed on to the origin: hop-by-hop, Cloudflare's own, and the trust
/// headers a client might try to forge.
fn dropped_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "host"
            | "connection"
            | "content-length"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "x-forwarded-for"
    ) || n.starts_with("cf-")
        || n == EDGE_SECRET_HEADER
        || n == CLIENT_IP_HEADER
}

async fn forward(
    mut req: Request,
    url: &Target<'_>,
    cfg: &EdgeConfig,
    client_ip: Option<&str>,
) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !dropped_header(&name) {
            headers.append(&name, &value)?;
        }
    }
    add_trust_headers(&headers, cfg, client_ip)?;
    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(headers);
    if !matches!(method, Method::Get | Method::Head) {
        let body = req.bytes().await?;
        if !body.is_empty() {
            init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        }
    }
    let target = format!("{}{}", cfg.origin_url, url.path_and_query());
    match send(
        Request::new_with_init(&target, &init)?,
        cfg.origin_timeout_ms,
    )
    .await
    {
        Ok(resp) => passthrough(resp, CacheStatus::Bypass),
        Err(failure) => failure.into_response(),
    }
}

/// The origin's answer as is, plus `X-Cache`.
fn passthrough(resp: Response, status: CacheStatus) -> Result<Response> {
    with_headers(resp, &[(X_CACHE, status.as_str().to_owned())])
}

/// The same response with extra headers (fetched headers are immutable: copy, then rebuild).
/// `resp` with `extra` headers set, and a `Date` when it has none (a cached copy keeps the one
/// the origin sent, so `Date` + `Age` tell a browser how old it is).
fn with_headers(resp: Response, extra: &[(&'static str, String)]) -> Result<Response> {
    let dated = resp.headers().has("Date")?;
    if extra.is_empty() && dated {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    if !dated {
        headers.set("Date", &crate::clock::http_date())?;
    }
    let code = resp.status_code();
    let (_, body) = resp.into_parts();
    Ok(Response::builder()
        .with_status(code)
        .with_headers(headers)
        .body(body))
}

fn to_headers(pairs: &[(&'static str, String)]) -> Result<Headers> {
    let headers = Headers::new();
    for (name, value) in pairs {
        headers.set(name, value)?;
    }
    Ok(headers)
}

/// A JSON error (`{"error": {"code", "message"}}`), never cached.
fn error_response(
    status: u16,
    code: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> Result<Response> {
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default();
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", PRIVATE_NO_STORE)?;
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    Ok(Response::from_bytes(body)?
        .with_status(status)
        .with_headers(headers))
}
