//! Cacheable responses: the data type's `Cache-Control` from the policy table, a strong `ETag`
//! of the body, and `304 Not Modified` when the client already holds it.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use shared::DataType;
use shared::etag::{if_none_match_matches, strong_etag};

use crate::policies::HeaderPolicies;

/// A JSON body with validators; `304` with the same validators when `If-None-Match` matches.
pub fn cacheable(
    policies: &HeaderPolicies,
    data: DataType,
    if_none_match: Option<&HeaderValue>,
    body: Bytes,
) -> Response {
    let etag = strong_etag(&body);
    let not_modified = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| if_none_match_matches(v, &etag));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        (StatusCode::OK, Body::from(body))
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
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
