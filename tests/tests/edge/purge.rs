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
    let bulk_now = json(http.get(s.edge.url(&bulk)).send().await.unwrap()).await;
    assert_eq!(bulk_now["prices"][0]["price_cents"], price + 7, "the bulk answer too");
    eprintln!("price change to the edge: {} ms", seen.as_millis());

    // Once more, then a burst of 1 000 reads at once right after the purge: one origin load.
    let body = serde_json::json!({"price_cents": price + 8, "stock": 9});
    assert_eq!(s.app.put_json_as(&admin, &admin_path, &body).await.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.edge.lines().iter().filter(|l| l.contains("\"purge\"")).nth(1).is_none() {
        assert!(Instant::now() < deadline, "the second purge never reached the edge");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (reached, queries) = (s.tap.count(), s.app.db_queries());
    let burst = reqwest::Client::builder().pool_max_idle_per_host(1000).build().unwrap();
    let answers = futures::future::join_all((0..1000).map(|_| {
        let req = burst.get(s.edge.url(&path));
        async move { req.send().await.map(|r| r.status()) }
    }))
    .await;
    let ok = answers.iter().filter(|a| matches!(a, Ok(StatusCode::OK))).count();
    assert_eq!(ok, 1000, "{:?}", answers.iter().find(|a| !matches!(a, Ok(StatusCode::OK))));
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
