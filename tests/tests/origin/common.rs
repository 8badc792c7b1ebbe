//! Helpers shared by the origin suites: a seeded app, and codes read from the database so
//! tests never hard-code what the seed happens to produce.

use harness::{AppOptions, TestApp, TestDb};
use origin::seed::Scale;
use sqlx::PgPool;

pub struct Seeded {
    pub db: TestDb,
    pub app: TestApp,
}

pub async fn seeded(options: AppOptions) -> Seeded {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, options).await;
    Seeded { db, app }
}

pub use harness::some_price;

/// A (provider, country, service) of known codes with no price row.
pub async fn absent_price(pool: &PgPool) -> (String, String, String) {
    sqlx::query_as(
        "SELECT pr.code, c.code, s.code FROM providers pr, countries c, services s
          WHERE NOT EXISTS (SELECT 1 FROM prices p WHERE p.provider_id = pr.id
                              AND p.country_id = c.id AND p.service_id = s.id)
          ORDER BY 1, 2, 3 LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .expect("the seed leaves some combinations unpriced")
}

/// Codes of services priced for a provider in a country, in code order.
pub async fn priced_services(pool: &PgPool, provider: &str, country: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT s.code FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
          WHERE pr.code = $1 AND c.code = $2 ORDER BY s.code",
    )
    .bind(provider)
    .bind(country)
    .fetch_all(pool)
    .await
    .expect("priced services")
}

/// Reads the catalog's lists for `provider` (providers, its countries and services), so that a
/// test counting the loads of one price counts only that price: the origin decides made-up
/// codes from these lists, and loads each once.
pub async fn lists_cached(app: &TestApp, provider: &str) {
    for path in [
        "/v1/catalog/providers".to_owned(),
        format!("/v1/catalog/{provider}/countries"),
        format!("/v1/catalog/{provider}/services"),
    ] {
        assert_eq!(app.get(&path).await.status(), reqwest::StatusCode::OK, "{path}");
    }
}
