//! Tracing (structured logs, one span per request), Sentry, and the Prometheus recorder.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use shared::DataType;
use shared::ratelimit::Tier;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global tracing subscriber: JSON lines, filtered by `RUST_LOG` (default `info`);
/// with a Sentry DSN, ERROR events (every 5xx is logged once, in `ApiError`) and panics also go
/// to Sentry, and lower levels become breadcrumbs. Without a DSN nothing is sent anywhere.
/// Keep the returned guard alive: dropping it flushes pending events.
pub fn init(filter: &str, sentry_dsn: Option<&str>) -> Option<sentry::ClientInitGuard> {
    let guard = sentry_dsn.map(|dsn| {
        let mut options = sentry::ClientOptions::default();
        options.release = sentry::release_name!();
        options.attach_stacktrace = true;
        sentry::init((dsn, options))
    });
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let sentry_layer = guard
        .as_ref()
        .map(|_| sentry::integrations::tracing::layer());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true),
        )
        .with(sentry_layer)
        .try_init();
    guard
}

/// `# HELP` texts, and zero-valued series for the counters alerts and dashboards rely on, so
/// they exist from the first scrape instead of after the first incident.
fn describe_and_baseline() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by matched route, method and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        "HTTP request latency by matched route and method"
    );
    describe_counter!(
        "cache_requests_total",
        "Cache-aside reads by data type and result (hit, miss, error, coalesced)"
    );
    describe_histogram!(
        "cache_load_duration_seconds",
        "Time to load a missed cache entry from PostgreSQL"
    );
    describe_counter!(
        "cache_invalidation_failures_total",
        "Invalidations that failed (entries then expire by TTL)"
    );
    describe_counter!("db_queries_total", "PostgreSQL queries by name");
    describe_gauge!(
        "db_pool_connections",
        "This origin's PostgreSQL pool: open, idle, in_use"
    );
    describe_gauge!(
        "db_pool_max_connections",
        "This origin's PostgreSQL pool size limit"
    );
    describe_gauge!(
        "pg_connections_active",
        "Client connections on the PostgreSQL server"
    );
    describe_gauge!("pg_connections_max", "PostgreSQL max_connections");
    describe_gauge!("redis_memory_used_bytes", "Redis used_memory");
    describe_gauge!(
        "redis_memory_limit_bytes",
        "Redis maxmemory, or the host's memory when maxmemory is 0"
    );
    describe_counter!(
        "redis_errors_total",
        "Redis command failures by operation and kind (error, timeout)"
    );
    describe_counter!(
        "ratelimit_decisions_total",
        "Rate-limit decisions by tier and outcome (allowed, limited)"
    );
    describe_counter!(
        "ratelimit_fail_open_total",
        "Rate-limit checks decided without Redis (failed open)"
    );

    for data in DataType::ALL {
        for result in ["hit", "miss", "error", "coalesced"] {
            metrics::counter!("cache_requests_total", "type" => data.as_str(), "result" => result)
                .increment(0);
        }
    }
    for tier in Tier::ALL {
        let name = tier.spec().name;
        metrics::counter!("ratelimit_fail_open_total", "tier" => name).increment(0);
        for outcome in ["allowed", "limited"] {
            metrics::counter!("ratelimit_decisions_total", "tier" => name, "outcome" => outcome)
                .increment(0);
        }
    }
    for kind in ["error", "timeout"] {
        metrics::counter!("redis_errors_total", "op" => "get", "kind" => kind).increment(0);
    }
    metrics::counter!("cache_invalidation_failures_total").increment(0);
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Results counted in `cache_requests_total`.
pub const CACHE_RESULTS: [&str; 4] = ["hit", "miss", "error", "coalesced"];

/// Hot-path counters registered once and reused: building a metric key (labels, hashing, a
/// registry lookup) on every request costs more than the request's own work on a cache hit.
static CACHE_COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();
static DECISION_COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();

/// `cache_requests_total{type, result}`.
pub fn cache_counter(data: DataType, result: &'static str) -> &'static metrics::Counter {
    let table = CACHE_COUNTERS.get_or_init(|| {
        DataType::ALL
            .iter()
            .flat_map(|d| {
                CACHE_RESULTS
                    .iter()
                    .map(|r| metrics::counter!("cache_requests_total", "type" => d.as_str(), "result" => *r))
            })
            .collect()
    });
    let d = DataType::ALL.iter().position(|x| *x == data).unwrap_or(0);
    let r = CACHE_RESULTS.iter().position(|x| *x == result).unwrap_or(0);
    &table[d * CACHE_RESULTS.len() + r]
}

/// `ratelimit_decisions_total{tier, outcome}`.
pub fn decision_counter(tier: Tier, allowed: bool) -> &'static metrics::Counter {
    let table = DECISION_COUNTERS.get_or_init(|| {
        Tier::ALL
            .iter()
            .flat_map(|t| {
                ["allowed", "limited"]
                    .iter()
                    .map(|o| metrics::counter!("ratelimit_decisions_total", "tier" => t.spec().name, "outcome" => *o))
            })
            .collect()
    });
    let t = Tier::ALL.iter().position(|x| *x == tier).unwrap_or(0);
    &table[t * 2 + usize::from(!allowed)]
}

/// The process-wide Prometheus recorder. The `metrics` facade has one global recorder, so every
/// origin built in this process (several in a test) shares it.
pub fn metrics_handle() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); ours still renders
            // what is sent to it, and the first one installed wins.
            let _ = metrics::set_global_recorder(recorder);
            describe_and_baseline();
            let upkeep = handle.clone();
            // Histograms are drained into their summaries by upkeep; without it they grow.
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}
