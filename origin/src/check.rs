//! `origin check`: the guide's pre-traffic checklist (section 5) run against the live services.
//! Prints one row per check (measured value, threshold, PASS / WARN / FAIL), or JSON with
//! `--json`; exits non-zero when any check fails. A check that cannot be measured fails.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Grade, Settings};
use crate::db::Db;
use crate::monitor::{
    RedisMemory, pg_connections, redis_eviction_policy, redis_maxclients, redis_memory,
    request_totals,
};
use crate::redis::Redis;

/// Checklist thresholds, in percent; the defaults are the guide's.
#[derive(Clone, Debug, clap::Args)]
pub struct CheckArgs {
    /// Redis memory used vs its limit (maxmemory, else the host's memory), percent.
    #[arg(long, default_value_t = 70.0)]
    pub redis_memory_max_pct: f64,
    /// PostgreSQL client connections vs max_connections, percent.
    #[arg(long, default_value_t = 80.0)]
    pub db_connections_max_pct: f64,
    /// Origins expected to run at once (the fleet's size at its peak): their pools together
    /// (`DB_MAX_CONNECTIONS` each) are compared with what PostgreSQL allows.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// The origin's 5xx responses vs all responses, percent.
    #[arg(long, default_value_t = 1.0)]
    pub error_rate_max_pct: f64,
    /// Base URL of a running origin whose /metrics gives the 5xx rate (skipped when absent).
    #[arg(long)]
    pub origin: Option<String>,
    /// Seconds between the two /metrics samples the recent 5xx rate is computed from
    /// (0: since the origin started).
    #[arg(long, default_value_t = 5)]
    pub sample_secs: u64,
    /// A stage's synthesized CloudFormation template to grade (`make infra` writes
    /// `ops/cdk/cdk.out/NexnumProduction.template.json`): the serving task's settings, its
    /// scaling target's MaxCapacity against the live limits, the health checks, the circuit
    /// breaker, the log group.
    #[arg(long)]
    pub ecs_template: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Default for CheckArgs {
    /// The guide's thresholds, nothing optional.
    fn default() -> Self {
        CheckArgs {
            redis_memory_max_pct: 70.0,
            db_connections_max_pct: 80.0,
            replicas: 1,
            error_rate_max_pct: 1.0,
            origin: None,
            sample_secs: 5,
            ecs_template: None,
            json: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub check: String,
    pub value: String,
    pub threshold: String,
    pub status: Status,
    pub note: String,
}

/// The fleet's pools against PostgreSQL's `max_connections` (the guide: 10 per container; past a
/// handful of containers, PgBouncer). Behind a transaction-mode pooler the pools count against
/// PgBouncer's `max_client_conn` instead, which the origin cannot read: then it only says so.
fn fleet_pools(settings: &Settings, args: &CheckArgs, max: Option<i64>) -> Row {
    let planned = u64::from(args.replicas) * u64::from(settings.db_max_connections);
    let threshold = format!("< {}% of max_connections", args.db_connections_max_pct);
    let value = format!(
        "{planned} ({} origins x DB_MAX_CONNECTIONS {})",
        args.replicas, settings.db_max_connections
    );
    if settings.db_behind_transaction_pooler {
        return Row {
            check: "fleet pool budget".into(),
            value,
            threshold: "PgBouncer max_client_conn".into(),
            status: Status::Skip,
            note: "DB_POOLER: check PgBouncer's max_client_conn covers it".into(),
        };
    }
    match max {
        None => failed("fleet pool budget", threshold, "max_connections unreadable"),
        Some(max) => {
            let pct = planned as f64 * 100.0 / max.max(1) as f64;
            Row {
                check: "fleet pool budget".into(),
                value,
                threshold,
                status: grade(pct, args.db_connections_max_pct),
                note: format!("{pct:.0}% of max_connections {max}; past it, use PgBouncer"),
            }
        }
    }
}

/// Each provider's catalog sync: its last run, and how long since a good one. A provider in
/// `SYNC_PROVIDERS` with no run at all is a WARN (it has never synced); a last run held or
/// failed, or no good run for three intervals (an hour when no interval is set), a FAIL.
async fn sync_rows(settings: &Settings, db: &Db) -> Vec<Row> {
    let last = match db.last_syncs().await {
        Ok(last) => last,
        Err(e) => return vec![failed("sync", "readable log".into(), e)],
    };
    let stale_after = if settings.sync.interval.is_zero() {
        3600.0
    } else {
        3.0 * settings.sync.interval.as_secs_f64()
    };
    let threshold = format!("a good run within {stale_after:.0} s");
    let mut rows: Vec<Row> = last
        .iter()
        .map(|run| {
            let good = run
                .good_age_secs
                .map_or("never".to_owned(), |a| format!("{a:.0} s ago"));
            let status = match (run.outcome.as_str(), run.good_age_secs) {
                ("held" | "failed", _) => Status::Fail,
                (_, Some(age)) if age <= stale_after => Status::Pass,
                _ => Status::Fail,
            };
            Row {
                check: format!("sync {}", run.provider),
                value: format!(
                    "{} {:.0} s ago ({} rows)",
                    run.outcome, run.age_secs, run.changed
                ),
                threshold: threshold.clone(),
                status,
                note: if run.detail.is_empty() {
                    format!("last good run {good}")
                } else {
                    format!("{}; last good run {good}", run.detail)
                },
            }
        })
        .collect();
    for upstream in &settings.sync.upstreams {
        if !last.iter().any(|r| r.provider == upstream.provider) {
            rows.push(Row {
                check: format!("sync {}", upstream.provider),
                value: "never run".into(),
                threshold: threshold.clone(),
                status: Status::Warn,
                note: "in SYNC_PROVIDERS, never synced: run `origin sync`".into(),
            });
        }
    }
    rows
}

/// What Redis may evict when full. Every key this system writes expires; the cache entries expire
/// soonest (prices 60 s, made-up codes' nulls ≤ 30 s) and sessions last (15 min sliding), so
/// `volatile-ttl` sheds cache first and sessions last. The LRU/LFU policies may log users out to
/// keep a hot cache entry; `noeviction` keeps everything and refuses new sign-ins when full; the
/// `allkeys-*` and random policies can drop any session or rate-limit window at any time.
pub fn eviction_grade(policy: &str) -> (Status, &'static str) {
    match policy {
        "volatile-ttl" => (Status::Pass, "cache entries go first, sessions last"),
        "volatile-lru" | "volatile-lfu" => (
            Status::Warn,
            "may evict sessions (users signed out) to keep cache entries",
        ),
        "noeviction" => (
            Status::Warn,
            "nothing is evicted: when full, cache writes fail and sign-ins answer 503",
        ),
        _ => (
            Status::Fail,
            "may evict any session or rate-limit window: set maxmemory-policy volatile-ttl",
        ),
    }
}

/// Under 85% of the threshold: PASS; up to it: WARN; at or over it: FAIL.
pub fn grade(pct: f64, max_pct: f64) -> Status {
    if pct >= max_pct {
        Status::Fail
    } else if pct >= max_pct * 0.85 {
        Status::Warn
    } else {
        Status::Pass
    }
}

fn failed(check: &str, threshold: String, why: impl std::fmt::Display) -> Row {
    Row {
        check: check.into(),
        value: "unmeasured".into(),
        threshold,
        status: Status::Fail,
        note: why.to_string(),
    }
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

fn memory_row(check: String, threshold: String, m: &RedisMemory, args: &CheckArgs) -> Row {
    match (m.ratio(), m.limit()) {
        (Some(ratio), Some(limit)) => {
            let pct = ratio * 100.0;
            let note = if m.maxmemory == 0 {
                format!(
                    "maxmemory is 0 (unlimited): compared with the host's {}",
                    gib(limit)
                )
            } else {
                format!("maxmemory {}", gib(limit))
            };
            Row {
                check,
                value: format!("{pct:.1}% ({} used)", gib(m.used)),
                threshold,
                status: grade(pct, args.redis_memory_max_pct),
                note,
            }
        }
        _ => failed(
            &check,
            threshold,
            "maxmemory is 0 and the host's memory is unknown",
        ),
    }
}

pub async fn run(settings: &Settings, args: &CheckArgs) -> Vec<Row> {
    crate::tls::install_crypto_provider();
    let mut rows = transport_rows(settings);
    rows.extend(deployment_rows(settings));

    let redis = Redis::from_settings(settings).map_err(|e| e.to_string());
    let threshold = format!("< {}%", args.redis_memory_max_pct);
    let memories = match &redis {
        Err(e) => Err(e.clone()),
        Ok(redis) => redis_memory(redis).await.map_err(|e| e.to_string()),
    };
    match memories {
        Err(e) => rows.push(failed("redis memory", threshold.clone(), e)),
        // One row per server that holds data: each cluster master fills up on its own.
        Ok(memories) => {
            for (node, m) in memories {
                let check = match &node {
                    Some(node) => format!("redis memory ({node})"),
                    None => "redis memory".to_owned(),
                };
                rows.push(memory_row(check, threshold.clone(), &m, args));
            }
        }
    }

    let threshold = "volatile-ttl".to_owned();
    let policies = match &redis {
        Err(e) => Err(e.clone()),
        Ok(redis) => redis_eviction_policy(redis)
            .await
            .map_err(|e| e.to_string()),
    };
    match policies {
        Err(e) => rows.push(failed("redis eviction policy", threshold, e)),
        Ok(policies) => {
            for (node, policy) in policies {
                let (status, note) = eviction_grade(&policy);
                let check = match &node {
                    Some(node) => format!("redis eviction policy ({node})"),
                    None => "redis eviction policy".to_owned(),
                };
                rows.push(Row {
                    check,
                    value: policy,
                    threshold: threshold.clone(),
                    status,
                    note: note.into(),
                });
            }
        }
    }

    let threshold = format!("< {}%", args.db_connections_max_pct);
    let db = Db::connect_lazy(settings).map_err(|e| e.to_string());
    let reading = match &db {
        Err(e) => Err(e.clone()),
        Ok(db) => pg_connections(db).await.map_err(|e| e.to_string()),
    };
    rows.push(match &db {
        Err(e) => failed("postgres schema", "current".into(), e),
        Ok(db) => match crate::db::schema::status(db, &crate::MIGRATOR).await {
            Err(e) => failed("postgres schema", "current".into(), e),
            Ok(status) => Row {
                check: "postgres schema".into(),
                value: format!("migration {} of {}", status.applied, status.expected),
                threshold: "current".into(),
                status: if status.is_current() {
                    Status::Pass
                } else {
                    Status::Fail
                },
                note: status.describe(),
            },
        },
    });
    if let Ok(db) = &db {
        rows.extend(sync_rows(settings, db).await);
    }
    rows.push(fleet_pools(
        settings,
        args,
        reading.as_ref().ok().map(|r| r.1),
    ));
    let pg_max_connections = reading.as_ref().ok().map(|r| r.1);
    let row = match reading {
        Err(e) => failed("postgres connections", threshold, e),
        Ok((active, max)) => {
            let pct = active as f64 * 100.0 / max.max(1) as f64;
            Row {
                check: "postgres connections".into(),
                value: format!("{pct:.1}% ({active} of {max})"),
                threshold,
                status: grade(pct, args.db_connections_max_pct),
                note: "client backends in pg_stat_activity vs max_connections".into(),
            }
        }
    };
    rows.push(row);

    let threshold = format!("< {}%", args.error_rate_max_pct);
    let row = match &args.origin {
        None => Row {
            check: "origin 5xx rate".into(),
            value: "-".into(),
            threshold,
            status: Status::Skip,
            note: "pass --origin URL to read a running origin's /metrics".into(),
        },
        Some(base) => match error_rate(&settings.http_roots, base, args.sample_secs).await {
            Err(e) => failed("origin 5xx rate", threshold, e),
            Ok((requests, errors)) => {
                let pct = if requests > 0.0 {
                    errors * 100.0 / requests
                } else {
                    0.0
                };
                let window = if args.sample_secs == 0 {
                    "since start".to_owned()
                } else {
                    format!("last {} s", args.sample_secs)
                };
                Row {
                    check: "origin 5xx rate".into(),
                    value: format!("{pct:.2}% ({errors} of {requests})"),
                    threshold,
                    status: grade(pct, args.error_rate_max_pct),
                    note: format!("{window}, from {base}/metrics"),
                }
            }
        },
    };
    rows.push(row);

    if let Some(template) = &args.ecs_template {
        match crate::ecs::EcsPlan::load(template) {
            Err(e) => rows.push(failed("ecs plan", "readable".into(), e)),
            Ok(plan) => {
                let redis_maxclients = match &redis {
                    Ok(redis) => redis_maxclients(redis).await.unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                let limits = crate::ecs::Limits {
                    pg_max_connections,
                    redis_maxclients: redis_maxclients
                        .into_iter()
                        .map(|(node, max)| {
                            (
                                node.map_or_else(|| "redis".to_owned(), |n| n.to_string()),
                                max,
                            )
                        })
                        .collect(),
                };
                rows.extend(crate::ecs::grade_plan(
                    &plan,
                    &limits,
                    args.db_connections_max_pct,
                ));
            }
        }
    }
    rows
}

/// What a deployment must not run without, in the environment `ORIGIN_ENV` names: a feature
/// left off by a missing setting is not an error at start (each is optional for a local run), so
/// it is graded here, where an operator looks before traffic. A local run on a listener other
/// than loopback is refused too: `ORIGIN_ENV=local` relaxes checks meant for this machine only.
pub fn deployment_rows(settings: &Settings) -> Vec<Row> {
    use crate::config::Environment;
    let row = |check: &str, value: String, threshold: &str, status, note: &str| Row {
        check: check.into(),
        value,
        threshold: threshold.into(),
        status,
        note: note.into(),
    };
    let on = |b: bool| if b { "on".to_owned() } else { "off".to_owned() };
    let deployed = matches!(
        settings.environment,
        Some(Environment::Staging | Environment::Production)
    );
    let mut rows = Vec::new();
    match settings.environment {
        None => rows.push(row(
            "environment",
            "unset".into(),
            "ORIGIN_ENV set",
            Status::Warn,
            "say which deployment this is (staging, production): the rows below depend on it",
        )),
        Some(Environment::Local) => {
            let public = [settings.addr, settings.metrics_addr]
                .iter()
                .any(|a| !a.ip().is_loopback());
            rows.push(row(
                "environment",
                "local".into(),
                "loopback listeners",
                if public { Status::Fail } else { Status::Pass },
                if public {
                    "ORIGIN_ENV=local relaxes checks meant for this machine (the example edge \
                     secret, unverified TLS), but a listener is not on loopback"
                } else {
                    "a local run, on this machine only"
                },
            ));
        }
        Some(e) => rows.push(row(
            "environment",
            e.as_str().into(),
            "ORIGIN_ENV set",
            Status::Pass,
            "",
        )),
    }
    if !deployed {
        return rows;
    }
    let required = |ok: bool| if ok { Status::Pass } else { Status::Fail };
    rows.push(row(
        "edge secret",
        on(settings.edge_secret.is_some()),
        "on",
        required(settings.edge_secret.is_some()),
        "without EDGE_SECRET no client address is believed: every user is the edge's address",
    ));
    let cloudflare = settings.purge.cloudflare.is_some();
    rows.push(row(
        "purge: cloudflare",
        on(cloudflare),
        "on",
        required(cloudflare),
        "without CLOUDFLARE_ZONE_ID/API_TOKEN a changed price stays in every data centre's cache \
         until its TTL",
    ));
    let next = settings.purge.next.is_some();
    rows.push(row(
        "purge: next.js",
        on(next),
        "on",
        if next { Status::Pass } else { Status::Warn },
        "without NEXT_REVALIDATE_URL/SECRET the frontend's data cache keeps old prices until its \
         own revalidation",
    ));
    let syncing = !settings.sync.upstreams.is_empty();
    rows.push(row(
        "catalog sync",
        if syncing {
            format!(
                "{} providers, every {} s",
                settings.sync.upstreams.len(),
                settings.sync.interval.as_secs()
            )
        } else {
            "off".into()
        },
        "SYNC_PROVIDERS set",
        required(syncing),
        "without SYNC_PROVIDERS prices and stock never change but by hand",
    ));
    let sentry = settings.sentry.is_some();
    rows.push(row(
        "error reporting",
        on(sentry),
        "on",
        if sentry { Status::Pass } else { Status::Warn },
        "without SENTRY_DSN a 5xx is only a log line",
    ));
    rows
}

/// How each dependency is reached (see `config::PgTls::posture`): verified TLS, or only on
/// loopback, passes; TLS that checks no identity warns; plaintext or no verification to another
/// host fails.
fn transport_rows(settings: &Settings) -> Vec<Row> {
    let row = |check: &str, (grade, text): (Grade, String)| Row {
        check: check.into(),
        value: text,
        threshold: "verified TLS off this host".into(),
        status: match grade {
            Grade::Good => Status::Pass,
            Grade::Weak => Status::Warn,
            Grade::Unsafe => Status::Fail,
        },
        note: match grade {
            Grade::Good => "",
            Grade::Weak => "encrypted, but the server's identity is not fully checked",
            Grade::Unsafe => "readable or impersonable on the network",
        }
        .into(),
    };
    vec![
        row("postgres transport", settings.database_tls.posture()),
        row("redis transport", settings.redis_tls.posture()),
    ]
}

/// (requests, 5xx) over the sampling window, from two scrapes of the origin's /metrics.
async fn error_rate(
    roots: &crate::outbound::Roots,
    base: &str,
    sample_secs: u64,
) -> Result<(f64, f64), String> {
    let client = roots
        .client(
            "--origin",
            Duration::from_secs(5),
            crate::outbound::Redirects::None,
        )
        .map_err(|e| e.to_string())?;
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let scrape = || async {
        let text = client
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(request_totals(&text))
    };
    let first = scrape().await?;
    if sample_secs == 0 {
        return Ok(first);
    }
    tokio::time::sleep(Duration::from_secs(sample_secs)).await;
    let second = scrape().await?;
    Ok((second.0 - first.0, second.1 - first.1))
}

pub fn render(rows: &[Row], json: bool) -> String {
    if json {
        let overall = if rows.iter().any(|r| r.status == Status::Fail) {
            "FAIL"
        } else {
            "PASS"
        };
        return serde_json::json!({"status": overall, "checks": rows}).to_string();
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header(["check", "value", "threshold", "status", "note"]);
    for r in rows {
        let status = serde_json::to_value(r.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        table.add_row([
            r.check.as_str(),
            r.value.as_str(),
            r.threshold.as_str(),
            status.as_str(),
            r.note.as_str(),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grading() {
        assert_eq!(grade(10.0, 70.0), Status::Pass);
        assert_eq!(grade(60.0, 70.0), Status::Warn);
        assert_eq!(grade(70.0, 70.0), Status::Fail);
        assert_eq!(grade(0.0, 1.0), Status::Pass);
    }

    #[test]
    fn eviction_policies() {
        assert_eq!(eviction_grade("volatile-ttl").0, Status::Pass);
        assert_eq!(eviction_grade("noeviction").0, Status::Warn);
        assert_eq!(eviction_grade("volatile-lru").0, Status::Warn);
        for bad in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-random",
            "x",
        ] {
            assert_eq!(eviction_grade(bad).0, Status::Fail, "{bad}");
        }
    }
}

#[cfg(test)]
mod deployment_tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut all = vec![
            ("DATABASE_URL", "postgres://localhost/x"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ];
        all.extend_from_slice(pairs);
        Settings::from_lookup(|k| {
            all.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn status(rows: &[Row], check: &str) -> Status {
        rows.iter().find(|r| r.check == check).unwrap().status
    }

    const COMPLETE: [(&str, &str); 8] = [
        ("ORIGIN_ENV", "production"),
        ("EDGE_SECRET", "a-production-edge-secret"),
        ("CLOUDFLARE_ZONE_ID", "abc123"),
        ("CLOUDFLARE_API_TOKEN", "token-value"),
        (
            "NEXT_REVALIDATE_URL",
            "https://www.example.com/api/revalidate",
        ),
        ("NEXT_REVALIDATE_SECRET", "revalidate-secret-0001"),
        (
            "SYNC_PROVIDERS",
            "5sim=5sim@https://5sim.net/v1/guest/prices",
        ),
        ("SENTRY_DSN", "https://key@o1.ingest.sentry.io/2"),
    ];

    #[test]
    fn a_complete_deployment_passes_and_each_missing_part_is_named() {
        let rows = deployment_rows(&settings(&COMPLETE));
        assert!(rows.iter().all(|r| r.status == Status::Pass), "{rows:?}");
        for (off, check, expected) in [
            ("EDGE_SECRET", "edge secret", Status::Fail),
            ("CLOUDFLARE_ZONE_ID", "purge: cloudflare", Status::Fail),
            ("SYNC_PROVIDERS", "catalog sync", Status::Fail),
            ("NEXT_REVALIDATE_URL", "purge: next.js", Status::Warn),
            ("SENTRY_DSN", "error reporting", Status::Warn),
        ] {
            let partial: Vec<(&str, &str)> = COMPLETE
                .iter()
                .copied()
                .filter(|(k, _)| {
                    *k != off
                        && !(off == "CLOUDFLARE_ZONE_ID" && *k == "CLOUDFLARE_API_TOKEN")
                        && !(off == "NEXT_REVALIDATE_URL" && *k == "NEXT_REVALIDATE_SECRET")
                })
                .collect();
            let rows = deployment_rows(&settings(&partial));
            assert_eq!(status(&rows, check), expected, "{off} off: {rows:?}");
        }
    }

    #[test]
    fn a_local_run_must_stay_on_loopback_and_an_unnamed_one_is_warned() {
        let local = deployment_rows(&settings(&[("ORIGIN_ENV", "local")]));
        assert_eq!(status(&local, "environment"), Status::Pass);
        assert_eq!(local.len(), 1, "a local run is not graded as a deployment");
        let exposed = deployment_rows(&settings(&[
            ("ORIGIN_ENV", "local"),
            ("ORIGIN_ADDR", "0.0.0.0:8080"),
        ]));
        assert_eq!(status(&exposed, "environment"), Status::Fail);
        assert_eq!(
            status(&deployment_rows(&settings(&[])), "environment"),
            Status::Warn
        );
    }
}
