//! Cacheable responses: the data type's `Cache-Control` from the policy table, a strong `ETag`
//! of the representation sent, `304 Not Modified` when the client already holds it, and the body
//! compressed (brotli or gzip, once per entry: [`super::compress`]) when the client accepts it.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use shared::DataType;
use shared::etag::{if_none_match_matches, strong_etag};

use super::compress::{Coding, Compressed, MIN_BYTES};
use super::extract::Negotiation;
use crate::policies::HeaderPolicies;

/// A JSON body with validators; `304` with the same validators when `If-None-Match` matches.
pub fn cacheable(
    policies: &HeaderPolicies,
    compressed: &Compressed,
    data: DataType,
    request: &Negotiation,
    body: Bytes,
) -> Response {
    let identity_etag = strong_etag(&body);
    let coding = if body.len() >= MIN_BYTES {
        Coding::preferred(request.accept_encoding.as_ref())
    } else {
        Coding::Identity
    };
    // A strong ETag names exact bytes: each coding of the body is its own representation.
    let etag = match coding {
        Coding::Identity => identity_etag.clone(),
        _ => format!(
            "{}{}\"",
            identity_etag.trim_end_matches('"'),
            coding.etag_suffix()
        ),
    };
    let not_modified = request
        .if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| if_none_match_matches(v, &etag));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        let bytes = compressed.get(&identity_etag, coding, &body);
        (StatusCode::OK, Body::from(bytes))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    h.insert(header::CACHE_CONTROL, policies.cache_control(data));
    // Caches must key on the coding asked for (the answer depends on it).
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(c) = coding.header() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
