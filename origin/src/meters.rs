//! Every Prometheus metric the origin exports: names, help texts, zero baselines, the handles the
//! hot path reuses, and the gauges refreshed on each scrape. Other modules call the functions
//! here; none of them spells a metric name. Labels are bounded sets (route templates, methods,
//! data types, tiers, operations): never a key, an id or an address.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use shared::DataType;
use shared::ratelimit::Tier;

/// Results counted in `cache_requests_total`.
pub const CACHE_RESULTS: [&str; 4] = ["hit", "miss", "error", "coalesced"];
/// The outcomes of `cache_refresh_total` (see [`cache_refresh`]).
pub const REFRESH_OUTCOMES: [&str; 4] = ["refreshed", "skipped", "superseded", "failed"];
const DECISIONS: [&str; 2] = ["allowed", "limited"];

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder. The `metrics` facade has one global recorder, so every
/// origin built in this process (several in a test) shares it.
pub fn handle() -> PrometheusHandle {
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

/// `# HELP` texts, and zero-valued series for the counters alerts and dashboards rely on, so
/// they exist from the first scrape instead of after the first incident.
fn describe_and_baseline() {
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
        "Cache-aside reads by data type and result (hit, miss, error, coalesced); all but hit waited on a database load"
    );
    describe_counter!(
        "http_hit_path_total",
        "Catalog reads answered before routing (single-entry routes spelled plainly: the hit path)"
    );
    describe_counter!(
        "cache_refresh_total",
        "Refresh-ahead reloads by data type and outcome (refreshed, skipped, superseded, failed)"
    );
    describe_histogram!(
        "cache_load_duration_seconds",
        "Time to load a missed cache entry from PostgreSQL"
    );
    describe_counter!(
        "cache_invalidation_failures_total",
        "Invalidations that failed (entries then expire by TTL)"
    );
    describe_gauge!(
        "cache_l1_live",
        "1 while L1's invalidation subscription is live"
    );
    describe_counter!(
        "edge_secret_mismatch_total",
        "Requests carrying an X-Edge-Secret that matches neither EDGE_SECRET nor EDGE_SECRET_PREVIOUS (their X-Client-IP is ignored)"
    );
    describe_counter!(
        "edge_secret_previous_total",
        "Requests authenticated with EDGE_SECRET_PREVIOUS (a rotation is finished when this stops rising)"
    );
    describe_gauge!(
        "origin_build_info",
        "1, labelled with this binary's version and commit"
    );
    describe_counter!(
        "purge_calls_total",
        "Purge calls to a downstream cache (edge, cloudflare, next) by outcome: ok; failed (5xx, timeout: its tags queued again); rate_limited (429: queued again, the sink paused); refused (4xx or a redirect: dropped); soft_refused (Cloudflare took no invalidate_cache: purged hard since)"
    );
    describe_counter!(
        "purge_tags_total",
        "Cache tags a downstream cache confirmed purged"
    );
    describe_gauge!(
        "purge_queue_tags",
        "Cache tags waiting in the fleet's purge queue for a sink (reported by the replica sending)"
    );
    describe_gauge!(
        "purge_queue_oldest_seconds",
        "How long the oldest tag waiting for a sink has waited (reported by the replica sending)"
    );
    describe_gauge!(
        "purge_sender",
        "1 on the replica holding the purge sender's lease"
    );
    describe_counter!(
        "purge_merged_tags_total",
        "Product tags queued as their country's tag: the queue held more than the sink's budget sends in 10 s"
    );
    describe_counter!(
        "purge_expired_tags_total",
        "Tags dropped unsent after waiting longer than any cache keeps a copy (the purge came too late to matter)"
    );
    describe_counter!(
        "purge_enqueue_failures_total",
        "Round trips to the purge queue that failed (the tags were held in memory and tried again)"
    );
    describe_counter!(
        "sync_runs_total",
        "Catalog sync runs by provider and outcome (applied, unchanged, held, failed, skipped)"
    );
    describe_counter!(
        "sync_rows_changed_total",
        "Price rows a catalog sync wrote (new, changed, taken off sale)"
    );
    describe_counter!(
        "sync_keys_invalidated_total",
        "Cache keys a catalog sync invalidated"
    );
    describe_histogram!(
        "sync_duration_seconds",
        "Time of one catalog sync run, fetch to invalidation"
    );
    describe_gauge!(
        "sync_last_success_timestamp_seconds",
        "When each provider last synced (applied or unchanged), as a Unix time"
    );
    describe_counter!("db_queries_total", "PostgreSQL queries by name");
    describe_counter!(
        "dependency_unavailable_total",
        "Requests answered 503 because a dependency (PostgreSQL, Redis, the hashing pool) was out of reach"
    );
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
        "redis_evicted_keys",
        "Keys Redis evicted since it started (INFO stats evicted_keys, summed over masters)"
    );
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
        for result in CACHE_RESULTS {
            cache_counter(data, result).increment(0);
        }
        for outcome in REFRESH_OUTCOMES {
            metrics::counter!("cache_refresh_total", "type" => data.as_str(), "outcome" => outcome)
                .increment(0);
        }
    }
    for tier in Tier::ALL {
        metrics::counter!("ratelimit_fail_open_total", "tier" => tier.spec().name).increment(0);
        for allowed in [true, false] {
            decision_counter(tier, allowed).increment(0);
        }
    }
    for kind in ["error", "timeout"] {
        metrics::counter!("redis_errors_total", "op" => "get", "kind" => kind).increment(0);
    }
    hit_path().increment(0);
    metrics::counter!("cache_invalidation_failures_total").increment(0);
    for sink in ["edge", "cloudflare", "next"] {
        for outcome in ["ok", "failed", "refused", "rate_limited"] {
            metrics::counter!("purge_calls_total", "sink" => sink, "outcome" => outcome)
                .increment(0);
        }
        metrics::counter!("purge_tags_total", "sink" => sink).increment(0);
        metrics::counter!("purge_merged_tags_total", "sink" => sink).increment(0);
        metrics::counter!("purge_expired_tags_total", "sink" => sink).increment(0);
        purge_backlog(sink, 0, std::time::Duration::ZERO);
    }
    purge_sender(false);
    metrics::counter!("purge_enqueue_failures_total").increment(0);
    metrics::counter!("dependency_unavailable_total").increment(0);
    metrics::counter!("edge_secret_mismatch_total").increment(0);
    metrics::counter!("edge_secret_previous_total").increment(0);
    metrics::gauge!(
        "origin_build_info",
        "version" => crate::build::VERSION,
        "commit" => crate::build::COMMIT
    )
    .set(1.0);
}

/// Hot-path counters registered once and reused: building a metric key (labels, hashing, a
/// registry lookup) on every request costs more than the request's own work on a cache hit.
static CACHE_COUNTERS: OnceLock<Vec<Counter>> = OnceLock::new();
static DECISION_COUNTERS: OnceLock<Vec<Counter>> = OnceLock::new();

/// `cache_requests_total{type, result}`.
pub fn cache_counter(data: DataType, result: &'static str) -> &'static Counter {
    let table = CACHE_COUNTERS.get_or_init(|| {
        DataType::ALL
            .iter()
            .flat_map(|d| {
                CACHE_RESULTS.iter().map(|r| {
                    metrics::counter!("cache_requests_total", "type" => d.as_str(), "result" => *r)
                })
            })
            .collect()
    });
    let d = DataType::ALL.iter().position(|x| *x == data).unwrap_or(0);
    let r = CACHE_RESULTS.iter().position(|x| *x == result).unwrap_or(0);
    &table[d * CACHE_RESULTS.len() + r]
}

/// `http_hit_path_total`: a handle made once (the path it counts is the hottest there is).
pub fn hit_path() -> &'static Counter {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER.get_or_init(|| metrics::counter!("http_hit_path_total"))
}

/// Counts `n` cache reads of one result.
pub fn cache_results(data: DataType, result: &'static str, n: u64) {
    if n > 0 {
        cache_counter(data, result).increment(n);
    }
}

/// `cache_refresh_total{type, outcome}`: refresh-ahead attempts (`refreshed`, `skipped`: another
/// process holds the key's lock, `superseded`: a mutation came first, `failed`).
pub fn cache_refresh(data: DataType, outcome: &'static str) {
    metrics::counter!("cache_refresh_total", "type" => data.as_str(), "outcome" => outcome)
        .increment(1);
}

/// `cache_load_duration_seconds{type}`.
pub fn cache_load(data: DataType, elapsed: Duration) {
    metrics::histogram!("cache_load_duration_seconds", "type" => data.as_str())
        .record(elapsed.as_secs_f64());
}

/// `dependency_unavailable_total`: requests answered 503 because PostgreSQL or Redis was out of
/// reach (never a 500, which would page someone for an outage they cannot fix).
/// A request presented an edge secret that matches neither accepted value.
pub fn edge_secret_mismatch() {
    metrics::counter!("edge_secret_mismatch_total").increment(1);
}

/// A request presented `EDGE_SECRET_PREVIOUS`.
pub fn edge_secret_previous() {
    metrics::counter!("edge_secret_previous_total").increment(1);
}

pub fn dependency_unavailable() {
    metrics::counter!("dependency_unavailable_total").increment(1);
}

pub fn cache_invalidation_failed() {
    metrics::counter!("cache_invalidation_failures_total").increment(1);
}

/// Zero-valued sync series for each configured provider, so they exist from the first scrape: a
/// provider that has never synced shows `sync_last_success_timestamp_seconds` 0 (the alert on its
/// age then fires until it does).
pub fn sync_baseline(providers: &[String]) {
    for p in providers {
        for outcome in ["applied", "unchanged", "held", "failed"] {
            metrics::counter!("sync_runs_total", "provider" => p.clone(), "outcome" => outcome)
                .increment(0);
        }
        metrics::counter!("sync_rows_changed_total", "provider" => p.clone()).increment(0);
        metrics::counter!("sync_keys_invalidated_total", "provider" => p.clone()).increment(0);
        metrics::gauge!("sync_last_success_timestamp_seconds", "provider" => p.clone()).set(0.0);
    }
}

/// `sync_runs_total{provider, outcome}`.
pub fn sync_run(provider: &str, outcome: &'static str) {
    metrics::counter!("sync_runs_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// `sync_rows_changed_total{provider}`.
pub fn sync_rows(provider: &str, rows: usize) {
    metrics::counter!("sync_rows_changed_total", "provider" => provider.to_owned())
        .increment(rows as u64);
}

/// `sync_keys_invalidated_total{provider}`.
pub fn sync_keys(provider: &str, keys: usize) {
    metrics::counter!("sync_keys_invalidated_total", "provider" => provider.to_owned())
        .increment(keys as u64);
}

/// `sync_duration_seconds{provider}`.
pub fn sync_duration(provider: &str, secs: f64) {
    metrics::histogram!("sync_duration_seconds", "provider" => provider.to_owned()).record(secs);
}

/// `sync_last_success_timestamp_seconds{provider}`: when the provider last synced (applied or
/// unchanged), as a Unix time; the alert is on its age.
pub fn sync_succeeded(provider: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics::gauge!("sync_last_success_timestamp_seconds", "provider" => provider.to_owned())
        .set(now);
}

/// `purge_calls_total{sink, outcome}`: one call to a downstream cache (`ok`, `failed`,
/// `rate_limited`, `refused`, `soft_refused`).
pub fn purge_call(sink: &'static str, outcome: &'static str) {
    metrics::counter!("purge_calls_total", "sink" => sink, "outcome" => outcome).increment(1);
}

/// `purge_tags_total{sink}`: cache tags a downstream cache confirmed purged.
pub fn purge_tags(sink: &'static str, tags: usize) {
    metrics::counter!("purge_tags_total", "sink" => sink).increment(tags as u64);
}

/// `purge_queue_tags{sink}` and `purge_queue_oldest_seconds{sink}`, as the sender last saw them.
pub fn purge_backlog(sink: &'static str, pending: u64, oldest: std::time::Duration) {
    metrics::gauge!("purge_queue_tags", "sink" => sink).set(pending as f64);
    metrics::gauge!("purge_queue_oldest_seconds", "sink" => sink).set(oldest.as_secs_f64());
}

/// `purge_sender`: whether this replica holds the sender's lease.
pub fn purge_sender(holding: bool) {
    metrics::gauge!("purge_sender").set(if holding { 1.0 } else { 0.0 });
}

/// `purge_merged_tags_total{sink}`.
pub fn purge_merged(sink: &'static str, merged: u64) {
    if merged > 0 {
        metrics::counter!("purge_merged_tags_total", "sink" => sink).increment(merged);
    }
}

/// `purge_expired_tags_total{sink}`.
pub fn purge_expired(sink: &'static str, expired: u64) {
    if expired > 0 {
        metrics::counter!("purge_expired_tags_total", "sink" => sink).increment(expired);
    }
}

/// `purge_enqueue_failures_total`.
pub fn purge_enqueue_failed() {
    metrics::counter!("purge_enqueue_failures_total").increment(1);
}

pub fn cache_l1_live(live: bool) {
    metrics::gauge!("cache_l1_live").set(if live { 1.0 } else { 0.0 });
}

/// `ratelimit_decisions_total{tier, outcome}`.
pub fn decision_counter(tier: Tier, allowed: bool) -> &'static Counter {
    let table = DECISION_COUNTERS.get_or_init(|| {
        Tier::ALL
            .iter()
            .flat_map(|t| {
                let tier = t.spec().name;
                DECISIONS.iter().map(move |o| {
                    metrics::counter!("ratelimit_decisions_total", "tier" => tier, "outcome" => *o)
                })
            })
            .collect()
    });
    let t = Tier::ALL.iter().position(|x| *x == tier).unwrap_or(0);
    &table[t * DECISIONS.len() + usize::from(!allowed)]
}

pub fn ratelimit_fail_open(tier_name: &'static str) {
    metrics::counter!("ratelimit_fail_open_total", "tier" => tier_name).increment(1);
}

/// `redis_errors_total{op, kind}`.
pub fn redis_error(op: &'static str, kind: &'static str) {
    metrics::counter!("redis_errors_total", "op" => op, "kind" => kind).increment(1);
}

/// `db_queries_total{query}`.
pub fn db_query(query: &'static str) {
    metrics::counter!("db_queries_total", "query" => query).increment(1);
}

/// This origin's pool: open and idle connections, and its size limit.
pub fn db_pool(open: u32, idle: u32, max: u32) {
    metrics::gauge!("db_pool_connections", "state" => "open").set(open);
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set(open.saturating_sub(idle));
    metrics::gauge!("db_pool_max_connections").set(max);
}

pub fn redis_evicted_keys(evicted: u64) {
    metrics::gauge!("redis_evicted_keys").set(evicted as f64);
}

pub fn redis_memory(used: u64, limit: u64) {
    metrics::gauge!("redis_memory_used_bytes").set(used as f64);
    metrics::gauge!("redis_memory_limit_bytes").set(limit as f64);
}

pub fn pg_connections(active: i64, max: i64) {
    metrics::gauge!("pg_connections_active").set(active as f64);
    metrics::gauge!("pg_connections_max").set(max as f64);
}

/// Per matched route: the counters by method and status, and the latency histogram by method,
/// registered on first use and reused (a metric key built per request costs more than a
/// cache hit's own work).
#[derive(Default)]
struct RouteSeries {
    counts: Vec<(&'static str, u16, Counter)>,
    latency: Vec<(&'static str, Histogram)>,
}

/// The method as a label: the standard ones by name, anything a client made up as `OTHER`, so a
/// client cannot mint series.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("OTHER")
}

static HTTP_SERIES: OnceLock<RwLock<HashMap<String, RouteSeries>>> = OnceLock::new();

/// `http_requests_total{route, method, status}` and `http_request_duration_seconds{route,
/// method}`; `route` is the matched route template or `unmatched` (never the raw path).
pub fn http_request(route: &str, method: &Method, status: u16, seconds: f64) {
    record_http(route, method_label(method), status, seconds);
}

fn record_http(route: &str, method: &'static str, status: u16, seconds: f64) {
    let table = HTTP_SERIES.get_or_init(Default::default);
    {
        let read = table.read().unwrap_or_else(|p| p.into_inner());
        if let Some(series) = read.get(route) {
            let count = series
                .counts
                .iter()
                .find(|(m, s, _)| *m == method && *s == status);
            let latency = series.latency.iter().find(|(m, _)| *m == method);
            if let (Some((.., c)), Some((_, h))) = (count, latency) {
                c.increment(1);
                h.record(seconds);
                return;
            }
        }
    }
    let mut write = table.write().unwrap_or_else(|p| p.into_inner());
    let series = write.entry(route.to_owned()).or_default();
    if !series
        .counts
        .iter()
        .any(|(m, s, _)| *m == method && *s == status)
    {
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        let c = metrics::counter!("http_requests_total", &labels);
        series.counts.push((method, status, c));
    }
    if !series.latency.iter().any(|(m, _)| *m == method) {
        let labels = [("route", route.to_owned()), ("method", method.to_owned())];
        let h = metrics::histogram!("http_request_duration_seconds", &labels);
        series.latency.push((method, h));
    }
    drop(write);
    record_http(route, method, status, seconds);
}
