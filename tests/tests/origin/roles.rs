//! Least privilege in PostgreSQL (#32 item 3): every in-process origin of the suites connects as
//! the serving role (`harness::SERVING_ROLE`, granted by `origin::db::roles` as `origin grant`
//! grants it), so every query the suites make is one that role may run. Here, what it may not:
//! change or empty the schema, delete rows, or rewrite the migration log.

use harness::{TestDb, as_user};
use origin::seed::Scale;
use sqlx::Connection;

#[tokio::test]
async fn the_serving_role_reads_and_writes_rows_and_nothing_else() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let mut serving = sqlx::PgConnection::connect(&db.serving_url()).await.unwrap();
    // Rows: read, insert, update.
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM prices").fetch_one(&mut serving).await.unwrap();
    assert!(n > 0);
    sqlx::query(
        "UPDATE prices SET stock = stock WHERE provider_id = (SELECT min(provider_id) FROM prices)",
    )
    .execute(&mut serving)
    .await
    .unwrap();
    sqlx::query("SELECT version FROM _sqlx_migrations LIMIT 1")
        .execute(&mut serving)
        .await
        .unwrap();
    // Everything else: refused by PostgreSQL, naming the privilege.
    for statement in [
        "DROP TABLE prices",
        "ALTER TABLE prices ADD COLUMN x int",
        "TRUNCATE prices",
        "DELETE FROM prices",
        "CREATE TABLE intruder (id int)",
        "CREATE INDEX intruder ON prices (stock)",
        "DELETE FROM _sqlx_migrations",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
           VALUES (1, 'x', true, '\\x00', 0)",
        "UPDATE _sqlx_migrations SET success = false",
        "DROP SCHEMA public CASCADE",
        "CREATE ROLE intruder",
    ] {
        let err = sqlx::query(statement).execute(&mut serving).await.unwrap_err();
        let code = err.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
        assert!(
            matches!(code.as_deref(), Some("42501")),
            "{statement}: expected insufficient_privilege, got {err}"
        );
    }
    // The owner still can (the grants took nothing from it).
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE INDEX owner_may ON prices (stock)").execute(&mut owner).await.unwrap();
    // And a role with no grants cannot even read.
    let stranger = as_user(&db.url, "nexnum_no_grants_test", "nope-nope-nope");
    assert!(sqlx::PgConnection::connect(&stranger).await.is_err());
}

#[tokio::test]
async fn a_table_a_later_migration_creates_is_granted_by_default() {
    let db = TestDb::new(None).await;
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE later (id bigserial PRIMARY KEY, note text)")
        .execute(&mut owner)
        .await
        .unwrap();
    let mut serving = sqlx::PgConnection::connect(&db.serving_url()).await.unwrap();
    sqlx::query("INSERT INTO later (note) VALUES ('x')").execute(&mut serving).await.unwrap();
    let err = sqlx::query("DELETE FROM later").execute(&mut serving).await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}
