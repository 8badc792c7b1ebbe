//! Account handlers: sign-up, sessions, balance, purchases, history, admin. Every response here
//! is `Cache-Control: private, no-store` (set by the router for the whole group).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::Product;
use shared::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use shared::types::{
    Activation, ActivationPage, BalanceResponse, Credentials, CreditRequest, ErrorBody,
    LoginResponse, PriceSet, PriceUpdateRequest, PriceUpdateResponse, PurchaseRequest,
    SetPriceRequest, UserResponse,
};
use utoipa::IntoParams;

use super::auth::{AdminUser, AuthUser, DEVICE_COOKIE, SESSION_COOKIE, cookie_value, tokens};
use super::client_ip::ClientIp;
use super::error::ApiError;
use super::extract::{ValidJson, ValidPath, ValidQuery};
use crate::state::AppState;

/// Creates an account.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Created.", body = UserResponse),
        (status = 400, description = "Malformed input (`bad_request`).", body = ErrorBody),
        (status = 409, description = "The email is taken, in any letter case (`conflict`).", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ValidJson(creds): ValidJson<Credentials>,
) -> Result<Response, ApiError> {
    let user = state.accounts.register(creds, ip).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// Signs in: a session token, also set as an `HttpOnly` cookie.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in.", body = LoginResponse,
            headers(("Set-Cookie" = String, description = "`__Host-session=<token>; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=<absolute lifetime>`, and for a browser without one a `__Host-device` cookie (its own sign-in budget)."))),
        (status = 400, description = "Malformed input (`bad_request`).", body = ErrorBody),
        (status = 401, description = "Wrong email or password (`unauthorized`).", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ValidJson(creds): ValidJson<Credentials>,
) -> Result<Response, ApiError> {
    let device = cookie_value(&headers, DEVICE_COOKIE);
    let client = crate::accounts::throttle::Client {
        ip,
        device: device.as_deref(),
    };
    let signed_in = state.accounts.login(creds, client).await?;
    let token = signed_in.token;
    let ttl = state.accounts.sessions.ttl_secs();
    // The cookie lives as long as the session may (its absolute lifetime): the 15-minute idle
    // timeout is the server's to enforce, so an active browser is never logged out by it.
    let max_age = state.accounts.sessions.max_age_secs();
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age}"
    );
    let mut resp = Json(LoginResponse {
        token,
        expires_in: ttl,
        role: signed_in.role.as_str().to_owned(),
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    // The browser's device cookie for this account: its own sign-in budget from now on (see
    // `accounts::throttle`). Strict: no other site ever makes a browser send it.
    if let Some(device) = signed_in.device {
        let max_age = crate::accounts::throttle::DEVICE_SECS;
        let cookie = format!(
            "{DEVICE_COOKIE}={device}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age}"
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// Ends every session the request presents (a bearer token and a cookie may name two). A request
/// that presents no live session is refused like any other unauthenticated one.
/// Ends the presented session(s).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Ended; the cookie is cleared."),
        (status = 401, description = "No live session presented (`unauthorized`).", body = ErrorBody),
        (status = 403, description = "Authenticated by the cookie alone, without a JSON body or an `X-Requested-With` header: what a cross-site form would send (`forbidden`).", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::auth::cross_site_safe(&method, &headers)?;
    let presented = tokens(&headers);
    if presented.is_empty() {
        return Err(ApiError::Unauthorized("sign in first".into()));
    }
    let mut ended = false;
    for token in presented {
        ended |= state.accounts.sessions.delete(&token).await?;
    }
    if !ended {
        return Err(ApiError::Unauthorized("no live session to end".into()));
    }
    Ok(expire_cookie(StatusCode::NO_CONTENT.into_response()))
}

/// "Log out everywhere": ends every session of the signed-in user.
/// Ends every session of the signed-in user.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth", security(("bearer" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Every session ended; the cookie is cleared."),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
        (status = 403, description = "Authenticated by the cookie alone, without a JSON body or an `X-Requested-With` header: what a cross-site form would send (`forbidden`).", body = ErrorBody),
    ))]
pub async fn logout_all(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Response, ApiError> {
    state.accounts.sessions.revoke_all(user.user_id).await?;
    Ok(expire_cookie(StatusCode::NO_CONTENT.into_response()))
}

fn expire_cookie(mut resp: Response) -> Response {
    let expire = format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expire) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The signed-in user's balance.
#[utoipa::path(get, path = "/v1/me/balance", tag = "account", security(("bearer" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The balance (cached up to 30 s, dropped on every change).", body = BalanceResponse),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
    ))]
pub async fn balance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Response, ApiError> {
    let body = state.accounts.balance(user.user_id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Buys a number: debits the balance and reserves a number, atomically.
#[utoipa::path(post, path = "/v1/activations", tag = "account", security(("bearer" = []), ("session_cookie" = [])), request_body = PurchaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,64}$", description = "Makes a retry safe: the same key with the same request answers the first result again (with `Idempotent-Replayed: true`); with another request, 409. 1–64 visible ASCII characters.")),
    responses(
        (status = 201, description = "Bought.", body = Activation, headers(("Idempotent-Replayed" = String, description = "`true` when this answers a retried request with its key."))),
        (status = 400, description = "Malformed input (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
        (status = 402, description = "The balance is below the price (`insufficient_funds`).", body = ErrorBody),
        (status = 404, description = "No such product (`not_found`).", body = ErrorBody),
        (status = 409, description = "Out of stock, or the key was used for another request (`conflict`); or the price is now above `expected_price_cents` (`price_changed`, with the current `price_cents`; nothing charged or reserved).", body = ErrorBody),
    ))]
pub async fn purchase(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    ValidJson(req): ValidJson<PurchaseRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let purchase = state.accounts.purchase(user.user_id, req, key).await?;
    let resp = (StatusCode::CREATED, Json(purchase.activation)).into_response();
    Ok(replay_marked(resp, purchase.replayed))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only activations in this state.
    #[param(pattern = "^(pending|received|completed|cancelled|expired)$")]
    status: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The signed-in user's purchases, newest first.
#[utoipa::path(get, path = "/v1/activations", tag = "account", security(("bearer" = []), ("session_cookie" = [])), params(HistoryQuery),
    responses(
        (status = 200, description = "One page.", body = ActivationPage),
        (status = 400, description = "Malformed input (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ValidQuery(q): ValidQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    let page = state
        .accounts
        .history(user.user_id, q.status, q.cursor, q.limit)
        .await?;
    Ok(Json(page).into_response())
}

/// Sets a product's price and stock (admin).
#[utoipa::path(put, path = "/v1/admin/prices/{provider}/{country}/{service}", tag = "admin", security(("bearer" = []), ("session_cookie" = [])),
    params(Product), request_body = SetPriceRequest,
    responses(
        (status = 200, description = "The product as set, its exact stock included; its cached copies are dropped fleet-wide when what they show changed.", body = PriceSet),
        (status = 400, description = "Malformed input (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
        (status = 403, description = "Not an admin (`forbidden`).", body = ErrorBody),
        (status = 404, description = "Unknown provider, country or service (`not_found`).", body = ErrorBody),
    ))]
pub async fn set_price(
    State(state): State<AppState>,
    _admin: AdminUser,
    ValidPath(product): ValidPath<Product>,
    ValidJson(req): ValidJson<SetPriceRequest>,
) -> Result<Response, ApiError> {
    let price = state.accounts.set_price(product, req).await?;
    Ok(Json(price).into_response())
}

/// Sets many products' prices and stock at once (admin): validated whole, applied in one
/// transaction, exactly the changed products' cached copies dropped and purged downstream.
#[utoipa::path(put, path = "/v1/admin/prices", tag = "admin", security(("bearer" = []), ("session_cookie" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,64}$", description = "Makes a retry safe: the same key with the same body answers the first result again (with `Idempotent-Replayed: true`); with another body, 409. 1–64 visible ASCII characters.")),
    request_body = PriceUpdateRequest,
    responses(
        (status = 200, description = "Applied (or already so): what changed.", body = PriceUpdateResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this answers a retried request with its key."))),
        (status = 400, description = "A bad row, named (`bad_request`), or two rows for one product: nothing applied.", body = ErrorBody),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
        (status = 403, description = "Not an admin (`forbidden`).", body = ErrorBody),
        (status = 404, description = "A row names a provider, country or service the catalog does not have (`not_found`, the row named): nothing applied.", body = ErrorBody),
        (status = 409, description = "The key was used for another body (`conflict`).", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB (`payload_too_large`).", body = ErrorBody),
    ))]
pub async fn put_prices(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
    ValidJson(req): ValidJson<PriceUpdateRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let (answer, replayed) = crate::sync::bulk::apply(
        &state.db,
        &state.cache,
        &state.purger,
        admin.user_id,
        key,
        &req,
    )
    .await?;
    Ok(replay_marked(Json(answer).into_response(), replayed))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The user's id.
    #[param(minimum = 1)]
    id: i64,
}

/// Credits a user's balance through the ledger (admin).
#[utoipa::path(post, path = "/v1/admin/users/{id}/credit", tag = "admin", security(("bearer" = []), ("session_cookie" = [])),
    params(UserPath, ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,64}$", description = "Makes a retry safe: the same key with the same request answers the first result again (with `Idempotent-Replayed: true`); with another request, 409. 1–64 visible ASCII characters.")), request_body = CreditRequest,
    responses(
        (status = 200, description = "The user's new balance.", body = BalanceResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this answers a retried request with its key."))),
        (status = 400, description = "Malformed input (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
        (status = 403, description = "Not an admin (`forbidden`).", body = ErrorBody),
        (status = 404, description = "No such user (`not_found`).", body = ErrorBody),
        (status = 409, description = "The key was used for another request (`conflict`).", body = ErrorBody),
    ))]
pub async fn credit(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
    ValidPath(path): ValidPath<UserPath>,
    ValidJson(req): ValidJson<CreditRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let (balance, replayed) = state
        .accounts
        .credit(admin.user_id, path.id, req.amount_cents, key)
        .await?;
    Ok(replay_marked(Json(balance).into_response(), replayed))
}

/// The request's `Idempotency-Key`, if any, checked once for every route that takes one
/// ([`shared::input::idempotency_key`]: 1–64 visible ASCII characters, else 400).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(shared::input::idempotency_key)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Idempotency-Key must be 1-64 visible ASCII characters".into(),
                    )
                })
        })
        .transpose()
}

/// `Idempotent-Replayed: true` on the answer to a retried request.
fn replay_marked(mut resp: Response, replayed: bool) -> Response {
    if replayed {
        resp.headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    resp
}
