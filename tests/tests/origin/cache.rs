//! Cache-aside behaviour read back from Redis and counted in PostgreSQL queries: exact keys and
//! TTLs, hits that skip the database, bulk MGET, single flight, known absences.

use std::sync::Arc;

use harness::{AppOptions, TestApp, TestDb};
use origin::seed::Scale;
use reqwest::StatusCode;
use shared::{DataType, Product, Slug, keys};

use crate::common::{absent_price, lists_cached, priced_services, seeded, some_price};

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

fn price_key(p: &str, c: &str, s: &str) -> String {
    keys::price(&Product::parse(p, c, s).unwrap())
}

/// The TTL Redis reports right after a write is the policy TTL (allowing one second of drift).
fn assert_fresh_ttl(ttl: i64, data: DataType) {
    let want = i64::from(data.policy().redis_ttl);
    assert!((want - 2..=want).contains(&ttl), "{data:?}: TTL {ttl}, want ~{want}");
}

#[tokio::test]
async fn keys_and_ttls_are_the_guides_and_hits_skip_the_database() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv, ..) = some_price(&s.db.pool, 3).await;
    let (p_s, c_s, sv_s) = (slug(&p), slug(&c), slug(&sv));
    let routes = [
        ("/v1/catalog/providers".to_owned(), keys::providers(), DataType::Providers),
        (format!("/v1/catalog/{p}/countries"), keys::countries(&p_s), DataType::Countries),
        (format!("/v1/catalog/{p}/services"), keys::services(&p_s), DataType::Services),
        (
            format!("/v1/catalog/{p}/prices/{c}/{sv}"),
            keys::price(&Product { provider: p_s.clone(), country: c_s, service: sv_s }),
            DataType::Prices,
        ),
    ];
    for (path, key, data) in routes {
        assert_eq!(s.app.ttl(&key).await, -2, "{key} absent before the first request");
        let before = s.app.db_queries();
        let first = s.app.get(&path).await;
        assert_eq!(first.status(), StatusCode::OK);
        let first = first.bytes().await.unwrap();
        assert_eq!(s.app.db_queries(), before + 1, "{path}: a miss loads once");
        assert_fresh_ttl(s.app.ttl(&key).await, data);

        let stored: Vec<u8> = {
            let mut conn = s.app.redis().await;
            redis::cmd("GET")
                .arg(format!("{}{key}", s.app.prefix))
                .query_async(&mut conn)
                .await
                .unwrap()
        };
        // Redis holds the exact body behind this release's format header (tag 1, the expiry).
        let header = origin::cache::format::HEADER;
        assert_eq!(stored[0], origin::cache::format::VERSION, "{key}: versioned");
        assert_eq!(&stored[header..], &first[..], "Redis holds the exact body");

        let second = s.app.get(&path).await.bytes().await.unwrap();
        assert_eq!(second, first);
        assert_eq!(s.app.db_queries(), before + 1, "{path}: a hit does not touch PostgreSQL");
    }
    // The literal spelling, not only what the builder says.
    assert!(s.app.ttl(&format!("cache:prices:{p}:{c}:{sv}")).await > 0);
    assert!(s.app.ttl(&format!("cache:countries:{p}")).await > 0);
}

#[tokio::test]
async fn bulk_is_one_mget_and_one_query_for_all_misses() {
    let db = TestDb::new(Some(Scale::Small)).await;
    // L1 off: this test is about the Redis layer underneath it.
    let options = AppOptions::default().private_redis().env("L1_CACHE", "off");
    let app = TestApp::spawn(&db, options).await;
    let redis = app.private_redis.as_ref().unwrap();
    let (p, c, ..) = some_price(&db.pool, 0).await;
    let services = priced_services(&db.pool, &p, &c).await;
    let asked: Vec<&str> = services.iter().take(8).map(String::as_str).collect();
    let path = format!("/v1/catalog/{p}/prices/{c}?services={}", asked.join(","));
    // One price of another service: its load reads the provider's lists once (made-up codes
    // are decided from them), so what is counted below is the bulk read alone.
    let other = &services[services.len() - 1];
    assert_eq!(app.get(&format!("/v1/catalog/{p}/prices/{c}/{other}")).await.status(), 200);

    let (mget0, get0, q0) =
        (redis.command_calls("mget").await, redis.command_calls("get").await, app.db_queries());
    let cold = app.get(&path).await;
    assert_eq!(cold.status(), StatusCode::OK);
    let cold = cold.bytes().await.unwrap();
    assert_eq!(redis.command_calls("mget").await - mget0, 1, "one MGET");
    assert_eq!(app.db_queries() - q0, 1, "one query for eight missing keys");
    // The write-back runs one store script per key (its GET checks the key's fill lock, and
    // Redis counts a script's commands too); no GET of its own reads a key.
    assert_eq!(
        redis.command_calls("get").await - get0,
        asked.len() as u64,
        "no per-key GETs besides the eight store scripts' lock checks"
    );
    for s in &asked {
        assert_fresh_ttl(app.ttl(&price_key(&p, &c, s)).await, DataType::Prices);
    }

    let warm = app.get(&path).await.bytes().await.unwrap();
    assert_eq!(warm, cold);
    assert_eq!(redis.command_calls("mget").await - mget0, 2);
    assert_eq!(app.db_queries() - q0, 1, "a warm bulk read does not touch PostgreSQL");

    // Drop three keys: the next read loads exactly those, in one query.
    let mut conn = redis.client().await;
    let dropped: Vec<String> =
        asked[..3].iter().map(|s| format!("{}{}", app.prefix, price_key(&p, &c, s))).collect();
    let _: () = redis::cmd("DEL").arg(&dropped).query_async(&mut conn).await.unwrap();
    let again = app.get(&path).await.bytes().await.unwrap();
    assert_eq!(again, cold);
    assert_eq!(app.db_queries() - q0, 2, "three misses, one query");
}

#[tokio::test]
async fn a_stampede_on_a_cold_key_loads_once() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv, ..) = some_price(&s.db.pool, 11).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{sv}");
    lists_cached(&s.app, &p).await;
    let app = Arc::new(s.app);
    let before = app.db_queries();
    let barrier = Arc::new(tokio::sync::Barrier::new(250));
    let tasks: Vec<_> = (0..250)
        .map(|_| {
            let app = app.clone();
            let path = path.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let resp = app.get(&path).await;
                (resp.status(), resp.bytes().await.unwrap())
            })
        })
        .collect();
    let mut bodies = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "everyone got the same answer");
    assert_eq!(app.db_queries() - before, 1, "250 concurrent cold requests, one database load");
}

#[tokio::test]
async fn known_absences_are_cached_briefly() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv) = absent_price(&s.db.pool).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{sv}");
    lists_cached(&s.app, &p).await;
    let before = s.app.db_queries();
    assert_eq!(s.app.get(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.app.get(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.app.db_queries() - before, 1);
    let ttl = s.app.ttl(&price_key(&p, &c, &sv)).await;
    assert!((1..=30).contains(&ttl), "negative entries live at most 30 s, got {ttl}");

    // An unknown provider is never written to Redis (made-up codes cannot fill it).
    assert_eq!(
        s.app.get(&format!("/v1/catalog/nobody/prices/{c}/{sv}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.app.ttl(&format!("cache:prices:nobody:{c}:{sv}")).await, -2);
}

/// Refresh ahead: a price read steadily across several of its TTLs never expires in Redis, and
/// no request after the first waits on a database load (the reloads happen in the background).
#[tokio::test]
async fn a_steadily_read_key_is_refreshed_ahead_and_never_expires() {
    // Prices live 60 s / 20 = 3 s; L1 off, so every read goes to Redis and sees the TTL. The
    // refresh has the last 0.6 s of each TTL to run; a roomier Redis bound keeps a saturated
    // machine (the whole suite at once, over TLS, on a cluster) from failing its commands on
    // the 50 ms default, which is not what this test is about.
    let options = AppOptions::default()
        .env("CACHE_TTL_DIVISOR", "20")
        .env("L1_CACHE", "off")
        .env("REDIS_TIMEOUT_MS", "500");
    let s = seeded(options).await;
    let (p, c, sv, ..) = some_price(&s.db.pool, 3).await;
    let (path, key) = (format!("/v1/catalog/{p}/prices/{c}/{sv}"), price_key(&p, &c, &sv));
    lists_cached(&s.app, &p).await;
    let waited0 = s.app.state.cache.stats().waited.load(std::sync::atomic::Ordering::Relaxed);
    let series = r#"cache_refresh_total{type="prices",outcome="refreshed"}"#;
    let counted = async || s.app.metric(series).await;
    let counted0 = counted().await;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(8) {
        assert_eq!(s.app.get(&path).await.status(), StatusCode::OK);
        assert!(s.app.ttl(&key).await > 0, "the key expired after {:?}", started.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stats = s.app.state.cache.stats();
    let waited = stats.waited.load(std::sync::atomic::Ordering::Relaxed);
    let refreshed = stats.refreshed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(waited - waited0, 1, "only the very first read waited on a database load");
    assert!(refreshed >= 2, "8 s over a 3 s TTL takes at least 2 refreshes: {refreshed}");
    let counted = counted().await - counted0;
    assert!(counted >= 2.0, "{series} moved by {counted}");
}

/// A mutation during a refresh wins: the key and its lock go together, so a reload that read the
/// old row cannot store it back.
#[tokio::test]
async fn invalidation_removes_the_fill_lock_with_the_key() {
    let s = seeded(AppOptions::default()).await;
    let key = price_key("5sim", "ad", "whatsapp");
    let lock = keys::fill_lock(&key);
    let mut conn = s.app.redis().await;
    let _: () = redis::cmd("SET")
        .arg(s.app.key(&lock))
        .arg("someone")
        .arg("EX")
        .arg(5)
        .query_async(&mut conn)
        .await
        .unwrap();
    s.app.state.cache.invalidate(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(s.app.ttl(&lock).await, -2, "the lock went with the key");
}

/// A price change that commits while a load is between reading the old row and writing it to
/// Redis (held there by the cache's test seam) wins: the load's write-back finds its fill lock
/// gone with the key and stores nothing, so the next read loads the new price. Before, the
/// load stored the old price for its whole 60 s TTL.
#[tokio::test]
async fn a_load_that_raced_a_mutation_cannot_store_the_old_value() {
    let s = seeded(AppOptions::default().env("L1_CACHE", "off")).await;
    let admin = s.app.admin("root@example.com").await;
    let (p, c, sv, old, stock) = some_price(&s.db.pool, 5).await;
    let new = old + 1;
    lists_cached(&s.app, &p).await;
    for bulk in [false, true] {
        let path = if bulk {
            format!("/v1/catalog/{p}/prices/{c}?services={sv}")
        } else {
            format!("/v1/catalog/{p}/prices/{c}/{sv}")
        };
        let price_of = |body: &serde_json::Value| {
            if bulk {
                body["prices"][0]["price_cents"].as_i64()
            } else {
                body["price_cents"].as_i64()
            }
        };
        let before = if bulk { new } else { old };
        // Cold for this read: the last round's next read stored it again.
        s.app.state.cache.invalidate(&[price_key(&p, &c, &sv)]).await.unwrap();
        let gate = s.app.state.cache.gate_stores();
        let (client, url) = (s.app.client.clone(), s.app.url(&path));
        let reader = tokio::spawn(async move {
            client.get(url).send().await.unwrap().json::<serde_json::Value>().await.unwrap()
        });
        gate.arrived().await;
        // The mutation commits and invalidates while the load holds the old row.
        let target = if bulk { new + 1 } else { new };
        let put = s
            .app
            .put_json_as(
                &admin,
                &format!("/v1/admin/prices/{p}/{c}/{sv}"),
                &serde_json::json!({"price_cents": target, "stock": stock}),
            )
            .await;
        assert_eq!(put.status(), StatusCode::OK);
        gate.open();
        let raced = reader.await.unwrap();
        assert_eq!(price_of(&raced), Some(before), "the racing read answers what it read");
        let next = harness::json_body(s.app.get(&path).await).await;
        assert_eq!(price_of(&next), Some(target), "bulk={bulk}: the next read sees the change");
    }
}

/// Cached values carry a format version (#32 item 7), so replicas of two releases (a rolling
/// deploy, a rollback) never misread each other's: a value the previous release wrote (no
/// version: the bare JSON) is served as it is, from Redis; one a later release wrote (a tag this
/// release does not know) is never served: the read is a miss, loaded from PostgreSQL.
#[tokio::test]
async fn values_of_an_older_release_are_read_and_of_a_newer_one_never() {
    let s = seeded(AppOptions::default().env("L1_CACHE", "off")).await;
    let (p, c, sv, price, _) = some_price(&s.db.pool, 4).await;
    let path = format!("/v1/catalog/{p}/prices/{c}/{sv}");
    let key = s.app.key(&price_key(&p, &c, &sv));
    lists_cached(&s.app, &p).await; // what a price read checks first, out of the count
    let mut conn = s.app.redis().await;
    let set = |value: Vec<u8>| redis::cmd("SET").arg(&key).arg(value).arg("EX").arg(60).to_owned();

    // The previous release's value: the body alone (and a price the database does not have).
    let old = format!(
        r#"{{"provider":"{p}","country":"{c}","service":"{sv}","price_cents":4242,"stock":1}}"#
    );
    let _: () = set(old.clone().into_bytes()).query_async(&mut conn).await.unwrap();
    let before = s.app.db_queries();
    let r = s.app.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), old, "an older release's value is served as it is");
    assert_eq!(s.app.db_queries(), before, "from Redis");

    // A later release's value: a tag this release does not know, and bytes it cannot read.
    let mut newer = vec![origin::cache::format::VERSION + 1];
    newer.extend_from_slice(b"\x00\xffsomething only a later release reads");
    let _: () = set(newer).query_async(&mut conn).await.unwrap();
    let r = s.app.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["price_cents"], price, "loaded from PostgreSQL, never the newer bytes");
    assert_eq!(s.app.db_queries(), before + 1, "one load");
}
