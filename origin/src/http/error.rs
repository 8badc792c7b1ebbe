//! The HTTP layer's one error type and its one mapping to responses. Every layer below keeps its
//! own errors (`CatalogError`, `AccountsError`, `SessionError`, `RedisError`, `sqlx::Error`);
//! they become an [`ApiError`] here, once, through the `From` impls at the bottom. Client mistakes
//! become 4xx with a JSON body that says what was wrong; everything else becomes a 5xx whose
//! cause is logged once, here, and never shown to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::policy::PRIVATE_NO_STORE;
use shared::types::ErrorBody;

use crate::accounts::AccountsError;
use crate::accounts::password::PasswordError;
use crate::accounts::sessions::SessionError;
use crate::cache::LoadError;
use crate::catalog::{CatalogError, LoadFailure};
use crate::redis::RedisError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    PaymentRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The price is above what the buyer was shown (409 `price_changed`, with the price now).
    #[error("the price changed to {0} cents; buy again at that price to accept it")]
    PriceChanged(i64),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive within `BODY_READ_TIMEOUT_MS`.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// Refused for now: retry after this many seconds.
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::PriceChanged(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::PaymentRequired(_) => "insufficient_funds",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PriceChanged(_) => "price_changed",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyTimeout => "request_timeout",
            ApiError::TooManyRequests(..) => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "temporarily unavailable, retry shortly".to_owned()
                }
                _ => "internal error".to_owned(),
            }
        } else {
            self.to_string()
        };
        let mut resp = match &self {
            ApiError::PriceChanged(cents) => {
                let mut body = ErrorBody::new(self.code(), &message);
                body.error.price_cents = Some(*cents);
                json_body(status, &body)
            }
            _ => json_error(status, self.code(), &message),
        };
        if let ApiError::TooManyRequests(_, retry_after) = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let ApiError::BodyTimeout = self {
            // The rest of the body may still come: the connection cannot carry another request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // A dependency is out of reach: tell well-behaved clients when to come back.
            crate::meters::dependency_unavailable();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

/// `Retry-After` of a 503: long enough for a restart or a failover to finish.
const RETRY_AFTER_SECS: &str = "2";

/// A JSON error response. Errors are never cached by anyone.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_body(status, &ErrorBody::new(code, message))
}

fn json_body(status: StatusCode, body: &ErrorBody) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PRIVATE_NO_STORE),
    );
    resp
}

/// A database failure: "try again" when the database is out of reach, a bug otherwise.
fn database(e: &sqlx::Error) -> ApiError {
    if crate::db::is_unavailable(e) {
        ApiError::Unavailable(format!("database: {e}"))
    } else {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        database(&e)
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(m) => ApiError::NotFound(m),
            CatalogError::Load(LoadError::Loader(failure)) => match &*failure {
                LoadFailure::Unknown(m) => ApiError::NotFound(m.clone()),
                LoadFailure::Database(e) => database(e),
                LoadFailure::Encode(e) => ApiError::Internal(e.to_string()),
                LoadFailure::Lists {
                    message,
                    unavailable: true,
                } => ApiError::Unavailable(message.clone()),
                LoadFailure::Lists { message, .. } => ApiError::Internal(message.clone()),
            },
            CatalogError::Load(LoadError::Aborted(m)) => ApiError::Internal(m),
            CatalogError::Corrupt(m) => ApiError::Internal(m),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Unavailable(e) => ApiError::Unavailable(e.to_string()),
            SessionError::Randomness(m) => ApiError::Internal(m),
        }
    }
}

impl From<RedisError> for ApiError {
    fn from(e: RedisError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Invalid(m) => ApiError::BadRequest(m),
            e @ (AccountsError::BadCredentials | AccountsError::Gone) => {
                ApiError::Unauthorized(e.to_string())
            }
            e @ (AccountsError::Throttled(wait) | AccountsError::TooManySignUps(wait)) => {
                ApiError::TooManyRequests(e.to_string(), wait)
            }
            AccountsError::NotFound(m) => ApiError::NotFound(m),
            AccountsError::Conflict(m) => ApiError::Conflict(m),
            e @ AccountsError::InsufficientFunds => ApiError::PaymentRequired(e.to_string()),
            AccountsError::PriceChanged(cents) => ApiError::PriceChanged(cents),
            AccountsError::Session(e) => e.into(),
            AccountsError::Password(PasswordError::Busy) => {
                ApiError::Unavailable("password hashing is saturated".into())
            }
            AccountsError::Password(e) => ApiError::Internal(e.to_string()),
            AccountsError::Database(e) => database(&e),
            AccountsError::Load(LoadError::Loader(e)) => database(&e),
            AccountsError::Load(LoadError::Aborted(m)) => ApiError::Internal(m),
        }
    }
}

impl From<crate::sync::bulk::BulkError> for ApiError {
    fn from(e: crate::sync::bulk::BulkError) -> Self {
        use crate::sync::bulk::BulkError;
        match e {
            BulkError::Invalid(m) => ApiError::BadRequest(m),
            BulkError::Unknown(m) => ApiError::NotFound(m),
            e @ BulkError::KeyReused => ApiError::Conflict(e.to_string()),
            BulkError::Database(e) => database(&e),
        }
    }
}
