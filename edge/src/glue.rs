//! The Workers-runtime side: the fetch handler, the isolate's state, and [`Ports`] over the
//! runtime. Every decision it applies is made in a natively tested module; this is the order
//! of work for every request:
//!
//! 1. the request id (`cf-ray`, or 128 random bits) and the configuration (a bad one: a JSON 500
//!    on every request, the reason in the log);
//! 2. the method, read raw ([`request::method`]): 405 or 501 for the rest;
//! 3. who is asking ([`Caller`]) and its budget (the `[[ratelimits]]` bindings where bound, else
//!    the isolate's limiter): 429 — preflights count too;
//! 4. the origin's purge route (`/__edge/purge`): 404 without the edge secret;
//!    a CORS preflight: 204 or 403;
//! 5. operator paths (`/metrics`, `/readyz`): 404, never forwarded;
//! 6. a catalog `GET` or `HEAD`, whatever cookies or credentials it carries (the catalog is
//!    public): [`Catalog::serve`], keyed on `PUBLIC_HOST`;
//! 7. everything else: forwarded to the origin ([`Upstream::forward`]), never cached (BYPASS).
//!
//! Every answer carries `X-Request-Id`; one JSON line per request is logged ([`AccessLog`]).
//! Errors become JSON responses, never panics: a panic resets the isolate, its memo and its
//! limiter.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use shared::headers::{EDGE_CLIENT_KEY, END_USER_IP};
use shared::route::CatalogRoute;
use shared::types::PurgeRequest;
use worker::{Context, Env, Headers, Request, Response, ResponseBody, Result};

use crate::answers::{error, failure_response, passthrough, preflight, respond};
use crate::catalog::{Answer, Ask, Body, Catalog};
use crate::clients::Caller;
use crate::clock::{JsClock, http_date, now_ms};
use crate::config::EdgeConfig;
use crate::headers::CacheStatus;
use crate::limiter::{BINDING_CLIENT, Decision, IpLimiter};
use crate::log::AccessLog;
use crate::reply::{Head, Reply};
use crate::request::{self, ALLOWED_METHODS, MethodCheck};
use crate::runtime::{WorkerPorts, limit};
use crate::target::Target;
use crate::upstream::{ForwardError, Upstream};

thread_local! {
    static ISOLATE: Isolate = Isolate::default();
}

/// Everything an isolate keeps between requests. Vars, secrets and bindings are fixed for a
/// deployment (a new version runs in new isolates), so the configuration and the limiters built
/// from it are made once; a bad configuration is not kept, so every request reports it.
#[derive(Default)]
struct Isolate {
    setup: RefCell<Option<Rc<Setup>>>,
    catalog: Rc<Catalog>,
    warned_insecure: Cell<bool>,
    /// `crypto`, for request ids where Cloudflare gave no `cf-ray` (looked up once).
    crypto: std::cell::OnceCell<Option<web_sys::Crypto>>,
}

/// The configuration and what is built from it.
pub(crate) struct Setup {
    pub(crate) cfg: Rc<EdgeConfig>,
    /// Per client address (IPv6 at its /64, /56 and /48).
    pub(crate) clients: IpLimiter<JsClock>,
    /// Per trusted client, by name.
    pub(crate) trusted: IpLimiter<JsClock>,
    /// Whether the `[[ratelimits]]` bindings are bound (else the isolate's limiters count).
    pub(crate) bound: bool,
}

fn setup(env: &Env) -> std::result::Result<(Rc<Setup>, Rc<Catalog>), String> {
    ISOLATE.with(|isolate| {
        let catalog = isolate.catalog.clone();
        if let Some(setup) = isolate.setup.borrow().clone() {
            return Ok((setup, catalog));
        }
        let cfg = EdgeConfig::from_lookup(|name| {
            env.var(name)
                .ok()
                .map(|v| v.to_string())
                .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        })?;
        if cfg.edge_secret.is_none() && !isolate.warned_insecure.replace(true) {
            worker::console_warn!(
                "EDGE_INSECURE_DEV: forwarding without EDGE_SECRET; the origin cannot tell clients apart"
            );
        }
        let setup = Rc::new(Setup {
            clients: IpLimiter::new(cfg.rate_per_minute, cfg.rate_burst, JsClock),
            trusted: IpLimiter::new(cfg.trusted_per_minute, cfg.trusted_burst, JsClock),
            bound: env.rate_limiter(BINDING_CLIENT).is_ok(),
            cfg: Rc::new(cfg),
        });
        *isolate.setup.borrow_mut() = Some(setup.clone());
        Ok((setup, catalog))
    })
}

/// The worker's `fetch` export, as `#[worker::event(fetch)]` would make it but without
/// converting every request into a `worker::Request` first (that reads the method, the URL and
/// the `cf` object from the runtime, which a catalog hit never needs): the request is converted
/// only where it is forwarded or read. [`serve`] answers every failure itself (a JSON 500); an
/// error here means not even that could be built, and the runtime answers it.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub async fn fetch(
    req: web_sys::Request,
    env: Env,
    ctx: worker::worker_sys::Context,
) -> std::result::Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
    let resp = serve(req, env, Context::new(ctx))
        .await
        .inspect_err(|e| worker::console_error!("edge error: {e}"))?;
    Ok(web_sys::Response::from(resp).into())
}

/// One request, start to end (the runtime's entry point calls this).
pub async fn serve(req: web_sys::Request, env: Env, ctx: Context) -> Result<Response> {
    let started = now_ms();
    let headers = Headers(req.headers());
    let id = request_id(&headers);
    let mut log = AccessLog {
        request_id: id.clone(),
        method: req.method(),
        ..AccessLog::default()
    };
    let resp = match handle(req, &headers, &env, ctx, &id, &mut log).await {
        Ok(resp) => resp,
        Err(e) => {
            worker::console_error!("edge error ({id}): {e}");
            error(
                500,
                "internal",
                "edge error",
                &[("X-Request-Id", id.clone())],
            )?
        }
    };
    log.status = resp.status_code();
    log.ms = now_ms().saturating_sub(started);
    web_sys::console::log_1(&log.line().into());
    Ok(resp)
}

/// `cf-ray` when Cloudflare set one, else 128 random bits (`crypto.getRandomValues`).
fn request_id(headers: &Headers) -> String {
    let ray = headers.get("cf-ray").ok().flatten();
    if let Some(id) = request::request_id_from_ray(ray.as_deref()) {
        return id.to_owned();
    }
    let mut bytes = [0u8; 16];
    let filled = ISOLATE.with(|isolate| {
        let crypto = isolate.crypto.get_or_init(|| {
            js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
                .ok()
                .filter(|c| c.is_object())
                .map(wasm_bindgen::JsCast::unchecked_into)
        });
        crypto
            .as_ref()
            .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok())
    });
    if !filled {
        // Never in workerd; unique enough for a log line if it ever happens.
        let now = now_ms().to_le_bytes();
        let noise = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
        bytes[..8].copy_from_slice(&now);
        bytes[8..12].copy_from_slice(&noise.to_le_bytes());
    }
    request::request_id_from_bytes(&bytes)
}

async fn handle(
    raw: web_sys::Request,
    headers: &Headers,
    env: &Env,
    ctx: Context,
    id: &str,
    log: &mut AccessLog,
) -> Result<Response> {
    let request_id = ("X-Request-Id", id.to_owned());
    let (setup, catalog) = match setup(env) {
        Ok(state) => state,
        Err(msg) => {
            worker::console_error!("edge misconfigured: {msg}");
            log.refused = Some("misconfigured");
            return error(500, "misconfigured", "edge misconfigured", &[request_id]);
        }
    };
    let cfg = &setup.cfg;
    let method = match request::method(&log.method) {
        MethodCheck::Allowed(m) => m,
        MethodCheck::NotAllowed => {
            log.refused = Some("method_not_allowed");
            let allow = ("Allow", ALLOWED_METHODS.to_owned());
            return error(
                405,
                "method_not_allowed",
                "method not allowed",
                &[request_id, allow],
            );
        }
        MethodCheck::Unknown => {
            log.refused = Some("not_implemented");
            return error(501, "not_implemented", "unknown method", &[request_id]);
        }
    };
    let raw_url = raw.url();
    let target = Target::parse(&raw_url);
    log.path = target
        .as_ref()
        .map(|t| t.path.to_owned())
        .unwrap_or_default();

    let connecting = headers.get("CF-Connecting-IP")?;
    // The key (and the end user it names) is read only where trusted clients are configured.
    let client_key = match cfg.trusted.is_empty() {
        true => None,
        false => headers.get(EDGE_CLIENT_KEY)?,
    };
    let end_user = match client_key {
        Some(_) => headers.get(END_USER_IP)?,
        None => None,
    };
    let caller = Caller::identify(
        &cfg.trusted,
        connecting.as_deref(),
        client_key.as_deref(),
        end_user.as_deref(),
    );
    if let Caller::Trusted { .. } = caller {
        log.caller = caller.label().into();
    }
    let origin = headers.get("Origin")?;
    let mut extra = cfg.cors.response_headers(origin.as_deref());
    extra.push(request_id);

    if let Decision::Deny { retry_after_secs } = limit(env, &setup, &caller).await {
        log.refused = Some("rate_limited");
        extra.push(("Retry-After", retry_after_secs.to_string()));
        return error(
            429,
            "rate_limited",
            "too many requests from this address",
            &extra,
        );
    }
    // The purge route counts against the caller's budget like anything else, before its
    // secret is looked at: guesses at the secret are limited as any flood is.
    if log.path == PURGE_PATH {
        let mut req = Request::from(raw);
        return purge(
            &mut req,
            method,
            cfg,
            &catalog,
            ("X-Request-Id", id.to_owned()),
            log,
        )
        .await;
    }
    if method == "OPTIONS"
        && let (Some(o), Some(m)) = (
            origin.as_deref(),
            headers.get("Access-Control-Request-Method")?,
        )
    {
        return preflight(cfg, o, &m, id);
    }

    let Some(target) = target else {
        return error(
            400,
            "bad_request",
            "the request URL is not absolute",
            &extra,
        );
    };
    if matches!(target.path, "/metrics" | "/readyz") {
        return error(404, "not_found", "no such route", &extra);
    }
    let upstream = Rc::new(Upstream::new(
        cfg.clone(),
        caller.forwarded_ip(connecting.as_deref()),
        id.to_owned(),
        headers.clone(),
    ));
    let resp = match CatalogRoute::parse(target.path, target.query) {
        Err(e) => error(400, "bad_request", &e.to_string(), &extra),
        Ok(Some(route)) if matches!(method, "GET" | "HEAD") => {
            let inm = headers.get("If-None-Match")?;
            let ports = WorkerPorts {
                upstream: upstream.clone(),
                ctx: Rc::new(ctx),
            };
            let reply = Reply {
                policy: route.data_type().policy().scaled_down(cfg.ttl_divisor),
                if_none_match: inm.as_deref(),
                head_only: method == "HEAD",
                extra: &extra,
            };
            let downstream_cache = matches!(caller, Caller::Trusted { .. });
            serve_catalog(&catalog, &ports, &route, &reply, cfg, downstream_cache, log).await
        }
        _ => {
            let mut req = Request::from(raw);
            let length = headers.get("Content-Length")?;
            let limit = shared::headers::max_body_bytes(method, target.path);
            let plan = request::body_plan(
                method,
                length.as_deref(),
                req.inner().body().is_some(),
                limit,
            );
            let path = target.path_and_query();
            let forwarded = upstream.forward(&mut req, method, &path, plan).await;
            forwarded_answer(forwarded, &extra, log)
        }
    };
    if let Some((status, ms)) = upstream.seen() {
        log.origin_status = Some(status);
        log.origin_ms = Some(ms);
    }
    resp
}

/// The origin's purge route (`EDGE_PURGE_URL` points here): `POST` with the edge secret and a
/// [`PurgeRequest`]; this isolate forgets what the tags cover ([`Catalog::purge`]). Anyone
/// without the secret gets a 404, as for any unknown path. In production Cloudflare's purge API
/// reaches the cache of every data centre; this route reaches the isolate that answers it.
pub const PURGE_PATH: &str = "/__edge/purge";

async fn purge(
    req: &mut Request,
    method: &str,
    cfg: &EdgeConfig,
    catalog: &Catalog,
    request_id: (&'static str, String),
    log: &mut AccessLog,
) -> Result<Response> {
    log.refused = Some("purge");
    let given = req.headers().get(shared::headers::EDGE_SECRET)?;
    // Either accepted value (current or, mid-rotation, previous), in constant time and length.
    let trusted = match (&cfg.edge_secret, &given) {
        (Some(secret), Some(given)) => secret.check(given.as_bytes()).is_some(),
        _ => false,
    };
    if !trusted {
        return error(404, "not_found", "no such route", &[request_id]);
    }
    if method != "POST" {
        let allow = ("Allow", "POST".to_owned());
        return error(
            405,
            "method_not_allowed",
            "POST a purge",
            &[request_id, allow],
        );
    }
    let length = req.headers().get("Content-Length")?;
    let within = length
        .as_deref()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .is_some_and(|l| l <= shared::headers::MAX_REQUEST_BODY_BYTES);
    if !within {
        return error(
            413,
            "payload_too_large",
            "a purge is a small JSON body",
            &[request_id],
        );
    }
    let body = req.bytes().await?;
    let parsed: Option<PurgeRequest> = serde_json::from_slice(&body).ok();
    let Some(purge) = parsed.filter(PurgeRequest::is_valid) else {
        let message = "expected {\"tags\": [1-100 cache tags], \"soft\": bool}";
        return error(400, "bad_request", message, &[request_id]);
    };
    let forgotten = catalog.purge(&purge.tags, purge.soft, now_ms());
    worker::console_log!(
        "{}",
        serde_json::json!({"purge": purge.tags, "soft": purge.soft, "forgotten": forgotten})
    );
    let body =
        serde_json::to_vec(&serde_json::json!({"purged": purge.tags.len()})).unwrap_or_default();
    let head = Head {
        status: 200,
        headers: vec![
            ("Content-Type", "application/json".to_owned()),
            ("Cache-Control", shared::policy::PRIVATE_NO_STORE.to_owned()),
            request_id,
        ],
        body: true,
    };
    respond(head, ResponseBody::Body(body))
}

async fn serve_catalog(
    catalog: &Rc<Catalog>,
    ports: &WorkerPorts,
    route: &CatalogRoute,
    reply: &Reply<'_>,
    cfg: &EdgeConfig,
    downstream_cache: bool,
    log: &mut AccessLog,
) -> Result<Response> {
    let path = route.canonical();
    let key = format!("https://{}{path}", cfg.public_host);
    let ask = Ask {
        key: &key,
        path: &path,
        policy: reply.policy,
        origin_timeout_ms: cfg.origin_timeout_ms,
        tags: &|| shared::tags::for_route(route).into(),
        downstream_cache,
    };
    match catalog.serve(ports, &ask).await {
        Answer::Representation {
            body,
            etag,
            cache,
            age,
        } => {
            log.cache = Some(cache.as_str());
            let head = reply.representation(&etag, cache, age, http_date());
            let body = match body {
                _ if !head.body => ResponseBody::Empty,
                Body::Bytes(bytes) => ResponseBody::Body(bytes.to_vec()),
                Body::Stored(stream) => stream,
            };
            respond(head, body)
        }
        Answer::Passthrough { response } => {
            log.cache = Some(CacheStatus::Miss.as_str());
            passthrough(response, CacheStatus::Miss, reply.extra)
        }
        Answer::Failed(failure) => failure_response(&failure, reply.extra),
    }
}

fn forwarded_answer(
    forwarded: std::result::Result<Response, ForwardError>,
    extra: &[(&'static str, String)],
    log: &mut AccessLog,
) -> Result<Response> {
    match forwarded {
        Ok(resp) => {
            log.cache = Some(CacheStatus::Bypass.as_str());
            passthrough(resp, CacheStatus::Bypass, extra)
        }
        Err(ForwardError::TooLarge) => {
            log.refused = Some("payload_too_large");
            let message = "the request body is over this route's limit".to_owned();
            error(413, "payload_too_large", &message, extra)
        }
        Err(ForwardError::BodyCut) => {
            log.refused = Some("bad_body");
            error(
                400,
                "bad_request",
                "the request body could not be read",
                extra,
            )
        }
        Err(ForwardError::Origin(failure)) => failure_response(&failure, extra),
    }
}
