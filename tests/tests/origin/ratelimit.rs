//! Rate-limit tiers on real Redis: limits and headers per tier, the sliding window's guarantee on
//! an adversarial pattern, the fixed window's boundary, identities, failing open.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{AppOptions, TestApp, TestDb, error_code, json};
use origin::Settings;
use origin::ratelimit::Limiter;
use origin::redis::Redis;
use origin::seed::Scale;
use reqwest::{Method, StatusCode};
use serde_json::json as j;
use shared::ratelimit::{Tier, WindowKind};

const SHORT: &str = "api=5/2000,auth=4/2000,admin=3/2000,ops=2/1000";
const SECRET: &str = "test-edge-secret-0123456789";

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn app_with(limits: &str, options: AppOptions) -> (TestDb, TestApp) {
    let db = TestDb::new(Some(Scale::Small)).await;
    let options = options.env("RATE_LIMITS", limits).env("EDGE_SECRET", SECRET);
    let app = TestApp::spawn(&db, options).await;
    (db, app)
}

/// One request of each tier's route group (method, path, body).
const TIER_REQUESTS: [(&str, Method, &str); 4] = [
    ("api", Method::GET, "/v1/catalog/providers"),
    ("auth", Method::POST, "/v1/auth/login"),
    ("admin", Method::PUT, "/v1/admin/prices/5sim/ad/whatsapp"),
    ("ops", Method::POST, "/v1/ops/cache/invalidate"),
];

async fn tier_request(app: &TestApp, tier: &str) -> reqwest::Response {
    let (_, method, path) = TIER_REQUESTS.iter().find(|(t, ..)| *t == tier).unwrap();
    let body = j!({"email": "a@b.c", "password": "wrong password", "type": "prices"});
    let req = app.client.request(method.clone(), app.url(path));
    let req = if *method == Method::GET { req } else { req.json(&body) };
    req.send().await.unwrap()
}

/// A request to the API tier as the edge sends it: for `ip`, with the shared secret.
async fn via_edge(app: &TestApp, ip: &str) -> StatusCode {
    let req = app.client.get(app.url("/v1/catalog/providers"));
    let req = req.header("x-edge-secret", SECRET).header("x-client-ip", ip);
    req.send().await.unwrap().status()
}

/// Milliseconds on Redis's clock (the limiter's clock).
async fn redis_now_ms(conn: &mut origin::redis::Conn) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    s * 1000 + us / 1000
}

#[tokio::test]
async fn production_numbers_are_served_from_the_table() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    // Two API requests inside one 3 s bucket (60 s / 20) share one lease of 10: the second one
    // reports 1000 - 2 left. Started just past a bucket boundary, so that a slow machine cannot
    // put a boundary (and a second lease) between them.
    early_in_a_fixed_window(3000).await;
    let first = tier_request(&app, "api").await;
    let r = app.get("/v1/catalog/providers").await;
    assert_eq!(header(&first, "ratelimit-policy"), "\"api\";q=1000;w=60");
    assert!(header(&r, "ratelimit").starts_with("\"api\";r=998;t="), "{}", header(&r, "ratelimit"));
    for (tier, policy) in [("auth", "q=600;w=60"), ("admin", "q=100;w=60"), ("ops", "q=10;w=10")] {
        let r = tier_request(&app, tier).await;
        assert_eq!(header(&r, "ratelimit-policy"), format!("\"{tier}\";{policy}"));
    }
    assert_eq!(header(&app.get("/healthz").await, "ratelimit-policy"), "", "health is not limited");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = app.ops_get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&r, "ratelimit-policy"), "", "{path} is not limited");
    }
}

/// Waits until just past a boundary of a fixed window `window_ms` long, so that a burst counted
/// against it falls in one window rather than straddling two (where the second window's count
/// starts again). Redis runs on this host, so `TIME` in the script reads this clock.
async fn early_in_a_fixed_window(window_ms: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let into = now % window_ms;
    if into > 20 {
        tokio::time::sleep(Duration::from_millis(window_ms - into + 5)).await;
    }
}

#[tokio::test]
async fn each_tier_admits_its_limit_then_429s_then_recovers() {
    let (_db, app) = app_with(SHORT, AppOptions::default()).await;
    for (tier, limit, window) in
        [("api", 5u32, 2u64), ("auth", 4, 2), ("admin", 3, 2), ("ops", 2, 1)]
    {
        let (.., path) = TIER_REQUESTS.iter().find(|(t, ..)| *t == tier).unwrap();
        if Tier::for_path(path).unwrap().spec().kind == WindowKind::Fixed {
            early_in_a_fixed_window(window * 1000).await;
        }
        for i in 0..limit {
            let r = tier_request(&app, tier).await;
            assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{tier} request {i}");
            assert_eq!(header(&r, "ratelimit-policy"), format!("\"{tier}\";q={limit};w={window}"));
            let state = format!("\"{tier}\";r={};t=", limit - 1 - i);
            assert!(header(&r, "ratelimit").starts_with(&state), "{}", header(&r, "ratelimit"));
        }
        let r = tier_request(&app, tier).await;
        let retry: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((1..=3).contains(&retry), "{tier}: Retry-After {retry}");
        assert!(header(&r, "ratelimit").starts_with(&format!("\"{tier}\";r=0;t=")));
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(error_code(r, StatusCode::TOO_MANY_REQUESTS).await, "rate_limited");
    }
    // A new window admits again (window + one bucket for the sliding tiers).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for (tier, ..) in TIER_REQUESTS {
        let status = tier_request(&app, tier).await.status();
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{tier} after the window");
    }
}

/// The back end this pass runs on (`REDIS_URL`: one server, over TLS, or a cluster), under a key
/// prefix of the test's own: the limiter's algorithms need no private server.
struct Backend {
    settings: Settings,
}

impl Backend {
    fn new(limits: &str) -> Backend {
        let url = harness::shared_redis_url();
        let mut env = vec![
            ("DATABASE_URL".to_owned(), "postgres://unused@127.0.0.1:1/x".to_owned()),
            ("REDIS_URL".to_owned(), url.clone()),
            ("REDIS_TIMEOUT_MS".to_owned(), "200".to_owned()),
            ("RATE_LIMITS".to_owned(), limits.to_owned()),
            ("REDIS_KEY_PREFIX".to_owned(), harness::key_prefix()),
        ];
        env.extend(harness::redis_tls_env(&url));
        let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        Backend { settings: Settings::from_lookup(lookup).unwrap() }
    }

    /// A limiter (an origin replica's) on this back end.
    fn limiter(&self) -> Limiter {
        let redis = Redis::from_settings(&self.settings).unwrap();
        Limiter::new(redis, self.settings.rate_limits.clone())
    }

    /// A plain connection, for Redis's clock and for reading keys (prefix added by the caller).
    fn conn(&self) -> origin::redis::Conn {
        let tls = &self.settings.redis_tls;
        use secrecy::ExposeSecret;
        let url = self.settings.redis_url.expose_secret();
        origin::redis::Conn::open_lazy(url, tls, Duration::from_secs(2)).unwrap()
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.redis_key_prefix)
    }
}

/// Bursts of `per_burst` checks at each offset (ms past a window boundary, on Redis's clock),
/// alternating between `limiters`; returns (lower, upper) bounds of each admission's time.
async fn admissions(
    backend: &Backend,
    limiters: &[Limiter],
    offsets: &[u64],
    per_burst: usize,
) -> Vec<(u64, u64)> {
    let mut conn = backend.conn();
    let start = (redis_now_ms(&mut conn).await / 1000 + 1) * 1000;
    let mut admitted = Vec::new();
    for offset in offsets {
        let now = redis_now_ms(&mut conn).await;
        tokio::time::sleep(Duration::from_millis((start + offset).saturating_sub(now))).await;
        for i in 0..per_burst {
            let before = redis_now_ms(&mut conn).await;
            let d = limiters[i % limiters.len()].check(Tier::Api, "ip:198.51.100.9").await;
            let after = redis_now_ms(&mut conn).await;
            assert!(!d.local, "Redis is up: the shared limiter decides");
            if d.allowed {
                admitted.push((before, after));
            }
        }
    }
    admitted
}

/// For every admission, the admissions that surely happened within one window before it.
fn assert_window_bound(admitted: &[(u64, u64)], limit: usize, window: u64) {
    for (i, &(_, upper)) in admitted.iter().enumerate() {
        let within = admitted[..=i].iter().filter(|&&(lower, _)| lower + window > upper).count();
        assert!(within <= limit, "{within} admitted within {window} ms ending at {upper}");
    }
}

#[tokio::test]
async fn sliding_window_never_exceeds_the_limit_in_any_window() {
    let backend = Backend::new("api=10/1000");
    // Bursts around window edges: the pattern that breaks fixed windows and weighted counters.
    let offsets = [900, 990, 1010, 1100, 1500, 1950, 2005, 2600, 2990, 3010, 3500];
    let admitted = admissions(&backend, &[backend.limiter()], &offsets, 15).await;
    assert!(admitted.len() >= 30, "it keeps admitting across windows: {}", admitted.len());
    assert_window_bound(&admitted, 10, 1000);
}

#[tokio::test]
async fn leases_across_replicas_keep_the_window_guarantee() {
    let backend = Backend::new("api=300/1000");
    let (a, b) = (backend.limiter(), backend.limiter()); // two replicas, leases of 3
    let admitted = admissions(&backend, &[a, b], &[950, 1020, 1500, 1980, 2030], 200).await;
    assert!(admitted.len() > 300, "{}", admitted.len());
    assert_window_bound(&admitted, 300, 1000);
}

#[tokio::test]
async fn fixed_window_resets_on_its_boundary() {
    let backend = Backend::new("ops=2/1000");
    let limiter = backend.limiter();
    let mut conn = backend.conn();
    let now = redis_now_ms(&mut conn).await;
    tokio::time::sleep(Duration::from_millis((now / 1000 + 1) * 1000 - now + 20)).await;
    assert!(limiter.check(Tier::Ops, "user:1").await.allowed);
    assert!(limiter.check(Tier::Ops, "user:1").await.allowed);
    let refused = limiter.check(Tier::Ops, "user:1").await;
    assert!(!refused.allowed && refused.reset_secs <= 1);
    tokio::time::sleep(Duration::from_millis(1000)).await; // just past the next boundary
    assert!(limiter.check(Tier::Ops, "user:1").await.allowed, "a new window admits at once");
    limiter.check(Tier::Api, "user:1").await;
    for (key, max) in [("ratelimit:ops:user:1", 1000), ("ratelimit:api:user:1", 63_000)] {
        let ttl: i64 =
            redis::cmd("PTTL").arg(backend.key(key)).query_async(&mut conn).await.unwrap();
        assert!((1..=max).contains(&ttl), "{key} expires: {ttl}");
    }
}

#[tokio::test]
async fn each_address_has_its_budget_and_forged_addresses_get_none() {
    let (_db, app) = app_with(SHORT, AppOptions::default()).await;
    for _ in 0..5 {
        assert_eq!(via_edge(&app, "198.51.100.1").await, StatusCode::OK);
    }
    assert_eq!(via_edge(&app, "198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(via_edge(&app, "198.51.100.2").await, StatusCode::OK, "another client");
    // Without the secret, X-Client-IP is ignored: every forged address shares the peer's budget.
    let forged = |ip: &'static str| {
        app.client.get(app.url("/v1/catalog/providers")).header("x-client-ip", ip).send()
    };
    for _ in 0..5 {
        assert_eq!(forged("203.0.113.1").await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(forged("203.0.113.2").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_signed_in_user_is_limited_across_addresses() {
    let (_db, app) = app_with("api=5/2000,auth=100/2000", AppOptions::default()).await;
    let (_, token) = app.user_with("u1@example.com", 0).await;
    let from = |ip: String| {
        let req = app.client.get(app.url("/v1/me/balance")).bearer_auth(&token);
        req.header("x-edge-secret", SECRET).header("x-client-ip", ip).send()
    };
    for i in 0..5 {
        assert_eq!(from(format!("198.51.100.{i}")).await.unwrap().status(), StatusCode::OK);
    }
    let r = from("203.0.113.9".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the user's budget holds everywhere");
    assert_eq!(via_edge(&app, "203.0.113.9").await, StatusCode::OK, "the address has its own");
}

#[tokio::test]
async fn fails_open_with_a_local_safety_net_and_resumes() {
    // A long window: the local safety net refills one request per window/limit (12 s here).
    let (_db, mut app) = app_with("api=5/60000", AppOptions::default().private_redis()).await;
    assert_eq!(via_edge(&app, "198.51.100.1").await, StatusCode::OK);
    // The registry is the process's (other tests count into it too), so what is checked is
    // that it moved during this outage, not that the series exists: it is registered at 0.
    let fail_open = |text: String| -> f64 {
        let line = text.lines().find(|l| l.starts_with("ratelimit_fail_open_total{tier=\"api\"}"));
        line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    let before = fail_open(app.ops_get("/metrics").await.text().await.unwrap());
    app.redis_server().stop();
    for i in 0..5 {
        assert_eq!(via_edge(&app, "198.51.100.7").await, StatusCode::OK, "fail-open request {i}");
    }
    // ...but one flooding client is still stopped by the per-process limiter, and only it.
    let r = app
        .client
        .get(app.url("/v1/catalog/providers"))
        .header("x-edge-secret", SECRET)
        .header("x-client-ip", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(via_edge(&app, "198.51.100.8").await, StatusCode::OK, "others are not");
    let after = fail_open(app.ops_get("/metrics").await.text().await.unwrap());
    assert!(after >= before + 6.0, "every decision of the outage counted: {before} → {after}");

    app.redis_server().restart();
    // Shared limits resume by themselves: the count lands in Redis again.
    let key = format!("{}ratelimit:api:ip:198.51.100.9", app.prefix);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        via_edge(&app, "198.51.100.9").await;
        let mut conn = app.redis().await;
        if redis::cmd("EXISTS").arg(&key).query_async::<bool>(&mut conn).await.unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "shared limits did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn ops_invalidation_scans_by_pattern() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    for path in [
        "/v1/catalog/providers",
        "/v1/catalog/5sim/countries",
        "/v1/catalog/5sim/services",
        "/v1/catalog/5sim/prices/ad?services=whatsapp,telegram,google",
        "/v1/catalog/onlinesim/countries",
    ] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    let token = app.admin("ops@example.com").await;
    let path = "/v1/ops/cache/invalidate";
    let r = app.post_json_as(&token, path, &j!({"provider": "5sim"})).await;
    let deleted = json(r).await["deleted"].as_u64().unwrap();
    assert!(deleted >= 5, "countries, services and the price keys of 5sim: {deleted}");
    assert_eq!(app.ttl("cache:countries:5sim").await, -2);
    assert_eq!(app.ttl("cache:prices:5sim:ad:whatsapp").await, -2);
    assert!(app.ttl("cache:countries:onlinesim").await > 0, "other providers untouched");
    assert!(app.ttl("cache:providers").await > 0);
    let r = app.post_json_as(&token, path, &j!({"type": "countries"})).await;
    assert_eq!(json(r).await["deleted"], 1);
    assert_eq!(app.ttl("cache:countries:onlinesim").await, -2);
    for bad in [
        j!({}),
        j!({"type": "nope"}),
        j!({"provider": "5sim", "type": "prices"}),
        j!({"provider": "BAD"}),
    ] {
        let r = app.post_json_as(&token, path, &bad).await;
        assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request", "{bad}");
    }
}

#[tokio::test]
async fn warm_hits_cost_no_redis_round_trip_per_request() {
    let db = TestDb::new(Some(Scale::Small)).await;
    // The production API numbers (1000 per 60 s): leases of 10 tokens.
    let app = TestApp::spawn(&db, AppOptions::default().private_redis()).await;
    app.wait_for_l1().await;
    let redis = app.private_redis.as_ref().unwrap();
    let path = "/v1/catalog/5sim/countries";
    assert_eq!(app.get(path).await.status(), StatusCode::OK);
    let (evalsha, get) = (redis.command_calls("evalsha").await, redis.command_calls("get").await);
    for _ in 0..50 {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(header(&r, "ratelimit").starts_with("\"api\";r="));
    }
    assert_eq!(redis.command_calls("get").await - get, 0, "warm hits are served in process");
    let checks = redis.command_calls("evalsha").await - evalsha;
    assert!(checks <= 6, "50 requests cost {checks} rate-limit round trips (leases of 10)");
}
