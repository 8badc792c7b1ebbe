//! What every handler can reach. Axum clones the state for every request (and every
//! middleware), so it is one `Arc`: a clone is one atomic increment, not a copy of every
//! handle inside (the Redis client alone owns strings).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::accounts::Accounts;
use crate::cache::Cache;
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::db::Db;
use crate::policies::HeaderPolicies;
use crate::ratelimit::Limiter;
use crate::redis::Redis;

#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub redis: Redis,
    pub cache: Cache,
    pub catalog: Catalog,
    pub accounts: Accounts,
    pub limiter: Limiter,
    /// The caches downstream of the origin (edge, Cloudflare, Next.js).
    pub purger: crate::purge::Purger,
    pub headers: HeaderPolicies,
    /// Compressed catalog bodies, made once per entry.
    pub compressed: crate::cache::compressed::Compressed,
    /// `None` when `METRICS=off`.
    pub metrics: Option<PrometheusHandle>,
    /// Set on the shutdown signal: `/readyz` fails from then on.
    pub draining: AtomicBool,
    /// Sent `true` on the shutdown signal: background work (the periodic sync) stops.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The database's schema was found current (at start, or by `/readyz` once the database
    /// answered); until then the origin is not ready.
    pub schema_current: AtomicBool,
}
