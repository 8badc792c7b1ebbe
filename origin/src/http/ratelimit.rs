//! The rate-limit middleware: picks the tier from the route group (`shared::ratelimit`), counts
//! the request against the client address (IPv6 by /64) and, on every tier but Auth, also
//! against the user of a live session, asks [`crate::ratelimit::Limiter`], and answers 429 or
//! adds the IETF headers
//! (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: "api";q=1000;w=60`,
//! `RateLimit: "api";r=412;t=37`) to every limited route's response.
//!
//! It runs (in [`super::Public`]'s front door) before authentication, so anonymous floods of any group are limited too. The
//! session it resolves is handed to the auth extractor, so a request costs one session lookup.

use std::fmt::Write as _;
use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use shared::headers::{RATELIMIT, RATELIMIT_POLICY};
use shared::ratelimit::{Tier, WIDER_IPV6, wider_ipv6, write_ip_key, write_prefix_key};

use super::auth::{ResolvedSession, token};
use super::error::json_error;
use crate::config::TierLimit;
use crate::ratelimit::{Decision, Limiter};
use crate::small::Small;
use crate::state::AppState;

/// The limiter's decision for this request, or `None` for a route no tier covers (or with the
/// limiter off). A live session it looked up is left in the request for the auth extractor.
/// `client` is the address [`super::client_ip::resolve`] gave.
pub async fn decide(state: &AppState, req: &mut Request, client: IpAddr) -> Option<Decision> {
    let tier = Tier::for_path(req.uri().path()).filter(|_| state.limiter.is_enabled())?;
    // Identities are built on the stack: a request with a lease allocates nothing here.
    let mut address = Small::<64>::new();
    let _ = address
        .write_str("ip:")
        .and_then(|()| write_ip_key(&mut address, client));
    // The common case, decided without a future: no session to look up, one budget (not an
    // IPv6 client's wider prefixes), a lease with a token left. Everything else awaits Redis
    // in a future of its own, boxed, so its kilobytes are not carried (and moved) by every
    // request's.
    let one_budget =
        (tier == Tier::Auth || token(req.headers()).is_none()) && wider_ipv6(client).is_none();
    if one_budget && let Some(decision) = state.limiter.check_leased(tier, address.as_str(), 1) {
        return Some(decision);
    }
    Box::pin(decide_waiting(state, req, client, tier, address)).await
}

/// [`decide`] when it has to wait: a session looked up, budgets asked of Redis.
async fn decide_waiting(
    state: &AppState,
    req: &mut Request,
    client: IpAddr,
    tier: Tier,
    address: Small<64>,
) -> Option<Decision> {
    // The sign-in routes are limited by address alone: a token must not buy more guesses. On
    // the other tiers a live session is looked up once (the auth extractor reuses it); a failing
    // session store leaves that extractor to answer 503.
    let mut user = None;
    if tier != Tier::Auth
        && let Some(token) = token(req.headers())
        && let Ok(session) = state.accounts.sessions.touch(&token).await
    {
        user = session.map(|u| u.user_id);
        req.extensions_mut().insert(ResolvedSession(session));
    }
    // Every request counts against its address; a signed-in one against its user too, so
    // holding more accounts never multiplies what one address may send.
    let mut decision = state.limiter.check(tier, address.as_str()).await;
    // An IPv6 client counts at its /56 and /48 too, each a budget its neighbours share.
    if let Some(v6) = wider_ipv6(client) {
        for (len, times) in WIDER_IPV6 {
            if !decision.allowed {
                break;
            }
            let mut prefix = Small::<64>::new();
            let _ = prefix
                .write_str("ip:")
                .and_then(|()| write_prefix_key(&mut prefix, v6, len));
            let wider = state
                .limiter
                .check_shared(tier, prefix.as_str(), times)
                .await;
            decision = stricter(decision, wider);
        }
    }
    if decision.allowed
        && let Some(user_id) = user
    {
        let mut user = Small::<64>::new();
        let _ = write!(user, "user:{user_id}");
        let by_user = state.limiter.check(tier, user.as_str()).await;
        decision = stricter(decision, by_user);
    }
    Some(decision)
}

/// The decision to act on of two budgets a request counts against: a refusal, else the one
/// with less left (its headers are what the client should pace itself by).
fn stricter(a: Decision, b: Decision) -> Decision {
    if !b.allowed || (a.allowed && b.remaining < a.remaining) {
        b
    } else {
        a
    }
}

/// The `RateLimit-Policy` value of each tier, made once: a tier's limit and window are fixed
/// for the life of a process, so the header need not be formatted per request.
pub struct PolicyHeaders(Vec<(TierLimit, HeaderValue)>);

impl PolicyHeaders {
    pub fn new(limiter: &Limiter) -> PolicyHeaders {
        PolicyHeaders(
            Tier::ALL
                .iter()
                .map(|&t| limiter.tier(t))
                .filter_map(|limit| Some((limit, policy_value(&limit)?)))
                .collect(),
        )
    }

    fn get(&self, limit: &TierLimit) -> Option<HeaderValue> {
        match self.0.iter().find(|(l, _)| l == limit) {
            Some((_, v)) => Some(v.clone()),
            None => policy_value(limit),
        }
    }
}

fn policy_value(limit: &TierLimit) -> Option<HeaderValue> {
    let mut policy = Small::<64>::new();
    write!(
        policy,
        "\"{}\";q={};w={}",
        limit.name,
        limit.limit,
        limit.window.as_secs().max(1)
    )
    .ok()?;
    HeaderValue::from_str(policy.as_str()).ok()
}

/// The 429 for a refused request, with its headers and `Retry-After`.
pub fn refusal(decision: &Decision, policies: &PolicyHeaders) -> Response {
    let mut resp = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; retry later",
    );
    add_headers(&mut resp, decision, policies);
    if let Ok(v) = HeaderValue::from_str(&decision.reset_secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// `RateLimit-Policy` and `RateLimit` on a limited route's response (on every request: built
/// without `core::fmt`, under header names parsed once).
pub fn add_headers(resp: &mut Response, d: &Decision, policies: &PolicyHeaders) {
    const POLICY: HeaderName = HeaderName::from_static(RATELIMIT_POLICY);
    const STATE: HeaderName = HeaderName::from_static(RATELIMIT);
    let mut state = Small::<64>::new();
    let written = state.push("\"")
        && state.push(d.limit.name)
        && state.push("\";r=")
        && state.push_int(d.remaining)
        && state.push(";t=")
        && state.push_int(d.reset_secs);
    let h = resp.headers_mut();
    if let Some(v) = policies.get(&d.limit) {
        h.insert(POLICY, v);
    }
    if written && let Ok(v) = HeaderValue::from_str(state.as_str()) {
        h.insert(STATE, v);
    }
}
