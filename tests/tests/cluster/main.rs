//! The origin on a Redis Cluster of the test's own (3 masters, 3 replicas, 1 s node timeout):
//! what only a cluster can show. The ordinary suites run against a shared cluster too (`make
//! test`'s third pass); here a master is killed.
//! - `origin check` and the memory gauge read every master, not one node.
//! - Killing a master under load: catalog requests keep answering (from PostgreSQL for keys in
//!   the lost slots), sessions in those slots fail closed with 503 while sessions elsewhere keep
//!   working, rate limits fail open, and after the replica is promoted everything resumes with no
//!   origin restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{AppOptions, RedisCluster, TestApp, TestDb};
use origin::accounts::sessions::session_id;
use origin::check::{CheckArgs, Status};
use origin::seed::Scale;
use reqwest::StatusCode;

fn on_cluster(cluster: &RedisCluster) -> AppOptions {
    AppOptions::default().redis_url(cluster.url())
}

#[tokio::test]
async fn origin_check_reads_every_master() {
    let cluster = RedisCluster::start(3);
    let db = TestDb::new(None).await;
    let mut env =
        vec![("DATABASE_URL".to_owned(), db.url.clone()), ("REDIS_URL".into(), cluster.url())];
    env.extend(harness::redis_tls_env(&cluster.url()));
    let settings = origin::Settings::from_lookup(|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .expect("settings");
    let args = CheckArgs { sample_secs: 0, ..CheckArgs::default() };
    let rows = origin::check::run(&settings, &args).await;
    let memory: Vec<&str> = rows
        .iter()
        .filter(|r| r.check.starts_with("redis memory ("))
        .map(|r| r.check.as_str())
        .collect();
    assert_eq!(memory.len(), 3, "one memory row per master: {memory:?}");
    for row in rows.iter().filter(|r| r.check.starts_with("redis")) {
        assert_ne!(row.status, Status::Fail, "{}: {} ({})", row.check, row.value, row.note);
    }
    let masters: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&i| memory.iter().any(|m| m.contains(&format!(":{})", cluster.nodes[i].port))))
        .collect();
    assert_eq!(masters.len(), 3, "the rows name the three masters: {memory:?}");
}

/// Counts of a steady catalog load's answers.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    other: AtomicU64,
}

#[tokio::test]
async fn a_killed_master_fails_only_its_slots_and_the_origin_recovers() {
    let mut cluster = RedisCluster::start(3);
    let db = TestDb::new(Some(Scale::Small)).await;
    // L1 off: every catalog read asks Redis, so keys in the lost slots must come from PostgreSQL.
    // The API tier is sized so the steady load is never refused for its volume (a limiter that
    // failed closed on the lost slot would show as refusals), yet small and short enough that
    // the limiter must go back to Redis every 100 ms (its lease: 200 tokens, one 100 ms bucket)
    // and so meets the dead master during the outage (a huge tier's lease would outlast it).
    let options = on_cluster(&cluster).env("L1_CACHE", "off").env("RATE_LIMITS", "api=20000/2000");
    let app = TestApp::spawn(&db, options).await;

    // The victim: the master holding this client's rate-limit state, so the limiter must fail
    // open. One signed-in user whose session lives there, one whose session does not.
    let victim = cluster.master_of(&app.key("ratelimit:api:ip:127.0.0.1"));
    let (mut on_victim, mut elsewhere) = (None, None);
    for i in 0..24 {
        let (_, token) = app.user_with(&format!("u{i}@example.com"), 0).await;
        let key = app.key(&shared::keys::session(&session_id(&token)));
        let slot = if cluster.master_of(&key) == victim { &mut on_victim } else { &mut elsewhere };
        slot.get_or_insert(token);
        if on_victim.is_some() && elsewhere.is_some() {
            break;
        }
    }
    let (on_victim, elsewhere) = (on_victim.expect("a session there"), elsewhere.expect("one not"));
    assert_eq!(app.get_as(&on_victim, "/v1/me/balance").await.status(), StatusCode::OK);

    // A steady catalog load over many keys (several are in the victim's slots).
    let codes = |list: &'static str, body: serde_json::Value| -> Vec<String> {
        body[list].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().into()).collect()
    };
    let countries =
        codes("countries", harness::json(app.get("/v1/catalog/5sim/countries").await).await);
    let services =
        codes("services", harness::json(app.get("/v1/catalog/5sim/services").await).await);
    let paths: Vec<String> = services[..6]
        .iter()
        .flat_map(|s| {
            countries[..3].iter().map(move |c| format!("/v1/catalog/5sim/prices/{c}?services={s}"))
        })
        .chain(["/v1/catalog/providers".to_owned(), "/v1/catalog/5sim/countries".to_owned()])
        .collect();
    for p in &paths {
        assert_eq!(app.get(p).await.status(), StatusCode::OK, "{p}");
    }
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (client, base, paths) = (app.client.clone(), app.url(""), paths.clone());
            let (tally, stop) = (tally.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let r = client.get(format!("{base}{}", paths[i % paths.len()])).send().await;
                    match r.map(|r| r.status()) {
                        Ok(StatusCode::OK) => tally.ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("catalog load: {other:?}");
                            tally.other.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let failed_open = app.metric("ratelimit_fail_open_total{tier=\"api\"}").await;
    let killed_at = Instant::now();
    cluster.nodes[victim].stop();

    // While the slots are down (the node timeout is 1 s, then an election).
    let r = app.get_as(&on_victim, "/v1/me/balance").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "a lost session slot fails closed");
    assert!(r.headers().contains_key("retry-after"));
    let r = app.get_as(&elsewhere, "/v1/me/balance").await;
    assert_eq!(r.status(), StatusCode::OK, "sessions in the other slots keep working");
    let during = tally.ok.load(Ordering::Relaxed);

    // The replica takes over; the same origin, never restarted, serves the session again.
    let recovered = loop {
        let status = app.get_as(&on_victim, "/v1/me/balance").await.status();
        if status == StatusCode::OK {
            break killed_at.elapsed();
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "only 503 while failing over");
        if killed_at.elapsed() > Duration::from_secs(20) {
            eprintln!("healthy: {}", cluster.healthy());
            panic!("never recovered");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.wait_until_healthy(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, other) = (tally.ok.load(Ordering::Relaxed), tally.other.load(Ordering::Relaxed));
    eprintln!(
        "master kill: session slot back after {:.2} s; catalog {ok} ok, {other} not",
        recovered.as_secs_f64()
    );
    assert_eq!(other, 0, "every catalog request answered 200 (rate limit failed open)");
    let failed_open = app.metric("ratelimit_fail_open_total{tier=\"api\"}").await - failed_open;
    eprintln!("rate-limit decisions that failed open during the outage: {failed_open}");
    assert!(failed_open >= 1.0, "the limiter reached the dead master and failed open");
    assert!(ok > during, "the load kept going through the failover");
    // The replica had the session: the user is still signed in.
    let r = app.get_as(&on_victim, "/v1/me/balance").await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A bulk read on a cluster: its `MGET` is split per slot (Redis refuses a cross-slot `MGET`) and
/// the parts go out at once over each master's one connection, so each master reads them in one
/// or two network reads (`total_reads_processed`, which counts read events, not commands, less
/// what reading that counter costs), not one per key: a round trip per master, not per key.
#[tokio::test]
async fn a_bulk_read_costs_a_round_trip_per_master_not_per_key() {
    let cluster = RedisCluster::start(3);
    let db = TestDb::new(Some(Scale::Small)).await;
    // L1 off and no rate limit: the bulk read is the only Redis traffic of the request.
    let options = on_cluster(&cluster).env("L1_CACHE", "off").env("RATE_LIMIT", "off");
    let app = TestApp::spawn(&db, options).await;
    let services: Vec<String> =
        harness::json(app.get("/v1/catalog/5sim/services").await).await["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"].as_str().unwrap().to_owned())
            .collect();
    let countries = harness::json(app.get("/v1/catalog/5sim/countries").await).await;
    let country = countries["countries"][0]["code"].as_str().unwrap().to_owned();
    let list = &services[..services.len().min(24)];
    let path = format!("/v1/catalog/5sim/prices/{country}?services={}", list.join(","));
    let key = |s: &str| app.key(&format!("cache:prices:5sim:{country}:{s}"));
    // The first read fills Redis (the absent ones too); the second is all hits.
    let first = harness::json(app.get(&path).await).await;
    let found = first["prices"].as_array().unwrap().len();
    let masters: Vec<usize> = {
        let mut m: Vec<usize> = list.iter().map(|s| cluster.master_of(&key(s))).collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    let per_master = |i: usize| list.iter().filter(|s| cluster.master_of(&key(s)) == i).count();
    let reads = |i: usize| cluster.stat(i, "total_reads_processed");
    // What asking costs: `INFO` on a new connection is itself read events on that node (one in
    // plaintext, more with the TLS handshake), measured here the same way.
    let asking: Vec<u64> = masters
        .iter()
        .map(|&i| {
            let first = reads(i);
            reads(i) - first
        })
        .collect();
    let before: Vec<u64> = masters.iter().map(|&i| reads(i)).collect();
    let r = app.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(harness::json(r).await["prices"].as_array().unwrap().len(), found);
    let after: Vec<u64> = masters.iter().map(|&i| reads(i)).collect();
    for (n, &i) in masters.iter().enumerate() {
        let events = after[n] - before[n] - asking[n];
        eprintln!("master {i}: {} keys, {events} network reads", per_master(i));
        assert!(events <= 2, "master {i}: {events} reads for {} keys", per_master(i));
    }
    assert!(masters.len() >= 2, "the keys spread over the masters: {masters:?}");
    assert!(masters.iter().any(|&i| per_master(i) >= 5), "several keys on one master");
}
