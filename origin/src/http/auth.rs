//! Authentication extractors. A request authenticates with `Authorization: Bearer <token>` or
//! the `__Host-session` cookie; every authenticated request slides the session's expiry. The session is
//! looked up once per request: by the rate-limit middleware when it runs (it needs the user as
//! the identity), which leaves the answer in the request's extensions for the extractor. Admin
//! routes re-read the role from PostgreSQL, so a demotion takes effect at once.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};

use super::error::ApiError;
use crate::accounts::sessions::SessionUser;
use crate::db::accounts::Role;
use crate::state::AppState;

/// `__Host-`: the browser keeps it only when set `Secure`, `Path=/` and without `Domain`, so no
/// sibling subdomain can set or shadow it (cookie tossing). Chromium accepts it over
/// `http://localhost` too (a secure context).
pub const SESSION_COOKIE: &str = "__Host-session";
/// The device cookie a browser gets at a successful sign-in (`accounts::throttle`).
pub const DEVICE_COOKIE: &str = "__Host-device";

/// The session token a request authenticates with: the bearer token, else the cookie.
pub fn token(headers: &HeaderMap) -> Option<String> {
    bearer(headers).or_else(|| cookie(headers))
}

/// Every session token a request presents (both, when it carries a bearer token and a cookie).
pub fn tokens(headers: &HeaderMap) -> Vec<String> {
    let mut all: Vec<String> = bearer(headers).into_iter().chain(cookie(headers)).collect();
    all.dedup();
    all
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE)
}

/// Whether the request carries more than one session cookie: an attacker's, tossed in front of
/// the victim's, would otherwise be the one read. The front door refuses such a request.
pub fn tossed(headers: &HeaderMap) -> bool {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(shared::input::cookie_pairs)
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .nth(1)
        .is_some()
}

/// A state change authenticated by the cookie alone must be one a cross-site page cannot
/// forge: a browser sends the cookie with a cross-site form, but a JSON body or a custom header
/// only after a CORS preflight the edge refuses for unknown origins. So such a request needs
/// `Content-Type: application/json` or an `X-Requested-With` header (403 otherwise). Bearer
/// tokens are never sent by a browser on its own and need neither.
pub fn cross_site_safe(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if method.is_safe() || bearer(headers).is_some() || cookie(headers).is_none() {
        return Ok(());
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json || headers.contains_key("x-requested-with") {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "a cookie-authenticated change needs a JSON body or an X-Requested-With header".into(),
        ))
    }
}

/// The value of the cookie `name` among every `Cookie` header.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(shared::input::cookie_pairs)
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

/// The session the rate-limit middleware already looked up (and slid) for this request.
#[derive(Clone, Copy, Debug)]
pub struct ResolvedSession(pub Option<SessionUser>);

/// An authenticated user (401 otherwise; 503 when the session store cannot be asked).
#[derive(Clone, Copy, Debug)]
pub struct AuthUser(pub SessionUser);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        cross_site_safe(&parts.method, &parts.headers)?;
        let session = match parts.extensions.get::<ResolvedSession>() {
            Some(ResolvedSession(session)) => *session,
            None => {
                let token = token(&parts.headers)
                    .ok_or_else(|| ApiError::Unauthorized("sign in first".into()))?;
                state.accounts.sessions.touch(&token).await?
            }
        };
        session.map(AuthUser).ok_or_else(|| {
            ApiError::Unauthorized("session expired or unknown; sign in again".into())
        })
    }
}

/// An authenticated admin (401 anonymous, 403 otherwise).
#[derive(Clone, Copy, Debug)]
pub struct AdminUser(pub SessionUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        match state.db.role(user.user_id).await? {
            Some(Role::Admin) => Ok(AdminUser(user)),
            _ => Err(ApiError::Forbidden("admin only".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_then_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(token(&h), None);
        h.insert(
            COOKIE,
            HeaderValue::from_static("theme=dark; __Host-session=abc ; session=x; x=1"),
        );
        assert_eq!(token(&h).as_deref(), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok"));
        assert_eq!(token(&h).as_deref(), Some("tok"));
    }
}
