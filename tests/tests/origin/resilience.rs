//! Redis trouble never breaks the catalog: with Redis killed, requests are answered from
//! PostgreSQL; when it comes back, caching resumes without a restart.

use std::time::{Duration, Instant};

use harness::{AppOptions, TestApp, TestDb};
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
