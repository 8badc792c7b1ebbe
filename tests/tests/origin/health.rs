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

#[tokio::test]
async fn the_openapi_document_is_served_as_generated() {
    let db = TestDb::new(None).await;
    let app = TestApp::spawn(&db, AppOptions::default()).await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), origin::http::openapi_document());
}
