//! Timeouts that agree (#32 item 5): the origin's request deadline (`REQUEST_TIMEOUT_MS`, 2.5 s)
//! falls before the edge gives up on it (`ORIGIN_TIMEOUT_MS`, 3 s), both from
//! `shared::policy::budget`. A purchase slower than the edge's timeout, through the real worker:
//! - slow before its commit: the buyer gets the origin's own 504 `timeout` and nothing was
//!   charged, then or later; a retry with the same `Idempotency-Key` buys once;
//! - slow after its commit: the buyer gets a 504, and a retry with the same key answers the real
//!   outcome (the activation, `Idempotent-Replayed`) without charging again.
//!
//! Either way the buyer is charged exactly once, and never without being able to learn it.

use std::time::Duration;

use harness::edge::EdgeWorker;
use harness::process::OriginProcess;
use harness::{TestDb, json};
use origin::db::Db;
use origin::db::accounts::CreditOutcome;
use origin::seed::Scale;
use reqwest::StatusCode;

use crate::SECRET;

/// Purchases charged to `user` so far (ledger rows of type purchase).
async fn charges(db: &TestDb, user: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM transactions WHERE user_id = $1 AND type = 'purchase'")
        .bind(user)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn slow_purchase_through_the_edge(point: &str) {
    let db = TestDb::new(Some(Scale::Small)).await;
    // Slower than the edge's 3 s, once (`1*`): the retry is not slowed.
    let failpoint = format!("{point}=1*return(4000)");
    let env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", harness::shared_redis_url()),
        ("REDIS_KEY_PREFIX", harness::key_prefix()),
        ("EDGE_SECRET", SECRET.to_owned()),
        ("FAILPOINTS", failpoint),
        ("RATE_LIMITS", "auth=10000/60000".to_owned()),
    ];
    let origin = OriginProcess::start(&env).await;
    let edge =
        EdgeWorker::start(&[("ORIGIN_URL", origin.url("")), ("EDGE_SECRET", SECRET.to_owned())])
            .await;
    let http = reqwest::Client::new();
    let email = "slow@nexnum.test";
    let r = http
        .post(edge.url("/v1/auth/register"))
        .json(&serde_json::json!({"email": email, "password": harness::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let user = json(r).await["id"].as_i64().unwrap();
    let credited = Db::from_pool(db.pool.clone()).credit(user, 100_000, None, None).await;
    assert!(matches!(credited, Ok(CreditOutcome::Credited(_))));
    let r = http
        .post(edge.url("/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": harness::PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = json(r).await["token"].as_str().unwrap().to_owned();
    let (p, c, s, _, _) = harness::some_price(&db.pool, 3).await;
    let product = serde_json::json!({"provider": p, "country": c, "service": s});
    let buy = || {
        http.post(edge.url("/v1/activations"))
            .bearer_auth(&token)
            .header("idempotency-key", "slow-purchase-0001")
            .json(&product)
            .send()
    };

    let first = buy().await.unwrap();
    assert_eq!(first.status(), StatusCode::GATEWAY_TIMEOUT, "{point}");
    let body = json(first).await;
    assert_eq!(
        body["error"]["code"], "timeout",
        "{point}: the origin's own answer, relayed (not the edge giving up): {body}"
    );
    // Past the slow point: what the first attempt left behind is final.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let charged_by_first = charges(&db, user).await;
    match point {
        "purchase::before_commit" => assert_eq!(charged_by_first, 0, "rolled back, never late"),
        _ => assert_eq!(charged_by_first, 1, "committed before the deadline fell"),
    }

    // The retry with the same key settles it: bought, exactly once.
    let retry = buy().await.unwrap();
    assert!(retry.status().is_success(), "{point}: retry {}", retry.status());
    let replayed = retry.headers().get("idempotent-replayed").is_some();
    assert_eq!(replayed, charged_by_first == 1, "{point}: replayed only what was committed");
    let again = buy().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(charges(&db, user).await, 1, "{point}: charged exactly once");
    edge.stop().await;
}

#[tokio::test]
async fn a_purchase_slow_before_its_commit_is_rolled_back_and_the_buyer_told() {
    slow_purchase_through_the_edge("purchase::before_commit").await;
}

#[tokio::test]
async fn a_purchase_slow_after_its_commit_is_settled_by_its_key() {
    slow_purchase_through_the_edge("purchase::after_commit").await;
}
