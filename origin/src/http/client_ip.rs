//! Who the client is. Behind the edge, the socket peer is the edge itself, so the edge sends the
//! client address in `X-Client-IP` together with the shared `X-Edge-Secret`. The address is
//! believed only when the secret matches (compared in constant time); anyone else's
//! `X-Client-IP` is ignored and the socket peer is used.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use shared::headers::{CLIENT_IP as CLIENT_IP_HEADER, EDGE_SECRET as EDGE_SECRET_HEADER};

use super::error::ApiError;
use crate::state::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Whether the request comes from the edge: it carries the configured secret (compared in
/// constant time). Only then are the edge's client address and request id believed.
pub fn from_edge(secret: Option<&SecretString>, headers: &HeaderMap) -> bool {
    match (secret, headers.get(EDGE_SECRET_HEADER)) {
        (Some(secret), Some(given)) => {
            bool::from(secret.expose_secret().as_bytes().ct_eq(given.as_bytes()))
        }
        _ => false,
    }
}

/// The client address given the trusted secret (if any), the request headers and the peer.
pub fn resolve(
    secret: Option<&SecretString>,
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
        let secret: SecretString = "0123456789abcdef-secret".into();
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
