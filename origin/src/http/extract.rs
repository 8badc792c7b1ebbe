//! Path and query extractors whose rejections become [`ApiError::BadRequest`], so a malformed
//! code answers a JSON 400 naming the field instead of axum's plain-text default.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};

use crate::error::ApiError;

#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ValidPath<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ValidQuery<T>(pub T);

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
