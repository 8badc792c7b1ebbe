//! Purging the caches downstream (#24 item 2), against a stand-in of Cloudflare's purge API that
//! records every call: what a change purges (its cache tags), that the change never waits for
//! it, that a burst is coalesced, and that failures are retried, honoured (`Retry-After`) and
//! counted.

use std::time::Duration;

use harness::sink::{Answer, Sink};
use harness::{AppOptions, TestApp};
use reqwest::StatusCode;
use serde_json::json as j;

use crate::common::{seeded, some_price};

const TOKEN: &str = "cf-token-0123456789";

fn cloudflare(sink: &Sink) -> AppOptions {
    AppOptions::default()
        .env("CLOUDFLARE_ZONE_ID", "zone0123")
        .env("CLOUDFLARE_API_TOKEN", TOKEN)
        .env("CLOUDFLARE_API_URL", &format!("{}/client/v4", sink.url))
        .env("PURGE_BATCH_MS", "100")
}

async fn set_price(app: &TestApp, admin: &str, p: &str, c: &str, s: &str, cents: i64) {
    let path = format!("/v1/admin/prices/{p}/{c}/{s}");
    let r = app.put_json_as(admin, &path, &j!({"price_cents": cents, "stock": 5})).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_price_change_purges_its_tags_without_waiting_for_the_purge() {
    let sink = Sink::start().await;
    let s = seeded(cloudflare(&sink)).await;
    let admin = s.app.admin("root@nexnum.test").await;
    let (p, c, sv, price, _) = some_price(&s.db.pool, 2).await;
    sink.hold();
    // The change answers while its purge is still held at the cache: well inside the purge
    // call's own bound (5 s), which a change that waited for its purge would take. (A mutation
    // that waited up to 3 s for the purge passed this test when it only checked the call.)
    let started = std::time::Instant::now();
    set_price(&s.app, &admin, &p, &c, &sv, price + 1).await;
    let answered_in = started.elapsed();
    assert!(
        answered_in < Duration::from_millis(1_000),
        "the change waited for its purge: {answered_in:?}"
    );
    let calls = sink.wait_for_calls(1, Duration::from_secs(3)).await;
    assert!(sink.calls().len() == 1, "and the purge was still held then");
    assert_eq!(calls.len(), 1, "one purge call");
    sink.release();
    let call = &calls[0];
    assert_eq!(call.path, "/client/v4/zones/zone0123/purge_cache");
    assert_eq!(call.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(call.tags(), vec![format!("prices:{p}:{c}")], "exactly the country's prices");
    let ok = s.app.metric(r#"purge_calls_total{sink="cloudflare",outcome="ok"}"#).await;
    assert!(ok >= 1.0);

    // A purchase changes stock: the same tag. A balance credit changes nothing downstream.
    let (user, token) = s.app.user_with("buyer@example.com", (price + 1) * 2).await;
    let product = j!({"provider": p, "country": c, "service": sv});
    assert_eq!(s.app.buy(&token, &product, None).await.status(), StatusCode::CREATED);
    let calls = sink.wait_for_calls(2, Duration::from_secs(3)).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].tags(), vec![format!("prices:{p}:{c}")]);
    let credit = format!("/v1/admin/users/{user}/credit");
    let r = s.app.post_json_as(&admin, &credit, &j!({"amount_cents": 5})).await;
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.calls().len(), 2, "a balance is in no downstream cache");
}

#[tokio::test]
async fn a_burst_of_changes_is_coalesced_into_few_calls() {
    let sink = Sink::start().await;
    let s = seeded(cloudflare(&sink).env("PURGE_BATCH_MS", "300")).await;
    let admin = s.app.admin("root@nexnum.test").await;
    let mut expected = std::collections::BTreeSet::new();
    let changes = (0..24).map(|i| {
        let (app, admin, pool) = (&s.app, &admin, &s.db.pool);
        async move {
            let (p, c, sv, price, _) = some_price(pool, i).await;
            set_price(app, admin, &p, &c, &sv, price + 1).await;
            format!("prices:{p}:{c}")
        }
    });
    for tag in futures::future::join_all(changes).await {
        expected.insert(tag);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let calls = sink.calls();
    let purged: std::collections::BTreeSet<String> = calls.iter().flat_map(|c| c.tags()).collect();
    assert_eq!(purged, expected, "every changed country's prices, each once");
    assert!(calls.len() <= 3, "24 changes, {} calls", calls.len());
    for call in &calls {
        let tags = call.tags();
        let unique: std::collections::BTreeSet<&String> = tags.iter().collect();
        assert_eq!(unique.len(), tags.len(), "a tag twice in one call");
        assert!(tags.len() <= 30, "Cloudflare takes 30 tags a call");
    }
}

#[tokio::test]
async fn a_failing_purge_is_retried_and_counted() {
    let sink = Sink::start().await;
    let s = seeded(cloudflare(&sink)).await;
    let admin = s.app.admin("root@nexnum.test").await;
    let (p, c, sv, price, _) = some_price(&s.db.pool, 3).await;
    let metric = async |outcome: &str| {
        let series = format!(r#"purge_calls_total{{sink="cloudflare",outcome="{outcome}"}}"#);
        s.app.metric(&series).await
    };
    let (retried0, ok0, refused0) =
        (metric("retried").await, metric("ok").await, metric("refused").await);
    // A 5xx, then rate limited for a second, then through.
    sink.script(&[Answer::Status(502), Answer::RateLimited(1)]);
    set_price(&s.app, &admin, &p, &c, &sv, price + 2).await;
    let calls = sink.wait_for_calls(3, Duration::from_secs(5)).await;
    assert_eq!(calls.len(), 3, "two failures, then the purge landed");
    assert!(calls.iter().all(|call| call.tags() == vec![format!("prices:{p}:{c}")]));
    // The registry is the test binary's (other tests purge too): counted at least this.
    assert!(metric("retried").await - retried0 >= 2.0);
    assert!(metric("ok").await - ok0 >= 1.0);
    // A refusal (a revoked token) is not retried.
    sink.script(&[Answer::Status(403)]);
    set_price(&s.app, &admin, &p, &c, &sv, price + 3).await;
    let calls = sink.wait_for_calls(4, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sink.calls().len(), calls.len(), "no retry after a 403");
    assert!(metric("refused").await - refused0 >= 1.0);
}

#[tokio::test]
async fn an_operators_wholesale_drop_purges_the_provider_or_the_catalog() {
    let sink = Sink::start().await;
    let s = seeded(cloudflare(&sink)).await;
    let admin = s.app.admin("root@nexnum.test").await;
    let drop = async |body: serde_json::Value| {
        let r = s.app.post_json_as(&admin, "/v1/ops/cache/invalidate", &body).await;
        assert_eq!(r.status(), StatusCode::OK);
    };
    drop(j!({"provider": "5sim"})).await;
    let calls = sink.wait_for_calls(1, Duration::from_secs(3)).await;
    let tags: std::collections::BTreeSet<String> = calls[0].tags().into_iter().collect();
    assert!(tags.contains("provider:5sim") && tags.contains("countries:5sim"), "{tags:?}");
    drop(j!({"type": "prices"})).await;
    let calls = sink.wait_for_calls(2, Duration::from_secs(3)).await;
    assert_eq!(calls[1].tags(), vec!["catalog".to_owned()]);
    drop(j!({"type": "balance"})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.calls().len(), 2, "balances are in no downstream cache");
}

/// Secrets never follow a redirect (#33 item 4): a purge answered with a 307 to another host is
/// not re-sent there (with its `Authorization`, `X-Edge-Secret` or `X-Revalidate-Secret`); it
/// counts as refused. Before, reqwest's default policy re-sent the call, secret and body, to
/// wherever the sink pointed (and a 302 turned it into a GET).
#[tokio::test]
async fn a_purge_never_follows_a_redirect() {
    let (sink, elsewhere) = (Sink::start().await, Sink::start().await);
    let edge_secret = "edge-secret-never-redirected";
    let options = cloudflare(&sink)
        .env("EDGE_SECRET", edge_secret)
        .env("EDGE_PURGE_URL", &format!("{}/__edge/purge", sink.url))
        .env("NEXT_REVALIDATE_URL", &format!("{}/api/revalidate", sink.url))
        .env("NEXT_REVALIDATE_SECRET", "revalidate-secret-0001");
    let s = seeded(options).await;
    let admin = s.app.admin("root@nexnum.test").await;
    let (p, c, sv, price, _) = some_price(&s.db.pool, 3).await;
    let to = format!("{}/stolen", elsewhere.url);
    sink.script(&[
        Answer::Redirect(to.clone()),
        Answer::Redirect(to.clone()),
        Answer::Redirect(to),
    ]);
    set_price(&s.app, &admin, &p, &c, &sv, price + 1).await;
    let calls = sink.wait_for_calls(3, Duration::from_secs(5)).await;
    assert_eq!(calls.len(), 3, "one call per sink: {calls:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(elsewhere.calls().is_empty(), "followed to another host: {:?}", elsewhere.calls());
    assert_eq!(sink.calls().len(), 3, "and not retried: a redirect is the sink's answer");
    let refused = s.app.metric_total("purge_calls_total").await;
    assert!(refused >= 3.0);
}
