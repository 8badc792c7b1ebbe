//! Accounts and purchases: sliding sessions, fail-closed auth, a cached balance that mutations
//! invalidate, race-free and idempotent purchases, admin routes.

use std::sync::Arc;
use std::time::Duration;

use harness::{AppOptions, RedisServer, TestApp, TestDb, json};
use origin::db::Db;
use origin::seed::Scale;
use reqwest::StatusCode;
use serde_json::{Value, json as j};

use crate::common::{seeded, some_price};

const PASSWORD: &str = "correct horse battery";

async fn register(app: &TestApp, email: &str) -> i64 {
    let r = app
        .client
        .post(app.url("/v1/auth/register"))
        .json(&j!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    json(r).await["id"].as_i64().unwrap()
}

async fn login(app: &TestApp, email: &str) -> String {
    let r = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&j!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    json(r).await["token"].as_str().unwrap().to_owned()
}

/// A signed-in user with `cents` on their balance (credited through the ledger).
async fn user_with(app: &TestApp, db: &TestDb, email: &str, cents: i64) -> (i64, String) {
    let id = register(app, email).await;
    if cents > 0 {
        Db::from_pool(db.pool.clone())
            .credit(id, cents)
            .await
            .unwrap()
            .unwrap();
    }
    (id, login(app, email).await)
}

async fn admin(app: &TestApp, db: &TestDb) -> String {
    let creds = shared::types::Credentials {
        email: "root@nexnum.test".into(),
        password: PASSWORD.into(),
    };
    origin::accounts::create_admin(&Db::from_pool(db.pool.clone()), creds)
        .await
        .unwrap();
    login(app, "root@nexnum.test").await
}

async fn get_auth(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn buy(app: &TestApp, token: &str, product: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/v1/activations"))
        .bearer_auth(token)
        .json(product);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

async fn balance(app: &TestApp, token: &str) -> i64 {
    let r = get_auth(app, "/v1/me/balance", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    json(r).await["balance_cents"].as_i64().unwrap()
}

async fn ledger(db: &TestDb, user: i64) -> (i64, i64) {
    sqlx::query_as("SELECT u.balance_cents, COALESCE((SELECT sum(amount_cents) FROM transactions t WHERE t.user_id = u.id), 0)::bigint FROM users u WHERE u.id = $1")
        .bind(user)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn error_code(r: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let body = json(r).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sign_up_sessions_slide_and_end() {
    let s = seeded(AppOptions::default()).await;
    let app = &s.app;
    let r = app
        .client
        .post(app.url("/v1/auth/register"))
        .json(&j!({"email": "Ann@Example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let body = json(r).await;
    assert_eq!(body["email"], "ann@example.com");
    assert!(body["id"].is_i64());

    let dup = app
        .client
        .post(app.url("/v1/auth/register"))
        .json(&j!({"email": "ANN@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(dup, StatusCode::CONFLICT).await, "conflict");
    for bad in [
        j!({"email": "no-at-sign", "password": PASSWORD}),
        j!({"email": "x@y.z", "password": "short"}),
        j!({"email": "x@y.z", "password": "aaaaaaaaaaaaaa"}),
        j!({"email": "x@y.z"}),
        j!({"email": 5, "password": PASSWORD}),
    ] {
        let r = app
            .client
            .post(app.url("/v1/auth/register"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{bad}"
        );
    }
    let garbage = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(garbage, StatusCode::BAD_REQUEST).await,
        "bad_request"
    );

    let wrong = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&j!({"email": "ann@example.com", "password": "wrong password!!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(wrong, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let nobody = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&j!({"email": "nobody@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(nobody, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );

    let r = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&j!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Max-Age=900"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let body = json(r).await;
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(body["expires_in"], 900);
    assert_eq!(token.len(), 64, "256 random bits, hex");
    assert!(cookie.starts_with(&format!("session={token};")));

    // Sliding: shorten the TTL, make one authenticated request, see it back near 15 minutes.
    let key = format!("{}session:{token}", app.prefix);
    let mut conn = app.redis().await;
    let _: () = redis::cmd("EXPIRE")
        .arg(&key)
        .arg(100)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(balance(app, &token).await, 0);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((895..=900).contains(&ttl), "slid back to {ttl}");
    // The cookie authenticates too.
    let by_cookie = app
        .client
        .get(app.url("/v1/me/balance"))
        .header("cookie", format!("theme=x; session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);

    // Expired, unknown, malformed, absent: 401.
    let other = login(app, "ann@example.com").await;
    let other_key = format!("{}session:{other}", app.prefix);
    let _: () = redis::cmd("PEXPIRE")
        .arg(&other_key)
        .arg(30)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        error_code(
            get_auth(app, "/v1/me/balance", &other).await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "unauthorized"
    );
    assert_eq!(
        error_code(
            get_auth(app, "/v1/me/balance", &"0".repeat(64)).await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "unauthorized"
    );
    assert_eq!(
        error_code(
            get_auth(app, "/v1/me/balance", "not-a-token").await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "unauthorized"
    );
    let anon = app
        .client
        .get(app.url("/v1/me/balance"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(anon, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );

    // Logout ends the session.
    let out = app
        .client
        .post(app.url("/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
    assert_eq!(
        error_code(
            get_auth(app, "/v1/me/balance", &token).await,
            StatusCode::UNAUTHORIZED
        )
        .await,
        "unauthorized"
    );
}

#[tokio::test]
async fn authenticated_routes_fail_closed_without_redis() {
    let mut redis = RedisServer::start();
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(
        &db,
        AppOptions {
            redis_url: Some(redis.url()),
            ..Default::default()
        },
    )
    .await;
    let (_, token) = user_with(&app, &db, "bo@example.com", 500).await;
    assert_eq!(balance(&app, &token).await, 500);

    // Redis stalls (paused): 503, not 200 and not 401; the session survives the stall.
    let mut conn = redis.client().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = get_auth(&app, "/v1/me/balance", &token).await;
    assert_eq!(
        error_code(r, StatusCode::SERVICE_UNAVAILABLE).await,
        "unavailable"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        balance(&app, &token).await,
        500,
        "the same session works again after the stall"
    );

    // Redis gone: still 503 for every authenticated route, and the catalog still answers.
    redis.stop();
    for path in ["/v1/me/balance", "/v1/activations"] {
        assert_eq!(
            error_code(
                get_auth(&app, path, &token).await,
                StatusCode::SERVICE_UNAVAILABLE
            )
            .await,
            "unavailable",
            "{path}"
        );
    }
    let r = app
        .client
        .post(app.url("/v1/activations"))
        .bearer_auth(&token)
        .json(&j!({"provider": "5sim", "country": "ad", "service": "whatsapp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r, StatusCode::SERVICE_UNAVAILABLE).await,
        "unavailable"
    );
    assert_eq!(
        app.get("/v1/catalog/providers").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_purchases_never_overdraw() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv, price, _) = some_price(&s.db, 0).await;
    let (user, token) = user_with(&s.app, &s.db, "racer@example.com", price * 10).await;
    let product = j!({"provider": p, "country": c, "service": sv});
    let stock_before: i64 = sqlx::query_scalar("SELECT stock FROM prices p JOIN providers pr ON pr.id = p.provider_id JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id WHERE pr.code = $1 AND c.code = $2 AND s.code = $3")
        .bind(&p).bind(&c).bind(&sv).fetch_one(&s.db.pool).await.unwrap();
    assert!(
        stock_before >= 10,
        "the seed stocks this product: {stock_before}"
    );

    let app = Arc::new(s.app);
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (app, token, product, barrier) =
                (app.clone(), token.clone(), product.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                buy(&app, &token, &product, None).await.status()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::PAYMENT_REQUIRED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 10, "funds for exactly ten");
    let (bal, sum) = ledger(&s.db, user).await;
    assert_eq!(bal, 0);
    assert_eq!(sum, bal, "the ledger sums to the balance");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM activations WHERE user_id = $1")
        .bind(user)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 10);
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT number_id) FROM activations WHERE user_id = $1")
            .bind(user)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(distinct, 10, "every purchase got its own number");
    let stock_after: i64 = sqlx::query_scalar("SELECT stock FROM prices p JOIN providers pr ON pr.id = p.provider_id JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id WHERE pr.code = $1 AND c.code = $2 AND s.code = $3")
        .bind(&p).bind(&c).bind(&sv).fetch_one(&s.db.pool).await.unwrap();
    assert_eq!(stock_after, stock_before - 10);
    assert_eq!(balance(&app, &token).await, 0);
}

#[tokio::test]
async fn idempotent_retries_charge_once() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv, price, _) = some_price(&s.db, 1).await;
    let (user, token) = user_with(&s.app, &s.db, "retry@example.com", price * 5).await;
    let product = j!({"provider": p, "country": c, "service": sv});

    let first = buy(&s.app, &token, &product, Some("order-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = json(first).await;
    let again = buy(&s.app, &token, &product, Some("order-1")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json(again).await, first, "the first result, again");
    assert_eq!(ledger(&s.db, user).await.0, price * 4);

    // Twenty racing retries with one new key: one purchase.
    let app = Arc::new(s.app);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, token, product) = (app.clone(), token.clone(), product.clone());
            tokio::spawn(async move {
                let r = buy(&app, &token, &product, Some("order-2")).await;
                (r.status(), json(r).await["id"].clone())
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert_eq!(status, StatusCode::CREATED);
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), 1, "every retry saw the same activation");
    let (bal, sum) = ledger(&s.db, user).await;
    assert_eq!(bal, price * 3, "charged once for order-2");
    assert_eq!(sum, bal);

    // The same key for another product is a conflict, and charges nothing.
    let (p2, c2, sv2, ..) = some_price(&s.db, 2).await;
    let other = buy(
        &app,
        &token,
        &j!({"provider": p2, "country": c2, "service": sv2}),
        Some("order-1"),
    )
    .await;
    assert_eq!(error_code(other, StatusCode::CONFLICT).await, "conflict");
    assert_eq!(ledger(&s.db, user).await.0, price * 3);
}

#[tokio::test]
async fn mutations_invalidate_what_they_change() {
    let s = seeded(AppOptions::default()).await;
    let app = &s.app;
    let (p, c, sv, price, _) = some_price(&s.db, 3).await;
    let (user, token) = user_with(app, &s.db, "cache@example.com", 1000).await;
    let admin = admin(app, &s.db).await;

    // Warm both caches.
    assert_eq!(balance(app, &token).await, 1000);
    assert!(
        app.ttl(&format!("cache:balance:{user}")).await > 0,
        "cache:balance:{{userId}} is set"
    );
    assert!((25..=30).contains(&app.ttl(&format!("cache:balance:{user}")).await));
    let price_path = format!("/v1/catalog/{p}/prices/{c}/{sv}");
    let before = json(app.get(&price_path).await).await;

    // A purchase: the next balance read and the next price read (stock) are current.
    let r = buy(
        app,
        &token,
        &j!({"provider": p, "country": c, "service": sv}),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(balance(app, &token).await, 1000 - price);
    let after = json(app.get(&price_path).await).await;
    assert_eq!(
        after["stock"].as_i64().unwrap(),
        before["stock"].as_i64().unwrap() - 1
    );

    // An admin credit.
    let r = app
        .client
        .post(app.url(&format!("/v1/admin/users/{user}/credit")))
        .bearer_auth(&admin)
        .json(&j!({"amount_cents": 250}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert_eq!(json(r).await["balance_cents"], 1250 - price);
    assert_eq!(balance(app, &token).await, 1250 - price);
    let (bal, sum) = ledger(&s.db, user).await;
    assert_eq!(sum, bal);

    // An admin price change.
    let r = app
        .client
        .put(app.url(&format!("/v1/admin/prices/{p}/{c}/{sv}")))
        .bearer_auth(&admin)
        .json(&j!({"price_cents": 777, "stock": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let now = json(app.get(&price_path).await).await;
    assert_eq!(
        (now["price_cents"].as_i64(), now["stock"].as_i64()),
        (Some(777), Some(3))
    );
}

#[tokio::test]
async fn every_error_path_has_its_json_body() {
    let s = seeded(AppOptions::default()).await;
    let app = &s.app;
    let (p, c, sv, price, _) = some_price(&s.db, 4).await;
    let (user, token) = user_with(app, &s.db, "err@example.com", 0).await;
    let admin = admin(app, &s.db).await;
    let product = j!({"provider": p, "country": c, "service": sv});

    // 401 anonymous, 403 non-admin.
    let anon = app
        .client
        .post(app.url(&format!("/v1/admin/users/{user}/credit")))
        .json(&j!({"amount_cents": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(anon, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let not_admin = app
        .client
        .post(app.url(&format!("/v1/admin/users/{user}/credit")))
        .bearer_auth(&token)
        .json(&j!({"amount_cents": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(not_admin, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
    let not_admin = app
        .client
        .put(app.url(&format!("/v1/admin/prices/{p}/{c}/{sv}")))
        .bearer_auth(&token)
        .json(&j!({"price_cents": 1, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(not_admin, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
    // 402: no money, and nothing changed.
    assert_eq!(
        error_code(
            buy(app, &token, &product, None).await,
            StatusCode::PAYMENT_REQUIRED
        )
        .await,
        "insufficient_funds"
    );
    assert_eq!(ledger(&s.db, user).await, (0, 0));
    // 404: unknown product; unknown user to credit.
    let unknown = buy(
        app,
        &token,
        &j!({"provider": p, "country": c, "service": "no-such-service"}),
        None,
    )
    .await;
    assert_eq!(
        error_code(unknown, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let r = app
        .client
        .post(app.url("/v1/admin/users/999999/credit"))
        .bearer_auth(&admin)
        .json(&j!({"amount_cents": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::NOT_FOUND).await, "not_found");
    // 400s: bad codes, bad amounts, bad JSON, bad query.
    for (body, what) in [
        (
            j!({"provider": "BAD", "country": c, "service": sv}),
            "bad code",
        ),
        (j!({"provider": p, "country": c}), "missing field"),
        (
            j!({"provider": p, "country": c, "service": 7}),
            "wrong type",
        ),
    ] {
        assert_eq!(
            error_code(buy(app, &token, &body, None).await, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{what}"
        );
    }
    for amount in [j!(0), j!(-5), j!(1.5), j!("10"), j!(10_000_000_000i64)] {
        let r = app
            .client
            .post(app.url(&format!("/v1/admin/users/{user}/credit")))
            .bearer_auth(&admin)
            .json(&j!({"amount_cents": amount}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{amount}"
        );
    }
    let r = app
        .client
        .put(app.url(&format!("/v1/admin/prices/{p}/{c}/{sv}")))
        .bearer_auth(&admin)
        .json(&j!({"price_cents": -1, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    assert_eq!(
        error_code(
            get_auth(app, "/v1/activations?status=weird", &token).await,
            StatusCode::BAD_REQUEST
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        error_code(
            get_auth(app, "/v1/activations?cursor=abc", &token).await,
            StatusCode::BAD_REQUEST
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        error_code(
            get_auth(app, "/v1/activations?limit=0", &token).await,
            StatusCode::BAD_REQUEST
        )
        .await,
        "bad_request"
    );
    let r = app
        .client
        .post(app.url("/v1/admin/users/abc/credit"))
        .bearer_auth(&admin)
        .json(&j!({"amount_cents": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    let r = buy(app, &token, &product, Some(&"k".repeat(65))).await;
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    // 409: out of stock.
    let r = app
        .client
        .put(app.url(&format!("/v1/admin/prices/{p}/{c}/{sv}")))
        .bearer_auth(&admin)
        .json(&j!({"price_cents": price, "stock": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    Db::from_pool(s.db.pool.clone())
        .credit(user, price * 2)
        .await
        .unwrap();
    assert_eq!(
        error_code(buy(app, &token, &product, None).await, StatusCode::CONFLICT).await,
        "conflict"
    );
    assert_eq!(
        ledger(&s.db, user).await.0,
        price * 2,
        "nothing charged for a refused purchase"
    );
}

#[tokio::test]
async fn history_is_own_newest_first_paginated_and_filterable() {
    let s = seeded(AppOptions::default()).await;
    let app = &s.app;
    let (p, c, sv, price, _) = some_price(&s.db, 5).await;
    let (_, token) = user_with(app, &s.db, "hist@example.com", price * 5).await;
    let (_, other) = user_with(app, &s.db, "other@example.com", price).await;
    let product = j!({"provider": p, "country": c, "service": sv});
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            json(buy(app, &token, &product, None).await).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(
        buy(app, &other, &product, None).await.status(),
        StatusCode::CREATED
    );
    sqlx::query("UPDATE activations SET status = 'completed' WHERE id = $1")
        .bind(ids[1])
        .execute(&s.db.pool)
        .await
        .unwrap();

    let page1 = json(get_auth(app, "/v1/activations?limit=2", &token).await).await;
    let got: Vec<i64> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[4], ids[3]]);
    assert_eq!(page1["items"][0]["provider"], p);
    assert!(
        page1["items"][0]["phone_number"]
            .as_str()
            .unwrap()
            .starts_with('+')
    );
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let page2 = json(
        get_auth(
            app,
            &format!("/v1/activations?limit=2&cursor={cursor}"),
            &token,
        )
        .await,
    )
    .await;
    let got: Vec<i64> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[2], ids[1]]);
    let cursor = page2["next_cursor"].as_str().unwrap().to_owned();
    let page3 = json(
        get_auth(
            app,
            &format!("/v1/activations?limit=2&cursor={cursor}"),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(page3["items"].as_array().unwrap().len(), 1);
    assert!(page3["next_cursor"].is_null());

    let done = json(get_auth(app, "/v1/activations?status=completed", &token).await).await;
    let got: Vec<i64> = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[1]]);
    let theirs = json(get_auth(app, "/v1/activations", &other).await).await;
    assert_eq!(
        theirs["items"].as_array().unwrap().len(),
        1,
        "only the caller's own"
    );

    // The guide's indexes exist (the table is too small here for the planner to prefer them).
    let idx: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'activations' AND indexname IN ('activations_user_idx','activations_number_idx','activations_provider_activation_idx','activations_status_idx')")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(idx, 4);
    let idx: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'transactions' AND indexname IN ('transactions_user_idx','transactions_type_idx','transactions_created_at_idx')")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(idx, 3);
}
