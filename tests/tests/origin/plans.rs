//! Every catalog query, EXPLAINed on a representative catalog (~29k prices, analysed), reads
//! prices through an index, never a sequential scan.

use harness::TestDb;
use origin::db::catalog::{COUNTRIES_SQL, PRICES_SQL, SERVICES_SQL};
use origin::seed::Scale;

async fn plan(db: &TestDb, sql: &str, binds: &[&str], services: Option<Vec<String>>) -> String {
    let explain = format!("EXPLAIN {sql}");
    let mut q = sqlx::query_scalar::<_, String>(&explain);
    for b in binds {
        q = q.bind(*b);
    }
    if let Some(list) = services {
        q = q.bind(list);
    }
    q.fetch_all(&db.pool).await.expect("explain").join("\n")
}

#[tokio::test]
async fn catalog_queries_use_indexes() {
    let db = TestDb::new(Some(Scale::Medium)).await;
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM prices").fetch_one(&db.pool).await.unwrap();
    assert!(rows > 25_000, "representative size: {rows}");
    let services: Vec<String> =
        sqlx::query_scalar("SELECT code FROM services ORDER BY code LIMIT 40")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let cases = [
        ("countries", plan(&db, COUNTRIES_SQL, &["5sim"], None).await),
        ("services", plan(&db, SERVICES_SQL, &["5sim"], None).await),
        ("prices", plan(&db, PRICES_SQL, &["5sim", "us"], Some(services[..1].to_vec())).await),
        ("bulk prices", plan(&db, PRICES_SQL, &["5sim", "us"], Some(services)).await),
    ];
    for (name, plan) in cases {
        let reads: Vec<&str> = plan.lines().filter(|l| l.contains(" on prices ")).collect();
        assert!(!reads.is_empty(), "{name} does not read prices?\n{plan}");
        for line in reads {
            assert!(line.contains("Index"), "{name} reads prices without an index:\n{plan}");
        }
    }
}
