//! The OpenAPI 3.1 description of the public API. Each handler carries its `#[utoipa::path]`; the
//! router registers handlers through utoipa-axum's `routes!`, which takes the path and method
//! from that annotation, so the spec cannot list a route the router does not serve or miss one it
//! does. What every operation shares (the rate-limit headers and refusals, 503/504, the error
//! body, the security schemes) is added here once, by [`Shared`].
//!
//! Served at `/openapi.json`; checked in as `openapi.json` at the repository root (`make openapi`
//! rewrites it, and a test fails when it differs from what the code generates).

use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Response, Type};
use utoipa::{Modify, OpenApi, ToSchema};

use shared::headers;
use shared::types::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NexNum API",
        description = "The SMS-number marketplace: a public catalog (providers, countries, \
            services, prices; cacheable, with ETags) and accounts (sessions, balances, \
            purchases). Money is integer US cents. Every error is \
            `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "catalog", description = "Public, cacheable catalog reads"),
        (name = "auth", description = "Sign-up and sessions"),
        (name = "account", description = "The signed-in user's balance and purchases"),
        (name = "admin", description = "Admin and operator actions"),
        (name = "meta", description = "Health, the client's address, this document"),
    ),
    components(schemas(ErrorBody)),
)]
pub struct ApiDoc;

/// `{"deleted": n}` of `POST /v1/ops/cache/invalidate`.
#[derive(Serialize, ToSchema)]
pub struct InvalidateResponse {
    /// Keys removed from Redis.
    pub deleted: u64,
}

/// `GET /v1/client-ip`.
#[derive(Serialize, ToSchema)]
pub struct ClientIpResponse {
    /// The address the origin attributes the request to.
    pub ip: String,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
}

/// The schemes a signed-in request may use: the bearer token, or the `__Host-session` cookie.
pub const BEARER: &str = "bearer";
pub const COOKIE: &str = "session_cookie";

/// Adds what every operation shares. Run on the finished document (after the router has added
/// its paths).
pub fn complete(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    Shared.modify(&mut api);
    api
}

struct Shared;

impl Modify for Shared {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The `token` of `POST /v1/auth/login`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::http::auth::SESSION_COOKIE,
                "The `HttpOnly` cookie `POST /v1/auth/login` sets (same token).",
            ))),
        );
        for item in api.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_shared_responses(op);
            }
        }
    }
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

fn error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

/// Every operation: its 2xx answers carry the rate-limit headers; any request may be refused
/// with 429 (its tier is spent, or its client's in-flight share), 408/413 (one with a body: too
/// slow, too large), 503 (a dependency is out of reach, or the origin is shedding
/// load) or 504 (it ran past the request timeout).
fn add_shared_responses(op: &mut Operation) {
    let ratelimit = string_header(
        "The tier's remaining quota, `\"<tier>\";r=<remaining>;t=<seconds to reset>` \
         (IETF draft RateLimit header).",
    );
    let policy = string_header("The tier's quota, `\"<tier>\";q=<limit>;w=<window seconds>`.");
    let retry = string_header("Seconds to wait before retrying.");
    for (status, response) in op.responses.responses.iter_mut() {
        if status.starts_with('2')
            && let RefOr::T(r) = response
        {
            r.headers
                .insert(headers::RATELIMIT.into(), RefOr::T(ratelimit.clone()));
            r.headers
                .insert(headers::RATELIMIT_POLICY.into(), RefOr::T(policy.clone()));
        }
    }
    let add = |op: &mut Operation, status: &str, response: Response| {
        op.responses
            .responses
            .entry(status.into())
            .or_insert(RefOr::T(response));
    };
    add(
        op,
        "429",
        error(
            "Rate limited (`rate_limited`): the tier's quota is spent, or this client already has \
             `MAX_IN_FLIGHT_PER_CLIENT` requests in flight.",
        )
        .header("Retry-After", retry.clone())
        .header(headers::RATELIMIT, ratelimit)
        .header(headers::RATELIMIT_POLICY, policy)
        .build(),
    );
    add(
        op,
        "503",
        error("A dependency is out of reach or the origin is shedding load (`unavailable`).")
            .header("Retry-After", retry)
            .build(),
    );
    if op.request_body.is_some() {
        add(
            op,
            "408",
            error(
                "The body did not arrive within `BODY_READ_TIMEOUT_MS` (`request_timeout`); the \
                 connection is closed.",
            )
            .build(),
        );
        add(
            op,
            "413",
            error("The body is larger than 16 KiB (`payload_too_large`).").build(),
        );
    }
    add(
        op,
        "504",
        error("The request ran past the request timeout (`timeout`); nothing was written.").build(),
    );
}

/// The document as pretty JSON (what `/openapi.json` serves and the repository holds).
pub fn document(api: &utoipa::openapi::OpenApi) -> String {
    let mut json = api.to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    json.push('\n');
    json
}
