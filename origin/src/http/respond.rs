//! Cacheable responses: the data type's `Cache-Control` from the policy table, a strong `ETag`
//! of the representation sent, `304 Not Modified` when the client already holds it, and the body
//! compressed (brotli or gzip, once per entry: [`crate::cache::compressed`]) when the client
//! accepts it.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use shared::DataType;
use shared::etag::if_none_match_matches;

use super::extract::Negotiation;
use crate::cache::Value;
use crate::cache::compressed::{Coding, Compressed, MIN_BYTES, Variant};
use crate::policies::HeaderPolicies;

/// A JSON body with validators; `304` with the same validators when `If-None-Match` matches.
pub fn cacheable(
    policies: &HeaderPolicies,
    compressed: &Compressed,
    data: DataType,
    request: &Negotiation,
    value: Value,
) -> Response {
    // Tests make a catalog answer panic here (the `failpoints` feature only).
    fail::fail_point!("respond::cacheable");
    represent(compressed, policies.cache_control(data), request, value)
}

/// [`cacheable`] with a `Cache-Control` of the caller's (a document, not a catalog entry).
pub fn represent(
    compressed: &Compressed,
    cache_control: HeaderValue,
    request: &Negotiation,
    value: Value,
) -> Response {
    let coding = if value.bytes.len() >= MIN_BYTES {
        request.coding()
    } else {
        Coding::Identity
    };
    // A strong ETag names exact bytes: each coding of the body is its own representation,
    // made (with its header value) once per entry.
    let Variant { body, etag } = compressed.get(&value, coding);
    let not_modified = request.if_none_match.as_ref().is_some_and(|given| {
        let tag = std::str::from_utf8(&etag).unwrap_or_default();
        given.to_str().is_ok_and(|v| if_none_match_matches(v, tag))
    });
    // The tag is hex in quotes: always a valid header value.
    let etag = HeaderValue::from_maybe_shared(etag).ok();
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        (StatusCode::OK, Body::from(body))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    // Sized for these headers and the front door's (request id, rate limit): no regrowth.
    *resp.headers_mut() = HeaderMap::with_capacity(12);
    let h = resp.headers_mut();
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    h.insert(header::CACHE_CONTROL, cache_control);
    // Caches must key on the coding asked for (the answer depends on it).
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(c) = coding.header() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    if let Some(v) = etag {
        h.insert(header::ETAG, v);
    }
    resp
}
