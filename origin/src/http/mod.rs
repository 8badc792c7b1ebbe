//! The HTTP surface: one function ([`public`]) builds the whole public application, so tests
//! drive it exactly as production does: its front door ([`Public::serve`]), the path of the
//! single-entry catalog reads ([`answer`]), and the [`Router`] behind them.
//!
//! - [`catalog`]: the public catalog routes.
//! - [`accounts`], [`auth`]: sign-up, sessions, balance, purchases, admin; the auth extractors.
//! - [`Public::serve`]: what every request passes through first (request id, span, admission,
//!   rate limit, metrics), in one place.
//! - [`ratelimit`]: the tier check in front of every `/v1/` route.
//! - [`ops`]: operator actions (the Ops tier).
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`openapi`]: the OpenAPI document, built from the handlers as they are routed.
//! - [`respond`]: `Cache-Control`, `ETag` and `304` for cacheable responses; [`compress`]: their
//!   brotli/gzip forms, made once per entry.
//! - [`client_ip`]: the client address, trusting the edge's forwarded one only with its secret.
//! - [`extract`]: extractors whose rejections are the JSON 400 every route promises.
//! - [`error`]: [`ApiError`], the one mapping of every layer's errors to responses.

pub mod accounts;
pub mod auth;
pub mod catalog;
pub mod client_ip;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod ops;
pub mod ratelimit;
pub mod respond;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::FutureExt;
use shared::route::EntryRoute;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::meters;
use crate::state::AppState;
use error::{ApiError, json_error};
use extract::Negotiation;

const REQUEST_ID: HeaderName = HeaderName::from_static(shared::headers::REQUEST_ID);

/// Every documented route, registered from its handler's `#[utoipa::path]` (path and method
/// come from the annotation, so the document and the router cannot disagree).
fn api_router() -> OpenApiRouter<AppState> {
    // Personal and mutating routes: never stored by any cache.
    let private = OpenApiRouter::new()
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::logout_all))
        .routes(routes!(accounts::balance))
        .routes(routes!(accounts::purchase, accounts::history))
        .routes(routes!(accounts::set_price))
        .routes(routes!(accounts::put_prices))
        .routes(routes!(accounts::credit))
        .routes(routes!(ops::invalidate))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static(shared::policy::PRIVATE_NO_STORE),
        ));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(private)
        .routes(routes!(catalog::providers))
        .routes(routes!(catalog::countries))
        .routes(routes!(catalog::services))
        .routes(routes!(catalog::bulk_prices))
        .routes(routes!(catalog::price))
        .routes(routes!(health::client_ip))
        .routes(routes!(health::healthz))
}

/// `/openapi.json` may be kept for five minutes by anyone: it changes only with a deploy.
const OPENAPI_CACHE_CONTROL: &str = "public, max-age=300";

/// The OpenAPI document of [`router`], as `/openapi.json` serves it.
pub fn openapi_document() -> String {
    openapi::document(&openapi::complete(api_router().into_openapi()))
}

/// The public listener's application: [`Public::serve`] is every request's front door, then a
/// single-entry catalog read is answered without routing ([`answer`]) and everything else goes
/// through the router.
#[derive(Clone)]
pub struct Public {
    front: Arc<Front>,
    router: Router,
}

/// The public application over `state` (the only constructor: the server and the tests use it).
pub fn public(state: AppState) -> Public {
    let front = Arc::new(Front {
        metrics_on: state.metrics.is_some(),
        in_flight: tokio::sync::Semaphore::new(state.settings.max_concurrent_requests),
        per_client: crate::admission::Shares::new(state.settings.max_in_flight_per_client),
        body_timeout: state.settings.body_read_timeout,
        timeout: state.settings.request_timeout,
        policy_headers: ratelimit::PolicyHeaders::new(&state.limiter),
        state: state.clone(),
    });
    let (api, spec) = api_router().split_for_parts();
    // The document never changes in a process: made, tagged and compressed once.
    let spec = crate::cache::Value::new(Bytes::from(openapi::document(&openapi::complete(spec))));
    let spec_codings = crate::cache::compressed::Compressed::new(1 << 20);
    let mut router = Router::new()
        .merge(api)
        .route(
            "/openapi.json",
            get(move |headers: HeaderMap| {
                let negotiation = Negotiation::of(&headers);
                let cache_control = HeaderValue::from_static(OPENAPI_CACHE_CONTROL);
                let resp =
                    respond::represent(&spec_codings, cache_control, &negotiation, spec.clone());
                async move { resp }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The front door has already read the body within its route's limit
        // (`shared::headers::max_body_bytes`): the largest is allowed here.
        .layer(axum::extract::DefaultBodyLimit::max(
            shared::headers::MAX_BULK_BODY_BYTES,
        ))
        .layer(CatchPanicLayer::custom(|_| internal_error()));
    if front.metrics_on {
        router = router.layer(middleware::from_fn(label_route));
    }
    Public {
        front,
        router: router.with_state(state),
    }
}

/// What every request passes through first, in one place (each tower layer of its own would
/// cost a boxed future and a service clone per request; on a cache hit five such layers were a
/// fifth of the origin's time):
/// 1. a request id (`X-Request-Id` on the response), and a span once the request has to wait
///    (a warm hit, answered in its first poll, pays for neither a span nor a deadline timer);
/// 2. the body, read whole (at most [`extract::MAX_BODY_BYTES`], within `BODY_READ_TIMEOUT_MS`,
///    else 413 or 408) before anything is held, so a body trickled in a byte at a time holds
///    no slot;
/// 3. admission: one of the client's `MAX_IN_FLIGHT_PER_CLIENT` (beyond: 429 + Retry-After, so
///    one client cannot take every slot), a slot among `MAX_CONCURRENT_REQUESTS` in flight (none
///    free: 503 + Retry-After at once, load shedding rather than an unbounded queue) and
///    `REQUEST_TIMEOUT_MS` to finish (past it the work is dropped, a purchase's transaction rolls
///    back, and the client gets a JSON 504);
/// 4. the rate limit ([`ratelimit`]);
/// 5. request count and latency by route pattern ([`meters`]), and a WARN line for a 5xx (its
///    cause is logged once, at ERROR, by `ApiError`, so Sentry gets one event per error).
struct Front {
    state: AppState,
    metrics_on: bool,
    in_flight: tokio::sync::Semaphore,
    per_client: Arc<crate::admission::Shares>,
    body_timeout: std::time::Duration,
    timeout: std::time::Duration,
    policy_headers: ratelimit::PolicyHeaders,
}

impl Public {
    /// One request from `peer`, start to finish.
    pub async fn serve<B>(self, req: axum::http::Request<B>, peer: SocketAddr) -> Response
    where
        B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let Public { front, router } = self;
        let req = req.map(Body::new);
        let started = front.metrics_on.then(Instant::now);
        // The edge's request id is adopted (one id in the edge's log and ours); anyone else's is
        // replaced, so a client cannot plant ids in our logs.
        let secret = front.state.settings.edge_secret.as_ref();
        let from_edge = client_ip::from_edge(secret, req.headers());
        let given = from_edge.then(|| req.headers().get(&REQUEST_ID)).flatten();
        let id = request_id(given);
        // Kept for the WARN line of a 5xx (a clone is a reference count, not a copy).
        let (req_method, req_uri) = (req.method().clone(), req.uri().clone());
        // One line per request when `RUST_LOG` asks for it (`access=debug`): the request id the
        // edge logged too, so the two lines join. Nothing is copied when it is off.
        let access = tracing::enabled!(target: "access", tracing::Level::DEBUG)
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let method = front.metrics_on.then(|| req.method().clone());
        let work = async {
            // A request without a body (every catalog read) skips the read and its future.
            let limit = shared::headers::max_body_bytes(req.method().as_str(), req.uri().path());
            let mut req = if axum::body::HttpBody::is_end_stream(req.body()) {
                req
            } else {
                match Box::pin(whole_body(req, limit, front.body_timeout)).await {
                    Ok(req) => req,
                    Err(e) => return (e.into_response(), None),
                }
            };
            let client = client_ip::resolve_from(from_edge, req.headers(), Some(peer.ip()));
            let client = client.unwrap_or(peer.ip());
            let Some(_share) = front.per_client.take(client) else {
                let e = ApiError::TooManyRequests(
                    "too many requests in flight from this client; retry shortly".into(),
                    1,
                );
                return (e.into_response(), None);
            };
            let Ok(_slot) = front.in_flight.try_acquire() else {
                let mut resp = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many requests in flight; retry shortly",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return (resp, None);
            };
            if auth::tossed(req.headers()) {
                let resp = json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "more than one session cookie",
                );
                return (resp, None);
            }
            let limited = async {
                let decision = ratelimit::decide(&front.state, &mut req, client).await;
                if let Some(d) = decision.as_ref().filter(|d| !d.allowed) {
                    return (ratelimit::refusal(d, &front.policy_headers), None);
                }
                let (mut resp, pattern) = match entry_route(&req) {
                    Some(route) => {
                        let resp = answer(&front.state, route, req.headers()).await;
                        (resp, Some(route.pattern()))
                    }
                    None => {
                        // Resolved once: the `ClientIp` extractor reads it from here. Only
                        // routed requests get extensions: the first insert allocates a map.
                        req.extensions_mut().insert(client_ip::ClientIp(client));
                        req.extensions_mut().insert(ConnectInfo(peer));
                        let resp = router.oneshot(req).await.unwrap_or_else(|e| match e {});
                        (resp, None)
                    }
                };
                if let Some(d) = &decision {
                    ratelimit::add_headers(&mut resp, d, &front.policy_headers);
                }
                (resp, pattern)
            };
            // The deadline is armed only for a request that has to wait: one answered in its
            // first poll (a warm hit) cannot overrun it, and a timer costs a wheel entry.
            let mut limited = std::pin::pin!(limited);
            if let Poll::Ready(answered) = futures::poll!(limited.as_mut()) {
                return answered;
            }
            match tokio::time::timeout(front.timeout, limited).await {
                Ok(answered) => answered,
                Err(_) => (
                    json_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        "the request took too long",
                    ),
                    None,
                ),
            }
        };
        // The span (method, path, request id on every line logged for this request) is made
        // when the request first has to wait: a request answered in its first poll (a warm
        // hit, a refusal) logs nothing there, and making a span is the costliest part of such
        // a request (its fields formatted for the JSON log). A 5xx gets one either way, for its
        // WARN line below.
        let make_span = || request_span(&id);
        let mut span = None;
        let mut work = std::pin::pin!(work);
        let (mut resp, pattern) = match futures::poll!(work.as_mut()) {
            Poll::Ready(answered) => answered,
            Poll::Pending => work.instrument(span.insert(make_span()).clone()).await,
        };
        let status = resp.status();
        if let Some((method, path)) = access {
            tracing::debug!(
                target: "access",
                request_id = %id.to_str().unwrap_or("-"),
                method = %method,
                path = %path,
                status = status.as_u16(),
                "request"
            );
        }
        if status.is_server_error() {
            let span = span.get_or_insert_with(make_span);
            tracing::warn!(
                parent: &*span,
                method = req_method.as_str(),
                path = req_uri.path(),
                status = status.as_u16(),
                "request failed"
            );
        }
        if let (Some(started), Some(method)) = (started, method) {
            let route = pattern
                .or_else(|| {
                    resp.extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                })
                .unwrap_or("unmatched");
            meters::http_request(
                route,
                &method,
                status.as_u16(),
                started.elapsed().as_secs_f64(),
            );
        }
        resp.headers_mut().insert(REQUEST_ID, id);
        resp
    }
}

/// `req` with its body read whole: at most `max` bytes (413 beyond, at once when the declared
/// length says so), within `limit` (408 past it). A request without a body (every catalog read)
/// passes untouched.
async fn whole_body(
    req: Request,
    max: usize,
    limit: std::time::Duration,
) -> Result<Request, ApiError> {
    use axum::body::HttpBody;
    use http_body_util::BodyExt;
    if req.body().is_end_stream() {
        return Ok(req);
    }
    let too_large = ApiError::PayloadTooLarge(max);
    if req.body().size_hint().lower() > max as u64 {
        return Err(too_large);
    }
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(limit, limited.collect()).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        // The client went away mid-body (nobody is left to read an answer).
        Ok(Err(_)) => Err(ApiError::BadRequest(
            "the request body was cut short".into(),
        )),
        Ok(Ok(body)) => Ok(Request::from_parts(parts, Body::from(body.to_bytes()))),
    }
}

/// The catalog routes answered before routing: a `GET` of a single-entry route
/// (`shared::route::EntryRoute`: every catalog read but the bulk one) spelled plainly. Anything
/// else (another route or method, a path that needs decoding or validating) is `None` and goes
/// through the router, which answers or refuses it.
fn entry_route(req: &Request) -> Option<EntryRoute<'_>> {
    if req.method() != Method::GET {
        return None;
    }
    EntryRoute::parse(req.uri().path())
}

/// A single-entry catalog route's answer, exactly what its handler sends (the same
/// [`respond::cacheable`], the same [`ApiError`]s), without the router's matching and parameter
/// map or the extractors. A warm hit, the hot path, is found in L1 with the key on the stack and
/// no await; otherwise the cache-aside way (Redis, then one load).
async fn answer(state: &AppState, route: EntryRoute<'_>, headers: &HeaderMap) -> Response {
    meters::hit_path().increment(1);
    let negotiation = Negotiation::of(headers);
    // Outside the router's panic guard, so with one of its own: a panic answers a JSON 500.
    let guarded = std::panic::AssertUnwindSafe(async {
        let value = match state.catalog.cached(&route) {
            Some(value) => value,
            // Boxed: the cache-aside load's future is kilobytes (Redis, then PostgreSQL), and
            // inline it would be carried and moved by every request's, hits included.
            None => match Box::pin(state.catalog.entry(route)).await {
                Ok(value) => value,
                Err(e) => return ApiError::from(e).into_response(),
            },
        };
        respond::cacheable(
            &state.headers,
            &state.compressed,
            route.data_type(),
            &negotiation,
            value,
        )
    });
    guarded
        .catch_unwind()
        .await
        .unwrap_or_else(|_| internal_error())
}

/// The routed request's pattern, handed to the front door's metrics in the response (the
/// router matches after the front door has run).
async fn label_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(route);
    }
    resp
}

fn internal_error() -> Response {
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

/// The request id: the edge's is kept only when it is 1–64 characters of `A-Z a-z 0-9 - _ .`;
/// anything else (log injection, megabyte ids) is replaced by a fresh one: 128 random bits as
/// 32 hex digits, from the thread's ChaCha generator (a counter, or a plain PRNG whose state two
/// ids give away, would tell anyone how many requests came between theirs).
fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    use rand::Rng;
    let well_formed = |v: &HeaderValue| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
    };
    if let Some(v) = given.filter(|v| well_formed(v)) {
        return v.clone();
    }
    let bits: u128 = rand::rng().random();
    let mut hex = [0u8; 32];
    let digits = b"0123456789abcdef";
    for (i, byte) in bits.to_be_bytes().iter().enumerate() {
        hex[2 * i] = digits[usize::from(byte >> 4)];
        hex[2 * i + 1] = digits[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&hex).unwrap_or(HeaderValue::from_static("-"))
}

/// The operator listener (`METRICS_ADDR`, loopback by default): liveness, readiness and metrics,
/// never on the public listener, so neither a client nor the edge can read route counts, Redis
/// memory or PostgreSQL connections, or make `/readyz` take a pooled connection per call.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .with_state(state)
}

/// A request's span: its request id, on every line logged for the request (free when its level
/// is off). One field, a plain string: the JSON log formats a span's fields when it is made,
/// and that was most of the span's cost. The method and path are on the request's WARN line
/// (and on its access line when those are on).
fn request_span(id: &HeaderValue) -> tracing::Span {
    tracing::info_span!("request", request_id = id.to_str().unwrap_or("-"))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
