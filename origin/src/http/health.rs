//! Liveness, readiness and metrics. None of these is rate limited or cached.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::client_ip::ClientIp;
use super::error::ApiError;
use super::openapi::{ClientIpResponse, HealthResponse};
use crate::meters;
use crate::monitor::{fullest, pg_connections, redis_evicted_keys, redis_memory};
use crate::state::AppState;

/// Alive: the process answers and is not shutting down. It checks no dependency, so a Redis or
/// PostgreSQL outage never gets a task marked unhealthy or replaced: the load balancer's target
/// group and the container health check (`origin probe`) both ask this, and the catalog rides
/// such an outage out (fail-open limits, answers from whichever store still answers). After
/// SIGTERM it answers 503 `draining` at once, so a balancer stops sending new requests while the
/// ones in flight finish. `/readyz` (dependencies) is for operators and dashboards.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "The process answers.", body = HealthResponse)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    use std::sync::atomic::Ordering;
    if state.draining.load(Ordering::Acquire) {
        let body = json!({"status": "draining"});
        return no_store((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    no_store(Json(json!({"status": "ok"})).into_response())
}

/// Ready: PostgreSQL and Redis both answer within a second, the schema is current, and the
/// origin is not draining (after SIGTERM it fails readiness at once, so a load balancer stops
/// sending new requests while the ones in flight finish). A failing dependency is named with
/// why (`postgres_error`, `redis_error`: a refused certificate, a password, no answer), never
/// with its URL; this listener is the operator's.
pub async fn readyz(State(state): State<AppState>) -> Response {
    use std::sync::atomic::Ordering;
    if state.draining.load(Ordering::Acquire) {
        let body = json!({"status": "draining"});
        return no_store((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    let bound = Duration::from_secs(1);
    let (pg, redis) = tokio::join!(
        tokio::time::timeout(bound, state.db.ping()),
        tokio::time::timeout(bound, state.redis.ping()),
    );
    let mut pg_error = match pg {
        Ok(Ok(())) => None,
        // The pool says only that it timed out: one connection of our own says why.
        _ => Some(match state.db.probe(bound).await {
            Err(e) => format!("DATABASE_URL: {e}"),
            Ok(()) => "DATABASE_URL: no pooled connection within 1 s".to_owned(),
        }),
    };
    let redis_error = match redis {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("REDIS_URL: {e}")),
        Err(_) => Some("REDIS_URL: no answer within 1 s".to_owned()),
    };
    let mut schema = None;
    if pg_error.is_none() && !state.schema_current.load(Ordering::Acquire) {
        match crate::db::schema::status(&state.db, &crate::MIGRATOR).await {
            Ok(status) if status.is_current() => {
                state.schema_current.store(true, Ordering::Release)
            }
            Ok(status) => schema = Some(status.describe()),
            Err(e) => pg_error = Some(format!("DATABASE_URL: reading the schema: {e}")),
        }
    }
    let pg_ok = pg_error.is_none() && schema.is_none();
    let redis_ok = redis_error.is_none();
    let status = if pg_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok| if ok { "ok" } else { "unavailable" };
    let mut body = json!({
        "status": word(pg_ok && redis_ok),
        "postgres": word(pg_ok),
        "redis": word(redis_ok),
    });
    for (field, value) in [
        ("postgres_error", pg_error),
        ("schema", schema),
        ("redis_error", redis_error),
    ] {
        if let Some(value) = value {
            body[field] = value.into();
        }
    }
    no_store((status, Json(body)).into_response())
}

/// The address the origin attributes this request to (after edge trust): lets the frontend and
/// operators check what the limits and logs see.
#[utoipa::path(get, path = "/v1/client-ip", tag = "meta",
    responses((status = 200, description = "The client's address as the origin sees it.", body = ClientIpResponse)))]
pub async fn client_ip(ClientIp(ip): ClientIp) -> Response {
    no_store(Json(json!({"ip": ip.to_string()})).into_response())
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return ApiError::NotFound("metrics are off (METRICS=off)".into()).into_response();
    };
    let pool = state.db.pool();
    meters::db_pool(
        pool.size(),
        pool.num_idle() as u32,
        state.settings.db_max_connections,
    );
    // The checklist's server-side readings; a failed reading leaves the last value in place.
    let (redis, pg, evicted) = tokio::join!(
        redis_memory(&state.redis),
        pg_connections(&state.db),
        redis_evicted_keys(&state.redis)
    );
    if let Ok(evicted) = evicted {
        meters::redis_evicted_keys(evicted);
    }
    // On a cluster, the master closest to its limit: the one that evicts or refuses first.
    if let Some(m) = redis.ok().as_deref().and_then(fullest) {
        meters::redis_memory(m.used, m.limit().unwrap_or(0));
    }
    if let Ok((active, max)) = pg {
        meters::pg_connections(active, max);
    }
    // Read at each scrape too: the subscriber's own first setting can come before the recorder
    // is installed at start, and would then be lost until the subscription next changed.
    if state.settings.l1_enabled {
        meters::cache_l1_live(state.cache.l1_live());
    }
    let mut resp = handle.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    no_store(resp)
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(shared::policy::PRIVATE_NO_STORE),
    );
    resp
}
