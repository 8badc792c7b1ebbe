//! Path and query extractors whose rejections become [`ApiError::BadRequest`], so a malformed
//! code answers a JSON 400 naming the field instead of axum's plain-text default.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use super::error::ApiError;

#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ValidPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ValidQuery<T>(pub T);

/// A JSON body; a malformed, mistyped or missing body is a JSON 400 naming the problem.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub struct ValidJson<T>(pub T);

/// What a cacheable answer depends on besides the route: the request's `If-None-Match` and
/// `Accept-Encoding`, without copying the rest of the headers.
pub struct Negotiation {
    pub if_none_match: Option<HeaderValue>,
    pub accept_encoding: Option<HeaderValue>,
}

impl<S: Send + Sync> FromRequestParts<S> for Negotiation {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Negotiation::of(&parts.headers))
    }
}

impl Negotiation {
    pub fn of(headers: &HeaderMap) -> Negotiation {
        Negotiation {
            if_none_match: headers.get(header::IF_NONE_MATCH).cloned(),
            accept_encoding: headers.get(header::ACCEPT_ENCODING).cloned(),
        }
    }
}

/// Largest request body any route accepts: every body here is a few fields.
pub const MAX_BODY_BYTES: usize = shared::headers::MAX_REQUEST_BODY_BYTES;

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_BODY_BYTES)
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}
