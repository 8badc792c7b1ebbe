//! Liveness and readiness.

use harness::{AppOptions, TestApp, TestDb, json};
use reqwest::StatusCode;

#[tokio::test]
async fn healthz_and_readyz() {
    let db = TestDb::new(None).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await["status"], "ok");
    let resp = app.ops_get("/readyz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json(resp).await;
    assert_eq!((body["postgres"].as_str(), body["redis"].as_str()), (Some("ok"), Some("ok")));
    let id = app.get("/healthz").await.headers().get("x-request-id").cloned();
    assert!(id.is_some_and(|v| v.len() >= 32), "every response carries a request id");
}

#[tokio::test]
async fn readyz_reports_an_unreachable_database() {
    let db = TestDb::new(None).await;
    let port = harness::spare_port();
    let app = TestApp::spawn(
        &db,
        AppOptions {
            env: vec![
                ("DATABASE_URL".into(), format!("postgres://postgres@127.0.0.1:{port}/none")),
                ("DB_CONNECT_TIMEOUT_SECS".into(), "1".into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let resp = app.ops_get("/readyz").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(resp).await;
    assert_eq!(
        (body["postgres"].as_str(), body["redis"].as_str()),
        (Some("unavailable"), Some("ok"))
    );
    // And a catalog miss with no database is a clean 503 JSON, not a hang or a panic.
    let resp = app.get("/v1/catalog/providers").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(resp).await["error"]["code"], "unavailable");
}

/// The schema check: a database behind the binary is refused at start, naming the missing
/// migration and what to run; one found behind later (the database was down at start) makes
/// the origin not ready with the same words; a database *ahead* of the binary (a newer binary
/// migrated it, mid rolling deploy) is fine.
#[tokio::test]
async fn the_schema_is_checked_at_start_and_by_readiness() {
    let db = TestDb::new(None).await;
    let last = origin::MIGRATOR.iter().last().expect("a migration");
    let forget =
        |version: i64| sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1").bind(version);
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    forget(last.version).execute(&db.pool).await.unwrap();

    let refused = TestApp::try_spawn(&db, AppOptions::default()).await.err().expect("refused");
    let refused = refused.to_string();
    for words in ["DATABASE_URL", &last.version.to_string(), &last.description, "origin migrate"] {
        assert!(refused.contains(words), "{words:?} missing from: {refused}");
    }

    // The running origin, as if it had started before the database answered.
    app.state.schema_current.store(false, std::sync::atomic::Ordering::Release);
    let resp = app.ops_get("/readyz").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(resp).await;
    assert_eq!(body["postgres"], "unavailable");
    assert!(
        body["schema"].as_str().is_some_and(|s| s.contains(&last.version.to_string())),
        "{body}"
    );

    // Migrated again, and one migration ahead: ready, and a new origin starts.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, $2, true, $3, 0), (99991231000000, 'from a newer binary', true, '\\x00', 0)",
    )
    .bind(last.version)
    .bind(last.description.as_ref())
    .bind(last.checksum.as_ref())
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(app.ops_get("/readyz").await.status(), StatusCode::OK);
    assert!(app.state.schema_current.load(std::sync::atomic::Ordering::Acquire));
    assert!(TestApp::try_spawn(&db, AppOptions::default()).await.is_ok(), "ahead is fine");
}

/// What a client fetches from `/openapi.json` is the checked-in `openapi.json` the TypeScript
/// client is generated from (not the function that serves it, which would agree with itself).
#[tokio::test]
async fn the_served_openapi_document_is_the_checked_in_one() {
    let db = TestDb::new(None).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let checked_in = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let checked_in = std::fs::read_to_string(checked_in).expect("openapi.json at the root");
    assert_eq!(resp.text().await.unwrap(), checked_in, "run make openapi");
}
