//! A price change reaches the edge (#24 item 2): the origin purges the change's cache tags through
//! the worker's purge route (`EDGE_PURGE_URL`), so the next read through the edge answers the new
//! price within a second instead of after `s-maxage` + stale-while-revalidate; and a burst of
//! reads right after the purge costs the origin one load.

use std::time::{Duration, Instant};

use harness::edge::{EdgeWorker, Tap, TapAnswer};
use harness::{AppOptions, TestApp, TestDb, json};
use origin::seed::Scale;
use reqwest::StatusCode;

use crate::{SECRET, header};

struct Purging {
    db: TestDb,
    app: TestApp,
    tap: Tap,
    edge: EdgeWorker,
}

/// Origin (purging the edge), a tap counting what reaches it, the edge in front.
async fn purging_stack() -> Purging {
    let db = TestDb::new(Some(Scale::Small)).await;
    let edge_port = harness::spare_port();
    let options = AppOptions::default()
        .env("EDGE_SECRET", SECRET)
        .env("EDGE_PURGE_URL", &format!("http://127.0.0.1:{edge_port}/__edge/purge"))
        .env("PURGE_BATCH_MS", "50");
    let app = TestApp::spawn(&db, options).await;
    let tap = Tap::start(TapAnswer::Forward(format!("http://{}", app.addr))).await;
    let edge = EdgeWorker::start_on(
        edge_port,
        &[
            ("ORIGIN_URL", tap.url.clone()),
            ("EDGE_SECRET", SECRET.to_owned()),
            // The burst below comes from one address.
            ("RATE_LIMIT_BURST", "5000".to_owned()),
        ],
    )
    .await;
    Purging { db, app, tap, edge }
}

/// A seeded price's path, its price and its codes.
pub(crate) async fn price_path(db: &TestDb, skip: i64) -> (String, i64, String, String, String) {
    let (p, c, s, price, _) = harness::some_price(&db.pool, skip).await;
    (format!("/v1/catalog/{p}/prices/{c}/{s}"), price, p, c, s)
}

#[tokio::test]
async fn a_price_change_reaches_the_edge_within_a_second_and_costs_one_load() {
    let s = purging_stack().await;
    let admin = s.app.admin("root@nexnum.test").await;
    let http = reqwest::Client::new();
    let (path, price, p, c, sv) = price_path(&s.db, 4).await;
    let bulk = format!("/v1/catalog/{p}/prices/{c}?services={sv}");
    for warm in [&path, &bulk] {
        let deadline = Instant::now() + Duration::from_secs(3);
        while header(&http.get(s.edge.url(warm)).send().await.unwrap(), "x-cache") != "HIT" {
            assert!(Instant::now() < deadline, "{warm} never became a HIT");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The admin changes the price at the origin; the edge is told.
    let admin_path = format!("/v1/admin/prices/{p}/{c}/{sv}");
    let body = serde_json::json!({"price_cents": price + 7, "stock": 9});
    let r = s.app.put_json_as(&admin, &admin_path, &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let changed = Instant::now();
    loop {
        let r = http.get(s.edge.url(&path)).send().await.unwrap();
        if json(r).await["price_cents"] == price + 7 {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "the edge still had the old price");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let seen = changed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let bulk_now = json(http.get(s.edge.url(&bulk)).send().await.unwrap()).await;
        if bulk_now["prices"][0]["price_cents"] == price + 7 {
            break;
        }
        assert!(Instant::now() < deadline, "the bulk answer kept the old price");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!("price change to the edge: {} ms", seen.as_millis());

    // Once more, sold out this time (a hard purge: a price change of a product still on sale is a
    // soft one, whose next reads are the old copy while it refreshes), then a burst of 1 000
    // reads at once right after the purge: one origin load.
    let body = serde_json::json!({"price_cents": price + 8, "stock": 0});
    assert_eq!(s.app.put_json_as(&admin, &admin_path, &body).await.status(), StatusCode::OK);
    // The purge's own line (`"forgotten"`), not its access line: two purges, two such lines.
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.edge.lines().iter().filter(|l| l.contains("\"forgotten\"")).nth(1).is_none() {
        assert!(Instant::now() < deadline, "the second purge never reached the edge");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (reached, queries) = (s.tap.count(), s.app.db_queries());
    let burst = reqwest::Client::builder().pool_max_idle_per_host(1000).build().unwrap();
    let answers = futures::future::join_all((0..1000).map(|_| {
        let req = burst.get(s.edge.url(&path));
        async move {
            let r = req.send().await.map_err(|e| e.to_string())?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body["price_cents"].as_i64()))
        }
    }))
    .await;
    let new_price = Ok((StatusCode::OK, Some(price + 8)));
    let ok = answers.iter().filter(|a| **a == new_price).count();
    assert_eq!(
        ok,
        1000,
        "every answer the new price: {:?}",
        answers.iter().find(|a| **a != new_price)
    );
    let fetched: Vec<_> =
        s.tap.seen()[reached..].iter().filter(|r| r.path == path).cloned().collect();
    assert_eq!(fetched.len(), 1, "one origin fetch for 1000 reads after the purge");
    assert_eq!(s.app.db_queries() - queries, 1, "and one database load behind it");
    let now = json(http.get(s.edge.url(&path)).send().await.unwrap()).await;
    assert_eq!(now["price_cents"], price + 8);
    s.edge.stop().await;
}

#[tokio::test]
async fn the_purge_route_answers_only_the_edge_secret() {
    let s = purging_stack().await;
    // No connection reuse: a request refused before its body was read closes its connection.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let purge = |secret: Option<&'static str>, body: &'static str| {
        let mut req = http
            .post(s.edge.url("/__edge/purge"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(secret) = secret {
            req = req.header("x-edge-secret", secret);
        }
        req.send()
    };
    let good = r#"{"tags":["catalog"]}"#;
    for secret in [None, Some("not-the-edge-secret-0000")] {
        let r = purge(secret, good).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{secret:?}");
    }
    for bad in [r#"{"tags":[]}"#, r#"{"tags":["Bad Tag"]}"#, "not json", r#"{"tags":["a"],"x":1}"#]
    {
        let r = purge(Some(SECRET), bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(purge(Some(SECRET), good).await.unwrap().status(), StatusCode::OK);
    assert_eq!(s.tap.count(), 0, "a purge never reaches the origin");
    s.edge.stop().await;
}

/// The purge route is rate-limited before its secret is checked (#33 item 9): 400 guesses at
/// the secret from one address meet the address's budget (`RATE_LIMIT_BURST` 100) and are
/// answered 429 past it. Before, all 400 were answered 404, as fast as they came.
#[tokio::test]
async fn guesses_at_the_purge_secret_meet_the_rate_limit() {
    let origin = harness::TestDb::new(None).await;
    let app = TestApp::spawn(&origin, AppOptions::default().env("EDGE_SECRET", SECRET)).await;
    let edge = EdgeWorker::start(&[
        ("ORIGIN_URL", format!("http://{}", app.addr)),
        ("EDGE_SECRET", SECRET.to_owned()),
        ("RATE_LIMIT_BURST", "100".to_owned()),
    ])
    .await;
    // No connection reuse: a request refused before its body was read closes its connection.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..400 {
        let r = http
            .post(edge.url("/__edge/purge"))
            .header("x-edge-secret", format!("guess-{i:016}"))
            .header("content-type", "application/json")
            .body(r#"{"tags":["catalog"]}"#)
            .send()
            .await
            .unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    eprintln!("400 guesses at the purge secret: {statuses:?}");
    assert!(statuses.get(&429).copied().unwrap_or(0) >= 250, "{statuses:?}");
    assert!(statuses.get(&404).copied().unwrap_or(0) <= 110, "{statuses:?}");
    assert!(!statuses.contains_key(&200), "no guess is right");
    edge.stop().await;
}

/// A soft purge through the worker's route (#33 item 15: no test sent one; a route ignoring
/// `"soft": true` passed them all): the next read is the old answer `STALE` at once while one
/// refresh fetches the new one, which the read after serves.
#[tokio::test]
async fn a_soft_purge_through_the_route_serves_stale_while_it_refreshes() {
    let s = crate::stack(&[], Some(SECRET)).await;
    let (path, price, p, c, sv) = price_path(&s.db, 6).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while header(&s.get(&path).await, "x-cache") != "HIT" {
        assert!(Instant::now() < deadline, "{path} never became a HIT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.change_price(&p, &c, &sv, price + 11).await;
    let r = s
        .http
        .post(s.edge.url("/__edge/purge"))
        .header("x-edge-secret", SECRET)
        .json(&serde_json::json!({"tags": [format!("prices:{p}:{c}")], "soft": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first = s.get(&path).await;
    assert_eq!(header(&first, "x-cache"), "STALE", "soft: the old copy at once");
    assert_eq!(json(first).await["price_cents"], price, "the old price, while it refreshes");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = s.get(&path).await;
        if json(r).await["price_cents"] == price + 11 {
            break;
        }
        assert!(Instant::now() < deadline, "the refresh never landed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    s.edge.stop().await;
}

/// The write path at purchase rates (#34): purchases that leave their product in the same
/// availability step purge nothing, so the edge keeps serving every product from its cache and the
/// origin sees no catalog request; a price change purges its product, not its neighbours in the
/// same country.
#[tokio::test]
async fn purchases_within_a_step_purge_nothing_and_a_price_change_only_its_product() {
    let s = purging_stack().await;
    let admin = s.app.admin("root@nexnum.test").await;
    let http = reqwest::Client::new();
    let (bought_path, price, p, c, sv) = price_path(&s.db, 10).await;
    let (other_path, other_price, op, oc, osv) = price_path(&s.db, 11).await;
    assert_eq!((&p, &c), (&op, &oc), "two products of one country");
    // Plenty in stock, before the edge holds a copy.
    let body = serde_json::json!({"price_cents": price, "stock": 500});
    let r = s.app.put_json_as(&admin, &format!("/v1/admin/prices/{p}/{c}/{sv}"), &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for warm in [&bought_path, &other_path] {
        let deadline = Instant::now() + Duration::from_secs(3);
        while header(&http.get(s.edge.url(warm)).send().await.unwrap(), "x-cache") != "HIT" {
            assert!(Instant::now() < deadline, "{warm} never became a HIT");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let purges = |edge: &EdgeWorker| -> Vec<String> {
        edge.lines().into_iter().filter(|l| l.contains("\"forgotten\"")).collect()
    };
    let (purged_before, reached) = (purges(&s.edge).len(), s.tap.count());

    let product = serde_json::json!({"provider": p, "country": c, "service": sv});
    let (_, token) = s.app.user_with("buyer@example.com", price * 20).await;
    for _ in 0..20 {
        assert_eq!(s.app.buy(&token, &product, None).await.status(), StatusCode::CREATED);
    }
    assert_eq!(harness::stock_of(&s.db.pool, &product).await, 480);
    for path in [&bought_path, &other_path] {
        let r = http.get(s.edge.url(path)).send().await.unwrap();
        assert_eq!(header(&r, "x-cache"), "HIT", "{path} after 20 purchases");
        assert_eq!(json(r).await["availability"], "in_stock");
    }

    // A price change of the other product: it alone is purged (soft: the old copy once, then the
    // new price), and it is the first purge the edge has had since the purchases began.
    let body = serde_json::json!({"price_cents": other_price + 3, "stock": 500});
    let r = s.app.put_json_as(&admin, &format!("/v1/admin/prices/{p}/{c}/{osv}"), &body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let changed = Instant::now();
    while json(http.get(s.edge.url(&other_path)).send().await.unwrap()).await["price_cents"]
        != other_price + 3
    {
        assert!(changed.elapsed() < Duration::from_secs(1), "the new price never reached the edge");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let since = purges(&s.edge)[purged_before..].to_vec();
    assert_eq!(since.len(), 1, "one purge, the price change's: {since:?}");
    assert!(since[0].contains(&format!("price:{p}:{c}:{osv}")), "{since:?}");
    assert!(!since[0].contains(&format!("price:{p}:{c}:{sv}\"")), "{since:?}");
    assert!(!since[0].contains(&format!("\"prices:{p}:{c}\"")), "not the country: {since:?}");
    let r = http.get(s.edge.url(&bought_path)).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "HIT", "the neighbour stays cached");
    let fetched: Vec<_> = s.tap.seen()[reached..].iter().map(|r| r.path.clone()).collect();
    assert!(
        fetched.iter().all(|path| *path == other_path),
        "the origin saw only the changed product's refresh: {fetched:?}"
    );
    s.edge.stop().await;
}
