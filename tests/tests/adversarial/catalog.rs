//! The catalog as an attacker meets it (hardening, round two).

use harness::{AppOptions, TestApp, TestDb, assert_error};
use origin::seed::Scale;

/// Item 15: made-up codes are decided from the catalog's cached lists (providers, and the
/// provider's countries and services), so once those are cached, a thousand distinct made-up
/// countries, services or providers cost no database query at all. Before, each cost one.
#[tokio::test]
async fn made_up_codes_cost_no_database_query() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let options = AppOptions::default().env("RATE_LIMITS", "api=1000000/60000");
    let app = TestApp::spawn(&db, options).await;
    app.wait_for_l1().await;
    let (p, c, s, ..) = harness::some_price(&db.pool, 0).await;
    // The lists, cached by ordinary reads.
    for path in [
        "/v1/catalog/providers".to_owned(),
        format!("/v1/catalog/{p}/countries"),
        format!("/v1/catalog/{p}/services"),
    ] {
        assert_eq!(app.get(&path).await.status(), 200, "{path}");
    }
    let before = app.db_queries();
    for i in 0..1000 {
        let paths = [
            format!("/v1/catalog/{p}/prices/q{i}x/{s}"),
            format!("/v1/catalog/{p}/prices/{c}/made-up-{i}"),
            format!("/v1/catalog/nobody{i}/prices/{c}/{s}"),
        ];
        for path in paths {
            assert_error(app.get(&path).await, 404, "not_found").await;
        }
    }
    let bulk = app.get(&format!("/v1/catalog/{p}/prices/q1x?services={s}")).await;
    assert_error(bulk, 404, "not_found").await;
    assert_eq!(app.db_queries() - before, 0, "3 000 made-up codes, no query");
    // Real ones still load.
    let real = app.get(&format!("/v1/catalog/{p}/prices/{c}/{s}")).await;
    assert_eq!(real.status(), 200);
}
