//! The rate-limit middleware: picks the tier from the route group (`shared::ratelimit`), counts
//! the request against the client address (IPv6 by /64) and, on every tier but Auth, also
//! against the user of a live session, asks [`crate::ratelimit::Limiter`], and answers 429 or
//! adds the IETF headers
//! (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: "api";q=1000;w=60`,
//! `RateLimit: "api";r=412;t=37`) to every limited route's response.
//!
//! It runs before authentication, so anonymous floods of any group are limited too. The
//! session it resolves is handed to the auth extractor, so a request costs one session lookup.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use shared::headers::{RATELIMIT, RATELIMIT_POLICY};
use shared::ratelimit::{Tier, ip_key};

use super::auth::{ResolvedSession, token};
use super::client_ip::resolve;
use super::error::json_error;
use crate::ratelimit::Decision;
use crate::state::AppState;

pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(tier) = Tier::for_path(req.uri().path()).filter(|_| state.limiter.is_enabled()) else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let address = match resolve(state.settings.edge_secret.as_ref(), req.headers(), peer) {
        Some(ip) => format!("ip:{}", ip_key(ip)),
        None => "ip:unknown".to_owned(),
    };
    // The sign-in routes are limited by address alone: a token must not buy more guesses. On
    // the other tiers a live session is looked up once (the auth extractor reuses it); a failing
    // session store leaves that extractor to answer 503.
    let mut user = None;
    if tier != Tier::Auth
        && let Some(token) = token(req.headers())
        && let Ok(session) = state.accounts.sessions.touch(&token).await
    {
        user = session.map(|u| format!("user:{}", u.user_id));
        req.extensions_mut().insert(ResolvedSession(session));
    }
    // Every request counts against its address; a signed-in one against its user too, so
    // holding more accounts never multiplies what one address may send.
    let mut decision = state.limiter.check(tier, &address).await;
    if decision.allowed
        && let Some(user) = user
    {
        let by_user = state.limiter.check(tier, &user).await;
        if !by_user.allowed || by_user.remaining < decision.remaining {
            decision = by_user;
        }
    }
    if !decision.allowed {
        let mut resp = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; retry later",
        );
        add_headers(&mut resp, &decision);
        if let Ok(v) = HeaderValue::from_str(&decision.reset_secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    add_headers(&mut resp, &decision);
    resp
}

fn add_headers(resp: &mut Response, d: &Decision) {
    let policy = format!(
        "\"{}\";q={};w={}",
        d.limit.name,
        d.limit.limit,
        d.limit.window.as_secs().max(1)
    );
    let state = format!("\"{}\";r={};t={}", d.limit.name, d.remaining, d.reset_secs);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&state) {
        h.insert(RATELIMIT, v);
    }
}
