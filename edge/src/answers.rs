//! Answers built over the Workers runtime's `Response`: the pure decisions ([`crate::reply`],
//! [`crate::cors`], [`crate::ports::OriginFailure`]) made into what the runtime sends. Every one
//! carries this request's headers and `Vary: Origin`; none is ever cached.

use shared::headers::X_CACHE;
use worker::{Headers, Response, ResponseBody, Result};

use crate::clock::http_date;
use crate::config::EdgeConfig;
use crate::headers::CacheStatus;
use crate::ports::OriginFailure;
use crate::reply::{Head, error_body, error_head, merge_vary};

/// A CORS preflight: 204 with the allowed method and headers, or a JSON 403.
pub(crate) fn preflight(
    cfg: &EdgeConfig,
    origin: &str,
    method: &str,
    id: &str,
) -> Result<Response> {
    let vary = (
        "Vary",
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers".to_owned(),
    );
    let request_id = ("X-Request-Id", id.to_owned());
    match cfg.cors.preflight(origin, method) {
        Some(mut headers) => {
            headers.push(vary);
            headers.push(request_id);
            let head = Head {
                status: 204,
                headers,
                body: false,
            };
            respond(head, ResponseBody::Empty)
        }
        None => error(
            403,
            "cors_refused",
            "origin or method not allowed",
            &[vary, request_id],
        ),
    }
}

pub(crate) fn failure_response(
    failure: &OriginFailure,
    extra: &[(&'static str, String)],
) -> Result<Response> {
    match failure {
        OriginFailure::Timeout => error(
            504,
            "origin_timeout",
            "the origin did not answer in time",
            extra,
        ),
        OriginFailure::Unreachable(e) => {
            worker::console_warn!("origin unreachable: {e}");
            error(
                502,
                "origin_unreachable",
                "the origin is unreachable",
                extra,
            )
        }
        OriginFailure::BadStatus(status) => {
            worker::console_warn!("origin answered status {status}, which cannot be passed on");
            error(
                502,
                "origin_bad_answer",
                "the origin's answer could not be passed on",
                extra,
            )
        }
    }
}

/// The origin's answer as it is, plus `X-Cache`, this request's headers, `Vary: Origin` and a
/// `Date` when it has none (fetched headers are immutable: copy, then rebuild).
pub(crate) fn passthrough(
    resp: Response,
    cache: CacheStatus,
    extra: &[(&'static str, String)],
) -> Result<Response> {
    let headers = resp.headers().clone();
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    headers.set(X_CACHE, cache.as_str())?;
    let vary = merge_vary(headers.get("Vary")?.as_deref(), "Origin");
    headers.set("Vary", &vary)?;
    if !headers.has("Date")? {
        headers.set("Date", &http_date())?;
    }
    let status = resp.status_code();
    let (_, body) = resp.into_parts();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .body(body))
}

/// A JSON error, never cached, with this request's headers and `Vary: Origin`.
pub(crate) fn error(
    status: u16,
    code: &str,
    message: &str,
    extra: &[(&'static str, String)],
) -> Result<Response> {
    let mut head = error_head(status, extra);
    if !head
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("Vary"))
    {
        head.headers.push(("Vary", "Origin".to_owned()));
    }
    head.headers.push(("Date", http_date()));
    respond(head, ResponseBody::Body(error_body(code, message)))
}

pub(crate) fn respond(head: Head, body: ResponseBody) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &head.headers {
        headers.set(name, value)?;
    }
    Ok(Response::builder()
        .with_status(head.status)
        .with_headers(headers)
        .body(body))
}
