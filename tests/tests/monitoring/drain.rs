//! Draining, seen directly on one origin process (#22 item 1; the fleet test behind HAProxy
//! retries idempotent requests, which would hide a broken drain). After SIGTERM: `/readyz` says
//! draining at once, the public listener takes no new connection, requests already in flight
//! finish with their real answers (a purchase too, which no load balancer may retry), and the
//! process exits cleanly within its grace period.

use std::time::{Duration, Instant};

use harness::process::OriginProcess;
use harness::{TestDb, shared_redis_url};
use origin::db::Db;
use origin::seed::Scale;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let origin = OriginProcess::start(&[
        ("DATABASE_URL", db.app_url()),
        ("REDIS_URL", shared_redis_url()),
        ("REDIS_KEY_PREFIX", harness::key_prefix()),
        ("SHUTDOWN_GRACE_SECS", "8".into()),
    ])
    .await;
    let http = reqwest::Client::new();
    let password = "drain test password";
    let creds = json!({"email": "drain@example.com", "password": password});
    let r = http.post(origin.url("/v1/auth/register")).json(&creds).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let user = harness::json(r).await["id"].as_i64().unwrap();
    Db::from_pool(db.pool.clone()).credit(user, 10_000, None, None).await.unwrap();
    let r = http.post(origin.url("/v1/auth/login")).json(&creds).send().await.unwrap();
    let token = harness::json(r).await["token"].as_str().unwrap().to_owned();
    let (provider, country, service): (String, String, String) = sqlx::query_as(
        "SELECT pr.code, c.code, s.code FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
          WHERE p.stock > 0 ORDER BY 1, 2, 3 LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();

    // Two requests that will be in flight at SIGTERM: a purchase waiting on the buyer's row, and
    // a cold catalog read waiting on the prices table, both locked here.
    let mut hold = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut *hold)
        .await
        .unwrap();
    sqlx::query("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE").execute(&mut *hold).await.unwrap();
    let product = json!({"provider": provider, "country": country, "service": service});
    let purchase = tokio::spawn(
        http.post(origin.url("/v1/activations"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "drain-1")
            .json(&product)
            .send(),
    );
    let read = tokio::spawn(
        http.get(origin.url(&format!("/v1/catalog/{provider}/prices/{country}/{service}"))).send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!purchase.is_finished() && !read.is_finished(), "both wait on the locks");

    let terminated = Instant::now();
    origin.sigterm();
    // Readiness fails at once, so a load balancer stops sending.
    let mut draining = false;
    for _ in 0..50 {
        let r = http.get(origin.ops_url("/readyz")).send().await.unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(harness::json(r).await["status"], "draining");
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(draining, "/readyz never said draining");
    // New connections are not taken: refused, or closed before any answer.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let refused = fresh.get(origin.url("/healthz")).send().await;
    assert!(refused.is_err(), "a new connection was served while draining: {refused:?}");

    // The in-flight requests finish with their real answers once the locks go.
    tokio::time::sleep(Duration::from_millis(700)).await;
    hold.commit().await.unwrap();
    let bought = purchase.await.unwrap().unwrap();
    assert_eq!(bought.status(), StatusCode::CREATED, "the purchase in flight completed");
    let read = read.await.unwrap().unwrap();
    assert_eq!(read.status(), StatusCode::OK, "the read in flight completed");
    let status = origin.wait_exit(Duration::from_secs(8)).await;
    let took = terminated.elapsed();
    assert!(status.is_some_and(|s| s.success()), "exited cleanly: {status:?}");
    assert!(took < Duration::from_secs(8), "within the grace period: {took:?}");
    let (debits,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM transactions WHERE user_id = $1 AND type = 'purchase'",
    )
    .bind(user)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(debits, 1, "bought once");
}
