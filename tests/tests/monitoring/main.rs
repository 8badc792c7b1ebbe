//! Monitoring end to end, each test on its own `origin` process (its own metrics registry and
//! Sentry client): metrics that move as requests are made, `origin check` against thresholds,
//! one Sentry event per 5xx, alert rules valid and backed by real metrics.

mod drain;

mod deployment;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use harness::process::{OriginProcess, run_origin, sample};
use harness::{RedisServer, TestDb, shared_redis_url};
use origin::seed::Scale;
use reqwest::StatusCode;

fn env_for(
    db: &TestDb,
    redis_url: String,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", harness::key_prefix()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

#[tokio::test]
async fn metrics_move_with_requests() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let origin =
        OriginProcess::start(&env_for(&db, shared_redis_url(), &[("RATE_LIMITS", "api=6/60000")]))
            .await;
    let path = "/v1/catalog/5sim/prices/ad?services=whatsapp";
    let single = "/v1/catalog/5sim/countries";
    assert_eq!(
        origin.metric("cache_requests_total{type=\"countries\",result=\"miss\"}").await,
        0.0
    );

    assert_eq!(reqwest::get(origin.url(single)).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        origin.metric("cache_requests_total{type=\"countries\",result=\"miss\"}").await,
        1.0,
        "a cold request is a miss"
    );
    assert_eq!(
        origin.metric("cache_load_duration_seconds_count{type=\"countries\"}").await,
        1.0,
        "and one load"
    );
    assert_eq!(origin.metric("db_queries_total{query=\"countries\"}").await, 1.0);
    assert_eq!(reqwest::get(origin.url(single)).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        origin.metric("cache_requests_total{type=\"countries\",result=\"hit\"}").await,
        1.0,
        "the next one a hit"
    );
    assert_eq!(
        origin.metric("http_hit_path_total").await,
        2.0,
        "a catalog read spelled plainly is answered before routing, the miss and the hit"
    );
    assert_eq!(origin.metric("cache_load_duration_seconds_count{type=\"countries\"}").await, 1.0);
    // The same route spelled with an escape ("%35" is "5") is not for the hit path: the router
    // decodes and answers it, from the same entry.
    let first = reqwest::get(origin.url(single)).await.unwrap().bytes().await.unwrap();
    let escaped = reqwest::get(origin.url("/v1/catalog/%35sim/countries")).await.unwrap();
    assert_eq!(escaped.status(), StatusCode::OK);
    assert_eq!(escaped.bytes().await.unwrap(), first);
    assert_eq!(origin.metric("http_hit_path_total").await, 3.0, "only the plain spelling");
    assert_eq!(
        origin.metric("cache_requests_total{type=\"countries\",result=\"hit\"}").await,
        3.0,
        "all three were hits"
    );

    let _ = reqwest::get(origin.url(path)).await.unwrap();
    let _ = reqwest::get(origin.url(path)).await.unwrap();
    let limited = reqwest::get(origin.url(path)).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        origin.metric("ratelimit_decisions_total{tier=\"api\",outcome=\"limited\"}").await,
        1.0,
        "a 429 is a limited decision"
    );
    assert_eq!(
        origin.metric("ratelimit_decisions_total{tier=\"api\",outcome=\"allowed\"}").await,
        6.0,
        "the hit path is rate limited like every route"
    );

    let text = reqwest::get(origin.ops_url("/metrics")).await.unwrap().text().await.unwrap();
    let ok = sample(
        &text,
        "http_requests_total{route=\"/v1/catalog/{provider}/countries\",method=\"GET\",status=\"200\"}",
    );
    assert_eq!(ok, 4.0, "requests by route pattern (routed or not), never the raw path");
    assert!(!text.contains("5sim"), "no codes, keys, ids or addresses as label values");
    assert!(text.contains("http_request_duration_seconds_bucket{"), "latency is a histogram");
    assert!(sample(&text, "db_pool_max_connections") >= 1.0);
    assert!(sample(&text, "pg_connections_max") >= 1.0);
    assert!(sample(&text, "redis_memory_used_bytes") > 0.0);
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn origin_check_passes_when_healthy_and_fails_past_a_threshold() {
    let db = TestDb::new(None).await;
    let roomy = RedisServer::start_with(&["--maxmemory", "256mb"]);
    let origin = OriginProcess::start(&env_for(&db, roomy.url(), &[])).await;
    let env = env_for(&db, roomy.url(), &[]);
    let base = origin.ops_url("");

    let healthy = run_origin(&["check", "--origin", &base, "--sample-secs", "0"], &env);
    let out = stdout(&healthy);
    assert!(healthy.status.success(), "{out}\n{}", String::from_utf8_lossy(&healthy.stderr));
    for check in ["redis memory", "postgres connections", "origin 5xx rate"] {
        let line = out
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("no row for {check}:\n{out}"));
        assert!(line.contains("PASS"), "{line}");
    }

    // A threshold below the current connection count fails, with a non-zero exit.
    let strict = run_origin(&["check", "--db-connections-max-pct", "0.001", "--json"], &env);
    assert!(!strict.status.success());
    let report: serde_json::Value =
        serde_json::from_str(stdout(&strict).trim()).expect("--json is JSON");
    assert_eq!(report["status"], "FAIL");
    let row = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "postgres connections")
        .unwrap();
    assert_eq!(row["status"], "FAIL");

    // A Redis filled past 70% of a small maxmemory fails the memory check.
    let small =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    let mut conn = small.client().await;
    let chunk = "x".repeat(100_000);
    for i in 0..40 {
        let r: redis::RedisResult<()> =
            redis::cmd("SET").arg(format!("fill:{i}")).arg(&chunk).query_async(&mut conn).await;
        if r.is_err() {
            break; // noeviction: full
        }
    }
    let full = run_origin(&["check", "--json"], &env_for(&db, small.url(), &[]));
    assert!(!full.status.success());
    let report: serde_json::Value = serde_json::from_str(stdout(&full).trim()).unwrap();
    let row =
        report["checks"].as_array().unwrap().iter().find(|r| r["check"] == "redis memory").unwrap();
    assert_eq!(row["status"], "FAIL", "{row}");

    // The eviction policy: one that may drop sessions or rate-limit windows at will fails.
    for (policy, want) in [("allkeys-lru", "FAIL"), ("volatile-ttl", "PASS")] {
        let redis = RedisServer::start_with(&["--maxmemory-policy", policy]);
        let o = run_origin(&["check", "--json"], &env_for(&db, redis.url(), &[]));
        let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let checks = report["checks"].as_array().unwrap();
        let row = checks.iter().find(|r| r["check"] == "redis eviction policy").unwrap();
        assert_eq!((row["value"].as_str(), row["status"].as_str()), (Some(policy), Some(want)));
    }

    // The fleet's pools against max_connections: 9 origins x 10 exceed 80 % of a default 100.
    let fleet = |replicas: &str| {
        let o = run_origin(&["check", "--json", "--replicas", replicas], &env);
        let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let checks = report["checks"].as_array().unwrap().clone();
        checks.into_iter().find(|r| r["check"] == "fleet pool budget").unwrap()
    };
    let max: i64 = sqlx::query_scalar("SELECT current_setting('max_connections')::bigint")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let too_many = (max / 10 + 1).to_string();
    assert_eq!(fleet(&too_many)["status"], "FAIL", "{too_many} origins x 10 vs {max}");
    assert_eq!(fleet("1")["status"], "PASS");

    // Redis without maxmemory is compared with the host's memory, and says so.
    let unlimited = RedisServer::start();
    let o = run_origin(&["check", "--json"], &env_for(&db, unlimited.url(), &[]));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let row =
        report["checks"].as_array().unwrap().iter().find(|r| r["check"] == "redis memory").unwrap();
    assert!(row["note"].as_str().unwrap().contains("maxmemory is 0"), "{row}");
    assert_eq!(row["status"], "PASS");

    // A 5xx rate above the threshold fails.
    let broken_db = TestDb::new(None).await;
    let dead = format!("postgres://postgres@127.0.0.1:{}/none", harness::spare_port());
    let failing = OriginProcess::start(&[
        ("DATABASE_URL", dead),
        ("REDIS_URL", roomy.url()),
        ("DB_CONNECT_TIMEOUT_SECS", "1".into()),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(
            reqwest::get(failing.url("/v1/catalog/providers")).await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let o = run_origin(
        &["check", "--json", "--origin", &failing.ops_url(""), "--sample-secs", "0"],
        &env_for(&broken_db, roomy.url(), &[]),
    );
    assert!(!o.status.success());
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let row = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "origin 5xx rate")
        .unwrap();
    assert_eq!(row["status"], "FAIL", "{row}");
}

/// One 5xx, one Sentry event; a 4xx, none. Absence is judged after a positive signal, not a
/// sleep: a second 5xx, made after the first's event arrived, must be reported too, and events
/// leave the origin in order on one transport, so by the time the second's event is here a
/// duplicate of the first, or an event for the 400 in between, would have arrived before it.
/// Each event is told apart by its own timestamp (the origin's clock, this machine's).
/// A local stand-in for Sentry's ingest endpoint, recording each error event's message and
/// timestamp (an envelope is a header line, then item header and payload lines); its DSN.
async fn fake_sentry() -> (String, Arc<std::sync::Mutex<Vec<(String, f64)>>>) {
    let events: Arc<std::sync::Mutex<Vec<(String, f64)>>> = Arc::default();
    let seen = events.clone();
    let app = Router::new().route(
        "/api/{project}/envelope/",
        post(move |body: Bytes| {
            let seen = seen.clone();
            async move {
                let text = String::from_utf8_lossy(&body);
                let lines: Vec<&str> = text.lines().collect();
                for pair in lines.windows(2) {
                    if pair[0].contains("\"type\":\"event\"") {
                        let event: serde_json::Value = serde_json::from_str(pair[1]).unwrap();
                        let message = event["message"].as_str().unwrap_or("").to_owned();
                        let at = event["timestamp"].as_f64().unwrap_or(0.0);
                        seen.lock().unwrap().push((message, at));
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dsn = format!("http://publickey@{}/1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (dsn, events)
}

/// Now in seconds since the epoch, as Sentry timestamps events.
fn now() -> f64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_secs_f64()
}

#[tokio::test]
async fn a_forced_5xx_sends_exactly_one_sentry_event() {
    let (dsn, events) = fake_sentry().await;
    let dead = format!("postgres://postgres@127.0.0.1:{}/none", harness::spare_port());
    let origin = OriginProcess::start(&[
        ("DATABASE_URL", dead),
        ("REDIS_URL", shared_redis_url()),
        ("REDIS_KEY_PREFIX", harness::key_prefix()),
        ("DB_CONNECT_TIMEOUT_SECS", "1".into()),
        ("SENTRY_DSN", dsn),
        ("ORIGIN_ENV", "staging".into()),
    ])
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let wait_for_event_after = async |t: f64| {
        while !events.lock().unwrap().iter().any(|(_, at)| *at >= t) {
            assert!(std::time::Instant::now() < deadline, "no event after {t}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(reqwest::get(origin.url("/healthz")).await.unwrap().status(), StatusCode::OK);
    let first = now();
    let r = reqwest::get(origin.url("/v1/catalog/providers")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    wait_for_event_after(first).await;
    // Client errors are not reported.
    assert_eq!(
        reqwest::get(origin.url("/v1/catalog/BAD/countries")).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let second = now();
    let r = reqwest::get(origin.url("/v1/catalog/5sim/countries")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    wait_for_event_after(second).await;
    let events = events.lock().unwrap().clone();
    let before: Vec<_> = events.iter().filter(|(_, at)| *at < second).collect();
    assert_eq!(before.len(), 1, "the first 5xx and the 400 made one event: {events:?}");
    assert_eq!(events.len(), 2, "and the second 5xx one more: {events:?}");
    assert!(events.iter().all(|(m, _)| m == "request failed"), "{events:?}");
}

/// A panic while answering (made to happen with a fail point, on the hit path and through the
/// router) is a JSON 500 `internal`, and exactly one Sentry event each: the panic's own.
#[tokio::test]
async fn a_panic_is_a_json_500_and_exactly_one_sentry_event() {
    let (dsn, events) = fake_sentry().await;
    let db = TestDb::new(Some(Scale::Small)).await;
    let mut env = env_for(&db, shared_redis_url(), &[("FAILPOINTS", "respond::cacheable=panic")]);
    env.push(("SENTRY_DSN", dsn));
    env.push(("ORIGIN_ENV", "staging".into()));
    let origin = OriginProcess::start(&env).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let wait_for_event_after = async |t: f64| {
        while !events.lock().unwrap().iter().any(|(_, at)| *at >= t) {
            assert!(std::time::Instant::now() < deadline, "no event after {t}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // The hit path (answered before routing), then a routed one (the bulk read).
    let mut marks = Vec::new();
    for path in ["/v1/catalog/providers", "/v1/catalog/5sim/prices/ad?services=whatsapp"] {
        let at = now();
        marks.push(at);
        let r = reqwest::get(origin.url(path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal", "{path}: {body}");
        assert!(!body.to_string().contains("respond::cacheable"), "no internals in the body");
        wait_for_event_after(at).await;
    }
    // And a request that does not panic, to be sure nothing else was queued behind.
    assert_eq!(reqwest::get(origin.url("/healthz")).await.unwrap().status(), StatusCode::OK);
    let events = events.lock().unwrap().clone();
    let first: Vec<_> = events.iter().filter(|(_, at)| *at < marks[1]).collect();
    assert_eq!(first.len(), 1, "one event for the first panic: {events:?}");
    assert_eq!(events.len(), 2, "and one for the second: {events:?}");
}

/// Metric names in a PromQL expression: identifiers with an underscore, outside label
/// matchers and `by (...)` lists, that are not PromQL functions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let functions = ["histogram_quantile", "label_replace", "count_over_time", "avg_over_time"];
    let mut cleaned = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let cleaned = regex_lite_by_lists(&cleaned);
    cleaned
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.contains('_') && t.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .filter(|t| !functions.contains(t))
        .map(str::to_owned)
        .collect()
}

/// Drops `by (...)` / `without (...)` label lists.
fn regex_lite_by_lists(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find(" by (").or_else(|| rest.find(" without (")) {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let close = after.find(')').map_or(after.len(), |j| j + 1);
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn alert_rules_are_valid_and_name_only_real_metrics() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(root.join("ops/alerts.yml"))
        .output()
        .expect("promtool must be installed (make setup installs Debian's prometheus package)");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    // Each alert's own cases: the series that make it fire, with what it says.
    let cases = std::process::Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(root.join("ops"))
        .output()
        .unwrap();
    assert!(
        cases.status.success(),
        "promtool test rules ops/alerts.test.yml:\n{}{}",
        String::from_utf8_lossy(&cases.stdout),
        String::from_utf8_lossy(&cases.stderr)
    );
    // Every alert has a case, and a runbook: a section of docs/operations.md.
    let tests = std::fs::read_to_string(root.join("ops/alerts.test.yml")).unwrap();
    let runbooks = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let rules_text = std::fs::read_to_string(root.join("ops/alerts.yml")).unwrap();
    let alerts: Vec<&str> =
        rules_text.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 15, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts:")),
            "{alert} has no firing case in ops/alerts.test.yml"
        );
        let anchor = alert.to_lowercase();
        assert!(
            rules_text.contains(&format!("runbook_url: \"docs/operations.md#{anchor}\"")),
            "{alert} has no runbook_url"
        );
        assert!(
            runbooks.lines().any(|l| l.trim() == format!("### {alert}")),
            "docs/operations.md has no runbook section `### {alert}`"
        );
    }

    let mut names = BTreeSet::new();
    let rules = std::fs::read_to_string(root.join("ops/alerts.yml")).unwrap();
    // Every `expr:` (single line or the `|` block after it).
    let mut in_block = false;
    for line in rules.lines() {
        let t = line.trim();
        if let Some(e) = t.strip_prefix("expr:") {
            in_block = e.trim() == "|";
            names.extend(metric_names(e));
        } else if in_block && (t.starts_with("for:") || t.starts_with("labels:")) {
            in_block = false;
        } else if in_block {
            names.extend(metric_names(t));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("ops/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            names.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(names.len() >= 10, "{names:?}");

    // A process with some traffic behind it, including a 5xx-free and a limited request, and a
    // provider to sync (whose series exist from the start).
    let db = TestDb::new(Some(Scale::Small)).await;
    let sync = [("SYNC_PROVIDERS", "5sim=5sim@http://127.0.0.1:1/prices")];
    let origin = OriginProcess::start(&env_for(&db, shared_redis_url(), &sync)).await;
    for path in [
        "/v1/catalog/providers",
        "/v1/catalog/providers",
        "/v1/catalog/5sim/prices/ad?services=whatsapp",
    ] {
        let _ = reqwest::get(origin.url(path)).await.unwrap();
    }
    let text = reqwest::get(origin.ops_url("/metrics")).await.unwrap().text().await.unwrap();
    for name in &names {
        let present = text.lines().any(|l| {
            l.strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        });
        assert!(present, "{name} is named in ops/ but missing from /metrics");
    }
}

/// The synthesized template of a stage (`make infra` writes them; `make test` synthesizes first).
fn synthesized(stack: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../ops/cdk/cdk.out/{stack}.template.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}: synthesize the infrastructure first (make infra-synth)", path.display())
    });
    serde_json::from_str(&text).unwrap()
}

/// Every container definition of every task definition in a template.
fn resource_containers(template: &serde_json::Value) -> Vec<serde_json::Value> {
    template["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::ECS::TaskDefinition")
        .flat_map(|r| r["Properties"]["ContainerDefinitions"].as_array().unwrap().clone())
        .collect()
}

/// The first resource of `kind` in a template, to edit.
fn resource<'t>(template: &'t mut serde_json::Value, kind: &str) -> &'t mut serde_json::Value {
    template["Resources"]
        .as_object_mut()
        .unwrap()
        .values_mut()
        .find(|r| r["Type"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// The serving container (the one that runs `serve`) of a template.
fn origin_container(template: &mut serde_json::Value) -> &mut serde_json::Value {
    template["Resources"]
        .as_object_mut()
        .unwrap()
        .values_mut()
        .filter(|r| r["Type"] == "AWS::ECS::TaskDefinition")
        .flat_map(|r| r["Properties"]["ContainerDefinitions"].as_array_mut().unwrap().iter_mut())
        .find(|c| c["Command"][0] == "serve")
        .expect("the serving container")
}

/// `origin check --ecs-template`: both synthesized stages pass against this machine's
/// PostgreSQL and Redis; a template that breaks each rule fails that rule's row with its
/// numbers. The schema row reports the migration the database is at.
#[tokio::test]
async fn origin_check_grades_the_synthesized_deployment_and_reports_the_schema() {
    let db = TestDb::new(None).await;
    let roomy = RedisServer::start_with(&["--maxclients", "1000"]);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nexnum-ecs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |template: &serde_json::Value, redis: String| {
        let t = dir.join("template.json");
        std::fs::write(&t, template.to_string()).unwrap();
        let args = ["check", "--json", "--ecs-template", t.to_str().unwrap()];
        let o = run_origin(&args, &env_for(&db, redis, &[]));
        let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        report["checks"].as_array().unwrap().clone()
    };
    let row = |rows: &[serde_json::Value], name: &str| {
        rows.iter().find(|r| r["check"] == name).cloned().unwrap_or_else(|| panic!("no {name} row"))
    };
    let text = |r: &serde_json::Value| format!("{} | {}", r["value"], r["note"]);

    for stack in ["NexnumStaging", "NexnumProduction"] {
        let rows = check(&synthesized(stack), roomy.url());
        let graded: Vec<_> =
            rows.iter().filter(|r| r["check"].as_str().unwrap().starts_with("ecs ")).collect();
        assert!(graded.len() >= 10, "{stack}: {graded:?}");
        for r in graded {
            assert_eq!(r["status"], "PASS", "{stack}: {r}");
        }
    }
    let shipped = synthesized("NexnumProduction");
    let schema = row(&check(&shipped, roomy.url()), "postgres schema");
    let last = origin::MIGRATOR.iter().last().unwrap().version;
    assert_eq!(schema["status"], "PASS");
    assert_eq!(schema["value"], format!("migration {last} of {last}"));
    let with_max = |max: u32| {
        let mut t = shipped.clone();
        resource(&mut t, "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]["MaxCapacity"] =
            max.into();
        t
    };

    // Too many tasks for max_connections (read from the live server).
    let max: i64 = sqlx::query_scalar("SELECT current_setting('max_connections')::bigint")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let tasks = max / 10 + 1;
    let r = row(&check(&with_max(tasks as u32), roomy.url()), "ecs fleet pool budget");
    assert_eq!(r["status"], "FAIL", "{r}");
    assert!(
        text(&r).contains(&format!("{} ({tasks} tasks x DB_MAX_CONNECTIONS 10)", tasks * 10)),
        "{r}"
    );
    assert!(text(&r).contains(&format!("of max_connections {max}")), "{r}");

    // Past 50 tasks without PgBouncer; with it, the pools pass.
    let sixty = with_max(60);
    let r = row(&check(&sixty, roomy.url()), "ecs pgbouncer past 50 tasks");
    assert_eq!(r["status"], "FAIL", "{r}");
    assert!(text(&r).contains("60 tasks"), "{r}");
    let mut pooled = sixty.clone();
    origin_container(&mut pooled)["Environment"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"Name": "DB_POOLER", "Value": "pgbouncer-transaction"}));
    let rows = check(&pooled, roomy.url());
    assert_eq!(row(&rows, "ecs pgbouncer past 50 tasks")["status"], "PASS");
    assert_eq!(row(&rows, "ecs fleet pool budget")["status"], "PASS");

    // Redis maxclients: 60 tasks x 2 connections against a server that takes 100.
    let tight = RedisServer::start_with(&["--maxclients", "100"]);
    let r = row(&check(&pooled, tight.url()), "ecs redis clients");
    assert_eq!(r["status"], "FAIL", "{r}");
    assert!(
        text(&r).contains("120 (60 tasks x 2 per node)") && text(&r).contains("maxclients 100"),
        "{r}"
    );

    // A credential in plain environment; a stop timeout shorter than the drain.
    let mut leaky = shipped.clone();
    origin_container(&mut leaky)["Environment"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"Name": "EDGE_SECRET", "Value": "leaked-secret-value-123"}));
    let r = row(&check(&leaky, roomy.url()), "ecs secrets");
    assert_eq!(r["status"], "FAIL", "{r}");
    assert!(text(&r).contains("EDGE_SECRET in plain environment"), "{r}");
    assert!(!text(&r).contains("leaked-secret-value-123"), "the value is never printed");
    let mut hasty = shipped.clone();
    origin_container(&mut hasty)["StopTimeout"] = 15.into();
    let r = row(&check(&hasty, roomy.url()), "ecs shutdown grace");
    assert_eq!(r["status"], "FAIL", "{r}");
    assert!(text(&r).contains("SHUTDOWN_GRACE_SECS 20 vs stopTimeout 15"), "{r}");

    // The balancer checking readiness would replace the fleet in a Redis blip.
    let mut ready = shipped.clone();
    resource(&mut ready, "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]["HealthCheckPath"] =
        "/readyz".into();
    let r = row(&check(&ready, roomy.url()), "ecs lb health check");
    assert_eq!(r["status"], "FAIL", "{r}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `docs/operations.md` lists every series `/metrics` describes, with its HELP text, and
/// nothing else: a metric cannot be added, renamed or dropped without the table following.
#[tokio::test]
async fn the_metrics_table_in_the_docs_is_what_metrics_serves() {
    let db = TestDb::new(None).await;
    // A provider to sync every second from an upstream that is not there: its series exist from
    // the start, and the first (failed) run records a duration.
    let sync = [
        ("SYNC_PROVIDERS", "5sim=5sim@http://127.0.0.1:1/prices"),
        ("SYNC_INTERVAL_SECS", "1"),
        ("SYNC_ATTEMPTS", "1"),
    ];
    let origin = OriginProcess::start(&env_for(&db, shared_redis_url(), &sync)).await;
    // One request: the exporter describes a histogram or labelled counter once it has a sample.
    assert_eq!(reqwest::get(origin.url("/v1/catalog/providers")).await.unwrap().status(), 200);
    // And the L1 subscription up (its gauge is first set when it is; on a loaded machine that
    // can come after the first request): a positive signal, bounded, before comparing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = reqwest::get(origin.ops_url("/metrics")).await.unwrap().text().await.unwrap();
        let ready = text.contains("\ncache_l1_live 1") && text.contains("sync_duration_seconds");
        if ready || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let served: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| {
            let (name, help) = l.split_once(' ').unwrap_or((l, ""));
            format!("| `{name}` | {help} |")
        })
        .collect();
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md"))
            .unwrap();
    let begin = doc.find("<!-- metrics:begin -->").expect("metrics:begin marker");
    let end = doc.find("<!-- metrics:end -->").expect("metrics:end marker");
    let documented: BTreeSet<String> =
        doc[begin..end].lines().filter(|l| l.starts_with("| `")).map(str::to_owned).collect();
    let table: String = served.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(
        documented, served,
        "docs/operations.md's metrics table is stale; the served one is:\n| metric | meaning |\n|---|---|\n{table}"
    );
}

/// The lines logged for this request id (its span's `request_id` field), waiting up to 5 s for
/// at least `at_least` of them.
async fn lines_for(origin: &OriginProcess, id: &str, at_least: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<serde_json::Value> = origin
            .log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["span"]["request_id"] == id)
            .collect();
        if lines.len() >= at_least || std::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request's span (its request id on every line logged for it) is made only when the request
/// has to wait: a warm hit pays for none. A failure still logs with it: one that waited (the
/// database is down: its ERROR cause and WARN line) and one answered at once (a panic on the
/// L1 hit path: its WARN line).
#[tokio::test]
async fn every_line_logged_for_a_failed_request_carries_its_request_id() {
    let dead = format!("postgres://postgres@127.0.0.1:{}/none", harness::spare_port());
    let down = OriginProcess::start(&[
        ("DATABASE_URL", dead),
        ("REDIS_URL", shared_redis_url()),
        ("REDIS_KEY_PREFIX", harness::key_prefix()),
        ("DB_CONNECT_TIMEOUT_SECS", "1".into()),
        ("RUST_LOG", "info".into()),
    ])
    .await;
    let r = reqwest::get(down.url("/v1/catalog/providers")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let lines = lines_for(&down, &id, 2).await;
    let levels: Vec<&str> = lines.iter().filter_map(|l| l["level"].as_str()).collect();
    assert!(levels.contains(&"ERROR") && levels.contains(&"WARN"), "{lines:?}");
    let warn = lines.iter().find(|l| l["level"] == "WARN").unwrap();
    assert_eq!(warn["fields"]["path"], "/v1/catalog/providers", "{warn}");
    assert_eq!(warn["fields"]["method"], "GET", "{warn}");

    let db = TestDb::new(Some(Scale::Small)).await;
    let mut env = env_for(&db, shared_redis_url(), &[("FAILPOINTS", "respond::cacheable=panic")]);
    env.push(("RUST_LOG", "info".into()));
    let origin = OriginProcess::start(&env).await;
    let path = "/v1/catalog/providers";
    // The first read loads (and fills L1) before it panics; the second is an L1 hit, answered
    // in its first poll, without a span until its 500 needs one.
    for _ in 0..2 {
        let r = reqwest::get(origin.url(path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let lines = lines_for(&origin, &id, 1).await;
        assert!(
            lines.iter().any(|l| l["level"] == "WARN" && l["fields"]["status"] == 500),
            "{id}: {lines:?}"
        );
    }
    assert_eq!(origin.metric("cache_requests_total{type=\"providers\",result=\"hit\"}").await, 1.0);
}

/// Local mode is loud (#33 item 11): `ORIGIN_ENV=local` says at start what it relaxes, and
/// `origin check` fails it on a listener that is not loopback.
#[tokio::test]
async fn local_mode_warns_at_start_and_fails_the_check_off_loopback() {
    let db = TestDb::new(None).await;
    let mut env = env_for(&db, shared_redis_url(), &[("ORIGIN_ENV", "local")]);
    env.push(("RUST_LOG", "warn".into()));
    let (_, text) =
        harness::process::run_origin_within(&["serve"], &env, Duration::from_secs(3)).await;
    assert!(text.contains("ORIGIN_ENV=local: a development run"), "{text}");
    env.push(("ORIGIN_ADDR", "0.0.0.0:8080".into()));
    let o = run_origin(&["check", "--json"], &env);
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let row =
        report["checks"].as_array().unwrap().iter().find(|r| r["check"] == "environment").cloned();
    assert_eq!(row.map(|r| r["status"].clone()), Some("FAIL".into()), "{report}");
}
