//! Account handlers: sign-up, sessions, balance, purchases, history, admin. Every response here
//! is `Cache-Control: private, no-store` (set by the router for the whole group).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::Product;
use shared::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use shared::types::{Credentials, CreditRequest, LoginResponse, PurchaseRequest, SetPriceRequest};

use super::auth::{AdminUser, AuthUser, SESSION_COOKIE, tokens};
use super::error::ApiError;
use super::extract::{ValidJson, ValidPath, ValidQuery};
use crate::state::AppState;

pub async fn register(
    State(state): State<AppState>,
    ValidJson(creds): ValidJson<Credentials>,
) -> Result<Response, ApiError> {
    let user = state.accounts.register(creds).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

pub async fn login(
    State(state): State<AppState>,
    ValidJson(creds): ValidJson<Credentials>,
) -> Result<Response, ApiError> {
    let token = state.accounts.login(creds).await?;
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
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Ends every session the request presents (a bearer token and a cookie may name two).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let presented = tokens(&headers);
    if presented.is_empty() {
        return Err(ApiError::Unauthorized("sign in first".into()));
    }
    for token in presented {
        state.accounts.sessions.delete(&token).await?;
    }
    Ok(expire_cookie(StatusCode::NO_CONTENT.into_response()))
}

/// "Log out everywhere": ends every session of the signed-in user.
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

pub async fn balance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Response, ApiError> {
    let body = state.accounts.balance(user.user_id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

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

#[derive(Deserialize)]
pub struct HistoryQuery {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

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

pub async fn set_price(
    State(state): State<AppState>,
    _admin: AdminUser,
    ValidPath(product): ValidPath<Product>,
    ValidJson(req): ValidJson<SetPriceRequest>,
) -> Result<Response, ApiError> {
    let price = state.accounts.set_price(product, req).await?;
    Ok(Json(price).into_response())
}

#[derive(Deserialize)]
pub struct UserPath {
    id: i64,
}

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

/// The request's `Idempotency-Key`, if any (validated further by the accounts layer).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be ASCII".into()))
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
