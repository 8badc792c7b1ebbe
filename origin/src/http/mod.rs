//! The HTTP surface: one function builds the whole [`Router`], so tests drive it exactly as
//! production does.
//!
//! - [`catalog`]: the public catalog routes.
//! - [`accounts`], [`auth`]: sign-up, sessions, balance, purchases, admin; the auth extractors.
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
pub mod compress;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod ops;
pub mod ratelimit;
pub mod respond;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::meters;
use crate::state::AppState;
use error::{ApiError, json_error};

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

/// The OpenAPI document of [`router`], as `/openapi.json` serves it.
pub fn openapi_document() -> String {
    openapi::document(&openapi::complete(api_router().into_openapi()))
}

pub fn router(state: AppState) -> Router {
    let metrics_on = state.metrics.is_some();
    let admission = Arc::new(Admission {
        in_flight: tokio::sync::Semaphore::new(state.settings.max_concurrent_requests),
        timeout: state.settings.request_timeout,
    });
    let (api, spec) = api_router().split_for_parts();
    let spec = Bytes::from(openapi::document(&openapi::complete(spec)));
    Router::new()
        .merge(api)
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], spec) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            extract::MAX_BODY_BYTES,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::limit,
        ))
        .layer(middleware::from_fn_with_state(admission, admit))
        .layer(tower::util::option_layer(
            metrics_on.then(|| middleware::from_fn(record_metrics)),
        ))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(request_id))
                .layer(
                    TraceLayer::new_for_http()
                        // 5xx causes are logged once, at ERROR, by `ApiError`; the trace layer
                        // only notes failures, so Sentry gets one event per error.
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN))
                        .make_span_with(request_span),
                )
                .layer(CatchPanicLayer::custom(|_| {
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error",
                    )
                })),
        )
        .with_state(state)
}

/// What a request must get past before any work: a slot among `MAX_CONCURRENT_REQUESTS` in
/// flight (none free: 503 + Retry-After at once, load shedding rather than an unbounded queue),
/// and `REQUEST_TIMEOUT_MS` to finish (past it the work is dropped, a purchase's transaction
/// rolls back, and the client gets a JSON 504). One layer, so the hot path pays for one.
struct Admission {
    in_flight: tokio::sync::Semaphore,
    timeout: std::time::Duration,
}

async fn admit(
    axum::extract::State(admission): axum::extract::State<Arc<Admission>>,
    req: Request,
    next: Next,
) -> Response {
    let Ok(_slot) = admission.in_flight.try_acquire() else {
        let mut resp = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    match tokio::time::timeout(admission.timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => json_error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request took too long",
        ),
    }
}

/// Every request carries an `X-Request-Id` (its span and its response too). A client's is kept
/// only when it is 1–64 characters of `A-Z a-z 0-9 - _ .`; anything else (log injection,
/// megabyte ids) is replaced by a fresh UUID.
async fn request_id(mut req: Request, next: Next) -> Response {
    let well_formed = |v: &HeaderValue| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
    };
    let id = match req.headers().get(&REQUEST_ID) {
        Some(v) if well_formed(v) => v.clone(),
        _ => {
            let fresh = uuid::Uuid::new_v4().hyphenated().to_string();
            let v = HeaderValue::from_str(&fresh).unwrap_or(HeaderValue::from_static("-"));
            req.headers_mut().insert(REQUEST_ID, v.clone());
            v
        }
    };
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
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

/// One span per request: method, path and request id.
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %req.method(),
        uri = %req.uri().path(),
        request_id = %id
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Request count and latency by matched route (never the raw path: it holds codes and ids).
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    meters::http_request(
        route,
        &method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}
