//! Rate-limit tiers on real Redis: limits and headers per tier, the sliding window's guarantee on
//! an adversarial pattern, the fixed window's boundary, identities, failing open.

use std::time::Duration;

use harness::{AppOptions, RedisServer, TestApp, TestDb, json};
use origin::ratelimit::Limiter;
use origin::seed::Scale;
use origin::{Settings, cache::Cache};
use reqwest::StatusCode;
use serde_json::json as j;
use shared::ratelimit::Tier;

const SHORT: &str = "api=5/2000,auth=4/2000,admin=3/2000,ops=2/1000";
const SECRET: &str = "test-edge-secret-0123456789";

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn app_with(db: &TestDb, limits: &str, redis_url: Option<String>) -> TestApp {
    TestApp::spawn(
        db,
        AppOptions {
            redis_url,
            env: vec![
                ("RATE_LIMITS".into(), limits.into()),
                ("EDGE_SECRET".into(), SECRET.into()),
            ],
        },
    )
    .await
}

/// Milliseconds on Redis's clock (the limiter's clock).
async fn redis_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    s * 1000 + us / 1000
}

#[tokio::test]
async fn production_numbers_are_served_from_the_table() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    let r = app.get("/v1/catalog/providers").await;
    assert_eq!(header(&r, "ratelimit-policy"), "\"api\";q=1000;w=60");
    assert!(
        header(&r, "ratelimit").starts_with("\"api\";r=999;t="),
        "{}",
        header(&r, "ratelimit")
    );
    let r = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&j!({"email": "a@b.c", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "ratelimit-policy"), "\"auth\";q=600;w=60");
    let r = app
        .client
        .put(app.url("/v1/admin/prices/a/b/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "ratelimit-policy"), "\"admin\";q=100;w=60");
    let r = app
        .client
        .post(app.url("/v1/ops/cache/invalidate"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "ratelimit-policy"), "\"ops\";q=10;w=10");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            header(&app.get(path).await, "ratelimit-policy"),
            "",
            "{path} is not limited"
        );
    }
}

#[tokio::test]
async fn each_tier_admits_its_limit_then_429s_then_recovers() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = app_with(&db, SHORT, None).await;
    let login = || {
        app.client
            .post(app.url("/v1/auth/login"))
            .json(&j!({"email": "a@b.c", "password": "wrong password"}))
            .send()
    };
    let admin = || {
        app.client
            .put(app.url("/v1/admin/prices/5sim/ad/whatsapp"))
            .json(&j!({"price_cents": 1, "stock": 1}))
            .send()
    };
    let ops = || {
        app.client
            .post(app.url("/v1/ops/cache/invalidate"))
            .json(&j!({"type": "prices"}))
            .send()
    };
    let api = || app.client.get(app.url("/v1/catalog/providers")).send();

    for (name, limit, window) in [
        ("api", 5u32, 2),
        ("auth", 4, 2),
        ("admin", 3, 2),
        ("ops", 2, 1),
    ] {
        for i in 0..limit {
            let r = match name {
                "api" => api().await,
                "auth" => login().await,
                "admin" => admin().await,
                _ => ops().await,
            }
            .unwrap();
            assert_ne!(
                r.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "{name} request {i}"
            );
            assert_eq!(
                header(&r, "ratelimit-policy"),
                format!("\"{name}\";q={limit};w={window}")
            );
            let remaining = limit - 1 - i;
            assert!(
                header(&r, "ratelimit").starts_with(&format!("\"{name}\";r={remaining};t=")),
                "{name}: {}",
                header(&r, "ratelimit")
            );
        }
        let r = match name {
            "api" => api().await,
            "auth" => login().await,
            "admin" => admin().await,
            _ => ops().await,
        }
        .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{name} over the limit"
        );
        let retry: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=3).contains(&retry), "{name}: Retry-After {retry}");
        assert!(header(&r, "ratelimit").starts_with(&format!("\"{name}\";r=0;t=")));
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(json(r).await["error"]["code"], "rate_limited");
    }
    // A new window admits again (window + one bucket for the sliding tiers).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(api().await.unwrap().status(), StatusCode::OK);
    assert_ne!(
        login().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_ne!(
        admin().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_ne!(ops().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

/// The limiter alone against a private Redis, with admission times read from Redis's clock.
async fn limiter(redis: &RedisServer, limits: &str) -> Limiter {
    let env = [
        ("DATABASE_URL", "postgres://unused@127.0.0.1:1/x".to_owned()),
        ("REDIS_URL", redis.url()),
        ("REDIS_TIMEOUT_MS", "200".to_owned()),
        ("RATE_LIMITS", limits.to_owned()),
    ];
    let settings =
        Settings::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    Limiter::new(Cache::new(&settings).unwrap(), settings.rate_limits.clone())
}

#[tokio::test]
async fn sliding_window_never_exceeds_the_limit_in_any_window() {
    let redis = RedisServer::start();
    let (limit, window) = (10usize, 1000u64);
    let limiter = limiter(&redis, "api=10/1000").await;
    let mut conn = redis.client().await;
    // Bursts placed around window edges, the pattern that breaks fixed windows and weighted
    // counters: 15 requests at a time at these offsets (ms on Redis's clock).
    let start = redis_now_ms(&mut conn).await;
    let start = (start / window + 1) * window; // align to a window boundary
    let mut admitted: Vec<(u64, u64)> = Vec::new(); // (lower, upper) bound of each admission time
    for offset in [
        900u64, 990, 1010, 1100, 1500, 1950, 2005, 2600, 2990, 3010, 3500,
    ] {
        let now = redis_now_ms(&mut conn).await;
        if start + offset > now {
            tokio::time::sleep(Duration::from_millis(start + offset - now)).await;
        }
        for _ in 0..15 {
            let before = redis_now_ms(&mut conn).await;
            let d = limiter.check(Tier::Api, "ip:198.51.100.9").await;
            let after = redis_now_ms(&mut conn).await;
            assert!(!d.local, "Redis is up: the shared limiter decides");
            if d.allowed {
                admitted.push((before, after));
            }
        }
    }
    assert!(
        admitted.len() >= 3 * limit,
        "it keeps admitting across windows: {}",
        admitted.len()
    );
    // For every admission, the admissions that surely happened within one window before it.
    for (i, &(_, upper)) in admitted.iter().enumerate() {
        let in_window = admitted[..=i]
            .iter()
            .filter(|&&(lower, _)| lower + window > upper)
            .count();
        assert!(
            in_window <= limit,
            "{in_window} admitted within {window} ms ending at {upper}"
        );
    }
}

#[tokio::test]
async fn fixed_window_resets_on_its_boundary() {
    let redis = RedisServer::start();
    let limiter = limiter(&redis, "ops=2/1000").await;
    let mut conn = redis.client().await;
    let now = redis_now_ms(&mut conn).await;
    let boundary = (now / 1000 + 1) * 1000;
    tokio::time::sleep(Duration::from_millis(boundary - now + 20)).await;
    assert!(limiter.check(Tier::Ops, "user:1").await.allowed);
    assert!(limiter.check(Tier::Ops, "user:1").await.allowed);
    let refused = limiter.check(Tier::Ops, "user:1").await;
    assert!(!refused.allowed);
    assert!(refused.reset_secs <= 1);
    tokio::time::sleep(Duration::from_millis(1000)).await; // just past the next boundary
    assert!(
        limiter.check(Tier::Ops, "user:1").await.allowed,
        "a new fixed window admits at once"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("ratelimit:ops:user:1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=1000).contains(&ttl), "keys expire: {ttl}");
    let ttl: i64 = {
        limiter.check(Tier::Api, "user:1").await;
        redis::cmd("PTTL")
            .arg("ratelimit:api:user:1")
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    assert!(
        (1..=63_000).contains(&ttl),
        "sliding keys expire too: {ttl}"
    );
}

#[tokio::test]
async fn identities_do_not_share_budgets_and_forged_addresses_get_none() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = app_with(&db, SHORT, None).await;
    let via_edge = |ip: &'static str| {
        app.client
            .get(app.url("/v1/catalog/providers"))
            .header("x-edge-secret", SECRET)
            .header("x-client-ip", ip)
            .send()
    };
    let forged = |ip: &'static str| {
        app.client
            .get(app.url("/v1/catalog/providers"))
            .header("x-client-ip", ip)
            .send()
    };

    for _ in 0..5 {
        assert_eq!(
            via_edge("198.51.100.1").await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        via_edge("198.51.100.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        via_edge("198.51.100.2").await.unwrap().status(),
        StatusCode::OK,
        "another client, its own budget"
    );

    // Without the secret, X-Client-IP is ignored: every forged address shares the peer's budget.
    for _ in 0..5 {
        assert_eq!(
            forged("203.0.113.1").await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        forged("203.0.113.2").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Signed-in users are limited by user, not by address.
    for email in ["u1@example.com", "u2@example.com"] {
        let r = app
            .client
            .post(app.url("/v1/auth/register"))
            .json(&j!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut tokens = Vec::new();
    for email in ["u1@example.com", "u2@example.com"] {
        let r = app
            .client
            .post(app.url("/v1/auth/login"))
            .json(&j!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        tokens.push(json(r).await["token"].as_str().unwrap().to_owned());
    }
    for _ in 0..5 {
        assert_eq!(
            app.client
                .get(app.url("/v1/me/balance"))
                .bearer_auth(&tokens[0])
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        app.client
            .get(app.url("/v1/me/balance"))
            .bearer_auth(&tokens[0])
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.client
            .get(app.url("/v1/me/balance"))
            .bearer_auth(&tokens[1])
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn fails_open_with_a_local_safety_net_and_resumes() {
    let mut redis = RedisServer::start();
    let db = TestDb::new(Some(Scale::Small)).await;
    // A long window: the local safety net refills one request per window/limit (12 s here).
    let app = app_with(&db, "api=5/60000", Some(redis.url())).await;
    let get = |ip: &'static str| {
        app.client
            .get(app.url("/v1/catalog/providers"))
            .header("x-edge-secret", SECRET)
            .header("x-client-ip", ip)
            .send()
    };
    assert_eq!(get("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    redis.stop();

    // Redis down: allowed (fail open)...
    for i in 0..5 {
        assert_eq!(
            get("198.51.100.7").await.unwrap().status(),
            StatusCode::OK,
            "fail-open request {i}"
        );
    }
    // ...but one flooding client is still stopped by the per-process limiter.
    let r = get("198.51.100.7").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(
        get("198.51.100.8").await.unwrap().status(),
        StatusCode::OK,
        "others are not"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ratelimit_fail_open_total{tier=\"api\"}")),
        "fail-open is counted"
    );

    redis.restart();
    // Shared limits resume by themselves: the count lands in Redis again.
    let mut conn = redis.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let _ = get("198.51.100.9").await.unwrap();
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("{}ratelimit:api:ip:198.51.100.9", app.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "shared limits did not resume"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn ops_invalidation_scans_by_pattern() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    // Warm a few keys of two providers.
    for path in [
        "/v1/catalog/providers",
        "/v1/catalog/5sim/countries",
        "/v1/catalog/5sim/services",
        "/v1/catalog/5sim/prices/ad?services=whatsapp,telegram,google",
        "/v1/catalog/onlinesim/countries",
    ] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    let creds = shared::types::Credentials {
        email: "ops@example.com".into(),
        password: "correct horse battery".into(),
    };
    origin::accounts::create_admin(&origin::db::Db::from_pool(db.pool.clone()), creds)
        .await
        .unwrap();
    let token = json(
        app.client
            .post(app.url("/v1/auth/login"))
            .json(&j!({"email": "ops@example.com", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap(),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let invalidate = |body: serde_json::Value| {
        app.client
            .post(app.url("/v1/ops/cache/invalidate"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    let r = invalidate(j!({"provider": "5sim"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let deleted = json(r).await["deleted"].as_u64().unwrap();
    assert!(
        deleted >= 5,
        "countries, services and the price keys of 5sim: {deleted}"
    );
    assert_eq!(app.ttl("cache:countries:5sim").await, -2);
    assert_eq!(app.ttl("cache:prices:5sim:ad:whatsapp").await, -2);
    assert!(
        app.ttl("cache:countries:onlinesim").await > 0,
        "other providers untouched"
    );
    assert!(app.ttl("cache:providers").await > 0);

    let r = invalidate(j!({"type": "countries"})).await.unwrap();
    assert_eq!(json(r).await["deleted"], 1);
    assert_eq!(app.ttl("cache:countries:onlinesim").await, -2);

    for bad in [
        j!({}),
        j!({"type": "nope"}),
        j!({"provider": "5sim", "type": "prices"}),
        j!({"provider": "BAD"}),
    ] {
        assert_eq!(
            invalidate(bad.clone()).await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn warm_hits_cost_no_redis_round_trip_per_request() {
    let redis = RedisServer::start();
    let db = TestDb::new(Some(Scale::Small)).await;
    // The production API numbers (1000 per 60 s): leases of 10 tokens.
    let app = TestApp::spawn(
        &db,
        AppOptions {
            redis_url: Some(redis.url()),
            ..Default::default()
        },
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !app.state.cache.l1_live() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let path = "/v1/catalog/5sim/countries";
    assert_eq!(app.get(path).await.status(), StatusCode::OK);
    let (evalsha, get) = (
        redis.command_calls("evalsha").await,
        redis.command_calls("get").await,
    );
    for _ in 0..50 {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(header(&r, "ratelimit").starts_with("\"api\";r="));
    }
    assert_eq!(
        redis.command_calls("get").await - get,
        0,
        "warm hits are served in process"
    );
    let checks = redis.command_calls("evalsha").await - evalsha;
    assert!(
        checks <= 6,
        "50 requests cost {checks} rate-limit round trips (leases of 10)"
    );
}

#[tokio::test]
async fn leases_across_replicas_keep_the_window_guarantee() {
    let redis = RedisServer::start();
    let (limit, window) = (300usize, 1000u64); // leases of 3 tokens
    let a = limiter(&redis, "api=300/1000").await;
    let b = limiter(&redis, "api=300/1000").await;
    let mut conn = redis.client().await;
    let start = redis_now_ms(&mut conn).await;
    let start = (start / window + 1) * window;
    let mut admitted: Vec<(u64, u64)> = Vec::new();
    for offset in [950u64, 1020, 1500, 1980, 2030] {
        let now = redis_now_ms(&mut conn).await;
        if start + offset > now {
            tokio::time::sleep(Duration::from_millis(start + offset - now)).await;
        }
        for i in 0..200 {
            let before = redis_now_ms(&mut conn).await;
            let d = if i % 2 == 0 {
                a.check(Tier::Api, "ip:1").await
            } else {
                b.check(Tier::Api, "ip:1").await
            };
            let after = redis_now_ms(&mut conn).await;
            if d.allowed {
                admitted.push((before, after));
            }
        }
    }
    assert!(admitted.len() > limit, "{}", admitted.len());
    for (i, &(_, upper)) in admitted.iter().enumerate() {
        let in_window = admitted[..=i]
            .iter()
            .filter(|&&(lower, _)| lower + window > upper)
            .count();
        assert!(
            in_window <= limit,
            "{in_window} admitted by two replicas within {window} ms"
        );
    }
}
