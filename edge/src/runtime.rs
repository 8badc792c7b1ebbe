//! The catalog flow's [`Ports`] over the Workers runtime (the Cache API, the clock, `Delay`,
//! the origin fetch, `waitUntil`), and the per-client limit as Cloudflare runs it (the
//! `[[ratelimits]]` bindings where bound, else the isolate's limiter).

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use worker::{Cache, Context, Env, Headers, Response, ResponseBody, Result};

use crate::clients::Caller;
use crate::clock::now_ms;
use crate::glue::Setup;
use crate::headers::{STORED_AT, TAGS, parse_tags, stored_headers};
use crate::limiter::{BINDING_TRUSTED, Decision, binding_keys};
use crate::ports::{Copy, Entry, Fetched, OriginFailure, Ports};
use crate::upstream::Upstream;

/// The isolate's limiter, or Cloudflare's rate-limit bindings where the first one is bound. A
/// binding that fails to answer leaves the decision to the isolate's limiter (the local safety
/// net), never to nobody.
pub(crate) async fn limit(env: &Env, setup: &Setup, caller: &Caller<'_>) -> Decision {
    if setup.bound
        && let Some(decision) =
            limit_with_bindings(env, caller, setup.cfg.rate_limit_period_secs).await
    {
        return decision;
    }
    match caller {
        Caller::Client { ip } => setup.clients.check_client(*ip),
        Caller::Trusted { name, .. } => setup.trusted.check(&format!("trusted:{name}")),
    }
}

async fn limit_with_bindings(env: &Env, caller: &Caller<'_>, period_secs: u32) -> Option<Decision> {
    let keys = match caller {
        Caller::Client { ip } => binding_keys(*ip),
        Caller::Trusted { name, .. } => vec![(BINDING_TRUSTED, format!("trusted:{name}"))],
    };
    for (binding, key) in keys {
        let outcome = env.rate_limiter(binding).ok()?.limit(key).await.ok()?;
        if !outcome.success {
            return Some(Decision::Deny {
                retry_after_secs: u64::from(period_secs),
            });
        }
    }
    Some(Decision::Allow)
}

/// [`Ports`] over the Workers runtime, for one request.
#[derive(Clone)]
pub(crate) struct WorkerPorts {
    pub(crate) upstream: Rc<Upstream>,
    pub(crate) ctx: Rc<Context>,
}

impl Ports for WorkerPorts {
    type Body = ResponseBody;
    type Passthrough = Response;

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + 'static {
        worker::Delay::from(Duration::from_millis(ms))
    }

    async fn cache_get(&self, key: &str) -> Option<Entry<ResponseBody>> {
        let hit = Cache::default().get(key, false).await.ok().flatten()?;
        let stored_at_ms = hit
            .headers()
            .get(STORED_AT)
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let etag = hit.headers().get("ETag").ok().flatten().unwrap_or_default();
        let tags = parse_tags(hit.headers().get(TAGS).ok().flatten().as_deref());
        let (_, body) = hit.into_parts();
        Some(Entry {
            body,
            etag,
            stored_at_ms,
            tags,
        })
    }

    async fn read(&self, body: ResponseBody) -> Option<Vec<u8>> {
        Response::from_body(body).ok()?.bytes().await.ok()
    }

    async fn cache_put(&self, key: &str, copy: &Copy) {
        let stored = || -> Result<Response> {
            let headers = Headers::new();
            for (name, value) in
                stored_headers(&copy.policy, &copy.etag, copy.stored_at_ms, &copy.tags)
            {
                headers.set(name, &value)?;
            }
            Ok(Response::from_bytes(copy.body.to_vec())?.with_headers(headers))
        };
        if let Ok(resp) = stored() {
            let _ = Cache::default().put(key, resp).await;
        }
    }

    async fn fetch(&self, path: &str) -> std::result::Result<Fetched<Response>, OriginFailure> {
        self.upstream.fetch_catalog(path).await
    }

    fn in_background(&self, work: impl Future<Output = ()> + 'static) {
        self.ctx.wait_until(work);
    }
}
