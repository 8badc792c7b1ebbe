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
use crate::monitor::{fullest, pg_connections, redis_memory};
use crate::state::AppState;

/// Alive: the process answers. Checks nothing else, so a Redis or database outage never gets
/// the process restarted.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "The process answers.", body = HealthResponse)))]
pub async fn healthz() -> Response {
    no_store(Json(json!({"status": "ok"})).into_response())
}

/// Ready: PostgreSQL and Redis both answer within a second, and the origin is not draining (after
/// SIGTERM it fails readiness at once, so a load balancer stops sending new requests while the
/// ones in flight finish).
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        let body = json!({"status": "draining"});
        return no_store((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    let bound = Duration::from_secs(1);
    let (pg, redis) = tokio::join!(
        tokio::time::timeout(bound, state.db.ping()),
        tokio::time::timeout(bound, state.redis.ping()),
    );
    let pg_ok = matches!(pg, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let status = if pg_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": word(pg_ok && redis_ok),
        "postgres": word(pg_ok),
        "redis": word(redis_ok),
    });
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
    let (redis, pg) = tokio::join!(redis_memory(&state.redis), pg_connections(&state.db));
    // On a cluster, the master closest to its limit: the one that evicts or refuses first.
    if let Some(m) = redis.ok().as_deref().and_then(fullest) {
        meters::redis_memory(m.used, m.limit().unwrap_or(0));
    }
    if let Ok((active, max)) = pg {
        meters::pg_connections(active, max);
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
