//! Who the client is. Behind the edge, the socket peer is the edge itself, so the edge sends the
//! client address in `X-Client-IP` together with the shared `X-Edge-Secret`. The address is
//! believed only when the secret matches `EDGE_SECRET` or, during a rotation,
//! `EDGE_SECRET_PREVIOUS` (compared in constant time, `shared::secret`); anyone else's
//! `X-Client-IP` is ignored and the socket peer is used.
//!
//! A wrong secret is not an attack to shrug off: it is what a half-done rotation or a typo in
//! one side's secret looks like, and it silently makes every user the edge's own address (one
//! rate-limit identity: 429 for most). So it is counted (`edge_secret_mismatch_total`, alerted
//! on) and logged, at most once a minute.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use shared::secret::{Matched, SharedSecret};

use shared::headers::{CLIENT_IP as CLIENT_IP_HEADER, EDGE_SECRET as EDGE_SECRET_HEADER};

use super::error::ApiError;
use crate::state::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Whether the request comes from the edge: it carries the configured secret (compared in
/// constant time). Only then are the edge's client address and request id believed.
pub fn from_edge(secret: Option<&SharedSecret>, headers: &HeaderMap) -> bool {
    let Some(given) = headers.get(EDGE_SECRET_HEADER) else {
        return false;
    };
    let Some(secret) = secret else {
        // The edge presents a secret the origin was not given: the same silent downgrade.
        mismatch();
        return false;
    };
    match secret.check(given.as_bytes()) {
        Some(Matched::Current) => true,
        Some(Matched::Previous) => {
            crate::meters::edge_secret_previous();
            true
        }
        None => {
            mismatch();
            false
        }
    }
}

/// Counts a wrong edge secret; logs one line a minute at most (a flood of bad guesses must not
/// become a flood of log lines).
fn mismatch() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
    crate::meters::edge_secret_mismatch();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if (last == 0 || now >= last + 60)
        && LAST_LOGGED
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "a request presented an X-Edge-Secret that matches neither EDGE_SECRET nor \
             EDGE_SECRET_PREVIOUS: its X-Client-IP is ignored (edge_secret_mismatch_total counts \
             them; at most one such line a minute)"
        );
    }
}

/// The client address given the trusted secret (if any), the request headers and the peer.
pub fn resolve(
    secret: Option<&SharedSecret>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    resolve_from(from_edge(secret, headers), headers, peer)
}

/// [`resolve`] when [`from_edge`] has already been asked (the front door asks once).
pub fn resolve_from(from_edge: bool, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
    if from_edge {
        let forwarded = headers
            .get(CLIENT_IP_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The front door resolved it already; the rest is for a router driven on its own.
        if let Some(client) = parts.extensions.get::<ClientIp>() {
            return Ok(*client);
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        resolve(state.settings.edge_secret.as_ref(), &parts.headers, peer)
            .map(ClientIp)
            .ok_or_else(|| ApiError::Internal("no peer address on the connection".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarded_address_needs_the_secret() {
        let secret = SharedSecret::new("0123456789abcdef-secret".into(), None).unwrap();
        let peer = Some("10.0.0.1".parse().unwrap());
        let spoof = headers(&[(CLIENT_IP_HEADER, "203.0.113.7")]);
        assert_eq!(
            resolve(Some(&secret), &spoof, peer),
            peer,
            "no secret: peer"
        );
        let wrong = headers(&[
            (CLIENT_IP_HEADER, "203.0.113.7"),
            (EDGE_SECRET_HEADER, "guess"),
        ]);
        assert_eq!(
            resolve(Some(&secret), &wrong, peer),
            peer,
            "wrong secret: peer"
        );
        let good = headers(&[
            (CLIENT_IP_HEADER, "203.0.113.7"),
            (EDGE_SECRET_HEADER, "0123456789abcdef-secret"),
        ]);
        assert_eq!(
            resolve(Some(&secret), &good, peer),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            resolve(None, &good, peer),
            peer,
            "no secret configured: never trusted"
        );
        let garbage = headers(&[
            (CLIENT_IP_HEADER, "nope"),
            (EDGE_SECRET_HEADER, "0123456789abcdef-secret"),
        ]);
        assert_eq!(resolve(Some(&secret), &garbage, peer), peer);
    }
}
