//! The origin, as the worker reaches it (runtime glue): a catalog fetch, and the forwarding of
//! every other request. What goes out is decided in [`crate::request`]: the allow-listed client
//! headers, then the edge's own (the secret, the client address, the request id, trace context);
//! the body streamed through when its length is declared within the origin's limit, read up to
//! that limit when it is not, refused beyond it. Every origin answer is bounded by
//! `ORIGIN_TIMEOUT_MS`, and one whose status no response can carry becomes a 502 here instead
//! of a panic later.

use std::cell::Cell;
use std::rc::Rc;

use futures::StreamExt;
use shared::etag::strong_etag;
use shared::headers::{CLIENT_IP, EDGE_SECRET, REQUEST_ID, TRACEPARENT, TRACESTATE};
use wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit, Response};

use crate::clock::now_ms;
use crate::config::EdgeConfig;
use crate::headers::storable;
use crate::ports::{Fetched, OriginFailure};
use crate::request::{
    BodyPlan, answerable_status, forwarded_header, valid_traceparent, valid_tracestate,
};

/// The origin for one request: where it is, and what the edge tells it about the request.
pub struct Upstream {
    cfg: Rc<EdgeConfig>,
    /// `X-Client-IP`: the address the origin counts this request against.
    client_ip: Option<String>,
    request_id: String,
    /// The client's request headers, for the trace context passed on (read only when the
    /// origin is asked: a hit never is).
    client_headers: Headers,
    /// The last answer's status (0: none) and how long it took, for the log line.
    seen: Cell<Option<(u16, u64)>>,
}

/// Why a request was not forwarded.
pub enum ForwardError {
    /// The body is over its route's limit: 413.
    TooLarge,
    /// The body could not be read (the client went away mid-body): 400.
    BodyCut,
    Origin(OriginFailure),
}

impl Upstream {
    pub fn new(
        cfg: Rc<EdgeConfig>,
        client_ip: Option<String>,
        request_id: String,
        client_headers: Headers,
    ) -> Self {
        Upstream {
            cfg,
            client_ip,
            request_id,
            client_headers,
            seen: Cell::new(None),
        }
    }

    /// The origin's last answer: its status (0 when there was none) and milliseconds.
    pub fn seen(&self) -> Option<(u16, u64)> {
        self.seen.get()
    }

    /// `GET path` for the catalog: a storable answer's body and tag, or the answer as it is.
    pub async fn fetch_catalog(&self, path: &str) -> Result<Fetched<Response>, OriginFailure> {
        let unreachable = |e: worker::Error| OriginFailure::Unreachable(e.to_string());
        let headers = Headers::new();
        headers
            .set("Accept", "application/json")
            .map_err(unreachable)?;
        // The edge keeps and serves the JSON as it is (compression is the CDN's own layer):
        // never a compressed representation, whose ETag names other bytes.
        headers
            .set("Accept-Encoding", "identity")
            .map_err(unreachable)?;
        self.edge_headers(&headers).map_err(unreachable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let url = format!("{}{path}", self.cfg.origin_url);
        let req = Request::new_with_init(&url, &init).map_err(unreachable)?;
        let mut resp = self.send(req).await?;
        let status = resp.status_code();
        let cache_control = resp.headers().get("Cache-Control").ok().flatten();
        let cookie = resp.headers().has("Set-Cookie").unwrap_or(true);
        if !storable(status, cache_control.as_deref(), cookie) {
            return Ok(Fetched::Other {
                status,
                response: resp,
            });
        }
        let body = resp.bytes().await.map_err(unreachable)?;
        let etag = match resp.headers().get("ETag").ok().flatten() {
            Some(etag) => etag,
            None => strong_etag(&body),
        };
        Ok(Fetched::Storable { body, etag })
    }

    /// The client's request, passed on: `method` (already checked), the allow-listed headers,
    /// the body as `plan` says.
    pub async fn forward(
        &self,
        req: &mut Request,
        method: &str,
        path_and_query: &str,
        plan: BodyPlan,
    ) -> Result<Response, ForwardError> {
        let failed =
            |e: worker::Error| ForwardError::Origin(OriginFailure::Unreachable(e.to_string()));
        let headers = Headers::new();
        for (name, value) in req.headers().entries() {
            if forwarded_header(&name) {
                headers.append(&name, &value).map_err(failed)?;
            }
        }
        self.edge_headers(&headers).map_err(failed)?;
        let mut init = RequestInit::new();
        init.with_method(Method::from(method.to_owned()))
            .with_headers(headers);
        match plan {
            BodyPlan::None => {}
            // Handed over as the runtime's own stream: never read into wasm.
            BodyPlan::Stream => {
                init.with_body(req.inner().body().map(JsValue::from));
            }
            BodyPlan::Capped => {
                let limit = shared::headers::max_body_bytes(
                    method,
                    path_and_query.split('?').next().unwrap_or(""),
                );
                let body = capped_body(req, limit).await?;
                if !body.is_empty() {
                    init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
                }
            }
            BodyPlan::TooLarge => return Err(ForwardError::TooLarge),
            BodyPlan::BadLength => return Err(ForwardError::BodyCut),
        }
        let url = format!("{}{path_and_query}", self.cfg.origin_url);
        let req = Request::new_with_init(&url, &init).map_err(failed)?;
        self.send(req).await.map_err(ForwardError::Origin)
    }

    /// What the edge itself tells the origin, after the client's headers.
    fn edge_headers(&self, headers: &Headers) -> worker::Result<()> {
        if let Some(secret) = &self.cfg.edge_secret {
            // The edge presents its current value; the origin accepts it, or (mid-rotation)
            // accepts it as its EDGE_SECRET_PREVIOUS.
            headers.set(EDGE_SECRET, secret.current())?;
        }
        if let Some(ip) = &self.client_ip {
            headers.set(CLIENT_IP, ip)?;
        }
        headers.set(REQUEST_ID, &self.request_id)?;
        // A valid `traceparent`, and its `tracestate` if that is valid too; neither otherwise.
        let parent = self.client_headers.get(TRACEPARENT)?;
        if let Some(parent) = parent.filter(|v| valid_traceparent(v)) {
            headers.set(TRACEPARENT, parent.trim())?;
            let state = self.client_headers.get(TRACESTATE)?;
            if let Some(state) = state.filter(|v| valid_tracestate(v)) {
                headers.set(TRACESTATE, &state)?;
            }
        }
        Ok(())
    }

    async fn send(&self, req: Request) -> Result<Response, OriginFailure> {
        let timeout_ms = self.cfg.origin_timeout_ms;
        let signal: worker::AbortSignal = web_sys::AbortSignal::timeout_with_u32(timeout_ms).into();
        let started = now_ms();
        let result = Fetch::Request(req).send_with_signal(&signal).await;
        let took = now_ms().saturating_sub(started);
        match result {
            Ok(resp) => {
                let status = resp.status_code();
                self.seen.set(Some((status, took)));
                // workers-rs would panic building a response with this status (a `1xx` the
                // origin sent as if final): the isolate, its memo and its limiter would go.
                if !answerable_status(status) {
                    return Err(OriginFailure::BadStatus(status));
                }
                Ok(resp)
            }
            Err(e) => {
                self.seen.set(Some((0, took)));
                if signal.aborted() || took >= u64::from(timeout_ms) {
                    Err(OriginFailure::Timeout)
                } else {
                    Err(OriginFailure::Unreachable(e.to_string()))
                }
            }
        }
    }
}

/// A body of undeclared length, read up to the origin's limit (one chunk at a time; the limit is
/// what the origin would read anyway).
async fn capped_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, ForwardError> {
    let mut stream = req.stream().map_err(|_| ForwardError::BodyCut)?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ForwardError::BodyCut)?;
        if body.len() + chunk.len() > limit {
            return Err(ForwardError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
