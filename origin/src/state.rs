//! What every handler can reach. Cheap to clone: every field is a handle.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::accounts::Accounts;
use crate::cache::Cache;
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::db::Db;
use crate::http::respond::HeaderPolicies;
use crate::ratelimit::Limiter;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub cache: Cache,
    pub catalog: Catalog,
    pub accounts: Accounts,
    pub limiter: Limiter,
    pub headers: Arc<HeaderPolicies>,
    /// `None` when `METRICS=off`.
    pub metrics: Option<PrometheusHandle>,
}
