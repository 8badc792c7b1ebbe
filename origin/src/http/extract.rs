//! Path and query extractors whose rejections become [`ApiError::BadRequest`], so a malformed
//! code answers a JSON 400 naming the field instead of axum's plain-text default.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use super::error::ApiError;
use crate::cache::compressed::Coding;

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

    /// The client's preference from `Accept-Encoding`: brotli if accepted, else gzip, else
    /// identity (a coding listed with `q=0` is refused; `*` accepts both).
    pub fn coding(&self) -> Coding {
        let accept_encoding = self.accept_encoding.as_ref();
        let Some(value) = accept_encoding.and_then(|v| v.to_str().ok()) else {
            return Coding::Identity;
        };
        let mut br = None;
        let mut gzip = None;
        let mut any = None;
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let accepted = !parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match name.as_str() {
                "br" => br = Some(accepted),
                "gzip" | "x-gzip" => gzip = Some(accepted),
                "*" => any = Some(accepted),
                _ => {}
            }
        }
        if br.or(any) == Some(true) {
            Coding::Br
        } else if gzip.or(any) == Some(true) {
            Coding::Gzip
        } else {
            Coding::Identity
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn pref(v: &str) -> Coding {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        Negotiation::of(&headers).coding()
    }

    #[test]
    fn negotiation_follows_accept_encoding() {
        assert_eq!(
            Negotiation::of(&HeaderMap::new()).coding(),
            Coding::Identity
        );
        assert_eq!(pref("gzip, deflate, br, zstd"), Coding::Br);
        assert_eq!(pref("gzip"), Coding::Gzip);
        assert_eq!(pref("br;q=0, gzip;q=0.5"), Coding::Gzip);
        assert_eq!(pref("br;q=0, gzip;q=0"), Coding::Identity);
        assert_eq!(pref("*"), Coding::Br);
        assert_eq!(pref("identity"), Coding::Identity);
        assert_eq!(pref("deflate"), Coding::Identity);
    }
}
