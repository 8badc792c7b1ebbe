//! Redis trouble never breaks the catalog: with Redis killed, requests are answered from
//! PostgreSQL; when it comes back, caching resumes without a restart. A Redis that stalls costs
//! each request its `REDIS_TIMEOUT_MS`, not the stall; the invalidation subscription dropping
//! turns L1 off until it is back.

use std::time::{Duration, Instant};

use harness::{AppOptions, TestApp, TestDb, assert_error};
use origin::seed::Scale;
use reqwest::StatusCode;

use crate::common::some_price;

#[tokio::test]
async fn catalog_survives_redis_down_and_resumes_caching() {
    let db = TestDb::new(Some(Scale::Small)).await;
    // L1 off: this test is about the Redis layer underneath it.
    let options = AppOptions::default().private_redis().env("L1_CACHE", "off");
    let mut app = TestApp::spawn(&db, options).await;
    let (p, c, sv, price, _) = some_price(&db.pool, 5).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{sv}");

    // Healthy: miss then hit.
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    let q = app.db_queries();
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    assert_eq!(app.db_queries(), q, "cached while Redis is up");

    app.redis_server().stop();
    for round in 0..5 {
        let started = Instant::now();
        let resp = app.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK, "round {round} with Redis down");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["price_cents"], price);
        assert!(started.elapsed() < Duration::from_secs(2), "bounded, not hanging on Redis");
    }
    for path in [
        "/v1/catalog/providers".to_owned(),
        format!("/v1/catalog/{p}/countries"),
        format!("/v1/catalog/{p}/prices/{c}?services={sv}"),
    ] {
        assert_eq!(app.get(&path).await.status(), StatusCode::OK, "{path} with Redis down");
    }
    assert!(app.db_queries() >= q + 5, "served from PostgreSQL while Redis is down");
    assert_eq!(app.ops_get("/readyz").await.status(), StatusCode::SERVICE_UNAVAILABLE);

    app.redis_server().restart();
    // The origin reconnects by itself: within a few seconds a read is cached again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let _ = app.get(&path).await;
        let q = app.db_queries();
        assert_eq!(app.get(&path).await.status(), StatusCode::OK);
        if app.db_queries() == q {
            break;
        }
        assert!(Instant::now() < deadline, "caching did not resume after Redis came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut conn = app.redis().await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{}cache:prices:{p}:{c}:{sv}", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "the value is back in Redis");
    assert_eq!(app.ops_get("/readyz").await.status(), StatusCode::OK);
}

const SECRET: &str = "resilience-edge-secret-0123456789";

/// A Redis that accepts connections but answers nothing (`CLIENT PAUSE … ALL`, as a Redis stuck
/// in a long command or a fork does): each catalog read still answers the right price from
/// PostgreSQL, its rate-limit decision fails open, an authenticated read is refused 503, all
/// within the Redis bound, long before the stall ends; and the counters say so.
#[tokio::test]
async fn a_stalled_redis_costs_its_timeout_not_the_stall() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let options = AppOptions::default()
        .private_redis()
        .env("L1_CACHE", "off")
        .env("REDIS_TIMEOUT_MS", "200")
        // A small tier: every new address is a decision the limiter must take in Redis.
        .env("RATE_LIMITS", "api=1000/60000")
        .env("EDGE_SECRET", SECRET);
    let app = TestApp::spawn(&db, options).await;
    let (p, c, sv, price, _) = some_price(&db.pool, 8).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{sv}");
    let read = |ip: String| {
        let req = app.client.get(app.url(&path));
        req.header("x-edge-secret", SECRET).header("x-client-ip", ip).send()
    };
    assert_eq!(read("198.51.100.19".into()).await.unwrap().status(), StatusCode::OK);
    let (_, token) = app.user_with("stalled@example.com", 100).await;
    let counters = || async {
        let mut out = Vec::new();
        for name in
            ["redis_errors_total", "ratelimit_fail_open_total", "dependency_unavailable_total"]
        {
            out.push(app.metric_total(name).await);
        }
        out
    };
    let before = counters().await;

    let mut conn = app.redis().await;
    let stall_ms = 6000;
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", &stall_ms.to_string(), "ALL"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let stalled = Instant::now();
    for i in 0..3 {
        let started = Instant::now();
        let r = read(format!("198.51.100.{}", 20 + i)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "read {i} during the stall");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["price_cents"], price);
        // A few Redis bounds (the limiter, the read, the fill lock) plus the query: well under
        // the stall, which is what a missing bound would cost.
        assert!(started.elapsed() < Duration::from_secs(2), "read {i}: {:?}", started.elapsed());
    }
    assert_error(app.get_as(&token, "/v1/me/balance").await, 503, "unavailable").await;
    let after = counters().await;
    let answered = stalled.elapsed();
    assert!(answered < Duration::from_millis(stall_ms - 1000), "inside the stall: {answered:?}");
    assert!(after[0] >= before[0] + 3.0, "redis_errors_total: {before:?} → {after:?}");
    assert!(after[1] >= before[1] + 3.0, "ratelimit_fail_open_total: {before:?} → {after:?}");
    assert!(after[2] >= before[2] + 1.0, "dependency_unavailable_total: {before:?} → {after:?}");
}

/// L1 is used only while the invalidation subscription is live: when Redis drops it, L1 goes
/// off (emptied, and reads go to Redis) for as long as it cannot resubscribe, and comes back by
/// itself when it can. Seen from outside: the `cache_l1_live` gauge and where a read is answered
/// from (Redis `GET`s counted on the server).
#[tokio::test]
async fn l1_goes_off_with_its_subscription_and_back_on_with_it() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, AppOptions::default().private_redis()).await;
    app.wait_for_l1().await;
    let (p, c, sv, ..) = some_price(&db.pool, 9).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{sv}");
    // One connection for everything the test asks Redis: new ones are refused below.
    let conn = app.redis().await;
    let gets = async || {
        let mut conn = conn.clone();
        let info: String =
            redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
        harness::commandstat_calls(&info, "get") + harness::commandstat_calls(&info, "mget")
    };
    let gauge = async || app.metric("cache_l1_live").await;
    let read = async || assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    read().await;
    let before = gets().await;
    read().await;
    assert_eq!(gets().await, before, "a warm read is an L1 hit");
    assert_eq!(gauge().await, 1.0);

    // Redis drops the subscriber's connection (as a failover or a `timeout` would) and refuses
    // new ones for a while (`maxclients` below the connections already open).
    let set = |n: &str| redis::cmd("CONFIG").arg(&["SET", "maxclients", n][..]).to_owned();
    let _: () = set("1").query_async(&mut conn.clone()).await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"][..])
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(killed, 1, "the origin's one subscription");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.cache.l1_live() {
        assert!(Instant::now() < deadline, "L1 stayed on without its subscription");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gauge().await, 0.0, "the gauge follows");
    for _ in 0..3 {
        let before = gets().await;
        read().await;
        assert_eq!(gets().await, before + 1, "L1 off: each read asks Redis");
    }

    // Connections allowed again: back on by itself, and used again.
    let _: () = set("10000").query_async(&mut conn.clone()).await.unwrap();
    while !app.state.cache.l1_live() {
        assert!(Instant::now() < deadline, "the subscription never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read().await;
    let before = gets().await;
    read().await;
    assert_eq!(gets().await, before, "L1 used again");
    assert_eq!(gauge().await, 1.0);
}
