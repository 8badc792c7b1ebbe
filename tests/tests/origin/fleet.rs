//! Several origins sharing one Redis and one PostgreSQL, as replicas do: a mutation is seen by
//! every replica's first read after its invalidation reaches that replica (L1 on), a cold key
//! costs one load for the whole
//! fleet, and a fill-lock holder that dies does not strand its waiters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::process::OriginProcess;
use harness::{AppOptions, TestApp, TestDb, shared_redis_url};
use origin::seed::Scale;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::some_price;

async fn two_replicas(db: &TestDb) -> (TestApp, TestApp) {
    two_replicas_with(db, AppOptions::default).await
}

async fn two_replicas_with(db: &TestDb, options: impl Fn() -> AppOptions) -> (TestApp, TestApp) {
    let prefix = harness::key_prefix();
    let a = TestApp::spawn_with_prefix(db, options(), prefix.clone()).await;
    let b = TestApp::spawn_with_prefix(db, options(), prefix).await;
    // Both L1s are live (subscribed) before the test relies on them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.state.cache.l1_live() && b.state.cache.l1_live()) {
        assert!(Instant::now() < deadline, "invalidation subscribers never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (a, b)
}

#[tokio::test]
async fn a_price_change_through_one_replica_is_seen_by_the_others_once_the_message_arrives() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let (a, b) = two_replicas(&db).await;
    let (p, c, s, price, _) = some_price(&db.pool, 6).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{s}");
    // Warm B's L1 and prove it serves from it (no Redis, no PostgreSQL).
    let first: serde_json::Value = b.get(&path).await.json().await.unwrap();
    assert_eq!(first["price_cents"], price);
    let q = b.db_queries();
    let _ = b.get(&path).await;
    assert_eq!(b.db_queries(), q);
    assert!(b.state.cache.l1_live());

    // An admin changes the price through A.
    let creds = shared::types::Credentials {
        email: "admin@example.com".into(),
        password: "correct horse battery".into(),
    };
    origin::accounts::create_admin(&origin::db::Db::from_pool(db.pool.clone()), creds)
        .await
        .unwrap();
    let token: serde_json::Value = a
        .client
        .post(a.url("/v1/auth/login"))
        .json(&json!({"email": "admin@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for new_price in [price + 11, price + 12, price + 13] {
        let applied = b.state.cache.l1_generation();
        let r = a
            .client
            .put(a.url(&format!("/v1/admin/prices/{p}/{c}/{s}")))
            .bearer_auth(token["token"].as_str().unwrap())
            .json(&json!({"price_cents": new_price, "stock": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // The message is published before A answers, but B processes it on its own task: a read
        // on B can overtake it (seen on the TLS cluster, where it crosses one more socket), which
        // is the delivery window docs/architecture.md names. So: wait until B has applied an
        // invalidation (bounded well below L1's 2 s, so an expired copy cannot pass for one),
        // then B's first read must be the new price.
        let sent = Instant::now();
        while b.state.cache.l1_generation() == applied {
            assert!(
                sent.elapsed() < Duration::from_millis(500),
                "B never received the invalidation"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let seen: serde_json::Value = b.get(&path).await.json().await.unwrap();
        assert_eq!(seen["price_cents"], new_price, "B served a stale price");
        // And again from B's L1, still the new one.
        let again: serde_json::Value = b.get(&path).await.json().await.unwrap();
        assert_eq!(again["price_cents"], new_price);
    }
}

#[tokio::test]
async fn a_fleet_stampede_on_a_cold_key_loads_once() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let (a, b) = two_replicas(&db).await;
    let (p, c, s, ..) = some_price(&db.pool, 7).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{s}");
    crate::common::lists_cached(&a, &p).await;
    crate::common::lists_cached(&b, &p).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let before = a.db_queries() + b.db_queries();
    let barrier = Arc::new(tokio::sync::Barrier::new(300));
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let app = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (path, barrier) = (path.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.get(&path).await.status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        a.db_queries() + b.db_queries() - before,
        1,
        "one database load for the whole fleet"
    );
}

#[tokio::test]
async fn waiters_take_over_when_the_lock_holder_dies() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let (p, c, s, price, _) = some_price(&db.pool, 8).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{s}");
    let mut env = db.process_env();
    env.extend([("REDIS_URL", shared_redis_url()), ("REDIS_KEY_PREFIX", harness::key_prefix())]);
    let holder = OriginProcess::start(&env).await;
    let waiter = OriginProcess::start(&env).await;

    // Hold the load up: a transaction that locks prices makes the holder's query wait.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let first = tokio::spawn({
        let url = holder.url(&path);
        async move { reqwest::get(url).await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // the holder has taken the fill lock
    let started = Instant::now();
    let second = tokio::spawn({
        let url = waiter.url(&path);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.kill().await; // dies holding the lock, mid-load
    assert!(first.await.unwrap().is_err(), "the holder's client saw it die");
    blocker.rollback().await.unwrap();

    let (status, body) = second.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["price_cents"], price);
    // Within the bound: the lock's lease (2 s) plus the load, with slack for a busy machine.
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert!(waited >= Duration::from_millis(1000), "it did wait for the lease: {waited:?}");
}

/// A load slower than the fill lock's 2 s lease (the prices table locked for 3 s) is still the
/// only one: its holder renews the lease while it waits on PostgreSQL, so the other replica
/// keeps waiting for its result instead of taking the lock over and querying too.
#[tokio::test]
async fn a_load_slower_than_the_lease_is_not_run_twice() {
    let db = TestDb::new(Some(Scale::Small)).await;
    // A 3 s load outlasts the request deadline (2.5 s); the lease is what this test is about.
    let slow = || AppOptions::default().env("REQUEST_TIMEOUT_MS", "10000");
    let (a, b) = two_replicas_with(&db, slow).await;
    let (p, c, s, ..) = some_price(&db.pool, 9).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{s}");
    crate::common::lists_cached(&a, &p).await;
    crate::common::lists_cached(&b, &p).await;
    let before = a.db_queries() + b.db_queries();
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let first = a.get(&path);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        b.get(&path).await
    };
    let release = async {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        blocker.rollback().await.unwrap();
    };
    let (first, second, ()) = tokio::join!(first, second, release);
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a.db_queries() + b.db_queries() - before, 1, "one load, however slow");
}
