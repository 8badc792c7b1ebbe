//! The edge worker, built for wasm32 and run in workerd, in front of the real origin (real
//! PostgreSQL and Redis) or, where a test needs an origin that misbehaves, a tiny local one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use harness::edge::{EdgeWorker, Tap, TapAnswer};
use harness::{AppOptions, TestApp, TestDb, json};
use origin::seed::Scale;
use reqwest::StatusCode;
use shared::DataType;

mod deadline;
mod hostile;
mod identity;
mod purge;
mod rotation;

const SECRET: &str = "test-edge-secret-0123456789";

struct Stack {
    db: TestDb,
    app: TestApp,
    /// Between the edge and the origin: what reached the origin, counted there.
    tap: Tap,
    edge: EdgeWorker,
    http: reqwest::Client,
}

/// Origin (with `EDGE_SECRET` unless `origin_secret` is None), a tap recording what reaches it,
/// and an edge in front.
async fn stack(edge_vars: &[(&str, &str)], origin_secret: Option<&str>) -> Stack {
    let db = TestDb::new(Some(Scale::Small)).await;
    let mut env = Vec::new();
    if let Some(s) = origin_secret {
        env.push(("EDGE_SECRET".to_owned(), s.to_owned()));
    }
    let app = TestApp::spawn(&db, AppOptions { env, ..Default::default() }).await;
    let tap = Tap::start(TapAnswer::Forward(format!("http://{}", app.addr))).await;
    let mut vars: Vec<(&str, String)> = vec![
        ("ORIGIN_URL", tap.url.clone()),
        ("EDGE_SECRET", SECRET.to_owned()),
        ("CORS_ALLOWED_ORIGINS", "https://nexnum.app".to_owned()),
    ];
    for (k, v) in edge_vars {
        vars.retain(|(name, _)| name != k);
        vars.push((k, (*v).to_owned()));
    }
    let edge = EdgeWorker::start(&vars).await;
    Stack { db, app, tap, edge, http: reqwest::Client::new() }
}

impl Stack {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.edge.url(path)).send().await.expect("edge request")
    }

    async fn price_path(&self, skip: i64) -> (String, i64, String, String, String) {
        purge::price_path(&self.db, skip).await
    }

    /// Changes a price in PostgreSQL and drops its Redis key, as an admin update would.
    async fn change_price(&self, p: &str, c: &str, s: &str, cents: i64) {
        sqlx::query(
            "UPDATE prices SET price_cents = $4 FROM providers pr, countries c, services s
              WHERE prices.provider_id = pr.id AND prices.country_id = c.id AND prices.service_id = s.id
                AND pr.code = $1 AND c.code = $2 AND s.code = $3",
        )
        .bind(p)
        .bind(c)
        .bind(s)
        .bind(cents)
        .execute(&self.db.pool)
        .await
        .unwrap();
        // As the admin route does: delete the key and tell every replica (their L1s).
        let key = format!("cache:prices:{p}:{c}:{s}");
        self.app.state.cache.invalidate(&[key]).await.unwrap();
    }
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn miss_then_hit_with_policy_headers_and_304s() {
    let s = stack(&[], Some(SECRET)).await;
    let (path, price, ..) = s.price_path(0).await;
    let first = s.get(&path).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(header(&first, "cache-control"), DataType::Prices.policy().cache_control());
    assert_eq!(header(&first, "age"), "0");
    let etag = header(&first, "etag");
    assert_eq!(json(first).await["price_cents"], price);

    let queries = s.app.db_queries();
    let origin_hits = Instant::now();
    let mut hit = s.get(&path).await;
    // The store happens after the first reply (waitUntil): allow it a moment.
    while header(&hit, "x-cache") != "HIT" && origin_hits.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        hit = s.get(&path).await;
    }
    assert_eq!(header(&hit, "x-cache"), "HIT");
    assert_eq!(header(&hit, "etag"), etag);
    assert_eq!(header(&hit, "cache-control"), DataType::Prices.policy().cache_control());
    assert!(header(&hit, "age").parse::<u64>().is_ok());
    assert_eq!(json(hit).await["price_cents"], price);
    assert_eq!(s.app.db_queries(), queries, "a HIT never reaches the origin's database");
    // Nor the origin at all (its own caches would have answered without a query): counted
    // where the origin receives requests.
    let reached = s.tap.count();
    for _ in 0..10 {
        assert_eq!(header(&s.get(&path).await, "x-cache"), "HIT");
    }
    assert_eq!(s.tap.count(), reached, "ten HITs, nothing reached the origin");

    // 304 on a HIT.
    let not_modified =
        s.http.get(s.edge.url(&path)).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&not_modified, "x-cache"), "HIT");
    assert_eq!(header(&not_modified, "etag"), etag);

    // 304 on a MISS too (another key, asked with its tag).
    let (other, ..) = s.price_path(1).await;
    let tag = shared::etag::strong_etag(
        &reqwest::get(s.app.url(&other)).await.unwrap().bytes().await.unwrap(),
    );
    let miss = s.http.get(s.edge.url(&other)).header("If-None-Match", &tag).send().await.unwrap();
    assert_eq!(miss.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&miss, "x-cache"), "MISS");

    // The normalised key: unknown query parameters do not split the cache.
    let (p, c) =
        (path.split('/').nth(3).unwrap().to_owned(), path.split('/').nth(5).unwrap().to_owned());
    let bulk = format!("/v1/catalog/{p}/prices/{c}?services=whatsapp,telegram");
    assert_eq!(header(&s.get(&bulk).await, "x-cache"), "MISS");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let again = s
            .get(&format!(
                "/v1/catalog/{p}/prices/{c}?utm_source=x&services=telegram,whatsapp,telegram"
            ))
            .await;
        if header(&again, "x-cache") == "HIT" {
            break;
        }
        assert!(Instant::now() < deadline, "normalised URL never hit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A bad code is refused at the edge with the origin's JSON shape, and not forwarded.
    let reached = s.tap.count();
    let bad = s.get("/v1/catalog/NOPE/countries").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(bad).await["error"]["code"], "bad_request");
    assert_eq!(s.tap.count(), reached, "refused at the edge: the origin saw nothing");
}

#[tokio::test]
async fn stale_while_revalidate_serves_old_then_refreshed() {
    // Divisor 30: prices are fresh 1 s at the edge, then 1 s stale-while-revalidate.
    let s = stack(&[("CACHE_TTL_DIVISOR", "30")], Some(SECRET)).await;
    let (path, price, p, c, sv) = s.price_path(2).await;
    assert_eq!(header(&s.get(&path).await, "x-cache"), "MISS");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.change_price(&p, &c, &sv, price + 1).await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let stale = s.get(&path).await;
    assert_eq!(header(&stale, "x-cache"), "STALE");
    assert!(header(&stale, "age").parse::<u64>().unwrap() >= 1);
    assert_eq!(json(stale).await["price_cents"], price, "the old copy, instantly");

    // The background refresh replaced it: the next reads are fresh HITs with the new price.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let next = s.get(&path).await;
        let status = header(&next, "x-cache");
        let body = json(next).await;
        if status == "HIT" && body["price_cents"] == price + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never refreshed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stale_if_error_then_gateway_errors_when_nothing_is_stale() {
    // Divisor 30: fresh 1 s, stale-while-revalidate 1 s, stale-if-error 20 s.
    let s =
        stack(&[("CACHE_TTL_DIVISOR", "30"), ("ORIGIN_TIMEOUT_MS", "1000")], Some(SECRET)).await;
    let (path, price, ..) = s.price_path(3).await;
    assert_eq!(header(&s.get(&path).await, "x-cache"), "MISS");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Stack { app, edge, http, db: _db, tap: _tap } = s;
    app.stop().await;
    tokio::time::sleep(Duration::from_millis(2000)).await; // past fresh + stale-while-revalidate

    let resp = http.get(edge.url(&path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-cache"), "STALE");
    assert_eq!(json(resp).await["price_cents"], price);

    let resp = http.get(edge.url("/v1/catalog/providers")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "nothing stale and the origin is down");
    assert_eq!(json(resp).await["error"]["code"], "origin_unreachable");
}

#[tokio::test]
async fn origin_timeout_is_a_504() {
    // An origin that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let edge = EdgeWorker::start(&[
        ("ORIGIN_URL", format!("http://{addr}")),
        ("ORIGIN_TIMEOUT_MS", "500".into()),
        ("EDGE_INSECURE_DEV", "true".into()),
    ])
    .await;
    let started = Instant::now();
    let resp = reqwest::get(edge.url("/v1/catalog/providers")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(json(resp).await["error"]["code"], "origin_timeout");
    hold.abort();
}

#[tokio::test]
async fn per_ip_limit_answers_429_with_retry_after() {
    let s =
        stack(&[("RATE_LIMIT_PER_MINUTE", "60"), ("RATE_LIMIT_BURST", "5")], Some(SECRET)).await;
    let ask = |ip: &'static str| {
        s.http.get(s.edge.url("/v1/catalog/providers")).header("CF-Connecting-IP", ip).send()
    };
    for i in 0..5 {
        assert_eq!(ask("198.51.100.1").await.unwrap().status(), StatusCode::OK, "request {i}");
    }
    let limited = ask("198.51.100.1").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(json(limited).await["error"]["code"], "rate_limited");
    // A refused request is refused at the edge: a route the edge would forward never arrives.
    let reached = s.tap.count();
    let forwarded =
        s.http.get(s.edge.url("/v1/client-ip")).header("CF-Connecting-IP", "198.51.100.1");
    assert_eq!(forwarded.send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(s.tap.count(), reached, "the origin saw nothing of it");
    assert_eq!(
        ask("198.51.100.2").await.unwrap().status(),
        StatusCode::OK,
        "another address has its own budget"
    );
    // IPv6 clients are limited per /64.
    for i in 0..5 {
        let ip = if i % 2 == 0 { "2001:db8:1:2::1" } else { "2001:db8:1:2:ffff::9" };
        assert_eq!(ask(ip).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(ask("2001:db8:1:2:abcd::1").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // And per /48 (hardening item 5): thirty /64s of one /48, each in a /56 of its own, share
    // four /64s' burst (20); before, each /64 had a budget of its own and all thirty passed.
    let mut admitted = 0;
    for i in 0..30u32 {
        let ip = format!("2001:db8:7:{:x}::1", i << 8);
        let r = s.http.get(s.edge.url("/v1/catalog/providers")).header("CF-Connecting-IP", &ip);
        admitted += usize::from(r.send().await.unwrap().status() == StatusCode::OK);
    }
    assert_eq!(admitted, 20, "one /48's burst");
    assert_eq!(ask("2001:db8:8::1").await.unwrap().status(), StatusCode::OK, "another /48");
}

/// A fake origin answering every path with `{"providers":[]}` and a fixed header set; it keeps
/// the headers of every request it receives.
async fn fake_origin(
    extra: &'static [(&'static str, &'static str)],
) -> (String, Arc<std::sync::Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new().fallback(move |request_headers: HeaderMap| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(request_headers);
            let mut h = HeaderMap::new();
            h.insert("content-type", "application/json".parse().unwrap());
            for (k, v) in extra {
                h.append(*k, v.parse().unwrap());
            }
            (h, "{\"providers\":[]}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn hits(seen: &Arc<std::sync::Mutex<Vec<HeaderMap>>>) -> usize {
    seen.lock().unwrap().len()
}

#[tokio::test]
async fn personal_responses_are_never_cached() {
    // A Set-Cookie response, even marked public, is never stored; nor is Cache-Control: private.
    let public_with_cookie =
        &[("cache-control", "public, max-age=60, s-maxage=60"), ("set-cookie", "a=b")];
    for extra in [&public_with_cookie[..], &[("cache-control", "private, max-age=60")]] {
        let (url, seen) = fake_origin(extra).await;
        let edge = EdgeWorker::start(&[("ORIGIN_URL", url), ("EDGE_SECRET", SECRET.into())]).await;
        for _ in 0..3 {
            let r = reqwest::get(edge.url("/v1/catalog/providers")).await.unwrap();
            assert_eq!(header(&r, "x-cache"), "MISS");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(hits(&seen), 3);
        edge.stop().await;
    }
    // Non-catalog routes are forwarded and never cached.
    let s = stack(&[], Some(SECRET)).await;
    for _ in 0..2 {
        let r = s.get("/healthz").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-cache"), "BYPASS");
    }
    let unknown = s.get("/v1/nothing").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&unknown, "x-cache"), "BYPASS");
}

/// Hardening item 11: the catalog is public, so a site's cookies (or a token) neither split nor
/// bypass the edge cache, and they are never sent on to the origin with a catalog fetch.
#[tokio::test]
async fn catalog_requests_with_cookies_are_cached_and_forwarded_without_them() {
    let (url, seen) = fake_origin(&[("cache-control", "public, max-age=60, s-maxage=60")]).await;
    let edge = EdgeWorker::start(&[("ORIGIN_URL", url), ("EDGE_SECRET", SECRET.into())]).await;
    let http = reqwest::Client::new();
    let get = |name: &'static str, value: &'static str| {
        http.get(edge.url("/v1/catalog/providers")).header(name, value).send()
    };
    assert_eq!(
        header(&get("cookie", "_ga=GA1.2.3; session=abc").await.unwrap(), "x-cache"),
        "MISS"
    );
    let (mut misses, deadline) = (1, Instant::now() + Duration::from_secs(3));
    loop {
        match header(&get("authorization", "Bearer abc").await.unwrap(), "x-cache").as_str() {
            "HIT" => break,
            "MISS" => misses += 1,
            other => panic!("a credentialed catalog request was {other}"),
        }
        assert!(Instant::now() < deadline, "a credentialed catalog request never hit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = get("cookie", "other=1").await.unwrap();
    assert_eq!(header(&r, "x-cache"), "HIT", "another cookie does not split the cache");
    assert_eq!(hits(&seen), misses, "only misses reach the origin");
    for request in seen.lock().unwrap().iter() {
        assert!(request.get("cookie").is_none() && request.get("authorization").is_none());
    }
}

/// Hardening items 9 and 11: operator endpoints are never answered through the edge, and a
/// background refresh reaches the origin on behalf of the client that found the entry stale.
#[tokio::test]
async fn operator_paths_stay_private_and_refreshes_carry_the_client() {
    let (url, seen) = fake_origin(&[("cache-control", "public, max-age=1, s-maxage=1")]).await;
    let vars =
        [("ORIGIN_URL", url), ("EDGE_SECRET", SECRET.into()), ("CACHE_TTL_DIVISOR", "30".into())];
    let edge = EdgeWorker::start(&vars).await;
    let http = reqwest::Client::new();
    for path in ["/metrics", "/readyz"] {
        let r = http.get(edge.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(hits(&seen), 0, "nothing reached the origin");
    let from = |ip: &'static str| {
        http.get(edge.url("/v1/catalog/acme/prices/us/whatsapp"))
            .header("CF-Connecting-IP", ip)
            .send()
    };
    assert_eq!(header(&from("198.51.100.1").await.unwrap(), "x-cache"), "MISS");
    tokio::time::sleep(Duration::from_millis(1300)).await; // past s-maxage (1 s at divisor 30)
    assert_eq!(header(&from("198.51.100.2").await.unwrap(), "x-cache"), "STALE");
    let deadline = Instant::now() + Duration::from_secs(3);
    while hits(&seen) < 2 {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refresh = seen.lock().unwrap()[1].clone();
    assert_eq!(refresh.get("x-client-ip").map(|v| v.to_str().unwrap()), Some("198.51.100.2"));
}

#[tokio::test]
async fn cors_preflight_and_vary() {
    let s = stack(&[], Some(SECRET)).await;
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.edge.url("/v1/catalog/providers"))
        .header("Origin", "https://nexnum.app")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "if-none-match")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&pre, "access-control-allow-origin"), "https://nexnum.app");
    assert!(header(&pre, "access-control-allow-methods").contains("GET"));
    assert!(header(&pre, "access-control-allow-headers").to_lowercase().contains("if-none-match"));
    assert!(header(&pre, "vary").contains("Origin"));

    let refused = s
        .http
        .request(reqwest::Method::OPTIONS, s.edge.url("/v1/catalog/providers"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&refused, "access-control-allow-origin"), "");

    let ok = s
        .http
        .get(s.edge.url("/v1/catalog/providers"))
        .header("Origin", "https://nexnum.app")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&ok, "access-control-allow-origin"), "https://nexnum.app");
    assert!(header(&ok, "vary").contains("Origin"));
    // The page may read timings and sizes of our answers (Performance API), and knows their age.
    assert_eq!(header(&ok, "timing-allow-origin"), "https://nexnum.app");
    let date = header(&ok, "date");
    assert!(date.ends_with(" GMT") && date.len() == 29, "an IMF-fixdate: {date:?}");
    let other = s
        .http
        .get(s.edge.url("/v1/catalog/providers"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), "");
    assert_eq!(header(&other, "timing-allow-origin"), "");
    assert!(header(&other, "vary").contains("Origin"));
    assert!(header(&other, "date").ends_with(" GMT"), "a cached answer is dated too");
}

#[tokio::test]
async fn the_origin_trusts_a_forwarded_ip_only_with_the_secret() {
    let s = stack(&[], Some(SECRET)).await;
    // Through the edge, with the secret: the client address the edge saw.
    let via_edge = s
        .http
        .get(s.edge.url("/v1/client-ip"))
        .header("CF-Connecting-IP", "198.51.100.4")
        .send()
        .await
        .unwrap();
    assert_eq!(json(via_edge).await["ip"], "198.51.100.4");
    // A client-supplied X-Client-IP through the edge is dropped, not passed on.
    let forged = s
        .http
        .get(s.edge.url("/v1/client-ip"))
        .header("CF-Connecting-IP", "198.51.100.5")
        .header("X-Client-IP", "203.0.113.66")
        .send()
        .await
        .unwrap();
    assert_eq!(json(forged).await["ip"], "198.51.100.5");
    // Straight to the origin, a forged header without (or with a wrong) secret is ignored.
    let direct = s
        .app
        .client
        .get(s.app.url("/v1/client-ip"))
        .header("X-Client-IP", "203.0.113.66")
        .send()
        .await
        .unwrap();
    assert_eq!(json(direct).await["ip"], "127.0.0.1");
    let wrong = s
        .app
        .client
        .get(s.app.url("/v1/client-ip"))
        .header("X-Client-IP", "203.0.113.66")
        .header("X-Edge-Secret", "not-the-secret-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(json(wrong).await["ip"], "127.0.0.1");

    // An edge whose secret the origin does not share is not trusted either.
    let s2 = stack(&[("EDGE_SECRET", "another-secret-0123456789")], Some(SECRET)).await;
    let r = s2
        .http
        .get(s2.edge.url("/v1/client-ip"))
        .header("CF-Connecting-IP", "198.51.100.4")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["ip"], "127.0.0.1");
}

/// A fake origin that answers every request after `delay` (an empty providers list under
/// `cache_control`), counting the requests it receives.
async fn slow_origin(
    delay: Duration,
    cache_control: &'static str,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    let app = Router::new().fallback(move || {
        let count = count.clone();
        async move {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            (
                [("content-type", "application/json"), ("cache-control", cache_control)],
                "{\"providers\":[]}",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Performance item 5: concurrent misses of one key in an isolate make one origin fetch; the
/// others wait for its answer (before, every one of them went to the origin until the first
/// store landed). A leader whose answer cannot be stored releases its waiters to fetch for
/// themselves.
#[tokio::test]
async fn concurrent_misses_of_one_key_fetch_the_origin_once() {
    for (cache_control, expected) in
        [("public, max-age=60, s-maxage=60", 1..=1), ("private", 24..=24)]
    {
        let (url, seen) = slow_origin(Duration::from_millis(400), cache_control).await;
        let edge = EdgeWorker::start(&[("ORIGIN_URL", url), ("EDGE_SECRET", SECRET.into())]).await;
        let http = reqwest::Client::new();
        let answers = futures::future::join_all((0..24).map(|_| {
            let req = http.get(edge.url("/v1/catalog/acme/prices/us/whatsapp"));
            async move {
                let r = req.send().await.unwrap();
                (r.status(), header(&r, "x-cache"), r.text().await.unwrap())
            }
        }))
        .await;
        for (status, cache, body) in &answers {
            assert_eq!(*status, StatusCode::OK, "{cache_control}");
            assert_eq!(body, "{\"providers\":[]}");
            assert_eq!(cache, "MISS");
        }
        let fetched = seen.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            expected.contains(&fetched),
            "{cache_control}: {fetched} origin fetches for 24 misses"
        );
        edge.stop().await;
    }
}

/// An origin that stops answering while many requests miss one key: the one fetch times out and
/// every request that waited on it gets the same answer (a JSON 504), instead of each trying
/// the struggling origin again in turn (which would multiply its load and the clients' wait).
#[tokio::test]
async fn concurrent_misses_share_an_origin_timeout_too() {
    let (url, seen) = slow_origin(Duration::from_secs(5), "public, max-age=60, s-maxage=60").await;
    let edge = EdgeWorker::start(&[
        ("ORIGIN_URL", url),
        ("ORIGIN_TIMEOUT_MS", "600".into()),
        ("EDGE_SECRET", SECRET.into()),
    ])
    .await;
    let http = reqwest::Client::new();
    let answers = futures::future::join_all((0..16).map(|_| {
        let req = http.get(edge.url("/v1/catalog/acme/prices/us/whatsapp"));
        async move {
            let r = req.send().await.unwrap();
            (r.status(), json(r).await["error"]["code"].as_str().map(str::to_owned))
        }
    }))
    .await;
    for (status, code) in &answers {
        assert_eq!(*status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(code.as_deref(), Some("origin_timeout"));
    }
    let fetched = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(fetched, 1, "{fetched} origin fetches for 16 waiting misses");
    edge.stop().await;
}
